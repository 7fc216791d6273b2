//! COCO-style detection metrics, a replica of `pycocotools`' `COCOeval` for `iouType='bbox'`.
//!
//! The procedure is the one of `COCOeval.evaluate` / `evaluateImg` / `accumulate` /
//! `summarize`, step for step:
//!
//! * Boxes are `[x, y, w, h]` in `f64` (COCO's convention); IoU is `maskApi.c`'s `bbIou`:
//!   intersection over union, or over the *detection's* area when the ground truth is a crowd.
//! * Per image and class, detections are sorted by descending score with a stable sort (numpy's
//!   mergesort) and cut to the last `maxDets` (100); ground truths are ordered non-ignored first.
//!   A ground truth is ignored when it is a crowd or its `area` lies outside the area range
//!   (both ends inclusive).
//! * Greedy matching per IoU threshold (`0.50:0.05:0.95`, numpy `linspace` values): each
//!   detection takes the unmatched (or crowd) ground truth with the highest IoU `>= t`, never
//!   leaving a regular match for an ignored one; a detection matched to an ignored ground truth
//!   is ignored, and so is an unmatched detection whose own area (`w·h`) is outside the range.
//!   Crowds can match several detections.
//! * Accumulation over images (in image order) sorts all detections by score (stable), takes
//!   cumulative TP/FP, precision `tp / (tp + fp + eps)` made monotone from the right, and reads
//!   it at the 101 recall thresholds `0:0.01:1` (first recall `>=` threshold, 0 past the end).
//!   A class with no non-ignored ground truth in an area range gets `-1` (left out of means).
//!
//! Ground-truth identity is by position, not by annotation id; this equals `pycocotools` except
//! for its quirk with an annotation whose `id` is 0 (a match to it counts as no match there).

use std::fmt;

/// numpy's `np.spacing(1)`: the `eps` in `tp / (tp + fp + eps)`.
const EPS: f64 = f64::EPSILON;

/// COCO's area ranges `all`, `small` (< 32²), `medium` (32²..96²), `large` (> 96²).
pub const AREA_RANGES: [(f64, f64); 4] = [(0.0, 1e10), (0.0, 1024.0), (1024.0, 9216.0), (9216.0, 1e10)];

/// Names of [`AREA_RANGES`].
pub const AREA_NAMES: [&str; 4] = ["all", "small", "medium", "large"];

/// COCO's `maxDets`.
pub const MAX_DETS: [usize; 3] = [1, 10, 100];

/// A ground-truth box.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroundTruth {
    /// Image index (`0..num_images`, in the order images are accumulated: sorted image ids).
    pub image: usize,
    /// Class index (`0..num_classes`, sorted category ids).
    pub class: usize,
    /// `[x, y, w, h]` in pixels.
    pub bbox: [f64; 4],
    /// The area used for the area ranges (COCO's annotation `area`; `w·h` when the data has none).
    pub area: f64,
    /// A crowd region: ignored, and may match several detections.
    pub iscrowd: bool,
}

/// A detection.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    /// Image index.
    pub image: usize,
    /// Class index.
    pub class: usize,
    /// `[x, y, w, h]` in pixels.
    pub bbox: [f64; 4],
    /// Confidence; higher first.
    pub score: f64,
}

/// Converts `[x1, y1, x2, y2]` to `[x, y, w, h]`.
pub fn xyxy_to_xywh(b: [f64; 4]) -> [f64; 4] {
    [b[0], b[1], b[2] - b[0], b[3] - b[1]]
}

/// Invalid evaluator input (what and which entry).
#[derive(Clone, Debug, PartialEq)]
pub struct MapError(pub String);

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mAP evaluation: {}", self.0)
    }
}

impl std::error::Error for MapError {}

/// The result of [`evaluate`]: COCO's accumulated arrays and the 12 summary numbers.
#[derive(Clone, Debug)]
pub struct CocoEval {
    /// IoU thresholds (10).
    pub iou_thrs: Vec<f64>,
    /// Recall thresholds (101).
    pub rec_thrs: Vec<f64>,
    /// Number of classes `K`.
    pub num_classes: usize,
    /// `precision[t][r][k][a][m]` flattened, `-1` where a class has no ground truth.
    pub precision: Vec<f64>,
    /// `recall[t][k][a][m]` flattened, `-1` likewise.
    pub recall: Vec<f64>,
    /// `COCOeval.stats`: AP, AP50, AP75, AP small/medium/large, AR1, AR10, AR100,
    /// AR small/medium/large.
    pub stats: [f64; 12],
}

impl CocoEval {
    fn p_index(&self, t: usize, r: usize, k: usize, a: usize, m: usize) -> usize {
        (((t * self.rec_thrs.len() + r) * self.num_classes + k) * 4 + a) * 3 + m
    }

