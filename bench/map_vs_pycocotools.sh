#!/usr/bin/env bash
# temper's COCO evaluator (converter/src/detect/map.rs) against pycocotools' COCOeval on seeded
# random ground truth and detections (crowds, ties, every area range, >100 detections per image):
# every one of the 12 stats and each per-class AP / AP50 must agree to 1e-4. Exit 1 otherwise.
#   bench/map_vs_pycocotools.sh [SEEDS]        (default 12 cases)
#   bench/map_vs_pycocotools.sh --venv-only    only make sure the venv exists (for the Rust test)
# Env: TEMPER_COCO_VENV  venv with pycocotools + numpy (default /tmp/temper-coco-venv; created
#                        from PyPI when missing, about 30 s)
#      TEMPER_COCO_CASES where the cases are written (default /tmp/temper-coco-cases); the Rust
#                        test converter/tests/map_pycocotools.rs re-checks them in-process.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${TEMPER_COCO_VENV:-/tmp/temper-coco-venv}"
CASES="${TEMPER_COCO_CASES:-/tmp/temper-coco-cases}"
SEEDS="${1:-12}"
if ! "$VENV/bin/python" -c "import pycocotools, numpy" 2>/dev/null; then
  echo "== creating venv $VENV (pycocotools, numpy)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q pycocotools numpy
fi
"$VENV/bin/python" -c "import importlib.metadata as m; print('pycocotools', m.version('pycocotools'), '| numpy', m.version('numpy'))"
[ "$SEEDS" = "--venv-only" ] && exit 0
cargo build -q --release -p temper-converter --example coco_eval
"$VENV/bin/python" bench/map_vs_pycocotools.py --out "$CASES" --seeds "$SEEDS" --rust-bin target/release/examples/coco_eval
