#!/usr/bin/env bash
# Installs what the tests need besides Rust crates and the Go-built control
# plane and kubelet: Debian packages (docker-registry, containerd, runc, CNI
# plugins) and PyPI packages (moto) into a project-local virtualenv.
# Idempotent; quiet when everything is present.
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

# Debian packages:
# - docker-registry (distribution 2.8): the real registry behind the pull-auth
#   tests (testenv/src/registry.rs starts its own instances on free ports with
#   configs of its own);
# - containerd (1.6) and runc: the container runtime of the test node
#   (testenv/src/node.rs starts its own containerd with its own config,
#   socket and state; runc also serves the containerd 2.x that
#   hack/build-containerd.sh builds);
# - containernetworking-plugins (bridge, host-local, loopback), iptables and
#   iproute2: the pod network of a node started with NodeOptions::pod_network
#   (testenv/src/pod_network.rs), which the chart-on-node test needs;
# - gcc and libc6-dev: the node's test images are static C binaries;
# - prometheus (2.42, with promtool): tests/alerts.rs checks the chart's
#   alerting rules with `promtool test rules` and runs a real Prometheus
#   (its own config, data dir and port) that scrapes the operator.
sudo=()
if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
missing=()
for pkg in docker-registry:/usr/bin/docker-registry containerd:/usr/bin/containerd \
  containerd:/usr/bin/containerd-shim-runc-v2 runc:/usr/sbin/runc gcc:/usr/bin/gcc libc6-dev:/usr/lib/x86_64-linux-gnu/libc.a \
  containernetworking-plugins:/usr/lib/cni/bridge iptables:/usr/sbin/iptables iproute2:/usr/sbin/ip \
  prometheus:/usr/bin/prometheus prometheus:/usr/bin/promtool; do
  [[ -e ${pkg#*:} ]] || missing+=("${pkg%%:*}")
done
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "install-tools: Debian packages ${missing[*]}" >&2
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
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The packages' own services would hold :5000 with /etc/docker/registry's
# config, /run/containerd with /etc/containerd's and :9090 with
# /etc/prometheus's: keep them stopped and disabled, also when they were
# installed earlier.
for service in docker-registry containerd prometheus; do
  if [[ -d /run/systemd/system ]]; then
    if systemctl is-enabled --quiet "$service.service" 2>/dev/null \
      || systemctl is-active --quiet "$service.service" 2>/dev/null; then
      echo "install-tools: stopping and disabling the $service service" >&2
      "${sudo[@]}" systemctl disable --now "$service.service" >/dev/null 2>&1 || true
    fi
  elif [[ -x /etc/init.d/$service ]] && compgen -G "/etc/rc[2-5].d/S*$service" >/dev/null; then
    echo "install-tools: stopping and disabling the $service service" >&2
    "${sudo[@]}" "/etc/init.d/$service" stop >/dev/null 2>&1 || true
    "${sudo[@]}" update-rc.d "$service" disable >/dev/null 2>&1 || true
  fi
done

# A cold `cargo test --workspace --all-targets` writes about 3 GiB into
# target/, and a disk that fills up shows only as the linker dying with
# SIGBUS. Say so before the build starts.
need_kib=$((4 * 1024 * 1024))
free_kib=$(df -Pk "$root" | awk 'NR == 2 { print $4 }')
if ((free_kib < need_kib)); then
  echo "install-tools: warning: $((free_kib / 1024)) MiB free under $root; a cold build needs about 4 GiB (a full disk shows as 'ld terminated with signal 7 [Bus error]')" >&2
fi
