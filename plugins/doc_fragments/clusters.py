# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options shared by k8router and k8router_info: the clusters and how to read them."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  clusters:
    description: The clusters this router set serves.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Cluster name, a DNS label.
        type: str
        required: true
      kubeconfig:
        description: Kubeconfig of k8router's identity in this cluster (least privilege, no Secrets; keep it mode 0600).
        type: path
        required: true
      context:
        description: Context of the kubeconfig; its current context when unset.
        type: str
      ingress_controller:
        description: The ingress controller whose ready pods receive this cluster's traffic.
        type: dict
        default: {}
        suboptions:
          namespace:
            description: Namespace of the controller's Service.
            type: str
            default: ingress-nginx
          service:
            description: Name of the controller's Service (its EndpointSlices list the pods).
            type: str
            default: ingress-nginx-controller
          port:
            description: Port name or number of the controller's endpoints to send traffic to.
            type: str
            default: http
      ingress_classes:
        description:
          - Ingress classes this router set serves in this cluster.
          - An Ingress without a class belongs to the cluster's default IngressClass.
        type: list
        elements: str
        default: [nginx]
      weight:
        description: Weight of each of this cluster's pods (1 to 256).
        type: int
        default: 100
      state:
        description:
          - C(active) serves; C(drain) keeps existing connections and sends no new ones; C(offline) removes the cluster.
        type: str
        choices: [active, drain, offline]
        default: active
      allowed_hosts:
        description:
          - Hosts this cluster may claim, exact or C(*.example.org) (any name below example.org) or C(*).
          - A host claimed outside the list is refused and reported. Unset, the cluster may claim any host.
        type: list
        elements: str
  request_timeout:
    description: Seconds to wait for each request to a cluster.
    type: float
    default: 10
  state_dir:
    description: Directory of k8router's own state (last-known-good cluster snapshots, the applied layout, the lock).
    type: path
    default: /var/lib/k8router
  max_age:
    description: Seconds a cluster's last-known-good snapshot keeps serving while the cluster cannot be read.
    type: int
    default: 3600
requirements:
  - kubernetes (Python client)
  - cryptography
"""
