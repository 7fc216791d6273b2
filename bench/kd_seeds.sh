#!/usr/bin/env bash
# Knowledge-distillation gain over 3 seeds: trains the Fashion-MNIST student from the reference
# initialization (student_init.onnx) from scratch and distilled from teacher.onnx with the SAME
# recipe (epochs, batch, optimizer, schedule, augmentation, seed); only the loss differs.
#
#   bench/kd_seeds.sh NAME ARM [temper options...]
#     NAME  label of the configuration (rows of bench/results/kd.tsv)
#     ARM   scratch | kd
#   env:  SEEDS="1 2 3"  JOBS=2 (runs in parallel)  THREADS=1 (threads per run)
#         TEMPER=target/release/temper  MODELS=../shared/models  OUT=/tmp/temper-kd-runs
#
# Each run's test accuracy (exported FP32 model, 10,000 test images) is appended to
# bench/results/kd.tsv; bench/kd_table.py turns that file into the table of bench/results/kd.md.
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1; arm=$2; shift 2
SEEDS=${SEEDS:-"1 2 3"}; JOBS=${JOBS:-2}; THREADS=${THREADS:-1}
TEMPER=${TEMPER:-target/release/temper}
MODELS=${MODELS:-../shared/models}
OUT=${OUT:-/tmp/temper-kd-runs}
mkdir -p "$OUT" bench/results
tsv=bench/results/kd.tsv
[ -f "$tsv" ] || printf 'name\tarm\tseed\ttest_acc\tval_acc\tseconds\targs\n' > "$tsv"
case $arm in
  scratch) cmd=(train --model "$MODELS/student_init.onnx") ;;
  kd) cmd=(distill --teacher "$MODELS/teacher.onnx" --student "$MODELS/student_init.onnx"
           --teacher-cache "$OUT/teacher_cache.$(printf '%s' "$*" | grep -q 'flip' && echo flip || echo plain).npz") ;;
  *) echo "ARM must be scratch or kd" >&2; exit 2 ;;
esac
run() {
  local seed=$1 log="$OUT/$name.$arm.s$1.log" t0 t1
  shift
  t0=$(date +%s)
  "$TEMPER" "${cmd[@]}" --out "$OUT/$name.$arm.s$seed.onnx" --seed "$seed" --threads "$THREADS" \
    --test fashion-mnist:test --no-progress --no-checkpoint "$@" > "$log" 2>&1 || true
  t1=$(date +%s)
  local acc val
  acc=$(sed -n 's/^test accuracy .*: \([0-9.]*\)%$/\1/p' "$log")
  val=$(grep -o 'val acc *[0-9.]*' "$log" | tail -1 | grep -o '[0-9.]*$' || true)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$arm" "$seed" "${acc:-FAIL}" "${val:-}" "$((t1 - t0))" "$*" >> "$tsv"
  echo "$name $arm seed $seed: test ${acc:-FAIL} (val ${val:-?}) in $((t1 - t0)) s"
}
# Build the teacher cache once before parallel runs (they would all compute it).
if [ "$arm" = kd ] && [ "$JOBS" -gt 1 ]; then
  "$TEMPER" "${cmd[@]}" --out "$OUT/cache-warm.onnx" --epochs 1 --max-steps 1 --val none --no-progress \
    --no-checkpoint --threads 2 "$@" > "$OUT/cache-warm.log" 2>&1 || { cat "$OUT/cache-warm.log"; exit 1; }
fi
pids=()
for s in $SEEDS; do
  run "$s" "$@" &
  pids+=($!)
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 2; done
done
wait
