#!/usr/bin/env bash
# Builds containerd 2.x (containerd, its runc shim and ctr) from its Go
# module into a cache outside the repository, once per pinned version
# (CONTAINERD_VERSION in versions.env). Prints the directory holding them.
#
# The test node runs either Debian's containerd 1.6 or this one
# (testenv/src/node.rs, `Runtime`); the diagnosis tests run on both. The 2.x
# shim is built too: containerd 2.x speaks a newer shim bootstrap protocol,
# and the node points the CRI at this shim by path, never at Debian's.
#
# github.com/containerd/containerd/v2 has no replace directives, so
# `go install pkg@version` works. CGO off and the snapshotters that need
# cgo or kernel features left out, as for containerd's static release.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${REGCRED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/regcred}
out="$cache/containerd/$CONTAINERD_VERSION"
cmds=(containerd containerd-shim-runc-v2 ctr)
present=true
for cmd in "${cmds[@]}"; do
  [[ -x "$out/$cmd" ]] || present=false
done
if $present; then
  echo "$out"
  exit 0
fi
command -v go >/dev/null || { echo "error: Go is required to build containerd $CONTAINERD_VERSION (https://go.dev/dl/)" >&2; exit 1; }
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Go's module and build caches for this build live and die with the scratch
# dir: CI disks are small, and the binaries are cached per version.
export GOCACHE="$work/go-build" GOMODCACHE="$work/go-mod" GOFLAGS="${GOFLAGS:+$GOFLAGS }-modcacherw"
echo "build-containerd: building containerd $CONTAINERD_VERSION (2 to 3 minutes on 2 cores)" >&2
module=github.com/containerd/containerd/v2
pkgs=()
for cmd in "${cmds[@]}"; do
  pkgs+=("$module/cmd/$cmd@$CONTAINERD_VERSION")
done
# `containerd --version` and the CRI's Version RPC report the real version.
ldflags="-s -w -X $module/version.Version=$CONTAINERD_VERSION -X $module/version.Package=$module"
mkdir -p "$work/bin"
GOBIN="$work/bin" CGO_ENABLED=0 go install -trimpath -tags no_btrfs,no_devmapper,no_zfs -ldflags "$ldflags" "${pkgs[@]}" >&2
for cmd in "${cmds[@]}"; do
  mv "$work/bin/$cmd" "$out/$cmd.tmp"
  mv "$out/$cmd.tmp" "$out/$cmd"
done
echo "$out"
