# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The L4 half of a run: LoadBalancer services -> addresses -> IPVS by diff, or k8router's nftables table, and the
Service status."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.k8router.edge.plugins.module_utils._cluster import ClusterSource, publish_address, read_service
from ansible_collections.k8router.edge.plugins.module_utils._errors import (
    ClusterReadError,
    K8RouterError,
    StatusConflictError,
)
from ansible_collections.k8router.edge.plugins.module_utils._ipvs import (
    OP_ADD_REAL,
    OP_ADD_SERVICE,
    IpvsDriver,
    IpvsError,
    Op,
    RealServer,
    VirtualService,
    format_save,
    plan,
)
from ansible_collections.k8router.edge.plugins.module_utils._model import ClusterSettings, ClusterSnapshot
from ansible_collections.k8router.edge.plugins.module_utils._nft import TABLE as NFT_TABLE
from ansible_collections.k8router.edge.plugins.module_utils._nft import NftDriver, NftError
from ansible_collections.k8router.edge.plugins.module_utils._nft import plan as nft_plan
from ansible_collections.k8router.edge.plugins.module_utils._nft import render as nft_render
from ansible_collections.k8router.edge.plugins.module_utils._services import (
    LbPlan,
    LbService,
    LbSettings,
    Virtual,
    plan_services,
    pool_contains,
    recheck_status_write,
    served,
)
from ansible_collections.k8router.edge.plugins.module_utils._state import StateStore

RESTORE_FROM = 20  # this many adds or more go to the kernel in one ipvsadm -R
PROC_IP_VS = "/proc/net/ip_vs"  # there once the kernel's ip_vs is loaded (ipvsadm would load it: never run it before)
IPVS_HEADER = "IPVS (k8router's entries)"
NFT_HEADER = f"nftables (table {NFT_TABLE})"


@dataclass(frozen=True)
class LbOptions:
    """The router set's load-balancer options."""

    settings: LbSettings
    classes: tuple[str, ...] = ()
    include_unclassed: bool = False
    write_status: bool = False
    ipvsadm: str = "ipvsadm"
    engine: str = "ipvs"  # or "nftables"
    nft: str = "nft"


@dataclass
class LbResult:
    changed: bool = False
    operations: list[str] = field(default_factory=list)
    diff: dict[str, str] = field(default_factory=dict)
    diff_header: str = IPVS_HEADER
    services: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # the other engine's entries k8router removes (left behind by a switch of load_balancer.engine), and their diff
    cleanup: list[str] = field(default_factory=list)
    cleanup_diff: dict[str, str] = field(default_factory=dict)


def desired_table(virtuals: Sequence[Virtual], warnings: list[str]) -> dict[tuple[str, str, int], VirtualService]:
    """The IPVS table of ``virtuals``; one the IPVS model refuses is reported and left out (never raised)."""
    table: dict[tuple[str, str, int], VirtualService] = {}
    for v in virtuals:
        try:
            reals = tuple(RealServer(r.address, r.port, r.weight) for r in v.reals)
            table[(v.protocol, v.address, v.port)] = VirtualService(v.protocol, v.address, v.port, v.scheduler, reals)
        except ValueError as exc:
            warnings.append(f"IPVS: virtual service {v.protocol} {v.address}:{v.port} left out: {exc}")
    return table


def plan_lb(
    opts: LbOptions, settings: Sequence[ClusterSettings], snapshots: Mapping[str, ClusterSnapshot]
) -> tuple[LbPlan, list[dict[str, Any]]]:
    """The services of this router set, their addresses and virtual services, and the ``services`` rows. Pure."""
    weights = {cfg.name: (0 if cfg.state == "drain" else cfg.weight) for cfg in settings if cfg.state != "offline"}
    cluster_classes = {cfg.name: cfg.load_balancer_classes for cfg in settings if cfg.load_balancer_classes is not None}
    services = served(
        [s for snap in snapshots.values() for s in snap.services], opts.classes, opts.include_unclassed, cluster_classes
    )
    lb = plan_services(services, opts.settings, weights)
    ports: dict[str, list[str]] = {}
    for v in lb.virtuals:
        ports.setdefault(v.address, []).append(f"{v.port}/{v.protocol}")
    rows = [
        {"service": key, "address": address, "ports": ports.get(address, [])}
        for key, address in sorted(lb.addresses.items())
    ]
    return lb, rows


def _apply(driver: IpvsDriver, ops: Sequence[Op]) -> None:
    """Real-server deletes, then the adds (one ipvsadm -R when there are many), then edits and service deletes."""
    adds = [op for op in ops if op.kind in (OP_ADD_SERVICE, OP_ADD_REAL)]
    if driver.restore_runner is None or len(adds) < RESTORE_FROM:
        driver.apply(ops)
        return
    first = ops.index(adds[0])
    driver.apply(ops[:first])
    driver.apply_restore(adds)
    driver.apply([op for op in ops[first:] if op not in adds])


