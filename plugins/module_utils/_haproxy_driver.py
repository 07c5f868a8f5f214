# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The haproxy driver: what is on disk, validation of a candidate, writing, reload and the runtime API.

The orchestrator (_converge) hands it rendered files and a plan (_plan) and gets back what was done; it
never touches haproxy's files or socket itself. The renderer (_haproxy) stays pure.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ansible_collections.k8router.edge.plugins.module_utils._errors import ConfigInvalidError, RuntimeApiError
from ansible_collections.k8router.edge.plugins.module_utils._haproxy import (
    GENERATION_PREFIX,
    CertOp,
    Rendered,
    generation,
    sni_filters,
)
from ansible_collections.k8router.edge.plugins.module_utils._layout import CERTS_DIR, HAPROXY_DEFAULTS
from ansible_collections.k8router.edge.plugins.module_utils._plan import Plan
from ansible_collections.k8router.edge.plugins.module_utils._state import write_atomic

# Runs a command (argv, no shell) and returns (rc, stdout, stderr): AnsibleModule.run_command in the
# modules, a plain subprocess runner in tests and the lab.
Runner = Callable[[Sequence[str]], "tuple[int, str, str]"]


@dataclass(frozen=True)
class HaproxyPaths:
    config: str = HAPROXY_DEFAULTS["config"]
    conf_dir: str = HAPROXY_DEFAULTS["conf_dir"]
    data_dir: str = HAPROXY_DEFAULTS["data_dir"]
    socket: str = HAPROXY_DEFAULTS["socket"]
    binary: str = "haproxy"
    reload_command: tuple[str, ...] = ("systemctl", "reload", "haproxy")


@dataclass
class Applied:
    """What the driver did with a plan: the runtime commands it sent, whether haproxy reloaded, and why not
    the runtime API when it fell back to a reload."""

    commands: list[str] = field(default_factory=list)
    reloaded: bool = False
    warnings: list[str] = field(default_factory=list)