    /// Precision at (IoU threshold `t`, recall threshold `r`, class `k`, area `a`, maxDets `m`).
    pub fn precision_at(&self, t: usize, r: usize, k: usize, a: usize, m: usize) -> f64 {
        self.precision[self.p_index(t, r, k, a, m)]
    }

    /// AP of class `k` (area `all`, 100 detections) over every IoU threshold, or at threshold
    /// index `t` only; `-1` when the class has no ground truth.
    pub fn class_ap(&self, k: usize, t: Option<usize>) -> f64 {
        let ts: Vec<usize> = match t {
            Some(t) => vec![t],
            None => (0..self.iou_thrs.len()).collect(),
        };
        mean_valid(ts.iter().flat_map(|&t| (0..self.rec_thrs.len()).map(move |r| (t, r))).map(|(t, r)| self.precision_at(t, r, k, 0, 2)))
    }

    /// Per-class AP@0.5:0.95 (area `all`, 100 detections).
    pub fn per_class_ap(&self) -> Vec<f64> {
        (0..self.num_classes).map(|k| self.class_ap(k, None)).collect()
    }

    /// Per-class AP@0.5.
    pub fn per_class_ap50(&self) -> Vec<f64> {
        (0..self.num_classes).map(|k| self.class_ap(k, Some(0))).collect()
    }

    /// mAP@0.5:0.95 (`stats[0]`).
    pub fn map(&self) -> f64 {
        self.stats[0]
    }

    /// mAP@0.5 (`stats[1]`).
    pub fn map50(&self) -> f64 {
        self.stats[1]
    }

    /// The summary in `COCOeval.summarize()`'s wording, one line per stat.
    pub fn summary_lines(&self) -> Vec<String> {
        const ROWS: [(&str, &str, &str, usize); 12] = [
            ("Average Precision  (AP)", "0.50:0.95", "all", 100),
            ("Average Precision  (AP)", "0.50", "all", 100),
            ("Average Precision  (AP)", "0.75", "all", 100),
            ("Average Precision  (AP)", "0.50:0.95", "small", 100),
            ("Average Precision  (AP)", "0.50:0.95", "medium", 100),
            ("Average Precision  (AP)", "0.50:0.95", "large", 100),
            ("Average Recall     (AR)", "0.50:0.95", "all", 1),
            ("Average Recall     (AR)", "0.50:0.95", "all", 10),
            ("Average Recall     (AR)", "0.50:0.95", "all", 100),
            ("Average Recall     (AR)", "0.50:0.95", "small", 100),
            ("Average Recall     (AR)", "0.50:0.95", "medium", 100),
            ("Average Recall     (AR)", "0.50:0.95", "large", 100),
        ];
        ROWS.iter()
            .zip(self.stats)
            .map(|((what, iou, area, md), v)| format!(" {what} @[ IoU={iou:<9} | area={area:>6} | maxDets={md:>3} ] = {v:0.3}"))
            .collect()
    }
}

/// numpy `linspace(start, stop, num)`: `i · ((stop - start) / (num - 1)) + start`, last = `stop`.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    v[num - 1] = stop;
    v
}

/// Mean of the entries `> -1`, or `-1` when there is none (`summarize`'s rule).
fn mean_valid(it: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for v in it.filter(|&v| v > -1.0) {
        sum += v;
        n += 1;
    }
    if n == 0 {
        -1.0
    } else {
        sum / n as f64
    }
}

