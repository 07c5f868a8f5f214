"""The lab summary's check that the router set runs both Debian releases."""

from __future__ import annotations

from lab.summary import both_releases

BOOKWORM = "Debian GNU/Linux 12 (bookworm), haproxy 2.6.12-1+deb12u3, keepalived v2.2.7, BIRD 2.0.12"
TRIXIE = "Debian GNU/Linux 13 (trixie), haproxy 3.0.11-1+deb13u4, keepalived v2.3.3, BIRD 2.17.6"


def test_one_router_of_each_release() -> None:
    assert both_releases({"r1": BOOKWORM, "r2": TRIXIE})
    assert not both_releases({"r1": BOOKWORM, "r2": BOOKWORM})
    assert not both_releases({"r1": TRIXIE, "r2": "release not readable"})
