#!/usr/bin/env bash
# Fuzz temper's loaders with cargo-fuzz (libFuzzer + AddressSanitizer) on the stable toolchain
# (RUSTC_BOOTSTRAP=1 unlocks the sanitizer flags cargo-fuzz passes).
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      default 300
# Working corpora grow in fuzz/corpus/ (not committed), seeded from fuzz/seeds/. A crash leaves
# its input in fuzz/artifacts/TARGET/: copy it to fuzz/regressions/TARGET/ (a test replays those).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-300}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# Exit status: non-zero when any target's `cargo fuzz run` fails (a crash, a leak, a timeout,
# a build error); every target still runs. The full log of a failing target is kept in
# fuzz/artifacts/TARGET/last-run.log and its last lines are printed.
# Build outside the checkout so a fresh clone (CI) reuses the instrumented dependencies.
target_dir="${TEMPER_FUZZ_TARGET_DIR:-$HOME/.cache/temper/fuzz-target}"
mkdir -p "$target_dir"
failed=()
# npy_read also covers NPZ and IDX; image_decode PNG and JPEG (the image-folder reader).
for t in model_from_bytes onnx_import npy_read image_decode pipeline_config checkpoint; do
  mkdir -p "corpus/$t" "artifacts/$t"
  cp -n seeds/$t/* "corpus/$t/" 2>/dev/null || true
  echo "== $t ($secs s)"
  log="artifacts/$t/last-run.log"
  set +e
  RUSTC_BOOTSTRAP=1 cargo fuzz run -O --target-dir "$target_dir" "$t" "corpus/$t" -- -max_total_time="$secs" -max_len=500000 -rss_limit_mb=4096 2>&1 |
    tee "$log" | grep --line-buffered -E "DONE|Done|crash|panicked|ERROR|SUMMARY"
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" -ne 0 ]; then
    echo "!! $t: cargo fuzz exited with status $rc (full log: fuzz/$log; a crash input is in fuzz/artifacts/$t/)"
    tail -n 30 "$log"
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing failed: ${failed[*]}"
  exit 1
fi
echo "fuzzing: no crash in ${secs} s per target"
