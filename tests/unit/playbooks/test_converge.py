# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/converge.yml passes every option of the k8router module, each from the derived parameters."""

from __future__ import annotations

from pathlib import Path

import yaml

from ansible_collections.k8router.edge.plugins.module_utils._args import CONVERGE_ARGS

REPO = Path(__file__).resolve().parents[3]


def _module_task() -> dict[str, str]:
    play = yaml.safe_load((REPO / "playbooks/converge.yml").read_text())[0]
    tasks = [t for t in play["tasks"] if "k8router.edge.k8router" in t]
    assert len(tasks) == 1
    args: dict[str, str] = tasks[0]["k8router.edge.k8router"]
    return args


def test_the_periodic_run_passes_every_option_of_the_module() -> None:
    args = _module_task()
    assert sorted(args) == sorted(CONVERGE_ARGS)


def test_each_option_comes_from_the_same_key_of_the_parameters() -> None:
    for key, value in _module_task().items():
        expected = f"{{{{ k8router_params.{key} }}}}" if key == "clusters" else (
            f"{{{{ k8router_params.{key} | default(omit) }}}}"
        )  # fmt: skip
        assert value == expected, key
