#!/usr/bin/env bash
# The C API test for aarch64 (and armv7, at the end) under qemu-user: builds libtemper_capi.a for
# aarch64-unknown-linux-gnu, compiles tests/c/test_temper.c against it with aarch64-linux-gnu-gcc,
# runs it with qemu-aarch64 on a Cortex-A53 (NEON kernels) and on `max` (dotprod + i8mm kernels),
# and compares every output line with the x86_64 Rust runtime's outputs for the same model and
# inputs (written by the host test `cargo test -p temper-capi --test c_api`), bit for bit.
set -euo pipefail
cd "$(dirname "$0")/../.."
target_dir=${CARGO_TARGET_DIR:-target}
art=$PWD/$target_dir/capi-c-test-aarch64
mkdir -p "$art"

echo "-- host: model files and expected outputs"
TEMPER_CAPI_ARTIFACTS=$art cargo test -q -p temper-capi --test c_api >/dev/null

echo "-- aarch64: libtemper_capi.a"
cargo build -q -p temper-capi --target aarch64-unknown-linux-gnu
lib=$target_dir/aarch64-unknown-linux-gnu/debug/libtemper_capi.a

aarch64-linux-gnu-gcc -std=c99 -O1 -Wall -Wextra -Werror -pedantic -pthread \
  -Itargets/capi/include targets/capi/tests/c/test_temper.c "$lib" -lpthread -ldl -lm \
  -o "$art/test_temper_aarch64"

status=0
for cpu in cortex-a53 max; do
  out=$art/out_$cpu.txt
  if ! QEMU_CPU=$cpu qemu-aarch64 -L /usr/aarch64-linux-gnu "$art/test_temper_aarch64" \
      "$art/model.tmf" "$art/plain.tmf" >"$out"; then
    echo "FAIL: test_temper on QEMU_CPU=$cpu (output in $out)"
    status=1
    continue
  fi
  kernels=$(sed -n 's/^kernels //p' "$out")
  if grep '^OUT ' "$out" | diff -u "$art/expected.txt" - >"$art/diff_$cpu.txt"; then
    echo "QEMU_CPU=$cpu: kernels $kernels, $(grep -c '^OUT ' "$out") output lines identical to x86_64, $(grep '^PASS' "$out")"
  else
    echo "FAIL: QEMU_CPU=$cpu (kernels $kernels): outputs differ from x86_64:"
    cat "$art/diff_$cpu.txt"
    status=1
  fi
done

# armv7 (32-bit, scalar kernels) under qemu-arm: the same test; every output line must equal the
# x86_64 one except the struct-layout line, which reports the 32-bit ABI's offsets.
echo "-- armv7: libtemper_capi.a"
cargo build -q -p temper-capi --target armv7-unknown-linux-gnueabihf
arm-linux-gnueabihf-gcc -std=c99 -O1 -Wall -Wextra -Werror -pedantic -pthread \
  -Itargets/capi/include targets/capi/tests/c/test_temper.c "$target_dir/armv7-unknown-linux-gnueabihf/debug/libtemper_capi.a" \
  -lpthread -ldl -lm -o "$art/test_temper_armv7"
out=$art/out_armv7.txt
if ! qemu-arm -L /usr/arm-linux-gnueabihf "$art/test_temper_armv7" "$art/model.tmf" "$art/plain.tmf" >"$out"; then
  echo "FAIL: test_temper on armv7 (output in $out)"
  status=1
elif grep '^OUT ' "$out" | grep -v '^OUT layout ' | diff -u <(grep -v '^OUT layout ' "$art/expected.txt") - >"$art/diff_armv7.txt"; then
  echo "armv7: kernels $(sed -n 's/^kernels //p' "$out"), $(grep '^OUT ' "$out" | grep -vc '^OUT layout ') output lines identical to x86_64, $(grep '^PASS' "$out"); $(grep '^OUT layout ' "$out" | cut -c5-)"
else
  echo "FAIL: armv7: outputs differ from x86_64:"
  cat "$art/diff_armv7.txt"
  status=1
fi
exit $status
