#!/usr/bin/env bash
# The test command: set-up, formatting, lints, rustdoc, the whole workspace's tests, the aarch64 kernel
# paths and integration tests under qemu (Cortex-A53 without dotprod, Cortex-A76 with dotprod, max
# with i8mm), armv7 (32-bit) under qemu-arm, temper-run cross builds run under qemu, the no_std
# builds, the C API and the controller. Each stage prints its wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Required coverage (temper-testkit): a test that cannot find the shared models, a data set,
# python3, a host tool, or a kernel level the CPU claims fails instead of skipping.
export TEMPER_REQUIRE="${TEMPER_REQUIRE:-all}"
t_stage=
t_all=$SECONDS
# Prints the wall time of the stage that ends (if any), then the title of the next one.
stage() {
  [ -z "$t_stage" ] || echo "   [stage time $((SECONDS - t_stage)) s]"
  t_stage=$SECONDS
  echo "== $*"
}
stage "cargo fmt --check"
cargo fmt --all -- --check
stage "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
stage "rustdoc -D warnings (public items documented, intra-doc links resolve)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace
stage "mAP vs pycocotools: venv /tmp/temper-coco-venv from PyPI (used by converter/tests/map_pycocotools.rs)"
bench/map_vs_pycocotools.sh --venv-only
stage "real-model corpus: PP-OCR models from the rapidocr-onnxruntime wheel (sha256-checked), rendered pages (cached in ~/.cache/temper/corpus; used by converter/tests/ocr_det.rs)"
scripts/corpus.sh
stage "cargo test (x86_64: every kernel level this CPU runs, forced lower levels, whole models)"
cargo test --workspace
stage "no_std builds"
cargo build -p temper-runtime -p temper-kernels --no-default-features --target thumbv7em-none-eabihf
cargo build -p temper-runtime -p temper-kernels --no-default-features --target aarch64-unknown-none
msrv=$(sed -n '/^\[workspace.package\]/,/^\[/s/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
stage "MSRV: cargo +$msrv check --workspace (the declared rust-version; its own target dir)"
rustup toolchain list | grep -q "^$msrv[.-]" || rustup toolchain install "$msrv" --profile minimal
CARGO_TARGET_DIR=target/msrv cargo "+$msrv" check --workspace --locked
stage "aarch64 under qemu-aarch64: kernels, runtime, and the workspace integration tests (mutation, sessions on threads, ops)"
# TEMPER_EXPECT_LEVELS: exactly the kernel tables the emulated core must run (the tests fail
# on any other set and print a "levels compared (aarch64): ..." line).
for cpu_levels in cortex-a53:neon cortex-a76:neon,dotprod max:neon,dotprod,i8mm; do
  cpu=${cpu_levels%%:*}
  echo "-- QEMU_CPU=$cpu (tables compared: ${cpu_levels#*:})"
  QEMU_CPU=$cpu TEMPER_EXPECT_LEVELS=${cpu_levels#*:} \
    cargo test -p temper-kernels -p temper-runtime -p temper-tests --target aarch64-unknown-linux-gnu
done
echo "-- mutation test under qemu-aarch64 (QEMU_CPU=cortex-a53: the NEON path; mutant counts)"
QEMU_CPU=cortex-a53 cargo test -p temper-tests --test mutation --target aarch64-unknown-linux-gnu -- --nocapture
stage "armv7 (32-bit, scalar path) under qemu-arm: kernels, runtime, data readers, integration tests, temper-run CLI"
TEMPER_RUN_RUNNER="qemu-arm -L /usr/arm-linux-gnueabihf" \
  cargo test -p temper-kernels -p temper-runtime -p temper-data -p temper-tests -p temper-run --target armv7-unknown-linux-gnueabihf
stage "temper-run release builds (x86_64, aarch64, armv7): stripped sizes; info, bench, eval, soak under qemu-user"
scripts/cross_run.sh
stage "C API (temper-capi) for aarch64 under qemu-aarch64 (Cortex-A53, max) and armv7 under qemu-arm"
targets/capi/run_c_test_aarch64.sh
stage "C library install: scripts/install_capi.sh into a temporary prefix; classify.c built with pkg-config (shared and static) and run"
capi_prefix=$(mktemp -d)
scripts/install_capi.sh "$capi_prefix"
a_size=$(stat -c %s "$capi_prefix/lib/libtemper_capi.a")
[ "$a_size" -lt 5000000 ] || { echo "installed libtemper_capi.a is $a_size bytes (limit 5,000,000)" >&2; exit 1; }
export PKG_CONFIG_PATH="$capi_prefix/lib/pkgconfig"
classify_c() { cc -std=c99 -O2 -Wall -Werror targets/capi/examples/classify.c "$@"; }
classify_c $(pkg-config --cflags --libs temper) -o "$capi_prefix/classify"
classify_c $(pkg-config --cflags temper) $(pkg-config --static --libs temper | sed 's/-ltemper_capi/-l:libtemper_capi.a/') -o "$capi_prefix/classify_static"
! readelf -d "$capi_prefix/classify_static" | grep -q libtemper_capi || { echo "static build needs the shared library" >&2; exit 1; }
shared_out=$(LD_LIBRARY_PATH="$capi_prefix/lib" "$capi_prefix/classify" fuzz/seeds/model_from_bytes/student_kd.tmf)
static_out=$("$capi_prefix/classify_static" fuzz/seeds/model_from_bytes/student_kd.tmf)
[ "$shared_out" = "$static_out" ] && grep -q '^1\. class ' <<<"$shared_out" || { echo "classify: $shared_out / $static_out" >&2; exit 1; }
echo "$shared_out"
rm -rf "$capi_prefix"; unset PKG_CONFIG_PATH
stage "controller example (temper-controller): host tests with mock pins, thumbv7em library and firmware, QEMU Cortex-M4F run, code size"
cargo test -p temper-controller
cargo build -p temper-controller --lib --target thumbv7em-none-eabihf
for features in firmware selftest; do
  cargo clippy -p temper-controller --features $features --bin controller-fw --target thumbv7em-none-eabihf -- -D warnings
done
targets/controller/run_firmware_qemu.sh
targets/controller/size.sh
stage "fuzz: each loader target 20 s (cargo-fuzz, libFuzzer + AddressSanitizer; a crash fails)"
scripts/fuzz.sh 20
echo "   [stage time $((SECONDS - t_stage)) s]"
echo "all test stages passed in $((SECONDS - t_all)) s"
