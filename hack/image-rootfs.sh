#!/usr/bin/env bash
# Assembles the base file system of regcred's container image from Debian's
# own packages, as distroless images are made: the shared libraries the
# binary links (found with ldd, mapped to their packages with dpkg -S),
# ca-certificates for HTTPS to the clouds and registries, and the few files a
# glibc program reads at run time. No shell, no package manager.
#
#   hack/image-rootfs.sh <binary> <rootfs dir>
#
# Used by `make image` (through testenv's image builder, which also runs in
# tests/chart_node.rs) and by the Dockerfile, so both images have the same
# base. The .debs are those of the versions installed here (the libraries the
# binary was linked against), downloaded once into $REGCRED_CACHE/image-debs
# (the Dockerfile's build stage downloads its own).
set -euo pipefail
binary=${1:?usage: image-rootfs.sh <binary> <rootfs dir>}
rootfs=${2:?usage: image-rootfs.sh <binary> <rootfs dir>}
cache=${REGCRED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/regcred}
debs=${REGCRED_IMAGE_DEBS:-$cache/image-debs}
log() { echo "image-rootfs: $*" >&2; }

# The packages owning what the dynamic linker loads for the binary.
mapfile -t libs < <(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
((${#libs[@]})) || { log "ldd found no shared libraries in $binary (a static binary needs no base layer)"; exit 1; }
packages=(ca-certificates)
for lib in "${libs[@]}"; do
  # Debian 12 packages list their libraries under /lib, which /usr/lib may alias.
  owner=$(dpkg -S "$lib" 2>/dev/null || dpkg -S "$(realpath "$lib")" 2>/dev/null || dpkg -S "${lib#/usr}" 2>/dev/null) \
    || { log "no Debian package owns $lib"; exit 1; }
  packages+=("${owner%%:*}")
done
mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)

mkdir -p "$debs"
for pkg in "${packages[@]}"; do
  version=$(dpkg-query -W -f '${Version}' "$pkg" 2>/dev/null || apt-cache policy "$pkg" | awk '/Candidate:/ { print $2 }')
  arch=$(dpkg-query -W -f '${Architecture}' "$pkg" 2>/dev/null || dpkg --print-architecture)
  deb="$debs/${pkg}_${version//:/%3a}_${arch}.deb"
  if [[ ! -f $deb ]]; then
    log "downloading $pkg=$version"
    (cd "$debs" && { apt-get download -qq "$pkg=$version" 2>/dev/null || { apt-get update -qq && apt-get download -qq "$pkg=$version"; }; })
  fi
  [[ -f $deb ]] || { log "apt-get download $pkg=$version did not produce $deb"; exit 1; }
  dpkg-deb -x "$deb" "$rootfs"
  echo "$pkg=$version"
done

# What dpkg's maintainer scripts would have made, and what is not needed.
rm -rf "$rootfs"/usr/share/doc "$rootfs"/usr/share/man "$rootfs"/usr/share/lintian "$rootfs"/usr/sbin
mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
# update-ca-certificates concatenates the enabled certificates: all of them.
find "$rootfs/usr/share/ca-certificates" -name '*.crt' | LC_ALL=C sort | xargs cat > "$rootfs/etc/ssl/certs/ca-certificates.crt"
# The image's only users; 65532 is distroless's "nonroot", which the chart runs as.
cat > "$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin
PASSWD
cat > "$rootfs/etc/group" <<'GROUP'
root:x:0:
nonroot:x:65532:
GROUP
# glibc resolves host names through NSS: /etc/hosts (which the kubelet writes,
# with the pod's hostAliases) first, then DNS. Without this file glibc's
# built-in default is the same, but say it.
cat > "$rootfs/etc/nsswitch.conf" <<'NSS'
passwd: files
group: files
hosts: files dns
NSS
