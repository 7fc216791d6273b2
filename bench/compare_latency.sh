#!/usr/bin/env bash
# Side-by-side single-thread batch-1 latency: ONNX Runtime FP32 / INT8 (QDQ U8S8, QDQ S8S8,
# per-channel, MinMax) vs temper INT8 (`temper-run bench MODEL.tmf --json`), all pinned to one core.
#   bench/compare_latency.sh
# Models: student_kd, teacher (/work/shared/models; ORT INT8 = ort_ptq.py's *_minmax files,
# calibrated on the same 2000 train images as temper) and the anchors' synthetic fmnist_cnn,
# mobilenet_v2_like_96, mobilenet_v2_like_224 (synth_models.py). Missing prerequisites are
# produced first (venv, release binaries, ORT models, .tmf files); existing ones are reused.
# Env: TEMPER_BENCH_VENV   (default /tmp/temper-bench-venv)
#      TEMPER_BENCH_WORK   (default /tmp/temper-bench-work)  models, logs
#      TEMPER_BENCH_CORE   (default 0)                       core for taskset
#      TEMPER_BENCH_PASSES (default 3)                       alternating passes; best median kept
# Results: bench/results/latency.{md,json}, latency.pass*.json/.log, latency_errors.json, machine.json
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$HERE")"
VENV="${TEMPER_BENCH_VENV:-/tmp/temper-bench-venv}"
WORK="${TEMPER_BENCH_WORK:-/tmp/temper-bench-work}"
CORE="${TEMPER_BENCH_CORE:-0}"
PASSES="${TEMPER_BENCH_PASSES:-3}"
RES="$HERE/results"
PY="$VENV/bin/python"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export TEMPER_BENCH_WORK="$WORK" TEMPER_BENCH_VENV="$VENV"
mkdir -p "$RES" "$WORK"

[ -x "$PY" ] || "$HERE/setup_venv.sh"
if [ ! -x "$REPO/target/release/temper" ] || [ ! -x "$REPO/target/release/temper-run" ]; then
  echo "== building release binaries (waits on cargo's lock if another build runs)"
  (cd "$REPO" && cargo build --release -p temper-converter -p temper-run)
fi
if [ ! -f "$WORK/student_kd.u8s8_minmax.onnx" ] || [ ! -f "$WORK/teacher.s8s8_minmax.onnx" ]; then
  echo "== ORT INT8 Fashion-MNIST models (MinMax only; run ort_ptq.py for the accuracy table)"
  "$PY" "$HERE/ort_ptq.py" --methods minmax --work "$WORK" \
    --json "$WORK/ort_ptq_minmax.json" --md "$WORK/ort_ptq_minmax.md" 2>&1 | grep -v '^WARNING'
fi
if [ ! -f "$WORK/synth/macs.json" ]; then
  echo "== synthetic anchor models"
  "$PY" "$HERE/synth_models.py" "$WORK/synth" 2>&1 | grep -v '^WARNING'
fi
if ! ls "$WORK"/temper/*.quantize.rc "$WORK"/synth/*.quantize.rc >/dev/null 2>&1; then
  echo "== temper quantize"
  "$HERE/temper_quantize.sh"
fi

echo "== machine"
"$PY" - "$REPO" "$CORE" "$RES/machine.json" <<'PY'
import glob, importlib.metadata as md, json, os, platform, subprocess, sys, time
repo, core, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sh = lambda *c: subprocess.run(c, capture_output=True, text=True, cwd=repo).stdout.strip()
cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
flags = next(l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags"))
def stale(binary, dirs):
    bt = os.path.getmtime(binary)
    newer = sorted(p for d in dirs for p in glob.glob(f"{repo}/{d}/**/*.rs", recursive=True) if os.path.getmtime(p) > bt)
    return {"built": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(bt)),
            "sources_newer_than_binary": [os.path.relpath(p, repo) for p in newer]}
ps = sh("ps", "-eo", "pid,ni,pcpu,comm", "--sort=-pcpu").splitlines()[1:6]
m = {"cpu": cpu, "nproc": os.cpu_count(), "core": core,
     "isa": " ".join(f for f in flags if f in ("avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni")),
     "versions": ", ".join(f"{p} {md.version(p)}" for p in ["onnxruntime", "onnx", "numpy"])
                 + f", python {platform.python_version()}, {sh('rustc', '-V')}, temper git {sh('git', 'rev-parse', '--short', 'HEAD')}"
                 + (" (+uncommitted changes)" if sh("git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no") else ""),
     "kernel": platform.release(),
     "binaries": {"temper": stale(f"{repo}/target/release/temper", ["converter", "runtime/src", "kernels/src"]),
                  "temper-run": stale(f"{repo}/target/release/temper-run", ["targets/run/src", "runtime/src", "kernels/src"])},
     "other_load": "; ".join(" ".join(l.split()) for l in ps)}
json.dump(m, open(out, "w"), indent=1)
print(json.dumps(m, indent=1))
PY

# models.json for latency.py
"$PY" - "$WORK" "$RES/models.json" <<'PY'
import json, sys
w, out = sys.argv[1], sys.argv[2]
ms = [{"name": n, "fp32": f"{w}/{n}.fp32_b1.onnx", "u8s8": f"{w}/{n}.u8s8_minmax.onnx", "s8s8": f"{w}/{n}.s8s8_minmax.onnx",
       "tmf": f"{w}/temper/{n}.tmf", "quantize_log": f"{w}/temper/{n}.quantize.log", "input": "fmnist", "val_x": None}
      for n in ["student_kd", "teacher"]]
ms += [{"name": n, "fp32": f"{w}/synth/{n}.fp32.onnx", "u8s8": f"{w}/synth/{n}.u8s8.onnx", "s8s8": f"{w}/synth/{n}.s8s8.onnx",
        "tmf": f"{w}/synth/{n}.tmf", "quantize_log": f"{w}/synth/{n}.quantize.log", "input": "synthetic",
        "val_x": f"{w}/synth/{n}.val_x.npy"} for n in ["fmnist_cnn", "mobilenet_v2_like_96", "mobilenet_v2_like_224"]]
json.dump(ms, open(out, "w"), indent=1)
PY

echo "== output error of the INT8 models vs ORT FP32 (not timed)"
taskset -c "$CORE" "$PY" "$HERE/latency.py" errors "$RES/models.json" "$RES/latency_errors.json"

rm -f "$RES"/latency.pass*.json "$RES"/latency.pass*.log
for p in $(seq 1 "$PASSES"); do
  echo "== pass $p/$PASSES (core $CORE, 1 thread)"
  PASS_NO=$p taskset -c "$CORE" "$PY" "$HERE/latency.py" pass "$RES/models.json" "$RES/latency.pass$p.json" \
    2>&1 | tee "$RES/latency.pass$p.log"
done
echo "== table"
"$PY" "$HERE/latency.py" table "$RES" "$RES/models.json"
