#!/usr/bin/env bash
# The main job on a fresh machine: set-up, build, then quantize the Fashion-MNIST student with
# the default settings, evaluate the emitted file through the runtime, and print the report.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p temper-converter -p temper-run
MODELS="${TEMPER_MODELS:-../shared/models}"
OUT="${TEMPER_OUT:-out}"
mkdir -p "$OUT"
if [ ! -f "$MODELS/student_kd.onnx" ]; then
  echo "no FP32 model at $MODELS/student_kd.onnx (set TEMPER_MODELS)"; exit 2
fi
target/release/temper quantize "$MODELS/student_kd.onnx" -o "$OUT/student_kd.tmf" \
  --calib fashion-mnist:train --val fashion-mnist:val --test fashion-mnist:test \
  --labels "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot"
target/release/temper-run info "$OUT/student_kd.tmf" | head -40
target/release/temper-run eval "$OUT/student_kd.tmf" --data fashion-mnist:test
ls -l "$MODELS/student_kd.onnx" "$OUT/student_kd.tmf"