def converge_lb(
    opts: LbOptions,
    clusters: Sequence[tuple[ClusterSource, ClusterSettings]],
    snapshots: Mapping[str, ClusterSnapshot],
    state_dir: str,
    runner: Callable[[Sequence[str]], tuple[int, str, str]],
    *,
    stdin_runner: Callable[[Sequence[str], str], tuple[int, str, str]] | None = None,
    check_mode: bool,
) -> LbResult:
    """The L4 half, in the HTTP half's shape: plan (pure: addresses, then the engine's table against the
    kernel's), check, apply through the engine's driver, record the allocations in the state store, publish;
    then remove the other engine's entries (see drop_other_engine). A failure carries the warnings found before
    it (a bad Service is reported even when ipvsadm or nft then fails)."""
    lb, services = plan_lb(opts, [pair[1] for pair in clusters], snapshots)
    store = StateStore(state_dir)
    previous = store.load_allocations()
    status = opts.write_status and bool(lb.status_writes)
    converge = _converge_nft if opts.engine == "nftables" else _converge_ipvs
    try:
        result = converge(opts, lb, runner=runner, stdin_runner=stdin_runner, check_mode=check_mode)
    except K8RouterError as exc:
        raise K8RouterError(str(exc), [*lb.problems, *exc.warnings]) from exc
    result.services = services
    result.warnings = [*lb.problems, *result.warnings]
    result.changed = result.changed or lb.addresses != previous or status
    if not check_mode:
        # after the kernel took the table: keep the allocations, publish the addresses
        if lb.addresses != previous:
            store.save_allocations(lb.addresses)
        if opts.write_status:
            result.warnings.extend(publish(lb, [pair[0] for pair in clusters]))
    try:
        # after the engine in use took its table: then what the other one left behind goes
        cleanup = drop_other_engine(opts, runner, check_mode=check_mode)
    except K8RouterError as exc:
        raise K8RouterError(str(exc), [*result.warnings, *exc.warnings]) from exc
    result.cleanup, result.cleanup_diff = cleanup.cleanup, cleanup.cleanup_diff
    result.warnings.extend(cleanup.warnings)
    result.changed = result.changed or cleanup.changed
    return result


def _converge_ipvs(
    opts: LbOptions,
    lb: LbPlan,
    *,
    runner: Callable[[Sequence[str]], tuple[int, str, str]],
    stdin_runner: Callable[[Sequence[str], str], tuple[int, str, str]] | None,
    check_mode: bool,
) -> LbResult:
    """The IPVS engine: only entries on pool addresses are k8router's; changed by diff, never flushed."""
    driver = IpvsDriver(runner, opts.ipvsadm, restore_runner=stdin_runner)
    pool = opts.settings.pool

    def owned(key: tuple[str, str, int]) -> bool:
        return pool_contains(pool, key[1])

    warnings: list[str] = []
    desired = desired_table(lb.virtuals, warnings)
    try:
        current = driver.current()
        ops = plan(desired, current, owned)
    except (IpvsError, ValueError) as exc:
        raise K8RouterError(f"IPVS: {exc}", warnings) from exc
    result = LbResult(
        changed=bool(ops),
        operations=[op.text for op in ops],
        diff={
            "before": format_save({k: v for k, v in current.items() if owned(k)}),
            "after": format_save({k: v for k, v in desired.items() if owned(k)}),
        },
        warnings=warnings,
    )
    if ops and not check_mode:
        try:
            _apply(driver, ops)
        except IpvsError as exc:
            raise K8RouterError(f"IPVS: {exc}", warnings) from exc
    return result


def _present(binary: str) -> bool:
    return shutil.which(binary) is not None


def _ipvs_loaded(ipvsadm: str) -> bool:
    return os.path.exists(PROC_IP_VS) and _present(ipvsadm)


def drop_other_engine(
    opts: LbOptions, runner: Callable[[Sequence[str]], tuple[int, str, str]], *, check_mode: bool
) -> LbResult:
    """Remove what the engine not in use left behind (after a switch of load_balancer.engine), by the same plan,
    check and diff rules: k8router's IPVS virtual services (on pool addresses) when the engine is nftables, the
    table inet k8router_lb when it is ipvs. Skipped quietly where the other engine's tool or kernel part is
    absent; a tool that cannot read is a warning; a removal that fails fails the L4 half, as the engine would.
    The result holds ``cleanup``, ``cleanup_diff`` and ``warnings``."""
    result = _drop_ipvs(opts, runner, check_mode) if opts.engine == "nftables" else _drop_nft(opts, runner, check_mode)
    result.changed = bool(result.cleanup)
    return result


