"""Offline stand-in for the pip bootstrap script that ansible-test downloads.

ansible-test creates a virtual environment for some sanity tests and runs a cached
``get-pip`` script in it (arguments: pip options, then packages such as ``pip==25.2``).
Its download host is not reachable from these machines, so `make sanity` installs this
script in that cache instead: it installs the pip bundled with Python (ensurepip), then
lets that pip install the requested packages from the package index, trusting the system's
CA bundle as the machine's own pip does (ansible-test clears pip's configuration; the pip it
installs then uses the system trust store by itself).
"""

from __future__ import annotations

import ensurepip
import os
import runpy
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

ensurepip.bootstrap(upgrade=True)
cert = ["--cert", SYSTEM_CA_BUNDLE] if os.path.exists(SYSTEM_CA_BUNDLE) else []
sys.argv = ["pip", "install", *cert, *[arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]]
runpy.run_module("pip", run_name="__main__", alter_sys=True)
