"""Real Kubernetes API servers on loopback for tests and the lab: one etcd + one kube-apiserver per cluster.

Nothing is faked: each cluster is a real ``kube-apiserver`` backed by its own real ``etcd``, with its own CA,
serving certificate, service-account signing key, admin identity (client certificate in ``system:masters``)
and kubeconfig. There is no controller-manager, scheduler or kubelet: objects are whatever the caller writes
through the API (see ``lab/kubeobjects.py``), and service-account tokens are minted with the TokenRequest API
(:func:`mint_token`) instead of token controllers.

Binaries come from ``lab/k8s-build.sh`` (pinned versions, cached outside the repo); ``K8ROUTER_KUBE_BIN`` may
name another directory holding ``etcd``, ``kube-apiserver`` and ``kubectl``.

Library use::

    clusters = start_clusters(["alpha", "beta"], workdir)
    try:
        ...  # clusters[0].kubeconfig, clusters[0].api_client(), mint_token(...)
    finally:
        stop_clusters(clusters)

Command line::

    python lab/kubelab.py up --names alpha,beta --dir DIR   # runs until SIGTERM/SIGINT; writes DIR/state.json
    python lab/kubelab.py down --dir DIR

Every process is started in its own session with a parent-death signal (``setpriv --pdeathsig``), is stopped
by :meth:`Cluster.stop`, by an ``atexit`` hook, and dies with the process that started it. Start clusters from
the main thread: the parent-death signal fires when the *thread* that started a process exits. Logs stay in
the cluster directory (``etcd.log``, ``kube-apiserver.log``).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import datetime as dt
import http.client
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client as k8s

LAB_DIR = Path(__file__).resolve().parent
BUILD_SCRIPT = LAB_DIR / "k8s-build.sh"
BIN_DIR_ENV = "K8ROUTER_KUBE_BIN"
STATE_FILE = "state.json"
MARKER_FILE = ".kubelab"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
CERT_DAYS = 30
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.05
PORT_FLOOR = 10000
START_ATTEMPTS = 2

# Admission: keep what makes objects behave as in a real cluster and needs no controller. Everything else that
# kube-apiserver enables by default is switched off: ServiceAccount admission would reject every pod (no token
# controller creates the "default" service account), TaintNodesByCondition would taint the nodes the tests
# write, and webhooks/policies/quota only add start-up work. The names are those of the pinned version.
ADMISSION_ENABLED = ("NamespaceLifecycle", "NodeRestriction", "DefaultIngressClass")
ADMISSION_DISABLED = (
    "LimitRanger",
    "ServiceAccount",
    "DefaultStorageClass",
    "PersistentVolumeClaimResize",
    "DefaultTolerationSeconds",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
    "StorageObjectInUseProtection",
    "Priority",
    "TaintNodesByCondition",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "ClusterTrustBundleAttest",
    "CertificateSubjectRestriction",
    "PodSecurity",
    "MutatingAdmissionPolicy",
    "ValidatingAdmissionPolicy",
)


class LabError(RuntimeError):
    """A lab cluster could not be built, started or reached."""


# --------------------------------------------------------------------------------------------------------------
# binaries


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kubectl: Path

    @classmethod
    def locate(cls, bin_dir: Path | None = None) -> Binaries:
        """Find the binaries: ``bin_dir``, else ``$K8ROUTER_KUBE_BIN``, else the pinned build's cache directory."""
        if bin_dir is None:
            env = os.environ.get(BIN_DIR_ENV)
            bin_dir = Path(env) if env else _build_dir()
        found = cls(bin_dir / "etcd", bin_dir / "kube-apiserver", bin_dir / "kubectl")
        missing = [p.name for p in (found.etcd, found.kube_apiserver, found.kubectl) if not os.access(p, os.X_OK)]
        if missing:
            raise LabError(
                f"missing {', '.join(missing)} in {bin_dir}: run lab/k8s-build.sh (or `make k8s-bins`) first; "
                "it builds them from the Go module proxy and caches them (about 10 minutes cold on 2 cores)"
            )
        return found


