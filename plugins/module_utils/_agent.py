# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent: follows every cluster between the periodic runs and applies each change through the same engine.

Per cluster and per kind of object (Ingresses, IngressClasses, the controller's EndpointSlices, and the Services
when the router set serves LoadBalancer services) a thread lists, then watches from the list's resourceVersion
with bookmarks; a watch that ends is resumed from the last resourceVersion seen, one answered with 410 Gone lists
again, and a failed connection is retried with a backoff of at most ``backoff_max`` seconds. Changes are coalesced
over ``window`` seconds into one run of _converge.run (the same lock as the periodic run), whose reader is the
watches' state: a cluster whose watches are not all connected counts as unread there, so its last-known-good
state is served exactly as in the periodic run. A change that needs a reload waits until ``reload_interval``
seconds have passed since the last reload; a full run (credentials, certificate files) every ``resync`` seconds.

Prometheus metrics (text format 0.0.4) on ``metrics_address``: see METRICS.
"""

from __future__ import annotations

import argparse
import http.server
import json
import logging
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.k8router.edge.plugins.module_utils._cluster import (
    PAGE,
    ClusterSource,
    api_client,
    api_error,
    snapshot_of,
)
from ansible_collections.k8router.edge.plugins.module_utils._converge import run, run_figures
from ansible_collections.k8router.edge.plugins.module_utils._errors import K8RouterError, LockError
from ansible_collections.k8router.edge.plugins.module_utils._model import ClusterSnapshot

try:
    from kubernetes import client as k8s_client
    from kubernetes.watch.watch import iter_resp_lines
except ImportError:  # the agent runs from the venv that has it; importing this module needs no client
    k8s_client = None  # type: ignore[assignment]

LOG = logging.getLogger("k8router.agent")
KINDS = ("ingresses", "ingressclasses", "endpointslices", "services")


@dataclass(frozen=True)
class AgentSettings:
    window: float = 0.2  # seconds a change waits for the changes that come with it
    reload_interval: float = 1.0  # at least this many seconds between two reloads
    resync: float = 300.0  # a full run (credentials renewed, certificate files read again) this often
    watch_timeout: float = 300.0  # the API server ends a watch after about this long; it is resumed at once
    backoff_max: float = 2.0  # the longest wait before a failed connection is tried again
    metrics_address: tuple[str, int] | None = ("127.0.0.1", 9639)
    start_timeout: float = 30.0  # the first run waits this long at most for every cluster's first list


class _Watched:
    """One kind of object of one cluster, as listed and watched."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.objects: dict[str, Any] = {}
        self.resource_version: str | None = None  # None: list (again) before watching
        self.synced = False  # listed at least once
        self.connected = False  # the last list or watch request was answered
        self.error: str | None = None
        self.restarts = 0
        self.errors = 0
        self.relists = 0
        self.events = 0


