#!/usr/bin/env bash
# `make demo`: build the operator and the demo driver, then run the demo
# (testenv/src/bin/regcred-demo/: main.rs the steps, cluster.rs its cluster helpers, output.rs its printing). It starts etcd, kube-apiserver, a
# registry, moto and regcred on 127.0.0.1 and stops all of them when it ends,
# also on Ctrl-C. Expects `make tools` to have installed them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo=${CARGO:-cargo}

# One invocation: both binaries share one feature resolution and one build.
"$cargo" build -p regcred --bin regcred -p regcred-testenv --bin regcred-demo

target=${CARGO_TARGET_DIR:-$root/target}
case $target in /*) ;; *) target=$root/$target ;; esac
export REGCRED_BIN="$target/debug/regcred"
# exec: Ctrl-C and SIGTERM reach the demo itself, which cleans up.
exec "$target/debug/regcred-demo" "$@"
