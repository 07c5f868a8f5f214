# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""k8router-agent: the converge role's agent (k8router-agent.service) on the router.

Runs the collection's agent (plugins/module_utils/_agent.py) from the periodic run's venv, with the collection on
PYTHONPATH; haproxy's validation and reload commands and ipvsadm run as plain processes (argv, no shell).
Usage: k8router-agent.py [--params FILE] [--window S] [--reload-interval S] [--resync S] [--metrics ADDR:PORT|off]
"""

import subprocess
import sys

from ansible_collections.k8router.edge.plugins.module_utils._agent import main


def run(argv, data=None):
    proc = subprocess.run(list(argv), input=data, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], run, run))
