#!/usr/bin/env bash
# Produce the temper .tmf models compared in bench/ (no timing here).
#   Fashion-MNIST models (student_kd, teacher): the converter's default flow, exactly
#     temper quantize SRC.onnx -o OUT.tmf --calib fashion-mnist:train --val fashion-mnist:val
#     (2000 first train images for calibration, observer chosen on the 5000 val images).
#   Anchors' synthetic models (built by synth_models.py into $WORK/synth): calibrated on the same
#     32 seeded random inputs ORT used (--calib npy:...), validated on 200 other inputs labeled
#     with the FP32 argmax (so "accuracy" = top-1 agreement with FP32), MinMax observer (as ORT),
#     inputs already in [0,1] (--mean 0 --std 1), gate off (--max-drop 100: latency is what counts).
# Each model: OUT.quantize.cmd (the command), OUT.quantize.log (stdout+stderr), OUT.quantize.rc.
# A failing conversion is recorded, not fatal; an old .tmf is removed first so it is never reused.
# Env: TEMPER_BENCH_WORK (default /tmp/temper-bench-work), TEMPER_BENCH_MODELS (default /work/shared/models)
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$HERE")"
WORK="${TEMPER_BENCH_WORK:-/tmp/temper-bench-work}"
SRC="${TEMPER_BENCH_MODELS:-/work/shared/models}"
T="$REPO/target/release/temper"
mkdir -p "$WORK/temper"

quantize() {  # OUT_TMF ARGS...
  local out="$1"; shift
  rm -f "$out"
  echo "$*" > "${out%.tmf}.quantize.cmd"
  local t0=$SECONDS
  "$@" > "${out%.tmf}.quantize.log" 2>&1
  local rc=$?
  echo $rc > "${out%.tmf}.quantize.rc"
  if [ $rc = 0 ]; then echo "   ok  $(basename "$out") ($(stat -c %s "$out") B, $((SECONDS - t0)) s)"
  else echo "   FAILED (rc $rc) $(basename "$out"): $(tr '\r' '\n' < "${out%.tmf}.quantize.log" | grep -v '^\s*$' | tail -2)"; fi
}

for m in student_kd teacher; do
  quantize "$WORK/temper/$m.tmf" "$T" quantize "$SRC/$m.onnx" -o "$WORK/temper/$m.tmf" \
    --calib fashion-mnist:train --val fashion-mnist:val
done
for m in fmnist_cnn mobilenet_v2_like_96 mobilenet_v2_like_224; do
  d="$WORK/synth"
  case $m in fmnist_cnn) norm=(--mean 0 --std 1);; *) norm=(--mean 0,0,0 --std 1,1,1);; esac
  if [ ! -f "$d/$m.fp32.onnx" ]; then echo "   skip $m: $d/$m.fp32.onnx missing (run synth_models.py)"; continue; fi
  quantize "$d/$m.tmf" "$T" quantize "$d/$m.fp32.onnx" -o "$d/$m.tmf" \
    --calib "npy:$d/$m.calib_x.npy,$d/$m.calib_y.npy" --val "npy:$d/$m.val_x.npy,$d/$m.val_y.npy" \
    "${norm[@]}" --observer minmax --max-drop 100 --sensitivity-samples 0
done
