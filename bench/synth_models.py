#!/usr/bin/env python3
"""Prepare the anchors' seeded synthetic models for the temper-vs-ORT latency comparison.

For each model (default: fmnist_cnn, mobilenet_v2_like_96, mobilenet_v2_like_224) this writes
into OUTDIR:
  <name>.fp32.onnx        built by the anchors' build_models.py (seeded random weights, opset 17)
  <name>.u8s8.onnx        ORT quantize_static, QDQ, per-channel int8 weights, uint8 activations, MinMax
  <name>.s8s8.onnx        same with int8 activations
                          (both exactly as the anchors' quantize_models.py: quant_pre_process first,
                          32 calibration inputs from inputs.make_input(name, shape, seed=1000+i))
  <name>.calib_x.npy / .calib_y.npy   the same 32 calibration inputs, float32 NCHW, for
                          `temper quantize --calib npy:X,Y` (labels = ORT FP32 argmax)
  <name>.val_x.npy / .val_y.npy       N_VAL other seeded inputs (seed 5000+i) with labels = ORT FP32
                          argmax, for `--val`: temper's "accuracy" on them is top-1 agreement with FP32
  macs.json               MACs / input shape of these models (anchors' format)
  status.json             per model and variant: "ok" or the exception text

The inputs are random images in [0, 1] (no normalization): temper gets --mean 0 --std 1.

Usage: synth_models.py OUTDIR [name ...]
"""
import json
import os
import sys
import tempfile
import traceback

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

ANCHORS = os.environ.get("TEMPER_BENCH_ANCHORS", "/work/shared/anchors/perf")
sys.path.insert(0, ANCHORS)
import build_models  # noqa: E402  (anchors: seeded model builders)
from inputs import make_input  # noqa: E402
from quantize_models import N_CALIB, Reader  # noqa: E402

ort.set_default_logger_severity(3)
DEFAULT = ["fmnist_cnn", "mobilenet_v2_like_96", "mobilenet_v2_like_224"]
N_VAL = 200


def fp32_argmax(path, xs):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return np.array([int(np.argmax(s.run(None, {"input": x})[0])) for x in xs], np.int64)


def main():
    outdir = sys.argv[1]
    names = sys.argv[2:] or DEFAULT
    os.makedirs(outdir, exist_ok=True)
    models = build_models.all_models()
    info, status = {}, {}
    for name in names:
        model = models[name]
        fp32 = os.path.join(outdir, f"{name}.fp32.onnx")
        onnx.save(model, fp32)
        shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        info[name] = {"macs": build_models.count_macs(model), "input_shape": shape,
                      "params": int(sum(np.prod(t.dims) for t in model.graph.initializer))}
        st = status[name] = {}

        # ORT INT8, as the anchors' quantize_models.py (u8s8 / s8s8 QDQ variants only)
        tmpd = tempfile.mkdtemp(prefix="synth-pre-")
        pre = os.path.join(tmpd, f"{name}.pre.onnx")
        quant_pre_process(fp32, pre, skip_symbolic_shape=True)
        for tag, act in [("u8s8", QuantType.QUInt8), ("s8s8", QuantType.QInt8)]:
            out = os.path.join(outdir, f"{name}.{tag}.onnx")
            try:
                quantize_static(pre, out, Reader(shape, name), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=act, weight_type=QuantType.QInt8,
                                calibrate_method=CalibrationMethod.MinMax)
                st[tag] = "ok"
            except Exception as e:
                traceback.print_exc()
                st[tag] = f"FAILED: {type(e).__name__}: {e}"
        os.remove(pre)
        os.rmdir(tmpd)

        # the same calibration inputs for temper, and a validation set labeled by FP32
        calib = [make_input(name, shape, seed=1000 + i) for i in range(N_CALIB)]
        val = [make_input(name, shape, seed=5000 + i) for i in range(N_VAL)]
        for tag, xs in [("calib", calib), ("val", val)]:
            np.save(os.path.join(outdir, f"{name}.{tag}_x.npy"), np.concatenate(xs, 0).astype(np.float32))
            np.save(os.path.join(outdir, f"{name}.{tag}_y.npy"), fp32_argmax(fp32, xs))
        print(f"{name:24s} input {shape} MACs {info[name]['macs'] / 1e6:.2f}M  ORT: {st}", flush=True)
    json.dump(info, open(os.path.join(outdir, "macs.json"), "w"), indent=1)
    json.dump(status, open(os.path.join(outdir, "status.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
