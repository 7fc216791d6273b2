#!/usr/bin/env bash
# The test command: set-up, formatting, lints, the whole workspace's tests, the aarch64 kernel
# paths under qemu (Cortex-A53 without dotprod, Cortex-A76 with dotprod, max with i8mm), and the
# no_std builds.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test (x86_64: every kernel level this CPU runs, forced lower levels, whole models)"
cargo test --workspace
echo "== no_std builds"
cargo build -p temper-runtime -p temper-kernels --no-default-features --target thumbv7em-none-eabihf
cargo build -p temper-runtime -p temper-kernels --no-default-features --target aarch64-unknown-none
echo "== aarch64 under qemu-aarch64"
for cpu in cortex-a53 cortex-a76 max; do
  echo "-- QEMU_CPU=$cpu"
  QEMU_CPU=$cpu cargo test -p temper-kernels -p temper-runtime --target aarch64-unknown-linux-gnu
done
echo "== C API (temper-capi) for aarch64 under qemu-aarch64 (Cortex-A53, max)"
targets/capi/run_c_test_aarch64.sh
echo "== controller example (temper-controller): host tests with mock pins, thumbv7em library and firmware, QEMU Cortex-M4F run, code size"
cargo test -p temper-controller
cargo build -p temper-controller --lib --target thumbv7em-none-eabihf
for features in firmware selftest; do
  cargo clippy -p temper-controller --features $features --bin controller-fw --target thumbv7em-none-eabihf -- -D warnings
done
targets/controller/run_firmware_qemu.sh
targets/controller/size.sh
echo "all test stages passed"
