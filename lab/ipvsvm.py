"""Real Linux IPVS for tests and benchmarks: Debian's stock kernel booted under qemu, running the host's own tools.

The host kernel has no IPVS (see ``LAB-NOTES.md``), so this harness boots the Debian kernel installed on the host
(``/boot/vmlinuz-<version>``, modules in ``/lib/modules/<version>``) under ``qemu-system-x86_64 -accel tcg -cpu
max`` (KVM does not work here) with a small busybox initramfs. The initramfs only loads the kernel modules (IPVS
with its dependencies and schedulers, 9p over virtio) and mounts two 9p shares:

- ``hostroot``: the host's root file system, read-only, at ``/host`` in the guest;
- ``k8rrun``: a per-run host directory, writable, at ``/tmp/k8r`` inside the host tree (``$K8R_RUN``).

The guest then ``chroot``\\ s into the host tree (with its own ``/proc``, ``/sys``, ``/dev``, a tmpfs on ``/run``
and on ``/tmp`` a tmpfs overlaid on the host's ``/tmp``, so that a checkout under ``/tmp`` is visible too) and runs
the caller's bash script with the host's own ``python3``, ``ipvsadm`` and the checkout. Nothing is copied into the
guest but busybox and kernel modules, and no network leaves the guest (it has
no network card; ``lo`` is up).

The initramfs is built once and cached under ``${K8ROUTER_CACHE:-~/.cache/k8router-lab}/ipvsvm/<kernel
version>-<hash of the recipe>/``: busybox, and the modules (decompressed if needed) of ``BOOT_MODULES`` with their
dependencies and pre-softdeps from the kernel's ``modules.dep``/``modules.softdep``/``modules.alias`` in load order
(crc32c_generic, libcrc32c, nf_defrag_ipv4/6, nf_conntrack, ip_vs, ip_vs_rr/wrr/sh, virtio*, 9pnet, 9pnet_virtio,
netfs, fscache, 9p; ``ip_vs_sctp`` only where SCTP is a module, Debian builds it into ``ip_vs``), plus the other
schedulers for the kernel's on-demand ``modprobe``. ``K8ROUTER_IPVSVM_KERNEL`` may name the kernel version to boot.

Boot time: the Debian bzImage is xz-compressed and its own decompressor takes about 6 s under TCG, so when the
kernel has a PVH entry (``CONFIG_PVH=y``) the harness extracts the ELF ``vmlinux`` once (cached beside the
initramfs directories) and qemu boots that directly; ``cryptomgr.notests`` skips the crypto self-tests (about
1 s). Measured here (2 busy cores): 4-7 s from qemu start to the script, about 0.5 s to power off.

Library use::

    result = run_in_guest("ipvsadm -Ln; python3 -c 'print(1)'")
    result.returncode, result.output, result.seconds, result.boot_seconds

Command line (prints the measured times)::

    python lab/ipvsvm.py [--timeout S] [SCRIPT-FILE | -c 'bash commands']

qemu runs in its own session with a parent-death signal (``setpriv --pdeathsig KILL``) and is killed when the
script is done, on timeout, or when anything goes wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import lzma
import os
import re
import secrets
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

RECIPE_VERSION = "1"
# Loaded at boot, in dependency order (their dependencies and soft dependencies first).
BOOT_MODULES = (
    "ip_vs",
    "ip_vs_rr",
    "ip_vs_wrr",
    "ip_vs_sh",
    "ip_vs_sctp",
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    "overlay",
)
# Copied too, loaded on demand by the kernel (busybox modprobe) when a service asks for that scheduler.
ON_DEMAND_MODULES: tuple[str, ...] = (
    *("ip_vs_lc", "ip_vs_wlc", "ip_vs_sed", "ip_vs_nq", "ip_vs_dh", "ip_vs_fo", "ip_vs_ovf"),
    *("ip_vs_lblc", "ip_vs_lblcr", "ip_vs_mh"),
)
GUEST_RUN_DIR = "/tmp/k8r"  # the per-run share, as seen by the script inside the chroot
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SCRIPT_START = "K8R-SCRIPT-START"
EXIT_SENTINEL = "K8R-EXIT"
QEMU_EXIT_GRACE = 15.0

# The guest's /init (busybox sh). The nonce comes from the kernel command line so that nothing the script prints
# can fake the exit line.
INIT = r"""#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
NONCE=$(sed -n 's/.*k8r\.nonce=\([0-9a-f]*\).*/\1/p' /proc/cmdline)
fail() { echo "K8R-INIT-ERROR $*"; echo "K8R-EXIT $NONCE 255"; poweroff -f; }
while read -r m; do insmod "$m" || echo "K8R-INIT-WARN insmod $m failed"; done < /etc/modorder
ip link set lo up
echo "K8R-MODULES-LOADED uptime=$(cut -d' ' -f1 /proc/uptime)"
H=/host
mount -t 9p -o ro,trans=virtio,version=9p2000.L,cache=loose,msize=512000 hostroot $H || fail "9p hostroot"
mount -t proc proc $H/proc || fail "proc"
mount -t sysfs sys $H/sys || fail "sysfs"
mount -t devtmpfs dev $H/dev || fail "devtmpfs"
mount -t devpts devpts $H/dev/pts 2>/dev/null
# /tmp: the host's /tmp (a checkout may live there) under a writable tmpfs layer; a plain tmpfs without overlay.
mkdir -p /ovl && mount -t tmpfs -o mode=0755 ovl /ovl && mkdir -p /ovl/upper /ovl/work && chmod 1777 /ovl/upper
mount -t overlay -o lowerdir=$H/tmp,upperdir=/ovl/upper,workdir=/ovl/work overlay $H/tmp || {
  echo "K8R-INIT-WARN overlay on /tmp failed: the host's /tmp is not visible in the guest"
  mount -t tmpfs -o mode=1777 tmp $H/tmp || fail "tmpfs /tmp"
}
mount -t tmpfs -o mode=0755 run $H/run || fail "tmpfs /run"
mkdir -p $H/tmp/k8r
mount -t 9p -o trans=virtio,version=9p2000.L,cache=none,msize=512000 k8rrun $H/tmp/k8r || fail "9p k8rrun"
echo "K8R-SCRIPT-START uptime=$(cut -d' ' -f1 /proc/uptime)"
{
  chroot $H /usr/bin/env -i PATH=@PATH@ HOME=/root LANG=C.UTF-8 TERM=dumb K8R_RUN=/tmp/k8r \
    /bin/bash /tmp/k8r/script.sh < /dev/null 2>&1
  echo $? > $H/tmp/k8r/rc
} | tee $H/tmp/k8r/output.log
sync
echo "K8R-SCRIPT-END uptime=$(cut -d' ' -f1 /proc/uptime)"
echo "K8R-EXIT $NONCE $(cat $H/tmp/k8r/rc 2>/dev/null || echo 255)"
umount $H/tmp/k8r
poweroff -f
"""


class IpvsVmError(RuntimeError):
    """The guest could not be built, booted or did not finish in time (the message has the serial console tail)."""


@dataclass(frozen=True)
class GuestResult:
    """One guest run: the script's exit code and output, and the host's wall-clock measurements."""

    returncode: int
    output: str
    seconds: float  # qemu start to qemu exit
    boot_seconds: float  # qemu start to the script's start
    script_seconds: float  # the script's start to its end, as the host saw it on the serial console
    console: str  # the whole serial console


@dataclass(frozen=True)
class Kernel:
    version: str
    image: Path
    modules: Path


def cache_root() -> Path:
    base = os.environ.get("K8ROUTER_CACHE") or str(Path.home() / ".cache" / "k8router-lab")
    return Path(base) / "ipvsvm"


def find_kernel(version: str | None = None) -> Kernel:
    """The Debian kernel to boot: ``version``, ``$K8ROUTER_IPVSVM_KERNEL``, or the newest ``*-amd64`` installed."""
    version = version or os.environ.get("K8ROUTER_IPVSVM_KERNEL") or None
    if version is None:
        found = sorted(
            (p.name for p in Path("/lib/modules").glob("*-amd64") if Path(f"/boot/vmlinuz-{p.name}").is_file()),
            key=lambda v: [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", v)],
        )
        if not found:
            raise IpvsVmError("no Debian kernel found (/boot/vmlinuz-*-amd64 with /lib/modules/*-amd64)")
        version = found[-1]
    kernel = Kernel(version, Path(f"/boot/vmlinuz-{version}"), Path(f"/lib/modules/{version}"))
    if not kernel.image.is_file() or not (kernel.modules / "modules.dep").is_file():
        raise IpvsVmError(f"kernel {version}: {kernel.image} or {kernel.modules}/modules.dep missing")
    return kernel


# --------------------------------------------------------------------------------------------------------------
# modules


def _module_name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    base = re.sub(r"\.ko(\.xz|\.zst|\.gz)?$", "", base)
    return base.replace("-", "_")


@dataclass(frozen=True)
class ModuleIndex:
    paths: dict[str, str]  # name -> path relative to the modules directory
    deps: dict[str, list[str]]  # name -> names it depends on
    softdeps: dict[str, list[str]]  # name -> names (or aliases) to load before it
    aliases: dict[str, list[str]]  # alias -> module names

    @classmethod
    def read(cls, moddir: Path) -> ModuleIndex:
        paths: dict[str, str] = {}
        deps: dict[str, list[str]] = {}
        for line in (moddir / "modules.dep").read_text().splitlines():
            if ":" not in line:
                continue
            path, rest = line.split(":", 1)
            name = _module_name(path)
            paths[name] = path
            deps[name] = [_module_name(d) for d in rest.split()]
        softdeps: dict[str, list[str]] = {}
        softdep_file = moddir / "modules.softdep"
        if softdep_file.is_file():
            for line in softdep_file.read_text().splitlines():
                words = line.split()
                if len(words) >= 3 and words[0] == "softdep":
                    pre: list[str] = []
                    mode = ""
                    for word in words[2:]:
                        if word.endswith(":"):
                            mode = word
                        elif mode == "pre:":
                            pre.append(word)
                    softdeps.setdefault(words[1].replace("-", "_"), []).extend(pre)
        aliases: dict[str, list[str]] = {}
        alias_file = moddir / "modules.alias"
        if alias_file.is_file():
            for line in alias_file.read_text().splitlines():
                words = line.split()
                if len(words) == 3 and words[0] == "alias" and "*" not in words[1]:
                    aliases.setdefault(words[1], []).append(words[2].replace("-", "_"))
        return cls(paths, deps, softdeps, aliases)

    def resolve(self, name: str) -> str | None:
        """A module name for ``name`` (a module or an alias); the generic implementation when an alias has several."""
        name = name.replace("-", "_")
        if name in self.paths:
            return name
        candidates = [
            m for m in self.aliases.get(name.replace("_", "-"), self.aliases.get(name, [])) if m in self.paths
        ]
        generic = [m for m in candidates if m.endswith("_generic")]
        best = generic or candidates
        return best[0] if best else None

    def load_order(self, wanted: Iterable[str]) -> list[str]:
        """``wanted`` (those this kernel has) with every dependency and pre-softdep, dependencies first."""
        order: list[str] = []
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in order or name in visiting:
                return
            visiting.add(name)
            for soft in self.softdeps.get(name, []):
                resolved = self.resolve(soft)
                if resolved:
                    visit(resolved)
            # modules.dep lists every (transitive) dependency; visiting each puts its own ones first.
            for dep in self.deps.get(name, []):
                visit(dep)
            visiting.discard(name)
            order.append(name)

        for name in wanted:
            if name in self.paths:
                visit(name)
        return order


def _decompressed(path: Path) -> bytes:
    if path.name.endswith(".xz"):
        return lzma.decompress(path.read_bytes())
    if path.name.endswith(".gz"):
        return gzip.decompress(path.read_bytes())
    if path.name.endswith(".zst"):
        zstd = shutil.which("zstd")
        if not zstd:
            raise IpvsVmError(f"{path} is zstd-compressed and zstd is not installed")
        return subprocess.run([zstd, "-qdc", str(path)], capture_output=True, check=True).stdout
    return path.read_bytes()


# --------------------------------------------------------------------------------------------------------------
# initramfs


def _recipe_hash(kernel: Kernel, busybox: Path) -> str:
    digest = hashlib.sha256()
    for part in (RECIPE_VERSION, INIT, GUEST_PATH, *BOOT_MODULES, "|", *ON_DEMAND_MODULES):
        digest.update(part.encode() + b"\0")
    digest.update(hashlib.sha256(busybox.read_bytes()).digest())
    digest.update(hashlib.sha256((kernel.modules / "modules.dep").read_bytes()).digest())
    return digest.hexdigest()[:16]


def _busybox() -> Path:
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        path = Path(candidate)
        if path.is_file():
            return path
    raise IpvsVmError("busybox not found (install busybox-static)")


def _applets(busybox: Path) -> list[str]:
    out = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout
    return [a for a in out.split() if a and a != "busybox" and "/" not in a]


def _cpio_newc(entries: Sequence[tuple[str, int, bytes]]) -> bytes:
    """An uncompressed newc archive of (path, mode, data) entries; a symlink's data is its target."""
    out = io.BytesIO()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        encoded = name.encode() + b"\0"
        header = "070701" + "".join(f"{v:08X}" for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0))
        out.write(header.encode() + encoded)
        out.write(b"\0" * (-(110 + len(encoded)) % 4))
        out.write(data)
        out.write(b"\0" * (-len(data) % 4))
    return out.getvalue()


