//! DetectPostprocess (code 17): the post-process of an anchor-free detection head (GFL / DFL:
//! PicoDet, PP-YOLOE, YOLOv8): score threshold on the int8 scores, top-k, DFL box decode of the
//! candidates only, greedy NMS (class-aware or class-agnostic), a fixed-size detections record.
//!
//! Inputs, for `L` FPN levels: `scores₀, boxes₀, …, scores_{L−1}, boxes_{L−1}`, then three
//! constants:
//!
//! * `scores_l`: int8 activation `[1, H·W, C]` or `[1, H, W, C]` (cells row-major, `y·W + x`);
//! * `boxes_l`: int8 activation `[1, H·W, 4·(R+1)]` or `[1, H, W, 4·(R+1)]`: the distributions
//!   of the distances left, top, right, bottom (side-major: bins `k·(R+1) .. (k+1)·(R+1)`);
//!   `H = ⌈image_h / stride_l⌉`, `W = ⌈image_w / stride_l⌉`;
//! * `levels`: i32 `[L, 2]`: `stride_l`, `threshold_l` — a candidate is a score `q ≥
//!   threshold_l` (int8 compare; `128` keeps nothing). The writer computes it from the float
//!   threshold through the inverse of the score map;
//! * `score_map`: f32 `[L, 256]`: the score of int8 value `q` at index `q + 128`
//!   (`sigmoid((q − z)·s)` for logits, `(q − z)·s` for probabilities, clamped to `[0, 1]`),
//!   non-decreasing;
//! * `exp`: i32 `[L, 256]`: `round(2³⁰ · exp(−d · s_boxes_l))` at index `d` (entry 0 is 2³⁰),
//!   non-increasing.
//!
//! Params: [`DetectParams`]. Output: int8 arena tensor `[1, 1 + max_det, 24]` (scale 1, zero
//! point 0) holding little-endian records, read with [`detections`]: row 0 is the count (i32)
//! and 20 zero bytes; row `1 + k` is detection `k`: `x1, y1, x2, y2, score` (f32) and `class`
//! (i32); rows past the count are zero. Detections are in descending score order.
//!
//! Arithmetic (integer, the same bits on every target): per side, `m = max_j q_j`,
//! `e_j = exp[m − q_j]`, distance `d = round_half_up(Σ j·e_j · stride · 256 / Σ e_j)` in
//! 1/256 pixel; the cell centre is `(x + ½)·stride`; `x1 = cx − d_left` etc., clipped to
//! `[0, image_w] × [0, image_h]`; the f32 coordinate is that 1/256-pixel integer divided by
//! 256 (exact). NMS suppresses a box when `inter · 65536 > iou_q16 · union` (areas in
//! 1/65536 px², i64) against a kept box (of the same class when class-aware). Ranking: score
//! descending, then candidate index `(cell + cells of earlier levels) · C + class` ascending.
//! Class-aware: every `(cell, class)` above the threshold is a candidate; class-agnostic: each
//! cell's best class by score (lowest index on ties) only.
//!
//! Scratch: `8 · top_k` bytes (a bounded min-heap of candidate keys) + `20 · max_det` bytes
//! (kept boxes).

use super::check::numel;
use super::exec::range;
use super::{regions, Check, Exec, OpDef, OpParams};
use crate::error::LoadError;
use crate::format::{DType, Layout, TensorRecord, OP_PARAMS};
use core::ops::Range;

pub(crate) const DEF: OpDef = OpDef { validate, scratch, run };

/// Most FPN levels.
pub const MAX_LEVELS: usize = 8;
/// Most classes.
pub const MAX_CLASSES: usize = 4096;
/// Largest `reg_max` (distributions of `reg_max + 1` bins).
pub const MAX_REG_MAX: usize = 64;
/// Largest `top_k`.
pub const MAX_TOP_K: usize = 16384;
/// Largest `max_det`.
pub const MAX_DET: usize = 1024;
/// Largest image side and stride, in pixels.
pub const MAX_IMAGE: usize = 16384;
/// Largest stride.
pub const MAX_STRIDE: usize = 1024;
/// Bytes per output record.
pub const RECORD: usize = 24;
/// `exp` table entry 0 (Q30 one).
pub const EXP_ONE: i32 = 1 << 30;

