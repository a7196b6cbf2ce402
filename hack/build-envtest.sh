#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kubelet, kube-controller-manager and
# kube-scheduler from their Go modules into a cache outside the repository,
# once per pinned version. Prints the directory holding them.
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces every
# k8s.io/<staging> module with ./staging/src/... . A wrapper module requires
# k8s.io/kubernetes and replaces each staging module with its published v0.N.P
# tag, derived from the release's own go.mod.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${REGCRED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/regcred}
out="$cache/envtest/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
k8s_all=(kube-apiserver kubelet kube-controller-manager kube-scheduler)
present=true
for cmd in etcd "${k8s_all[@]}"; do
  [[ -x "$out/$cmd" ]] || present=false
done
if $present; then
  echo "$out"
  exit 0
fi
command -v go >/dev/null || { echo "error: Go is required to build etcd and the Kubernetes binaries (https://go.dev/dl/)" >&2; exit 1; }
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Go's module and build caches for this build (several GB) live and die with
# the scratch dir: CI disks are small, and the binaries are cached per version.
export GOCACHE="$work/go-build" GOMODCACHE="$work/go-mod" GOFLAGS="${GOFLAGS:+$GOFLAGS }-modcacherw"
log() { echo "build-envtest: $*" >&2; }

# etcd: a two-line main around etcdmain.Main needs no replace directives.
if [[ ! -x "$out/etcd" ]]; then
  log "building etcd $ETCD_VERSION"
  mkdir -p "$work/etcd" && cd "$work/etcd"
  go mod init regcred.dev/envtest-etcd >/dev/null 2>&1
  cat > main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
  go mod tidy >&2
  CGO_ENABLED=0 go build -trimpath -o "$out/etcd.tmp" . >&2
  mv "$out/etcd.tmp" "$out/etcd"
fi

# kube-apiserver, kubelet, kube-controller-manager and kube-scheduler (the
# last two for tests that run Deployments on the test node) come from one
# module (k8s.io/kubernetes at K8S_VERSION) and share most packages: whichever
# are missing are built by one `go build`, so a cold build compiles the shared
# packages once.
k8s_cmds=()
for cmd in "${k8s_all[@]}"; do
  [[ -x "$out/$cmd" ]] || k8s_cmds+=("$cmd")
done
if ((${#k8s_cmds[@]})); then
  log "building ${k8s_cmds[*]} $K8S_VERSION (5 to 25 minutes on 2 cores, by how many; together they share most packages)"
  mkdir -p "$work/k8s" && cd "$work/k8s"
  go mod init regcred.dev/envtest-kubernetes >/dev/null 2>&1
  modfile=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  staging_tag="v0.${K8S_VERSION#v1.}"
  replaces=$(grep -E '^\s*k8s\.io/[^ ]+ => \./staging/src/' "$modfile" | awk '{print $1}' | sort -u)
  [[ -n "$replaces" ]] || { log "no staging replaces found in $modfile"; exit 1; }
  n=0
  for m in $replaces; do
    go mod edit -replace "$m=$m@$staging_tag"
    n=$((n + 1))
  done
  log "$n staging modules replaced with $staging_tag"
  go mod edit -require "k8s.io/kubernetes@$K8S_VERSION"
  pkgs=()
  for cmd in "${k8s_cmds[@]}"; do
    go get -tool "k8s.io/kubernetes/cmd/$cmd@$K8S_VERSION" >&2
    pkgs+=("k8s.io/kubernetes/cmd/$cmd")
  done
  ver="$K8S_VERSION"
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$ver -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$ver" | cut -d. -f2) -X k8s.io/component-base/version.gitTreeState=clean"
  mkdir -p "$work/bin"
  # CGO off for all, as for the release's kube-apiserver: the kubelet's cgo
  # users (cAdvisor's libpfm, sd-journal) are optional and unused by the tests.
  CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$work/bin/" "${pkgs[@]}" >&2
  for cmd in "${k8s_cmds[@]}"; do
    mv "$work/bin/$cmd" "$out/$cmd.tmp"
    mv "$out/$cmd.tmp" "$out/$cmd"
  done
fi
echo "$out"
