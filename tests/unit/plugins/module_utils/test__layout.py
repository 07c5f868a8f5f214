# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""haproxy's paths and file names: the module, the router role and the docs say the same as ``_layout``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.k8router.edge.plugins.module_utils import _layout
from ansible_collections.k8router.edge.plugins.module_utils._args import CONVERGE_ARGS
from ansible_collections.k8router.edge.plugins.module_utils._converge import HaproxyPaths
from ansible_collections.k8router.edge.plugins.modules import k8router

REPO = Path(__file__).resolve().parents[4]
ROLE_VARS = {"config": "router_haproxy_config", "conf_dir": "router_haproxy_conf_dir",
             "data_dir": "router_haproxy_data_dir", "socket": "router_haproxy_admin_socket"}  # fmt: skip


def test_the_module_defaults_are_the_layout() -> None:
    options = CONVERGE_ARGS["haproxy"]["options"]
    documented = yaml.safe_load(k8router.DOCUMENTATION)["options"]["haproxy"]["suboptions"]
    for key, path in _layout.HAPROXY_DEFAULTS.items():
        assert options[key]["default"] == path
        assert documented[key]["default"] == path, f"module docs, haproxy.{key}"
        assert getattr(HaproxyPaths(), key) == path


def test_the_router_role_defaults_are_the_layout() -> None:
    defaults = yaml.safe_load((REPO / "roles/router/defaults/main.yml").read_text())
    spec = yaml.safe_load((REPO / "roles/router/meta/argument_specs.yml").read_text())["argument_specs"]["main"]
    for key, var in ROLE_VARS.items():
        assert defaults[var] == _layout.HAPROXY_DEFAULTS[key], f"roles/router/defaults/main.yml: {var}"
        assert spec["options"][var]["default"] == _layout.HAPROXY_DEFAULTS[key], f"argument_specs.yml: {var}"


@pytest.mark.parametrize("name", sorted(_layout.DATA_FILES.values()))
def test_no_file_name_is_written_out_in_the_router_role(name: str) -> None:
    """The role takes every file name of the data directory from the haproxy_files filter."""
    for path in [*REPO.glob("roles/router/templates/*"), *REPO.glob("roles/router/tasks/*.yml")]:
        assert name not in path.read_text(), f"{path.relative_to(REPO)} names {name}"


def test_haproxy_files_are_the_rendered_paths() -> None:
    files = _layout.haproxy_files("/srv/hap/")
    assert files["hosts_map"] == "/srv/hap/hosts.map"
    assert files["crt_list"] == "/srv/hap/crt-list.txt"
    assert set(files) == set(_layout.DATA_FILES)
