#!/usr/bin/env python3
"""ONNX Runtime `quantize_static` on the synthetic PicoDet-shaped detector of
converter/tests/detect_quantize.rs, beside temper's figures (bench/detect_ort.sh runs it).

  detect_ort.py infer DIR   (numpy + onnxruntime) FP32 and INT8 (QDQ, per-channel int8 weights,
                            U8S8 and S8S8, MinMax calibration on DIR/train_pixels.npy) head outputs
                            on DIR/val_pixels.npy, decoded with the rules of temper's device op
                            (score >= threshold, class-aware top-k, DFL softmax expectation x stride
                            from the cell centre, clipped; greedy NMS, IoU > threshold suppresses;
                            max_det), mapped back through DIR/val_transforms.npy, written as COCO
                            result files DIR/ort_<name>.json.
  detect_ort.py eval DIR    (numpy + pycocotools) COCOeval bbox of each DIR/ort_*.json against
                            DIR/val/annotations.json; prints a table with temper's figures from
                            DIR/det.report.json.
"""
import glob
import json
import os
import sys

import numpy as np


def infer(d):
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    head = json.load(open(os.path.join(d, "head.json")))
    val = np.load(os.path.join(d, "val_pixels.npy")).astype(np.float32) / 255.0
    train = np.load(os.path.join(d, "train_pixels.npy")).astype(np.float32) / 255.0
    tr = np.load(os.path.join(d, "val_transforms.npy"))
    coco = json.load(open(os.path.join(d, "val", "annotations.json")))
    ids = [im["id"] for im in coco["images"]]
    cats = sorted(c["id"] for c in coco["categories"])
    src = os.path.join(d, "picodet_like.onnx")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": train[i : i + 1]} for i in range(len(train))])

        def get_next(self):
            return next(self.it, None)

    models = {"fp32": src}
    for name, at in [("u8s8_minmax", QuantType.QUInt8), ("s8s8_minmax", QuantType.QInt8)]:
        out = os.path.join(d, f"ort_{name}.onnx")
        quantize_static(src, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=at, weight_type=QuantType.QInt8)
        models[name] = out
    for name, path in models.items():
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        res = []
        for i in range(len(val)):
            outs = dict(zip(names, sess.run(None, {"x": val[i : i + 1]})))
            for x1, y1, x2, y2, s, c in decode(head, outs, val.shape[2], val.shape[3]):
                sx, sy, dx, dy = tr[i]
                bx = [(x1 - dx) / sx, (y1 - dy) / sy, (x2 - dx) / sx, (y2 - dy) / sy]
                res.append({"image_id": ids[i], "category_id": cats[int(c)], "score": float(s),
                            "bbox": [float(bx[0]), float(bx[1]), float(bx[2] - bx[0]), float(bx[3] - bx[1])]})
        json.dump(res, open(os.path.join(d, f"ort_{name}.json"), "w"))
        print(f"{name}: {len(res)} detections")


def decode(h, outs, ih, iw):
    c, r = h["num_classes"], h["reg_max"]
    cands = []
    base = 0
    levels = []
    for lv in h["levels"]:
        s = outs[lv["scores"]].reshape(-1, c).astype(np.float64)
        b = outs[lv["boxes"]].reshape(-1, 4 * (r + 1)).astype(np.float64)
        if h["score"] == "logits":
            s = 1.0 / (1.0 + np.exp(-s))
        s = np.clip(s, 0.0, 1.0)
        gw = -(-iw // lv["stride"])
        levels.append((lv["stride"], gw, b))
        for cell, cls in zip(*np.nonzero(s >= h["score_threshold"])):
            cands.append((-s[cell, cls], (base + cell) * c + cls, len(levels) - 1, cell, cls, s[cell, cls]))
        base += s.shape[0]
    cands.sort()
    cands = cands[: h["top_k"]]
    kept = []
    for _, _, li, cell, cls, sc in cands:
        if len(kept) == h["max_det"]:
            break
        stride, gw, b = levels[li]
        dist = []
        for k in range(4):
            v = b[cell, k * (r + 1) : (k + 1) * (r + 1)]
            e = np.exp(v - v.max())
            dist.append(float((np.arange(r + 1) * e).sum() / e.sum()) * stride)
        cx, cy = (cell % gw + 0.5) * stride, (cell // gw + 0.5) * stride
        bx = [min(max(cx - dist[0], 0), iw), min(max(cy - dist[1], 0), ih), min(max(cx + dist[2], 0), iw), min(max(cy + dist[3], 0), ih)]
        area = lambda q: (q[2] - q[0]) * (q[3] - q[1])
        sup = False
        for o in kept:
            if h.get("class_aware", True) and o[5] != cls:
                continue
            inter = max(0, min(bx[2], o[2]) - max(bx[0], o[0])) * max(0, min(bx[3], o[3]) - max(bx[1], o[1]))
            if inter > h["iou_threshold"] * (area(bx) + area(o) - inter):
                sup = True
                break
        if not sup:
            kept.append((*bx, sc, cls))
    return [(k[0], k[1], k[2], k[3], k[4], k[5]) for k in kept]


def evaluate(d):
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(os.path.join(d, "val", "annotations.json"))
    rep = json.load(open(os.path.join(d, "det.report.json")))
    rows = [("temper FP32 (converter engine)", rep["fp32"]["map50"], rep["fp32"]["map"]),
            (f"temper INT8 (.tmf, {rep['observer']})", rep["int8"]["map50"], rep["int8"]["map"])]
    for p in sorted(glob.glob(os.path.join(d, "ort_*.json"))):
        name = os.path.basename(p)[4:-5]
        res = json.load(open(p))
        with contextlib.redirect_stdout(io.StringIO()):
            e = COCOeval(gt, gt.loadRes(p) if res else COCO(), "bbox")
            e.evaluate()
            e.accumulate()
            e.summarize()
        rows.append((f"ORT {name}", e.stats[1] * 100, e.stats[0] * 100))
    print("| model | mAP@0.5 | mAP@0.5:0.95 |")
    print("|---|---|---|")
    for n, a, b in rows:
        print(f"| {n} | {a:.2f} | {b:.2f} |")


if __name__ == "__main__":
    {"infer": infer, "eval": evaluate}[sys.argv[1]](sys.argv[2])
