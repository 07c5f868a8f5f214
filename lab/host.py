# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Commands on this machine and in the lab's containers: processes, podman, ansible-playbook, and the client
container's probes (``lab/labclient.py`` run inside it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab.topology import CLIENT, CLIENT_LAB_CA, CLIENT_SCRIPT, INGRESS_VIP, LAB_DIR, REPO, VENV_BIN


class LabFailure(Exception):
    """Something the lab needs is missing or did not work; the message says what and where."""


def log(msg: str) -> None:
    print(f"lab: {msg}", file=sys.stderr, flush=True)


def run(argv: Sequence[str | Path], *, check: bool = True, capture: bool = True, **kw: Any) -> str:
    proc = subprocess.run([str(a) for a in argv], check=False, text=True, capture_output=capture, **kw)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip()[-3000:] if capture else ""
        raise LabFailure(f"`{' '.join(str(a) for a in argv)}` exited with {proc.returncode}\n{detail}")
    return proc.stdout or ""


def podman(*args: str, check: bool = True) -> str:
    return run(["podman", *args], check=check)


def in_container(name: str, *argv: str, check: bool = True) -> str:
    return podman("exec", name, *argv, check=check)


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["CONTAINERS_CONF"] = str(REPO / "lab" / "containers.conf")
    env.setdefault("ANSIBLE_FORCE_COLOR", "0")
    return env


def playbook(name: str, *extra: str, quiet: bool = False) -> None:
    """``ansible-playbook -i <lab inventory> playbooks/<name>`` from the checkout; its output goes to the terminal."""
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(LAB_DIR / "inventory"), str(REPO / "playbooks" / name)]
    log(f"ansible-playbook playbooks/{name} {' '.join(extra)}".rstrip())
    started = time.monotonic()
    out = None
    if quiet:
        out = (LAB_DIR / "logs" / f"{name.replace('/', '-')}.log").open("a")
    try:
        proc = subprocess.run([*argv, *extra], env=ansible_env(), cwd=REPO, check=False, stdout=out, stderr=out)
    finally:
        if out:
            out.close()
    if proc.returncode != 0:
        where = f" (log: {LAB_DIR / 'logs'})" if quiet else ""
        raise LabFailure(f"playbooks/{name} failed with exit code {proc.returncode}{where}")
    log(f"playbooks/{name}: ok in {time.monotonic() - started:.0f}s")


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def container_running(name: str) -> bool:
    out = podman("container", "inspect", "--format", "{{.State.Running}}", name, check=False)
    return out.strip() == "true"


def client(*args: str) -> dict[str, Any]:
    out = in_container(CLIENT, "python3", CLIENT_SCRIPT, *args)
    result: dict[str, Any] = json.loads(last_line(out))
    return result


def probe(host: str, count: int = 8) -> dict[str, Any]:
    return client("probe", "--vip", INGRESS_VIP, "--host", host, "--ca", CLIENT_LAB_CA, "--count", str(count))
