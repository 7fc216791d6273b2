#!/usr/bin/env bash
# Everything in bench/, once: venv, synthetic anchor models, temper .tmf files, the ORT PTQ
# accuracy table (with temper's accuracy beside it), then the latency comparison.
#   bench/run_all.sh        (~10-15 min on the 2-core box)
# Env: see setup_venv.sh and compare_latency.sh. Log: bench/results/run_all.log
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
export TEMPER_BENCH_VENV="${TEMPER_BENCH_VENV:-/tmp/temper-bench-venv}"
export TEMPER_BENCH_WORK="${TEMPER_BENCH_WORK:-/tmp/temper-bench-work}"
PY="$TEMPER_BENCH_VENV/bin/python"
mkdir -p "$HERE/results"
{
  t0=$SECONDS
  echo "== [$(date -u +%T)] venv";               "$HERE/setup_venv.sh"
  echo "== [$(date -u +%T)] synthetic models";   "$PY" "$HERE/synth_models.py" "$TEMPER_BENCH_WORK/synth" 2>&1 | grep -v '^WARNING'
  echo "== [$(date -u +%T)] temper quantize";    "$HERE/temper_quantize.sh"
  echo "== [$(date -u +%T)] ORT PTQ accuracy";   "$PY" "$HERE/ort_ptq.py" --work "$TEMPER_BENCH_WORK" \
                                                   --temper-dir "$TEMPER_BENCH_WORK/temper" 2>&1 | grep -v '^WARNING'
  echo "== [$(date -u +%T)] latency";            "$HERE/compare_latency.sh"
  echo "== [$(date -u +%T)] done in $((SECONDS - t0)) s"
} 2>&1 | tee "$HERE/results/run_all.log"
