# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the lab is built from, each built once and cached outside the repository: the images, the Kubernetes and
Calico binaries (``tools/``), the routers' wheels. Recorded in the lab directory for the later commands."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from lab.host import LabFailure, last_line, log, run
from lab.topology import CACHE, LAB_DIR, REPO

PARTS_FILE = LAB_DIR / "parts.json"


@dataclass(frozen=True)
class Parts:
    calico_assets: str
    calico_bin: str
    wheelhouse: str
    kube_bin: str = ""  # kube-proxy for the workers (tools/k8s-build.sh)

    def save(self) -> None:
        """For the commands after ``up`` (a scenario rewrites the inventory from them)."""
        PARTS_FILE.write_text(json.dumps(dataclasses.asdict(self)) + "\n")

    @classmethod
    def load(cls) -> Parts:
        if not PARTS_FILE.exists():
            raise LabFailure(f"{PARTS_FILE} is missing: the lab is not up (make lab)")
        return cls(**json.loads(PARTS_FILE.read_text()))


def router_requirements() -> list[str]:
    defaults = yaml.safe_load((REPO / "roles" / "converge" / "defaults" / "main.yml").read_text())
    return [str(r) for r in defaults.get("converge_requirements", [])]


# The routers' Pythons: Debian 12's and Debian 13's python3.
ROUTER_PYTHONS = ("3.11", "3.13")


def wheelhouse() -> Path:
    """The wheels of the routers' k8router venv for each of ``ROUTER_PYTHONS``, keyed by the role's pinned list.

    The key is the one molecule/router/molecule.yml computes: sha256 of the requirements joined by spaces.
    A stamp per Python says its wheels are complete; a missing one is downloaded into the same directory.
    """
    reqs = router_requirements()
    if not reqs:
        raise LabFailure("roles/converge/defaults/main.yml: converge_requirements is empty")
    target = CACHE / "wheels" / hashlib.sha256(" ".join(reqs).encode()).hexdigest()[:12]
    for version in ROUTER_PYTHONS:
        stamp = target / f".complete-py{version}"
        if stamp.exists():
            continue
        log(f"downloading the routers' wheels for Python {version} ({', '.join(reqs)}) into {target}")
        partial = target.with_name(f"{target.name}.py{version}.tmp")
        run(["rm", "-rf", partial])
        argv: list[str | Path] = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
        argv += ["--dest", partial, "--python-version", version, "--only-binary=:all:"]
        for plat in ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64"):
            argv += ["--platform", plat]
        run([*argv, *reqs])
        target.mkdir(parents=True, exist_ok=True)
        for wheel in partial.iterdir():
            wheel.replace(target / wheel.name)
        run(["rm", "-rf", partial])
        stamp.touch()
    return target


def build_parts() -> Parts:
    log("images, Kubernetes binaries, Calico, wheels (each built once, then cached)")
    run([REPO / "tools" / "image.sh", "router", "router-trixie", "worker", "client"], capture=False)
    kube_bin = last_line(run([REPO / "tools" / "k8s-build.sh"], capture=True))
    assets = last_line(run([REPO / "tools" / "calico-build.sh", "--assets"]))
    built = subprocess.run(
        [str(REPO / "tools" / "calico-build.sh")], check=False, text=True, capture_output=True, cwd=REPO
    )
    calico_bin = last_line(built.stdout) if built.returncode == 0 else ""
    if not calico_bin:
        reason = [line for line in built.stderr.splitlines() if "403" in line or "not available" in line]
        log(
            "calico-node cannot be built here "
            f"({reason[0].strip() if reason else 'see tools/calico-build.sh'}); "
            "the workers run calico_systemd without it and BIRD gets confd's configuration from the lab"
        )
    return Parts(assets, calico_bin, str(wheelhouse()), kube_bin)
