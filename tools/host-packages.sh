#!/usr/bin/env bash
# Debian packages the tests need on the host itself: the daemons whose validators and real
# instances the unit and integration tests use, podman for molecule, qemu + a stock kernel for IPVS.
set -euo pipefail
pkgs=(podman runc debootstrap haproxy keepalived bird2 ipvsadm nftables openssl iproute2 qemu-system-x86 linux-image-amd64 busybox-static cpio)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
((${#missing[@]})) || exit 0
echo "installing ${missing[*]} with apt" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