def _build_dir() -> Path:
    proc = subprocess.run([str(BUILD_SCRIPT), "--print-dir"], capture_output=True, text=True, check=False)
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise LabError(f"{BUILD_SCRIPT} --print-dir printed nothing: {proc.stderr.strip()}")
    return Path(lines[-1])


# --------------------------------------------------------------------------------------------------------------
# PKI


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class CertAuthority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, common_name: str) -> CertAuthority:
        key = _new_key()
        name = _name(common_name)
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> CertAuthority:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise LabError(f"{key_path}: not an EC private key")
        return cls(x509.load_pem_x509_certificate(cert_path.read_bytes()), key)

    def issue(
        self,
        common_name: str,
        *,
        organizations: Sequence[str] = (),
        server: bool = False,
        client: bool = False,
        dns_names: Sequence[str] = (),
        ips: Sequence[str] = (),
        days: int = CERT_DAYS,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = _new_key()
        now = dt.datetime.now(dt.UTC)
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organizations))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key

    def issue_pem(self, common_name: str, dns_names: Sequence[str], days: int = CERT_DAYS) -> bytes:
        """A serving certificate for ``dns_names`` and its key, in one PEM (as haproxy and k8router take it)."""
        cert, key = self.issue(common_name, server=True, dns_names=dns_names, days=days)
        return _cert_pem(cert) + _key_pem(key)

    @property
    def pem(self) -> bytes:
        return _cert_pem(self.cert)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    tmp.replace(path)
    return path


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --------------------------------------------------------------------------------------------------------------
# kubeconfigs


def kubeconfig_dict(
    cluster_name: str, server: str, ca_pem: bytes, user: str, credentials: Mapping[str, str]
) -> dict[str, Any]:
    """A kubeconfig with everything embedded (no file references), so it can be copied anywhere."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)}}],
        "users": [{"name": user, "user": dict(credentials)}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": user}}],
        "current-context": cluster_name,
    }


def _write_kubeconfig(path: Path, config: Mapping[str, Any]) -> Path:
    # JSON is YAML: kubectl, client-go and the Python client all read it.
    return _write(path, (json.dumps(config, indent=2) + "\n").encode(), 0o600)


# --------------------------------------------------------------------------------------------------------------
# processes


def _ephemeral_port_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free_ports(count: int, host: str) -> list[int]:
    """Ports free right now, chosen below the ephemeral range so no outgoing connection takes one meanwhile."""
    floor = _ephemeral_port_floor()
    if floor <= PORT_FLOOR + 1000:
        raise LabError(f"ephemeral ports start at {floor}: no room below it for lab ports")
    socks: list[socket.socket] = []
    try:
        while len(socks) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((host, PORT_FLOOR + secrets.randbelow(floor - PORT_FLOOR)))
            except OSError:
                sock.close()
                continue
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _spawn(argv: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
    setpriv = shutil.which("setpriv")
    # The parent-death signal makes the daemon go away even if this Python process is SIGKILLed. It is KILL, not
    # TERM: with both daemons told to terminate at once, etcd waits for the apiserver's streams to close and the
    # apiserver keeps retrying etcd, for more than 30 s. The orderly way is stop_clusters (apiserver, then etcd).
    prefix = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [*prefix, *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


def _terminate(procs: Sequence[subprocess.Popen[bytes]], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM all of them at once, wait together, SIGKILL what is left."""
    live = [p for p in procs if p.poll() is None]
    for proc in live:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in live:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


# --------------------------------------------------------------------------------------------------------------
# clusters


_RUNNING: dict[int, Cluster] = {}