def build_initramfs(kernel: Kernel) -> tuple[Path, list[str]]:
    """The cached initramfs for ``kernel`` (built on first use) and the modules it loads at boot, in order."""
    busybox = _busybox()
    cache = cache_root() / f"{kernel.version}-{_recipe_hash(kernel, busybox)}"
    image = cache / "initramfs.cpio.gz"
    order_file = cache / "modorder.txt"
    if image.is_file() and order_file.is_file():
        return image, order_file.read_text().split()

    index = ModuleIndex.read(kernel.modules)
    missing = [m for m in ("ip_vs", "9p", "9pnet_virtio", "virtio_pci") if m not in index.paths]
    if missing:
        raise IpvsVmError(f"kernel {kernel.version} lacks modules: {', '.join(missing)}")
    boot = index.load_order(BOOT_MODULES)
    every = index.load_order([*BOOT_MODULES, *ON_DEMAND_MODULES])
    kdir = f"lib/modules/{kernel.version}"

    dirs = ["bin", "sbin", "dev", "proc", "sys", "etc", "host", "lib", "lib/modules", kdir]
    entries: list[tuple[str, int, bytes]] = [(d, 0o040755, b"") for d in dirs]
    entries.append(("bin/busybox", 0o100755, busybox.read_bytes()))
    entries += [(f"bin/{a}", 0o120777, b"busybox") for a in _applets(busybox) if a != "modprobe"]
    entries.append(("sbin/modprobe", 0o120777, b"../bin/busybox"))  # the kernel's request_module() path
    entries.append(("init", 0o100755, INIT.replace("@PATH@", GUEST_PATH).encode()))
    made = set(dirs)
    dep_lines = []
    for name in every:
        rel = re.sub(r"\.(xz|zst|gz)$", "", index.paths[name])
        parts = f"{kdir}/{rel}".split("/")
        for i in range(1, len(parts)):
            sub = "/".join(parts[:i])
            if sub not in made:
                made.add(sub)
                entries.append((sub, 0o040755, b""))
        entries.append((f"{kdir}/{rel}", 0o100644, _decompressed(kernel.modules / index.paths[name])))
        deps = [re.sub(r"\.(xz|zst|gz)$", "", index.paths[d]) for d in index.deps.get(name, [])]
        dep_lines.append(f"{rel}: {' '.join(deps)}".rstrip())
    entries.append((f"{kdir}/modules.dep", 0o100644, ("\n".join(dep_lines) + "\n").encode()))
    modorder = "".join(f"/{kdir}/{re.sub(r'[.](xz|zst|gz)$', '', index.paths[n])}\n" for n in boot)
    entries.append(("etc/modorder", 0o100644, modorder.encode()))

    cache.mkdir(parents=True, exist_ok=True)
    # Each file appears whole (a concurrent run may build the same thing); the image, checked first, comes last.
    _write_atomic(cache / "init", INIT.encode())
    _write_atomic(order_file, ("\n".join(boot) + "\n").encode())
    _write_atomic(image, gzip.compress(_cpio_newc(entries), compresslevel=1))
    return image, boot


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------------------------------------------
# running


