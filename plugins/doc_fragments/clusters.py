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
        description:
          - The cluster's share of each host it serves, against the other clusters serving that host (1 to 256),
            whatever its number of pods. Weights 10 and 90 send a tenth of the requests to the first cluster.
        type: int
        default: 100
      health_check:
        description:
          - How haproxy checks each of this cluster's controller pods between runs; a pod failing C(fall) checks in a
            row leaves rotation until it passes C(rise) checks.
        type: dict
        default: {}
        suboptions:
          type:
            description: C(tcp) connects to the pod; C(http) sends C(GET path) and expects C(status).
            type: str
            choices: [tcp, http]
            default: tcp
          path:
            description: Path of the HTTP check (C(/healthz) of ingress-nginx).
            type: str
            default: /healthz
          port:
            description: Port of the check (C(10254) for ingress-nginx's C(/healthz)); unset, the pod's serving port.
            type: int
          status:
            description: HTTP status the check expects.
            type: int
            default: 200
          interval:
            description: Milliseconds between two checks of a pod.
            type: int
            default: 2000
          fall:
            description: Failed checks in a row that take a pod out of rotation.
            type: int
            default: 2
          rise:
            description: Passed checks in a row that bring it back.
            type: int
            default: 2
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
      load_balancer_classes:
        description:
          - C(loadBalancerClass) values this router set serves in this cluster (with
            O(k8router.edge.k8router#module:load_balancer)), in place of
            O(k8router.edge.k8router#module:load_balancer.classes). An empty list serves no Service with a class there.
          - Unset, the cluster is served the router set's O(k8router.edge.k8router#module:load_balancer.classes).
            Services without a class follow O(k8router.edge.k8router#module:load_balancer.include_unclassed) in every
            cluster.
          - M(k8router.edge.k8router_info) takes the option and does not use it.
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
