# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes-style probes for the calico_systemd units (installed by the role; standard library only).

Two ways to run:

* ``--until-ok SECONDS``: run the check every period until it passes (exit 0) or the time is up (exit 1). The
  BIRD unit runs this as ExecStartPost, so it is "active" only once BIRD answers on its control socket.
* a watchdog loop (the default): run the check every period; once it has failed for ``--fail-after`` seconds in
  a row, run ``--on-fail`` once; once it passes again, run ``--on-recover`` once. ``--rearm`` starts the count
  afresh after ``--on-fail`` (a liveness probe restarting what it watches).

``--renew-token DIR`` keeps the service account's token in DIR fresh: every period, a token that expires within
``--renew-before`` seconds is replaced by a new one from the TokenRequest API (authorised by itself).

The check is a command (``--exec ARGV...``, passes on exit 0) or the Kubernetes API (``--kubernetes-api``:
``GET /readyz`` on ``KUBERNETES_SERVICE_HOST:PORT``, verified with the service-account CA and authorised with its
token, the way a pod reaches the API). Every state change is logged to stdout (the journal).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shlex
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def log(name: str, message: str) -> None:
    print(f"{name}: {message}", flush=True)


def command_check(argv: Sequence[str], timeout: float) -> Callable[[], tuple[bool, str]]:
    def check() -> tuple[bool, str]:
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, str(exc)
        out = (proc.stdout + proc.stderr).decode(errors="replace").strip().splitlines()
        return proc.returncode == 0, f"exit {proc.returncode}" + (f": {out[-1]}" if out else "")

    return check


def api_check(timeout: float) -> Callable[[], tuple[bool, str]]:
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = int(os.environ.get("KUBERNETES_SERVICE_PORT", "443"))
    if not host:
        raise SystemExit("KUBERNETES_SERVICE_HOST is not set")

    def check() -> tuple[bool, str]:
        try:
            with open(os.path.join(SA_DIR, "token"), encoding="ascii") as f:
                token = f.read().strip()
            context = ssl.create_default_context(cafile=os.path.join(SA_DIR, "ca.crt"))
            conn = http.client.HTTPSConnection(host, port, context=context, timeout=timeout)
            try:
                conn.request("GET", "/readyz", headers={"Authorization": f"Bearer {token}"})
                resp = conn.getresponse()
                body = resp.read(200).decode(errors="replace").strip()
            finally:
                conn.close()
        except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
            return False, f"{type(exc).__name__}: {exc}"
        if resp.status in (401, 403):
            # The API answered: it is there, the credential is not. Routes stay; say so loudly.
            return True, (
                f"ALARM: HTTP {resp.status} from the API: the service-account token {SA_DIR}/token was refused"
                " (expired or revoked?); BIRD keeps announcing, renew the token (site.yml)"
            )
        return resp.status == 200, f"HTTP {resp.status} {body[:60]}"

    return check


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    if not isinstance(data, dict):
        raise ValueError("the token's claims are not an object")
    return data


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def renew_token(name: str, directory: str, lifetime: int, renew_before: float, timeout: float) -> bool:
    """Renew the service account's token in ``directory`` when it expires within ``renew_before`` seconds: a
    TokenRequest for its own service account, authorised by the token itself; written atomically, mode 0600.
    True when the token is fine afterwards."""
    path = os.path.join(directory, "token")
    try:
        with open(path, encoding="ascii") as f:
            token = f.read().strip()
        claims = _claims(token)
        bound = claims.get("kubernetes.io")
        account = bound.get("serviceaccount") if isinstance(bound, dict) else None
        namespace = bound.get("namespace") if isinstance(bound, dict) else None
        sa_name = account.get("name") if isinstance(account, dict) else None
        expiry = float(claims["exp"])  # type: ignore[arg-type]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        log(name, f"ALARM: the token {path} cannot be read ({type(exc).__name__}: {exc}); it is not renewed")
        return False
    left = expiry - time.time()
    if left <= 0:
        log(name, f"ALARM: the token {path} of {namespace}/{sa_name} expired at {_when(expiry)} ({-left:.0f} s ago)"
                  " and cannot renew itself: site.yml gives the worker a new one")  # fmt: skip
        return False
    if left > renew_before:
        return True
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = int(os.environ.get("KUBERNETES_SERVICE_PORT", "443"))
    body = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                       "spec": {"expirationSeconds": int(lifetime)}})  # fmt: skip
    try:
        context = ssl.create_default_context(cafile=os.path.join(directory, "ca.crt"))
        conn = http.client.HTTPSConnection(host, port, context=context, timeout=timeout)
        try:
            conn.request(
                "POST",
                f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa_name}/token",
                body=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            answer = resp.read().decode(errors="replace")
        finally:
            conn.close()
        if resp.status != 201:
            raise ValueError(f"HTTP {resp.status}: {answer[:200]}")
        new = json.loads(answer)["status"]["token"]
        new_expiry = float(_claims(new)["exp"])  # type: ignore[arg-type]
        fd, tmp = tempfile.mkstemp(prefix=".token-", dir=directory)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(new)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except (OSError, ValueError, KeyError, TypeError, ssl.SSLError, http.client.HTTPException) as exc:
        log(name, f"renewing the token {path} (it expires at {_when(expiry)}) failed: {type(exc).__name__}: {exc}")
        return left > 0
    log(name, f"renewed the token {path} of {namespace}/{sa_name}: it expired at {_when(expiry)}, "
              f"now at {_when(new_expiry)}")  # fmt: skip
    return True


