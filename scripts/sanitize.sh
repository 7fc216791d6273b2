#!/usr/bin/env bash
# The hostile-input, op and hand-built model tests under AddressSanitizer (every kernel level this
# CPU runs). Miri needs a nightly toolchain, which this project's machines cannot fetch; ASan on
# the stable compiler (RUSTC_BOOTSTRAP=1 unlocks -Zsanitizer) checks the same out-of-bounds class
# in the unsafe SIMD code as well.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address" CARGO_TARGET_DIR=target/asan \
  cargo test -p temper-tests --test mutation --test ops --test handbuilt --test session --target x86_64-unknown-linux-gnu