@dataclass(eq=False)
class Cluster:
    """One running cluster: an etcd and a kube-apiserver with their own PKI, in ``dir``."""

    name: str
    dir: Path
    kubeconfig: Path
    ca: Path
    api_url: str
    service_cidr: str
    api_port: int
    etcd_url: str
    startup_seconds: float = 0.0
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    @property
    def ca_pem(self) -> bytes:
        return self.ca.read_bytes()

    @property
    def kubernetes_service_ip(self) -> str:
        """The ClusterIP of ``default/kubernetes``: the first address of the service CIDR."""
        return str(next(ipaddress.ip_network(self.service_cidr).hosts()))

    @property
    def log_files(self) -> list[Path]:
        return [self.dir / "etcd.log", self.dir / "kube-apiserver.log"]

    def cert_authority(self) -> CertAuthority:
        return CertAuthority.load(self.ca, self.dir / "ca.key")

    def api_client(self, token: str | None = None) -> k8s.ApiClient:
        """A client as the admin (client certificate), or as the holder of ``token``. Close it when done."""
        conf = k8s.Configuration(host=self.api_url, ssl_ca_cert=str(self.ca))
        if token is None:
            conf.cert_file = str(self.dir / "admin.crt")
            conf.key_file = str(self.dir / "admin.key")
        else:
            conf.api_key = {"BearerToken": token}
            conf.api_key_prefix = {"BearerToken": "Bearer"}
        return k8s.ApiClient(conf)

    def cert_api_client(self, cert: Path, key: Path) -> k8s.ApiClient:
        conf = k8s.Configuration(host=self.api_url, ssl_ca_cert=str(self.ca), cert_file=str(cert), key_file=str(key))
        return k8s.ApiClient(conf)

    def alive(self) -> bool:
        return bool(self.procs) and all(p.poll() is None for p in self.procs.values())

    def check_alive(self) -> None:
        for role, proc in self.procs.items():
            code = proc.poll()
            if code is not None:
                log = self.dir / f"{role}.log"
                raise LabError(f"cluster {self.name}: {role} exited with {code}; last lines of {log}:\n{_tail(log)}")

    def readyz(self) -> bool:
        """``GET /readyz`` answers ``ok`` (every post-start hook done, etcd reachable)."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.load_cert_chain(self.dir / "admin.crt", self.dir / "admin.key")
        host = self.api_url.removeprefix("https://").rsplit(":", 1)[0]
        conn = http.client.HTTPSConnection(host, self.api_port, context=ctx, timeout=2)
        try:
            conn.request("GET", "/readyz")
            resp = conn.getresponse()
            return resp.status == 200 and resp.read().strip() == b"ok"
        except OSError:
            return False
        finally:
            conn.close()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the apiserver, then etcd. Idempotent."""
        stop_clusters([self], timeout)

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Cluster:
        """The cluster a running ``kubelab.py up`` recorded (:meth:`to_state`); it has no processes of its own."""
        return cls(
            name=state["name"],
            dir=Path(state["dir"]),
            kubeconfig=Path(state["kubeconfig"]),
            ca=Path(state["ca"]),
            api_url=state["api_url"],
            service_cidr=state["service_cidr"],
            api_port=int(state["api_url"].rsplit(":", 1)[1]),
            etcd_url=state["etcd_url"],
            startup_seconds=float(state.get("startup_seconds", 0.0)),
        )

    def to_state(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dir": str(self.dir),
            "kubeconfig": str(self.kubeconfig),
            "ca": str(self.ca),
            "api_url": self.api_url,
            "service_cidr": self.service_cidr,
            "kubernetes_service_ip": self.kubernetes_service_ip,
            "etcd_url": self.etcd_url,
            "startup_seconds": round(self.startup_seconds, 2),
            "pids": {role: p.pid for role, p in self.procs.items()},
        }


def default_service_cidrs(count: int) -> list[str]:
    """Distinct service CIDRs: 10.96.0.0/16, 10.97.0.0/16, ..."""
    if count > 32:
        raise LabError("at most 32 clusters get default service CIDRs; pass service_cidrs")
    return [f"10.{96 + i}.0.0/16" for i in range(count)]


def _prepare_dir(path: Path) -> None:
    if path.exists():
        if not (path / MARKER_FILE).exists() and any(path.iterdir()):
            raise LabError(f"{path} exists and is not a kubelab cluster directory; refusing to wipe it")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / MARKER_FILE).touch()


