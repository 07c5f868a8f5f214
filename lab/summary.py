# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the client sees through the VIPs and the load-balancer address, what the routers hold (VIPs, BGP routes,
ECMP next hops, health checks), and the seal's counters: read, waited for, summed up and printed."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubernetes import client as k8s

from lab import seal
from lab.clusters import running_clusters
from lab.host import client, in_container, log, probe, run
from lab.topology import (
    CLUSTERS,
    CONVERGE_INTERVAL,
    HARDENED,
    HTTP_PORT,
    INGRESS_VIP,
    L4_NAMESPACE,
    L4_REQUESTS,
    L4_SERVICE,
    LB_ADDRESS,
    ROUTERS,
    UDP_ECHO_PORT,
)
from tests.fixtures import kubelab


def seal_counts() -> dict[str, int]:
    """Packets the seal dropped, per rule (empty: the seal is not in place)."""
    out = run(["nft", "-j", "list", "table", "inet", seal.TABLE], check=False)
    return seal.dropped(out) if out.strip() else {}


def vip_holder(vip: str) -> str | None:
    for name in ROUTERS:
        if f" {vip}/" in in_container(name, "ip", "-4", "-o", "addr", "show", check=False):
            return name
    return None


RELEASE_SCRIPT = (
    ". /etc/os-release; v=$(haproxy -v | head -1 | cut -d' ' -f3); "
    "k=$(keepalived --version 2>&1 | head -1 | cut -d' ' -f2); b=$(bird --version 2>&1 | cut -d' ' -f3); "
    'echo "$PRETTY_NAME, haproxy $v, keepalived $k, BIRD $b"'
)


def router_release(router: str) -> str:
    """``router``'s Debian release and daemon versions, as one line."""
    return in_container(router, "bash", "-c", RELEASE_SCRIPT, check=False).strip() or "release not readable"


def both_releases(releases: Mapping[str, str]) -> bool:
    """Whether the router set runs Debian 12 and Debian 13 (the lab's mixed set)."""
    found = " ".join(releases.values())
    return "Debian GNU/Linux 12 " in found and "Debian GNU/Linux 13 " in found


STAT_SCRIPT = (
    "import socket;s=socket.socket(socket.AF_UNIX);s.connect('/run/haproxy/admin.sock');s.sendall(b'show stat\\n')\n"
    "print(b''.join(iter(lambda: s.recv(65536), b'')).decode())"
)


def pods_down(router: str) -> list[str]:
    """The controller pods whose haproxy health check does not pass on ``router`` (k8r_pods_* servers not UP)."""
    stat = in_container(router, "python3", "-c", STAT_SCRIPT, check=False)
    rows = [line.split(",") for line in stat.splitlines() if line.startswith("k8r_pods_")]
    return [
        f"{r[0]}/{r[1]} {r[17]}" for r in rows if len(r) > 17 and r[1] != "BACKEND" and r[17] not in ("UP", "MAINT")
    ]


def wait_until(check: Callable[[], tuple[bool, str]], what: str, timeout: float, interval: float) -> None:
    """Poll ``check`` (done, what is still missing) until done or ``timeout``; log either way, never raise: the
    summary that follows says what failed."""
    started = time.monotonic()
    while True:
        done, missing = check()
        if done:
            log(f"{what} ({time.monotonic() - started:.0f}s)")
            return
        if time.monotonic() - started > timeout:
            log(f"after {timeout:.0f}s: {missing}")
            return
        time.sleep(interval)


def wait_for_health_checks(timeout: float = 60) -> None:
    """Until haproxy's health checks pass for every pod on every router (the workers' routes come with their BGP
    sessions, late in site.yml; a pod that was checked DOWN needs its `rise` checks)."""

    def check() -> tuple[bool, str]:
        down = {router: pods_down(router) for router in ROUTERS}
        return not any(down.values()), f"health checks still failing: {down}"

    wait_until(check, "haproxy's health checks pass for every pod", timeout, interval=1)


def parse_bird_routes(text: str) -> list[str]:
    """The prefixes of ``ip -4 route show proto bird``: learnt ones, and the clusters' unreachable covers (the
    ``nexthop`` lines of a multipath route are its next hops, not routes)."""
    routes = []
    for line in text.splitlines():
        words = line.split()
        if words and words[0] == "unreachable":
            routes.append(f"{words[1]} (unreachable cover)")
        elif words and words[0] != "nexthop":
            routes.append(words[0])
    return sorted(routes)


