# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The orchestrator: one k8router run (read, model, plan, render + validate, apply, report), the same for the
module, the periodic run and the agent.

Model (_model), report (_report), planners (_plan, _lb's) and renderers (_haproxy, _nft) are pure; the I/O is
in the drivers: the clusters (_cluster), haproxy (_haproxy_driver), IPVS (_ipvs), nftables (_nft), and the
state store (_state: snapshots, applied layout, address allocations, lock). Each step returns what it found
or did; run() alone puts the Result together. Errors are typed (_errors); the module's main() reports them.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ansible_collections.k8router.edge.plugins.module_utils._certs import (
    Certificate,
    CertificateError,
    load_certificate,
)
from ansible_collections.k8router.edge.plugins.module_utils._cluster import ClusterSource, read_clusters
from ansible_collections.k8router.edge.plugins.module_utils._credentials import CredentialSettings, check_and_renew
from ansible_collections.k8router.edge.plugins.module_utils._errors import ConfigInvalidError, K8RouterError
from ansible_collections.k8router.edge.plugins.module_utils._haproxy import CertEntry, RenderSettings, Slot, render
from ansible_collections.k8router.edge.plugins.module_utils._haproxy_driver import (
    HaproxyDriver,
    HaproxyPaths,
    Runner,
    read_file,
)
from ansible_collections.k8router.edge.plugins.module_utils._model import (
    ClusterSettings,
    ClusterSnapshot,
    Model,
    build_model,
)
from ansible_collections.k8router.edge.plugins.module_utils._plan import make_plan
from ansible_collections.k8router.edge.plugins.module_utils._report import host_report
from ansible_collections.k8router.edge.plugins.module_utils._state import StateStore

__all__ = ["HaproxyPaths", "Options", "Result", "Runner", "StdinRunner", "report", "run", "run_figures"]

# The same with text on standard input (ipvsadm -R): run_command(argv, data=...) in the modules.
StdinRunner = Callable[[Sequence[str], str], "tuple[int, str, str]"]


@dataclass(frozen=True)
class Options:
    clusters: tuple[tuple[ClusterSource, ClusterSettings], ...]
    certificate_files: tuple[tuple[str, str | None], ...]  # (cert path, key path or None)
    default_certificate: tuple[str, str | None] | None
    haproxy: HaproxyPaths
    state_dir: str
    max_age: float
    lock_timeout: float
    expiry_days: int
    backend_tls: bool = False
    backend_ca_file: str | None = None
    load_balancer: Any = None  # _lb.LbOptions when the router set serves LoadBalancer services
    credentials: CredentialSettings = field(default_factory=CredentialSettings)


@dataclass
class Result:
    changed: bool = False
    reloaded: bool = False
    commands: list[str] = field(default_factory=list)
    diff: list[dict[str, str]] = field(default_factory=list)
    hosts: list[dict[str, Any]] = field(default_factory=list)
    clusters: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rendered: dict[str, str] = field(default_factory=dict)
    services: list[dict[str, Any]] = field(default_factory=list)
    ipvs: list[str] = field(default_factory=list)
    credentials: list[dict[str, Any]] = field(default_factory=list)
    # the agent's: a structural change it asked to hold back (defer_reload) was not applied; nothing was written
    deferred: bool = False
    duration: float = 0.0  # seconds the run took, lock wait included
    certificates: list[dict[str, Any]] = field(default_factory=list)  # every certificate loaded: source, expires


# Reads the clusters of a run: (snapshots of those read, errors of the others), as _cluster.read_clusters does.
Reader = Callable[[Sequence[ClusterSource]], "tuple[dict[str, ClusterSnapshot], dict[str, str]]"]


def certificate_files(paths: Sequence[tuple[str, str | None]], directory: str | None) -> list[tuple[str, str | None]]:
    """The given (cert, key) pairs plus those of ``directory``.

    In the directory: ``NAME.pem`` (certificate and key) or ``NAME.crt`` with ``NAME.key``.
    """
    found = list(paths)
    if directory:
        for entry in sorted(os.listdir(directory)):
            path = os.path.join(directory, entry)
            stem, ext = os.path.splitext(entry)
            if ext == ".pem":
                found.append((path, None))
            elif ext == ".crt":
                key = os.path.join(directory, stem + ".key")
                found.append((path, key if os.path.exists(key) else None))
    return found


