#!/usr/bin/env bash
# Builds the fuzz targets on stable Rust, without sanitizers or coverage
# instrumentation, and runs each once over the seed corpus and the regression inputs:
# proves in CI that they compile, link against libFuzzer and pass on known inputs.
# libfuzzer-sys compiles libFuzzer itself with the system C++ compiler.
#
# To actually fuzz (needs cargo-fuzz; RUSTC_BOOTSTRAP lets stable accept -Zsanitizer):
#   cargo install cargo-fuzz
#   RUSTC_BOOTSTRAP=1 cargo fuzz run load_yaml /tmp/weft-fuzz-corpus fuzz/corpus/load_yaml -- \
#     -dict=fuzz/load_yaml.dict -max_total_time=300
# (new inputs go to the first folder, crashes to fuzz/artifacts/; copy a fixed crash
# into fuzz/regressions/load_yaml/ so that CI and crates/api/tests/hostile.rs replay it)
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v c++ >/dev/null; then
  echo "installing: g++ (libFuzzer is C++)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq g++
fi

cargo build --bins
target_dir="${CARGO_TARGET_DIR:-target}"
for target in fuzz_targets/*.rs; do
  name="$(basename "$target" .rs)"
  inputs=()
  for dir in "corpus/$name" "regressions/$name"; do
    if [ -d "$dir" ]; then
      while IFS= read -r -d '' file; do inputs+=("$file"); done < <(find "$dir" -type f -print0 | sort -z)
    fi
  done
  echo "fuzz target $name: running ${#inputs[@]} known inputs"
  if ! output="$("$target_dir/debug/$name" "${inputs[@]}" 2>&1)"; then
    echo "$output"
    echo "fuzz target $name failed on a known input" >&2
    exit 1
  fi
  echo "fuzz target $name: $(grep -c '^Executed' <<<"$output") inputs ran cleanly"
done
