# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plan: desired files and slots against what is on disk and applied. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.k8router.edge.plugins.module_utils._haproxy import (
    CertOp,
    Rendered,
    certificate_ops,
    generation,
    runtime_commands,
)


@dataclass
class Plan:
    """What a run changes: files to write and remove, and whether haproxy reloads or takes runtime commands."""

    write: dict[str, bytes] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)
    reload: bool = False
    commands: list[str] = field(default_factory=list)
    cert_ops: list[CertOp] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.write or self.remove or self.reload or self.commands or self.cert_ops)

    @property
    def shown_commands(self) -> list[str]:
        """Every runtime command as reported (a certificate's PEM never in it)."""
        return [*self.commands, *(str(op) for op in self.cert_ops)]

    def diff(self, current: Mapping[str, bytes | None]) -> list[dict[str, str]]:
        """Ansible diffs: the files (certificate files hold keys: named, never shown), runtime commands, reload."""
        diffs = []
        for path, data in sorted(self.write.items()):
            before = current.get(path)
            if path.endswith(".pem"):
                diffs.append(
                    {"before_header": path, "after_header": path, "before": "", "after": "(certificate and key)\n"}
                )
                continue
            diffs.append(
                {
                    "before_header": path,
                    "after_header": path,
                    "before": (before or b"").decode(errors="replace"),
                    "after": data.decode(errors="replace"),
                }
            )
        for path in sorted(self.remove):
            diffs.append({"before_header": path, "after_header": "(removed)", "before": "(file)\n", "after": ""})
        if self.commands or self.cert_ops:
            text = "".join(f"{c}\n" for c in self.shown_commands)
            diffs.append({"before_header": "haproxy runtime API", "after_header": "haproxy runtime API",
                          "before": "", "after": text})  # fmt: skip
        if self.reload:
            diffs.append({"before_header": "haproxy", "after_header": "haproxy", "before": "", "after": "reload\n"})
        return diffs


def make_plan(
    desired: Rendered,
    current: Mapping[str, bytes | None],
    applied: Mapping[str, Any],
    stale_certs: list[str],
    running: str | None = None,
) -> Plan:
    """Compare ``desired`` with the ``current`` files, the ``applied`` layout and what haproxy ``running``.

    ``running`` is the generation the running haproxy reports (None: nobody answered, so the
    applied layout is all there is to go by). haproxy runs the desired structure: slot and
    certificate changes go through the runtime API, no reload (unless the applied certificates are
    not known: a lost layout). Otherwise it reloads, whether or not the files still need writing:
    files written by a run whose reload failed or was killed are not yet served.
    """
    plan = Plan()
    plan.write = {path: data for path, data in desired.files.items() if current.get(path) != data}
    plan.remove = sorted(stale_certs)
    loaded = generation(str(applied.get("structure") or "")) if running is None else running
    if loaded == generation(desired.structure):
        # the applied slots say what the runtime holds; a lost layout: set every slot again
        same = applied.get("structure") == desired.structure
        plan.commands = runtime_commands(applied if same else {}, desired)
        cert_ops = certificate_ops(applied.get("certs") if same else None, desired)
        if cert_ops is None:
            plan.reload, plan.commands = True, []
        else:
            plan.cert_ops = cert_ops
    else:
        plan.reload = True
    return plan
