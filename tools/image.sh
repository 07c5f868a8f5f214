#!/usr/bin/env bash
# Build (or reuse) the Debian systemd images for the lab and molecule, offline from any container
# registry: debootstrap + `podman import`. Each image is tagged with a hash of its recipe (suite,
# package list, masked units), and the root file system tarball is cached outside the repo, so a
# warm machine reuses both and a fresh one rebuilds them. The newest build of each image is also
# tagged `:current`, the tag molecule and the lab use.
#
# router, worker and client are Debian 12 (bookworm), with their daemons installed; router-trixie is the
# router on Debian 13 (trixie), for the lab (sealed: nothing leaves its network, so no apt there).
# router-trixie-bare is Debian 13 with systemd, Python and the basics only, for molecule: the router
# role's own package installation runs on it (apt inside the container, from the suite's repository).
#
# Usage: tools/image.sh [router|router-trixie|router-trixie-bare|worker|client ...]   (default: router)
#   prints one line per image: localhost/k8router-<name>:<hash>
set -euo pipefail

cache=${K8ROUTER_CACHE:-$HOME/.cache/k8router-lab}/images
# A container has no consoles, no udev and no hardware clock; these units only slow boot down.
masked_units="getty@tty1.service systemd-udevd.service systemd-udev-trigger.service systemd-timesyncd.service
apt-daily.timer apt-daily-upgrade.timer e2scrub_reap.service"
base_pkgs="systemd,systemd-sysv,dbus,python3,python3-apt,iproute2,iputils-ping,procps,curl,ca-certificates,openssl,less,netcat-openbsd"

packages_for() {
  case "$1" in
    router | router-trixie) echo "$base_pkgs,haproxy,keepalived,bird2,ipvsadm,nftables,psmisc,python3-venv" ;;
    router-trixie-bare | client) echo "$base_pkgs" ;;
    worker) echo "$base_pkgs,bird,ipset,conntrack,iptables,nftables,psmisc" ;;
    *) echo "unknown image '$1' (router, router-trixie, router-trixie-bare, worker, client)" >&2; return 2 ;;
  esac
}

suite_for() {
  case "$1" in
    *-trixie | *-trixie-bare) echo trixie ;;
    *) echo bookworm ;;
  esac
}

ensure_tools() {
  local need=()
  for p in podman runc debootstrap; do command -v "$p" >/dev/null 2>&1 || need+=("$p"); done
  if ((${#need[@]})); then
    echo "installing ${need[*]} with apt" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
  fi
}

build_one() {
  local name=$1 pkgs suite hash tag tarball root
  pkgs=$(packages_for "$name")
  suite=$(suite_for "$name")
  hash=$(printf '%s\n' "$suite" "$pkgs" "$masked_units" | sha256sum | cut -c1-12)
  tag=localhost/k8router-$name:$hash
  if podman image exists "$tag"; then
    podman tag "$tag" "localhost/k8router-$name:current"
    echo "$tag"
    return
  fi
  mkdir -p "$cache"
  tarball=$cache/k8router-$name-$hash.tar
  if [ ! -s "$tarball" ]; then
    root=$(mktemp -d "$cache/root-$name.XXXX")
    echo "debootstrap $name image ($suite, about a minute)" >&2
    if ! debootstrap --variant=minbase --include="$pkgs" "$suite" "$root" >"$cache/debootstrap-$name.log" 2>&1; then
      tail -20 "$cache/debootstrap-$name.log" >&2
      rm -rf "$root"
      return 1
    fi
    for unit in $masked_units; do ln -sf /dev/null "$root/etc/systemd/system/$unit"; done
    echo "k8router-$name" >"$root/etc/hostname"
    chroot "$root" apt-get clean
    tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  podman import --change 'CMD ["/sbin/init"]' "$tarball" "$tag" >/dev/null
  podman tag "$tag" "localhost/k8router-$name:current"
  echo "$tag"
}

ensure_tools
for name in "${@:-router}"; do build_one "$name"; done