def bird_routes(router: str) -> list[str]:
    """The kernel routes BIRD installed on ``router``: learnt prefixes, and the clusters' unreachable covers."""
    return parse_bird_routes(in_container(router, "ip", "-4", "route", "show", "proto", "bird", check=False))


def parse_next_hops(text: str) -> list[str]:
    """The next hops of one route in ``ip route show PREFIX``: the gateway of a single path, or each ``nexthop via``
    of a multipath route, in the kernel's order."""
    words = text.split()
    return [words[i + 1] for i, word in enumerate(words[:-1]) if word == "via"]


def next_hops(router: str, prefix: str) -> dict[str, Any]:
    out = in_container(router, "ip", "-4", "route", "show", prefix, check=False)
    return {"route": " ".join(out.split()), "next_hops": parse_next_hops(out)}


def l4_tally(answers: Sequence[Mapping[str, Any]], expected: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """What N requests through the load-balancer address show: answers per cluster and per pod, failures; ok when
    every request was answered and every expected pod (``expected``: cluster -> its pods) answered some."""
    ok_answers = [a for a in answers if a.get("ok")]
    by_cluster = Counter(str(a.get("cluster", "-")) for a in ok_answers)
    by_pod: dict[str, dict[str, int]] = {}
    for a in ok_answers:
        pods = by_pod.setdefault(str(a.get("cluster", "-")), {})
        pods[str(a.get("pod", "-"))] = pods.get(str(a.get("pod", "-")), 0) + 1
    missing = sorted(f"{c}/{pod}" for c, pods in expected.items() for pod in pods if pod not in by_pod.get(c, {}))
    unexpected = sorted(c for c in by_cluster if c not in expected)
    return {
        "requests": len(answers),
        "answered_by": dict(sorted(by_cluster.items())),
        "pods": {c: dict(sorted(p.items())) for c, p in sorted(by_pod.items())},
        "failed": len(answers) - len(ok_answers),
        "errors": sorted({str(a["error"]) for a in answers if a.get("error")}),
        "missing": missing,
        "ok": bool(answers) and len(ok_answers) == len(answers) and not missing and not unexpected,
    }


def l4_expected() -> dict[str, list[str]]:
    return {s.name: [ip for w in s.workers for ip in w.echo_pod_ips] for s in CLUSTERS}


def l4_probe(protocol: str, port: int, count: int = L4_REQUESTS) -> dict[str, Any]:
    res = client("l4", "--address", LB_ADDRESS, "--port", str(port), "--protocol", protocol, "--count", str(count))
    return l4_tally(res["answers"], l4_expected())


def l4_status(clusters: Mapping[str, kubelab.Cluster]) -> dict[str, dict[str, Any]]:
    """The L4 Service's status.loadBalancer.ingress, read from each cluster's API server."""
    found: dict[str, dict[str, Any]] = {}
    for spec in CLUSTERS:
        if spec.name not in clusters:
            found[spec.name] = {"ingress": [], "ok": False}
            continue
        with clusters[spec.name].api_client() as api:
            svc = k8s.CoreV1Api(api).read_namespaced_service_status(L4_SERVICE, L4_NAMESPACE)
        lb = svc.status.load_balancer if svc.status else None
        ips = [str(i.ip) for i in (lb.ingress if lb and lb.ingress else []) if i.ip]
        found[spec.name] = {"ingress": ips, "ok": ips == [LB_ADDRESS]}
    return found


def ecmp_routes() -> dict[str, dict[str, Any]]:
    """Each router's route to the service CIDR of every cluster with more than one worker: one next hop each."""
    found: dict[str, dict[str, Any]] = {}
    for spec in CLUSTERS:
        if len(spec.workers) < 2:
            continue
        wanted = sorted(w.ip for w in spec.workers)
        for router in ROUTERS:
            route = next_hops(router, spec.service_cidr)
            found[f"{router} {spec.service_cidr}"] = {**route, "ok": sorted(route["next_hops"]) == wanted}
    return found


def wait_for_l4(timeout: float = 90) -> None:
    """Until the ECMP routes have all their next hops (each worker's BGP session) and the Service status is
    published: both come with the first runs after site.yml."""

    def check() -> tuple[bool, str]:
        routes, status = ecmp_routes(), l4_status(running_clusters() or {})
        done = all(r["ok"] for r in routes.values()) and all(v["ok"] for v in status.values())
        return done, f"routes {routes}, status {status}"

    wait_until(check, "ECMP routes and the L4 Service's status in place", timeout, interval=2)


def summary_seal_ok(dropped: Mapping[str, int]) -> bool:
    """The seal is in place and has dropped nothing: no lab packet tried to leave the lab."""
    return bool(dropped) and not any(dropped.values())


def collect_summary() -> dict[str, Any]:
    clusters = running_clusters() or {}
    hosts: dict[str, dict[str, Any]] = {}
    for host in sorted({h for s in CLUSTERS for h in s.hosts}):
        res = probe(host)
        answers = res["answers"]
        expected = sorted(s.name for s in CLUSTERS if host in s.hosts)
        got = Counter(a.get("cluster", "-") for a in answers if a.get("ok"))
        hosts[host] = {
            "expected": expected,
            "answered_by": dict(sorted(got.items())),
            "pods": sorted({a["pod"] for a in answers if a.get("pod")}),
            "failed": sum(1 for a in answers if not a.get("ok")),
            "certificate": sorted({a.get("cert_cn", "") for a in answers if a.get("ok")}),
            "errors": sorted({a.get("error", "") for a in answers if a.get("error")}),
            # the TCP source the pod saw: a router's own address (nothing masquerades in the lab)
            "sources": sorted({a.get("src", "-") for a in answers if a.get("ok")}),
            "ok": sorted(got) == expected
            and all(a.get("ok") for a in answers)
            and {a.get("src") for a in answers} <= set(ROUTERS.values()),
        }
    api: dict[str, dict[str, Any]] = {}
    for spec in CLUSTERS:
        port = clusters[spec.name].api_port if spec.name in clusters else 0
        res = client("get", f"https://{spec.api_vip}:{port}/readyz", "--ca", spec.client_ca())
        # A hardened API server refuses this anonymous request (401): it answered through the VIP, so haproxy's
        # checks (with their client certificate) found it live.
        wanted_status = 401 if spec.name in HARDENED else 200
        api[spec.name] = {
            "url": f"https://{spec.api_vip}:{port}",
            "status": res.get("status"),
            "expected": wanted_status,
            "error": res.get("error", ""),
            "ok": res.get("status") == wanted_status,
        }
    routes = {name: bird_routes(name) for name in ROUTERS}
    releases = {name: router_release(name) for name in ROUTERS}
    timers = {
        name: in_container(name, "systemctl", "is-active", "k8router-converge.timer", check=False).strip()
        for name in ROUTERS
    }
    last_runs = {
        name: in_container(name, "systemctl", "show", "-P", "Result", "k8router-converge.service", check=False).strip()
        for name in ROUTERS
    }
    agents = {name: agent_state(name) for name in ROUTERS}
    l4 = {f"{proto}/{port}": l4_probe(proto, port) for proto, port in (("tcp", HTTP_PORT), ("udp", UDP_ECHO_PORT))}
    status = l4_status(clusters)
    ecmp = ecmp_routes()
    sealed = seal_counts()
    return {
        "ingress_vip": INGRESS_VIP,
        "ingress_master": vip_holder(INGRESS_VIP),
        "hosts": hosts,
        "api": api,
        "api_masters": {s.name: vip_holder(s.api_vip) for s in CLUSTERS},
        "bgp_routes": routes,
        "router_release": releases,
        "converge_timer": timers,
        "converge_last_result": last_runs,
        "agent": agents,
        "lb_address": LB_ADDRESS,
        "lb_master": vip_holder(LB_ADDRESS),
        "l4_service": f"{L4_NAMESPACE}/{L4_SERVICE}",
        "l4": l4,
        "l4_status": status,
        "ecmp": ecmp,
        "seal": {"dropped": sealed, "ok": summary_seal_ok(sealed)},
        "ok": summary_seal_ok(sealed)
        and both_releases(releases)
        and all(h["ok"] for h in hosts.values())
        and all(a["ok"] for a in agents.values())
        and all(a["ok"] for a in api.values())
        and all(v["ok"] for v in l4.values())
        and all(v["ok"] for v in status.values())
        and bool(ecmp)
        and all(v["ok"] for v in ecmp.values()),
    }


AGENT_HEALTHZ = "http://127.0.0.1:9639/healthz"
_HEALTHZ = (
    "import sys, urllib.error, urllib.request\n"
    "try:\n"
    "    print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().strip())\n"
    "except urllib.error.HTTPError as exc:\n"
    "    print(exc.read().decode().strip())\n"
    "except OSError as exc:\n"
    "    print(f'no answer: {exc}')\n"
)


def agent_state(name: str) -> dict[str, Any]:
    """The agent's unit state and what its /healthz says (``following``: every cluster watched, one run done)."""
    active = in_container(name, "systemctl", "is-active", "k8router-agent.service", check=False).strip()
    healthz = in_container(name, "python3", "-c", _HEALTHZ, AGENT_HEALTHZ, check=False).strip()
    return {"active": active, "healthz": healthz, "ok": active == "active" and healthz == "following"}


def print_summary(summary: Mapping[str, Any]) -> int:
    print()
    print("k8router lab")
    print(f"  ingress VIP {summary['ingress_vip']} held by {summary['ingress_master']}")
    print()
    print(f"  {'host':<20} {'served by (8 requests, SNI)':<30} {'certificate':<18} {'pods':<40} result")
    for host, h in summary["hosts"].items():
        served = ", ".join(f"{c} x{n}" for c, n in h["answered_by"].items()) or "-"
        pods = ", ".join(h["pods"]) or "-"
        foreign = [src for src in h["sources"] if src not in ROUTERS.values()]
        reasons = [*h["errors"], *([f"the pods saw {', '.join(foreign)}, not a router's address"] if foreign else [])]
        result = "ok" if h["ok"] else f"FAIL (expected {', '.join(h['expected'])}; {'; '.join(reasons)})"
        print(f"  {host:<20} {served:<30} {', '.join(h['certificate']):<18} {pods:<40} {result}")
    print()
    for name, a in summary["api"].items():
        holder = summary["api_masters"].get(name)
        result = "ok" if a["ok"] else f"FAIL ({a['status']} {a['error']}, expected {a['expected']})"
        if a["ok"] and a["expected"] == 401:
            result = "ok (401 to an anonymous client: hardened; haproxy's checks use a client certificate)"
        print(f"  API of {name:<6} {a['url']}/readyz via {holder}: {result}")
    print()
    for name, routes in summary["bgp_routes"].items():
        mixed = "" if both_releases(summary.get("router_release", {})) else " (FAIL: not one router of each release)"
        print(f"  {name}: {summary.get('router_release', {}).get(name, '?')}{mixed}")
        print(f"  {name}: BGP routes {', '.join(routes) or 'none'}")
        print(
            f"  {name}: k8router-converge.timer {summary['converge_timer'][name]}, "
            f"last run {summary['converge_last_result'][name] or '-'} (every {CONVERGE_INTERVAL}s)"
        )
        agent = summary["agent"][name]
        result = "ok" if agent["ok"] else "FAIL"
        said = agent["healthz"] or f"no answer on {AGENT_HEALTHZ}"
        print(f"  {name}: k8router-agent {agent['active']}, {said}: {result}")
    print()
    print(
        f"  L4: LoadBalancer Service {summary['l4_service']} of both clusters on {summary['lb_address']} "
        f"(held by {summary['lb_master']}), k8router's nftables engine on the routers, kube-proxy on the workers"
    )
    for port, t in summary["l4"].items():
        served = ", ".join(
            f"{c} x{n} ({', '.join(f'{p} x{k}' for p, k in t['pods'].get(c, {}).items())})"
            for c, n in t["answered_by"].items()
        )
        why = "; ".join([*t["errors"], *(f"no answer from {m}" for m in t["missing"])])
        result = "ok" if t["ok"] else f"FAIL ({t['failed']} of {t['requests']} failed; {why})"
        print(f"  {port:<7} {t['requests']} requests: {served or 'none answered'}: {result}")
    status = ", ".join(f"{c} {', '.join(v['ingress']) or '-'}" for c, v in summary["l4_status"].items())
    status_ok = all(v["ok"] for v in summary["l4_status"].values())
    print(f"  status.loadBalancer.ingress: {status}: {'ok' if status_ok else 'FAIL'}")
    for where, r in summary["ecmp"].items():
        print(f"  ECMP {where}: {r['route'] or 'no route'}: {'ok' if r['ok'] else 'FAIL'}")
    dropped = summary["seal"]["dropped"]
    seal_result = "ok" if summary["seal"]["ok"] else "FAIL" + ("" if dropped else " (the seal is not in place)")
    sources = sorted({s for h in summary["hosts"].values() for s in h["sources"]})
    counted = ", ".join(f"{n} packets {why}" for why, n in dropped.items()) or "-"
    print(f"  sealed: host table inet {seal.TABLE} dropped {counted}: {seal_result}")
    own = bool(sources) and set(sources) <= set(ROUTERS.values())
    print(f"  no masquerading: the ingress pods saw the sources {', '.join(sources) or '-'}: "
          + ("ok (the routers' own)" if own else "FAIL (not the routers' own addresses)"))  # fmt: skip
    print()
    print("  all paths ok" if summary["ok"] else "  SOME PATHS FAILED")
    return 0 if summary["ok"] else 1
