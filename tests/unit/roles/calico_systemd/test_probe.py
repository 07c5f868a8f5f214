"""The workers' token renewer (roles/calico_systemd/files/probe.py) where it needs no API server: an expired
token is an alarm naming the file, a token far from its end is left alone. Renewal itself runs against a real
API server in molecule/calico."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from types import ModuleType

import pytest

from tests.fixtures.scripts import load_script

PROBE = Path(__file__).resolve().parents[4] / "roles/calico_systemd/files/probe.py"


def probe() -> ModuleType:
    return load_script(PROBE, "calico_probe")


def token_dir(tmp_path: Path, expires: float) -> Path:
    claims = {"exp": expires, "kubernetes.io": {"namespace": "kube-system", "serviceaccount": {"name": "calico-node"}}}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    (tmp_path / "token").write_text(f"eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln")
    return tmp_path


def test_an_expired_token_is_an_alarm_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = token_dir(tmp_path, time.time() - 60)
    before = (directory / "token").read_text()
    assert probe().renew_token("token-renewer", str(directory), 3600, 600, 5) is False
    out = capsys.readouterr().out
    assert f"ALARM: the token {directory / 'token'} of kube-system/calico-node expired at" in out
    assert (directory / "token").read_text() == before


def test_a_token_far_from_its_end_is_left_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = token_dir(tmp_path, time.time() + 86400)
    before = (directory / "token").read_text()
    assert probe().renew_token("token-renewer", str(directory), 3600, 600, 5) is True  # no request is made
    assert capsys.readouterr().out == ""
    assert (directory / "token").read_text() == before


def test_an_unreadable_token_is_an_alarm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "token").write_text("garbage")
    assert probe().renew_token("token-renewer", str(tmp_path), 3600, 600, 5) is False
    assert "ALARM: the token" in capsys.readouterr().out
