# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""IPVS: the table model, the parser of ``ipvsadm -Sn``, the planner (pure) and a small driver.

k8router serves LoadBalancer services with IPVS virtual services (``VIP:port`` per protocol) whose real
servers are the service's cluster IPs in every cluster offering it, always forwarded with NAT
(masquerading, ``-m``). A weight of 0 drains a real server: it gets no new connections, the ones it
has finish.

The planner works by difference against the kernel's table and never flushes it: it touches only the
virtual services the caller's ``owned`` predicate says are k8router's, everything else (entries made by
hand, by keepalived, by other tools, firewall-mark services) is left alone. Flags the model does not know
(``-M``, ``--pe``, ``-b``, tunnel options, ...) are kept verbatim in ``options`` when parsed; on a
k8router-owned entry they are reset by an edit, on a foreign entry they are never looked at.

Every command goes through an injected runner ``runner(argv) -> (rc, stdout, stderr)`` (Ansible's
``run_command`` in the modules, a subprocess wrapper in tests and the lab). Everything placed on an
``ipvsadm`` command line is validated first (addresses parsed, ports and weights in range, scheduler
names from a fixed alphabet), so an argv or a restore line can only ever say what the model says.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ansible_collections.k8router.edge.plugins.module_utils._net import checked_address, checked_integer, host_port

ServiceKey = tuple[str, str, int]  # (protocol, address, port)
RealKey = tuple[str, int]  # (address, port)
Runner = Callable[[Sequence[str]], "tuple[int, str, str]"]
StdinRunner = Callable[[Sequence[str], str], "tuple[int, str, str]"]

PROTOCOLS = ("tcp", "udp", "sctp")
PROTOCOL_FLAG = {"tcp": "-t", "udp": "-u", "sctp": "--sctp-service"}
_FLAG_PROTOCOL = {
    "-t": "tcp",
    "--tcp-service": "tcp",
    "-u": "udp",
    "--udp-service": "udp",
    "--sctp-service": "sctp",
}
_FWMARK_FLAGS = ("-f", "--fwmark-service")
FORWARDS = {"-m": "masq", "-g": "route", "-i": "tunnel"}
_FORWARD_LONG = {"--masquerading": "masq", "--gatewaying": "route", "--ipip": "tunnel"}
MASQ = "masq"
MAX_WEIGHT = 65535
_SCHEDULER = re.compile(r"[a-z][a-z0-9_]{0,14}")  # IP_VS_SCHEDNAME_MAXLEN is 16 with the NUL
_ENDPOINT6 = re.compile(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})")
_ENDPOINT4 = re.compile(r"([0-9.]+):(\d{1,5})")
_SPACE = re.compile(r"\s")

OP_DELETE_REAL = "delete-real"
OP_ADD_SERVICE = "add-service"
OP_ADD_REAL = "add-real"
OP_EDIT_SERVICE = "edit-service"
OP_EDIT_REAL = "edit-real"
OP_DELETE_SERVICE = "delete-service"
_OP_FLAG = {
    OP_DELETE_REAL: "-d",
    OP_ADD_SERVICE: "-A",
    OP_ADD_REAL: "-a",
    OP_EDIT_SERVICE: "-E",
    OP_EDIT_REAL: "-e",
    OP_DELETE_SERVICE: "-D",
}
_REAL_OPS = (OP_DELETE_REAL, OP_ADD_REAL, OP_EDIT_REAL)
_PROTOCOL_ORDER = {p: i for i, p in enumerate(PROTOCOLS)}


class IpvsError(Exception):
    """ipvsadm refused an operation, or its output could not be understood.

    ``op`` is the operation that failed (None when reading), ``applied`` how many operations of the batch
    took effect before it, ``stderr`` what ipvsadm said.
    """

    def __init__(self, message: str, op: Op | None = None, applied: int = 0, stderr: str = "") -> None:
        super().__init__(message)
        self.op = op
        self.applied = applied
        self.stderr = stderr


# No IPv6 scope ("fe80::1%eth0": IPVS has no use for link-local virtual services or real servers): _net's check.
_address = checked_address
_integer = checked_integer


def _tokens(value: object, what: str) -> tuple[str, ...]:
    """Flags kept verbatim: each one word (they end up on an argv and on ``ipvsadm -R`` lines)."""
    words = tuple(value) if isinstance(value, (tuple, list)) else None
    if words is None or not all(isinstance(w, str) and w and not _SPACE.search(w) for w in words):
        raise ValueError(f"{what}: flags {value!r} are not single words")
    return words


