#!/usr/bin/env python3
"""PP-OCR text detector: ONNX Runtime FP32 vs ONNX Runtime `quantize_static` and vs temper INT8.

usage: ocr_det.py MODEL.onnx CALIB.npy EVAL.npy [TEMPER_MAPS.npy ...] [--per-tensor] [--pre-process]

Runs ONNX Runtime FP32 on the evaluation pages, quantizes the model with ONNX Runtime's
`quantize_static` on the calibration pages (QDQ, int8 activations and weights, per-channel
weights unless --per-tensor, MinMax calibration; --pre-process runs ORT's quant_pre_process first, which on PP-OCRv4 det
yields a model ORT 1.32 refuses to load) and prints for it, and for each given temper
map file (`temper-run run MODEL.tmf --input EVAL.npy --output MAPS.npy`), the relative L2
distance of the probability map from FP32 and the IoU of the maps binarized at 0.3.
Needs numpy, onnx, onnxruntime (bench/setup_venv.sh).
"""
import os
import sys
import tempfile

import logging

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process


def run(path, x):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))]).reshape(len(x), -1)


def score(label, got, ref):
    rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    a, b = got > 0.3, ref > 0.3
    iou = (a & b).sum() / max(1, (a | b).sum())
    per = [np.linalg.norm(g - r) / np.linalg.norm(r) for g, r in zip(got, ref)]
    print(f"{label:44} relative L2 {rel:.4f} (pages {min(per):.3f}..{max(per):.3f})  IoU@0.3 {iou:.4f}")


class Reader(CalibrationDataReader):
    def __init__(self, name, x):
        self.it = iter([{name: x[i:i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self.it, None)


def main():
    ort.set_default_logger_severity(3)
    logging.getLogger().setLevel(logging.ERROR)
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    model, calib, evals, maps = args[0], np.load(args[1]), np.load(args[2]), args[3:]
    ref = run(model, evals)
    print(f"ONNX Runtime {ort.__version__} FP32 reference: {len(evals)} pages {list(evals.shape[1:])}, "
          f"{(ref > 0.3).mean() * 100:.1f} % of pixels above 0.3")
    with tempfile.TemporaryDirectory() as d:
        pre, q = os.path.join(d, "pre.onnx"), os.path.join(d, "q.onnx")
        if "--pre-process" in sys.argv:
            quant_pre_process(model, pre, skip_symbolic_shape=True)
        else:
            pre = model
        name = ort.InferenceSession(pre, providers=["CPUExecutionProvider"]).get_inputs()[0].name
        per_channel = "--per-tensor" not in sys.argv
        quantize_static(pre, q, Reader(name, calib), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, per_channel=per_channel)
        score(f"ORT quantize_static (QDQ s8/s8, per-channel {per_channel})", run(q, evals), ref)
    for m in maps:
        score(f"temper INT8 {os.path.basename(m)}", np.load(m).reshape(len(evals), -1), ref)


if __name__ == "__main__":
    main()
