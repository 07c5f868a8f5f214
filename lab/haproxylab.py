"""Real haproxy for tests and the lab: in a network namespace of the caller's own, with the router
role's own main configuration, and real HTTP servers on pod IPs standing in for ingress-controller
pods. k8router runs outside the namespace (files, admin socket, kill -USR2)."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.k8router.edge.plugins.module_utils._layout import haproxy_files

REPO = Path(__file__).resolve().parents[1]
VIP = "10.250.0.100"

BACKEND_SERVER = r"""
import http.server, socketserver, sys
cluster, address, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"cluster={cluster} pod={address} host={self.headers.get('Host')}\n".encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
S((address, port), H).serve_forever()
"""


def local_runner(argv: Sequence[str]) -> tuple[int, str, str]:
    """k8router's command runner outside Ansible (tests, the lab): argv, no shell."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def netns_exec(ns: str, *argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    argv_ns = ["ip", "netns", "exec", ns, *argv]
    return subprocess.run(argv_ns, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload, no-any-return]


@dataclass
class Haproxy:
    """One haproxy master-worker in ``ns``, configured like a router."""

    ns: str
    root: Path
    proc: subprocess.Popen[bytes] | None = None
    backends: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def conf_dir(self) -> Path:
        return self.root / "k8router.d"

    @property
    def data_dir(self) -> Path:
        return self.root / "k8router"

    @property
    def socket(self) -> Path:
        return self.root / "admin.sock"

    @property
    def config(self) -> Path:
        return self.root / "haproxy.cfg"

    def module_haproxy(self) -> dict[str, object]:
        assert self.proc is not None
        return {
            "config": str(self.config),
            "conf_dir": str(self.conf_dir),
            "data_dir": str(self.data_dir),
            "socket": str(self.socket),
            "reload_command": ["kill", "-USR2", str(self.proc.pid)],
        }

    def worker_pids(self) -> set[int]:
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True, check=False)
        return {int(p) for p in out.stdout.split()}

    def add_pod(self, cluster: str, address: str, port: int = 8080) -> None:
        """A real HTTP server on ``address`` in the namespace, answering with its cluster and address."""
        netns_exec(self.ns, "ip", "route", "del", f"{address}/32", "dev", "gone0")  # one remove_pod took away
        subprocess.run(["ip", "netns", "exec", self.ns, "ip", "addr", "add", f"{address}/32", "dev", "lo"], check=False)
        self.backends[address] = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, sys.executable, "-c", BACKEND_SERVER, cluster, address, str(port)]
        )
        for _attempt in range(100):
            if netns_exec(self.ns, "bash", "-c", f"exec 3<>/dev/tcp/{address}/{port}").returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError(f"backend {address}:{port} did not start")

    def remove_pod(self, address: str) -> None:
        """The pod's process exits (its connections close) and its address goes away: packets to it now go
        out of a link where nobody answers (as to a pod gone from another node), so connecting hangs."""
        proc = self.backends.pop(address)
        proc.kill()
        proc.wait()
        netns_exec(self.ns, "ip", "addr", "del", f"{address}/32", "dev", "lo")
        if netns_exec(self.ns, "ip", "link", "show", "gone0").returncode != 0:
            netns_exec(self.ns, "ip", "link", "add", "gone0", "type", "veth", "peer", "name", "gone1")
            for link in ("gone0", "gone1"):
                netns_exec(self.ns, "ip", "link", "set", link, "up")
        netns_exec(self.ns, "ip", "route", "replace", f"{address}/32", "dev", "gone0")

    def get_many(self, host: str, ca: Path, count: int) -> list[str]:
        """``count`` HTTPS requests for ``host`` over one kept-alive connection (haproxy balances each
        request): ``cluster=...,pod=...`` per answer, or ``failed:<why>`` per failed request."""
        script = (
            "import http.client,socket,ssl,sys\n"
            "host,ca,vip,n=sys.argv[1],sys.argv[2],sys.argv[3],int(sys.argv[4])\n"
            "ctx=ssl.create_default_context(cafile=ca)\n"
            "def conn():\n"
            "    c=http.client.HTTPConnection(vip,443,timeout=10)\n"
            "    c.sock=ctx.wrap_socket(socket.create_connection((vip,443),timeout=10),server_hostname=host)\n"
            "    return c\n"
            "c=conn()\n"
            "for _ in range(n):\n"
            "    try:\n"
            "        c.request('GET','/',headers={'Host':host})\n"
            "        r=c.getresponse();body=r.read().decode()\n"
            "        print(','.join(body.split()[:2]) if r.status==200 else f'failed:{r.status}')\n"
            "    except Exception as e:\n"
            "        print(f'failed:{type(e).__name__}');c=conn()\n"
        )
        out = netns_exec(self.ns, sys.executable, "-c", script, host, str(ca), VIP, str(count), timeout=600)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    def server_states(self) -> dict[str, str]:
        """'backend/server' -> haproxy's operational state (UP, DOWN, MAINT, ...) from ``show stat``."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(self.socket))
            sock.sendall(b"show stat\n")
            data = b"".join(iter(lambda: sock.recv(65536), b""))
        rows = [line.split(",") for line in data.decode().splitlines() if line and not line.startswith("#")]
        return {f"{r[0]}/{r[1]}": r[17] for r in rows if r[1] not in ("FRONTEND", "BACKEND")}

    def get(self, host: str, ca: Path, path: str = "/") -> tuple[int, str, str]:
        """An HTTPS request with SNI ``host`` to the VIP: (status, body, certificate subject)."""
        script = (
            "import ssl,sys\n"
            "import socket\n"
            "ctx=ssl.create_default_context(cafile=sys.argv[2])\n"
            "s=socket.create_connection((sys.argv[3],443),timeout=5)\n"
            "t=ctx.wrap_socket(s,server_hostname=sys.argv[1])\n"
            "subj=dict(x[0] for x in t.getpeercert()['subject'])['commonName']\n"
            "t.sendall(f'GET {sys.argv[4]} HTTP/1.1\\r\\nHost: {sys.argv[1]}\\r\\n'\n"
            "          'Connection: close\\r\\n\\r\\n'.encode())\n"
            "data=b''\n"
            "while True:\n"
            "    b=t.recv(65536)\n"
            "    if not b: break\n"
            "    data+=b\n"
            "head,_,body=data.partition(b'\\r\\n\\r\\n')\n"
            "print(head.split()[1].decode(), subj, body.decode().strip(), sep='|')\n"
        )
        out = netns_exec(self.ns, sys.executable, "-c", script, host, str(ca), VIP, path, timeout=20)
        if out.returncode != 0:
            return 0, out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "", ""
        status, subject, body = out.stdout.strip().split("|", 2)
        return int(status), body, subject


def self_signed(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k8router-fallback")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_name(path.name + ".key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def render_main_config(h: Haproxy) -> None:
    """The router role's own haproxy.cfg template, rendered by Ansible for this namespace."""
    defaults = yaml.safe_load((REPO / "roles/router/defaults/main.yml").read_text())
    variables = {
        **{k: v for k, v in defaults.items() if k.startswith("router_haproxy_")},
        "router__clusters": [],
        "router_ingress_vips": [VIP],
        "router_haproxy_conf_dir": str(h.conf_dir),
        "router_haproxy_data_dir": str(h.data_dir),
        "router__haproxy_files": haproxy_files(str(h.data_dir)),
        "router_haproxy_admin_socket": str(h.socket),
        "router_haproxy_maxconn": 2000,
    }
    extra = h.root / "vars.json"
    extra.write_text(json.dumps(variables))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    out = subprocess.run(
        [
            "ansible", "localhost", "-m", "ansible.builtin.template",
            "-a", f"src={REPO}/roles/router/templates/haproxy.cfg.j2 dest={h.config} mode=0640",
            "-e", f"@{extra}",
        ],
        capture_output=True, text=True, env=env, cwd=REPO, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


@contextmanager
def running_haproxy(root: Path) -> Iterator[Haproxy]:
    """A haproxy like a router's: own network namespace with the VIP, the router role's haproxy.cfg, master-worker.

    Everything it started (haproxy, the backends of ``add_pod``, the namespace) is gone afterwards.
    """
    if os.geteuid() != 0:
        raise RuntimeError("a haproxy in a network namespace needs root")
    ns = f"k8r-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    h = Haproxy(ns, root)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", ns, "ip", "addr", "add", f"{VIP}/32", "dev", "lo"], check=True)
        h.conf_dir.mkdir(parents=True)
        (h.data_dir / "certs").mkdir(parents=True)
        files = haproxy_files(str(h.data_dir))
        self_signed(Path(files["fallback"]))
        Path(files["hosts_map"]).write_text("")
        Path(files["wildcards_map"]).write_text("")
        Path(files["crt_list"]).write_text(f"{files['fallback']}\n")
        render_main_config(h)
        setpriv = shutil.which("setpriv")
        prefix = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []  # dies with this process, whatever happens
        with (root / "haproxy.log").open("wb") as log:
            h.proc = subprocess.Popen(
                [*prefix, "ip", "netns", "exec", ns, "haproxy", "-W", "-S", str(root / "master.sock"),
                 "-f", str(h.config), "-f", str(h.conf_dir)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        # setpriv and `ip netns exec` exec: the Popen pid is haproxy's master (the reload command signals it)
        for _attempt in range(200):
            if h.socket.exists():
                break
            if h.proc.poll() is not None:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("haproxy did not create its admin socket")
        if h.proc.poll() is not None:
            raise RuntimeError(f"haproxy did not start: {(root / 'haproxy.log').read_text()}")
        yield h
    finally:
        if h.proc is not None and h.proc.poll() is None:
            h.proc.send_signal(signal.SIGTERM)
            try:
                h.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                h.proc.kill()
                h.proc.wait()
        for proc in h.backends.values():
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False)