def read_file(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


class HaproxyDriver:
    """One router's haproxy: its files (``paths``), its validator and reload command (run by ``runner``), its
    admin socket. ``workdir`` (the state directory) holds the candidates while they are validated."""

    def __init__(self, paths: HaproxyPaths, runner: Runner, workdir: str) -> None:
        self.paths = paths
        self.runner = runner
        self.workdir = workdir
        self.api = RuntimeApi(paths.socket)

    def current(self, desired: Rendered) -> dict[str, bytes | None]:
        """The files of ``desired`` as they are on disk (None: not there)."""
        return {path: read_file(path) for path in desired.files}

    def stale_certificates(self, desired: Rendered) -> list[str]:
        """Certificate files k8router wrote that ``desired`` no longer has."""
        certs_dir = os.path.join(self.paths.data_dir, CERTS_DIR)
        existing = sorted(os.listdir(certs_dir)) if os.path.isdir(certs_dir) else []
        paths = (os.path.join(certs_dir, entry) for entry in existing if entry.endswith(".pem"))
        return [path for path in paths if path not in desired.files]

    def running_generation(self) -> str | None:
        return self.api.running_generation()

    def validate(self, candidate: Callable[[str], Rendered]) -> None:
        """``haproxy -c`` on a candidate: ``candidate(root)`` renders the files under ``root`` (a directory of the
        workdir), beside a copy of the data directory's other files and of conf_dir's other ``.cfg`` files.

        The router role's main file, which is not k8router's, is copied with its data-directory paths moved
        under the root; what k8router renders is validated byte for byte as rendered for that root.
        """
        data, conf = self.paths.data_dir.rstrip("/"), self.paths.conf_dir.rstrip("/")
        root = tempfile.mkdtemp(prefix="candidate-", dir=self.workdir)
        try:
            cand_data, cand_conf = root + data, root + conf
            if os.path.isdir(data):
                shutil.copytree(data, cand_data, dirs_exist_ok=True)
            os.makedirs(os.path.join(cand_data, CERTS_DIR), exist_ok=True)
            os.makedirs(cand_conf, exist_ok=True)
            for entry in os.listdir(conf) if os.path.isdir(conf) else []:
                if entry.endswith(".cfg"):
                    shutil.copy(os.path.join(conf, entry), cand_conf)
            rendered = candidate(root)
            for path, content in rendered.files.items():
                if not path.startswith(root + "/"):
                    raise ValueError(f"the candidate's file {path} is not under its root {root}")
                with open(path, "wb") as handle:
                    handle.write(content)
            main = os.path.join(root, "haproxy.cfg")
            with open(self.paths.config, "rb") as src, open(main, "wb") as dst:
                dst.write(src.read().replace(data.encode() + b"/", cand_data.encode() + b"/"))
            rc, out, err = self.runner([self.paths.binary, "-c", "-f", main, "-f", cand_conf])
            if rc != 0:
                raise ConfigInvalidError((out + err).strip().replace(root, ""), [])
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def keep_rejected(self, plan: Plan) -> list[str]:
        """Beside each file of a rejected plan, its rejected content (``.rejected``; never a certificate)."""
        kept = []
        for path, content in plan.write.items():
            if not path.endswith(".pem"):
                write_atomic(path + ".rejected", content, 0o640)
                kept.append(path + ".rejected")
        return kept

    def apply(self, plan: Plan, desired: Rendered) -> Applied:
        """Write, remove, send the runtime commands (a reload instead when haproxy refuses them), reload.

        A reload is done once haproxy reports the new generation: one that fails, or a run killed before
        it, raises and leaves the caller's old layout recorded, so the next run reloads. A reload whose
        structure haproxy already runs (certificates only, a lost layout) is done when another worker answers.
        """
        applied = Applied()
        paths = self.paths
        os.makedirs(os.path.join(paths.data_dir, CERTS_DIR), mode=0o750, exist_ok=True)
        # certificates first, then maps and crt-list, then the backends: each file is complete when haproxy sees it
        for path in sorted(plan.write, key=lambda p: (not p.endswith(".pem"), p.endswith(".cfg"), p)):
            write_atomic(path, plan.write[path], 0o600 if path.endswith(".pem") else 0o640)
        for path in plan.remove:
            os.unlink(path)
        reload = plan.reload
        if plan.commands or plan.cert_ops:
            try:
                self.api.apply(plan.commands)
                self.api.apply_certs(plan.cert_ops, desired.crt_list, desired.files)
                applied.commands = plan.shown_commands
            except (RuntimeApiError, OSError) as exc:
                applied.warnings.append(f"runtime update failed ({exc}); reloading instead")
                reload = True
        if reload:
            self.reload(desired.structure)
            applied.reloaded = True
        return applied

    def reload(self, structure: str) -> None:
        old = self.api.worker_pid() if self.api.running_generation() == generation(structure) else None
        rc, out, err = self.runner(list(self.paths.reload_command))
        command = " ".join(self.paths.reload_command)
        if rc != 0:
            raise RuntimeApiError(
                f"reload command {command} failed ({rc}): {(out + err).strip()}; the files are written, "
                "the next run reloads again"
            )
        if not self.api.wait_for_generation(structure) or (old is not None and not self.api.wait_for_new_worker(old)):
            raise RuntimeApiError(
                f"haproxy was reloaded ({command}) but its worker on {self.paths.socket} does not run the new "
                "configuration after 15 s; the next run reloads again"
            )


class RuntimeApi:
    """haproxy's runtime API over its admin socket."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout

    def send(self, command: str) -> str:
        """One line (commands may be joined by ``;``) and the whole answer."""
        if "\n" in command:
            raise RuntimeApiError(f"refusing a runtime command with a newline: {command!r}")
        return self._exchange(command.encode() + b"\n")

    def _exchange(self, request: bytes) -> str:
        """``request`` on a connection of its own, and everything haproxy answers before it closes."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            sock.connect(self.path)
            sock.sendall(request)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace").strip()

    def send_payload(self, command: str, payload: bytes) -> str:
        """``command <<`` with ``payload`` (no empty line in it: that ends a payload), and the whole answer."""
        if "\n" in command or b"\n\n" in payload.replace(b"\r", b"") or not payload.strip():
            raise RuntimeApiError(f"refusing a runtime payload with an empty line, or an empty one, for {command!r}")
        return self._exchange(command.encode() + b" <<\n" + payload.rstrip(b"\r\n") + b"\n\n")

    def crt_list_lines(self, crt_list: str) -> dict[tuple[str, frozenset[str]], list[int]]:
        """The crt-list's entries as haproxy holds them: (file, SNI filters) -> line numbers."""
        entries: dict[tuple[str, frozenset[str]], list[int]] = {}
        for row in self.send(f"show ssl crt-list -n {crt_list}").splitlines():
            head, _sep, rest = row.strip().partition(" ")
            path, colon, number = head.rpartition(":")
            if row.startswith("#") or not colon or not number.isdigit():
                continue
            entries.setdefault((path, sni_filters(rest)), []).append(int(number))
        return entries

    def apply_certs(self, ops: Sequence[CertOp], crt_list: str, files: Mapping[str, bytes]) -> None:
        """Carry out ``ops`` (``certificate_ops``) in order; raise RuntimeApiError on the first refusal."""
        held: dict[tuple[str, frozenset[str]], list[int]] | None = None
        for op in ops:
            if op.verb == "set":
                answer, ok = self.send_payload(f"set ssl cert {op.path}", files[op.path]), "transaction"
            elif op.verb == "add-line":
                answer = self.send_payload(f"add ssl crt-list {crt_list}", f"{op.path} {op.line}".encode())
                ok = "success"
            elif op.verb == "del-line":
                held = self.crt_list_lines(crt_list) if held is None else held
                numbers = held.get((op.path, sni_filters(op.line)))
                if not numbers:
                    continue  # not there (a run stopped half-way took it out already)
                answer, ok = self.send(f"del ssl crt-list {crt_list} {op.path}:{numbers.pop(0)}"), "deleted"
            elif op.verb == "commit":
                answer, ok = self.send(f"commit ssl cert {op.path}"), "success"
            elif op.verb == "new":
                answer, ok = self.send(f"new ssl cert {op.path}"), "new empty certificate store"
                ok = "already exists" if "already exists" in answer.lower() else ok
            else:
                answer, ok = self.send(f"del ssl cert {op.path}"), "deleted"
            if ok not in answer.lower():
                raise RuntimeApiError(f"haproxy refused {op}: {answer}")

    def _answer_line(self, command: str, prefix: str) -> str | None:
        """What follows ``prefix`` on the first line of the answer that starts with it; "" when no line does,
        None when nobody answers."""
        try:
            answer = self.send(command)
        except OSError:
            return None
        return next((line[len(prefix) :].strip() for line in answer.splitlines() if line.startswith(prefix)), "")

    def worker_pid(self) -> int | None:
        """The pid of the worker answering on the socket (``show info``), or None when none answers."""
        pid = self._answer_line("show info", "Pid:")
        return int(pid) if pid else None

    def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return True
            time.sleep(0.05)
        return False

    def wait_for_new_worker(self, old: int | None, timeout: float = 15.0) -> bool:
        """After a reload: wait until a worker other than ``old`` answers."""
        return self._wait(lambda: self.worker_pid() not in (None, old), timeout)

    def running_generation(self) -> str | None:
        """The layout the answering worker loaded (its generation backend), "" for none, None when none answers."""
        return self._answer_line("show backend", GENERATION_PREFIX)

    def wait_for_generation(self, structure: str, timeout: float = 15.0) -> bool:
        """After a reload: wait until the answering worker runs the layout ``structure`` (the new files are live)."""
        return self._wait(lambda: self.running_generation() == generation(structure), timeout)

    def apply(self, commands: Sequence[str], batch: int = 50) -> list[str]:
        """Send the commands, ``batch`` to a connection; raise RuntimeApiError on a refusal. Returns the answers."""
        answers = []
        for command in commands:
            if "\n" in command or ";" in command:
                raise RuntimeApiError(f"refusing a runtime command with a newline or ';': {command!r}")
        for first in range(0, len(commands), batch):
            chunk = commands[first : first + batch]
            answer = self.send("; ".join(chunk))
            lowered = answer.lower()
            if any(word in lowered for word in ("unknown", "invalid", "not found", "error", "no such", "require")):
                raise RuntimeApiError(f"haproxy refused one of {chunk!r}: {answer}")
            answers.append(answer)
        return answers
