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
for t in model_from_bytes onnx_import npy_read; do
  mkdir -p "corpus/$t"
  cp -n seeds/$t/* "corpus/$t/" 2>/dev/null || true
  echo "== $t ($secs s)"
  RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$t" "corpus/$t" -- -max_total_time="$secs" -max_len=500000 -rss_limit_mb=4096 2>&1 | grep -E "DONE|Done|crash|panicked|ERROR" || true
done
