# shellcheck shell=bash
# Shared by tools/k8s-build.sh and tools/calico-build.sh (sourced, not run): find the Go toolchain, pin the build
# environment, and take the per-version build lock.
#
#   go_build_setup MIN_GO OUT_DIR   sets go_bin, exports GOTOOLCHAIN/CGO_ENABLED/GOFLAGS, creates OUT_DIR and
#                                   holds OUT_DIR/.lock on fd 9 (a second caller waits for the first)
# Callers define log().

go_build_setup() {
    local min_go=$1 out_dir=$2
    go_bin="$(command -v go || true)"
    if [[ -z "$go_bin" && -x /usr/local/go/bin/go ]]; then
        go_bin=/usr/local/go/bin/go
    fi
    if [[ -z "$go_bin" ]]; then
        log "no Go toolchain found (need go >= ${min_go} on PATH or at /usr/local/go/bin/go)"
        exit 1
    fi
    # Never switch toolchains behind our back: a version that needs a newer Go must fail loudly. CGO_ENABLED=0:
    # static binaries (Calico's optional cgo parts, BPF and nftables helpers, are left out; the lab uses iptables).
    export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"
    log "using $("$go_bin" version)"
    mkdir -p "$out_dir"
    exec 9>"${out_dir}/.lock"
    flock 9
}
