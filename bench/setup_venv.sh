#!/usr/bin/env bash
# Create the Python venv used by bench/ (numpy, onnx, onnxruntime at the versions pinned in
# the anchors' requirements.txt). Idempotent: an existing venv with the right versions is kept.
#   bench/setup_venv.sh
# Env: TEMPER_BENCH_VENV  venv directory (default /tmp/temper-bench-venv)
#      TEMPER_BENCH_REQS  requirements file with the pins (default /work/shared/anchors/perf/requirements.txt)
set -euo pipefail
VENV="${TEMPER_BENCH_VENV:-/tmp/temper-bench-venv}"
REQS="${TEMPER_BENCH_REQS:-/work/shared/anchors/perf/requirements.txt}"
pin() { grep -i "^$1==" "$REQS" || { echo "no pin for $1 in $REQS" >&2; exit 1; }; }
PINS=("$(pin numpy)" "$(pin onnx)" "$(pin onnxruntime)")

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "${PINS[@]}" <<'PY'
import sys, importlib.metadata as md
sys.exit(0 if all(md.version(p.split("==")[0]) == p.split("==")[1] for p in sys.argv[1:]) else 1)
PY
then
  echo "venv $VENV already has ${PINS[*]}"
else
  echo "== creating venv $VENV with ${PINS[*]}"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q "${PINS[@]}"
fi
"$VENV/bin/python" -c "import numpy, onnx, onnxruntime as o; print('numpy', numpy.__version__, '| onnx', onnx.__version__, '| onnxruntime', o.__version__)"
