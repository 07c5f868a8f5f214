# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What each host is served with, from the model and the certificates alone (nothing rendered). Pure.

The run renders haproxy's files from ``entries``; ``k8router_info`` and the run report ``hosts``.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.k8router.edge.plugins.module_utils._certs import Certificate, expiring, select_certificates
from ansible_collections.k8router.edge.plugins.module_utils._haproxy import CertEntry, cert_file_name
from ansible_collections.k8router.edge.plugins.module_utils._model import Model


@dataclass
class HostReport:
    hosts: list[dict[str, Any]] = field(default_factory=list)  # per host: clusters, backends, certificate, expires
    entries: list[CertEntry] = field(default_factory=list)  # the certificates haproxy serves, and their hosts
    warnings: list[str] = field(default_factory=list)


def host_report(model: Model, certs: Sequence[Certificate], now: datetime.datetime, expiry_days: int) -> HostReport:
    """Each host's row, the certificate entries, and a warning per host without a certificate and per
    certificate that expires within ``expiry_days``."""
    report = HostReport()
    chosen = select_certificates(list(model.hosts), certs, now)
    by_cert: dict[str, list[str]] = {}  # by the file it came from: a renewal keeps its place in haproxy
    cert_of: dict[str, Certificate] = {}
    for host, servings in model.hosts.items():
        pick = chosen[host]
        report.hosts.append(
            {
                "host": host,
                "clusters": [s.cluster for s in servings],
                "backends": sum(len(s.backends) for s in servings if s.weight),
                "certificate": pick.certificate.source if pick.certificate else None,
                "expires": pick.certificate.not_after.isoformat() if pick.certificate else None,
            }
        )
        if pick.certificate is None:
            report.warnings.append(f"host {host}: {pick.problem}; the default certificate answers for it")
            continue
        by_cert.setdefault(pick.certificate.source, []).append(host)
        cert_of[pick.certificate.source] = pick.certificate
    for cert in expiring(certs, now, expiry_days):
        report.warnings.append(f"certificate {cert.source} expires {cert.not_after.isoformat()}")
    report.entries = [
        CertEntry(cert_file_name(src), cert_of[src].pem, tuple(hosts)) for src, hosts in sorted(by_cert.items())
    ]
    return report
