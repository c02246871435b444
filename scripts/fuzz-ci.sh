#!/usr/bin/env bash
# Builds every cargo-fuzz target in fuzz/ and runs each for a short fixed
# budget, as CI does after the tests (docs/fuzzing.md). Installs the pinned
# cargo-fuzz when it is missing. Works on the stable toolchain.
#
#   scripts/fuzz-ci.sh [SECONDS_PER_TARGET]      (default 20)
#
# Each target starts from its committed seeds (fuzz/seeds/TARGET) and its
# working corpus (fuzz/corpus/TARGET, git-ignored, kept between runs). A
# crash stops nothing else: every target runs, then the script fails naming
# the targets that crashed; the input and the whole log are in
# fuzz/artifacts/TARGET/, the panic and the input in base64 are printed here.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"

cargo_fuzz_version=0.13.2
seconds=${1:-20}

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]; then
  cargo install --locked "cargo-fuzz@$cargo_fuzz_version"
fi

# cargo-fuzz passes -Z flags only nightly rustc accepts; this lets stable
# accept them. The fuzz build lives in fuzz/target, never in a shared
# CARGO_TARGET_DIR: its instrumentation flags differ from every other build.
export RUSTC_BOOTSTRAP=1
unset CARGO_TARGET_DIR

# CI's build: unoptimised (debug assertions, so integer overflow is a crash
# too) and without AddressSanitizer. It compiles in about a third of the CPU
# time of cargo-fuzz's default (optimised, ASan, one codegen unit); casegate
# forbids unsafe code, so ASan mainly watches dependencies, which the longer
# runs in docs/fuzzing.md cover. `run` must get the same flags or it rebuilds.
flags=(--dev --sanitizer none)
cargo fuzz build "${flags[@]}"

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
# Scratch files of the targets (key_files writes its TLS files there).
mkdir "$logs/tmp"
targets=$(cargo fuzz list)
if [ -z "$targets" ]; then
  echo "fuzz: no targets found in fuzz/" >&2
  exit 1
fi
failed=()
for target in $targets; do
  corpus=(corpus/"$target")
  mkdir -p "${corpus[0]}"
  if [ -d "seeds/$target" ]; then
    corpus+=("seeds/$target")
  fi
  echo "== fuzz $target: ${seconds}s"
  if TMPDIR=$logs/tmp cargo fuzz run "${flags[@]}" "$target" "${corpus[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$logs/$target" 2>&1; then
    grep -E '^(Done|stat::number_of_executed_units|stat::new_units_added)' "$logs/$target" || true
  else
    # The panic and its message, the crash file and the input in base64;
    # the whole log is kept beside the crash input.
    grep -E -A1 'panicked at|^SUMMARY|Test unit written|^Base64' "$logs/$target" \
      || tail -n 60 "$logs/$target"
    mkdir -p "artifacts/$target"
    cp "$logs/$target" "artifacts/$target/fuzz-ci.log"
    failed+=("$target")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashed: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: every target ran ${seconds}s without a crash"