def load_certificates(files: Sequence[tuple[str, str | None]]) -> tuple[list[Certificate], list[str]]:
    """Every loadable certificate, and a warning for each file that is not (it is left out, nothing else)."""
    certs: list[Certificate] = []
    warnings: list[str] = []
    for cert_path, key_path in files:
        try:
            cert_pem = read_file(cert_path)
            key_pem = read_file(key_path) if key_path else None
            if cert_pem is None or (key_path and key_pem is None):
                raise CertificateError(f"{cert_path}: file not found")
            certs.append(load_certificate(cert_pem, key_pem, cert_path))
        except CertificateError as exc:
            warnings.append(f"certificate left out: {exc}")
        except OSError as exc:
            warnings.append(f"certificate left out: {cert_path}: {exc}")
    return certs, warnings


def _credentials(opts: Options, check_mode: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """Each cluster's token: renewed when it nears its end, warned about when renewal keeps failing or it expired."""
    rows, warnings = [], []
    for src, cfg in opts.clusters:
        if cfg.state == "offline":
            continue
        row, found = check_and_renew(
            src.name, src.kubeconfig, src.context, opts.credentials, timeout=src.timeout, check_mode=check_mode
        )
        rows.append(row)
        warnings.extend(found)
    return rows, warnings


@dataclass
class Reading:
    """The clusters of a run: the snapshots it serves, how each cluster was read, and what went wrong."""

    snapshots: dict[str, ClusterSnapshot] = field(default_factory=dict)
    clusters: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def read_snapshots(opts: Options, store: StateStore, reader: Reader, persist: bool) -> Reading:
    """Fresh snapshots where a cluster answered (kept in the store when ``persist``); last-known-good ones
    (younger than max_age) where not."""
    reading = Reading()
    active = [(src, cfg) for src, cfg in opts.clusters if cfg.state != "offline"]
    fresh, errors = reader([pair[0] for pair in active])
    now = time.time()
    for src, cfg in active:
        snap = fresh.get(src.name)
        status: dict[str, Any] = {"name": src.name, "state": cfg.state}
        if snap is not None:
            reading.warnings.extend(snap.warnings)
            if persist:
                store.save_snapshot(snap)
            status.update(read="fresh", age=0)
        else:
            snap = store.load_snapshot(src.name)
            age = now - snap.read_at if snap else None
            if snap is not None and age is not None and age <= opts.max_age:
                reading.warnings.append(f"{errors[src.name]}; serving its last-known-good state from {age:.0f} s ago")
                status.update(read="last-known-good", age=round(age), error=errors[src.name])
            else:
                why = "no last-known-good state" if snap is None else f"last-known-good state is {age:.0f} s old"
                reading.warnings.append(f"{errors[src.name]}; {why} (max_age {opts.max_age:g} s): not served")
                status.update(read="failed", error=errors[src.name])
                snap = None
        if snap is not None:
            reading.snapshots[src.name] = snap
            status.update(hosts=len(snap.hosts), backends=len(snap.backends))
        reading.clusters.append(status)
    for src, cfg in opts.clusters:
        if cfg.state == "offline":
            reading.clusters.append({"name": src.name, "state": "offline", "read": "skipped"})
    return reading


@dataclass
class Inputs:
    """Everything a run derives before it touches a daemon."""

    reading: Reading
    model: Model
    certs: list[Certificate]
    hosts: list[dict[str, Any]]
    entries: list[CertEntry]
    default_certificate: bytes | None
    warnings: list[str]


def _inputs(opts: Options, store: StateStore, reader: Reader, persist: bool) -> Inputs:
    reading = read_snapshots(opts, store, reader, persist)
    model = build_model([pair[1] for pair in opts.clusters], reading.snapshots)
    certs, cert_warnings = load_certificates(opts.certificate_files)
    hosts = host_report(model, certs, datetime.datetime.now(datetime.timezone.utc), opts.expiry_days)
    default, default_warnings = _default_certificate(opts)
    warnings = [*reading.warnings, *model.warnings, *cert_warnings, *hosts.warnings, *default_warnings]
    return Inputs(reading, model, certs, hosts.hosts, hosts.entries, default, warnings)


def _report_into(result: Result, inputs: Inputs) -> None:
    result.clusters = inputs.reading.clusters
    result.hosts = inputs.hosts
    result.warnings.extend(inputs.warnings)
    result.certificates = [{"certificate": c.source, "expires": c.not_after.isoformat()} for c in inputs.certs]


def report(opts: Options, *, reader: Reader | None = None) -> Result:
    """What a run would serve, from the model and the certificates: hosts, clusters, warnings. Nothing is
    rendered, written or locked, and no credential is renewed, only checked (k8router_info)."""
    result = Result()
    result.credentials, found = _credentials(opts, check_mode=True)
    result.warnings.extend(found)
    _report_into(result, _inputs(opts, StateStore(opts.state_dir), reader or read_clusters, persist=False))
    return result


def run(
    opts: Options,
    runner: Runner,
    *,
    stdin_runner: StdinRunner | None = None,
    check_mode: bool = False,
    diff: bool = False,
    rendered_only: bool = False,
    reader: Reader | None = None,
    credentials: bool = True,
    defer_reload: bool = False,
) -> Result:
    """One run. ``rendered_only`` (state: rendered) and ``check_mode`` change nothing on the host.

    ``reader`` reads the clusters (by default _cluster.read_clusters; the agent's gives the clusters as its
    watches hold them). The agent renews ``credentials`` only in its full runs, and asks to ``defer_reload``
    while its last reload is too recent: a plan that needs a reload then writes nothing and the result says
    ``deferred`` (the runtime-API changes of such a plan wait with it).
    """
    started = time.monotonic()
    store = StateStore(opts.state_dir)
    dry = check_mode or rendered_only

    def locked() -> Result:
        return _run_locked(
            opts, store, runner, check_mode=check_mode, diff=diff, rendered_only=rendered_only,
            stdin_runner=stdin_runner, reader=reader or read_clusters, credentials=credentials,
            defer_reload=defer_reload,
        )  # fmt: skip

    if dry:
        result = locked()
    else:
        with store.lock(opts.lock_timeout):
            result = locked()
    result.duration = time.monotonic() - started
    return result


def _run_locked(
    opts: Options,
    store: StateStore,
    runner: Runner,
    *,
    check_mode: bool,
    diff: bool,
    rendered_only: bool,
    stdin_runner: StdinRunner | None,
    reader: Reader,
    credentials: bool,
    defer_reload: bool,
) -> Result:
    result = Result()
    if credentials:
        result.credentials, found = _credentials(opts, check_mode or rendered_only)
        result.warnings.extend(found)
    inputs = _inputs(opts, store, reader, not (check_mode or rendered_only))
    _report_into(result, inputs)
    settings = RenderSettings(
        opts.haproxy.conf_dir, opts.haproxy.data_dir, opts.backend_tls, opts.backend_ca_file,
        inputs.default_certificate,
    )  # fmt: skip
    if rendered_only:
        desired = render(inputs.model, inputs.entries, settings, _applied_slots(store.load_layout()))
        result.rendered = {
            p: ("(certificate and key)" if p.endswith(".pem") else d.decode()) for p, d in desired.files.items()
        }
        return result
    driver = HaproxyDriver(opts.haproxy, runner, opts.state_dir)
    http = converge_http(
        driver, store, inputs.model, inputs.entries, settings, check_mode=check_mode, diff=diff,
        defer_reload=defer_reload,
    )  # fmt: skip
    result.changed, result.deferred, result.reloaded = http.changed, http.deferred, http.reloaded
    result.commands = http.commands
    result.diff.extend(http.diff)
    result.warnings.extend(http.warnings)
    if opts.load_balancer is not None:
        # After the HTTP half: nothing in L4 (a hostile Service, a failing ipvsadm) keeps haproxy from converging.
        try:
            l4 = _converge_l4(opts, runner, inputs.reading.snapshots, stdin_runner=stdin_runner, check_mode=check_mode)
        except K8RouterError as exc:
            done = "reloaded" if result.reloaded else "converged"
            raise K8RouterError(
                f"{exc} (haproxy is {done}; the L4 half is not)", [*result.warnings, *exc.warnings]
            ) from exc
        result.services, result.ipvs = l4.services, [*l4.operations, *l4.cleanup]
        if diff and l4.operations:
            result.diff.append({"before_header": l4.diff_header, "after_header": l4.diff_header, **l4.diff})
        if diff and l4.cleanup:
            result.diff.append(l4.cleanup_diff)
        result.warnings.extend(l4.warnings)
        result.changed = result.changed or l4.changed
    return result


def _applied_slots(applied: Mapping[str, Any]) -> dict[str, Slot]:
    return {k: Slot(*v) for k, v in (applied.get("slots") or {}).items()}


def _converge_l4(
    opts: Options,
    runner: Runner,
    snapshots: Mapping[str, ClusterSnapshot],
    *,
    stdin_runner: StdinRunner | None,
    check_mode: bool,
) -> Any:
    """The L4 half's result (_lb.LbResult): addresses, the IPVS or nftables table, the Services' status."""
    from ansible_collections.k8router.edge.plugins.module_utils._lb import converge_lb  # noqa: PLC0415

    return converge_lb(
        opts.load_balancer, opts.clusters, snapshots, opts.state_dir, runner,
        stdin_runner=stdin_runner, check_mode=check_mode,
    )  # fmt: skip


@dataclass
class HttpOutcome:
    """What the HTTP half did (or, in check mode, would do)."""

    changed: bool = False
    deferred: bool = False
    reloaded: bool = False
    commands: list[str] = field(default_factory=list)
    diff: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def converge_http(
    driver: HaproxyDriver,
    store: StateStore,
    model: Model,
    entries: Sequence[CertEntry],
    settings: RenderSettings,
    *,
    check_mode: bool = False,
    diff: bool = False,
    defer_reload: bool = False,
) -> HttpOutcome:
    """Render, plan against the disk, the applied layout and the running haproxy; validate a candidate
    rendered under a directory of its own; apply through the driver; record the layout once it is live."""
    applied = store.load_layout()
    desired = render(model, entries, settings, _applied_slots(applied))
    current = driver.current(desired)
    plan = make_plan(desired, current, applied, driver.stale_certificates(desired), driver.running_generation())
    if plan.reload and defer_reload and not check_mode:
        return HttpOutcome(deferred=True)
    outcome = HttpOutcome(changed=plan.changed, commands=plan.shown_commands)
    if diff:
        outcome.diff = plan.diff(current)
    if check_mode:
        return outcome
    if not plan.changed:
        if applied.get("structure") != desired.structure:
            store.save_layout(desired.layout())  # files already right, layout lost: record it for runtime updates
        return outcome
    if plan.write or plan.remove:
        slots = _applied_slots(applied)
        try:
            driver.validate(lambda root: render(model, entries, replace(settings, root=root), slots))
        except ConfigInvalidError as exc:
            kept = driver.keep_rejected(plan)
            raise ConfigInvalidError(
                f"haproxy rejected the candidate configuration (kept in {', '.join(kept)}): {exc}", kept
            ) from None
    done = driver.apply(plan, desired)
    store.save_layout(desired.layout())
    outcome.commands, outcome.reloaded, outcome.warnings = done.commands, done.reloaded, done.warnings
    return outcome


def _default_certificate(opts: Options) -> tuple[bytes | None, list[str]]:
    """The configured default certificate's PEM, or None for the router role's fallback certificate."""
    if opts.default_certificate is None:
        return None, []
    certs, warnings = load_certificates([opts.default_certificate])
    found = [w.replace("certificate left out", "default certificate left out") for w in warnings]
    return (certs[0].pem if certs else None), found


_CONFLICT_MARKS = ("is held by", "requested address", "is taken")


def run_figures(result: Result, now: datetime.datetime | None = None) -> dict[str, Any]:
    """The figures of one run: the agent exports them as metrics, the module returns them and the periodic run
    logs them. A load-balancer conflict is a Service refused or moved because another holds its address."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    expiry = {}
    for cert in result.certificates:
        left = datetime.datetime.fromisoformat(cert["expires"]) - now
        expiry[cert["certificate"]] = round(left.total_seconds() / 86400, 2)
    return {
        "duration": round(result.duration, 3),
        "reloaded": bool(result.reloaded),
        "runtime_commands": len(result.commands),
        "certificate_expiry_days": expiry,
        "lb_addresses_allocated": sum(1 for s in result.services if s.get("address")),
        "lb_address_conflicts": sum(
            1 for w in result.warnings if w.startswith("service ") and any(m in w for m in _CONFLICT_MARKS)
        ),
        "clusters": {c["name"]: {"read": c.get("read"), "age": c.get("age")} for c in result.clusters},
    }
