//! The float reference of the device's detection post-process (DetectPostprocess, op 17): the
//! same rules in `f64` on the FP32 head outputs — score threshold, class-aware or agnostic
//! candidates, top-k by score then candidate index, DFL decode (softmax expectation × stride
//! from the cell centre, clipped to the image), greedy NMS (`IoU > threshold` suppresses),
//! `max_det`.

use super::head::{BoundHead, ScoreKind};

/// One detection on the model input, `[x1, y1, x2, y2]` pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputDet {
    /// Box on the model input.
    pub xyxy: [f32; 4],
    /// Score in `[0, 1]`.
    pub score: f32,
    /// Class index.
    pub class: usize,
}

/// Decodes one image's FP32 head outputs: `outs[2·l]` scores and `outs[2·l + 1]` boxes of level
/// `l`, each NCHW `[1, C, H, W]` as the bound graph computes them.
pub fn decode(head: &BoundHead, outs: &[&[f32]]) -> Vec<InputDet> {
    let cfg = &head.cfg;
    let c = cfg.num_classes;
    let score = |v: f32| -> f64 {
        let p = match cfg.score {
            ScoreKind::Logits => 1.0 / (1.0 + (-(v as f64)).exp()),
            ScoreKind::Probabilities => v as f64,
        };
        p.clamp(0.0, 1.0)
    };
    let thr = cfg.score_threshold as f64;
    // Candidates: (score, global index, level, cell).
    let mut cands: Vec<(f64, usize, usize, usize)> = Vec::new();
    let mut first = 0;
    for (li, l) in head.levels.iter().enumerate() {
        let s = outs[2 * li];
        let hw = l.h * l.w;
        for cell in 0..hw {
            let at = |cls: usize| score(s[cls * hw + cell]);
            if cfg.class_aware {
                for cls in 0..c {
                    let v = at(cls);
                    if v >= thr {
                        cands.push((v, (first + cell) * c + cls, li, cell));
                    }
                }
            } else {
                let mut best = 0;
                for cls in 1..c {
                    if at(cls) > at(best) {
                        best = cls;
                    }
                }
                let v = at(best);
                if v >= thr {
                    cands.push((v, (first + cell) * c + best, li, cell));
                }
            }
        }
        first += hw;
    }
    cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    cands.truncate(cfg.top_k);
    let bins = cfg.reg_max + 1;
    let (iw, ih) = (head.image_w as f64, head.image_h as f64);
    let mut kept: Vec<InputDet> = Vec::new();
    for (sc, idx, li, cell) in cands {
        if kept.len() == cfg.max_det {
            break;
        }
        let cls = idx % c;
        let l = head.levels[li];
        let bx = outs[2 * li + 1];
        let hw = l.h * l.w;
        let side = |k: usize| -> f64 {
            let v: Vec<f64> = (0..bins).map(|j| bx[(k * bins + j) * hw + cell] as f64).collect();
            let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = v.iter().map(|x| (x - m).exp()).collect();
            let sum: f64 = e.iter().sum();
            e.iter().enumerate().map(|(j, p)| j as f64 * p).sum::<f64>() / sum * l.stride as f64
        };
        let (x, y) = ((cell % l.w) as f64, (cell / l.w) as f64);
        let (cx, cy) = ((x + 0.5) * l.stride as f64, (y + 0.5) * l.stride as f64);
        let b =
            [(cx - side(0)).clamp(0.0, iw), (cy - side(1)).clamp(0.0, ih), (cx + side(2)).clamp(0.0, iw), (cy + side(3)).clamp(0.0, ih)];
        let area = |b: &[f64; 4]| (b[2] - b[0]) * (b[3] - b[1]);
        let suppressed = kept.iter().filter(|k| !cfg.class_aware || k.class == cls).any(|k| {
            let o = k.xyxy.map(|v| v as f64);
            let inter = (b[2].min(o[2]) - b[0].max(o[0])).max(0.0) * (b[3].min(o[3]) - b[1].max(o[1])).max(0.0);
            let union = area(&b) + area(&o) - inter;
            inter > cfg.iou_threshold as f64 * union
        });
        if !suppressed {
            kept.push(InputDet { xyxy: b.map(|v| v as f32), score: sc as f32, class: cls });
        }
    }
    kept
}