def _make_pki(cluster_dir: Path, name: str, service_ip: str, extra_ips: Sequence[str], api_url: str) -> Path:
    ca = CertAuthority.create(f"kubelab-{name}-ca")
    _write(cluster_dir / "ca.crt", _cert_pem(ca.cert))
    _write(cluster_dir / "ca.key", _key_pem(ca.key), 0o600)
    dns = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    ips = list(dict.fromkeys(["127.0.0.1", service_ip, *extra_ips]))
    cert, key = ca.issue("kube-apiserver", server=True, dns_names=dns, ips=ips)
    _write(cluster_dir / "apiserver.crt", _cert_pem(cert))
    _write(cluster_dir / "apiserver.key", _key_pem(key), 0o600)
    cert, key = ca.issue("kubelab-admin", organizations=["system:masters"], client=True)
    admin_crt = _write(cluster_dir / "admin.crt", _cert_pem(cert))
    admin_key = _write(cluster_dir / "admin.key", _key_pem(key), 0o600)
    sa_key = _new_key()
    _write(cluster_dir / "sa.key", _key_pem(sa_key), 0o600)
    _write(
        cluster_dir / "sa.pub",
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    )
    credentials = {
        "client-certificate-data": _b64(admin_crt.read_bytes()),
        "client-key-data": _b64(admin_key.read_bytes()),
    }
    config = kubeconfig_dict(name, api_url, _cert_pem(ca.cert), f"{name}-admin", credentials)
    return _write_kubeconfig(cluster_dir / "kubeconfig", config)


def _etcd_argv(bins: Binaries, cluster_dir: Path, host: str, client_port: int, peer_port: int) -> list[str]:
    client_url = f"http://{host}:{client_port}"
    peer_url = f"http://{host}:{peer_port}"
    return [
        str(bins.etcd),
        "--name=kubelab",
        f"--data-dir={cluster_dir / 'etcd'}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=kubelab={peer_url}",
        "--initial-cluster-state=new",
        "--unsafe-no-fsync",  # throwaway data: no fsync makes every write fast
        "--snapshot-count=10000",
        "--log-level=warn",
    ]


def _apiserver_argv(
    bins: Binaries, c: Cluster, bind_address: str, advertise_address: str, hardened: bool = False
) -> list[str]:
    d = c.dir
    hardening = ["--anonymous-auth=false"] if hardened else []  # every request must authenticate, /readyz too
    return [
        str(bins.kube_apiserver),
        *hardening,
        f"--etcd-servers={c.etcd_url}",
        f"--bind-address={bind_address}",
        f"--advertise-address={advertise_address}",
        f"--secure-port={c.api_port}",
        f"--cert-dir={d}",
        f"--tls-cert-file={d / 'apiserver.crt'}",
        f"--tls-private-key-file={d / 'apiserver.key'}",
        f"--client-ca-file={d / 'ca.crt'}",
        f"--service-account-issuer={SA_ISSUER}",
        f"--service-account-key-file={d / 'sa.pub'}",
        f"--service-account-signing-key-file={d / 'sa.key'}",
        f"--service-cluster-ip-range={c.service_cidr}",
        "--authorization-mode=Node,RBAC",
        f"--enable-admission-plugins={','.join(ADMISSION_ENABLED)}",
        f"--disable-admission-plugins={','.join(ADMISSION_DISABLED)}",
        # Nothing here to reconcile the kubernetes Endpoints toward, and no flow-control tuning is needed.
        "--endpoint-reconciler-type=none",
        "--enable-priority-and-fairness=false",
        "--profiling=false",
        "--v=1",
    ]


