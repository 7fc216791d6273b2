#!/usr/bin/env bash
# Executed aarch64 instructions per inference under qemu-user, per kernel path (speed means
# nothing under emulation; instruction counts compare the paths). For each model and CPU model:
# `temper-run bench MODEL --runs R --warmup 0` with R = 1 and 3 under
# `qemu-aarch64 -d in_asm,exec,nochain`, counted by kernels/examples/qemu_insn_count.py; per
# inference = the difference / 2 (loading, validation and set-up cancel out).
#   bench/aarch64_insn.sh [MODEL.tmf ...]   (default: the student_kd seed and, when present,
#                                             $TEMPER_BENCH_WORK/synth/mobilenet_v2_like_96.tmf)
# Needs: cargo build --release -p temper-run --target aarch64-unknown-linux-gnu
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$REPO/target/aarch64-unknown-linux-gnu/release/temper-run"
COUNT="$REPO/kernels/examples/qemu_insn_count.py"
WORK="${TEMPER_BENCH_WORK:-/tmp/temper-bench-work}"
[ -x "$BIN" ] || { echo "build it first: cargo build --release -p temper-run --target aarch64-unknown-linux-gnu" >&2; exit 2; }
models=("$@")
if [ ${#models[@]} = 0 ]; then
  models=("$REPO/fuzz/seeds/model_from_bytes/student_kd.tmf")
  [ -f "$WORK/synth/mobilenet_v2_like_96.tmf" ] && models+=("$WORK/synth/mobilenet_v2_like_96.tmf")
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf '| model | NEON (cortex-a53) | dotprod (cortex-a76) | i8mm (max) |\n|---|---:|---:|---:|\n'
for m in "${models[@]}"; do
  row="| $(basename "$m" .tmf)"
  for cpu in cortex-a53 cortex-a76 max; do
    declare -A c=()
    for r in 1 3; do
      QEMU_CPU=$cpu qemu-aarch64 -L /usr/aarch64-linux-gnu -d in_asm,exec,nochain -D "$tmp/q.log" \
        "$BIN" bench "$m" --runs $r --warmup 0 > "$tmp/out.txt"
      c[$r]=$(python3 "$COUNT" "$tmp/q.log" | cut -d' ' -f1)
      rm -f "$tmp/q.log"
    done
    level=$(sed -n 's/^kernels *\([a-z0-9]*\).*/\1/p' "$tmp/out.txt")
    per=$(( (c[3] - c[1]) / 2 ))
    row="$row | $per ($level)"
  done
  echo "$row |"
done
