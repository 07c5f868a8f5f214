# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab client's requests (runs inside the client container; standard library only).

Each request is a new TCP connection to a router VIP with TLS, SNI and certificate verification against
the lab's CA, then ``GET /`` with the host as ``Host``. The stand-in pods answer
``cluster=C pod=IP host=H path=P src=S``. Every command prints one JSON document.

  probe --vip V --host H --ca CA [--count N]          N requests: who answered, with which certificate
  get URL --ca CA                                     one GET (the API VIP's /readyz)
  load --vip V --host H --ca CA --duration S [--interval S]
                                                      requests at a steady pace: a timeline
  wait --vip V --host H --ca CA --cluster C [--timeout S]
                                                      until C answers for H: the epoch time it first did
  l4 --address A --port P --protocol tcp|udp [--count N]
                                                      N plain requests to a load-balancer address, each from
                                                      a new socket: TCP ``GET /`` (no TLS), or one UDP
                                                      datagram the pods echo; who answered
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys
import time
from typing import Any
from urllib.parse import urlsplit

TIMEOUT = 1.0


def _context(ca: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = True
    return ctx


def _parse(raw: bytes) -> tuple[int, str]:
    head, _sep, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return status, body.decode("utf-8", "replace").strip()


def _fields(body: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for word in body.split():
        key, sep, value = word.partition("=")
        if sep:
            out[key] = value
    return out


def request(vip: str, port: int, host: str, ctx: ssl.SSLContext, path: str = "/") -> dict[str, Any]:
    """One HTTPS request to ``vip:port`` for ``host``; never raises (errors are reported in the result)."""
    started = time.time()
    result: dict[str, Any] = {"t": round(started, 3)}
    try:
        with (
            socket.create_connection((vip, port), timeout=TIMEOUT) as raw_sock,
            ctx.wrap_socket(raw_sock, server_hostname=host) as tls,
        ):
            cert = tls.getpeercert() or {}
            req = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: k8router-lab\r\n\r\n"
            tls.sendall(req.encode())
            chunks = []
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        status, body = _parse(b"".join(chunks))
        subject = {str(rdn[0][0]): str(rdn[0][1]) for rdn in cert.get("subject", ()) if rdn}
        result.update(
            ok=status == 200,
            status=status,
            cert_cn=subject.get("commonName", ""),
            cert_serial=cert.get("serialNumber", ""),
            **_fields(body),
        )
    except (OSError, ssl.SSLError) as exc:
        result.update(ok=False, error=f"{type(exc).__name__}: {exc}")
    result["ms"] = round((time.time() - started) * 1000, 1)
    return result


def l4_request(address: str, port: int, protocol: str, seq: int) -> dict[str, Any]:
    """One request to a load-balancer address from a new socket (a new source port, so a new connection for
    conntrack and the balancers); never raises. TCP: ``GET /`` over plain HTTP. UDP: one datagram, and the
    answer must come from ``address`` and carry it back."""
    started = time.time()
    result: dict[str, Any] = {"t": round(started, 3), "seq": seq}
    token = f"k8router-lab-{seq}"
    try:
        if protocol == "tcp":
            with socket.create_connection((address, port), timeout=TIMEOUT) as sock:
                req = f"GET / HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nUser-Agent: k8router-lab\r\n\r\n"
                sock.sendall(req.encode())
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            status, body = _parse(b"".join(chunks))
            result.update(ok=status == 200, status=status, **_fields(body))
        else:
            with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(TIMEOUT)
                sock.connect((address, port))  # only answers from the address itself are received
                sock.send(token.encode())
                data = sock.recv(2048)
            fields = _fields(data.decode("utf-8", "replace"))
            result.update(ok=fields.get("echo") == token, **fields)
            if not result["ok"]:
                result["error"] = f"unexpected answer {data[:80]!r}"
    except OSError as exc:
        result.update(ok=False, error=f"{type(exc).__name__}: {exc}")
    result["ms"] = round((time.time() - started) * 1000, 1)
    return result


def _cmd_l4(args: argparse.Namespace) -> dict[str, Any]:
    answers = [l4_request(args.address, args.port, args.protocol, seq) for seq in range(args.count)]
    return {"address": args.address, "port": args.port, "protocol": args.protocol, "answers": answers}


def _cmd_probe(args: argparse.Namespace) -> dict[str, Any]:
    ctx = _context(args.ca)
    answers = [request(args.vip, args.port, args.host, ctx) for _attempt in range(args.count)]
    return {"host": args.host, "vip": args.vip, "answers": answers}


def _cmd_get(args: argparse.Namespace) -> dict[str, Any]:
    url = urlsplit(args.url)
    ctx = _context(args.ca)
    res = request(url.hostname or "", url.port or 443, url.hostname or "", ctx, url.path or "/")
    return {"url": args.url, **res}


def _cmd_load(args: argparse.Namespace) -> dict[str, Any]:
    ctx = _context(args.ca)
    end = time.time() + args.duration
    timeline = []
    while time.time() < end:
        started = time.time()
        res = request(args.vip, args.port, args.host, ctx)
        timeline.append({k: res.get(k) for k in ("t", "ok", "cluster", "pod", "ms", "error")})
        pause = args.interval - (time.time() - started)
        if pause > 0:
            time.sleep(pause)
    return {"host": args.host, "vip": args.vip, "interval": args.interval, "timeline": timeline}


def _cmd_wait(args: argparse.Namespace) -> dict[str, Any]:
    ctx = _context(args.ca)
    started = time.time()
    deadline = started + args.timeout
    tries = 0
    while time.time() < deadline:
        tries += 1
        res = request(args.vip, args.port, args.host, ctx)
        if res.get("ok") and res.get("cluster") == args.cluster:
            return {"host": args.host, "served_at": res["t"], "started": round(started, 3), "tries": tries}
        time.sleep(args.interval)
    return {"host": args.host, "served_at": None, "started": round(started, 3), "tries": tries}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labclient")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("probe", "load", "wait"):
        p = sub.add_parser(name)
        p.add_argument("--vip", required=True)
        p.add_argument("--port", type=int, default=443)
        p.add_argument("--host", required=True)
        p.add_argument("--ca", required=True)
    sub.choices["probe"].add_argument("--count", type=int, default=8)
    sub.choices["load"].add_argument("--duration", type=float, required=True)
    sub.choices["load"].add_argument("--interval", type=float, default=0.05)
    sub.choices["wait"].add_argument("--cluster", required=True)
    sub.choices["wait"].add_argument("--timeout", type=float, default=120)
    sub.choices["wait"].add_argument("--interval", type=float, default=0.2)
    get = sub.add_parser("get")
    get.add_argument("url")
    get.add_argument("--ca", required=True)
    l4 = sub.add_parser("l4")
    l4.add_argument("--address", required=True)
    l4.add_argument("--port", type=int, required=True)
    l4.add_argument("--protocol", choices=("tcp", "udp"), required=True)
    l4.add_argument("--count", type=int, default=16)
    args = parser.parse_args(argv)
    handlers = {"probe": _cmd_probe, "get": _cmd_get, "load": _cmd_load, "wait": _cmd_wait, "l4": _cmd_l4}
    print(json.dumps(handlers[args.command](args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