def start_clusters(
    names: int | Sequence[str],
    workdir: Path | str,
    *,
    service_cidrs: Sequence[str] | Mapping[str, str] | None = None,
    extra_ips: Sequence[str] = (),
    bind_address: str = "127.0.0.1",
    binaries: Binaries | None = None,
    timeout: float = READY_TIMEOUT,
    hardened: Sequence[str] = (),
) -> list[Cluster]:
    """Start independent clusters in parallel and return them once every ``/readyz`` answers ``ok``.

    ``names`` is a count (clusters ``c0``, ``c1``, ...) or a list of names. Each cluster lives in
    ``workdir/<name>`` (wiped if it holds an earlier kubelab cluster). ``extra_ips`` go into every serving
    certificate (for containers that reach the API over another address; pair with ``bind_address="0.0.0.0"``
    or that address). The clusters named in ``hardened`` refuse anonymous requests (``--anonymous-auth=false``).
    On any failure every process started so far is stopped before the error is raised.
    """
    cluster_names = [f"c{i}" for i in range(names)] if isinstance(names, int) else list(names)
    if not cluster_names or len(set(cluster_names)) != len(cluster_names):
        raise LabError(f"need distinct cluster names, got {cluster_names}")
    if service_cidrs is None:
        cidrs = default_service_cidrs(len(cluster_names))
    elif isinstance(service_cidrs, Mapping):
        cidrs = [service_cidrs[n] for n in cluster_names]
    else:
        cidrs = list(service_cidrs)
    if len(cidrs) != len(cluster_names):
        raise LabError(f"{len(cluster_names)} clusters but {len(cidrs)} service CIDRs")
    cidrs = [str(ipaddress.ip_network(c, strict=True)) for c in cidrs]
    local_host = "127.0.0.1" if bind_address in ("0.0.0.0", "127.0.0.1") else bind_address  # noqa: S104
    settings = _Settings(
        root=Path(workdir).resolve(),
        bins=binaries or Binaries.locate(),
        extra_ips=tuple(extra_ips),
        bind_address=bind_address,
        local_host=local_host,
        advertise=extra_ips[0] if extra_ips else local_host,
        timeout=timeout,
        hardened=tuple(hardened),
    )
    attempt = 1
    while True:
        try:
            return _launch(cluster_names, cidrs, settings)
        except LabError as exc:
            # Lab ports are free when picked, but another process may bind one before the daemon does.
            if attempt >= START_ATTEMPTS or "address already in use" not in str(exc):
                raise
            attempt += 1


@dataclass(frozen=True)
class _Settings:
    root: Path
    bins: Binaries
    extra_ips: tuple[str, ...]
    bind_address: str
    local_host: str
    advertise: str
    timeout: float
    hardened: tuple[str, ...] = ()


def _launch(cluster_names: Sequence[str], cidrs: Sequence[str], st: _Settings) -> list[Cluster]:
    started = time.monotonic()
    ports = _free_ports(3 * len(cluster_names), st.local_host)
    clusters: list[Cluster] = []
    try:
        for i, (name, cidr) in enumerate(zip(cluster_names, cidrs, strict=True)):
            cluster_dir = st.root / name
            _prepare_dir(cluster_dir)
            api_port, etcd_port, peer_port = ports[3 * i : 3 * i + 3]
            api_url = f"https://{st.local_host}:{api_port}"
            service_ip = str(next(ipaddress.ip_network(cidr).hosts()))
            cluster = Cluster(
                name=name,
                dir=cluster_dir,
                kubeconfig=_make_pki(cluster_dir, name, service_ip, st.extra_ips, api_url),
                ca=cluster_dir / "ca.crt",
                api_url=api_url,
                service_cidr=cidr,
                api_port=api_port,
                etcd_url=f"http://{st.local_host}:{etcd_port}",
            )
            argv = _etcd_argv(st.bins, cluster_dir, st.local_host, etcd_port, peer_port)
            cluster.procs["etcd"] = _spawn(argv, cluster_dir / "etcd.log")
            _RUNNING[id(cluster)] = cluster
            clusters.append(cluster)
        # The apiserver retries etcd with back-off; starting it once etcd listens avoids waiting on that.
        _wait_all(clusters, lambda c: _port_open(st.local_host, int(c.etcd_url.rsplit(":", 1)[1])), st.timeout, "etcd")
        for cluster in clusters:
            argv = _apiserver_argv(st.bins, cluster, st.bind_address, st.advertise, cluster.name in st.hardened)
            cluster.procs["kube-apiserver"] = _spawn(argv, cluster.dir / "kube-apiserver.log")
        _wait_all(clusters, Cluster.readyz, st.timeout, "kube-apiserver /readyz", started)
    except BaseException:
        stop_clusters(clusters)
        raise
    return clusters


