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


def progress(line: str) -> str | None:
    """What ``make lab`` shows of an ansible-playbook line while the full output goes to the log: the play and
    task names (``PLAY [...]``, ``TASK [...]``, ``RUNNING HANDLER [...]``) and each failure, else None."""
    text = line.strip()
    for prefix in ("PLAY [", "TASK [", "RUNNING HANDLER ["):
        if text.startswith(prefix) and "]" in text:
            return text[: text.rindex("]") + 1]
    if text.startswith(("fatal:", "failed:")):
        return text[:200]
    return None


def playbook(name: str, *extra: str, quiet: bool = False) -> None:
    """``ansible-playbook -i <lab inventory> playbooks/<name>`` from the checkout. Its output goes to the terminal,
    or with ``quiet`` to a log under the lab directory while the terminal gets each play and task name as it
    starts (``progress``), so a long run is never minutes of silence."""
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(LAB_DIR / "inventory"), str(REPO / "playbooks" / name)]
    log(f"ansible-playbook playbooks/{name} {' '.join(extra)}".rstrip())
    started = time.monotonic()
    logfile = LAB_DIR / "logs" / f"{name.replace('/', '-')}.log"
    if quiet:
        with (
            logfile.open("a") as out,
            subprocess.Popen(
                [*argv, *extra],
                env=ansible_env(),
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ) as proc,
        ):
            for line in proc.stdout or ():
                out.write(line)
                if (shown := progress(line)) is not None:
                    print(f"  {time.monotonic() - started:4.0f}s {shown}", file=sys.stderr, flush=True)
        returncode = proc.returncode
    else:
        returncode = subprocess.run([*argv, *extra], env=ansible_env(), cwd=REPO, check=False).returncode
    if returncode != 0:
        where = f" (log: {logfile})" if quiet else ""
        raise LabFailure(f"playbooks/{name} failed with exit code {returncode}{where}")
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
