#!/usr/bin/env bash
# Boots the controller firmware on an emulated Cortex-M4F and checks it decides like the host.
#
#   targets/controller/run_firmware_qemu.sh                      # the embedded defect model
#   targets/controller/run_firmware_qemu.sh out/student_kd.tmf   # another pixel-input model
#
# Builds controller-fw with the `selftest` feature for thumbv7em-none-eabihf twice (dev profile,
# and the size profile of size.sh: opt-level s, fat LTO), runs each on QEMU's netduinoplus2
# (STM32F405: flash at 0x0800_0000, SRAM at 0x2000_0000, as firmware.ld expects) with
# semihosting, and compares the transcript — every frame's class, score and decision, the
# counters — with the one the host computes (tests/selftest.rs), and reports the stack peak the
# firmware measured (painted stack). Installs qemu-system-arm when it is missing (Debian/Ubuntu).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v qemu-system-arm >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "== apt-get install qemu-system-arm"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq qemu-system-arm >/dev/null
fi
model=${1:-}
env=()
if [ -n "$model" ]; then
  env=(TEMPER_CONTROLLER_MODEL="$(realpath "$model")")
fi
target_dir=${CARGO_TARGET_DIR:-target}
art=$PWD/$target_dir/controller-selftest
mkdir -p "$art"

env "${env[@]}" TEMPER_CONTROLLER_ARTIFACTS="$art" cargo test -q -p temper-controller --test selftest >/dev/null

status=0
for profile in dev fw-s; do
  env "${env[@]}" cargo build -q -p temper-controller --features selftest --bin controller-fw \
    --target thumbv7em-none-eabihf --profile "$profile" \
    --config 'profile.fw-s.inherits="release"' --config 'profile.fw-s.opt-level="s"' \
    --config 'profile.fw-s.lto="fat"' --config 'profile.fw-s.codegen-units=1' \
    --config 'profile.fw-s.debug=0' --config 'profile.fw-s.panic="abort"' \
    --config 'profile.fw-s.strip=false' --config 'profile.fw-s.incremental=false'
  dir=$profile; [ "$profile" = dev ] && dir=debug
  elf=$target_dir/thumbv7em-none-eabihf/$dir/controller-fw
  out=$art/target-$profile.txt
  rm -f "$out"
  if ! timeout 600 qemu-system-arm -M netduinoplus2 -nographic -monitor none -serial none \
      -chardev file,id=semihosting,path="$out" \
      -semihosting-config enable=on,target=native,chardev=semihosting -kernel "$elf"; then
    echo "FAIL: controller-fw ($profile) did not exit cleanly under QEMU:"
    cat "$out" 2>/dev/null || true
    status=1
    continue
  fi
  if grep -v '^controller-fw' "$out" | diff -u "$art/host.txt" - >"$art/diff-$profile.txt"; then
    echo "controller-fw ($profile, ${model:-defect8x8.tmf}) on QEMU netduinoplus2 (Cortex-M4F): $(head -1 "$out" | cut -d, -f2-);" \
      "$(grep -c '^frame' "$out") frames decided as on the host; $(grep '^stats' "$out");" \
      "$(sed -n 's/^controller-fw stack/stack/p' "$out")"
  else
    echo "FAIL: controller-fw ($profile) decided differently from the host:"
    cat "$art/diff-$profile.txt"
    status=1
  fi
done
exit $status
