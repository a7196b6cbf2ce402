#!/usr/bin/env bash
# Builds helm from its Go module into a cache outside the repository, once per
# pinned version. Prints the path of the binary.
#
# helm.sh/helm/vN has no replace directives, so `go install` works; the major
# version of the module path follows HELM_VERSION (v3.x or v4.x).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${REGCRED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/regcred}
out="$cache/helm/$HELM_VERSION"
if [[ -x "$out/helm" ]]; then
  echo "$out/helm"
  exit 0
fi
command -v go >/dev/null || { echo "error: Go is required to build helm (https://go.dev/dl/)" >&2; exit 1; }
log() { echo "install-helm: $*" >&2; }

module="helm.sh/helm/${HELM_VERSION%%.*}"
log "building helm $HELM_VERSION ($module, a few minutes on 2 cores)"
# Build into a scratch GOBIN and move into place, so an interrupted build never
# leaves a binary that the check above would take for a finished one.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Go's module and build caches for this build (several GB) live and die with
# the scratch dir: CI disks are small, and the binaries are cached per version.
export GOCACHE="$work/go-build" GOMODCACHE="$work/go-mod" GOFLAGS="${GOFLAGS:+$GOFLAGS }-modcacherw"
# Without the Makefile's ldflags, `helm version` would report only "v4.3".
CGO_ENABLED=0 GOBIN="$work" go install -trimpath \
  -ldflags "-s -w -X $module/internal/version.version=$HELM_VERSION -X $module/internal/version.gitTreeState=clean" \
  "$module/cmd/helm@$HELM_VERSION" >&2
mkdir -p "$out"
mv "$work/helm" "$out/helm"
echo "$out/helm"
