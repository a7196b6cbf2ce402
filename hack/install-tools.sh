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