endpoint = host_port  # ``address:port`` as ipvsadm writes and reads it


def parse_endpoint(text: str) -> tuple[str, int]:
    """The inverse of :func:`endpoint` (the address normalized)."""
    match = _ENDPOINT6.fullmatch(text) or _ENDPOINT4.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not an ipvsadm address:port")
    return _address(match.group(1), text), _integer(int(match.group(2)), 0, 65535, f"port of {text}")


def _family(address: str) -> int:
    return 6 if ":" in address else 4


def service_key(protocol: str, address: str, port: int) -> ServiceKey:
    """A normalized key: the protocol checked, the address in its compressed form."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    return protocol, _address(address, "virtual service address"), _integer(port, 0, 65535, "virtual service port")


@functools.lru_cache(maxsize=65536)
def _address_order(address: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(address)
    return ip.version, int(ip)


def key_order(key: ServiceKey) -> tuple[int, int, int, int]:
    """Sort key for service keys: protocol, address family, numeric address, port."""
    return (_PROTOCOL_ORDER.get(key[0], 99), *_address_order(key[1]), key[2])


@dataclass(frozen=True)
class RealServer:
    """A real server of a virtual service (for k8router: a service's cluster IP and port in one cluster).

    ``forward`` is ``masq`` for everything k8router makes; ``route``/``tunnel`` only appear when reading a
    table. ``options`` holds flags read from the table that the model does not know (tunnel settings).
    """

    address: str
    port: int
    weight: int = 1
    forward: str = MASQ
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", _address(self.address, "real server address"))
        _integer(self.port, 0, 65535, f"port of real server {self.address}")
        _integer(self.weight, 0, MAX_WEIGHT, f"weight of real server {self.address}")
        if self.forward not in FORWARDS.values():
            raise ValueError(f"real server {self.address}: forwarding {self.forward!r} is unknown")
        object.__setattr__(self, "options", _tokens(self.options, f"real server {self.address}"))

    @property
    def key(self) -> RealKey:
        return self.address, self.port

    @property
    def endpoint(self) -> str:
        return endpoint(self.address, self.port)


@dataclass(frozen=True)
class VirtualService:
    """An IPVS virtual service, keyed by (protocol, address, port), with its real servers (kept sorted).

    ``persistence`` is the persistence timeout in seconds (``-p``; None: not persistent), which is what a
    Service's ``sessionAffinity: ClientIP`` asks for. ``options`` holds flags read from the table that the
    model does not know.
    """

    protocol: str
    address: str
    port: int
    scheduler: str = "wrr"
    reals: tuple[RealServer, ...] = ()
    persistence: int | None = None
    options: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", service_key(self.protocol, self.address, self.port)[1])
        if not isinstance(self.scheduler, str) or not _SCHEDULER.fullmatch(self.scheduler):
            raise ValueError(f"{self.name}: scheduler {self.scheduler!r} is not a scheduler name")
        if self.persistence is not None:
            _integer(self.persistence, 1, 2**31 - 1, f"{self.name}: persistence timeout")
        for real in self.reals:
            if not isinstance(real, RealServer):
                raise ValueError(f"{self.name}: {real!r} is not a RealServer")
        reals = tuple(sorted(self.reals, key=lambda r: (*_address_order(r.address), r.port)))
        seen: set[RealKey] = set()
        for real in reals:
            if real.key in seen:
                raise ValueError(f"{self.name}: real server {real.endpoint} listed twice")
            seen.add(real.key)
        object.__setattr__(self, "reals", reals)
        object.__setattr__(self, "options", _tokens(self.options, self.name))

    @property
    def key(self) -> ServiceKey:
        return self.protocol, self.address, self.port

    @property
    def endpoint(self) -> str:
        return endpoint(self.address, self.port)

    @property
    def name(self) -> str:
        """Human name: ``tcp 10.0.0.1:80``."""
        return f"{self.protocol} {endpoint(self.address, self.port)}"

    def service_args(self) -> list[str]:
        return [PROTOCOL_FLAG[self.protocol], self.endpoint]

    def settings_args(self) -> list[str]:
        args = ["-s", self.scheduler]
        if self.persistence is not None:
            args += ["-p", str(self.persistence)]
        return args + list(self.options)


def _real_args(real: RealServer) -> list[str]:
    forward = next(flag for flag, name in FORWARDS.items() if name == real.forward)
    return ["-r", real.endpoint, forward, "-w", str(real.weight), *real.options]


@dataclass(frozen=True)
class Op:
    """One ipvsadm operation. ``argv`` is ipvsadm's arguments (without the program), ``text`` says it for humans."""

    kind: str
    service: VirtualService
    real: RealServer | None = None
    previous: object | None = None  # for edits: the VirtualService or RealServer being replaced

    def __post_init__(self) -> None:
        if self.kind not in _OP_FLAG:
            raise ValueError(f"operation {self.kind!r} is not one of {', '.join(_OP_FLAG)}")
        if not isinstance(self.service, VirtualService):
            raise ValueError(f"operation {self.kind}: {self.service!r} is not a VirtualService")
        if (self.kind in _REAL_OPS) != isinstance(self.real, RealServer):
            raise ValueError(f"operation {self.kind} on {self.service.name}: real server {self.real!r}")

    @property
    def key(self) -> ServiceKey:
        return self.service.key

    def _real(self) -> RealServer:
        if self.real is None:  # excluded by __post_init__
            raise ValueError(f"operation {self.kind} has no real server")
        return self.real

    @property
    def argv(self) -> tuple[str, ...]:
        args = [_OP_FLAG[self.kind], *self.service.service_args()]
        if self.kind in (OP_ADD_SERVICE, OP_EDIT_SERVICE):
            args += self.service.settings_args()
        elif self.kind in (OP_ADD_REAL, OP_EDIT_REAL):
            args += _real_args(self._real())
        elif self.kind == OP_DELETE_REAL:
            args += ["-r", self._real().endpoint]
        return tuple(args)

    @property
    def text(self) -> str:
        svc = self.service
        if self.kind == OP_ADD_SERVICE:
            extra = f", persistence {svc.persistence} s" if svc.persistence is not None else ""
            return f"add virtual service {svc.name} (scheduler {svc.scheduler}{extra})"
        if self.kind == OP_DELETE_SERVICE:
            return f"delete virtual service {svc.name} (with its {len(svc.reals)} real servers)"
        if self.kind == OP_EDIT_SERVICE:
            return f"edit virtual service {svc.name}: {_service_change(self.previous, svc)}"
        real = self._real()
        if self.kind == OP_ADD_REAL:
            return f"add real server {real.endpoint} to {svc.name} (NAT, weight {_weight(real.weight)})"
        if self.kind == OP_DELETE_REAL:
            return f"delete real server {real.endpoint} from {svc.name}"
        return f"edit real server {real.endpoint} of {svc.name}: {_real_change(self.previous, real)}"

    def __str__(self) -> str:
        return self.text


def _weight(weight: int) -> str:
    return f"{weight} (drain)" if weight == 0 else str(weight)


def _service_change(old: object, new: VirtualService) -> str:
    if not isinstance(old, VirtualService):
        return f"scheduler {new.scheduler}"
    changes = []
    if old.scheduler != new.scheduler:
        changes.append(f"scheduler {old.scheduler} -> {new.scheduler}")
    if old.persistence != new.persistence:
        changes.append(f"persistence {old.persistence or 'off'} -> {new.persistence or 'off'}")
    if old.options != new.options:
        changes.append(f"flags {' '.join(old.options) or '(none)'} -> {' '.join(new.options) or '(none)'}")
    return ", ".join(changes)


def _real_change(old: object, new: RealServer) -> str:
    if not isinstance(old, RealServer):
        return f"weight {_weight(new.weight)}"
    changes = []
    if old.weight != new.weight:
        changes.append(f"weight {old.weight} -> {_weight(new.weight)}")
    if old.forward != new.forward:
        changes.append(f"forwarding {old.forward} -> {new.forward}")
    if old.options != new.options:
        changes.append(f"flags {' '.join(old.options) or '(none)'} -> {' '.join(new.options) or '(none)'}")
    return ", ".join(changes)


# --------------------------------------------------------------------------------------------------------------
# reading the kernel's table


def _take(tokens: list[str], index: int, line_no: int) -> str:
    if index + 1 >= len(tokens):
        raise IpvsError(f"ipvsadm -Sn line {line_no}: {tokens[index]} without a value")
    return tokens[index + 1]


def _service_of(tokens: list[str], line_no: int) -> tuple[ServiceKey | None, list[str]]:
    """The service key named on a save line (None for a firewall-mark service) and the tokens left."""
    rest: list[str] = []
    key: ServiceKey | None = None
    fwmark = False
    i = 1
    while i < len(tokens):
        token = tokens[i]
        if token in _FLAG_PROTOCOL:
            try:
                address, port = parse_endpoint(_take(tokens, i, line_no))
            except ValueError as exc:
                raise IpvsError(f"ipvsadm -Sn line {line_no}: {exc}") from None
            key = (_FLAG_PROTOCOL[token], address, port)
            i += 2
        elif token in _FWMARK_FLAGS:
            fwmark = True
            i += 2
        else:
            rest.append(token)
            i += 1
    if key is None and not fwmark:
        raise IpvsError(f"ipvsadm -Sn line {line_no}: no service address in {' '.join(tokens)!r}")
    return key, rest


def _parse_service(key: ServiceKey, rest: list[str], line_no: int) -> VirtualService:
    scheduler = "wlc"  # ipvsadm's default
    persistence: int | None = None
    options: list[str] = []
    i = 0
    while i < len(rest):
        token = rest[i]
        if token in ("-s", "--scheduler"):
            scheduler = _take(rest, i, line_no)
            i += 2
        elif token in ("-p", "--persistent"):
            value = rest[i + 1] if i + 1 < len(rest) else ""
            if value.isdigit():
                persistence = int(value)
                i += 2
            else:
                persistence = 300  # ipvsadm's default timeout for a bare -p
                i += 1
        else:
            options.append(token)
            i += 1
    try:
        return VirtualService(*key, scheduler=scheduler, persistence=persistence, options=tuple(options))
    except ValueError as exc:
        raise IpvsError(f"ipvsadm -Sn line {line_no}: {exc}") from None


def _with_reals(svc: VirtualService, reals: Sequence[RealServer]) -> VirtualService:
    try:
        return VirtualService(
            svc.protocol, svc.address, svc.port, svc.scheduler, tuple(reals), svc.persistence, svc.options
        )
    except ValueError as exc:
        raise IpvsError(f"ipvsadm -Sn: {exc}") from None


def _parse_real(rest: list[str], line_no: int) -> RealServer:
    address: str | None = None
    port = 0
    weight = 1
    forward = MASQ
    options: list[str] = []
    i = 0
    while i < len(rest):
        token = rest[i]
        if token in ("-r", "--real-server"):
            try:
                address, port = parse_endpoint(_take(rest, i, line_no))
            except ValueError as exc:
                raise IpvsError(f"ipvsadm -Sn line {line_no}: {exc}") from None
            i += 2
        elif token in ("-w", "--weight"):
            value = _take(rest, i, line_no)
            if not value.isdigit():
                raise IpvsError(f"ipvsadm -Sn line {line_no}: weight {value!r} is not a number")
            weight = int(value)
            i += 2
        elif token in FORWARDS or token in _FORWARD_LONG:
            forward = FORWARDS.get(token) or _FORWARD_LONG[token]
            i += 1
        else:
            options.append(token)
            i += 1
    if address is None:
        raise IpvsError(f"ipvsadm -Sn line {line_no}: real server line without -r")
    try:
        return RealServer(address, port, weight, forward=forward, options=tuple(options))
    except ValueError as exc:
        raise IpvsError(f"ipvsadm -Sn line {line_no}: {exc}") from None


def parse_save(text: str) -> dict[ServiceKey, VirtualService]:
    """The virtual services in ``ipvsadm -Sn`` output, by key.

    Firewall-mark services (``-f``) are skipped: they have no address and port, so they can never be
    k8router's and never collide with its keys. Unknown flags are kept in ``options``.
    """
    services: dict[ServiceKey, VirtualService] = {}
    reals: dict[ServiceKey, list[RealServer]] = {}
    for line_no, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        command = tokens[0]
        if command not in ("-A", "--add-service", "-a", "--add-server"):
            raise IpvsError(f"ipvsadm -Sn line {line_no}: unexpected {line.strip()!r}")
        key, rest = _service_of(tokens, line_no)
        if key is None:
            continue
        if command in ("-A", "--add-service"):
            if key in services:
                raise IpvsError(f"ipvsadm -Sn line {line_no}: virtual service {endpoint(*key[1:])} twice")
            services[key] = _parse_service(key, rest, line_no)
            reals[key] = []
        else:
            if key not in services:
                raise IpvsError(f"ipvsadm -Sn line {line_no}: real server of unknown service {endpoint(*key[1:])}")
            reals[key].append(_parse_real(rest, line_no))
    return {key: _with_reals(svc, reals[key]) if reals[key] else svc for key, svc in services.items()}


def format_save(table: Mapping[ServiceKey, VirtualService]) -> str:
    """``table`` in ``ipvsadm -Sn`` format, in key order (for diffs, and as ``ipvsadm -R`` input)."""
    lines = []
    for key in sorted(table, key=key_order):
        svc = table[key]
        lines.append(" ".join(["-A", *svc.service_args(), *svc.settings_args()]))
        lines.extend(" ".join(["-a", *svc.service_args(), *_real_args(r)]) for r in svc.reals)
    return "".join(line + "\n" for line in lines)


# --------------------------------------------------------------------------------------------------------------
# planning


def owned_keys(keys: Iterable[ServiceKey]) -> Callable[[ServiceKey], bool]:
    """An ``owned`` predicate for a fixed set of keys (for example the keys k8router recorded as its own)."""
    wanted = {service_key(*k) for k in keys}
    return lambda key: key in wanted


def _check_desired(key: ServiceKey, svc: VirtualService) -> VirtualService:
    try:
        normalized = service_key(*key)
    except (TypeError, ValueError) as exc:
        raise IpvsError(f"desired table: key {key!r}: {exc}") from None
    if normalized != svc.key:
        raise IpvsError(f"desired table: key {key!r} holds {svc.name}")
    if svc.options:
        raise IpvsError(f"{svc.name}: unknown ipvsadm flags {svc.options!r} (only read from tables, never planned)")
    for real in svc.reals:
        if real.forward != MASQ or real.options:
            raise IpvsError(f"{svc.name}: real server {real.endpoint} must be NAT without extra flags")
        if _family(real.address) != _family(svc.address):
            raise IpvsError(f"{svc.name}: real server {real.endpoint} is of another address family (NAT needs one)")
    return svc


def _service_differs(want: VirtualService, have: VirtualService) -> bool:
    return (want.scheduler, want.persistence, want.options) != (have.scheduler, have.persistence, have.options)


def _real_differs(want: RealServer, have: RealServer) -> bool:
    return (want.weight, want.forward, want.options) != (have.weight, have.forward, have.options)


def plan(
    desired: Mapping[ServiceKey, VirtualService],
    current: Mapping[ServiceKey, VirtualService],
    owned: Callable[[ServiceKey], bool],
) -> list[Op]:
    """The operations turning ``current`` into ``desired`` on the keys ``owned`` accepts; never a flush.

    Keys ``owned`` rejects are skipped whichever side they are on: a foreign entry is never changed or
    deleted, and a desired entry on a foreign key is not applied (the caller reports that conflict, see
    :func:`conflicts`). The order is fixed: real server deletes, adds (each new service, then its real
    servers), edits, service deletes; within each, key order. ``plan(x, x, owned) == []``.

    A desired table IPVS cannot serve (an IPv6 virtual service with IPv4 real servers: NAT needs one address
    family; flags only read from tables; a key that does not match its service) raises IpvsError.
    """
    wanted: dict[ServiceKey, VirtualService] = {}
    for key, svc in desired.items():
        wanted[svc.key] = _check_desired(key, svc)
    have_table = {svc.key: svc for svc in current.values()}
    delete_reals: list[Op] = []
    adds: list[Op] = []
    edits: list[Op] = []
    delete_services: list[Op] = []
    for key in sorted(set(wanted) | set(have_table), key=key_order):
        if not owned(key):
            continue
        want = wanted.get(key)
        have = have_table.get(key)
        if want is None:
            if have is not None:
                delete_services.append(Op(OP_DELETE_SERVICE, have))
            continue
        if have is None:
            adds.append(Op(OP_ADD_SERVICE, want))
            adds.extend(Op(OP_ADD_REAL, want, real) for real in want.reals)
            continue
        if _service_differs(want, have):
            edits.append(Op(OP_EDIT_SERVICE, want, previous=have))
        want_reals = {r.key: r for r in want.reals}
        have_reals = {r.key: r for r in have.reals}
        delete_reals.extend(Op(OP_DELETE_REAL, want, r) for r in have.reals if r.key not in want_reals)
        for real in want.reals:
            old = have_reals.get(real.key)
            if old is None:
                adds.append(Op(OP_ADD_REAL, want, real))
            elif _real_differs(real, old):
                edits.append(Op(OP_EDIT_REAL, want, real, previous=old))
    return delete_reals + adds + edits + delete_services


def conflicts(
    desired: Mapping[ServiceKey, VirtualService],
    current: Mapping[ServiceKey, VirtualService],
    owned: Callable[[ServiceKey], bool],
) -> list[ServiceKey]:
    """Desired keys that ``owned`` rejects and that a foreign entry already holds (so they cannot be served)."""
    keys = {svc.key for svc in desired.values()}
    return sorted((k for k in keys if not owned(k) and k in current), key=key_order)


def select(
    table: Mapping[ServiceKey, VirtualService], owned: Callable[[ServiceKey], bool]
) -> dict[ServiceKey, VirtualService]:
    """The entries of ``table`` whose keys ``owned`` accepts."""
    return {key: svc for key, svc in table.items() if owned(key)}


# --------------------------------------------------------------------------------------------------------------
# the driver


class IpvsDriver:
    """Reads the kernel's table and applies planned operations with ``ipvsadm``, through injected runners.

    ``restore_runner(argv, stdin_text)`` is optional: with it, :meth:`apply_restore` sends a batch to one
    ``ipvsadm -R`` (no flush, unlike the ``ipvsadm-restore`` script, which runs ``ipvsadm -C`` first).
    """

    def __init__(self, runner: Runner, ipvsadm: str = "ipvsadm", restore_runner: StdinRunner | None = None) -> None:
        self.runner = runner
        self.ipvsadm = ipvsadm
        self.restore_runner = restore_runner

    def current(self) -> dict[ServiceKey, VirtualService]:
        rc, out, err = self.runner([self.ipvsadm, "-Sn"])
        if rc != 0:
            raise IpvsError(f"{self.ipvsadm} -Sn failed (rc={rc}): {err.strip() or out.strip()}", stderr=err)
        return parse_save(out)

    def apply(self, ops: Sequence[Op]) -> int:
        """Run each operation, in order; stop at the first failure (IpvsError naming it). Returns the count."""
        for done, op in enumerate(ops):
            rc, out, err = self.runner([self.ipvsadm, *op.argv])
            if rc != 0:
                message = (err.strip() or out.strip() or f"rc={rc}").replace("\n", " ")
                raise IpvsError(
                    f"{op.text} failed: ipvsadm {' '.join(op.argv)}: {message} "
                    f"({done} of {len(ops)} operations applied before it)",
                    op=op,
                    applied=done,
                    stderr=err,
                )
        return len(ops)

    def apply_restore(self, ops: Sequence[Op]) -> int:
        """Apply a batch of adds (new services and real servers) with one ``ipvsadm -R``; returns the count.

        ``ipvsadm -R`` goes on after a failed line and its exit status is only the last line's, so any message
        on its output is a failure too, and the table is read back to name the operations that did not take
        effect.
        """
        if self.restore_runner is None:
            raise IpvsError("apply_restore needs a restore_runner (a runner that can feed stdin)")
        odd = [op for op in ops if op.kind not in (OP_ADD_SERVICE, OP_ADD_REAL)]
        if odd:
            raise IpvsError(f"apply_restore takes adds only, not: {odd[0].text}", op=odd[0])
        if not ops:
            return 0
        batch = "".join(" ".join(op.argv) + "\n" for op in ops)
        rc, out, err = self.restore_runner([self.ipvsadm, "-R"], batch)
        message = (err.strip() or out.strip()).replace("\n", "; ")
        if rc == 0 and not message:
            return len(ops)
        table = self.current()
        missing = [op for op in ops if not _present(op, table)]
        first = missing[0] if missing else None
        named = ""
        if first is not None:
            named = f"; not applied: {first.text}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
        raise IpvsError(
            f"ipvsadm -R (batch of {len(ops)}) failed (rc={rc}): {message or 'no message'}{named}",
            op=first,
            applied=len(ops) - len(missing),
            stderr=err,
        )

    def sync(self, desired: Mapping[ServiceKey, VirtualService], owned: Callable[[ServiceKey], bool]) -> list[Op]:
        """Read, plan, apply; the operations applied."""
        ops = plan(desired, self.current(), owned)
        self.apply(ops)
        return ops


def _present(op: Op, table: Mapping[ServiceKey, VirtualService]) -> bool:
    svc = table.get(op.key)
    if svc is None:
        return False
    if op.kind == OP_ADD_SERVICE:
        return svc.scheduler == op.service.scheduler
    return any(r.key == op.real.key and not _real_differs(op.real, r) for r in svc.reals) if op.real else False
