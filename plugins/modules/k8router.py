#!/usr/bin/python
# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Converge haproxy on a router: every ingress host served from every cluster offering it."""

from __future__ import annotations

DOCUMENTATION = r"""
module: k8router
short_description: Serve every ingress host of every cluster through haproxy, with TLS ended here
version_added: 0.1.0
description:
  - Reads every cluster in parallel (Ingresses of the served classes, ready pods of the ingress controller), matches
    the given certificates to the hosts from their own SANs, and converges haproxy so that each host is sent to the
    ingress-controller pods of all clusters offering it.
  - The candidate configuration is validated with C(haproxy -c) before it replaces the live files (atomic renames).
    A rejected candidate stays beside the live file with the suffix C(.rejected) and the task fails with haproxy's
    message. Endpoint changes and certificate changes (a renewed, new or removed certificate, new SNI names) go
    through haproxy's runtime API without a reload; any other change reloads haproxy seamlessly.
  - A cluster that cannot be read keeps serving its last-known-good state until it is older than O(max_age).
  - Two runs at once (timer and CI) take turns on a lock in O(state_dir).
extends_documentation_fragment:
  - k8router.edge.clusters
options:
  certificates:
    description: Certificate files; C(cert) may hold the key and the chain too.
    type: list
    elements: dict
    default: []
    suboptions:
      cert:
        description: PEM certificate (leaf first, then intermediates).
        type: path
        required: true
      key:
        description: PEM private key, when not in C(cert).
        type: path
  certificate_dir:
    description: Directory of more certificates, C(NAME.pem) (certificate and key) or C(NAME.crt) with C(NAME.key).
    type: path
  default_certificate:
    description: Certificate for clients without SNI or with an unknown host; the router role's fallback when unset.
    type: dict
    suboptions:
      cert:
        description: PEM certificate.
        type: path
        required: true
      key:
        description: PEM private key, when not in C(cert).
        type: path
  expiry_warning_days:
    description: Warn about certificates that expire within this many days.
    type: int
    default: 21
  backend_tls:
    description: Speak TLS to the ingress-controller pods.
    type: bool
    default: false
  backend_ca_file:
    description: CA that the pods' certificates must chain to when O(backend_tls=true); no verification when unset.
    type: path
  haproxy:
    description: Where haproxy and its files are (the defaults match the router role).
    type: dict
    default: {}
    suboptions:
      config:
        description: The main configuration (owned by the router role).
        type: path
        default: /etc/haproxy/haproxy.cfg
      conf_dir:
        description: Directory of configuration files loaded after the main one; k8router owns C(50-k8router.cfg) in it.
        type: path
        default: /etc/haproxy/k8router.d
      data_dir:
        description: Maps, crt-list and certificates.
        type: path
        default: /etc/haproxy/k8router
      socket:
        description: The admin runtime API socket.
        type: path
        default: /run/haproxy/admin.sock
      binary:
        description: The haproxy binary (for validation).
        type: str
        default: haproxy
      reload_command:
        description: Command that reloads haproxy seamlessly.
        type: list
        elements: str
        default: [systemctl, reload, haproxy]
  load_balancer:
    description:
      - Serve LoadBalancer services on the router with IPVS or nftables (NAT to each offering cluster's service
        cluster IP).
      - With IPVS, only virtual services on addresses of O(load_balancer.pool) are k8router's; other IPVS entries are
        left alone.
      - With nftables, k8router owns the table C(inet k8router_lb) and nothing else; it is replaced in one
        transaction, validated with C(nft -c) first, whenever it differs from what k8router would write (also
        after a change by hand).
      - The L4 half runs after the HTTP half; if IPVS or nftables fails, haproxy is converged all the same and the
        run fails naming the error, with the warnings found before it (each bad Service among them).
      - Each Service is checked before anything reaches C(ipvsadm) or C(nft). A Service with a bad value (an address
        of the other IP family than its cluster IP, an address out of the pool or not an address, a port that is not
        one, a scheduler not in O(load_balancer.schedulers), a conflict) is reported in a warning naming
        C(cluster/namespace/name) and why, and is left out, or served without the bad part (a bad scheduler gives
        the default one; a bad request on a Service already published keeps its published address). Nothing else
        is affected.
      - The requested address is read from, highest precedence first, the annotations C(k8router.edge/address),
        C(metallb.io/loadBalancerIPs), C(metallb.universe.tf/loadBalancerIPs), C(kube-vip.io/loadbalancerIPs),
        C(lbipam.cilium.io/ips), then C(spec.loadBalancerIP). Each holds a comma-separated list of at most one
        address per IP family. The first one set decides; the others that say something else are reported.
        If the deciding one is invalid, the Service is not served; a lower source is not used in its place.
        One address per Service is served, of the Service's primary IP family when both are requested.
      - Every router of a set computes the same addresses from the clusters alone. A Service gets its valid
        requested address; else the address published in its C(status.loadBalancer.ingress), when it is in the
        pool; else the lowest free address of its IP family, Services taken by creation time, then
        C(cluster/namespace/name). The router's own state plays no part. An address published for one Service
        is never taken by another's request. Without O(load_balancer.write_status) on some set, deleting a
        Service can move the addresses of Services created after it.
      - The pool identifies the router set. A Service whose status holds an address outside the pool (or a
        hostname) was published by another owner; it is reported, not served, and its status never written.
      - Services of several clusters that request one address with the same ports (and different cluster IPs)
        share it (one virtual service served by all). Another claim on an address is refused; the Service
        whose status holds it keeps it (else the one created first).
    type: dict
    suboptions:
      pool:
        description: Addresses and CIDRs this router set gives to services (floated by the router role's VRRP).
        type: list
        elements: str
        required: true
      classes:
        description:
          - C(loadBalancerClass) values this router set serves, in each cluster without a
            O(clusters[].load_balancer_classes) of its own.
        type: list
        elements: str
        default: []
      include_unclassed:
        description: Also serve LoadBalancer services without a class.
        type: bool
        default: false
      write_status:
        description:
          - Write the address into each Service's C(status.loadBalancer.ingress).
          - Only the router set that owns the load-balancer classes should (one per class). A status holding
            an address outside this set's pool is never overwritten; a second set that claims the same class
            reports such a Service and does not serve it.
          - Each write carries the C(resourceVersion) of the Service as read in this run, so a status written by
            anyone in between is never overwritten. On a conflict the Service is read again; the write is
            repeated once when nothing its address depends on changed, else (or when it conflicts again) a
            warning names C(cluster/namespace/name) and the next run decides again. A failed write never fails
            the run.
        type: bool
        default: false
      schedulers:
        description:
          - IPVS schedulers a service may ask for with the annotation C(k8router.edge/scheduler).
          - Any other value is reported and O(load_balancer.default_scheduler) is used.
        type: list
        elements: str
        default: [rr, wrr, lc, wlc, sh, mh]
      default_scheduler:
        description: Scheduler of services that ask for none.
        type: str
        default: wrr
      ipvsadm:
        description: The ipvsadm binary.
        type: str
        default: ipvsadm
      engine:
        description:
          - C(ipvs) programs IPVS virtual services; C(nftables) is for kernels without C(ip_vs).
          - With C(nftables) each service picks an endpoint for a new connection at random, by weight (a weight of 0
            gets none); the schedulers C(rr) (equal shares) and C(wrr) (shares by weight) are honoured, any other is
            warned about per service and served as C(wrr).
          - Switching engines removes what the other one left behind, after the new one is in place, with the same
            check and diff behaviour (check mode reports the removal and changes nothing). With C(nftables), the
            IPVS virtual services on addresses of O(load_balancer.pool) are deleted (only when the kernel's
            C(ip_vs) is loaded and O(load_balancer.ipvsadm) is installed; otherwise nothing is run). With C(ipvs),
            the table C(inet k8router_lb) is deleted when O(load_balancer.nft) is installed and the table exists.
        type: str
        choices: [ipvs, nftables]
        default: ipvs
      nft:
        description: The nft binary (engine C(nftables)).
        type: str
        default: nft
  lock_timeout:
    description: Seconds to wait for another run to finish before failing with a clear message.
    type: float
    default: 30
  credentials:
    description:
      - Renewal of the bound service-account tokens in the clusters' kubeconfigs. Each run reads the token's
        expiry; when it is nearer than O(credentials.renew_before), k8router asks the TokenRequest API for a new
        token for its own service account, with its current token, and writes it into the kubeconfig atomically
        (mode 0600). Kubeconfigs without a token (client certificates) are left alone.
      - An expired token is reported with its file, cluster and expiry; the cluster then serves its
        last-known-good state until O(max_age).
    type: dict
    default: {}
    suboptions:
      renew:
        description: Renew tokens at all.
        type: bool
        default: true
      lifetime:
        description: Seconds of validity asked for in each TokenRequest (at least 600; the API may grant less).
        type: int
        default: 604800
      renew_before:
        description: Renew when the token expires in fewer seconds than this.
        type: int
        default: 172800
      warn_before:
        description: Warn when the token expires in fewer seconds than this (its renewal keeps failing).
        type: int
        default: 86400
  state:
    description: C(present) converges; C(rendered) returns the files it would write and touches nothing.
    type: str
    choices: [present, rendered]
    default: present
attributes:
  check_mode:
    support: full
    description: Reads the clusters and reports what would change, writes nothing.
  diff_mode:
    support: full
    description: Diffs of haproxy's files (certificates named, never shown) and the runtime commands.
author:
  - k8router.edge maintainers (@k8router)
"""

