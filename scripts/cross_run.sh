#!/usr/bin/env bash
# Release builds of temper-run for x86_64, aarch64 and armv7 from the checked-in
# .cargo/config.toml, their stripped sizes, and each cross binary run under qemu-user on an
# emitted Fashion-MNIST student: info, bench (few runs), eval on test images (the correct count
# must equal the native scalar one: every kernel path is bit-exact), the kernel path dispatch
# picks per emulated CPU, and a short soak. Used by scripts/test.sh; runnable alone:
#   scripts/cross_run.sh [MODEL.tmf]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-fuzz/seeds/model_from_bytes/student_kd.tmf}
n=${CROSS_EVAL_IMAGES:-300}
native=target/release/temper-run
a64=target/aarch64-unknown-linux-gnu/release/temper-run
a32=target/armv7-unknown-linux-gnueabihf/release/temper-run
cargo build --release -p temper-run
cargo build --release -p temper-run --target aarch64-unknown-linux-gnu
cargo build --release -p temper-run --target armv7-unknown-linux-gnueabihf

echo "-- temper-run sizes (release profile: no debug info, symbols stripped by cargo; strip -o removes what is left)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for spec in "x86_64:strip:$native" "aarch64:aarch64-linux-gnu-strip:$a64" "armv7:arm-linux-gnueabihf-strip:$a32"; do
  IFS=: read -r name tool bin <<<"$spec"
  "$tool" -o "$tmp/$name" "$bin"
  printf '   %-8s %9d bytes stripped   (%d as built)\n' "$name" "$(stat -c %s "$tmp/$name")" "$(stat -c %s "$bin")"
done

run_a64() { QEMU_CPU=$1 qemu-aarch64 -L /usr/aarch64-linux-gnu "$a64" "${@:2}"; }
run_a32() { qemu-arm -L /usr/arm-linux-gnueabihf "$a32" "$@"; }
top_correct() { grep -o '"count":[0-9]*,"correct":[0-9]*' <<<"$1" | head -1; }
per_class() { grep -o '"per_class":.*' <<<"$1"; }
fail() { echo "cross_run: $*" >&2; exit 1; }

ref_json=$("$native" eval "$model" --data "fashion-mnist:test:$n" --kernels scalar --json)
ref=$(top_correct "$ref_json")
echo "-- native scalar reference on $n test images: $ref"
check() { # label, expected kernel path, info output, bench json, eval json
  local label=$1 want=$2 info=$3 bench=$4 ev=$5
  grep -q "kernel path *$want\$" <<<"$info" || fail "$label: info does not report kernel path $want: $(grep 'kernel path' <<<"$info")"
  grep -q "\"kernels\":\"$want\"" <<<"$bench" || fail "$label: bench did not run $want: $bench"
  [ "$(top_correct "$ev")" = "$ref" ] || fail "$label: eval $(top_correct "$ev") differs from native scalar $ref"
  [ "$(per_class "$ev")" = "$(per_class "$ref_json")" ] || fail "$label: per-class counts differ from native scalar: $(per_class "$ev")"
  printf '   %-22s %-8s bench median %s µs (qemu), eval %s = native (per class too)\n' "$label" "$want" \
    "$(grep -o '"median":[0-9.]*' <<<"$bench" | cut -d: -f2)" "$(top_correct "$ev")"
}
echo "-- aarch64 under qemu-aarch64 and armv7 under qemu-arm: info, bench --runs 20, eval $n images"
for spec in cortex-a53:neon cortex-a76:dotprod max:i8mm; do
  IFS=: read -r cpu want <<<"$spec"
  check "aarch64 $cpu" "$want" "$(run_a64 "$cpu" info "$model")" "$(run_a64 "$cpu" bench "$model" --runs 20 --warmup 2 --json)" \
    "$(run_a64 "$cpu" eval "$model" --data "fashion-mnist:test:$n" --json)"
done
check "armv7 (qemu-arm)" scalar "$(run_a32 info "$model")" "$(run_a32 bench "$model" --runs 20 --warmup 2 --json)" \
  "$(run_a32 eval "$model" --data "fashion-mnist:test:$n" --json)"

echo "-- short soaks (the 1,000,000-run soak is a documented command, see docs/DEPLOY.md)"
"$native" soak "$model" --data fashion-mnist:test:2000 --count 20000 --warmup 2000 --rss-every 1000 2>/dev/null
# Under qemu-user /proc/self/statm is the emulator's, whose translation cache may grow a little:
# a slack of 1 MiB there; natively the slack is 0.
run_a64 max soak "$model" --data fashion-mnist:test:500 --count 2000 --warmup 500 --rss-every 250 --rss-slack 1024 2>/dev/null
