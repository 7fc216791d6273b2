#!/usr/bin/env bash
# The main job on a fresh machine: set-up, build, then `temper pipeline` with its defaults on
# Fashion-MNIST — distill the untrained student (student_init.onnx) from teacher.onnx, quantize it
# (PTQ), check the accuracy gate (QAT, then the listed fallbacks, only when it fails), emit the
# .tmf with its report — then inspect and evaluate the emitted file with the device tool and
# print the final table.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p temper-converter -p temper-run
MODELS="${TEMPER_MODELS:-../shared/models}"
OUT="${TEMPER_OUT:-out}"
mkdir -p "$OUT"
for m in teacher.onnx student_init.onnx; do
  if [ ! -f "$MODELS/$m" ]; then
    echo "no FP32 model at $MODELS/$m (set TEMPER_MODELS)"; exit 2
  fi
done
start=$(date +%s)
# Exit status 1 (no attempt met the gate) stops here; the report is in $OUT/student.report.md.
target/release/temper pipeline --teacher "$MODELS/teacher.onnx" --student "$MODELS/student_init.onnx" \
  -o "$OUT/student.tmf" > "$OUT/pipeline.txt"
end=$(date +%s)
target/release/temper-run info "$OUT/student.tmf" | head -40 || true
target/release/temper-run eval "$OUT/student.tmf" --data fashion-mnist:test
ls -l "$MODELS/student_init.onnx" "$OUT/student.fp32.onnx" "$OUT/student.tmf"
cat "$OUT/pipeline.txt"
echo "temper pipeline wall time: $((end - start)) s"