def boot_image(kernel: Kernel) -> Path:
    """The kernel file to hand to qemu: the uncompressed ELF ``vmlinux`` (cached) when the kernel has a PVH entry.

    qemu boots such an ELF directly at its PVH entry point. That skips the bzImage's own decompressor, which runs
    for about 6 s under TCG (the Debian image is xz-compressed). Otherwise the bzImage itself is used.
    """
    config = Path(f"/boot/config-{kernel.version}")
    if not config.is_file() or "CONFIG_PVH=y" not in config.read_text().splitlines():
        return kernel.image
    cached = (
        cache_root() / f"vmlinux-{kernel.version}-{kernel.image.stat().st_size}-{int(kernel.image.stat().st_mtime)}"
    )
    if cached.is_file():
        return cached
    data = kernel.image.read_bytes()
    elf: bytes | None = None
    xz_at, gz_at = data.find(b"\xfd7zXZ\x00"), data.find(b"\x1f\x8b\x08\x00")
    try:
        if xz_at >= 0:
            elf = lzma.LZMADecompressor().decompress(data[xz_at:])
        elif gz_at >= 0:
            elf = gzip.GzipFile(fileobj=io.BytesIO(data[gz_at:])).read()
    except (lzma.LZMAError, OSError, EOFError):
        elf = None
    if not elf or not elf.startswith(b"\x7fELF"):
        return kernel.image
    cached.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(cached, elf)
    return cached


