# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One k8router run: read, model, plan, render + validate, apply, report.

The I/O lives here and in the drivers (_cluster, _haproxy.RuntimeApi, _state); model, planner
and renderer are pure. Errors are typed (_errors); the module's main() reports them.
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.k8router.edge.plugins.module_utils._certs import (
    Certificate,
    CertificateError,
    expiring,
    load_certificate,
    select_certificates,
)
from ansible_collections.k8router.edge.plugins.module_utils._cluster import ClusterSource, read_clusters
from ansible_collections.k8router.edge.plugins.module_utils._credentials import CredentialSettings, check_and_renew
from ansible_collections.k8router.edge.plugins.module_utils._errors import (
    ConfigInvalidError,
    K8RouterError,
    RuntimeApiError,
)
from ansible_collections.k8router.edge.plugins.module_utils._haproxy import (
    CertEntry,
    Rendered,
    RenderSettings,
    RuntimeApi,
    Slot,
    cert_file_name,
    generation,
    render,
)
from ansible_collections.k8router.edge.plugins.module_utils._layout import CERTS_DIR, HAPROXY_DEFAULTS
from ansible_collections.k8router.edge.plugins.module_utils._model import (
    ClusterSettings,
    ClusterSnapshot,
    Model,
    build_model,
)
from ansible_collections.k8router.edge.plugins.module_utils._plan import Plan, make_plan
from ansible_collections.k8router.edge.plugins.module_utils._state import StateStore, write_atomic

# Runs a command (argv, no shell) and returns (rc, stdout, stderr): AnsibleModule.run_command in the
# modules, a plain subprocess runner in tests and the lab.
Runner = Callable[[Sequence[str]], "tuple[int, str, str]"]
# The same with text on standard input (ipvsadm -R): run_command(argv, data=...) in the modules.
StdinRunner = Callable[[Sequence[str], str], "tuple[int, str, str]"]


@dataclass(frozen=True)
class HaproxyPaths:
    config: str = HAPROXY_DEFAULTS["config"]
    conf_dir: str = HAPROXY_DEFAULTS["conf_dir"]
    data_dir: str = HAPROXY_DEFAULTS["data_dir"]
    socket: str = HAPROXY_DEFAULTS["socket"]
    binary: str = "haproxy"
    reload_command: tuple[str, ...] = ("systemctl", "reload", "haproxy")


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