def _drop_ipvs(opts: LbOptions, runner: Callable[[Sequence[str]], tuple[int, str, str]], check_mode: bool) -> LbResult:
    if not _ipvs_loaded(opts.ipvsadm):
        return LbResult()
    pool = opts.settings.pool

    def owned(key: tuple[str, str, int]) -> bool:
        return pool_contains(pool, key[1])

    driver = IpvsDriver(runner, opts.ipvsadm)
    try:
        current = driver.current()
        ops = plan({}, current, owned)
    except (IpvsError, ValueError) as exc:
        return LbResult(warnings=[f"IPVS: entries the ipvs engine may have left behind not looked for: {exc}"])
    if not ops:
        return LbResult()
    before = format_save({k: v for k, v in current.items() if owned(k)})
    result = LbResult(
        cleanup=[f"{op.text} (the ipvs engine's; engine is nftables)" for op in ops],
        cleanup_diff={"before_header": IPVS_HEADER, "after_header": IPVS_HEADER, "before": before, "after": ""},
    )
    if not check_mode:
        try:
            driver.apply(ops)
        except IpvsError as exc:
            raise K8RouterError(f"IPVS: removing the ipvs engine's entries: {exc}") from exc
    return result


def _drop_nft(opts: LbOptions, runner: Callable[[Sequence[str]], tuple[int, str, str]], check_mode: bool) -> LbResult:
    if not _present(opts.nft):
        return LbResult()
    driver = NftDriver(runner, None, opts.nft)
    try:
        live = driver.current()
    except NftError as exc:
        return LbResult(warnings=[f"nftables: the nftables engine's table not looked for: {exc}"])
    if not live.present:
        return LbResult()
    before = live.text if live.problem is not None else nft_render(live.table)
    result = LbResult(
        cleanup=[f"delete table {NFT_TABLE} (the nftables engine's; engine is ipvs)"],
        cleanup_diff={"before_header": NFT_HEADER, "after_header": NFT_HEADER, "before": before, "after": ""},
    )
    if not check_mode:
        try:
            driver.delete()
        except NftError as exc:
            raise K8RouterError(f"nftables: {exc}") from exc
    return result


def _converge_nft(
    opts: LbOptions,
    lb: LbPlan,
    *,
    runner: Callable[[Sequence[str]], tuple[int, str, str]],
    stdin_runner: Callable[[Sequence[str], str], tuple[int, str, str]] | None,
    check_mode: bool,
) -> LbResult:
    """The nftables engine: k8router's whole table, replaced in one transaction when it differs (see _nft)."""
    owners: dict[str, list[str]] = {}
    for key, address in sorted(lb.addresses.items()):
        owners.setdefault(address, []).append(key)
    driver = NftDriver(runner, stdin_runner, opts.nft)
    try:
        table = nft_plan(driver, lb.virtuals, (), owners)
    except (NftError, ValueError) as exc:
        raise K8RouterError(f"nftables: {exc}") from exc
    result = LbResult(
        changed=bool(table.operations),
        operations=table.operations,
        diff={"before": table.before, "after": table.after},
        diff_header=NFT_HEADER,
        warnings=list(table.warnings),
    )
    if table.operations and not check_mode:
        try:
            driver.apply(table.text)
        except NftError as exc:
            raise K8RouterError(f"nftables: {exc}", result.warnings) from exc
    return result


def publish(lb: LbPlan, sources: Sequence[ClusterSource]) -> list[str]:
    """Write each planned address into its Service's status (only the router set that owns the classes does).

    ``lb.status_writes`` never holds a Service whose status names an address outside the pool: another
    owner's status is reported by the planner and left alone. Each write carries the resourceVersion the
    address was planned from, so a status written since (by another router set, or another router of this
    one) is never overwritten: on a conflict the Service is read again and the write repeated once only if
    nothing its address depends on changed (see _services.recheck_status_write). A write that fails or
    conflicts again is a warning naming the Service; the next run decides again. Never raises.
    """
    warnings = []
    by_name = {source.name: source for source in sources}
    for key, address in sorted(lb.status_writes.items()):
        try:
            warning = _publish_one(by_name[key.split("/", 1)[0]], lb.status_read[key], address)
        except ClusterReadError as exc:
            warning = str(exc)
        if warning is not None:
            warnings.append(warning)
    return warnings


def _publish_one(source: ClusterSource, read: LbService, address: str) -> str | None:
    """One status write with its precondition, re-decided once after a conflict: None, or why not written."""
    try:
        publish_address(source, read.namespace, read.name, address, read.resource_version)
        return None
    except StatusConflictError:
        pass
    fresh = read_service(source, read.namespace, read.name)
    again, why = recheck_status_write(read, fresh, address)
    if not again or fresh is None:
        return why
    try:
        publish_address(source, read.namespace, read.name, address, fresh.resource_version)
    except StatusConflictError as exc:
        return f"{exc}; it changed again while being written (twice in one run), the next run decides again"
    return None
