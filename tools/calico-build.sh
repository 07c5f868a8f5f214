#!/usr/bin/env bash
# Build Calico for the lab (calico-node, the CNI plugins calico + calico-ipam) from the Go module
# proxy, and export the data files the calico_systemd role needs from the same pinned module:
# Calico's CRDs and confd's BIRD templates.
#
# Everything goes to ${K8ROUTER_CACHE:-$HOME/.cache/k8router-lab}/calico/<version>/:
#   bin/    calico-node, calico, calico-ipam      (skipped when all three are there)
#   crds/   crd.projectcalico.org_*.yaml           (from libcalico-go/config/crd)
#   confd/  conf.d/*.toml, templates/*             (from confd/etc/calico/confd)
#   manifests/calico.yaml                          (the DaemonSet manifest: calico-node's RBAC)
# The last line printed on stdout is the bin directory (the version directory with --assets), so
# callers can capture it:  bin=$(tools/calico-build.sh | tail -n1)
#
# Usage: tools/calico-build.sh [--print-dir] [--assets] [--force]
#   --print-dir  print the bin directory and exit (no build; exit 1 if it is incomplete)
#   --assets     export crds/ and confd/ only (no compiler run) and print the version directory
#   --force      rebuild even when the binaries exist
#
# Why a wrapper module: the calico monorepo's go.mod replaces its k8s.io/* requirements with
# v0.29.x tags and github.com/projectcalico/api with the local directory ./api. A dependency's
# replace lines are ignored, so the wrapper repeats every replace that names a published version.
# ./api is a nested module of its own, hence not in the calico module's zip: it must come from
# the proxy as github.com/projectcalico/api, or from a local checkout named by CALICO_API_DIR.
set -euo pipefail

CALICO_MODULE="github.com/projectcalico/calico"
# The only version of the monorepo the proxy serves here (tagged v3.x versions are refused): a
# commit of the release-v3.28 branch from 2025-08-13, after v3.28.5. go.mod: go 1.23.8.
CALICO_VERSION="v1.11.0-cni-plugin.0.20250813170300-a0db560f0520"
BINARIES=(calico-node calico calico-ipam)

cache_root="${K8ROUTER_CACHE:-$HOME/.cache/k8router-lab}"
out_dir="${cache_root}/calico/${CALICO_VERSION}"
bin_dir="${out_dir}/bin"

log() { printf 'calico-build: %s\n' "$*" >&2; }

complete() {
    local b
    for b in "${BINARIES[@]}"; do
        [[ -x "${bin_dir}/${b}" ]] || return 1
    done
}

assets_complete() {
    compgen -G "${out_dir}/crds/*.yaml" >/dev/null && [[ -f "${out_dir}/confd/templates/bird.cfg.template" ]] \
        && [[ -f "${out_dir}/manifests/calico.yaml" ]]
}

force=0
assets_only=0
for arg in "$@"; do
    case "$arg" in
        --print-dir)
            echo "$bin_dir"
            complete
            exit $?
            ;;
        --assets) assets_only=1 ;;
        --force) force=1 ;;
        -h|--help)
            sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            log "unknown argument: $arg"
            exit 2
            ;;
    esac
done

if [[ $force -eq 0 ]] && assets_complete && { [[ $assets_only -eq 1 ]] || complete; }; then
    log "up to date: calico ${CALICO_VERSION}"
    if [[ $assets_only -eq 1 ]]; then echo "$out_dir"; else echo "$bin_dir"; fi
    exit 0
fi

# shellcheck source=tools/go-build-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-build-lib.sh"
go_build_setup 1.23 "$out_dir"

work="$(mktemp -d "${TMPDIR:-/tmp}/k8router-calico-build.XXXXXX")"
staging_bin="${out_dir}/bin.partial"
cleanup() { rm -rf "$work" "$staging_bin"; }
trap cleanup EXIT

start=$(date +%s)
cd "$work"

log "fetching ${CALICO_MODULE} ${CALICO_VERSION}"
download_json="$("$go_bin" mod download -json "${CALICO_MODULE}@${CALICO_VERSION}")"
field() { sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}\$/\1/p" <<<"$download_json"; }
calico_dir="$(field Dir)"
calico_gomod="$(field GoMod)"
[[ -d "$calico_dir" && -f "$calico_gomod" ]] || { log "could not download ${CALICO_MODULE}@${CALICO_VERSION}"; exit 1; }

