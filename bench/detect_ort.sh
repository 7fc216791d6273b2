#!/usr/bin/env bash
# The synthetic PicoDet-shaped detector of converter/tests/detect_quantize.rs: temper's FP32 and
# INT8 mAP (from its `quantize --task detect` report) beside ONNX Runtime FP32 and
# `quantize_static` INT8 (QDQ, per-channel, U8S8 and S8S8, MinMax) on the same model, the same
# letterboxed images and the same decode/NMS rules, all ORT results scored by pycocotools.
#   bench/detect_ort.sh
# Env: TEMPER_DETECT_DIR  work dir (default /tmp/temper-detect-bench): model, data, reports
#      TEMPER_BENCH_VENV  numpy + onnx + onnxruntime (bench/setup_venv.sh)
#      TEMPER_COCO_VENV   pycocotools + numpy (bench/map_vs_pycocotools.sh --venv-only)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${TEMPER_DETECT_DIR:-/tmp/temper-detect-bench}"
bench/setup_venv.sh >/dev/null
bench/map_vs_pycocotools.sh --venv-only >/dev/null
TEMPER_DETECT_DIR="$DIR" cargo test -q -p temper-converter --test detect_quantize detector_keeps_its_map -- --nocapture | grep -E "mAP@|observer|gate"
rm -f "$DIR"/ort_*.json
"${TEMPER_BENCH_VENV:-/tmp/temper-bench-venv}/bin/python" bench/detect_ort.py infer "$DIR" 2>/dev/null
"${TEMPER_COCO_VENV:-/tmp/temper-coco-venv}/bin/python" bench/detect_ort.py eval "$DIR"
