#!/usr/bin/env python3
"""ONNX Runtime post-training quantization of the Fashion-MNIST models, side by side with temper.

What it measures
  Top-1 accuracy on the 10,000 Fashion-MNIST test images (t10k) of
    * the FP32 model, run by ONNX Runtime;
    * ONNX Runtime `quantize_static` INT8 models: QDQ format, per-channel int8 weights,
      activations uint8 ("U8S8", ORT's default) and int8 ("S8S8"), each calibrated with
      MinMax, Percentile (ORT default percentile 99.999) and Entropy;
    * optionally temper's `.tmf` for the same model (`--temper-dir`), run by `temper-run eval`;
  plus the top-1 agreement of every INT8 model with the FP32 model, the file sizes and the
  quantization wall time.

How
  * Calibration data = exactly what `temper quantize` uses by default: the first 2000 images of
    Fashion-MNIST train (train-images-idx3-ubyte.gz, read with gzip + numpy), normalized as
    (pixel/255 - 0.2860) / 0.3530, fed one image per call.
  * The Paddle-exported models have a dynamic batch (input `x` [N,1,28,28]). The batch is fixed
    to 1 (the deployed shape, the one the latency bench times), then ORT's `quant_pre_process`
    (shape inference + basic graph optimizations: BN folded into Conv, the Shape/Slice/Concat
    feeding Reshape constant-folded) runs before `quantize_static`, as in the anchors'
    quantize_models.py.
  * Evaluation: ORT CPU EP, 1 intra-op thread, ORT_ENABLE_ALL, batch 1, all 10,000 test images.
    temper: top-1 from `temper-run eval MODEL.tmf --data fashion-mnist:test` (raw u8 pixels through
    the model's pixel-normalization input record), agreement with ORT FP32 from `temper-run run` on
    the normalized float test images.

Outputs: WORK/<model>.fp32_b1.onnx, WORK/<model>.<u8s8|s8s8>_<method>.onnx (the latency bench
uses the *_minmax ones), and --json / --md results.

Usage: ort_ptq.py [--models student_kd,teacher] [--work DIR] [--temper-dir DIR]
                  [--json OUT.json] [--md OUT.md] [--methods minmax,percentile,entropy]
"""
import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

ort.set_default_logger_severity(3)

FMNIST = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860, 0.3530
N_CALIB = 2000
METHODS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
           "entropy": CalibrationMethod.Entropy}
