"""Requests failed while haproxy reloads under steady load (target: 0).

A real haproxy with the router role's configuration (``tests/fixtures/haproxylab.py``: own network namespace,
master-worker, listening sockets handed over on reload) serves one host from a real HTTP backend. Clients inside the
namespace send HTTPS requests without pause, each on a new TLS connection (``new``) and on one keep-alive connection
that reconnects when the server closes it between requests (``keepalive``), while the host reloads haproxy 20 times,
each time waiting until the new worker answers on the admin socket. Prints the figures and writes them to
``bench/results/reloads.json`` (with the load average at start and end); asserts nothing.

Run as root: ``.venv/bin/python bench/bench_reloads.py [--reloads 20]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _entry in (REPO, REPO / ".collections"):  # run as a script: tests.fixtures, and the collection through its link
    if str(_entry) not in sys.path:
        sys.path.insert(0, str(_entry))

HOST = "bench.example.org"
POD = "10.250.5.11"

CLIENT = r"""
import http.client, json, socket, ssl, sys, time
vip, host, mode, stop_file = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ok = failed = reconnects = 0
errors = {}
conn = None
import os
while not os.path.exists(stop_file):
    try:
        if conn is None:
            conn = http.client.HTTPSConnection(vip, 443, context=ctx, timeout=5)  # routed by the Host header
        conn.request("GET", "/", headers={"Host": host, **({"Connection": "close"} if mode == "new" else {})})
        resp = conn.getresponse(); resp.read()
        if resp.status == 200:
            ok += 1
        else:
            failed += 1; errors[f"HTTP {resp.status}"] = errors.get(f"HTTP {resp.status}", 0) + 1
        if mode == "new" or resp.getheader("Connection", "").lower() == "close":
            conn.close(); conn = None; reconnects += mode != "new"
    except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
        # a keep-alive connection closed by the old worker between two requests: a client retries these
        if conn is not None: conn.close()
        conn = None
        if mode == "new":
            failed += 1; errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
        else:
            reconnects += 1
    except Exception as exc:
        failed += 1; errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
        if conn is not None: conn.close()
        conn = None
print(json.dumps({"mode": mode, "ok": ok, "failed": failed, "reconnects": reconnects, "errors": errors}))
"""


def main() -> int:
    from ansible_collections.k8router.edge.plugins.module_utils._haproxy_driver import RuntimeApi  # noqa: PLC0415
    from tests.fixtures.haproxylab import VIP, running_haproxy  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0] if __doc__ else None)
    parser.add_argument("--reloads", type=int, default=20)
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between reloads")
    args = parser.parse_args()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="k8r-reloads-") as tmp, running_haproxy(Path(tmp) / "haproxy") as h:
        h.add_pod("bench", POD, 8080)
        (h.conf_dir / "50-bench.cfg").write_text(
            f"backend k8r_bench\n    mode http\n    server pod1 {POD}:8080 weight 100\n"
        )
        (h.data_dir / "hosts.map").write_text(f"{HOST} k8r_bench\n")
        api = RuntimeApi(str(h.socket))
        assert h.proc is not None
        before = api.worker_pid()
        os.kill(h.proc.pid, signal.SIGUSR2)
        api.wait_for_new_worker(before)
        stop = Path(tmp) / "stop"
        clients = [
            subprocess.Popen(
                ["ip", "netns", "exec", h.ns, sys.executable, "-c", CLIENT, VIP, HOST, mode, str(stop)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for mode in ("new", "keepalive")
        ]
        time.sleep(1.0)
        durations = []
        for _reload in range(args.reloads):
            pid = api.worker_pid()
            started = time.perf_counter()
            os.kill(h.proc.pid, signal.SIGUSR2)
            api.wait_for_new_worker(pid)
            durations.append(time.perf_counter() - started)
            time.sleep(args.pause)
        time.sleep(1.0)
        stop.touch()
        results = [json.loads(c.communicate(timeout=30)[0]) for c in clients]
    print(f"haproxy reloads under load: {args.reloads} reloads, {args.pause:g} s apart")
    print(f"{'clients':<36} {'requests':>9} {'failed':>7} {'reconnects':>11}  errors")
    for r in results:
        label = "new TLS connection per request" if r["mode"] == "new" else "keep-alive (reconnect when closed)"
        print(f"{label:<36} {r['ok'] + r['failed']:>9} {r['failed']:>7} {r['reconnects']:>11}  {r['errors'] or '-'}")
    print(f"reload until the new worker answers: median {sorted(durations)[len(durations) // 2] * 1000:.0f} ms, "
          f"max {max(durations) * 1000:.0f} ms")  # fmt: skip
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "reloads": args.reloads,
        "pause_s": args.pause,
        "requests": sum(r["ok"] + r["failed"] for r in results),
        "failed": sum(r["failed"] for r in results),
        "clients": results,
        "reload_s": durations,
        "load_average_at_start": load_start,
        "load_average_at_end": os.getloadavg(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    (out / "reloads.json").write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
