# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plan: desired files and slots against what is on disk and applied. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.k8router.edge.plugins.module_utils._haproxy import Rendered, runtime_commands


@dataclass
class Plan:
    """What a run changes: files to write and remove, and whether haproxy reloads or takes runtime commands."""

    write: dict[str, bytes] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)
    reload: bool = False
    commands: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.write or self.remove or self.reload or self.commands)

    def diff(self, current: Mapping[str, bytes | None]) -> list[dict[str, str]]:
        """Ansible diffs of the files; certificate files (they hold keys) are named, never shown."""
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
        return diffs


def make_plan(
    desired: Rendered, current: Mapping[str, bytes | None], applied: Mapping[str, Any], stale_certs: list[str]
) -> Plan:
    """Compare ``desired`` with the ``current`` files and the ``applied`` layout.

    Same structure as applied: slot changes go through the runtime API, no reload. Otherwise any
    file change reloads (files already as desired need nothing: haproxy loaded them).
    """
    plan = Plan()
    plan.write = {path: data for path, data in desired.files.items() if current.get(path) != data}
    plan.remove = sorted(stale_certs)
    if applied.get("structure") == desired.structure:
        plan.commands = runtime_commands(applied, desired)
    else:
        plan.reload = bool(plan.write or plan.remove)
    return plan
