# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where haproxy and k8router meet on a router: the one place the module and the router role read.

The module writes the files named here; the router role's haproxy.cfg refers to them (through the
``haproxy_files`` filter) and seeds them before the first run. The default paths are also the
defaults of the module's ``haproxy`` option and of the role's ``router_haproxy_*`` variables
(a unit test keeps the documented copies equal to these).
"""

from __future__ import annotations

HAPROXY_DEFAULTS: dict[str, str] = {
    "config": "/etc/haproxy/haproxy.cfg",
    "conf_dir": "/etc/haproxy/k8router.d",
    "data_dir": "/etc/haproxy/k8router",
    "socket": "/run/haproxy/admin.sock",
}

# Files of the data directory, by role.
DATA_FILES: dict[str, str] = {
    "hosts_map": "hosts.map",
    "wildcards_map": "wildcards.map",
    "crt_list": "crt-list.txt",
    "fallback": "fallback.pem",
    "default": "default.pem",
}
CERTS_DIR = "certs"


def data_file(data_dir: str, role: str) -> str:
    """The path of the data directory's file ``role`` (a key of DATA_FILES)."""
    return f"{data_dir.rstrip('/')}/{DATA_FILES[role]}"


def haproxy_files(data_dir: str) -> dict[str, str]:
    """Every file of the data directory by role, as paths (the router role's templates use these)."""
    return {role: data_file(data_dir, role) for role in DATA_FILES}