/// `maskApi.c` `bbIou` for one pair.
fn iou(d: &[f64; 4], g: &[f64; 4], crowd: bool) -> f64 {
    let w = (d[2] + d[0]).min(g[2] + g[0]) - d[0].max(g[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d[3] + d[1]).min(g[3] + g[1]) - d[1].max(g[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let i = w * h;
    let da = d[2] * d[3];
    let u = if crowd { da } else { da + g[2] * g[3] - i };
    i / u
}

/// One image's detections (sorted by score, cut to maxDets) and their IoUs with its ground truths.
type Prepared<'a> = (Vec<&'a Detection>, Vec<Vec<f64>>);

/// One `evaluateImg` result.
struct ImgEval {
    /// Scores of the kept detections, sorted.
    scores: Vec<f64>,
    /// `[t][d]`: matched.
    matched: Vec<Vec<bool>>,
    /// `[t][d]`: ignored.
    ignored: Vec<Vec<bool>>,
    /// Ignore flag per ground truth.
    gt_ignore: Vec<bool>,
}

/// Sorts indices by descending score, stable (numpy `argsort(-score, kind='mergesort')`).
fn sort_by_score(idx: &mut [usize], score: impl Fn(usize) -> f64) {
    idx.sort_by(|&a, &b| score(b).partial_cmp(&score(a)).unwrap_or(std::cmp::Ordering::Equal));
}

fn evaluate_img(gts: &[&GroundTruth], dts_sorted: &[&Detection], ious: &[Vec<f64>], rng: (f64, f64), iou_thrs: &[f64]) -> ImgEval {
    let out_of = |area: f64| area < rng.0 || area > rng.1;
    let ig: Vec<bool> = gts.iter().map(|g| g.iscrowd || out_of(g.area)).collect();
    // gt order: not ignored first (stable)
    let mut gind: Vec<usize> = (0..gts.len()).collect();
    gind.sort_by_key(|&i| ig[i]);
    let gt_ignore: Vec<bool> = gind.iter().map(|&i| ig[i]).collect();
    let crowd: Vec<bool> = gind.iter().map(|&i| gts[i].iscrowd).collect();
    let nd = dts_sorted.len();
    let mut matched = vec![vec![false; nd]; iou_thrs.len()];
    let mut ignored = vec![vec![false; nd]; iou_thrs.len()];
    if !ious.is_empty() {
        for (ti, &t) in iou_thrs.iter().enumerate() {
            let mut gt_taken = vec![false; gind.len()];
            for d in 0..nd {
                let mut best = t.min(1.0 - 1e-10);
                let mut m: Option<usize> = None;
                for (g, &orig) in gind.iter().enumerate() {
                    if gt_taken[g] && !crowd[g] {
                        continue;
                    }
                    if let Some(mm) = m {
                        if !gt_ignore[mm] && gt_ignore[g] {
                            break;
                        }
                    }
                    let v = ious[d][orig];
                    if v < best {
                        continue;
                    }
                    best = v;
                    m = Some(g);
                }
                if let Some(mm) = m {
                    ignored[ti][d] = gt_ignore[mm];
                    matched[ti][d] = true;
                    gt_taken[mm] = true;
                }
            }
        }
    }
    for (d, det) in dts_sorted.iter().enumerate() {
        if out_of(det.bbox[2] * det.bbox[3]) {
            for ti in 0..iou_thrs.len() {
                if !matched[ti][d] {
                    ignored[ti][d] = true;
                }
            }
        }
    }
    ImgEval { scores: dts_sorted.iter().map(|d| d.score).collect(), matched, ignored, gt_ignore }
}

fn check_box(
    what: &str,
    i: usize,
    image: usize,
    class: usize,
    bbox: &[f64; 4],
    num_images: usize,
    num_classes: usize,
) -> Result<(), MapError> {
    if image >= num_images {
        return Err(MapError(format!("{what} {i}: image index {image} out of range (there are {num_images} images)")));
    }
    if class >= num_classes {
        return Err(MapError(format!("{what} {i}: class {class} out of range (there are {num_classes} classes)")));
    }
    if bbox.iter().any(|v| !v.is_finite()) {
        return Err(MapError(format!("{what} {i}: box {bbox:?} is not finite")));
    }
    Ok(())
}

/// Evaluates `dts` against `gts` over `num_images` images and `num_classes` classes exactly as
/// `pycocotools` `COCOeval(..., 'bbox')` with default parameters does (see the module docs).
///
/// Within one image and class, detections of equal score keep their order in `dts`.
pub fn evaluate(num_images: usize, num_classes: usize, gts: &[GroundTruth], dts: &[Detection]) -> Result<CocoEval, MapError> {
    for (i, g) in gts.iter().enumerate() {
        check_box("ground truth", i, g.image, g.class, &g.bbox, num_images, num_classes)?;
        if !g.area.is_finite() {
            return Err(MapError(format!("ground truth {i}: area {} is not finite", g.area)));
        }
    }
    for (i, d) in dts.iter().enumerate() {
        check_box("detection", i, d.image, d.class, &d.bbox, num_images, num_classes)?;
        if !d.score.is_finite() {
            return Err(MapError(format!("detection {i}: score {} is not finite", d.score)));
        }
    }
    let iou_thrs = linspace(0.5, 0.95, 10);
    let rec_thrs = linspace(0.0, 1.0, 101);
    let max_det = MAX_DETS[2];
    let (nt, nr, nk) = (iou_thrs.len(), rec_thrs.len(), num_classes);
    // group by (class, image), keeping input order
    let mut gt_of = vec![Vec::new(); nk * num_images];
    for g in gts {
        gt_of[g.class * num_images + g.image].push(g);
    }
    let mut dt_of = vec![Vec::new(); nk * num_images];
    for d in dts {
        dt_of[d.class * num_images + d.image].push(d);
    }
    let mut precision = vec![-1.0; nt * nr * nk * 4 * 3];
    let mut recall = vec![-1.0; nt * nk * 4 * 3];
    for k in 0..nk {
        // per image: sorted, cut detections and their IoUs (computeIoU)
        let per_img: Vec<Option<Prepared>> = (0..num_images)
            .map(|i| {
                let (g, d) = (&gt_of[k * num_images + i], &dt_of[k * num_images + i]);
                if g.is_empty() && d.is_empty() {
                    return None;
                }
                let mut idx: Vec<usize> = (0..d.len()).collect();
                sort_by_score(&mut idx, |j| d[j].score);
                idx.truncate(max_det);
                let ds: Vec<&Detection> = idx.iter().map(|&j| d[j]).collect();
                let ious = if g.is_empty() || ds.is_empty() {
                    Vec::new()
                } else {
                    ds.iter().map(|det| g.iter().map(|gt| iou(&det.bbox, &gt.bbox, gt.iscrowd)).collect()).collect()
                };
                Some((ds, ious))
            })
            .collect();
        for (a, &rng) in AREA_RANGES.iter().enumerate() {
            let evals: Vec<ImgEval> = per_img
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.as_ref().map(|(ds, ious)| evaluate_img(&gt_of[k * num_images + i], ds, ious, rng, &iou_thrs)))
                .collect();
            if evals.is_empty() {
                continue;
            }
            let npig = evals.iter().flat_map(|e| e.gt_ignore.iter()).filter(|&&ig| !ig).count();
            if npig == 0 {
                continue;
            }
            for (m, &md) in MAX_DETS.iter().enumerate() {
                // concatenated (image order), then a stable sort by score
                let mut entries: Vec<(usize, usize)> = Vec::new();
                for (e, ev) in evals.iter().enumerate() {
                    entries.extend((0..ev.scores.len().min(md)).map(|d| (e, d)));
                }
                let mut order: Vec<usize> = (0..entries.len()).collect();
                sort_by_score(&mut order, |j| evals[entries[j].0].scores[entries[j].1]);
                for t in 0..nt {
                    let (mut tp, mut fp) = (0.0f64, 0.0f64);
                    let mut rc = Vec::with_capacity(order.len());
                    let mut pr = Vec::with_capacity(order.len());
                    for &j in &order {
                        let (e, d) = entries[j];
                        let (mt, ig) = (evals[e].matched[t][d], evals[e].ignored[t][d]);
                        if !ig {
                            if mt {
                                tp += 1.0;
                            } else {
                                fp += 1.0;
                            }
                        }
                        rc.push(tp / npig as f64);
                        pr.push(tp / (fp + tp + EPS));
                    }
                    let nd = rc.len();
                    recall[((t * nk + k) * 4 + a) * 3 + m] = rc.last().copied().unwrap_or(0.0);
                    for i in (1..nd).rev() {
                        if pr[i] > pr[i - 1] {
                            pr[i - 1] = pr[i];
                        }
                    }
                    for (r, &thr) in rec_thrs.iter().enumerate() {
                        let pi = rc.partition_point(|&x| x < thr);
                        let q = if pi < nd { pr[pi] } else { 0.0 };
                        precision[(((t * nr + r) * nk + k) * 4 + a) * 3 + m] = q;
                    }
                }
            }
        }
    }
    let mut ev = CocoEval { iou_thrs, rec_thrs, num_classes: nk, precision, recall, stats: [0.0; 12] };
    ev.stats = summarize(&ev);
    Ok(ev)
}

fn summarize(ev: &CocoEval) -> [f64; 12] {
    let (nt, nr, nk) = (ev.iou_thrs.len(), ev.rec_thrs.len(), ev.num_classes);
    let t75 = ev.iou_thrs.iter().position(|&t| t == 0.75);
    let ap = |t: Option<usize>, a: usize, m: usize| -> f64 {
        let ts: Vec<usize> = t.map_or_else(|| (0..nt).collect(), |t| vec![t]);
        mean_valid(ts.iter().flat_map(|&t| (0..nr).flat_map(move |r| (0..nk).map(move |k| ev.precision_at(t, r, k, a, m)))))
    };
    let ar =
        |a: usize, m: usize| -> f64 { mean_valid((0..nt).flat_map(|t| (0..nk).map(move |k| ev.recall[((t * nk + k) * 4 + a) * 3 + m]))) };
    [
        ap(None, 0, 2),
        ap(Some(0), 0, 2),
        t75.map_or(-1.0, |t| ap(Some(t), 0, 2)),
        ap(None, 1, 2),
        ap(None, 2, 2),
        ap(None, 3, 2),
        ar(0, 0),
        ar(0, 1),
        ar(0, 2),
        ar(1, 2),
        ar(2, 2),
        ar(3, 2),
    ]
}
