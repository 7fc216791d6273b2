#!/usr/bin/env python3
"""Cross-check of temper's COCO evaluator against pycocotools' COCOeval (bbox).

For each seed, writes a random but seeded COCO ground truth (several images of varied sizes,
non-contiguous category ids, crowd regions, a category without objects, an image without
objects, boxes from 2 to 400 px so every area range is populated, an `area` field unlike w*h as
segmentation areas are) and a detection file (jittered hits, wrong classes, false positives,
tied scores within and across images, integer boxes giving exact IoU ties at thresholds, more
than 100 detections on some images), runs COCOeval and stores its 12 stats and the per-class
AP (area all, maxDets 100) as expected.json beside them.

With --rust-bin BIN it then runs `BIN gt.json dt.json` (which prints a JSON object with
"stats", "per_class_ap" and "per_class_ap50") and compares every number to --tol; exit 1 on a
disagreement.

    python map_vs_pycocotools.py --out /tmp/dir [--seeds 8] [--rust-bin target/release/examples/coco_eval]
"""
import argparse
import contextlib
import io
import json
import os
import random
import subprocess
import sys

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def gen_case(seed):
    rng = random.Random(seed)
    n_img = rng.randint(4, 14)
    n_cat = rng.randint(2, 6)
    cat_ids = rng.sample(range(1, 91), n_cat)
    cats = [{"id": c, "name": f"class{c}"} for c in cat_ids]
    rng.shuffle(cats)
    empty_cat = cat_ids[-1] if n_cat > 2 else None  # a category with no objects
    img_ids = rng.sample(range(1, 10000), n_img)
    images, anns, dets = [], [], []
    ann_ids = rng.sample(range(1, 100000), 2000)
    integer = seed % 3 == 0
    many = seed % 4 == 1

    def rbox(W, H):
        side = np.exp(rng.uniform(np.log(2), np.log(400)))
        w = min(W - 1, side * rng.uniform(0.5, 1.5))
        h = min(H - 1, side * rng.uniform(0.5, 1.5))
        x = rng.uniform(0, W - w)
        y = rng.uniform(0, H - h)
        if integer:
            x, y, w, h = float(int(x)), float(int(y)), float(max(1, int(w))), float(max(1, int(h)))
        return [x, y, w, h]

    def score():
        s = rng.random()
        return round(s, 1) if rng.random() < 0.3 else s  # ties

    for ii, iid in enumerate(img_ids):
        W, H = rng.randint(60, 640), rng.randint(60, 640)
        images.append({"id": iid, "file_name": f"img{iid}.png", "width": W, "height": H})
        n_obj = 0 if ii == 1 else rng.randint(0, 12)
        for _ in range(n_obj):
            cid = rng.choice([c for c in cat_ids if c != empty_cat])
            b = rbox(W, H)
            crowd = 1 if rng.random() < 0.1 else 0
            area = b[2] * b[3] * (rng.uniform(0.4, 1.0) if rng.random() < 0.7 else 1.0)
            anns.append({"id": ann_ids.pop(), "image_id": iid, "category_id": cid, "bbox": b, "area": area, "iscrowd": crowd})
            for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):
                j = rng.uniform(0, 0.2)
                d = [b[0] + rng.uniform(-j, j) * b[2], b[1] + rng.uniform(-j, j) * b[3], b[2] * rng.uniform(1 - j, 1 + j), b[3] * rng.uniform(1 - j, 1 + j)]
                if integer:
                    d = [float(round(v)) for v in d]
                    d[2], d[3] = max(1.0, d[2]), max(1.0, d[3])
                dc = cid if rng.random() > 0.1 else rng.choice(cat_ids)
                dets.append({"image_id": iid, "category_id": dc, "bbox": d, "score": score()})
        n_fp = rng.randint(0, 6) + (rng.randint(100, 130) if many and ii % 2 == 0 else 0)
        for _ in range(n_fp):
            dets.append({"image_id": iid, "category_id": rng.choice(cat_ids), "bbox": rbox(W, H), "score": score()})
    rng.shuffle(dets)
    if not dets:
        dets.append({"image_id": img_ids[0], "category_id": cat_ids[0], "bbox": [0.0, 0.0, 10.0, 10.0], "score": 0.5})
    return {"images": images, "annotations": anns, "categories": cats}, dets


def coco_eval(gt_path, dt_path):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
        dt = gt.loadRes(dt_path)
        e = COCOeval(gt, dt, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    prec = e.eval["precision"]  # [T, R, K, A, M]

    def mean_valid(x):
        x = x[x > -1]
        return float(np.mean(x)) if x.size else -1.0

    per_class = [mean_valid(prec[:, :, k, 0, 2]) for k in range(prec.shape[2])]
    per_class50 = [mean_valid(prec[0, :, k, 0, 2]) for k in range(prec.shape[2])]
    return {"stats": [float(s) for s in e.stats], "per_class_ap": per_class, "per_class_ap50": per_class50}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--rust-bin")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    worst = 0.0
    failed = False
    for seed in range(a.seeds):
        d = os.path.join(a.out, f"case{seed}")
        os.makedirs(d, exist_ok=True)
        gt, dt = gen_case(seed)
        gp, dp = os.path.join(d, "gt.json"), os.path.join(d, "dt.json")
        with open(gp, "w") as f:
            json.dump(gt, f)
        with open(dp, "w") as f:
            json.dump(dt, f)
        want = coco_eval(gp, dp)
        with open(os.path.join(d, "expected.json"), "w") as f:
            json.dump(want, f)
        line = f"case{seed}: {len(gt['images'])} images, {len(gt['categories'])} classes, {len(gt['annotations'])} gt ({sum(x['iscrowd'] for x in gt['annotations'])} crowd), {len(dt)} dt; AP {want['stats'][0]:.4f} AP50 {want['stats'][1]:.4f}"
        if a.rust_bin:
            out = subprocess.run([a.rust_bin, gp, dp], check=True, capture_output=True, text=True).stdout
            got = json.loads(out)
            diffs = []
            for key in ("stats", "per_class_ap", "per_class_ap50"):
                w, g = want[key], got[key]
                if len(w) != len(g):
                    print(f"case{seed}: {key} has {len(g)} values, pycocotools {len(w)}")
                    failed = True
                    continue
                diffs += [(abs(x - y), key, i, x, y) for i, (x, y) in enumerate(zip(w, g))]
            m = max(diffs) if diffs else (0.0, "", 0, 0, 0)
            worst = max(worst, m[0])
            line += f"; max |diff| {m[0]:.3g}" + (f" ({m[1]}[{m[2]}]: pycocotools {m[3]} temper {m[4]})" if m[0] > 0 else "")
            if m[0] > a.tol:
                failed = True
                line += "  <-- FAIL"
        print(line)
    if a.rust_bin:
        print(f"{'FAIL' if failed else 'OK'}: {a.seeds} cases, worst |diff| over 12 stats + per-class AP/AP50: {worst:.3g} (tolerance {a.tol})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
