#!/usr/bin/env bash
# Training throughput, temper vs PyTorch, side by side on the same cores: images/s of
# forward + backward + Adam update for the Fashion-MNIST student and teacher architectures at
# batch 64 and 128, both pinned to the same CPUs (taskset) with the same thread count, runs
# alternating (torch, temper, torch, temper, …), medians reported.
#
#   bench/train_throughput.sh            # writes bench/results/train_throughput.md
# env: REPS=5 STEPS=40 (student; the teacher uses STEPS/4) CPUS=0,1 THREADS=2
#      TORCH_VENV=/tmp/temper-torch-venv TEMPER=target/release/temper MODELS=../shared/models
#
# The venv is created if missing: torch from the PyTorch CPU index, else plain PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-5}; STEPS=${STEPS:-40}; CPUS=${CPUS:-0,1}; THREADS=${THREADS:-2}
VENV=${TORCH_VENV:-/tmp/temper-torch-venv}
TEMPER=${TEMPER:-target/release/temper}
MODELS=${MODELS:-../shared/models}
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch --index-url https://download.pytorch.org/whl/cpu \
    || "$VENV/bin/pip" install -q torch \
    || { echo "cannot install torch (neither the PyTorch CPU index nor PyPI worked)" >&2; exit 1; }
fi
[ -x "$TEMPER" ] || cargo build --release -p temper-converter
raw=$(mktemp)
for rep in $(seq "$REPS"); do
  for model in student teacher; do
    steps=$STEPS; [ "$model" = teacher ] && steps=$((STEPS / 4))
    onnx="$MODELS/$model.onnx"; [ "$model" = student ] && onnx="$MODELS/student_init.onnx"
    for batch in 64 128; do
      t=$(taskset -c "$CPUS" "$VENV/bin/python" bench/train_throughput.py "$model" "$batch" "$steps" "$THREADS" | grep -o '[0-9]* images/s' | grep -o '[0-9]*')
      r=$(taskset -c "$CPUS" "$TEMPER" train --model "$onnx" --bench "$steps" --batch "$batch" --threads "$THREADS" --optimizer adam --out /dev/null 2>/dev/null \
          | grep -o '[0-9]* images/s' | grep -o '[0-9]*')
      printf '%s\t%s\t%s\t%s\t%s\n' "$model" "$batch" "$t" "$r" "$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$raw"
    done
  done
done
torch_v=$("$VENV/bin/python" -c "import torch; print(torch.__version__)")
{
  echo "# Training throughput: temper vs PyTorch (Fashion-MNIST architectures)"
  echo
  echo "\`bench/train_throughput.sh\` ($(date -u +%Y-%m-%d), REPS=$REPS, STEPS=$STEPS): images/s of forward + backward +"
  echo "Adam update on one fixed batch, both pinned with \`taskset -c $CPUS\` and $THREADS threads"
  echo "(PyTorch $torch_v, \`torch.set_num_threads($THREADS)\`; temper \`temper train --bench\`, GEMM path"
  echo "$("$TEMPER" train --model "$MODELS/student_init.onnx" --bench 1 --out /dev/null 2>&1 | grep -o 'GEMM path [^;]*' | sed 's/GEMM path //')). Runs alternate torch/temper; medians of $REPS."
  echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores."
  echo
  echo "| model | batch | PyTorch img/s (median) | temper img/s (median) | temper / PyTorch | runs (torch/temper) | load avg during runs |"
  echo "|---|---:|---:|---:|---:|---|---|"
  python3 - "$raw" <<'PY'
import sys, statistics as st
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
for model in ("student", "teacher"):
    for batch in ("64", "128"):
        rs = [r for r in rows if r[0] == model and r[1] == batch and r[2] and r[3]]
        if not rs:
            continue
        t = [int(r[2]) for r in rs]; m = [int(r[3]) for r in rs]
        mt, mm = st.median(t), st.median(m)
        loads = sorted(float(r[4].split()[0]) for r in rs)
        print(f"| {model} | {batch} | {mt:.0f} | {mm:.0f} | {mm / mt:.2f}× | {'/'.join(map(str, t))} — {'/'.join(map(str, m))} | {loads[0]:.1f}–{loads[-1]:.1f} |")
PY
  echo
  echo "Reference (anchors, PaddlePaddle, 1 core): teacher ≈ 234 img/s, student ≈ 1450 img/s (full epochs incl. data)."
} > bench/results/train_throughput.md
cat bench/results/train_throughput.md
rm -f "$raw"
