"""The IPVS driver on a real kernel: one qemu guest (tests/fixtures/ipvsvm.py) runs tests/integration/ipvs_guest_check.py.

The host kernel has no IPVS; the guest boots Debian's stock kernel, sees the host's root file system read-only
and runs the host's python3 and ipvsadm on this checkout (its path is passed in, so a fresh clone anywhere
works). The guest is booted once for the whole module; each check it reports is a test of its own here.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import ipvsvm

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GUEST_PROGRAM = Path(__file__).with_name("ipvs_guest_check.py")
RESULT_PREFIX = "K8R-IPVS-RESULT "
GUEST_TIMEOUT = 600.0
CHECKS = [
    ("first_apply", "the first apply from an empty table issues one op per service and real server"),
    ("table_matches_desired", "ipvsadm -Sn (k8router's keys) reads back exactly the desired table"),
    ("tcp_both_reals_answer", "TCP through the VIP reaches both real servers over several connections"),
    ("udp_through_vip", "UDP through the VIP is answered by a real server, from the VIP's address"),
    ("ipv6_tcp_through_vip", "TCP through an IPv6 VIP reaches its IPv6 real server"),
    ("foreign_added_no_ops", "hand-made entries outside the pool cause no operations"),
    ("keepalive_opened", "an HTTP keep-alive connection through the VIP is established"),
    ("replace_other_real_keeps_connection", "replacing the other real server: only -d/-a, kept connection works"),
    ("drain_weight0_keeps_connection", "weight 0 drains: new connections avoid it, the kept connection works"),
    ("scheduler_edit_keeps_connection", "a scheduler change is one -E, the kept connection works"),
    ("second_apply_zero_ops", "a second apply of the same table issues zero operations"),
    ("delete_one_service_only", "removing one service issues exactly its -D"),
    ("error_names_operation", "an ipvsadm failure raises IpvsError naming the operation and ipvsadm's message"),
    ("apply_restore_batch", "a batch of adds through one ipvsadm -R lands in the kernel"),
    ("apply_restore_failure_detected", "a failing line in ipvsadm -R (which exits 0) is detected and named"),
    (
        "module_lb_converge",
        "the module's L4 half: two clusters' services -> allocated VIPs in the kernel, traffic to both, no-op rerun, drain = one edit",
    ),
    (
        "engine_switch_drops_ipvs",
        "engine nftables removes the ipvs engine's virtual services on the pool (check mode: reported, still served), nothing else, once",
    ),
    ("foreign_entries_untouched", "the hand-made entries are byte-for-byte the same after everything"),
]


@pytest.fixture(scope="module")
def guest(request: pytest.FixtureRequest) -> dict[str, Any]:
    if not shutil.which("qemu-system-x86_64") or not shutil.which("ipvsadm"):
        pytest.fail("the IPVS kernel test needs qemu-system-x86_64 and ipvsadm on the host", pytrace=False)
    try:
        ipvsvm.find_kernel()
    except ipvsvm.IpvsVmError as exc:
        pytest.fail(str(exc), pytrace=False)
    script = f"set -e\nexec python3 {shlex.quote(str(GUEST_PROGRAM))} {shlex.quote(str(REPO))}\n"
    result = ipvsvm.run_in_guest(script, timeout=GUEST_TIMEOUT)
    timing = (
        f"IPVS guest: boot to script {result.boot_seconds:.1f} s, script {result.script_seconds:.1f} s, "
        f"guest wall time {result.seconds:.1f} s (qemu TCG, kernel {ipvsvm.find_kernel().version})"
    )
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\n{timing}", flush=True)
    lines = [ln for ln in result.output.splitlines() if ln.startswith(RESULT_PREFIX)]
    if not lines:
        pytest.fail(
            f"the guest program printed no result (rc={result.returncode}); output:\n{result.output[-4000:]}",
            pytrace=False,
        )
    data: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :])
    data["returncode"] = result.returncode
    data["wall_seconds"] = result.seconds
    return data


def test_guest_ran(guest: dict[str, Any]) -> None:
    assert guest["returncode"] == 0, f"the guest program exited {guest['returncode']}"
    assert "setup" not in guest["checks"], f"guest setup failed: {guest['checks'].get('setup')}"
    assert not set(guest["checks"]) - {pair[0] for pair in CHECKS}, "the guest ran checks this test does not know"


@pytest.mark.parametrize(("name", "meaning"), CHECKS, ids=[pair[0] for pair in CHECKS])
def test_ipvs_check(guest: dict[str, Any], name: str, meaning: str) -> None:
    check = guest["checks"].get(name)
    assert check is not None, f"{name}: the guest did not run this check (setup failed?): {guest['checks']}"
    detail = json.dumps(check["detail"], indent=1) if not isinstance(check["detail"], str) else check["detail"]
    assert check["ok"], f"{meaning}: FAILED\n{detail}"
