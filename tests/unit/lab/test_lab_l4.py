"""The lab's L4 probes: the client's requests against the stand-in pods' real servers on loopback, and the summary's
reading of what came back (routes, answers)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from lab import labclient, summary
from tests.fixtures.scripts import load_script

BACKEND = Path(__file__).resolve().parents[3] / "playbooks" / "lab" / "files" / "lab-backend.py"


def _backend() -> ModuleType:
    return load_script(BACKEND, "lab_backend")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def pod() -> Iterator[dict[str, Any]]:
    """The stand-in pod's HTTP server and UDP echo (lab-backend.py's own code) for cluster "alpha" on 127.0.0.1."""
    backend = _backend()
    backend.Handler.cluster = "alpha"
    http = ThreadingHTTPServer(("127.0.0.1", 0), backend.Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    udp_port = _free_udp_port()
    threading.Thread(target=backend.udp_echo, args=("alpha", "127.0.0.1", udp_port), daemon=True).start()
    yield {"http": http.server_address[1], "udp": udp_port}
    http.shutdown()
    http.server_close()


def test_tcp_request_is_answered_by_the_pod(pod: dict[str, Any]) -> None:
    res = labclient.l4_request("127.0.0.1", pod["http"], "tcp", 0)
    assert res["ok"] is True, res
    assert (res["cluster"], res["pod"], res["status"]) == ("alpha", "127.0.0.1", 200)


def test_udp_datagram_is_echoed_with_cluster_and_pod(pod: dict[str, Any]) -> None:
    answers = [labclient.l4_request("127.0.0.1", pod["udp"], "udp", seq) for seq in range(3)]
    assert all(a["ok"] for a in answers), answers
    assert [a["echo"] for a in answers] == ["k8router-lab-0", "k8router-lab-1", "k8router-lab-2"]
    assert {(a["cluster"], a["pod"]) for a in answers} == {("alpha", "127.0.0.1")}


def test_udp_without_an_answer_fails_with_the_reason() -> None:
    res = labclient.l4_request("127.0.0.1", _free_udp_port(), "udp", 0)
    assert res["ok"] is False
    assert "Error" in res["error"] or "timed out" in res["error"]


def test_tcp_refused_fails_with_the_reason() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        res = labclient.l4_request("127.0.0.1", port, "tcp", 0)
    assert res["ok"] is False
    assert "ConnectionRefusedError" in res["error"]


MULTIPATH = """10.96.0.0/16 proto bird metric 32
\tnexthop via 10.213.9.21 dev eth0 weight 1
\tnexthop via 10.213.9.22 dev eth0 weight 1
"""


def test_next_hops_of_a_multipath_and_a_single_route() -> None:
    assert summary.parse_next_hops(MULTIPATH) == ["10.213.9.21", "10.213.9.22"]
    assert summary.parse_next_hops("10.97.0.0/16 via 10.213.9.31 dev eth0 proto bird metric 32\n") == ["10.213.9.31"]
    assert summary.parse_next_hops("") == []


def test_bird_routes_skip_the_next_hop_lines() -> None:
    text = (
        MULTIPATH
        + "10.244.1.0/26 via 10.213.9.21 dev eth0 proto bird metric 32\nunreachable 10.244.0.0/16 proto bird\n"
    )
    assert summary.parse_bird_routes(text) == ["10.244.0.0/16 (unreachable cover)", "10.244.1.0/26", "10.96.0.0/16"]


EXPECTED = {"alpha": ["10.244.1.20", "10.244.2.20"], "beta": ["10.245.1.20"]}


def _answer(cluster: str, pod: str) -> dict[str, Any]:
    return {"ok": True, "cluster": cluster, "pod": pod}


def test_tally_counts_per_cluster_and_pod() -> None:
    answers = [_answer("alpha", "10.244.1.20")] * 3 + [_answer("alpha", "10.244.2.20"), _answer("beta", "10.245.1.20")]
    tally = summary.l4_tally(answers, EXPECTED)
    assert tally["ok"] is True
    assert tally["answered_by"] == {"alpha": 4, "beta": 1}
    assert tally["pods"] == {"alpha": {"10.244.1.20": 3, "10.244.2.20": 1}, "beta": {"10.245.1.20": 1}}
    assert (tally["requests"], tally["failed"], tally["missing"]) == (5, 0, [])


def test_tally_fails_when_a_worker_pod_never_answers() -> None:
    # alpha's second worker's pod silent: the route's second next hop carried nothing.
    tally = summary.l4_tally([_answer("alpha", "10.244.1.20"), _answer("beta", "10.245.1.20")], EXPECTED)
    assert tally["ok"] is False
    assert tally["missing"] == ["alpha/10.244.2.20"]


def test_tally_fails_on_one_failed_request() -> None:
    answers = [_answer(c, p) for c, pods in EXPECTED.items() for p in pods]
    answers.append({"ok": False, "error": "TimeoutError: timed out"})
    tally = summary.l4_tally(answers, EXPECTED)
    assert tally["ok"] is False
    assert (tally["failed"], tally["errors"]) == (1, ["TimeoutError: timed out"])


def test_tally_fails_on_no_request_and_on_a_stranger() -> None:
    assert summary.l4_tally([], EXPECTED)["ok"] is False
    answers = [_answer(c, p) for c, pods in EXPECTED.items() for p in pods] + [_answer("gamma", "10.1.1.1")]
    assert summary.l4_tally(answers, EXPECTED)["ok"] is False