/// Parameters of DetectPostprocess (slots 0..10 in this order; slots 10..16 are 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DetectParams {
    /// Input form: 0 (GFL/DFL distributions per level; the only form of format v1.0).
    pub form: u32,
    /// FPN levels `L` (1..=8).
    pub levels: usize,
    /// Classes `C` (1..=4096).
    pub classes: usize,
    /// `R`: each side's distribution has `R + 1` bins (1..=64).
    pub reg_max: usize,
    /// IoU threshold in 1/65536 (0..=65536).
    pub iou_q16: u32,
    /// NMS per class (true) or across classes (false).
    pub class_aware: bool,
    /// Candidates kept for NMS, the best first (1..=16384).
    pub top_k: usize,
    /// Detections written at most (1..=1024).
    pub max_det: usize,
    /// Input image width in pixels (1..=16384).
    pub image_w: usize,
    /// Input image height in pixels (1..=16384).
    pub image_h: usize,
}

impl OpParams for DetectParams {
    fn encode(&self) -> [i32; OP_PARAMS] {
        let mut p = [0; OP_PARAMS];
        let v = [
            self.form as usize,
            self.levels,
            self.classes,
            self.reg_max,
            self.iou_q16 as usize,
            self.class_aware as usize,
            self.top_k,
            self.max_det,
            self.image_w,
            self.image_h,
        ];
        for (s, x) in p.iter_mut().zip(v) {
            *s = x.min(i32::MAX as usize) as i32;
        }
        p
    }
    fn decode(p: &[i32; OP_PARAMS]) -> Self {
        let g = |k: usize, hi: usize| (p[k].max(0) as usize).min(hi);
        DetectParams {
            form: g(0, u32::MAX as usize) as u32,
            levels: g(1, MAX_LEVELS),
            classes: g(2, MAX_CLASSES),
            reg_max: g(3, MAX_REG_MAX),
            iou_q16: g(4, 65536) as u32,
            class_aware: p[5] != 0,
            top_k: g(6, MAX_TOP_K),
            max_det: g(7, MAX_DET),
            image_w: g(8, MAX_IMAGE),
            image_h: g(9, MAX_IMAGE),
        }
    }
}

fn scratch(p: &[i32; OP_PARAMS], _: &[u32], _: &[u32]) -> usize {
    let d = DetectParams::decode(p);
    8 * d.top_k + 20 * d.max_det
}

/// Cells of a level: `(H, W)`.
fn grid(d: &DetectParams, stride: usize) -> (usize, usize) {
    (d.image_h.div_ceil(stride.max(1)), d.image_w.div_ceil(stride.max(1)))
}