def _wait_all(
    clusters: Sequence[Cluster],
    ready: Callable[[Cluster], bool],
    timeout: float,
    what: str,
    started: float | None = None,
) -> None:
    pending = list(clusters)
    deadline = time.monotonic() + timeout
    while pending:
        for cluster in list(pending):
            cluster.check_alive()
            if ready(cluster):
                pending.remove(cluster)
                if started is not None:
                    cluster.startup_seconds = time.monotonic() - started
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(c.name for c in pending)
            logs = "\n".join(f"--- {c.dir}:\n{_tail(c.log_files[-1], 10)}" for c in pending)
            raise LabError(f"{what} not ready after {timeout:.0f}s for {names}\n{logs}")
        time.sleep(POLL_INTERVAL)


def stop_clusters(clusters: Sequence[Cluster], timeout: float = STOP_TIMEOUT) -> None:
    """Stop all apiservers together, then all etcds. Idempotent; logs and data stay in the cluster dirs."""
    for role in ("kube-apiserver", "etcd"):
        _terminate([c.procs[role] for c in clusters if role in c.procs], timeout)
    for cluster in clusters:
        _RUNNING.pop(id(cluster), None)


@atexit.register
def _stop_running() -> None:
    stop_clusters(list(_RUNNING.values()))


# --------------------------------------------------------------------------------------------------------------
# identities


def mint_token(
    cluster: Cluster,
    namespace: str,
    service_account: str,
    *,
    expiration_seconds: int = 3600,
    audiences: Sequence[str] = (),
) -> str:
    """A bound token for ``namespace/service_account`` from the TokenRequest API (``serviceaccounts/token``)."""
    spec: dict[str, Any] = {"expirationSeconds": expiration_seconds}
    if audiences:
        spec["audiences"] = list(audiences)
    body = k8s.AuthenticationV1TokenRequest.from_dict({"spec": spec})
    if body is None:
        raise LabError("could not build a TokenRequest")
    with cluster.api_client() as api:
        resp = k8s.CoreV1Api(api).create_namespaced_service_account_token(service_account, namespace, body)
    if resp.status is None or not resp.status.token:
        raise LabError(f"TokenRequest for {namespace}/{service_account} returned no token")
    return str(resp.status.token)


def issue_client_cert(
    cluster: Cluster, user: str, groups: Sequence[str] = (), *, out_dir: Path | None = None
) -> tuple[Path, Path]:
    """A client certificate from the cluster's CA for ``user`` (CN) in ``groups`` (O); returns (cert, key)."""
    cert, key = cluster.cert_authority().issue(user, organizations=groups, client=True)
    target = out_dir or cluster.dir / "users"
    target.mkdir(parents=True, exist_ok=True)
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in user)
    return _write(target / f"{stem}.crt", _cert_pem(cert)), _write(target / f"{stem}.key", _key_pem(key), 0o600)


def write_token_kubeconfig(cluster: Cluster, token: str, path: Path, user: str = "token-user") -> Path:
    return _write_kubeconfig(
        path, kubeconfig_dict(cluster.name, cluster.api_url, cluster.ca_pem, user, {"token": token})
    )


def write_cert_kubeconfig(cluster: Cluster, cert: Path, key: Path, path: Path, user: str = "cert-user") -> Path:
    credentials = {"client-certificate-data": _b64(cert.read_bytes()), "client-key-data": _b64(key.read_bytes())}
    return _write_kubeconfig(path, kubeconfig_dict(cluster.name, cluster.api_url, cluster.ca_pem, user, credentials))