def _read_file(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


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
            cert_pem = _read_file(cert_path)
            key_pem = _read_file(key_path) if key_path else None
            if cert_pem is None or (key_path and key_pem is None):
                raise CertificateError(f"{cert_path}: file not found")
            certs.append(load_certificate(cert_pem, key_pem, cert_path))
        except CertificateError as exc:
            warnings.append(f"certificate left out: {exc}")
        except OSError as exc:
            warnings.append(f"certificate left out: {cert_path}: {exc}")
    return certs, warnings


def _credentials(opts: Options, result: Result, check_mode: bool) -> None:
    """Each cluster's token: renewed when it nears its end, warned about when renewal keeps failing or it expired."""
    for src, cfg in opts.clusters:
        if cfg.state == "offline":
            continue
        row, warnings = check_and_renew(
            src.name, src.kubeconfig, src.context, opts.credentials, timeout=src.timeout, check_mode=check_mode
        )
        result.credentials.append(row)
        result.warnings.extend(warnings)


def _snapshots(
    opts: Options, store: StateStore, result: Result, persist: bool, reader: Reader
) -> dict[str, ClusterSnapshot]:
    """Fresh snapshots where a cluster answered; last-known-good ones (younger than max_age) where not."""
    active = [(src, cfg) for src, cfg in opts.clusters if cfg.state != "offline"]
    fresh, errors = reader([pair[0] for pair in active])
    snapshots: dict[str, ClusterSnapshot] = {}
    now = time.time()
    for src, cfg in active:
        snap = fresh.get(src.name)
        status: dict[str, Any] = {"name": src.name, "state": cfg.state}
        if snap is not None:
            result.warnings.extend(snap.warnings)
            if persist:
                store.save_snapshot(snap)
            status.update(read="fresh", age=0)
        else:
            snap = store.load_snapshot(src.name)
            age = now - snap.read_at if snap else None
            if snap is not None and age is not None and age <= opts.max_age:
                result.warnings.append(f"{errors[src.name]}; serving its last-known-good state from {age:.0f} s ago")
                status.update(read="last-known-good", age=round(age), error=errors[src.name])
            else:
                why = "no last-known-good state" if snap is None else f"last-known-good state is {age:.0f} s old"
                result.warnings.append(f"{errors[src.name]}; {why} (max_age {opts.max_age:g} s): not served")
                status.update(read="failed", error=errors[src.name])
                snap = None
        if snap is not None:
            snapshots[src.name] = snap
            status.update(hosts=len(snap.hosts), backends=len(snap.backends))
        result.clusters.append(status)
    for src, cfg in opts.clusters:
        if cfg.state == "offline":
            result.clusters.append({"name": src.name, "state": "offline", "read": "skipped"})
    return snapshots


def _cert_entries(model: Model, certs: Sequence[Certificate], result: Result, expiry_days: int) -> list[CertEntry]:
    now = datetime.datetime.now(datetime.timezone.utc)
    chosen = select_certificates(list(model.hosts), certs, now)
    by_cert: dict[str, list[str]] = {}  # by the file it came from: a renewal keeps its place in haproxy
    cert_of: dict[str, Certificate] = {}
    for host, servings in model.hosts.items():
        pick = chosen[host]
        row: dict[str, Any] = {
            "host": host,
            "clusters": [s.cluster for s in servings],
            "backends": sum(len(s.backends) for s in servings if s.weight),
            "certificate": pick.certificate.source if pick.certificate else None,
            "expires": pick.certificate.not_after.isoformat() if pick.certificate else None,
        }
        result.hosts.append(row)
        if pick.certificate is None:
            result.warnings.append(f"host {host}: {pick.problem}; the default certificate answers for it")
            continue
        by_cert.setdefault(pick.certificate.source, []).append(host)
        cert_of[pick.certificate.source] = pick.certificate
    for cert in expiring(certs, now, expiry_days):
        result.warnings.append(f"certificate {cert.source} expires {cert.not_after.isoformat()}")
    return [CertEntry(cert_file_name(src), cert_of[src].pem, tuple(hosts)) for src, hosts in sorted(by_cert.items())]


def _validate(desired: Mapping[str, bytes], paths: HaproxyPaths, workdir: str, runner: Runner) -> None:
    """``haproxy -c`` on the candidate set (main file + k8router's files + the others of conf_dir)."""
    data, conf = paths.data_dir.rstrip("/"), paths.conf_dir.rstrip("/")
    cand = tempfile.mkdtemp(prefix="candidate-", dir=workdir)
    try:
        cand_data, cand_conf = os.path.join(cand, "data"), os.path.join(cand, "conf")
        if os.path.isdir(data):
            shutil.copytree(data, cand_data, dirs_exist_ok=True)
        os.makedirs(os.path.join(cand_data, CERTS_DIR), exist_ok=True)
        os.makedirs(cand_conf, exist_ok=True)
        for entry in os.listdir(conf) if os.path.isdir(conf) else []:
            if entry.endswith(".cfg"):
                shutil.copy(os.path.join(conf, entry), cand_conf)
        for path, content in desired.items():
            target = (
                cand_data + path[len(data) :]
                if path.startswith(data + "/")
                else os.path.join(cand_conf, os.path.basename(path))
            )
            with open(target, "wb") as handle:
                handle.write(content.replace(data.encode() + b"/", cand_data.encode() + b"/"))
        main = os.path.join(cand, "haproxy.cfg")
        with open(paths.config, "rb") as src, open(main, "wb") as dst:
            dst.write(src.read().replace(data.encode() + b"/", cand_data.encode() + b"/"))
        rc, out, err = runner([paths.binary, "-c", "-f", main, "-f", cand_conf])
        if rc != 0:
            raise ConfigInvalidError((out + err).strip().replace(cand_data, data).replace(cand_conf, conf), [])
    finally:
        shutil.rmtree(cand, ignore_errors=True)


def _apply(plan: Plan, desired: Rendered, paths: HaproxyPaths, result: Result, runner: Runner) -> None:
    os.makedirs(os.path.join(paths.data_dir, CERTS_DIR), mode=0o750, exist_ok=True)
    # certificates first, then maps and crt-list, then the backends: each file is complete when haproxy sees it
    for path in sorted(plan.write, key=lambda p: (not p.endswith(".pem"), p.endswith(".cfg"), p)):
        write_atomic(path, plan.write[path], 0o600 if path.endswith(".pem") else 0o640)
    for path in plan.remove:
        os.unlink(path)
    if plan.commands or plan.cert_ops:
        try:
            api = RuntimeApi(paths.socket)
            api.apply(plan.commands)
            api.apply_certs(plan.cert_ops, desired.crt_list, desired.files)
            result.commands = plan.shown_commands
        except (RuntimeApiError, OSError) as exc:
            result.warnings.append(f"runtime update failed ({exc}); reloading instead")
            plan.reload = True
    if plan.reload:
        # The applied layout is saved only once haproxy reports the new generation: a reload that fails,
        # or a run killed before it, leaves the old layout recorded and the next run reloads. A reload whose
        # structure haproxy already runs (certificates only, a lost layout) is done when another worker answers.
        api = RuntimeApi(paths.socket)
        old = api.worker_pid() if api.running_generation() == generation(desired.structure) else None
        rc, out, err = runner(list(paths.reload_command))
        command = " ".join(paths.reload_command)
        if rc != 0:
            raise RuntimeApiError(
                f"reload command {command} failed ({rc}): {(out + err).strip()}; the files are written, "
                "the next run reloads again"
            )
        if not api.wait_for_generation(desired.structure) or (old is not None and not api.wait_for_new_worker(old)):
            raise RuntimeApiError(
                f"haproxy was reloaded ({command}) but its worker on {paths.socket} does not run the new "
                "configuration after 15 s; the next run reloads again"
            )
        result.reloaded = True


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
    result = Result()
    store = StateStore(opts.state_dir)

    def locked() -> Result:
        return _run_locked(
            opts, store, result, runner, check_mode=check_mode, diff=diff, rendered_only=rendered_only,
            stdin_runner=stdin_runner, reader=reader or read_clusters, credentials=credentials,
            defer_reload=defer_reload,
        )  # fmt: skip

    try:
        if not (check_mode or rendered_only):
            with store.lock(opts.lock_timeout):
                return locked()
        return locked()
    finally:
        result.duration = time.monotonic() - started


def _run_locked(
    opts: Options,
    store: StateStore,
    result: Result,
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
    if credentials:
        _credentials(opts, result, check_mode or rendered_only)
    snapshots = _snapshots(opts, store, result, not (check_mode or rendered_only), reader)
    model = build_model([pair[1] for pair in opts.clusters], snapshots)
    result.warnings.extend(model.warnings)
    certs, cert_warnings = load_certificates(opts.certificate_files)
    result.warnings.extend(cert_warnings)
    result.certificates = [{"certificate": c.source, "expires": c.not_after.isoformat()} for c in certs]
    entries = _cert_entries(model, certs, result, opts.expiry_days)
    default = _default_certificate(opts, result)
    settings = RenderSettings(
        opts.haproxy.conf_dir, opts.haproxy.data_dir, opts.backend_tls, opts.backend_ca_file, default
    )
    applied = store.load_layout()
    desired = render(model, entries, settings, {k: Slot(*v) for k, v in (applied.get("slots") or {}).items()})
    if rendered_only:
        result.rendered = {
            p: ("(certificate and key)" if p.endswith(".pem") else d.decode()) for p, d in desired.files.items()
        }
        return result
    _converge_http(
        opts, store, result, runner, desired=desired, applied=applied, check_mode=check_mode, diff=diff,
        defer_reload=defer_reload,
    )  # fmt: skip
    if opts.load_balancer is not None:
        # After the HTTP half: nothing in L4 (a hostile Service, a failing ipvsadm) keeps haproxy from converging.
        _converge_l4(opts, result, runner, snapshots, stdin_runner=stdin_runner, check_mode=check_mode, diff=diff)
    return result


def _converge_l4(
    opts: Options,
    result: Result,
    runner: Runner,
    snapshots: Mapping[str, ClusterSnapshot],
    *,
    stdin_runner: StdinRunner | None,
    check_mode: bool,
    diff: bool,
) -> None:
    from ansible_collections.k8router.edge.plugins.module_utils._lb import converge_lb  # noqa: PLC0415

    try:
        lb = converge_lb(
            opts.load_balancer,
            opts.clusters,
            snapshots,
            opts.state_dir,
            runner,
            stdin_runner=stdin_runner,
            check_mode=check_mode,
        )
    except K8RouterError as exc:
        done = "reloaded" if result.reloaded else "converged"
        raise K8RouterError(
            f"{exc} (haproxy is {done}; the L4 half is not)", [*result.warnings, *exc.warnings]
        ) from exc
    result.services, result.ipvs = lb.services, [*lb.operations, *lb.cleanup]
    if diff and lb.operations:
        result.diff.append({"before_header": lb.diff_header, "after_header": lb.diff_header, **lb.diff})
    if diff and lb.cleanup:
        result.diff.append(lb.cleanup_diff)
    result.warnings.extend(lb.warnings)
    result.changed = result.changed or lb.changed


def _converge_http(
    opts: Options,
    store: StateStore,
    result: Result,
    runner: Runner,
    *,
    desired: Rendered,
    applied: Mapping[str, Any],
    check_mode: bool,
    diff: bool,
    defer_reload: bool = False,
) -> None:
    certs_dir = os.path.join(opts.haproxy.data_dir, CERTS_DIR)
    existing = sorted(os.listdir(certs_dir)) if os.path.isdir(certs_dir) else []
    stale = [
        os.path.join(certs_dir, e)
        for e in existing
        if e.endswith(".pem") and os.path.join(certs_dir, e) not in desired.files
    ]
    current = {path: _read_file(path) for path in desired.files}
    plan = make_plan(desired, current, applied, stale, RuntimeApi(opts.haproxy.socket).running_generation())
    if plan.reload and defer_reload and not check_mode:
        result.deferred = True
        return
    result.changed = result.changed or plan.changed
    result.commands = plan.shown_commands
    if diff:
        result.diff.extend(plan.diff(current))
    if check_mode:
        return
    if not plan.changed:
        if applied.get("structure") != desired.structure:
            store.save_layout(desired.layout())  # files already right, layout lost: record it for runtime updates
        return
    if plan.write or plan.remove:
        try:
            _validate(desired.files, opts.haproxy, opts.state_dir, runner)
        except ConfigInvalidError as exc:
            kept = []
            for path, content in plan.write.items():
                if not path.endswith(".pem"):
                    write_atomic(path + ".rejected", content, 0o640)
                    kept.append(path + ".rejected")
            raise ConfigInvalidError(
                f"haproxy rejected the candidate configuration (kept in {', '.join(kept)}): {exc}", kept
            ) from None
    result.commands = []
    _apply(plan, desired, opts.haproxy, result, runner)
    store.save_layout(desired.layout())


def _default_certificate(opts: Options, result: Result) -> bytes | None:
    """The configured default certificate's PEM, or None for the router role's fallback certificate."""
    if opts.default_certificate is None:
        return None
    certs, warnings = load_certificates([opts.default_certificate])
    result.warnings.extend(w.replace("certificate left out", "default certificate left out") for w in warnings)
    return certs[0].pem if certs else None


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
