#!/usr/bin/env bash
# Build the Kubernetes lab binaries (kube-apiserver, kubectl, kube-proxy, etcd) from the Go module proxy.
#
# Versions are pinned below. Binaries go to
#   ${K8ROUTER_CACHE:-$HOME/.cache/k8router-lab}/k8s/<k8s-version>-etcd<etcd-version>/bin/
# and only those not already there are built (a cache from before kube-proxy was added gets just
# kube-proxy). The last line printed on stdout is that bin directory, so callers can capture it:
#   bin=$(tools/k8s-build.sh | tail -n1)
#
# Usage: tools/k8s-build.sh [--print-dir] [--force]
#   --print-dir  print the bin directory and exit (no build; exit 1 if it is incomplete)
#   --force      rebuild all of them even when they exist
#
# Why a wrapper module: k8s.io/kubernetes's go.mod replaces its k8s.io/* staging modules with
# local paths (./staging/src/...), which makes `go install k8s.io/kubernetes/cmd/...@vX` fail.
# A throwaway module that requires k8s.io/kubernetes and replaces every staging module with its
# published v0.X.Y tag builds the same code. etcd's server module has the same problem with
# its own replace lines, so it gets a wrapper module too (no replaces needed there: the
# dependency's replace lines are ignored and its requirements are all published).
set -euo pipefail

K8S_VERSION="v1.36.3"   # go.mod: go 1.26.0, builds with Go 1.26.x without a toolchain switch
ETCD_VERSION="v3.6.16"  # 3.6 line, the one k8s 1.36 uses (its etcd client is v3.6.8)
K8S_BINARIES=(kube-apiserver kubectl kube-proxy)  # all k8s.io/kubernetes/cmd/<name>
BINARIES=("${K8S_BINARIES[@]}" etcd)

cache_root="${K8ROUTER_CACHE:-$HOME/.cache/k8router-lab}"
out_dir="${cache_root}/k8s/${K8S_VERSION}-etcd${ETCD_VERSION#v}"
bin_dir="${out_dir}/bin"

log() { printf 'k8s-build: %s\n' "$*" >&2; }

# missing NAME...: print those of NAME that are not built yet.
missing() {
    local b
    for b in "$@"; do
        [[ -x "${bin_dir}/${b}" ]] || echo "$b"
    done
}

# todo NAME...: what to build of NAME: the missing ones, all of them with --force.
todo() {
    if [[ $force -eq 1 ]]; then printf '%s\n' "$@"; else missing "$@"; fi
}

complete() {
    [[ -z "$(missing "${BINARIES[@]}")" ]]
}

force=0
for arg in "$@"; do
    case "$arg" in
        --print-dir)
            echo "$bin_dir"
            complete
            exit $?
            ;;
        --force) force=1 ;;
        -h|--help)
            sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            log "unknown argument: $arg"
            exit 2
            ;;
    esac
done

if [[ $force -eq 0 ]] && complete; then
    log "up to date: ${K8S_BINARIES[*]} ${K8S_VERSION}, etcd ${ETCD_VERSION}"
    echo "$bin_dir"
    exit 0
fi

# shellcheck source=tools/go-build-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-build-lib.sh"
go_build_setup 1.26 "$out_dir"
if [[ $force -eq 0 ]] && complete; then
    log "built by a concurrent run"
    echo "$bin_dir"
    exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/k8router-k8s-build.XXXXXX")"
staging_bin="${out_dir}/bin.partial"
cleanup() { rm -rf "$work" "$staging_bin"; }
trap cleanup EXIT
rm -rf "$staging_bin"
mkdir -p "$staging_bin"

start=$(date +%s)
mapfile -t k8s_todo < <(todo "${K8S_BINARIES[@]}")
mapfile -t etcd_todo < <(todo etcd)
log "to build: ${k8s_todo[*]} ${etcd_todo[*]}"

