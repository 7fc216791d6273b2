//! A synthetic anchor-free detection head (GFL/DFL: per level scores `[1, H·W, C]` and box
//! distributions `[1, H·W, 4·(R+1)]`) with planted objects, for the DetectPostprocess tests
//! and benchmarks.

use crate::Rng;
use temper_kernels::QParams;
use temper_runtime::ops::detect_postprocess::{DetectConfig, DetectLevel};
use temper_runtime::writer::Builder;

/// Int8 head outputs and their quantization.
#[derive(Clone, Debug)]
pub struct DetHead {
    /// Input image width, height in pixels.
    pub image: (usize, usize),
    /// Stride per level.
    pub strides: Vec<usize>,
    /// Classes.
    pub classes: usize,
    /// Bins per side minus one.
    pub reg_max: usize,
    /// Scores per level, `[H·W, C]`.
    pub scores: Vec<Vec<i8>>,
    /// Box distributions per level, `[H·W, 4, R+1]`.
    pub boxes: Vec<Vec<i8>>,
    /// Score quantization per level.
    pub qs: Vec<QParams>,
    /// Box quantization per level.
    pub qb: Vec<QParams>,
}

impl DetHead {
    /// `(H, W)` of level `l`.
    pub fn grid(&self, l: usize) -> (usize, usize) {
        let s = self.strides[l];
        (self.image.1.div_ceil(s), self.image.0.div_ceil(s))
    }

    /// Random background scores in `[-128, bg_hi]` (a different quantization per level), box
    /// distributions uniform noise, and `planted` objects: a cell with one class scored high
    /// and peaked distributions, plus a weaker duplicate in a neighbouring cell of the same
    /// class (NMS food).
    pub fn random(
        seed: u64,
        image: (usize, usize),
        strides: &[usize],
        classes: usize,
        reg_max: usize,
        bg_hi: i32,
        planted: usize,
    ) -> DetHead {
        let mut r = Rng(seed);
        let mut h = DetHead {
            image,
            strides: strides.to_vec(),
            classes,
            reg_max,
            scores: Vec::new(),
            boxes: Vec::new(),
            qs: Vec::new(),
            qb: Vec::new(),
        };
        let bins = reg_max + 1;
        for l in 0..strides.len() {
            let (gh, gw) = h.grid(l);
            h.scores.push((0..gh * gw * classes).map(|_| r.int(-128, bg_hi) as i8).collect());
            h.boxes.push((0..gh * gw * 4 * bins).map(|_| r.int(-128, 127) as i8).collect());
            h.qs.push(QParams { scale: 0.06 + 0.01 * l as f32, zero_point: -20 + 7 * l as i32 });
            h.qb.push(QParams { scale: 0.12 + 0.03 * l as f32, zero_point: 3 - 2 * l as i32 });
        }
        for _ in 0..planted {
            let l = r.int(0, strides.len() as i32 - 1) as usize;
            let (gh, gw) = h.grid(l);
            let (y, x) = (r.int(0, gh as i32 - 1) as usize, r.int(0, gw as i32 - 1) as usize);
            let cls = r.int(0, classes as i32 - 1) as usize;
            let sides: Vec<f32> = (0..4).map(|_| r.uniform(0.3, reg_max as f32 - 0.3)).collect();
            let neighbour = y * gw + (x + 1).min(gw - 1);
            for (cell, hi) in [(y * gw + x, 127), (neighbour, 90)] {
                h.scores[l][cell * classes + cls] = r.int(hi - 30, hi) as i8;
                for (k, &t) in sides.iter().enumerate() {
                    for j in 0..bins {
                        let v = 100.0 - 60.0 * (j as f32 - t).abs() + r.uniform(-8.0, 8.0);
                        h.boxes[l][(cell * 4 + k) * bins + j] = v.clamp(-128.0, 127.0) as i8;
                    }
                }
            }
        }
        h
    }

    /// A post-process model over this head: graph inputs `scores₀, boxes₀, …` (rank 3), output
    /// the detections.
    pub fn build(&self, cfg: &DetectConfig) -> Vec<u8> {
        let mut b = Builder::new("detect");
        let mut levels = Vec::new();
        for l in 0..self.strides.len() {
            let (gh, gw) = self.grid(l);
            let s = b.activation(&format!("scores{l}"), &[1, gh * gw, self.classes], self.qs[l]);
            let x = b.activation(&format!("boxes{l}"), &[1, gh * gw, 4 * (self.reg_max + 1)], self.qb[l]);
            b.input(s);
            b.input(x);
            levels.push(DetectLevel { scores: s, boxes: x, stride: self.strides[l] });
        }
        let y = b.detect_postprocess("post", &levels, cfg).expect("valid config");
        b.output(y);
        b.finish().expect("builds and validates")
    }

    /// The default configuration for this head.
    pub fn config(&self, logits: bool, class_aware: bool) -> DetectConfig {
        DetectConfig {
            classes: self.classes,
            reg_max: self.reg_max,
            image_w: self.image.0,
            image_h: self.image.1,
            score_threshold: 0.45,
            iou_threshold: 0.5,
            class_aware,
            top_k: 200,
            max_det: 50,
            logits,
        }
    }

    /// The graph inputs in order (`scores₀, boxes₀, …`).
    pub fn inputs(&self) -> Vec<&[i8]> {
        self.scores.iter().zip(&self.boxes).flat_map(|(s, b)| [&s[..], &b[..]]).collect()
    }
}