# --------------------------------------------------------------------------------------------------------------
# command line


class _Stop(Exception):
    pass


def _raise_stop(signum: int, _frame: object) -> None:
    raise _Stop(signum)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _cmd_up(args: argparse.Namespace) -> int:
    workdir = Path(args.dir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    state_path = workdir / STATE_FILE
    if state_path.exists():
        state = json.loads(state_path.read_text())
        if _pid_alive(int(state.get("pid", 0))):
            print(f"kubelab: already up in {workdir} (pid {state['pid']}); run `down` first", file=sys.stderr)
            return 1
        state_path.unlink()
    names = [n for n in args.names.split(",") if n]
    cidrs = args.service_cidrs.split(",") if args.service_cidrs else None
    extra_ips = args.extra_ips.split(",") if args.extra_ips else []
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    clusters: list[Cluster] = []
    try:
        clusters = start_clusters(
            names,
            workdir,
            service_cidrs=cidrs,
            extra_ips=extra_ips,
            bind_address=args.bind_address,
            hardened=[n for n in args.hardened.split(",") if n],
        )
        state = {"pid": os.getpid(), "dir": str(workdir), "clusters": [c.to_state() for c in clusters]}
        _write(state_path, (json.dumps(state, indent=2) + "\n").encode())
        for c in clusters:
            print(f"kubelab: {c.name} ready in {c.startup_seconds:.2f}s at {c.api_url} (kubeconfig {c.kubeconfig})")
        print(f"kubelab: state in {state_path}; stop with `python {sys.argv[0]} down --dir {workdir}`", flush=True)
        while True:
            for c in clusters:
                c.check_alive()
            time.sleep(1)
    except _Stop:
        return 0
    except LabError as exc:
        print(f"kubelab: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop_clusters(clusters)
        state_path.unlink(missing_ok=True)


def _cmd_down(args: argparse.Namespace) -> int:
    workdir = Path(args.dir).resolve()
    state_path = workdir / STATE_FILE
    if not state_path.exists():
        print(f"kubelab: nothing up in {workdir}", file=sys.stderr)
        return 0
    state = json.loads(state_path.read_text())
    pid = int(state["pid"])
    if _pid_alive(pid) and "kubelab" in _cmdline(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 3 * STOP_TIMEOUT
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL)
    # If the `up` process is gone or stuck, stop its daemons directly (only processes that still name our dir).
    for cluster in state["clusters"]:
        for child in cluster["pids"].values():
            if _pid_alive(child) and cluster["dir"] in _cmdline(child):
                os.kill(child, signal.SIGKILL)
    state_path.unlink(missing_ok=True)
    print(f"kubelab: down ({workdir}); logs kept in the cluster directories")
    return 0


def read_state(workdir: Path | str) -> list[dict[str, Any]]:
    """The clusters a running ``kubelab.py up --dir workdir`` recorded (``Cluster.to_state()`` of each)."""
    state = json.loads((Path(workdir) / STATE_FILE).read_text())
    return list(state["clusters"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kubelab", description=__doc__.split("\n\n", maxsplit=1)[0] if __doc__ else None
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start clusters and keep them running until SIGTERM/SIGINT")
    up.add_argument("--names", required=True, help="comma-separated cluster names, e.g. alpha,beta")
    up.add_argument("--dir", required=True, help="work directory (one subdirectory per cluster, state.json)")
    up.add_argument("--service-cidrs", default="", help="comma-separated, one per cluster (default 10.96+i.0.0/16)")
    up.add_argument("--extra-ips", default="", help="comma-separated extra IP SANs for the serving certificates")
    up.add_argument("--bind-address", default="127.0.0.1", help="address kube-apiserver listens on")
    up.add_argument("--hardened", default="", help="comma-separated clusters that refuse anonymous requests")
    down = sub.add_parser("down", help="stop the clusters started by `up` in --dir")
    down.add_argument("--dir", required=True)
    args = parser.parse_args(argv)
    handler = _cmd_up if args.command == "up" else _cmd_down
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
