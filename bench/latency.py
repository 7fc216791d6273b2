#!/usr/bin/env python3
"""Single-thread batch-1 latency: ONNX Runtime (FP32, INT8 QDQ U8S8, INT8 QDQ S8S8) vs temper INT8.

What is measured (run this under `taskset -c CORE`; compare_latency.sh does)
  * ORT: InferenceSession(CPUExecutionProvider, intra/inter_op_num_threads=1, ORT_SEQUENTIAL,
    ORT_ENABLE_ALL, no spinning) -- the anchors' bench_ort.py settings. Timed call = sess.run
    from Python on a float32 input, i.e. it includes ORT's input QuantizeLinear/output
    DequantizeLinear and the Python binding overhead (the "call floor", measured on an
    Identity model, is reported beside the results). Harness = the anchors' timing.py
    (warm-up >= 0.5 s, then >= 300 calls / 2 s; 224-px model >= 60 calls / 4 s).
  * temper: `temper-run bench MODEL.tmf --json` as a child process (it inherits the CPU
    pinning): Rust-side timing of Session::run on a pre-quantized int8 input (no float
    quantize/dequantize, no FFI), same warm-up time and run count targets as ORT (the run
    count comes from a short probe run).
  * Within a pass the engines alternate model by model (ORT FP32, ORT U8S8, ORT S8S8, temper;
    reversed order on even passes); compare_latency.sh runs several passes and `table` keeps, per
    model and engine, the pass with the lowest median (as the anchors' make_table.py).

Subcommands
  latency.py pass   MODELS.json OUT.json       one timing pass over every model
  latency.py errors MODELS.json OUT.json       output error of every INT8 model vs ORT FP32
  latency.py table  RESULTSDIR MODELS.json     merge passes -> latency.json + latency.md

MODELS.json (written by compare_latency.sh): [{"name", "fp32", "u8s8", "s8s8", "tmf",
"quantize_log", "input": "fmnist" | "synthetic", "val_x": NPY or null}, ...]
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

ANCHORS = os.environ.get("TEMPER_BENCH_ANCHORS", "/work/shared/anchors/perf")
sys.path.insert(0, ANCHORS)
from inputs import make_input  # noqa: E402
from timing import runs_for, summary, time_calls  # noqa: E402

ort.set_default_logger_severity(3)
HERE = os.path.dirname(os.path.abspath(__file__))
TEMPER_RUN = os.environ.get("TEMPER_RUN", os.path.join(os.path.dirname(HERE), "target/release/temper-run"))
FMNIST = "/usr/share/datasets/fashion-mnist"
ORT_VARIANTS = ["fp32", "u8s8", "s8s8"]
LABEL = {"fp32": "ORT FP32", "u8s8": "ORT INT8 QDQ U8S8", "s8s8": "ORT INT8 QDQ S8S8", "temper": "temper INT8"}


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def fmnist_test(n):
    """First n t10k images, normalized, float32 [n,1,28,28]."""
    import gzip
    with gzip.open(f"{FMNIST}/t10k-images-idx3-ubyte.gz", "rb") as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:n]
    return (((raw.astype(np.float32) / 255.0) - 0.2860) / 0.3530).astype(np.float32)[:, None]


def input_of(m):
    """The timing input: test image 0 (Fashion-MNIST models) or the anchors' seed-7 input."""
    s = session(m["fp32"])
    i = s.get_inputs()[0]
    if m["input"] == "fmnist":
        return i.name, fmnist_test(1)
    return i.name, make_input(m["name"], i.shape, seed=7)


def call_floor():
    """Latency of an Identity model: the Python + ORT per-call overhead (as the anchors)."""
    g = helper.make_graph([helper.make_node("Identity", ["input"], ["out"])], "id",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 10])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 10])])
    mo = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    mo.ir_version = 8
    with tempfile.TemporaryDirectory(prefix="ortid-") as d:
        p = os.path.join(d, "id.onnx")
        onnx.save(mo, p)
        sess = session(p)
    feed = {"input": np.zeros((1, 10), np.float32)}
    return summary(time_calls(lambda: sess.run(None, feed), min_runs=2000, target_s=1.0))