fn validate(c: &Check<'_, '_>) -> Result<(), LoadError> {
    let p = c.p;
    let within = |k: usize, lo: i32, hi: i32, what: &'static str| {
        if p[k] < lo || p[k] > hi {
            return Err(c.err(what).with(p[k] as i64, hi as i64));
        }
        Ok(())
    };
    within(0, 0, 0, "detection post-process: unknown input form")?;
    within(1, 1, MAX_LEVELS as i32, "detection post-process: levels out of 1..=8")?;
    within(2, 1, MAX_CLASSES as i32, "detection post-process: classes out of 1..=4096")?;
    within(3, 1, MAX_REG_MAX as i32, "detection post-process: reg_max out of 1..=64")?;
    within(4, 0, 65536, "detection post-process: IoU threshold out of 0..=65536 (1/65536)")?;
    within(5, 0, 1, "detection post-process: class_aware must be 0 or 1")?;
    within(6, 1, MAX_TOP_K as i32, "detection post-process: top_k out of 1..=16384")?;
    within(7, 1, MAX_DET as i32, "detection post-process: max_det out of 1..=1024")?;
    within(8, 1, MAX_IMAGE as i32, "detection post-process: image width out of 1..=16384")?;
    within(9, 1, MAX_IMAGE as i32, "detection post-process: image height out of 1..=16384")?;
    if let Some(k) = (10..OP_PARAMS).find(|&k| p[k] != 0) {
        return Err(c.err("detection post-process: unused params are not zero").with(k as i64, p[k] as i64));
    }
    let d: DetectParams = c.params();
    let l = d.levels;
    c.arity(2 * l + 3)?;
    let lv = c.cst(c.ins[2 * l], DType::I32, Layout::Plain)?;
    let sm = c.cst(c.ins[2 * l + 1], DType::F32, Layout::Plain)?;
    let ex = c.cst(c.ins[2 * l + 2], DType::I32, Layout::Plain)?;
    if numel(lv) != 2 * l || numel(sm) != 256 * l || numel(ex) != 256 * l {
        return Err(c.err("detection post-process: tables must be levels [L, 2], score map [L, 256], exp [L, 256]"));
    }
    let levels = c.m.const_i32(c.ins[2 * l]);
    let exp = c.m.const_i32(c.ins[2 * l + 2]);
    let smap = c.m.const_bytes(c.ins[2 * l + 1]);
    let mut cells = 0u64;
    for k in 0..l {
        let (stride, thr) = (levels[2 * k], levels[2 * k + 1]);
        if stride < 1 || stride > MAX_STRIDE as i32 {
            return Err(c.err("detection post-process: stride out of 1..=1024").with(k as i64, stride as i64));
        }
        if !(-128..=128).contains(&thr) {
            return Err(c.err("detection post-process: score threshold out of -128..=128").with(k as i64, thr as i64));
        }
        let t = &exp[256 * k..256 * (k + 1)];
        if t[0] != EXP_ONE || t.windows(2).any(|w| w[1] > w[0] || w[1] < 0) {
            return Err(c.err("detection post-process: exp table must start at 2^30 and not increase, >= 0").with(k as i64, 0));
        }
        let mut prev = 0f32;
        for q in 0..256 {
            let b = &smap[4 * (256 * k + q)..4 * (256 * k + q) + 4];
            let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if !(0.0..=1.0).contains(&v) || v < prev {
                return Err(c.err("detection post-process: score map must lie in [0, 1] and not decrease").with(k as i64, q as i64));
            }
            prev = v;
        }
        let (h, w) = grid(&d, stride as usize);
        let s = c.act(c.ins[2 * k])?;
        let b = c.act(c.ins[2 * k + 1])?;
        let shape_ok = |r: &TensorRecord, last: usize| match r.rank {
            3 => r.dims[..3] == [1, (h * w) as u32, last as u32],
            4 => r.dims[..4] == [1, h as u32, w as u32, last as u32],
            _ => false,
        };
        if !shape_ok(s, d.classes) {
            return Err(c.err("detection post-process: scores must be [1, H*W, C] or [1, H, W, C], H = ceil(image_h / stride)")
                .with(k as i64, (h * w) as i64));
        }
        if !shape_ok(b, 4 * (d.reg_max + 1)) {
            return Err(c.err("detection post-process: boxes must be [1, H*W, 4*(reg_max+1)] or [1, H, W, 4*(reg_max+1)]")
                .with(k as i64, (h * w) as i64));
        }
        cells += (h * w) as u64;
    }
    if cells * d.classes as u64 >= u32::MAX as u64 {
        return Err(c.err("detection post-process: cells times classes too large").with(cells as i64, d.classes as i64));
    }
    let acts = &c.ins[..2 * l];
    if acts.iter().enumerate().any(|(i, a)| acts[..i].contains(a)) {
        return Err(c.err("detection post-process: a score or box tensor is given twice"));
    }
    let y = c.y;
    if y.rank != 3 || y.dims[..3] != [1, 1 + d.max_det as u32, RECORD as u32] || y.scale != 1.0 || y.zero_point != 0 {
        return Err(c.err("detection post-process: output must be [1, 1 + max_det, 24] with scale 1, zero point 0")
            .with(y.dims[1] as i64, 1 + d.max_det as i64));
    }
    Ok(())
}

