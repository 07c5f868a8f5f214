# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's ingress certificates: one CA kept in the lab directory (``tests/fixtures/pki.py``), certificates made
on the spot."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from lab.topology import DOMAIN, LAB_DIR
from tests.fixtures import pki


def lab_ca() -> pki.CertAuthority:
    return pki.CertAuthority.load_or_create(LAB_DIR / "pki", "k8router lab CA")


def certs_dir() -> Path:
    return LAB_DIR / "certs"


def write_certificate(ca: pki.CertAuthority, name: str, dns_names: Sequence[str]) -> Path:
    certs_dir().mkdir(mode=0o700, parents=True, exist_ok=True)
    return ca.write_pem(certs_dir() / f"{name}.pem", dns_names[0], dns_names)


def ensure_certificates() -> None:
    ca = lab_ca()
    if not (certs_dir() / "wildcard.pem").exists():
        write_certificate(ca, "wildcard", [f"*.{DOMAIN}"])
    if not (certs_dir() / "shop.pem").exists():
        # k8router serves the newest valid certificate covering a host (an exact name does not beat a newer
        # wildcard); shop.lab.test's own certificate starts a second later, so it is the one served.
        time.sleep(1.1)
        write_certificate(ca, "shop", [f"shop.{DOMAIN}"])
