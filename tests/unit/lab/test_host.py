"""What ``make lab`` shows while a playbook runs (lab/host.py ``progress``): play, task and handler names and
failures, nothing else of ansible-playbook's output."""

from __future__ import annotations

import pytest

from lab.host import progress


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("PLAY [Converge the routers] ******************************\n", "PLAY [Converge the routers]"),
        (
            "TASK [k8router.edge.router : Install haproxy, keepalived, BIRD 2 [and more]] ****\n",
            "TASK [k8router.edge.router : Install haproxy, keepalived, BIRD 2 [and more]]",
        ),
        (
            "RUNNING HANDLER [k8router.edge.router : Reload haproxy] ***\n",
            "RUNNING HANDLER [k8router.edge.router : Reload haproxy]",
        ),
        ('fatal: [k8r-lab-router1]: FAILED! => {"msg": "x"}\n', 'fatal: [k8r-lab-router1]: FAILED! => {"msg": "x"}'),
        ("ok: [k8r-lab-router1]\n", None),
        ("changed: [k8r-lab-router2] => (item=haproxy)\n", None),
        ("PLAY RECAP *********************\n", None),
        ("k8r-lab-router1 : ok=12 changed=0 unreachable=0 failed=0\n", None),
        ("\n", None),
    ],
)
def test_progress_shows_plays_tasks_handlers_and_failures_only(line: str, shown: str | None) -> None:
    assert progress(line) == shown