EXAMPLES = r"""
- name: Converge the ingress routing
  k8router.edge.k8router:
    clusters:
      - name: alpha
        kubeconfig: /etc/k8router/alpha.kubeconfig
        allowed_hosts: ["*.alpha.example.org", shop.example.org]
      - name: beta
        kubeconfig: /etc/k8router/beta.kubeconfig
        state: drain
    certificate_dir: /etc/k8router/certs
"""

RETURN = r"""
hosts:
  description: Each served host with its clusters, ready backends, certificate and expiry.
  returned: always
  type: list
  elements: dict
  sample: [{host: shop.example.org, clusters: [alpha, beta], backends: 6, certificate: /etc/k8router/certs/shop.pem,
            expires: "2027-01-01T00:00:00+00:00"}]
clusters:
  description: How each cluster was read (fresh, last-known-good, failed, skipped).
  returned: always
  type: list
  elements: dict
warnings_list:
  description: Uncovered hosts, refused hosts, expiring certificates, stale clusters (also shown as warnings).
  returned: always
  type: list
  elements: str
reloaded:
  description: Whether haproxy was reloaded.
  returned: always
  type: bool
commands:
  description: Runtime API commands sent (or, in check mode, that would be sent).
  returned: always
  type: list
  elements: str
services:
  description: LoadBalancer services served, with their addresses and ports (with O(load_balancer)).
  returned: always
  type: list
  elements: dict
ipvs:
  description: L4 changes made (or, in check mode, that would be made), to IPVS or to the nftables table.
  returned: always
  type: list
  elements: str
credentials:
  description: Per cluster, its kubeconfig, the kind of credential, when its token expires and whether it was renewed.
  returned: always
  type: list
  elements: dict
figures:
  description:
    - The run's figures, the same the agent exports as metrics. V(duration) (seconds), V(reloaded), V(runtime_commands)
      (how many), V(certificate_expiry_days) (per certificate file), V(lb_addresses_allocated),
      V(lb_address_conflicts) (Services refused or moved because another holds their address) and, per cluster, how
      it was read (V(read)) and the age of its state in seconds (V(age)).
  returned: always
  type: dict
  sample: {duration: 0.21, reloaded: false, runtime_commands: 2, lb_addresses_allocated: 1, lb_address_conflicts: 0,
           certificate_expiry_days: {/etc/k8router/certificates/shop.pem: 41.5},
           clusters: {alpha: {read: fresh, age: 0}}}
rendered:
  description: The files k8router would write (certificates named only), with O(state=rendered).
  returned: when state is rendered
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.k8router.edge.plugins.module_utils._args import (
    CONVERGE_ARGS,
    missing_libraries,
    options_from_params,
)
from ansible_collections.k8router.edge.plugins.module_utils._errors import K8RouterError


def main() -> None:
    module = AnsibleModule(argument_spec=CONVERGE_ARGS, supports_check_mode=True)
    for message, error in missing_libraries():
        module.fail_json(msg=message, exception=error)
    from ansible_collections.k8router.edge.plugins.module_utils._converge import run, run_figures  # noqa: PLC0415

    try:
        result = run(
            options_from_params(module.params),
            lambda argv: module.run_command(list(argv)),
            stdin_runner=lambda argv, data: module.run_command(list(argv), data=data, binary_data=True),
            check_mode=module.check_mode,
            diff=module._diff,
            rendered_only=module.params["state"] == "rendered",
        )
    except K8RouterError as exc:
        for warning in exc.warnings:
            module.warn(warning)
        module.fail_json(msg=str(exc))
    for warning in result.warnings:
        module.warn(warning)
    output = {
        "changed": result.changed,
        "reloaded": result.reloaded,
        "commands": result.commands,
        "hosts": result.hosts,
        "clusters": result.clusters,
        "warnings_list": result.warnings,
        "services": result.services,
        "ipvs": result.ipvs,
        "credentials": result.credentials,
        "figures": run_figures(result),
    }
    if module.params["state"] == "rendered":
        output["rendered"] = result.rendered
    if module._diff and result.diff:
        output["diff"] = result.diff
    module.exit_json(**output)


if __name__ == "__main__":
    main()
