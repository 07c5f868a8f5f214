"""Fixtures for the module tests: a real haproxy in a network namespace (lab/haproxylab.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from lab.haproxylab import VIP, Haproxy, render_main_config, self_signed


@pytest.fixture(scope="session")
def haproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Haproxy]:
    if os.geteuid() != 0:
        pytest.fail("the haproxy integration tests need root (network namespaces)", pytrace=False)
    ns = f"k8r-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "netns", "exec", ns, "ip", "addr", "add", f"{VIP}/32", "dev", "lo"], check=True)
    root = tmp_path_factory.mktemp("haproxy")
    h = Haproxy(ns, root)
    try:
        h.conf_dir.mkdir()
        (h.data_dir / "certs").mkdir(parents=True)
        self_signed(h.data_dir / "fallback.pem")
        for name, content in (
            ("hosts.map", ""),
            ("wildcards.map", ""),
            ("crt-list.txt", f"{h.data_dir}/fallback.pem\n"),
        ):
            (h.data_dir / name).write_text(content)
        render_main_config(h)
        log = (root / "haproxy.log").open("wb")
        h.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "haproxy", "-W", "-S", str(root / "master.sock"),
             "-f", str(h.config), "-f", str(h.conf_dir)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        # `ip netns exec` execs haproxy: the Popen pid is haproxy's master.
        for _attempt in range(100):
            if h.socket.exists():
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"haproxy did not start: {(root / 'haproxy.log').read_text()}")
        yield h
    finally:
        if h.proc is not None:
            h.proc.send_signal(signal.SIGTERM)
            h.proc.wait(timeout=10)
        for proc in h.backends.values():
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False)
