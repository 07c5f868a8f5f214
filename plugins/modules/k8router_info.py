#!/usr/bin/python
# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only: what every cluster offers and what the router would serve."""

from __future__ import annotations

DOCUMENTATION = r"""
module: k8router_info
short_description: What every cluster offers and what the router set would serve
version_added: 0.1.0
description:
  - Reads every cluster like M(k8router.edge.k8router) and returns the same model (hosts, clusters serving them,
    backends, certificates) without touching haproxy or the state directory.
extends_documentation_fragment:
  - k8router.edge.clusters
attributes:
  check_mode:
    support: full
    description: Reads only; the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to diff.
options:
  certificates:
    description: Certificate files to match to the hosts.
    type: list
    elements: dict
    default: []
    suboptions:
      cert:
        description: PEM certificate.
        type: path
        required: true
      key:
        description: PEM private key, when not in C(cert).
        type: path
  certificate_dir:
    description: Directory of more certificates (C(NAME.pem), or C(NAME.crt) with C(NAME.key)).
    type: path
  expiry_warning_days:
    description: Warn about certificates that expire within this many days.
    type: int
    default: 21
author:
  - k8router.edge maintainers (@k8router)
"""

EXAMPLES = r"""
- name: Show where each host is served
  k8router.edge.k8router_info:
    clusters:
      - name: alpha
        kubeconfig: /etc/k8router/alpha.kubeconfig
  register: routing
"""

RETURN = r"""
hosts:
  description: Each host with its clusters, ready backends, certificate and expiry.
  returned: always
  type: list
  elements: dict
clusters:
  description: How each cluster was read.
  returned: always
  type: list
  elements: dict
warnings_list:
  description: Uncovered and refused hosts, expiring certificates, unreadable clusters.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.k8router.edge.plugins.module_utils._args import (
    CONVERGE_ARGS,
    INFO_ARGS,
    missing_libraries,
    options_from_params,
)
from ansible_collections.k8router.edge.plugins.module_utils._errors import K8RouterError


def main() -> None:
    module = AnsibleModule(argument_spec=INFO_ARGS, supports_check_mode=True)
    for message, error in missing_libraries():
        module.fail_json(msg=message, exception=error)
    from ansible_collections.k8router.edge.plugins.module_utils._converge import report  # noqa: PLC0415

    params = {**{k: v.get("default") for k, v in CONVERGE_ARGS.items()}, **module.params}
    try:
        result = report(options_from_params(params))
    except K8RouterError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, hosts=result.hosts, clusters=result.clusters, warnings_list=result.warnings)


if __name__ == "__main__":
    main()