def qemu_argv(kernel: Kernel, initramfs: Path, run_dir: Path, nonce: str, memory: str = "512M") -> list[str]:
    append = f"console=ttyS0 panic=-1 rdinit=/init quiet loglevel=3 mitigations=off cryptomgr.notests k8r.nonce={nonce}"
    return [
        "qemu-system-x86_64",
        *("-accel", "tcg", "-cpu", "max", "-m", memory, "-smp", "1"),
        *("-nodefaults", "-no-reboot", "-display", "none", "-serial", "stdio", "-monitor", "none"),
        *("-kernel", str(boot_image(kernel)), "-initrd", str(initramfs), "-append", append),
        *("-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"),
        *("-virtfs", f"local,path={run_dir},mount_tag=k8rrun,security_model=none,multidevs=remap"),
    ]


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait()


class _Console:
    """The serial console as it arrives: lines, the times the script started and ended, the exit line."""

    def __init__(self, nonce: str, echo: bool) -> None:
        self.exit_re = re.compile(rf"^{EXIT_SENTINEL} {nonce} (\d+)\s*$")
        self.echo = echo
        self.lines: list[str] = []
        self.pending = b""
        self.returncode: int | None = None
        self.script_start: float | None = None
        self.script_end: float | None = None

    def feed(self, chunk: bytes) -> None:
        self.pending += chunk
        *complete, self.pending = self.pending.split(b"\n")
        for raw in complete:
            line = raw.decode(errors="replace").rstrip("\r")
            self.lines.append(line)
            if self.echo:
                print(f"[guest] {line}", file=sys.stderr, flush=True)
            if line.startswith(SCRIPT_START) and self.script_start is None:
                self.script_start = time.monotonic()
            elif line.startswith("K8R-SCRIPT-END"):
                self.script_end = time.monotonic()
            match = self.exit_re.match(line)
            if match:
                self.returncode = int(match.group(1))

    def tail(self, count: int = 40) -> str:
        return "\n".join(self.lines[-count:])

    def follow(self, proc: subprocess.Popen[bytes], deadline: float, timeout: float) -> None:
        """Read until the exit line, end of output or the deadline (IpvsVmError)."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while self.returncode is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise IpvsVmError(f"guest did not finish within {timeout:.0f} s; console tail:\n{self.tail()}")
                if not sel.select(min(left, 1.0)):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    return
                self.feed(chunk)


def _write_files(run_dir: Path, script: str, files: Mapping[str, str | bytes]) -> None:
    (run_dir / "script.sh").write_text(script)
    for name, content in files.items():
        target = run_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)


def run_in_guest(
    script: str,
    timeout: float = 300,
    *,
    files: Mapping[str, str | bytes] | None = None,
    kernel: Kernel | None = None,
    echo: bool = False,
) -> GuestResult:
    """Boot the guest once and run ``script`` (bash) inside the host tree with IPVS loaded and ``lo`` up.

    ``files`` are written into the per-run share first; the script finds them (and may leave its own there) under
    ``$K8R_RUN``. ``echo`` streams the serial console to stderr. The guest is always killed before this returns.
    """
    if not shutil.which("qemu-system-x86_64"):
        raise IpvsVmError("qemu-system-x86_64 not found (install qemu-system-x86)")
    kernel = kernel or find_kernel()
    initramfs, boot_modules = build_initramfs(kernel)
    nonce = secrets.token_hex(8)
    console = _Console(nonce, echo)
    with tempfile.TemporaryDirectory(prefix="ipvsvm-run-") as tmp:
        run_dir = Path(tmp)
        run_dir.chmod(0o755)
        _write_files(run_dir, script, files or {})
        setpriv = shutil.which("setpriv")
        prefix = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
        start = time.monotonic()
        proc = subprocess.Popen(
            [*prefix, *qemu_argv(kernel, initramfs, run_dir, nonce)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            console.follow(proc, start + timeout, timeout)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(QEMU_EXIT_GRACE)  # the guest powers off right after the exit line
        finally:
            _kill(proc)
            if proc.stdout is not None:
                proc.stdout.close()
        end = time.monotonic()
        if console.returncode is None:
            raise IpvsVmError(
                f"guest exited without the exit line (qemu rc={proc.returncode}); console:\n{console.tail(200)}"
            )
        errors = [ln for ln in console.lines if ln.startswith(("K8R-INIT-ERROR", "K8R-INIT-WARN"))]
        if errors and console.script_start is None:
            raise IpvsVmError("guest init failed: " + "; ".join(errors) + f" (modules: {', '.join(boot_modules)})")
        output_file = run_dir / "output.log"
        output = output_file.read_text(errors="replace") if output_file.is_file() else "\n".join(console.lines)
    script_start = console.script_start or end
    return GuestResult(
        returncode=console.returncode,
        output=output,
        seconds=end - start,
        boot_seconds=script_start - start,
        script_seconds=(console.script_end or end) - script_start,
        console="\n".join(console.lines),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("script", nargs="?", help="bash script file to run in the guest")
    parser.add_argument("-c", dest="command", help="bash commands to run in the guest")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--echo", action="store_true", help="stream the serial console")
    args = parser.parse_args(argv)
    script = args.command if args.command is not None else Path(args.script).read_text() if args.script else "true"
    try:
        result = run_in_guest(script, args.timeout, echo=args.echo)
    except IpvsVmError as exc:
        print(f"ipvsvm: {exc}", file=sys.stderr)
        return 125
    sys.stdout.write(result.output)
    print(
        f"returncode={result.returncode} boot_to_script={result.boot_seconds:.2f}s "
        f"script={result.script_seconds:.2f}s total={result.seconds:.2f}s",
        file=sys.stderr,
    )
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
