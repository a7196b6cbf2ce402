#!/usr/bin/env bash
# Installs what the tests need besides Rust crates and the Go-built control
# plane: Debian packages (docker-registry) and PyPI packages (moto) into a
# project-local virtualenv. Idempotent; quiet when everything is present.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
# shellcheck source=versions.env
source "$here/versions.env"

venv="$root/.venv"
if [[ ! -x "$venv/bin/moto_server" ]] || ! "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
  echo "install-tools: moto[server]==$MOTO_VERSION into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

# Debian's docker-registry (distribution 2.8): the real registry behind the
# pull-auth tests (testenv/src/registry.rs starts its own instances on free
# ports with configs of its own).
sudo=()
if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
if [[ ! -x /usr/bin/docker-registry ]]; then
  echo "install-tools: Debian package docker-registry" >&2
  # invoke-rc.d (and deb-systemd-invoke) ask policy-rc.d before a maintainer
  # script starts a service; 101 means "not now". Only a policy created here
  # is removed again.
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    trap '"${sudo[@]}" rm -f "$policy"' EXIT
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
  fi
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null
fi
# The package's own service would hold :5000 with /etc/docker/registry's
# config: keep it stopped and disabled, also when it was installed earlier.
if [[ -d /run/systemd/system ]]; then
  if systemctl is-enabled --quiet docker-registry.service 2>/dev/null \
    || systemctl is-active --quiet docker-registry.service 2>/dev/null; then
    echo "install-tools: stopping and disabling the docker-registry service" >&2
    "${sudo[@]}" systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
  fi
elif [[ -x /etc/init.d/docker-registry ]] && compgen -G '/etc/rc[2-5].d/S*docker-registry' >/dev/null; then
  echo "install-tools: stopping and disabling the docker-registry service" >&2
  "${sudo[@]}" /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
  "${sudo[@]}" update-rc.d docker-registry disable >/dev/null 2>&1 || true
fi

# A cold `cargo test --workspace --all-targets` writes about 3 GiB into
# target/, and a disk that fills up shows only as the linker dying with
# SIGBUS. Say so before the build starts.
need_kib=$((4 * 1024 * 1024))
free_kib=$(df -Pk "$root" | awk 'NR == 2 { print $4 }')
if ((free_kib < need_kib)); then
  echo "install-tools: warning: $((free_kib / 1024)) MiB free under $root; a cold build needs about 4 GiB (a full disk shows as 'ld terminated with signal 7 [Bus error]')" >&2
fi
