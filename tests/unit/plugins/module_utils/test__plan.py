"""The planner, table-driven: files, reload or runtime commands (server slots and certificates)."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.k8router.edge.plugins.module_utils._haproxy import Rendered, Slot
from ansible_collections.k8router.edge.plugins.module_utils._plan import make_plan

A, B = "/d/certs/a.pem", "/d/certs/b.pem"
ALPN = "[alpn h2,http/1.1]"


def desired(
    structure: str = "1" * 64,
    files: dict[str, bytes] | None = None,
    slots: dict[str, Slot] | None = None,
    certs: dict[str, str] | None = None,
    lines: list[tuple[str, str]] | None = None,
) -> Rendered:
    out = Rendered(files=files if files is not None else {"/c/50-k8router.cfg": b"v1", "/d/hosts.map": b"m"})
    out.structure = structure
    out.slots = slots or {"b/s1": Slot("10.0.0.1", 80, 100, True)}
    out.crt_list = "/d/crt-list.txt"
    out.certs = {A: "a1"} if certs is None else certs
    out.crt_lines = [(A, f"{ALPN} shop.example.org")] if lines is None else lines
    return out


SAME_FILES = {"/c/50-k8router.cfg": b"v1", "/d/hosts.map": b"m"}
APPLIED_CERTS = {"files": {A: "a1"}, "lines": [[A, f"{ALPN} shop.example.org"]]}
APPLIED = {"structure": "1" * 64, "slots": {"b/s1": ["10.0.0.1", 80, 100, True]}, "certs": APPLIED_CERTS}

S1 = "1" * 64  # a structure hash; haproxy reports its first 24 characters (the generation backend)
S2 = "2" * 64
RUNS_S1, RUNS_S2, NOBODY = S1[:24], S2[:24], None

CASES: list[tuple[str, Rendered, dict[str, Any], dict[str, Any], list[str], str | None, dict[str, Any]]] = [
    ("nothing to do", desired(), SAME_FILES, APPLIED, [], RUNS_S1,
     {"changed": False, "reload": False, "commands": [], "write": []}),
    ("first run", desired(), {}, {}, [], "", {"changed": True, "reload": True, "write": ["/c/50-k8router.cfg", "/d/hosts.map"]}),
    ("structure changed", desired(S2, {"/c/50-k8router.cfg": b"v2", "/d/hosts.map": b"m"}), SAME_FILES, APPLIED, [],
     RUNS_S1, {"changed": True, "reload": True, "write": ["/c/50-k8router.cfg"], "commands": []}),
    ("pod moved: runtime only", desired(files={"/c/50-k8router.cfg": b"v1b", "/d/hosts.map": b"m"},
                                        slots={"b/s1": Slot("10.0.0.2", 80, 100, True)}), SAME_FILES, APPLIED, [],
     RUNS_S1, {"changed": True, "reload": False, "write": ["/c/50-k8router.cfg"],
               "commands": ["set server b/s1 addr 10.0.0.2 port 80"]}),
    ("file edited by hand: rewritten, no reload", desired(), {**SAME_FILES, "/c/50-k8router.cfg": b"edited"}, APPLIED, [],
     RUNS_S1, {"changed": True, "reload": False, "write": ["/c/50-k8router.cfg"], "commands": []}),
    ("stale certificate removed", desired(S2), SAME_FILES, APPLIED, ["/d/certs/old.pem"], RUNS_S1,
     {"changed": True, "reload": True, "remove": ["/d/certs/old.pem"]}),
    # the files were written by a run whose reload failed (or that was killed before it): haproxy still runs
    # the old generation, so this run reloads although every file is already as desired
    ("files written, reload lost", desired(S2), SAME_FILES, APPLIED, [], RUNS_S1,
     {"changed": True, "reload": True, "write": [], "commands": []}),
    ("files written, reload lost, layout never saved", desired(S2), SAME_FILES, {}, [], RUNS_S1,
     {"changed": True, "reload": True, "write": []}),
    ("haproxy not answering: the applied layout decides", desired(), SAME_FILES, APPLIED, [], NOBODY,
     {"changed": False, "reload": False}),
    ("haproxy not answering, nothing applied yet", desired(), SAME_FILES, {}, [], NOBODY,
     {"changed": True, "reload": True}),
    # what the runtime holds of the certificates is not known then: only a reload makes sure
    ("haproxy runs it, layout lost: reload", desired(), SAME_FILES, {}, [], RUNS_S1,
     {"changed": True, "reload": True, "commands": []}),
    ("layout of a version without certificates: reload", desired(), SAME_FILES,
     {k: v for k, v in APPLIED.items() if k != "certs"}, [], RUNS_S1, {"changed": True, "reload": True}),
    ("certificate renewed: set and commit, no reload", desired(certs={A: "a2"}), SAME_FILES, APPLIED, [], RUNS_S1,
     {"changed": True, "reload": False, "certs": [f"set ssl cert {A} <<(certificate and key)", f"commit ssl cert {A}"]}),
    # the file on disk is already the new one (a run stopped after writing it): the runtime still gets it
    ("certificate written, runtime not told", desired(certs={A: "a2"}), SAME_FILES, APPLIED, [], NOBODY,
     {"changed": True, "reload": False, "write": [], "certs": [f"set ssl cert {A} <<(certificate and key)",
                                                               f"commit ssl cert {A}"]}),
    ("new certificate for a new SNI name", desired(certs={A: "a1", B: "b1"},
                                                   lines=[(A, f"{ALPN} shop.example.org"), (B, f"{ALPN} api.example.org")]),
     SAME_FILES, APPLIED, [], RUNS_S1,
     {"changed": True, "reload": False, "certs": [f"new ssl cert {B}", f"set ssl cert {B} <<(certificate and key)",
                                                  f"commit ssl cert {B}",
                                                  f"add ssl crt-list <<{B} {ALPN} api.example.org"]}),
    # the new line goes in before the old one goes: the host has a certificate all along
    ("host moves to a new certificate, the old one is dropped",
     desired(certs={B: "b1"}, lines=[(B, f"{ALPN} shop.example.org")]),
     SAME_FILES, APPLIED, [A], RUNS_S1,
     {"changed": True, "reload": False, "remove": [A],
      "certs": [f"new ssl cert {B}", f"set ssl cert {B} <<(certificate and key)", f"commit ssl cert {B}",
                f"add ssl crt-list <<{B} {ALPN} shop.example.org", f"del ssl crt-list {A} ({ALPN} shop.example.org)",
                f"del ssl cert {A}"]}),
    ("SNI names of a certificate change", desired(lines=[(A, f"{ALPN} shop.example.org www.example.org")]),
     SAME_FILES, APPLIED, [], RUNS_S1,
     {"changed": True, "reload": False, "certs": [f"add ssl crt-list <<{A} {ALPN} shop.example.org www.example.org",
                                                  f"del ssl crt-list {A} ({ALPN} shop.example.org)"]}),
    ("structure changed: certificates go with the reload", desired(S2, certs={A: "a2"}), SAME_FILES, APPLIED, [],
     RUNS_S1, {"changed": True, "reload": True, "certs": []}),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_make_plan(
    case: tuple[str, Rendered, dict[str, Any], dict[str, Any], list[str], str | None, dict[str, Any]],
) -> None:
    _name, want, current, applied, stale, running, expected = case
    plan = make_plan(want, current, applied, stale, running)
    got = {"changed": plan.changed, "reload": plan.reload, "commands": plan.commands, "write": sorted(plan.write),
           "remove": plan.remove, "certs": [str(op) for op in plan.cert_ops]}  # fmt: skip
    assert {k: got[k] for k in expected} == expected


def test_diff_never_shows_key_material() -> None:
    want = desired(files={"/d/certs/abc.pem": b"-----BEGIN PRIVATE KEY-----\nsecret\n", "/d/hosts.map": b"a b\n"})
    diff = make_plan(want, {"/d/hosts.map": b""}, {}, []).diff({"/d/hosts.map": b""})
    assert "secret" not in str(diff)
    assert {d["after_header"] for d in diff} == {"/d/certs/abc.pem", "/d/hosts.map", "haproxy"}
    assert next(d for d in diff if d["after_header"] == "/d/hosts.map")["after"] == "a b\n"