def run_action(name: str, what: str, command: str) -> None:
    if not command:
        return
    proc = subprocess.run(shlex.split(command), capture_output=True, check=False)
    detail = (proc.stdout + proc.stderr).decode(errors="replace").strip()
    log(name, f"{what}: `{command}` exited {proc.returncode}" + (f" ({detail})" if detail else ""))


def until_ok(name: str, check: Callable[[], tuple[bool, str]], deadline: float, period: float) -> int:
    end = time.monotonic() + deadline
    while True:
        ok, detail = check()
        if ok:
            return 0
        if time.monotonic() >= end:
            log(name, f"not ready after {deadline:g}s: {detail}")
            return 1
        time.sleep(period)


def watch(name: str, check: Callable[[], tuple[bool, str]], args: argparse.Namespace) -> int:
    time.sleep(args.initial_delay)
    state, alarm = "unknown", ""
    last_ok = time.monotonic()
    while True:
        started = time.monotonic()
        ok, detail = check()
        now = time.monotonic()
        if ok:
            last_ok = now
            if detail.startswith("ALARM") and detail != alarm:
                log(name, detail)
            alarm = detail if detail.startswith("ALARM") else ""
            if state != "up":
                log(name, f"passing ({detail})")
                if state == "down":
                    run_action(name, "recovered", args.on_recover)
                elif args.on_recover:
                    run_action(name, "passing at start", args.on_recover)
                state = "up"
        else:
            failing = now - last_ok
            if state == "up":
                log(name, f"failing ({detail})")
                state = "failing"
            if state != "down" and failing >= args.fail_after:
                log(name, f"failed for {failing:.0f}s ({detail})")
                run_action(name, "failed", args.on_fail)
                state = "down"
                if args.rearm:
                    state, last_ok = "unknown", time.monotonic()
                    time.sleep(args.initial_delay)
                    continue
        time.sleep(max(0.0, args.period - (time.monotonic() - started)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0] if __doc__ else None)
    parser.add_argument("--name", default="probe")
    parser.add_argument("--period", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--initial-delay", type=float, default=0.0)
    parser.add_argument("--until-ok", type=float, metavar="SECONDS")
    parser.add_argument("--fail-after", type=float, default=30.0)
    parser.add_argument("--on-fail", default="")
    parser.add_argument("--on-recover", default="")
    parser.add_argument("--rearm", action="store_true")
    parser.add_argument("--lifetime", type=int, default=604800, help="seconds asked for in a TokenRequest")
    parser.add_argument("--renew-before", type=float, default=172800.0, help="renew when fewer seconds are left")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--kubernetes-api", action="store_true")
    target.add_argument("--renew-token", metavar="SERVICEACCOUNT_DIR")
    target.add_argument("--exec", nargs=argparse.REMAINDER, dest="command")
    args = parser.parse_args(argv)
    if args.renew_token:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while True:
            renew_token(args.name, args.renew_token, args.lifetime, args.renew_before, args.timeout)
            time.sleep(args.period)
    check = api_check(args.timeout) if args.kubernetes_api else command_check(args.command, args.timeout)
    if args.until_ok is not None:
        return until_ok(args.name, check, args.until_ok, args.period)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    return watch(args.name, check, args)


if __name__ == "__main__":
    sys.exit(main())
