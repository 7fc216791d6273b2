#!/usr/bin/env bash
# The real-model corpus (cached; idempotent): the PP-OCR models from the rapidocr-onnxruntime
# wheel on PyPI, checked against its sha256, and rendered text pages and lines for them.
#   scripts/corpus.sh            # prints the corpus directory on its last line
# Env: TEMPER_CORPUS  corpus directory (default ~/.cache/temper/corpus)
# Layout: $TEMPER_CORPUS/models/{ch_PP-OCRv4_det_infer,ch_PP-OCRv4_rec_infer,ch_ppocr_mobile_v2.0_cls_infer}.onnx
#         $TEMPER_CORPUS/pages/{det_calib,det_eval,cls_calib,cls_eval,cls_eval_flip}.npy (scripts/corpus_pages.py)
# Needs python3 with pip and venv, and the DejaVu (and for Chinese text, WenQuanYi Micro Hei)
# fonts that scripts/setup.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS="${TEMPER_CORPUS:-$HOME/.cache/temper/corpus}"
WHEEL=rapidocr_onnxruntime-1.4.4-py3-none-any.whl
WHEEL_SHA256=971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf
PILLOW=pillow==13.0.0
MODELS=(ch_PP-OCRv4_det_infer.onnx ch_PP-OCRv4_rec_infer.onnx ch_ppocr_mobile_v2.0_cls_infer.onnx)
mkdir -p "$CORPUS/wheels" "$CORPUS/models"

# 1. the wheel, verified
if ! echo "$WHEEL_SHA256  $CORPUS/wheels/$WHEEL" | sha256sum -c --status 2>/dev/null; then
  echo "== downloading $WHEEL from PyPI"
  rm -f "$CORPUS/wheels/$WHEEL"
  python3 -m pip download -q --no-deps --only-binary=:all: --dest "$CORPUS/wheels" rapidocr-onnxruntime==1.4.4
  echo "$WHEEL_SHA256  $CORPUS/wheels/$WHEEL" | sha256sum -c --status \
    || { echo "sha256 of $CORPUS/wheels/$WHEEL is $(sha256sum "$CORPUS/wheels/$WHEEL" | cut -d' ' -f1), expected $WHEEL_SHA256" >&2; exit 1; }
fi

# 2. the models (re-extracted when the wheel is newer than a model)
for m in "${MODELS[@]}"; do
  if [ ! -s "$CORPUS/models/$m" ] || [ "$CORPUS/wheels/$WHEEL" -nt "$CORPUS/models/$m" ]; then
    python3 - "$CORPUS/wheels/$WHEEL" "$CORPUS/models" "$m" <<'PY'
import os, sys, zipfile
wheel, out, name = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    data = z.read("rapidocr_onnxruntime/models/" + name)
tmp = os.path.join(out, name + ".tmp")
with open(tmp, "wb") as f:
    f.write(data)
os.replace(tmp, os.path.join(out, name))
PY
    echo "extracted $m"
  fi
done

# 3. rendered pages and lines (redone when the renderer changes)
STAMP="$(sha256sum scripts/corpus_pages.py | cut -d' ' -f1) $PILLOW"
if [ "$(cat "$CORPUS/pages/.stamp" 2>/dev/null)" != "$STAMP" ]; then
  VENV="$CORPUS/venv"
  if ! "$VENV/bin/python" -c "import PIL, sys; sys.exit(PIL.__version__ != '${PILLOW#pillow==}')" 2>/dev/null; then
    echo "== venv $VENV with $PILLOW"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "$PILLOW"
  fi
  rm -rf "$CORPUS/pages" "$CORPUS/pages.tmp"
  "$VENV/bin/python" scripts/corpus_pages.py "$CORPUS/pages.tmp"
  echo "$STAMP" > "$CORPUS/pages.tmp/.stamp"
  mv "$CORPUS/pages.tmp" "$CORPUS/pages"
fi
echo "corpus ready: $CORPUS"