# ---- kube-apiserver, kubectl, kube-proxy --------------------------------------------------
if [[ ${#k8s_todo[@]} -gt 0 ]]; then
k8s_mod_dir="${work}/k8s"
mkdir -p "$k8s_mod_dir"
cd "$k8s_mod_dir"

log "fetching k8s.io/kubernetes ${K8S_VERSION} go.mod"
k8s_gomod="$("$go_bin" mod download -json "k8s.io/kubernetes@${K8S_VERSION}" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
[[ -f "$k8s_gomod" ]] || { log "could not download k8s.io/kubernetes@${K8S_VERSION}"; exit 1; }

# Staging modules: those kubernetes replaces with ./staging/src/... AND requires. (Some staging
# modules, e.g. sample-cli-plugin, are replaced but neither required nor published.)
staging_version="v0.${K8S_VERSION#v1.}"
mapfile -t staging < <(
    awk '
        /=> \.\/staging\/src\// { replaced[$1] = 1 }
        /^require[[:space:]]*\(/ { inreq = 1; next }
        inreq && /^\)/ { inreq = 0 }
        inreq && $1 ~ /^k8s\.io\// { required[$1] = 1 }
        END { for (m in replaced) if (m in required) print m }
    ' "$k8s_gomod" | sort
)
[[ ${#staging[@]} -gt 0 ]] || { log "found no staging modules in $k8s_gomod"; exit 1; }
log "replacing ${#staging[@]} staging modules with ${staging_version}"

go_line="$(awk '$1 == "go" { print $2; exit }' "$k8s_gomod")"
{
    echo "module k8router.lab/k8sbuild"
    echo
    echo "go ${go_line}"
    echo
    echo "require k8s.io/kubernetes ${K8S_VERSION}"
    echo
    echo "replace ("
    for m in "${staging[@]}"; do
        echo "	${m} => ${m} ${staging_version}"
    done
    echo ")"
} > go.mod

k8s_pkgs=()
for b in "${k8s_todo[@]}"; do k8s_pkgs+=("k8s.io/kubernetes/cmd/${b}"); done
log "resolving ${k8s_todo[*]} dependencies"
"$go_bin" get "${k8s_pkgs[@]/%/@${K8S_VERSION}}"

# Stamp the version the way kubernetes' own build does (hack/lib/version.sh), so that
# /version and `kubectl version` report the real version instead of v0.0.0-master.
k8s_minor="${K8S_VERSION#v1.}"
k8s_minor="${k8s_minor%%.*}"
build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    k8s_ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${k8s_minor}"
    k8s_ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=${build_date}"
done

log "building ${k8s_todo[*]} ${K8S_VERSION} (slow when cold)"
if [[ ${#k8s_pkgs[@]} -eq 1 ]]; then
    "$go_bin" build -trimpath -ldflags="$k8s_ldflags" -o "$staging_bin/${k8s_todo[0]}" "${k8s_pkgs[0]}"
else
    "$go_bin" build -trimpath -ldflags="$k8s_ldflags" -o "$staging_bin/" "${k8s_pkgs[@]}"
fi
fi

# ---- etcd ---------------------------------------------------------------------------------
if [[ ${#etcd_todo[@]} -gt 0 ]]; then
etcd_mod_dir="${work}/etcd"
mkdir -p "$etcd_mod_dir"
cd "$etcd_mod_dir"
etcd_gomod="$("$go_bin" mod download -json "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
[[ -f "$etcd_gomod" ]] || { log "could not download go.etcd.io/etcd/server/v3@${ETCD_VERSION}"; exit 1; }
etcd_go_line="$(awk '$1 == "go" { print $2; exit }' "$etcd_gomod")"
printf 'module k8router.lab/etcdbuild\n\ngo %s\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$etcd_go_line" "$ETCD_VERSION" > go.mod
log "resolving etcd ${ETCD_VERSION} dependencies"
"$go_bin" get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
log "building etcd ${ETCD_VERSION}"
"$go_bin" build -trimpath -ldflags="-s -w" -o "$staging_bin/etcd" go.etcd.io/etcd/server/v3
fi

# ---- publish ------------------------------------------------------------------------------
# Each binary is moved in on its own (a rename within one file system), so a reader never sees a half-written one
# and the ones already there stay.
built=("${k8s_todo[@]}" "${etcd_todo[@]}")
for b in "${built[@]}"; do
    [[ -x "${staging_bin}/${b}" ]] || { log "missing ${b} after build"; exit 1; }
done
mkdir -p "$bin_dir"
for b in "${built[@]}"; do
    mv -f "${staging_bin}/${b}" "${bin_dir}/${b}"
done
complete || { log "still missing after build: $(missing "${BINARIES[@]}" | tr '\n' ' ')"; exit 1; }

elapsed=$(( $(date +%s) - start ))
log "built in ${elapsed}s: ${built[*]}"
"${bin_dir}/kube-apiserver" --version >&2
"${bin_dir}/etcd" --version | head -n1 >&2
echo "$bin_dir"