/// One detection, as read back from the output records.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    /// Left, in input pixels.
    pub x1: f32,
    /// Top.
    pub y1: f32,
    /// Right.
    pub x2: f32,
    /// Bottom.
    pub y2: f32,
    /// Score in `[0, 1]`.
    pub score: f32,
    /// Class index.
    pub class: i32,
}

fn word(b: &[u8], at: usize) -> [u8; 4] {
    match b.get(at..at + 4) {
        Some(w) => [w[0], w[1], w[2], w[3]],
        None => [0; 4],
    }
}

/// The detections in an output tensor of DetectPostprocess (the bytes of
/// `Session::output_i8`); nothing when the bytes are not such an output.
pub fn detections(out: &[i8]) -> impl Iterator<Item = Detection> + '_ {
    let b: &[u8] = bytemuck::cast_slice(out);
    let n = (i32::from_le_bytes(word(b, 0)).max(0) as usize).min((b.len() / RECORD).saturating_sub(1));
    (0..n).map(move |k| {
        let r = RECORD * (k + 1);
        let f = |i: usize| f32::from_le_bytes(word(b, r + 4 * i));
        Detection { x1: f(0), y1: f(1), x2: f(2), y2: f(3), score: f(4), class: i32::from_le_bytes(word(b, r + 20)) }
    })
}

/// The min-heap of candidate keys (`score bits << 32 | !index`: larger is better) in scratch.
struct Heap<'s> {
    b: &'s mut [u8],
    n: usize,
}

impl Heap<'_> {
    fn get(&self, i: usize) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&self.b[8 * i..8 * i + 8]);
        u64::from_le_bytes(a)
    }
    fn set(&mut self, i: usize, v: u64) {
        self.b[8 * i..8 * i + 8].copy_from_slice(&v.to_le_bytes());
    }
    fn down(&mut self, mut i: usize, n: usize) {
        let v = self.get(i);
        loop {
            let l = 2 * i + 1;
            if l >= n {
                break;
            }
            let mut m = l;
            if l + 1 < n && self.get(l + 1) < self.get(l) {
                m = l + 1;
            }
            let mv = self.get(m);
            if mv >= v {
                break;
            }
            self.set(i, mv);
            i = m;
        }
        self.set(i, v);
    }
    /// Offer a key; keeps the `cap` largest.
    fn offer(&mut self, key: u64, cap: usize) {
        if self.n < cap {
            let mut i = self.n;
            self.n += 1;
            while i > 0 {
                let parent = (i - 1) / 2;
                let pv = self.get(parent);
                if pv <= key {
                    break;
                }
                self.set(i, pv);
                i = parent;
            }
            self.set(i, key);
        } else if key > self.get(0) {
            self.set(0, key);
            self.down(0, self.n);
        }
    }
    /// Sort in place, largest key first.
    fn sort_desc(&mut self) {
        let mut n = self.n;
        while n > 1 {
            let (a, b) = (self.get(0), self.get(n - 1));
            self.set(0, b);
            self.set(n - 1, a);
            n -= 1;
            self.down(0, n);
        }
    }
}

/// What `run` needs of one level.
#[derive(Clone, Copy, Default)]
struct Level {
    stride: i64,
    thr: i32,
    w: usize,
    first: usize,
}

/// Decode one side's distance in 1/256 pixel.
fn distance(bins: &[i8], exp: &[i32], stride: i64) -> i64 {
    let m = bins.iter().copied().max().unwrap_or(0);
    let (mut s, mut n) = (0u64, 0u64);
    for (j, &q) in bins.iter().enumerate() {
        let e = exp[(m as i32 - q as i32) as usize & 255].max(0) as u64;
        s += e;
        n += j as u64 * e;
    }
    let s = s.max(1);
    ((n * stride as u64 * 256 + s / 2) / s) as i64
}