def temper_bench(tmf, runs, warmup):
    cmd = [TEMPER_RUN, "bench", tmf, "--json", "--runs", str(runs), "--warmup", str(warmup)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError((p.stderr or p.stdout).strip())
    return json.loads(p.stdout), " ".join(cmd)


def bench_temper(name, tmf):
    """Probe, then match the ORT harness: >= 0.5 s warm-up, run count for ~target_s."""
    rf = runs_for(name)
    probe, _ = temper_bench(tmf, 30, 5)
    m = max(probe["latency_us"]["median"], 1e-3)
    runs = int(min(max(rf["target_s"] * 1e6 / m, rf["min_runs"]), 5000))
    warmup = int(max(0.5e6 / m, 10))
    j, cmd = temper_bench(tmf, runs, warmup)
    lat = j["latency_us"]
    return {"runs": j["runs"], "warmup": j["warmup"], "median_us": lat["median"], "p90_us": lat["p90"],
            "min_us": lat["min"], "mean_us": lat["mean"], "kernels": j["kernels"], "features": j["features"],
            "load_us": j["load_us"], "peak_rss_kib": j["peak_rss_kib"], "file_bytes": j["file_bytes"], "cmd": cmd}


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


def cmd_pass(models_json, out, pass_no=1):
    models = json.load(open(models_json))
    res = {"onnxruntime": ort.__version__, "affinity": sorted(os.sched_getaffinity(0)),
           "loadavg_start": loadavg(), "call_floor": call_floor(), "models": {}}
    print(f"  ORT call floor (Identity) median {res['call_floor']['median_us']:.1f} us; "
          f"affinity {res['affinity']}; loadavg {' '.join(res['loadavg_start'])}", flush=True)
    order = ORT_VARIANTS + ["temper"]
    if pass_no % 2 == 0:
        order = order[::-1]
    for m in models:
        name = m["name"]
        mres = res["models"][name] = {}
        in_name, x = input_of(m)
        feed = {in_name: x}
        for eng in order:
            try:
                if eng == "temper":
                    if not os.path.exists(m["tmf"]):
                        raise FileNotFoundError(f"{m['tmf']} missing (temper quantize failed, see table)")
                    r = bench_temper(name, m["tmf"])
                else:
                    sess = session(m[eng])
                    sess.run(None, feed)
                    r = summary(time_calls(lambda: sess.run(None, feed), **runs_for(name)))
                mres[eng] = r
                print(f"  {name:24s} {LABEL[eng]:18s} median {r['median_us']:9.1f} us  p90 {r['p90_us']:9.1f}"
                      f"  n={r['runs']}" + (f"  kernels={r['kernels']}" if eng == "temper" else ""), flush=True)
            except Exception as e:
                mres[eng] = {"error": f"{type(e).__name__}: {e}"}
                print(f"  {name:24s} {LABEL[eng]:18s} FAILED {e}", flush=True)
    res["loadavg_end"] = loadavg()
    json.dump(res, open(out, "w"), indent=1)


def cmd_errors(models_json, out):
    """rel. L2 error of each INT8 model's logits vs ORT FP32 over a set of inputs (200 val
    inputs for synthetic models, the first 200 test images for Fashion-MNIST models)."""
    models = json.load(open(models_json))
    res = {}
    for m in models:
        name = m["name"]
        x = fmnist_test(200) if m["input"] == "fmnist" else np.load(m["val_x"])
        s = session(m["fp32"])
        in_name = s.get_inputs()[0].name
        ref = np.concatenate([s.run(None, {in_name: x[i:i + 1]})[0] for i in range(len(x))]).astype(np.float64)
        r = res[name] = {"inputs": int(len(x))}

        def err(y):
            y = y.reshape(ref.shape).astype(np.float64)
            return {"rel_l2_err_vs_fp32": float(np.linalg.norm(ref - y) / (np.linalg.norm(ref) + 1e-12)),
                    "top1_agreement_vs_fp32": 100.0 * float(np.mean(ref.argmax(1) == y.argmax(1)))}
        for v in ["u8s8", "s8s8"]:
            try:
                q = session(m[v])
                r[v] = err(np.concatenate([q.run(None, {in_name: x[i:i + 1]})[0] for i in range(len(x))]))
            except Exception as e:
                r[v] = {"error": f"{type(e).__name__}: {e}"}
        if os.path.exists(m["tmf"]):
            with tempfile.TemporaryDirectory(prefix="tmperr-") as d:
                xi, yo = os.path.join(d, "x.npy"), os.path.join(d, "y.npy")
                np.save(xi, x.astype(np.float32))
                p = subprocess.run([TEMPER_RUN, "run", m["tmf"], "--input", xi, "--output", yo, "--layout", "nchw"],
                                   capture_output=True, text=True)
                r["temper"] = err(np.load(yo)) if p.returncode == 0 else {"error": (p.stderr or p.stdout).strip()}
        print(f"  {name:24s} " + "  ".join(f"{k}: {v.get('rel_l2_err_vs_fp32', v.get('error'))}"
                                           for k, v in r.items() if isinstance(v, dict)), flush=True)
    json.dump(res, open(out, "w"), indent=1)


def count_macs(path):
    """Conv/Gemm/MatMul MACs of a batch-1 model, as the anchors' build_models.count_macs counts
    them, on an ORT basic-optimized copy (constant folding resolves Paddle's computed Reshape
    shapes; BN is folded into Conv) so that every shape is known after onnx shape inference."""
    with tempfile.TemporaryDirectory(prefix="macs-") as d:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = os.path.join(d, "opt.onnx")
        ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        m = onnx.shape_inference.infer_shapes(onnx.load(so.optimized_model_filepath))
    shapes = {vi.name: [dd.dim_value for dd in vi.type.tensor_type.shape.dim]
              for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output)}
    shapes.update({t.name: list(t.dims) for t in m.graph.initializer})
    macs = 0
    for n in m.graph.node:
        at = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "Conv":
            w, y = shapes[n.input[1]], shapes[n.output[0]]
            macs += int(np.prod(y)) * w[1] * w[2] * w[3]
        elif n.op_type == "Gemm":
            a, w = shapes[n.input[0]], shapes[n.input[1]]
            macs += (a[1] if at.get("transA", 0) else a[0]) * (a[0] if at.get("transA", 0) else a[1]) \
                * (w[0] if at.get("transB", 0) else w[1])
        elif n.op_type == "MatMul":
            a, w = shapes[n.input[0]], shapes[n.input[1]]
            macs += int(np.prod(a[:-1])) * a[-1] * w[-1]
    return macs