ACTS = {"u8s8": QuantType.QUInt8, "s8s8": QuantType.QInt8}
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def read_idx(path):
    """IDX (gzip'd) -> uint8 array; images [N,28,28], labels [N]."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def normalize(images_u8):
    """uint8 [N,28,28] -> float32 [N,1,28,28], (pixel/255 - mean) / std."""
    x = images_u8.astype(np.float32) / 255.0
    return ((x - MEAN) / STD).astype(np.float32)[:, None, :, :]


def fix_batch_1(src, dst):
    """Copy of `src` with the dynamic batch of every graph input/output set to 1."""
    m = onnx.load(src)
    for vi in list(m.graph.input) + list(m.graph.output):
        d0 = vi.type.tensor_type.shape.dim[0]
        if not d0.HasField("dim_value") or d0.dim_value != 1:
            d0.Clear()
            d0.dim_value = 1
    del m.graph.value_info[:]  # stale dynamic shapes; shape inference recomputes them
    m = onnx.shape_inference.infer_shapes(m)
    onnx.checker.check_model(m)
    onnx.save(m, dst)


class Reader(CalibrationDataReader):
    """Feeds the calibration images one at a time (batch 1)."""

    def __init__(self, input_name, x):
        self.input_name, self.x, self.i = input_name, x, 0

    def get_next(self):
        if self.i >= len(self.x):
            return None
        self.i += 1
        return {self.input_name: self.x[self.i - 1: self.i]}

    def rewind(self):
        self.i = 0


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def predict(path, x):
    """argmax of output 0 for every image, batch 1."""
    s = session(path)
    name = s.get_inputs()[0].name
    return np.array([int(np.argmax(s.run(None, {name: x[i: i + 1]})[0])) for i in range(len(x))])


def temper_eval(tmf, temper_run):
    """Top-1 of a .tmf on fashion-mnist:test through temper-run eval (one thread)."""
    cmd = [temper_run, "eval", tmf, "--data", "fashion-mnist:test", "--threads", "1", "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return {"error": (p.stderr or p.stdout).strip(), "cmd": " ".join(cmd)}
    out = json.loads(p.stdout)
    out["cmd"] = " ".join(cmd)
    return out


def temper_predict(tmf, x, temper_run):
    """argmax per image of a .tmf on float32 NCHW inputs, via `temper-run run` (input quantized
    with the model's input scale)."""
    with tempfile.TemporaryDirectory(prefix="tmfpred-") as d:
        xi, yo = os.path.join(d, "x.npy"), os.path.join(d, "y.npy")
        np.save(xi, x)
        p = subprocess.run([temper_run, "run", tmf, "--input", xi, "--output", yo, "--layout", "nchw"],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError((p.stderr or p.stdout).strip())
        return np.load(yo).reshape(len(x), -1).argmax(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="student_kd,teacher")
    ap.add_argument("--models-dir", default="/work/shared/models")
    ap.add_argument("--work", default=os.environ.get("TEMPER_BENCH_WORK", "/tmp/temper-bench-work"))
    ap.add_argument("--methods", default="minmax,percentile,entropy")
    ap.add_argument("--temper-dir", default=None, help="directory with <model>.tmf (+ .report.json)")
    ap.add_argument("--temper-run", default=os.path.join(REPO, "target/release/temper-run"))
    ap.add_argument("--json", default=os.path.join(HERE, "results/accuracy.json"))
    ap.add_argument("--md", default=os.path.join(HERE, "results/accuracy.md"))
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)

    calib = normalize(read_idx(f"{FMNIST}/train-images-idx3-ubyte.gz")[:N_CALIB])
    test_x = normalize(read_idx(f"{FMNIST}/t10k-images-idx3-ubyte.gz"))
    test_y = read_idx(f"{FMNIST}/t10k-labels-idx1-ubyte.gz").astype(np.int64)
    ref = json.load(open(os.path.join(args.models_dir, "reference.json")))
    res = {"what": "top-1 on Fashion-MNIST t10k (10000 images), batch 1, ORT CPU EP 1 thread",
           "calibration": f"first {N_CALIB} Fashion-MNIST train images, (pixel/255-{MEAN})/{STD}",
           "versions": {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "numpy": np.__version__,
                        "python": platform.python_version()},
           "models": {}}
    print(f"onnxruntime {ort.__version__}, onnx {onnx.__version__}, numpy {np.__version__}; "
          f"calib {calib.shape}, test {test_x.shape}", flush=True)

    for name in args.models.split(","):
        src = os.path.join(args.models_dir, f"{name}.onnx")
        fp32 = os.path.join(args.work, f"{name}.fp32_b1.onnx")
        fix_batch_1(src, fp32)
        tmpd = tempfile.mkdtemp(prefix="ortptq-")
        pre = os.path.join(tmpd, f"{name}.pre.onnx")
        quant_pre_process(fp32, pre, skip_symbolic_shape=True)
        input_name = onnx.load(fp32).graph.input[0].name
        mres = res["models"][name] = {"source": src, "source_bytes": os.path.getsize(src), "variants": {}}

        t0 = time.perf_counter()
        p_fp32 = predict(fp32, test_x)
        mres["variants"]["fp32"] = {"path": fp32, "bytes": os.path.getsize(fp32),
                                    "top1": 100.0 * float(np.mean(p_fp32 == test_y)),
                                    "eval_s": time.perf_counter() - t0}
        print(f"{name:12s} fp32            top1 {mres['variants']['fp32']['top1']:.2f}", flush=True)

        for act, act_type in ACTS.items():
            for meth in args.methods.split(","):
                tag = f"{act}_{meth}"
                out = os.path.join(args.work, f"{name}.{tag}.onnx")
                extra = {}
                if meth != "minmax":  # histogram calibrators: bound memory, same result
                    extra["CalibMaxIntermediateOutputs"] = 100
                try:
                    t0 = time.perf_counter()
                    quantize_static(pre, out, Reader(input_name, calib), quant_format=QuantFormat.QDQ,
                                    per_channel=True, activation_type=act_type, weight_type=QuantType.QInt8,
                                    calibrate_method=METHODS[meth], extra_options=extra)
                    q_s = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    p = predict(out, test_x)
                    r = {"path": out, "bytes": os.path.getsize(out), "quantize_s": q_s,
                         "top1": 100.0 * float(np.mean(p == test_y)),
                         "agreement_with_fp32": 100.0 * float(np.mean(p == p_fp32)),
                         "eval_s": time.perf_counter() - t0}
                    print(f"{name:12s} {tag:15s} top1 {r['top1']:.2f}  agree {r['agreement_with_fp32']:.2f}"
                          f"  {r['bytes']} B  quantize {q_s:.1f} s", flush=True)
                except Exception as e:  # record verbatim, keep going
                    traceback.print_exc()
                    r = {"error": f"{type(e).__name__}: {e}"}
                    print(f"{name:12s} {tag:15s} FAILED {r['error']}", flush=True)
                mres["variants"][tag] = r
        os.remove(pre)
        os.rmdir(tmpd)

        if args.temper_dir:
            tmf = os.path.join(args.temper_dir, f"{name}.tmf")
            if os.path.exists(tmf):
                ev = temper_eval(tmf, args.temper_run)
                rep_path = os.path.join(args.temper_dir, f"{name}.report.json")
                rep = json.load(open(rep_path)) if os.path.exists(rep_path) else {}
                t = {"path": tmf, "bytes": os.path.getsize(tmf), "eval_cmd": ev.get("cmd"),
                     "observer": rep.get("observer"), "val_fp32": rep.get("fp32_accuracy"),
                     "val_int8": rep.get("int8_accuracy")}
                if "error" in ev:
                    t["error"] = ev["error"]
                else:
                    t["top1"] = 100.0 * ev["correct"] / ev["count"]
                    t["kernels"] = ev.get("kernels")
                try:
                    pt = temper_predict(tmf, test_x, args.temper_run)
                    t["agreement_with_fp32"] = 100.0 * float(np.mean(pt == p_fp32))
                    t["top1_float_input"] = 100.0 * float(np.mean(pt == test_y))
                except Exception as e:
                    t["agreement_error"] = f"{type(e).__name__}: {e}"
                    t["eval_json"] = ev
                mres["temper"] = t
                print(f"{name:12s} temper          {t.get('top1', t.get('error'))}", flush=True)
            else:
                mres["temper"] = {"error": f"{tmf} not found"}
        mres["reference"] = ref.get("int8_reference", {}).get(name, {})
        mres["reference_fp32"] = ref.get(name, {}).get("fp32_acc")

    json.dump(res, open(args.json, "w"), indent=1)
    md = make_md(res)
    open(args.md, "w").write(md)
    print(md)


def make_md(res):
    L = [f"### Accuracy: {res['what']}", "",
         f"Calibration (ORT and temper): {res['calibration']}. ORT: quantize_static, QDQ, per-channel "
         f"int8 weights. Versions: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()), "",
         "| model | variant | top-1 % | Δ vs FP32 | agreement w/ FP32 % | file bytes | % of FP32 ONNX | anchor (accuracy.md) |",
         "|---|---|---:|---:|---:|---:|---:|---:|"]
    anchor_key = {"u8s8_minmax": "ort_quantize_static_minmax", "u8s8_percentile": "ort_percentile"}
    for name, m in res["models"].items():
        fp = m["variants"]["fp32"]
        base = m["source_bytes"]
        L.append(f"| {name} | FP32 (ORT) | {fp['top1']:.2f} | – | – | {base:,} | 100.0 | "
                 f"{m.get('reference_fp32', '–')} |")
        for tag, v in m["variants"].items():
            if tag == "fp32":
                continue
            act, meth = tag.split("_")
            label = f"ORT {act.upper()} {meth}"
            anc = m["reference"].get(anchor_key.get(tag, ""), "–")
            if "error" in v:
                L.append(f"| {name} | {label} | FAILED: `{v['error'][:200]}` | | | | | {anc} |")
                continue
            L.append(f"| {name} | {label} | {v['top1']:.2f} | {v['top1'] - fp['top1']:+.2f} | "
                     f"{v['agreement_with_fp32']:.2f} | {v['bytes']:,} | {100.0 * v['bytes'] / base:.1f} | {anc} |")
        t = m.get("temper")
        if t:
            if "error" in t:
                L.append(f"| {name} | temper INT8 | FAILED: `{t['error'][:200]}` | | | | | |")
            else:
                L.append(f"| {name} | temper INT8 (observer {t['observer']}) | {t['top1']:.2f} | "
                         f"{t['top1'] - fp['top1']:+.2f} | {t.get('agreement_with_fp32', float('nan')):.2f} | {t['bytes']:,} | {100.0 * t['bytes'] / base:.1f} | |")
    L += ["", "Anchor column: accuracy.md / reference.json (ORT MinMax and Percentile, U8S8). 0.1 point = 10 images.",
          "ORT file bytes are the QDQ .onnx (batch fixed to 1, BN folded by quant_pre_process); "
          "temper bytes are the .tmf. temper top-1: `temper-run eval --data fashion-mnist:test` (u8 pixels "
          "through the model's pixel normalization); its agreement: `temper-run run` on the normalized float "
          "test images vs ORT FP32."]
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    sys.exit(main())