fn run(e: &mut Exec<'_, '_>) {
    let d: DetectParams = e.params();
    let l = d.levels;
    let (levels_t, exp_t) = (e.const_i32(2 * l), e.const_i32(2 * l + 2));
    let smap = e.m.const_bytes(e.op.inputs[2 * l + 1]);
    let score_bits = |k: usize, q: i8| u32::from_le_bytes(word(smap, 4 * (256 * k + (q as i32 + 128) as usize)));
    let mut lv = [Level::default(); MAX_LEVELS];
    let mut ranges: [Range<usize>; 2 * MAX_LEVELS + 2] = core::array::from_fn(|_| 0..0);
    let mut first = 0;
    for k in 0..l {
        let stride = levels_t[2 * k] as usize;
        let (h, w) = grid(&d, stride);
        lv[k] = Level { stride: stride as i64, thr: levels_t[2 * k + 1], w, first };
        first += h * w;
        ranges[2 * k] = range(&e.input(2 * k));
        ranges[2 * k + 1] = range(&e.input(2 * k + 1));
    }
    let (out_r, scr) = (range(&e.output()), e.scratch());
    ranges[2 * MAX_LEVELS] = out_r;
    ranges[2 * MAX_LEVELS + 1] = scr.start..scr.start + 8 * d.top_k + 20 * d.max_det;
    let [s0, b0, s1, b1, s2, b2, s3, b3, s4, b4, s5, b5, s6, b6, s7, b7, out, scratch] = regions(&mut *e.arena, ranges);
    let scores: [&[u8]; MAX_LEVELS] = [s0, s1, s2, s3, s4, s5, s6, s7];
    let boxes: [&[u8]; MAX_LEVELS] = [b0, b1, b2, b3, b4, b5, b6, b7];
    let (heap_b, kept) = scratch.split_at_mut(8 * d.top_k);
    let mut heap = Heap { b: heap_b, n: 0 };
    let c = d.classes;
    // 1. Threshold on the int8 scores, keep the top_k keys.
    for k in 0..l {
        let s: &[i8] = bytemuck::cast_slice(scores[k]);
        // Once the heap is full, a candidate must score at least its smallest key: raise the
        // int8 threshold to the least q whose score reaches it (binary search on the monotone
        // map). Only a speed-up: `offer` compares the full keys.
        let floor = |heap: &Heap<'_>| {
            if heap.n < d.top_k {
                return lv[k].thr;
            }
            let root = (heap.get(0) >> 32) as u32;
            let (mut lo, mut hi) = (-128i32, 128i32);
            while lo < hi {
                let mid = (lo + hi) >> 1; // floor: lo <= mid < hi
                if score_bits(k, mid as i8) >= root {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            lo.max(lv[k].thr)
        };
        let mut thr = floor(&heap);
        for (cell, row) in s.chunks_exact(c).enumerate() {
            // Row maximum first (as u8 with the sign bit flipped: order-preserving, and a loop
            // compilers vectorize), so most rows cost one pass.
            let top = row.iter().fold(0u8, |m, &q| m.max(q as u8 ^ 0x80)) as i32 - 128;
            if top < thr {
                continue;
            }
            let base = (lv[k].first + cell) * c;
            if d.class_aware {
                for (cls, &q) in row.iter().enumerate() {
                    if q as i32 >= thr {
                        heap.offer(((score_bits(k, q) as u64) << 32) | !((base + cls) as u32) as u64, d.top_k);
                        thr = floor(&heap);
                    }
                }
            } else {
                // The best score (the map may clamp several q to it), lowest class first.
                let bits = score_bits(k, top as i8);
                let best = row.iter().position(|&q| score_bits(k, q) == bits).unwrap_or(0);
                heap.offer(((bits as u64) << 32) | !((base + best) as u32) as u64, d.top_k);
                thr = floor(&heap);
            }
        }
    }
    heap.sort_desc();
    // 2. Decode the candidates in rank order; greedy NMS against the kept boxes.
    let bins = d.reg_max + 1;
    let (iw, ih) = (d.image_w as i64 * 256, d.image_h as i64 * 256);
    let mut n_kept = 0usize;
    for i in 0..heap.n {
        if n_kept == d.max_det {
            break;
        }
        let key = heap.get(i);
        let idx = !(key as u32) as usize;
        let (gcell, cls) = (idx / c, idx % c);
        let k = (0..l).rev().find(|&k| lv[k].first <= gcell).unwrap_or(0);
        let cell = gcell - lv[k].first;
        let lvk = lv[k];
        let row = &bytemuck::cast_slice::<u8, i8>(boxes[k])[cell * 4 * bins..(cell + 1) * 4 * bins];
        let ex = &exp_t[256 * k..256 * (k + 1)];
        let side = |j: usize| distance(&row[j * bins..(j + 1) * bins], ex, lvk.stride);
        let (x, y) = ((cell % lvk.w) as i64, (cell / lvk.w.max(1)) as i64);
        let (cx, cy) = ((2 * x + 1) * lvk.stride * 128, (2 * y + 1) * lvk.stride * 128);
        let bx = [
            (cx - side(0)).clamp(0, iw),
            (cy - side(1)).clamp(0, ih),
            (cx + side(2)).clamp(0, iw),
            (cy + side(3)).clamp(0, ih),
        ];
        let area = |b: &[i64; 4]| (b[2] - b[0]) * (b[3] - b[1]);
        let mut suppressed = false;
        for kb in kept[..20 * n_kept].chunks_exact(20) {
            let g = |t: usize| i32::from_le_bytes([kb[4 * t], kb[4 * t + 1], kb[4 * t + 2], kb[4 * t + 3]]) as i64;
            if d.class_aware && g(4) != cls as i64 {
                continue;
            }
            let other = [g(0), g(1), g(2), g(3)];
            let iw_ = (bx[2].min(other[2]) - bx[0].max(other[0])).max(0);
            let ih_ = (bx[3].min(other[3]) - bx[1].max(other[1])).max(0);
            let inter = iw_ * ih_;
            let union = area(&bx) + area(&other) - inter;
            if inter * 65536 > d.iou_q16 as i64 * union {
                suppressed = true;
                break;
            }
        }
        if suppressed {
            continue;
        }
        let kb = &mut kept[20 * n_kept..20 * n_kept + 20];
        for (t, v) in bx.iter().chain(&[cls as i64]).enumerate() {
            kb[4 * t..4 * t + 4].copy_from_slice(&(*v as i32).to_le_bytes());
        }
        let rec = &mut out[RECORD * (n_kept + 1)..RECORD * (n_kept + 2)];
        for (t, v) in bx.iter().enumerate() {
            rec[4 * t..4 * t + 4].copy_from_slice(&(*v as f32 / 256.0).to_le_bytes());
        }
        rec[16..20].copy_from_slice(&((key >> 32) as u32).to_le_bytes());
        rec[20..24].copy_from_slice(&(cls as i32).to_le_bytes());
        n_kept += 1;
    }
    out[..RECORD].fill(0);
    out[..4].copy_from_slice(&(n_kept as i32).to_le_bytes());
    out[RECORD * (n_kept + 1)..].fill(0);
}

#[cfg(feature = "writer")]
pub use build::{DetectConfig, DetectLevel};

#[cfg(feature = "writer")]
mod build {
    use super::{DetectParams, EXP_ONE, MAX_CLASSES, MAX_DET, MAX_LEVELS, MAX_REG_MAX, MAX_TOP_K, RECORD};
    use crate::format::OpCode;
    use crate::writer::{err, BuildError, Builder};
    use alloc::format;
    use alloc::vec::Vec;
    use temper_kernels::QParams;

    /// One FPN level of a detection head: its score and box-distribution tensors and stride.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct DetectLevel {
        /// Class scores `[1, H·W, C]` or `[1, H, W, C]`.
        pub scores: u32,
        /// Box distributions `[1, H·W, 4·(reg_max+1)]` or `[1, H, W, 4·(reg_max+1)]`.
        pub boxes: u32,
        /// Stride in input pixels.
        pub stride: usize,
    }

    /// The float configuration of a detection post-process.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub struct DetectConfig {
        /// Classes.
        pub classes: usize,
        /// Bins per side minus one.
        pub reg_max: usize,
        /// Input image width in pixels.
        pub image_w: usize,
        /// Input image height in pixels.
        pub image_h: usize,
        /// Keep candidates whose score is at least this (in `[0, 1]`).
        pub score_threshold: f32,
        /// Suppress a box whose IoU with a kept one is above this (in `[0, 1]`).
        pub iou_threshold: f32,
        /// NMS per class (true) or across classes (false; each cell's best class only).
        pub class_aware: bool,
        /// Candidates kept for NMS.
        pub top_k: usize,
        /// Detections written at most.
        pub max_det: usize,
        /// Scores are logits (sigmoid applied) rather than probabilities.
        pub logits: bool,
    }

    /// The score of int8 `q` under `s` (f64, before the f32 rounding of the map).
    fn score(q: i32, s: QParams, logits: bool) -> f64 {
        let v = (q - s.zero_point) as f64 * s.scale as f64;
        let p = if logits { 1.0 / (1.0 + (-v).exp()) } else { v };
        p.clamp(0.0, 1.0)
    }

    impl Builder {
        /// Add a detection post-process over `levels` (see the module documentation); creates
        /// and returns its output, `[1, 1 + max_det, 24]` records read with
        /// [`super::detections`]. The int8 score thresholds are the inverse of the score map at
        /// `score_threshold` (the least `q` whose score reaches it); the exp tables come from
        /// the box tensors' scales.
        pub fn detect_postprocess(&mut self, name: &str, levels: &[DetectLevel], cfg: &DetectConfig) -> Result<u32, BuildError> {
            let bad = |what: &str| err(format!("{name}: {what}"));
            if !(0.0..=1.0).contains(&cfg.score_threshold) || !(0.0..=1.0).contains(&cfg.iou_threshold) {
                return bad("score and IoU thresholds must be numbers in [0, 1]");
            }
            if levels.is_empty() || levels.len() > MAX_LEVELS {
                return bad("1..=8 levels");
            }
            let ok = |v: usize, hi: usize| (1..=hi).contains(&v);
            if !ok(cfg.classes, MAX_CLASSES) || !ok(cfg.reg_max, MAX_REG_MAX) || !ok(cfg.top_k, MAX_TOP_K) || !ok(cfg.max_det, MAX_DET) {
                return bad("classes, reg_max, top_k or max_det out of range");
            }
            let (mut lv, mut smap, mut exp, mut ins) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for l in levels {
                let (qs, qb) = (self.qparams(l.scores), self.qparams(l.boxes));
                let thr = (-128..=127).find(|&q| score(q, qs, cfg.logits) >= cfg.score_threshold as f64).unwrap_or(128);
                lv.extend([i32::try_from(l.stride).unwrap_or(i32::MAX), thr]);
                smap.extend((-128..=127).map(|q| score(q, qs, cfg.logits) as f32));
                exp.push(EXP_ONE);
                exp.extend((1..256).map(|d| ((-(d as f64) * qb.scale as f64).exp() * EXP_ONE as f64).round() as i32));
                ins.extend([l.scores, l.boxes]);
            }
            let n = levels.len();
            ins.push(self.const_i32(&format!("{name}.levels"), &[n, 2], &lv));
            ins.push(self.const_f32(&format!("{name}.score_map"), &[n, 256], &smap));
            ins.push(self.const_i32(&format!("{name}.exp"), &[n, 256], &exp));
            let y = self.activation(&format!("{name}.detections"), &[1, 1 + cfg.max_det, RECORD], QParams { scale: 1.0, zero_point: 0 });
            let p = DetectParams {
                form: 0,
                levels: n,
                classes: cfg.classes,
                reg_max: cfg.reg_max,
                iou_q16: (cfg.iou_threshold as f64 * 65536.0).round() as u32,
                class_aware: cfg.class_aware,
                top_k: cfg.top_k,
                max_det: cfg.max_det,
                image_w: cfg.image_w,
                image_h: cfg.image_h,
            };
            self.op(OpCode::DetectPostprocess, name, &ins, y, &p);
            Ok(y)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_sit_in_their_format_slots() {
        let p = DetectParams {
            form: 0,
            levels: 3,
            classes: 80,
            reg_max: 7,
            iou_q16: 39322,
            class_aware: true,
            top_k: 1000,
            max_det: 100,
            image_w: 320,
            image_h: 256,
        };
        let e = p.encode();
        assert_eq!(e[..10], [0, 3, 80, 7, 39322, 1, 1000, 100, 320, 256]);
        assert!(e[10..].iter().all(|&v| v == 0));
        assert_eq!(DetectParams::decode(&e), p);
        assert_eq!(scratch(&e, &[], &[]), 8 * 1000 + 20 * 100);
    }

    #[test]
    fn decode_is_total_and_bounds_the_scratch() {
        let junk = [i32::MAX; OP_PARAMS];
        let d = DetectParams::decode(&junk);
        assert_eq!((d.levels, d.top_k, d.max_det, d.reg_max), (MAX_LEVELS, MAX_TOP_K, MAX_DET, MAX_REG_MAX));
        assert_eq!(scratch(&junk, &[], &[]), 8 * MAX_TOP_K + 20 * MAX_DET);
        let d = DetectParams::decode(&[i32::MIN; OP_PARAMS]);
        assert_eq!((d.levels, d.top_k), (0, 0));
    }

    #[test]
    fn the_heap_keeps_the_largest_keys_sorted() {
        let mut b = [0u8; 8 * 5];
        let mut h = Heap { b: &mut b, n: 0 };
        for k in [7u64, 3, 9, 1, 12, 5, 9, 2, 30, 11] {
            h.offer(k, 5);
        }
        h.sort_desc();
        let got: [u64; 5] = core::array::from_fn(|i| h.get(i));
        assert_eq!(got, [30, 12, 11, 9, 9]);
    }

    #[test]
    fn distance_is_the_expectation_in_256ths() {
        // Q30 exp(-d) for a box scale of 1: bins 0, 2 equal and bin 1 much lower → mean 1.
        let exp: [i32; 256] = core::array::from_fn(|d| ((-(d as f64)).exp() * EXP_ONE as f64).round() as i32);
        assert_eq!(distance(&[10, 10], &exp, 8), 8 * 256 / 2);
        assert_eq!(distance(&[0, -100, 0], &exp, 16), 16 * 256);
        assert_eq!(distance(&[5, -128, -128, -128], &exp, 32), 0);
    }

    #[test]
    fn detections_reads_records_and_bounds_the_count() {
        let mut b = [0u8; 3 * RECORD];
        b[..4].copy_from_slice(&7i32.to_le_bytes());
        b[RECORD..RECORD + 4].copy_from_slice(&1.5f32.to_le_bytes());
        b[RECORD + 20..RECORD + 24].copy_from_slice(&4i32.to_le_bytes());
        let out: &[i8] = bytemuck::cast_slice(&b);
        let d: alloc::vec::Vec<Detection> = detections(out).collect();
        assert_eq!(d.len(), 2, "count clamped to the records present");
        assert_eq!((d[0].x1, d[0].class), (1.5, 4));
        assert_eq!(detections(&out[..5]).count(), 0);
    }
}