class ClusterWatch:
    """The watches of one cluster: their objects, and whether they are all connected."""

    def __init__(self, source: ClusterSource, notify: Callable[[str], None], settings: AgentSettings) -> None:
        self.source = source
        self._notify = notify
        self._settings = settings
        kinds = KINDS if source.read_services else KINDS[:3]
        self.kinds = {kind: _Watched(kind) for kind in kinds}
        self.lock = threading.Lock()
        self.last_read = 0.0  # time.time() of the last list, event, bookmark or answered watch request
        self.broken_since: float | None = None  # time.time() since which a watch is not connected
        self.stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ state
    @property
    def healthy(self) -> bool:
        with self.lock:
            return all(w.synced and w.connected for w in self.kinds.values())

    @property
    def synced_or_failed(self) -> bool:
        with self.lock:
            return all(w.synced or w.errors for w in self.kinds.values())

    def error(self) -> str:
        with self.lock:
            problems = [f"{w.kind}: {w.error}" for w in self.kinds.values() if w.error]
            unsynced = [w.kind for w in self.kinds.values() if not w.synced and not w.error]
        if unsynced:
            problems.append(f"not listed yet: {', '.join(unsynced)}")
        return f"cluster {self.source.name}: watch not connected ({'; '.join(problems) or 'reconnecting'})"

    def snapshot(self) -> ClusterSnapshot:
        """The cluster's snapshot now, from the objects as watched."""
        with self.lock:
            objects = {k: list(w.objects.values()) for k, w in self.kinds.items()}
        snap = snapshot_of(
            self.source,
            objects["ingresses"],
            objects["ingressclasses"],
            objects["endpointslices"],
            objects.get("services", []),
            time.time(),
        )
        return snap

    def counters(self) -> dict[str, dict[str, int]]:
        with self.lock:
            return {
                kind: {"restarts": w.restarts, "errors": w.errors, "relists": w.relists, "events": w.events}
                for kind, w in self.kinds.items()
            }

    # ------------------------------------------------------------------ threads
    def start(self) -> None:
        for kind in self.kinds:
            thread = threading.Thread(target=self._follow, args=(kind,), name=f"watch-{self.source.name}-{kind}")
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def _calls(self, api: Any, kind: str) -> tuple[Callable[..., Any], dict[str, Any]]:
        src = self.source
        if kind == "ingresses":
            return k8s_client.NetworkingV1Api(api).list_ingress_for_all_namespaces, {}
        if kind == "ingressclasses":
            return k8s_client.NetworkingV1Api(api).list_ingress_class, {}
        if kind == "endpointslices":
            return k8s_client.DiscoveryV1Api(api).list_namespaced_endpoint_slice, {
                "namespace": src.controller_namespace,
                "label_selector": f"kubernetes.io/service-name={src.controller_service}",
            }
        return k8s_client.CoreV1Api(api).list_service_for_all_namespaces, {}

    def _follow(self, kind: str) -> None:
        watched = self.kinds[kind]
        backoff = 0.2
        while not self.stop.is_set():
            try:
                api = api_client(self.source.kubeconfig, self.source.context)  # a renewed token is read here
            except Exception as exc:
                self._failed(watched, f"kubeconfig {self.source.kubeconfig}: {exc}")
                backoff = self._wait(backoff)
                continue
            try:
                call, kwargs = self._calls(api, kind)
                if watched.resource_version is None:
                    self._list(watched, call, kwargs)
                self._watch(watched, api, call, kwargs)
                backoff = 0.2
                with self.lock:
                    watched.restarts += 1
            except _Gone:
                with self.lock:
                    watched.resource_version = None
                    watched.relists += 1
                    watched.restarts += 1
            except Exception as exc:
                if self.stop.is_set():
                    break
                self._failed(watched, api_error(exc))
                backoff = self._wait(backoff)
            finally:
                api.close()

    def _wait(self, backoff: float) -> float:
        self.stop.wait(backoff * _jitter())
        return min(backoff * 2, self._settings.backoff_max)

    def _failed(self, watched: _Watched, why: str) -> None:
        with self.lock:
            first = watched.connected or watched.error is None
            watched.connected = False
            watched.error = why
            watched.errors += 1
            if self.broken_since is None:
                self.broken_since = time.time()
        if first:
            LOG.warning("cluster %s: %s: %s; reconnecting", self.source.name, watched.kind, why)
            self._notify(self.source.name)

    def _connected(self, watched: _Watched) -> None:
        with self.lock:
            was = watched.connected
            watched.connected, watched.error = True, None
            self.last_read = time.time()
            if all(w.connected for w in self.kinds.values()):
                self.broken_since = None
        if not was:
            self._notify(self.source.name)

    def _list(self, watched: _Watched, call: Callable[..., Any], kwargs: Mapping[str, Any]) -> None:
        items: dict[str, Any] = {}
        token: str | None = None
        version = None
        t = self.source.timeout
        while True:
            page = (
                call(limit=PAGE, _continue=token, _request_timeout=t, **kwargs)
                if token
                else call(limit=PAGE, _request_timeout=t, **kwargs)
            )
            for item in page.items or []:
                items[_key(item.metadata)] = item
            version = version or (page.metadata.resource_version if page.metadata else None)
            token = page.metadata._continue if page.metadata else None
            if not token:
                break
        with self.lock:
            watched.objects = items
            watched.resource_version = version
            watched.synced = True
        self._connected(watched)

    def _watch(self, watched: _Watched, api: Any, call: Callable[..., Any], kwargs: Mapping[str, Any]) -> None:
        """One watch request, until the API server ends it: events applied, resourceVersion kept."""
        timeout = int(self._settings.watch_timeout * _jitter())
        resp = call(
            watch=True,
            resource_version=watched.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout,
            _preload_content=False,
            _request_timeout=(self.source.timeout, timeout + 30),
            **kwargs,
        )
        try:
            if resp.status == 410:
                raise _Gone()
            if not 200 <= resp.status <= 299:
                raise RuntimeError(f"HTTP {resp.status}: {resp.reason}")
            self._connected(watched)
            item_type = _ITEM_TYPES[watched.kind]
            for line in iter_resp_lines(resp):  # type: ignore[no-untyped-call]
                if self.stop.is_set():
                    return
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, raw = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if raw.get("code") == 410:
                        raise _Gone()
                    raise RuntimeError(f"watch error {raw.get('code')}: {raw.get('message')}")
                version = (raw.get("metadata") or {}).get("resourceVersion")
                if kind == "BOOKMARK":
                    with self.lock:
                        watched.resource_version = version or watched.resource_version
                        self.last_read = time.time()
                    continue
                obj = api.deserialize(json.dumps(raw), item_type, "application/json")
                with self.lock:
                    if kind == "DELETED":
                        watched.objects.pop(_key(obj.metadata), None)
                    else:
                        watched.objects[_key(obj.metadata)] = obj
                    watched.resource_version = version or watched.resource_version
                    watched.events += 1
                    self.last_read = time.time()
                self._notify(self.source.name)
        finally:
            resp.close()
            resp.release_conn()


