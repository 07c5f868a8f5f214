# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""haproxy: the renderer (pure) and the one escape function; the driver (files, validation, reload, runtime API)
is _haproxy_driver.

Layout written by k8router (file names in ``_layout``; the router role's main file refers to the maps and the crt-list):

- ``<conf_dir>/50-k8router.cfg``: one backend per host, with server slots per cluster;
- ``<data_dir>/hosts.map`` and ``<data_dir>/wildcards.map``: host -> backend;
- ``<data_dir>/crt-list.txt`` and ``<data_dir>/certs/<name>.pem``: certificates with SNI filters, each file
  named after the file the certificate came from (a renewal keeps the name).

Each cluster gets a power-of-two number of server slots in each backend, so pods coming and
going change only slot contents: those go through the runtime API, no reload. Certificates are
not part of the structure either: a renewed one, a new one, new SNI names or a certificate gone
are runtime changes too (``certificate_ops``), the files on disk changed with them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.k8router.edge.plugins.module_utils._hosts import host_problem
from ansible_collections.k8router.edge.plugins.module_utils._layout import CERTS_DIR, data_file
from ansible_collections.k8router.edge.plugins.module_utils._model import Backend, HealthCheck, Model, Serving
from ansible_collections.k8router.edge.plugins.module_utils._net import host_port

BACKENDS_FILE = "50-k8router.cfg"
MIN_SLOTS = 4
SNI_PER_LINE = 100  # SNI filters on one crt-list line
DESCRIPTION_MAX = 400  # characters of a backend description before quoting (haproxy limits line length)
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def quote(value: str) -> str:
    """The one escape function for any string that reaches haproxy's configuration.

    The result is a single word of haproxy's configuration language: single-quoted (no variable
    expansion, no escapes, ``#`` inert), with each ``'`` written as ``'\\''``, and every character
    outside printable ASCII (a newline would start a new directive) written out as ``\\xNN`` or
    ``\\uNNNN`` text.
    """
    text = _UNPRINTABLE.sub(_escaped, value)
    return "'" + text.replace("'", "'\\''") + "'"


def backend_name(key: str) -> str:
    """A backend name for ``key`` (the serving clusters): stable, unique, safe characters only."""
    return "k8r_" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _server_name(cluster: str, index: int) -> str:
    return f"{_NAME_BAD.sub('_', cluster)}_{index}"


def _slots(count: int) -> int:
    slots = MIN_SLOTS
    while slots < count:
        slots *= 2
    return slots


_addr = host_port


@dataclass(frozen=True)
class Slot:
    """One server line: where it points, its weight, and whether it takes traffic."""

    address: str
    port: int
    weight: int
    enabled: bool

    def as_list(self) -> list[Any]:
        return [self.address, self.port, self.weight, self.enabled]


@dataclass(frozen=True)
class CertEntry:
    """A certificate file and the hosts (SNI filters) it serves; ``name`` is the file's stem (``cert_file_name``)."""

    name: str
    pem: bytes
    hosts: tuple[str, ...]


def cert_file_name(source: str) -> str:
    """The stem of the file k8router writes for the certificate read from ``source``.

    The same source always gives the same name, so a renewed certificate replaces the one haproxy holds
    (``set ssl cert``) instead of arriving as a new one; the stem of the source keeps it readable.
    """
    stem = _NAME_BAD.sub("_", os.path.splitext(os.path.basename(source))[0])[:40]
    return f"{stem}-{hashlib.sha256(source.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class CertOp:
    """One step on haproxy's certificate store or crt-list through the runtime API.

    ``verb``: ``new`` (an empty store entry), ``set`` (the file's PEM into a transaction), ``commit``,
    ``add-line`` / ``del-line`` (a crt-list line: ``path`` and ``line``, its options and SNI filters),
    ``del`` (the store entry, once no line uses it). The PEM is never part of the op: the driver reads
    it from the rendered files, and ``str()`` shows ``(certificate and key)`` in its place.
    """

    verb: str
    path: str
    line: str = ""

    def __str__(self) -> str:
        shown = {
            "new": f"new ssl cert {self.path}",
            "set": f"set ssl cert {self.path} <<(certificate and key)",
            "commit": f"commit ssl cert {self.path}",
            "add-line": f"add ssl crt-list <<{self.path} {self.line}",
            "del-line": f"del ssl crt-list {self.path} ({self.line})",
            "del": f"del ssl cert {self.path}",
        }
        return shown[self.verb]


@dataclass(frozen=True)
class RenderSettings:
    conf_dir: str
    data_dir: str
    backend_tls: bool = False
    backend_ca_file: str | None = None
    default_certificate: bytes | None = None  # PEM (cert + key); None: the router role's fallback.pem
    # Where the files go and what they name: "" for the router itself, a directory for a candidate to validate
    # (every path the files hold, and every path they are written to, is then under it).
    root: str = ""

    @property
    def conf(self) -> str:
        return self.root.rstrip("/") + self.conf_dir.rstrip("/")

    @property
    def data(self) -> str:
        return self.root.rstrip("/") + self.data_dir.rstrip("/")


@dataclass
class Rendered:
    """Every file k8router owns, and the layout (structure hash + server slots) they describe."""

    files: dict[str, bytes] = field(default_factory=dict)
    structure: str = ""
    slots: dict[str, Slot] = field(default_factory=dict)  # "backend/server" -> slot
    crt_list: str = ""  # the crt-list file
    certs: dict[str, str] = field(default_factory=dict)  # certificate file -> sha256 of its PEM
    crt_lines: list[tuple[str, str]] = field(default_factory=list)  # crt-list lines after the first: (file, rest)

    def layout(self) -> dict[str, Any]:
        return {
            "structure": self.structure,
            "slots": {k: v.as_list() for k, v in sorted(self.slots.items())},
            "certs": {"files": dict(sorted(self.certs.items())), "lines": [list(line) for line in self.crt_lines]},
        }


def _assign(
    backends: Sequence[Backend], names: Sequence[str], previous: Mapping[str, Slot], prefix: str
) -> list[Backend | None]:
    """Backends to slots: each stays in the slot it had (pods coming and going move nothing else)."""
    wanted = list(backends)
    placed: list[Backend | None] = [None] * len(names)
    for index, name in enumerate(names):
        prev = previous.get(f"{prefix}/{name}")
        if prev is not None and prev.enabled and Backend(prev.address, prev.port) in wanted:
            placed[index] = Backend(prev.address, prev.port)
            wanted.remove(placed[index])  # type: ignore[arg-type]
    for index in range(len(names)):
        if placed[index] is None and wanted:
            placed[index] = wanted.pop(0)
    return placed


def _server_options(settings: RenderSettings) -> str:
    if not settings.backend_tls:
        return ""
    if settings.backend_ca_file:
        return f" ssl verify required ca-file {quote(settings.backend_ca_file)} sni req.hdr(host),field(1,:)"
    return " ssl verify none sni req.hdr(host),field(1,:)"


def check_backend_name(cluster: str) -> str:
    """The backend that health-checks ``cluster``'s controller pods (the host backends' servers track it)."""
    return f"k8r_pods_{_NAME_BAD.sub('_', cluster)}"


GENERATION_PREFIX = "k8r_generation_"


def generation(structure: str) -> str:
    """The part of a layout's structure hash that names its generation backend."""
    return structure[:24]


def generation_backend(structure: str) -> str:
    """An empty backend whose name says which layout haproxy loaded (``show backend`` reports it)."""
    return GENERATION_PREFIX + generation(structure)


def _shares(servings: Sequence[Serving]) -> dict[str, int]:
    """Each cluster's per-pod server weight, so that each cluster gets its weight's share of the
    requests whatever its number of pods (haproxy's weights are 0..256 per server)."""
    per_pod = {s.cluster: s.weight / len(s.backends) for s in servings if s.weight and s.backends}
    if not per_pod:
        return {s.cluster: 0 for s in servings}
    scale = 256 / max(per_pod.values())
    return {s.cluster: max(1, round(per_pod[s.cluster] * scale)) if s.cluster in per_pod else 0 for s in servings}


def _pod_slots(
    servings: Mapping[str, Serving], previous: Mapping[str, Slot]
) -> dict[str, list[tuple[str, Backend | None, bool]]]:
    """Per cluster: its slots (server name, pod or None, draining), the same in every backend.

    Each pod stays in the slot it had (pods coming and going move nothing else).
    """
    placed: dict[str, list[tuple[str, Backend | None, bool]]] = {}
    for cluster, serving in sorted(servings.items()):
        pods = list(serving.backends) + [b for b in serving.draining if b not in serving.backends]
        names = [_server_name(cluster, i + 1) for i in range(_slots(len(pods)))]
        assigned = _assign(pods, names, previous, check_backend_name(cluster))
        placed[cluster] = [
            (name, pod, pod is not None and pod not in serving.backends)
            for name, pod in zip(names, assigned, strict=True)
        ]
    return placed


def _check_backend(
    cluster: str, check: HealthCheck, slots: Sequence[tuple[str, Backend | None, bool]], tls: bool, out: Rendered
) -> tuple[list[str], list[str]]:
    """The backend that checks ``cluster``'s pods; no frontend uses it, the host backends track it."""
    name = check_backend_name(cluster)
    head = [f"backend {name}", "    mode http", f"    description {quote(f'health checks of cluster {cluster}')}"]
    if check.type == "http":
        head += [
            "    option httpchk",
            f"    http-check send meth GET uri {quote(check.path)}",
            f"    http-check expect status {check.status}",
        ]
    # A pod whose check changes state is checked 4x as often until it settles; a pod that is down, 2x.
    fast, down = max(100, check.inter_ms // 4), max(100, check.inter_ms // 2)
    options = (
        f" check inter {check.inter_ms}ms fastinter {fast}ms downinter {down}ms fall {check.fall} rise {check.rise}"
    )
    if check.port is not None:
        options += f" port {check.port}"
    elif check.type == "http" and tls:
        options += " check-ssl verify none"
    lines, skeleton = list(head), list(head)
    for server, pod, _draining in slots:
        slot = Slot(pod.address, pod.port, 1, True) if pod else Slot("0.0.0.0", 80, 1, False)  # noqa: S104
        out.slots[f"{name}/{server}"] = slot
        state = "" if slot.enabled else " disabled"
        lines.append(f"    server {server} {_addr(slot.address, slot.port)} weight 1{state}{options}")
        skeleton.append(f"    server {server}{options}")
    return [*lines, ""], [*skeleton, ""]


def _backend(
    name: str,
    clusters: Sequence[str],
    count: int,
    servings: Sequence[Serving],
    options: str,
    *,
    slots: Mapping[str, Sequence[tuple[str, Backend | None, bool]]],
    out: Rendered,
) -> tuple[list[str], list[str]]:
    """The lines of one backend, and its skeleton (the lines without slot contents).

    A pod's server tracks its health check (one check per pod, whatever the number of backends);
    a failed connection is retried on another pod (never for a POST or PATCH once sent).
    """
    description = f"{count} host(s) served by {', '.join(clusters)}"
    if len(description) > DESCRIPTION_MAX:
        description = description[: DESCRIPTION_MAX - 3] + "..."
    head = [
        f"backend {name}",
        "    mode http",
        f"    description {quote(description)}",
        "    balance roundrobin",
        "    option redispatch 1",
        "    retries 3",
        "    retry-on conn-failure empty-response",
        "    http-request disable-l7-retry if METH_POST || { method PATCH }",
    ]
    lines, skeleton = list(head), list(head)
    shares = _shares(servings)
    for serving in servings:
        track = check_backend_name(serving.cluster)
        for server, pod, draining in slots[serving.cluster]:
            if pod is not None:
                slot = Slot(pod.address, pod.port, 0 if draining else shares[serving.cluster], True)
            else:
                slot = Slot("0.0.0.0", 80, 0, False)  # noqa: S104 - an unused slot, disabled
            out.slots[f"{name}/{server}"] = slot
            state = "" if slot.enabled else " disabled"
            tracked = f" track {track}/{server}{options}"
            lines.append(f"    server {server} {_addr(slot.address, slot.port)} weight {slot.weight}{state}{tracked}")
            skeleton.append(f"    server {server}{tracked}")
    return [*lines, ""], [*skeleton, ""]


def _crt_list(certs: Sequence[CertEntry], settings: RenderSettings, out: Rendered) -> bytes:
    data = settings.data
    crt_lines = [data_file(data, "fallback")]
    if settings.default_certificate is not None:
        out.files[data_file(data, "default")] = settings.default_certificate
        crt_lines = [data_file(data, "default")]
    for cert in certs:
        path = f"{data}/{CERTS_DIR}/{cert.name}.pem"
        out.files[path] = cert.pem
        # haproxy reads crt-list lines of at most 64 KiB: a certificate's SNI filters go on several
        # lines of the same file (haproxy loads the file once).
        hosts = list(dict.fromkeys(h for h in cert.hosts if host_problem(h) is None))
        for first in range(0, len(hosts), SNI_PER_LINE):
            out.crt_lines.append((path, f"[alpn h2,http/1.1] {' '.join(hosts[first : first + SNI_PER_LINE])}"))
    return ("\n".join([*crt_lines, *(f"{path} {rest}" for path, rest in out.crt_lines)]) + "\n").encode()


def render(
    model: Model, certs: Sequence[CertEntry], settings: RenderSettings, previous: Mapping[str, Slot] | None = None
) -> Rendered:
    """All of k8router's haproxy files for ``model``.

    Hosts served by the same clusters share one backend, so a pod coming or going touches one
    backend per set of clusters, not one per host. Each cluster's pods are health-checked once, in
    a backend of their own that the host backends' servers track. ``previous`` (the applied slots)
    keeps every pod in the slot it had. Hosts that are not valid Ingress hosts never reach a map
    (defence in depth: the model refuses them first). The file ends with an empty backend named
    after the layout, so the running haproxy says which layout it loaded.
    """
    out = Rendered()
    lines = ["# Written by k8router: one backend per set of clusters serving hosts. Do not edit.", ""]
    skeleton = list(lines)
    exact: list[str] = []
    wild: list[str] = []
    groups: dict[tuple[str, ...], list[str]] = {}
    servings: dict[str, Serving] = {}
    for host, host_servings in model.hosts.items():
        if host_problem(host) is None:
            groups.setdefault(tuple(s.cluster for s in host_servings), []).append(host)
            servings.update((s.cluster, s) for s in host_servings)
    slots = _pod_slots(servings, previous or {})
    for cluster in sorted(servings):
        check = model.health_checks.get(cluster, HealthCheck())
        block, block_skeleton = _check_backend(cluster, check, slots[cluster], settings.backend_tls, out)
        lines.extend(block)
        skeleton.extend(block_skeleton)
    options = _server_options(settings)
    for clusters, hosts in sorted(groups.items()):
        name = backend_name("|".join(clusters))
        for host in hosts:
            (wild if host.startswith("*.") else exact).append(f"{host} {name}")
        block, block_skeleton = _backend(
            name, clusters, len(hosts), model.hosts[hosts[0]], options, slots=slots, out=out
        )
        lines.extend(block)
        skeleton.extend(block_skeleton)
    conf, data = settings.conf, settings.data
    out.files[data_file(data, "hosts_map")] = "".join(f"{line}\n" for line in sorted(exact)).encode()
    out.files[data_file(data, "wildcards_map")] = "".join(f"{line}\n" for line in sorted(wild)).encode()
    out.crt_list = data_file(data, "crt_list")
    out.files[out.crt_list] = _crt_list(certs, settings, out)
    # The certificates and the crt-list lines after the first (the bind lines' default certificate) are not
    # structure: they change through the runtime API.
    out.certs = {path: hashlib.sha256(pem).hexdigest() for path, pem in out.files.items() if path.endswith(".pem")}
    hashed = {k: hashlib.sha256(v).hexdigest() for k, v in sorted(out.files.items()) if k not in out.certs}
    hashed[out.crt_list] = out.files[out.crt_list].decode().split("\n", 1)[0]
    digest = hashlib.sha256("\n".join(skeleton).encode())
    digest.update(json.dumps(hashed).encode())
    out.structure = digest.hexdigest()
    lines += [f"backend {generation_backend(out.structure)}", "    mode http", ""]
    out.files[f"{conf}/{BACKENDS_FILE}"] = "\n".join(lines).encode()
    return out


def runtime_commands(before: Mapping[str, Any], after: Rendered) -> list[str]:
    """Runtime API commands that turn the applied slots ``before`` into ``after``'s (same structure only)."""
    old = {k: Slot(*v) for k, v in (before.get("slots") or {}).items()}
    commands: list[str] = []
    for key, slot in sorted(after.slots.items()):
        prev = old.get(key)
        if prev == slot:
            continue
        if slot.enabled and (prev is None or (prev.address, prev.port) != (slot.address, slot.port)):
            commands.append(f"set server {key} addr {slot.address} port {slot.port}")
        if prev is None or prev.weight != slot.weight:
            commands.append(f"set server {key} weight {slot.weight}")
        if prev is None or prev.enabled != slot.enabled:
            commands.append(f"set server {key} state {'ready' if slot.enabled else 'maint'}")
    return commands


def sni_filters(rest: str) -> frozenset[str]:
    """The SNI filters of a crt-list line's remainder (what follows the ``[options]``, if any)."""
    return frozenset(rest.rpartition("]")[2].split() if "]" in rest else rest.split())


def certificate_ops(before: Mapping[str, Any] | None, after: Rendered) -> list[CertOp] | None:
    """The runtime steps that turn the applied certificates ``before`` (a layout's ``certs``) into ``after``'s.

    None when ``before`` is not known (a lost or older layout): only a reload makes sure then. New files
    first (new, set, commit), then the renewed ones (set, commit), then the crt-list lines to add, and
    only then the lines to delete and the files no line uses any more, so a host is never without its
    certificate in between.
    """
    if not isinstance(before, Mapping):
        return None
    files, lines = before.get("files"), before.get("lines")
    if not isinstance(files, Mapping) or not isinstance(lines, list):
        return None
    ops: list[CertOp] = []
    for path, digest in sorted(after.certs.items()):
        if path not in files:
            ops += [CertOp("new", path), CertOp("set", path), CertOp("commit", path)]
        elif files[path] != digest:
            ops += [CertOp("set", path), CertOp("commit", path)]
    old = Counter((str(line[0]), str(line[1])) for line in lines if isinstance(line, list) and len(line) == 2)
    new = Counter(after.crt_lines)
    added, removed = new - old, old - new
    ops += [CertOp("add-line", path, rest) for path, rest in after.crt_lines if (path, rest) in added]
    ops += [CertOp("del-line", path, rest) for path, rest in sorted(removed.elements())]
    ops += [CertOp("del", path) for path in sorted(files) if path not in after.certs and path.endswith(".pem")]
    return ops
