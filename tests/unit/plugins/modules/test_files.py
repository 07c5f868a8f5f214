"""The files module (one call for many directories and files), run by ansible-playbook on this host in a directory
of the test's: written with their modes, a second run changes nothing, check mode reports and touches nothing,
``force: false`` keeps what exists, ``diff: false`` never shows the content, ``absent`` removes files only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[4]
SECRET = "token-that-must-not-show"


def _run(tmp: Path, args: dict[str, Any], *, check: bool = False) -> dict[str, Any]:
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False,
             "tasks": [{"name": "files", "k8router.edge.files": args}]}]  # fmt: skip
    path = tmp / "play.yml"
    path.write_text(yaml.safe_dump(play))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"}
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), str(path), "--diff", *(["--check"] if check else [])]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env, check=False)
    report = json.loads(out.stdout)
    result: dict[str, Any] = report["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return result


def _args(tmp: Path) -> dict[str, Any]:
    return {
        "directories": [{"path": str(tmp / "d" / "sub"), "mode": "0750"}],
        "files": [
            {"path": str(tmp / "d" / "sub" / "plain.conf"), "content": "a = 1\n", "mode": "0644"},
            {"path": str(tmp / "d" / "key.pem"), "content": SECRET, "mode": "0600", "diff": False},
            {"path": str(tmp / "d" / "seed.map"), "content": "seed\n", "mode": "0640", "force": False},
        ],
        "absent": [str(tmp / "d" / "old.txt")],
    }


def test_written_then_unchanged(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "old.txt").write_text("old\n")
    first = _run(tmp_path, _args(tmp_path))
    assert first["changed"] and not first.get("failed"), first
    assert len(first["changed_paths"]) == 5
    d = tmp_path / "d"
    assert (d / "sub").stat().st_mode & 0o777 == 0o750
    assert (d / "sub" / "plain.conf").read_text() == "a = 1\n"
    assert (d / "key.pem").stat().st_mode & 0o777 == 0o600
    assert not (d / "old.txt").exists()
    assert SECRET not in json.dumps(first["diff"])
    assert any(x["after"] == "a = 1\n" for x in first["diff"])
    again = _run(tmp_path, _args(tmp_path))
    assert not again["changed"] and again["changed_paths"] == [], again


def test_check_mode_reports_and_touches_nothing(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    checked = _run(tmp_path, _args(tmp_path), check=True)
    assert checked["changed"] and len(checked["changed_paths"]) == 4, checked  # nothing to remove
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == []


def test_force_false_keeps_what_exists_and_modes_are_put_back(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    _run(tmp_path, _args(tmp_path))
    (tmp_path / "d" / "seed.map").write_text("owned by k8router now\n")
    (tmp_path / "d" / "sub" / "plain.conf").chmod(0o666)
    result = _run(tmp_path, _args(tmp_path))
    assert result["changed_paths"] == [str(tmp_path / "d" / "sub" / "plain.conf")], result
    assert (tmp_path / "d" / "seed.map").read_text() == "owned by k8router now\n"
    assert (tmp_path / "d" / "sub" / "plain.conf").stat().st_mode & 0o777 == 0o644


def test_trim_ends_text_with_one_newline(tmp_path: Path) -> None:
    pem = tmp_path / "ca.pem"
    args = {"files": [{"path": str(pem), "content": "\n-----BEGIN-----\nabc\n-----END-----\n\n\n", "trim": True}]}
    assert _run(tmp_path, args)["changed"]
    assert pem.read_text() == "-----BEGIN-----\nabc\n-----END-----\n"
    assert not _run(tmp_path, args)["changed"]


def test_validate_sees_the_new_content_under_the_same_name_and_a_failure_keeps_the_file(tmp_path: Path) -> None:
    unit = tmp_path / "k8router-test.service"
    unit.write_text("old\n")
    checker = "sh -c 'case $1 in */k8router-test.service) grep -q good $1;; *) exit 3;; esac' check %s"
    bad = _run(tmp_path, {"files": [{"path": str(unit), "content": "bad\n", "validate": checker}]})
    assert bad.get("failed") and str(unit) in bad["msg"] and "file is unchanged" in bad["msg"], bad
    assert unit.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".k8router-")] == []
    good = _run(tmp_path, {"files": [{"path": str(unit), "content": "good\n", "validate": checker}]})
    assert good["changed"] and not good.get("failed"), good
    assert unit.read_text() == "good\n"


def test_prune_removes_matching_files_not_listed(tmp_path: Path) -> None:
    for name in ("a-check.pem", "b-check.pem", "c-ca.pem", "d-check.pem"):
        (tmp_path / name).write_text(name)
    prune = [
        {"path": str(tmp_path), "pattern": "*-check.pem", "keep": ["d-check.pem"]},
        {"path": str(tmp_path / "none"), "pattern": "*"},
    ]
    args = {"files": [{"path": str(tmp_path / "a-check.pem"), "content": "a"}], "prune": prune}
    checked = _run(tmp_path, args, check=True)
    assert str(tmp_path / "b-check.pem") in checked["changed_paths"] and (tmp_path / "b-check.pem").exists(), checked
    result = _run(tmp_path, args)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".pem") == [
        "a-check.pem",
        "c-ca.pem",
        "d-check.pem",
    ], result
    assert not _run(tmp_path, args)["changed"]