class _Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410): list again."""


_ITEM_TYPES = {
    "ingresses": "V1Ingress",
    "ingressclasses": "V1IngressClass",
    "endpointslices": "V1EndpointSlice",
    "services": "V1Service",
}


def _jitter() -> float:
    """A factor between 0.8 and 1: watches and retries of many routers do not keep in step."""
    return random.uniform(0.8, 1.0)  # noqa: S311 (spreading, not a secret)


def _key(meta: Any) -> str:
    return f"{meta.namespace or ''}/{meta.name}"


def _served_state(snapshot: ClusterSnapshot) -> Any:
    """What of a snapshot the engine uses: two equal states render the same."""
    return (
        snapshot.hosts,
        snapshot.backends,
        snapshot.draining,
        [s.to_json() for s in snapshot.services],
        snapshot.warnings,
    )


# ---------------------------------------------------------------------------------------------------- metrics
METRICS = {
    "k8router_cluster_up": ("gauge", "1 while every watch of the cluster is connected and listed"),
    "k8router_cluster_last_read_timestamp_seconds": ("gauge", "when the cluster last answered (list, event, bookmark)"),
    "k8router_cluster_snapshot_age_seconds": (
        "gauge",
        "how old the cluster's state is: 0 while its watches are connected",
    ),
    "k8router_watch_restarts_total": ("counter", "watch requests resumed or started again (per cluster and kind)"),
    "k8router_watch_errors_total": ("counter", "failed list or watch requests (per cluster and kind)"),
    "k8router_watch_relists_total": ("counter", "lists again after 410 Gone (per cluster and kind)"),
    "k8router_watch_events_total": ("counter", "watch events applied (per cluster and kind)"),
    "k8router_applies_total": ("counter", "runs of the engine, by outcome (changed, unchanged, deferred, failed)"),
    "k8router_apply_duration_seconds": ("summary", "how long a run of the engine took"),
    "k8router_change_to_apply_seconds": ("summary", "from the first change a run applies to the end of that run"),
    "k8router_reloads_total": ("counter", "haproxy reloads"),
    "k8router_runtime_commands_total": ("counter", "haproxy runtime API commands sent"),
    "k8router_certificate_expiry_days": ("gauge", "days until the certificate expires (per certificate file)"),
    "k8router_lb_addresses_allocated": ("gauge", "load-balancer addresses in use by the services served"),
    "k8router_lb_address_conflicts": ("gauge", "services refused or moved because another holds their address"),
    "k8router_last_apply_timestamp_seconds": ("gauge", "when the last run of the engine ended"),
}

OUTCOMES = ("changed", "unchanged", "deferred", "failed")


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}" if inner else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass
class _Figures:
    applies: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("changed", "unchanged", "deferred", "failed"), 0)
    )
    apply_sum: float = 0.0
    apply_count: int = 0
    latency_sum: float = 0.0
    latency_count: int = 0
    reloads: int = 0
    commands: int = 0
    last: dict[str, Any] = field(default_factory=dict)
    last_apply: float = 0.0
    reload_times: list[float] = field(default_factory=list)  # time.monotonic() of the last reloads (at most 100)


# ---------------------------------------------------------------------------------------------------- the agent
Runner = Callable[[Sequence[str]], "tuple[int, str, str]"]
StdinRunner = Callable[[Sequence[str], str], "tuple[int, str, str]"]


class Agent:
    """Follows the clusters of ``options()`` (called before each run: certificate files are listed again)."""

    def __init__(
        self,
        options: Callable[[], Any],
        settings: AgentSettings,
        runner: Runner,
        stdin_runner: StdinRunner | None = None,
    ) -> None:
        self._options = options
        self.settings = settings
        self._runner = runner
        self._stdin_runner = stdin_runner
        opts = options()
        self.watches = {
            src.name: ClusterWatch(src, self._changed, settings) for src, cfg in opts.clusters if cfg.state != "offline"
        }
        self._cond = threading.Condition()
        self._pending_since: float | None = None  # time.monotonic() of the first change not yet applied
        self._not_before = 0.0
        self._last_reload = -1e9
        self._applied: dict[str, Any] = {}
        self.stop = threading.Event()
        self.figures = _Figures()
        self._server: http.server.ThreadingHTTPServer | None = None
        self.runs = 0

    def _changed(self, _cluster: str) -> None:
        with self._cond:
            if self._pending_since is None:
                self._pending_since = time.monotonic()
            self._cond.notify()

    # ------------------------------------------------------------------ reader given to the engine
    def read(self, sources: Sequence[ClusterSource]) -> tuple[dict[str, ClusterSnapshot], dict[str, str]]:
        snapshots: dict[str, ClusterSnapshot] = {}
        errors: dict[str, str] = {}
        for src in sources:
            watch = self.watches.get(src.name)
            if watch is None:
                errors[src.name] = (
                    f"cluster {src.name}: not followed by the agent (restart it after a change of clusters)"
                )
            elif watch.healthy:
                snapshots[src.name] = watch.snapshot()
            else:
                errors[src.name] = watch.error()
        return snapshots, errors

    # ------------------------------------------------------------------ the loop
    def start(self) -> None:
        if self.settings.metrics_address:
            self._serve_metrics(self.settings.metrics_address)
        for watch in self.watches.values():
            watch.start()

    def close(self) -> None:
        self.stop.set()
        with self._cond:
            self._cond.notify()
        for watch in self.watches.values():
            watch.stop.set()
        deadline = time.monotonic() + 2  # a watch blocked in a read ends with the process (daemon threads)
        for watch in self.watches.values():
            watch.join(max(0.0, deadline - time.monotonic()))
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def run_forever(self) -> None:
        deadline = time.monotonic() + self.settings.start_timeout
        while not self.stop.is_set() and time.monotonic() < deadline:
            if all(w.synced_or_failed for w in self.watches.values()):
                break
            self.stop.wait(0.05)
        next_resync = 0.0  # the first run is a full one
        while not self.stop.is_set():
            now = time.monotonic()
            full = now >= next_resync
            with self._cond:
                pending = self._pending_since
                due = pending is not None and now >= max(pending + self.settings.window, self._not_before)
                if not (full or due):
                    waits = [next_resync - now]
                    if pending is not None:
                        waits.append(max(pending + self.settings.window, self._not_before) - now)
                    self._cond.wait(max(0.005, min([*waits, 1.0])))  # a stop (SIGTERM) is seen within a second
                    continue
                self._pending_since = None
            self._apply(full, pending)
            if full:
                next_resync = time.monotonic() + self.settings.resync

    def _apply(self, full: bool, pending: float | None) -> None:
        states = {name: (w.healthy and _served_state(w.snapshot())) for name, w in self.watches.items()}
        if not full and states == self._applied:
            return  # nothing the engine uses changed (a status update, a heartbeat of a slice)
        defer = time.monotonic() - self._last_reload < self.settings.reload_interval
        try:
            opts = self._options()
            result = run(
                opts,
                self._runner,
                stdin_runner=self._stdin_runner,
                reader=self.read,
                credentials=full,
                defer_reload=defer,
            )
        except LockError as exc:
            LOG.info("%s; trying again in 1 s", exc)
            self._again(pending, 1.0)
            return
        except K8RouterError as exc:
            self.figures.applies["failed"] += 1
            LOG.error("run failed: %s", exc)
            for warning in exc.warnings:
                LOG.warning("%s", warning)
            self._again(pending, self.settings.backoff_max)
            return
        except Exception:
            self.figures.applies["failed"] += 1
            LOG.exception("run failed")
            self._again(pending, self.settings.backoff_max)
            return
        self.runs += 1
        figures = run_figures(result)
        f = self.figures
        f.apply_sum += result.duration
        f.apply_count += 1
        f.last, f.last_apply = figures, time.time()
        f.commands += len(result.commands)
        if result.deferred:
            f.applies["deferred"] += 1
            self._again(pending, self._last_reload + self.settings.reload_interval - time.monotonic())
            return
        f.applies["changed" if result.changed else "unchanged"] += 1
        if result.reloaded:
            f.reloads += 1
            self._last_reload = time.monotonic()
            f.reload_times = [*f.reload_times[-99:], self._last_reload]
        if pending is not None:
            f.latency_sum += time.monotonic() - pending
            f.latency_count += 1
        self._applied = states
        for warning in result.warnings:
            LOG.warning("%s", warning)
        if result.changed or full:
            LOG.info(
                "%s run: %s in %.3f s (%s runtime commands%s); clusters %s",
                "full" if full else "change",
                "changed" if result.changed else "nothing to change",
                result.duration,
                len(result.commands),
                ", reloaded" if result.reloaded else "",
                json.dumps(figures["clusters"], sort_keys=True),
            )

    def _again(self, pending: float | None, after: float) -> None:
        with self._cond:
            self._pending_since = pending if pending is not None else time.monotonic()
            self._not_before = time.monotonic() + max(0.0, after)
            self._applied = {}  # the next run happens even if nothing else changes

    # ------------------------------------------------------------------ metrics
    def metrics_text(self) -> str:
        lines: list[str] = []
        now = time.time()

        def add(name: str, value: float, **labels: str) -> None:
            lines.append(f"{name}{_labels(**labels)} {value:g}")

        def head(name: str) -> None:
            kind, text = METRICS[name]
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")

        watches = sorted(self.watches.items())
        head("k8router_cluster_up")
        for name, w in watches:
            add("k8router_cluster_up", int(w.healthy), cluster=name)
        head("k8router_cluster_last_read_timestamp_seconds")
        for name, w in watches:
            add("k8router_cluster_last_read_timestamp_seconds", round(w.last_read, 3), cluster=name)
        head("k8router_cluster_snapshot_age_seconds")
        for name, w in watches:
            broken = w.broken_since
            age = 0.0 if w.healthy else now - (w.last_read or broken or now)
            add("k8router_cluster_snapshot_age_seconds", round(age, 3), cluster=name)
        counters = {name: w.counters() for name, w in watches}
        for metric, key in (
            ("k8router_watch_restarts_total", "restarts"),
            ("k8router_watch_errors_total", "errors"),
            ("k8router_watch_relists_total", "relists"),
            ("k8router_watch_events_total", "events"),
        ):
            head(metric)
            for name, kinds in counters.items():
                for kind, values in sorted(kinds.items()):
                    add(metric, values[key], cluster=name, kind=kind)
        f = self.figures
        head("k8router_applies_total")
        for outcome, count in sorted(f.applies.items()):
            add("k8router_applies_total", count, outcome=outcome)
        head("k8router_apply_duration_seconds")
        add("k8router_apply_duration_seconds_sum", round(f.apply_sum, 6))
        add("k8router_apply_duration_seconds_count", f.apply_count)
        head("k8router_change_to_apply_seconds")
        add("k8router_change_to_apply_seconds_sum", round(f.latency_sum, 6))
        add("k8router_change_to_apply_seconds_count", f.latency_count)
        head("k8router_reloads_total")
        add("k8router_reloads_total", f.reloads)
        head("k8router_runtime_commands_total")
        add("k8router_runtime_commands_total", f.commands)
        head("k8router_certificate_expiry_days")
        for cert, days in sorted((f.last.get("certificate_expiry_days") or {}).items()):
            add("k8router_certificate_expiry_days", days, certificate=cert)
        head("k8router_lb_addresses_allocated")
        add("k8router_lb_addresses_allocated", f.last.get("lb_addresses_allocated", 0))
        head("k8router_lb_address_conflicts")
        add("k8router_lb_address_conflicts", f.last.get("lb_address_conflicts", 0))
        head("k8router_last_apply_timestamp_seconds")
        add("k8router_last_apply_timestamp_seconds", round(f.last_apply, 3))
        return "\n".join(lines) + "\n"

    def _serve_metrics(self, address: tuple[str, int]) -> None:
        agent = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/metrics":
                    body, ctype = agent.metrics_text().encode(), "text/plain; version=0.0.4; charset=utf-8"
                    status = 200
                elif self.path == "/healthz":
                    following = all(w.healthy for w in agent.watches.values()) and agent.runs > 0
                    body, ctype = (b"following\n" if following else b"not following\n"), "text/plain"
                    status = 200 if following else 503
                else:
                    body, ctype, status = b"not found\n", "text/plain", 404
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(address, Handler)
        self._server.daemon_threads = True
        thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        thread.start()

    @property
    def metrics_port(self) -> int | None:
        return self._server.server_address[1] if self._server else None


# ---------------------------------------------------------------------------------------------------- main
def load_params(path: str) -> dict[str, Any]:
    """The module parameters of the periodic run (the converge role's file), validated as the module does."""
    import yaml  # noqa: PLC0415
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator  # noqa: PLC0415

    from ansible_collections.k8router.edge.plugins.module_utils._args import CONVERGE_ARGS  # noqa: PLC0415

    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    params = data.get("k8router_params", data) if isinstance(data, dict) else None
    if not isinstance(params, dict):
        raise K8RouterError(f"{path}: no k8router_params mapping")
    checked = ArgumentSpecValidator(CONVERGE_ARGS).validate(params)
    if checked.error_messages:
        raise K8RouterError(f"{path}: {'; '.join(checked.error_messages)}")
    return dict(checked.validated_parameters)


def _address(text: str) -> tuple[str, int] | None:
    if text in ("", "off"):
        return None
    host, _sep, port = text.rpartition(":")
    return (host.strip("[]") or "127.0.0.1", int(port))


def main(argv: Sequence[str], runner: Runner, stdin_runner: StdinRunner) -> int:
    """The agent's command line (roles/converge/files/k8router-agent.py): runs until SIGTERM; the exit code."""
    parser = argparse.ArgumentParser(prog="k8router-agent", description="Follow the clusters and apply each change.")
    parser.add_argument("--params", default="/etc/k8router/converge-vars.yml", help="the periodic run's parameters")
    parser.add_argument("--window", type=float, default=AgentSettings.window)
    parser.add_argument("--reload-interval", type=float, default=AgentSettings.reload_interval)
    parser.add_argument("--resync", type=float, default=AgentSettings.resync)
    parser.add_argument("--watch-timeout", type=float, default=AgentSettings.watch_timeout)
    parser.add_argument("--metrics", default="127.0.0.1:9639", help="ADDRESS:PORT, or off")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stdout)
    from ansible_collections.k8router.edge.plugins.module_utils._args import options_from_params  # noqa: PLC0415

    try:
        params = load_params(args.params)
        settings = AgentSettings(
            window=args.window,
            reload_interval=args.reload_interval,
            resync=args.resync,
            watch_timeout=args.watch_timeout,
            metrics_address=_address(args.metrics),
        )
        agent = Agent(lambda: options_from_params(params), settings, runner, stdin_runner)
    except (K8RouterError, OSError, ValueError) as exc:
        LOG.error("k8router-agent: %s", exc)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: agent.stop.set())
    signal.signal(signal.SIGINT, lambda *_: agent.stop.set())
    agent.start()
    LOG.info(
        "following %s (window %g s, reload interval %g s, resync %g s, metrics %s)",
        ", ".join(sorted(agent.watches)) or "no cluster",
        settings.window,
        settings.reload_interval,
        settings.resync,
        args.metrics,
    )
    try:
        agent.run_forever()
    finally:
        agent.close()
    return 0
