from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.k8router.edge.plugins.filter.calico_systemd import FilterModule

FILTERS = FilterModule().filters()


def test_router_peers_take_the_first_address_variable_that_is_an_ip() -> None:
    hostvars = {
        "r1": {"router_address": "10.0.0.11", "ansible_host": "r1.example"},
        "r2": {"router_address": "", "k8router_node_ip": "10.0.0.12"},
        "r3": {"ansible_host": "r3-container"},
        "r4": {"ansible_host": "fd00::4"},
    }
    peers = FILTERS["calico_router_peers"](["r1", "r2", "r3", "r4", "missing"], hostvars)
    assert peers == [{"address": "10.0.0.11"}, {"address": "10.0.0.12"}, {"address": "fd00::4"}]


def test_filter_errors_are_ansible_filter_errors() -> None:
    with pytest.raises(AnsibleFilterError, match="not a variable name"):
        FILTERS["calico_environment"]({"BAD NAME": "x"})
    with pytest.raises(AnsibleFilterError, match="must be one line"):
        FILTERS["systemd_environment_file"]({"A": "x\ny"})
    with pytest.raises(AnsibleFilterError, match="no such unit"):
        FILTERS["calico_units"]([{"name": "a"}], ["b"])
    with pytest.raises(AnsibleFilterError, match="calico_resources"):
        FILTERS["calico_resources"](64512, peers=[{"address": "not-an-ip"}], pod_cidrs=[], service_cidrs=[])


def test_environment_file_through_the_filters() -> None:
    env = FILTERS["calico_environment"]({"NODENAME": "w1", "DATASTORE_TYPE": "kubernetes"})
    assert FILTERS["systemd_environment_file"](env) == (
        'DATASTORE_TYPE="kubernetes"\nFELIX_DATASTORETYPE="kubernetes"\nFELIX_FELIXHOSTNAME="w1"\nNODENAME="w1"\n'
    )


def test_systemd_show_one_mapping_a_unit_in_order() -> None:
    # As systemctl 252 prints `show --property=UnitFileState,ActiveState bird.service nope.service calico-bird.service`.
    text = "ActiveState=inactive\nUnitFileState=masked\n\nActiveState=inactive\nUnitFileState=\n\nActiveState=active\nUnitFileState=enabled\n"
    assert FILTERS["systemd_show"](text) == [
        {"ActiveState": "inactive", "UnitFileState": "masked"},
        {"ActiveState": "inactive", "UnitFileState": ""},
        {"ActiveState": "active", "UnitFileState": "enabled"},
    ]
    assert FILTERS["systemd_show"]("") == []
