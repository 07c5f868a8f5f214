# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's entry point, ``python lab/lab.py up|down|status|summary|scenario NAME|wheelhouse`` (see lab/cli.py).

The lab itself is the package ``lab``: topology, parts, clusters, certs, inventory, lifecycle, summary, scenarios,
cli; it imports the test fixtures (``tests.fixtures``) from the same checkout.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    REPO = Path(__file__).resolve().parents[1]
    if Path(sys.path[0]).resolve() == REPO / "lab":  # run as a script: import `lab` the package, not this file
        sys.path[0] = str(REPO)
    from lab.cli import main

    sys.exit(main())