def fmt(v):
    if v is None:
        return "–"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def quantize_error(m):
    """The converter's error message, verbatim (last non-progress lines of its log)."""
    try:
        lines = [ln for ln in open(m["quantize_log"]).read().replace("\r", "\n").splitlines()
                 if ln.strip() and "[" not in ln[:40]]
        return " / ".join(lines[-3:])
    except OSError:
        return "no .tmf and no quantize log"


def cmd_table(rdir, models_json):
    import glob
    models = json.load(open(models_json))
    passes = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(rdir, "latency.pass*.json")))]
    errs_path = os.path.join(rdir, "latency_errors.json")
    errs = json.load(open(errs_path)) if os.path.exists(errs_path) else {}
    meta = json.load(open(os.path.join(rdir, "machine.json")))
    out = {"machine": meta, "passes": len(passes),
           "call_floor_us": min(p["call_floor"]["median_us"] for p in passes),
           "loadavg": [(p["loadavg_start"], p["loadavg_end"]) for p in passes], "models": {}}
    for m in models:
        name = m["name"]
        mo = out["models"][name] = {"macs": count_macs(m["fp32"])}
        for eng in ORT_VARIANTS + ["temper"]:
            c = [p["models"][name][eng] for p in passes if "median_us" in p["models"].get(name, {}).get(eng, {})]
            if not c:
                e = next((p["models"][name][eng]["error"] for p in passes if eng in p["models"].get(name, {})), "?")
                if eng == "temper" and not os.path.exists(m["tmf"]):
                    e = "temper quantize failed: " + quantize_error(m)
                mo[eng] = {"error": e}
                continue
            best = dict(min(c, key=lambda v: v["median_us"]))
            best["pass_medians_us"] = [round(v["median_us"], 1) for v in c]
            mo[eng] = best
        mo["output_error"] = errs.get(name, {})
    json.dump(out, open(os.path.join(rdir, "latency.json"), "w"), indent=1)

    med = lambda mo, k: mo[k].get("median_us")  # noqa: E731
    L = [f"### Latency: single thread, batch 1, pinned to core {meta['core']} (`taskset -c {meta['core']}`); "
         f"median µs, best of {len(passes)} alternating passes", "",
         f"CPU: {meta['cpu']} · {meta['versions']} · temper-run kernel path: "
         + ", ".join(sorted({mo['temper'].get('kernels', '?') for mo in out['models'].values()})), "",
         "| model | MACs | ORT FP32 | ORT INT8 U8S8 | ORT INT8 S8S8 | temper INT8 | temper kernels | "
         "temper / ORT U8S8 | temper / ORT S8S8 | temper / ORT FP32 | temper GOPS |",
         "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for name, mo in out["models"].items():
        t = mo["temper"]
        cells = [fmt(med(mo, k)) if "median_us" in mo[k] else f"FAILED: `{mo[k]['error'][:160]}`"
                 for k in ORT_VARIANTS]
        if "median_us" not in t:
            L.append(f"| {name} | {mo['macs'] / 1e6:.2f}M | " + " | ".join(cells)
                     + f" | FAILED: `{t['error'][:400]}` | – | – | – | – | – |")
            continue
        ratio = lambda k: f"{t['median_us'] / mo[k]['median_us']:.2f}" if "median_us" in mo[k] else "–"  # noqa: E731
        L.append(f"| {name} | {mo['macs'] / 1e6:.2f}M | " + " | ".join(cells) + f" | **{fmt(t['median_us'])}** | "
                 f"{t['kernels']} | {ratio('u8s8')} | {ratio('s8s8')} | {ratio('fp32')} | "
                 f"{2 * mo['macs'] / (t['median_us'] * 1e3):.0f} |")
    L += ["", "Ratios < 1: temper is faster. GOPS = 2·MACs / median (Conv/Gemm/MatMul MACs only).", "",
          "#### Detail: median (p90) [median of each pass] µs, and INT8 output error vs ORT FP32", "",
          "| model | engine | median (p90) [passes] µs | runs/pass | rel. L2 err vs FP32 | top-1 agreement vs FP32 |",
          "|---|---|---|---:|---:|---:|"]
    for name, mo in out["models"].items():
        oe = mo["output_error"]
        for k in ORT_VARIANTS + ["temper"]:
            v = mo[k]
            if "median_us" not in v:
                L.append(f"| {name} | {LABEL[k]} | FAILED | | | |")
                continue
            s = f"{fmt(v['median_us'])} ({fmt(v['p90_us'])}) [" + "/".join(fmt(p) for p in v["pass_medians_us"]) + "]"
            e = oe.get(k, {})
            el = f"{e['rel_l2_err_vs_fp32']:.4f}" if "rel_l2_err_vs_fp32" in e else ("–" if k == "fp32" else e.get("error", "–"))
            ag = f"{e['top1_agreement_vs_fp32']:.1f} % ({oe.get('inputs')} inputs)" if "top1_agreement_vs_fp32" in e else "–"
            L.append(f"| {name} | {LABEL[k]} | {s} | {v['runs']} | {el} | {ag} |")
    L += ["", f"ORT per-call floor (Identity model, same harness): {out['call_floor_us']:.1f} µs — included in every ORT "
          "figure; temper's figure is in-process Session::run on an already-quantized int8 input.",
          "Load average (1/5/15 min) at start→end of each pass: "
          + "; ".join(f"{' '.join(a)} → {' '.join(b)}" for a, b in out["loadavg"]),
          f"Other processes at start: {meta.get('other_load', '')}"]
    md = "\n".join(L) + "\n"
    open(os.path.join(rdir, "latency.md"), "w").write(md)
    print(md)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "pass":
        cmd_pass(sys.argv[2], sys.argv[3], int(os.environ.get("PASS_NO", "1")))
    elif cmd == "errors":
        cmd_errors(sys.argv[2], sys.argv[3])
    elif cmd == "table":
        cmd_table(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
