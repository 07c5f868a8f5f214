"""The router role's API check certificates (roles/router/tasks/haproxy.yml): written for the clusters that set
``api_check_certificate`` and removed once a cluster no longer does, nothing else in the directory touched.

The role's own tasks, taken from the file by name, run with ansible-playbook on this host in a directory of the
test's (the second with its other files given as extra variables: one small main file); check mode reports the
removal and changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[4]
TASKS = (
    "Install the client certificates of the API health checks (clusters with anonymous access off)",
    "Write haproxy's files (seeded maps, the API health checks' CAs, the main file)",
)
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----"


def _play(data_dir: Path, certificates: dict[str, str], *, check: bool = False) -> dict[str, Any]:
    """Run the role's tasks for clusters -> their api_check_certificate ('' for none); the per-task results."""
    tasks = {t["name"]: t for t in yaml.safe_load((REPO / "roles/router/tasks/haproxy.yml").read_text())}
    play = [{
        "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars": {"router_haproxy_data_dir": str(data_dir), "router__api_check_certificates": certificates},
        "tasks": [tasks[name] for name in TASKS],
        "handlers": [{"name": "reload", "listen": "k8router haproxy reload", "ansible.builtin.debug": {"msg": "reload"}}],
    }]  # fmt: skip
    path = data_dir / "play.yml"
    path.write_text(yaml.safe_dump(play))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"}
    others = {"router__haproxy_seeds": [], "router__ca_files": "[]",
              "router__haproxy_main": {"path": str(data_dir / "haproxy.cfg"), "content": "global\n"}}  # fmt: skip
    argv = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        str(path),
        "-e",
        json.dumps(others),
        *(["--check"] if check else []),
    ]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    report = json.loads(out.stdout)
    return {t["task"]["name"]: t["hosts"]["localhost"] for t in report["plays"][0]["tasks"]}


def test_a_dropped_check_certificate_is_removed_and_nothing_else(tmp_path: Path) -> None:
    clusters = tmp_path / "clusters"  # router_haproxy_data_dir/clusters, which the role creates before
    clusters.mkdir()
    (clusters / "beta-ca.pem").write_text("CA\n")
    (clusters / "notes.txt").write_text("mine\n")
    _play(tmp_path, {"alpha": PEM, "beta": PEM, "gamma": ""})
    assert sorted(p.name for p in clusters.iterdir()) == [
        "alpha-check.pem",
        "beta-ca.pem",
        "beta-check.pem",
        "notes.txt",
    ]
    assert (clusters / "beta-check.pem").stat().st_mode & 0o777 == 0o600
    dropped = {"alpha": PEM, "beta": "", "gamma": ""}
    checked = _play(tmp_path, dropped, check=True)
    assert checked[TASKS[1]]["changed_paths"] == [str(clusters / "beta-check.pem")]
    assert (clusters / "beta-check.pem").exists()  # check mode: reported, not removed
    removed = _play(tmp_path, dropped)
    assert removed[TASKS[1]]["changed_paths"] == [str(clusters / "beta-check.pem")]
    assert sorted(p.name for p in clusters.iterdir()) == ["alpha-check.pem", "beta-ca.pem", "notes.txt"]
    again = _play(tmp_path, dropped)
    assert again[TASKS[1]].get("changed") is False and again[TASKS[1]]["changed_paths"] == []