# ---- data files ---------------------------------------------------------------------------
if [[ $force -eq 1 ]] || ! assets_complete; then
    rm -rf "${out_dir}/crds" "${out_dir}/confd" "${out_dir}/manifests"
    mkdir -p "${out_dir}/crds" "${out_dir}/confd" "${out_dir}/manifests"
    cp "${calico_dir}"/libcalico-go/config/crd/crd.projectcalico.org_*.yaml "${out_dir}/crds/"
    cp -r "${calico_dir}/confd/etc/calico/confd/conf.d" "${calico_dir}/confd/etc/calico/confd/templates" \
        "${out_dir}/confd/"
    cp "${calico_dir}/manifests/calico.yaml" "${out_dir}/manifests/"
    chmod -R u+w "${out_dir}/crds" "${out_dir}/confd" "${out_dir}/manifests"
    log "exported $(find "${out_dir}/crds" -name "*.yaml" | wc -l) CRDs, confd's templates and calico.yaml"
fi
if [[ $assets_only -eq 1 ]]; then
    echo "$out_dir"
    exit 0
fi
if [[ $force -eq 0 ]] && complete; then
    log "built by a concurrent run"
    echo "$bin_dir"
    exit 0
fi

# ---- wrapper module -----------------------------------------------------------------------
go_line="$(awk '$1 == "go" { print $2; exit }' "$calico_gomod")"
# Replace lines that name a version (k8s.io/* and friends), single-line or in a block.
mapfile -t replaces < <(
    awk '
        /^replace[[:space:]]*\(/ { inblock = 1; next }
        inblock && /^\)/ { inblock = 0; next }
        inblock && /=>/ { print; next }
        /^replace[[:space:]]+[^(]/ { sub(/^replace[[:space:]]+/, ""); print }
    ' "$calico_gomod" | sed 's|//.*||; s/^[[:space:]]*//; s/[[:space:]]*$//' | awk 'NF && $3 !~ /^\.\.?\//'
)
api_replace=()
if [[ -n "${CALICO_API_DIR:-}" ]]; then
    [[ -f "${CALICO_API_DIR}/go.mod" ]] || { log "CALICO_API_DIR=${CALICO_API_DIR} holds no go.mod"; exit 1; }
    api_replace=("github.com/projectcalico/api => $(cd "$CALICO_API_DIR" && pwd)")
    log "github.com/projectcalico/api from ${CALICO_API_DIR}"
fi
{
    echo "module k8router.lab/calicobuild"
    echo
    echo "go ${go_line}"
    echo
    echo "require ${CALICO_MODULE} ${CALICO_VERSION}"
    echo
    echo "replace ("
    for r in "${replaces[@]}" "${api_replace[@]}"; do
        echo "	${r}"
    done
    echo ")"
} > go.mod
log "mirroring ${#replaces[@]} replace lines of ${CALICO_MODULE}"

targets=("${CALICO_MODULE}/node/cmd/calico-node" "${CALICO_MODULE}/cni-plugin/cmd/calico")
log "resolving calico-node and the CNI plugin dependencies"
if ! "$go_bin" get "${targets[@]/%/@${CALICO_VERSION}}" 2> "$work/get.log"; then
    cat "$work/get.log" >&2
    if grep -q 'github.com/projectcalico/api@' "$work/get.log"; then
        log "the Go module proxy does not serve github.com/projectcalico/api (calico's ./api module);"
        log "set CALICO_API_DIR to a checkout of calico's api/ directory at ${CALICO_VERSION##*-} to build"
    fi
    exit 1
fi

rm -rf "$staging_bin"
mkdir -p "$staging_bin"
ldflags="-s -w -X ${CALICO_MODULE}/node/buildinfo.Version=${CALICO_VERSION}"
ldflags+=" -X main.VERSION=${CALICO_VERSION}"
log "building calico-node and the CNI plugin (slow when cold)"
"$go_bin" build -trimpath -ldflags="$ldflags" -o "$staging_bin/calico-node" "${targets[0]}"
"$go_bin" build -trimpath -ldflags="$ldflags" -o "$staging_bin/calico" "${targets[1]}"
# One binary, two plugins: it picks its routine from the name it is called by.
cp "$staging_bin/calico" "$staging_bin/calico-ipam"

# ---- publish ------------------------------------------------------------------------------
for b in "${BINARIES[@]}"; do
    [[ -x "${staging_bin}/${b}" ]] || { log "missing ${b} after build"; exit 1; }
done
rm -rf "$bin_dir"
mv "$staging_bin" "$bin_dir"

elapsed=$(( $(date +%s) - start ))
log "built in ${elapsed}s: $(cd "$bin_dir" && echo "${BINARIES[*]}")"
"${bin_dir}/calico-node" -v >&2 || true
echo "$bin_dir"
