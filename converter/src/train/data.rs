//! Seeded randomness, shuffling, augmentation and mini-batch assembly.

use crate::fp32::Tensor;
use temper_data::dataset::Pixels;
use temper_data::{Dataset, Normalize};

/// PCG32 (XSH-RR, 64-bit state): small, fast, seedable; no external crate.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
    inc: u64,
}

impl Rng {
    /// A generator for `seed` and stream `stream` (different streams are independent).
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut r = Rng { state: 0, inc: (splitmix(stream) << 1) | 1 };
        r.next_u32();
        r.state = r.state.wrapping_add(splitmix(seed));
        r.next_u32();
        r
    }

    /// Next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old.wrapping_mul(6364136223846793005).wrapping_add(self.inc);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        let rot = (old >> 59) as u32;
        xorshifted.rotate_right(rot)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }

    /// Uniform integer in `0..n` (`n ≥ 1`), unbiased (Lemire's multiply-and-reject).
    pub fn below(&mut self, n: u32) -> u32 {
        let n = n.max(1);
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = self.next_u32() as u64 * n as u64;
            if (m as u32) >= threshold {
                return (m >> 32) as u32;
            }
        }
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u32 + 1) as usize;
            v.swap(i, j);
        }
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = (self.next_f32() as f64).max(1e-12);
        let u2 = self.next_f32() as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

/// Image augmentation applied to training batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Augment {
    /// Random crop of the original size from the image zero-padded (in pixel space) by this
    /// many pixels on every side (0 = off).
    pub crop_pad: usize,
    /// Random horizontal flip with probability ½.
    pub flip: bool,
}

impl Augment {
    /// Whether any augmentation is enabled.
    pub fn enabled(&self) -> bool {
        self.crop_pad > 0 || self.flip
    }

    /// Parse `none`, `crop`, `crop:P`, `flip`, or a comma-separated combination.
    pub fn parse(s: &str) -> Result<Augment, String> {
        let mut a = Augment::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "none" | "off" => {}
                "flip" => a.flip = true,
                "crop" => a.crop_pad = 2,
                p => match p.strip_prefix("crop:").and_then(|v| v.parse().ok()) {
                    Some(v) => a.crop_pad = v,
                    None => return Err(format!("unknown augmentation '{p}' (use none, crop, crop:P, flip)")),
                },
            }
        }
        Ok(a)
    }
}

/// Assemble the normalized batch of dataset images `idx` (NCHW) into `out`, augmenting with
/// `aug` drawn from `rng`. `F32` datasets are taken as already normalized (padding with 0).
pub fn fill_batch(ds: &Dataset, idx: &[usize], norm: &Normalize, aug: Augment, rng: &mut Rng, out: &mut Vec<f32>) {
    let [_, c, h, w] = ds.shape;
    let il = c * h * w;
    out.clear();
    out.resize(idx.len() * il, 0.0);
    let luts: Vec<[f32; 256]> = (0..c).map(|ch| norm.lut(ch)).collect();
    let mut img = vec![0.0f32; il];
    for (b, &i) in idx.iter().enumerate() {
        match &ds.images {
            Pixels::U8(v) => {
                for ch in 0..c {
                    let src = &v[i * il + ch * h * w..][..h * w];
                    for (d, &p) in img[ch * h * w..][..h * w].iter_mut().zip(src) {
                        *d = luts[ch][p as usize];
                    }
                }
            }
            Pixels::F32(v) => img.copy_from_slice(&v[i * il..(i + 1) * il]),
        }
        let dst = &mut out[b * il..(b + 1) * il];
        if !aug.enabled() {
            dst.copy_from_slice(&img);
            continue;
        }
        let p = aug.crop_pad as isize;
        let (dy, dx) = if p > 0 { (rng.below(2 * p as u32 + 1) as isize - p, rng.below(2 * p as u32 + 1) as isize - p) } else { (0, 0) };
        let flip = aug.flip && rng.next_u32() & 1 == 1;
        for ch in 0..c {
            let pad = match ds.images {
                Pixels::U8(_) => luts[ch][0],
                Pixels::F32(_) => 0.0,
            };
            let plane = &img[ch * h * w..][..h * w];
            let dp = &mut dst[ch * h * w..][..h * w];
            for y in 0..h {
                let sy = y as isize + dy;
                for x in 0..w {
                    let xx = if flip { w - 1 - x } else { x };
                    let sx = xx as isize + dx;
                    dp[y * w + x] =
                        if sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize { plane[sy as usize * w + sx as usize] } else { pad };
                }
            }
        }
    }
}

/// The normalized batch `idx` as a tensor (no augmentation).
pub fn batch_tensor(ds: &Dataset, idx: &[usize], norm: &Normalize) -> Tensor {
    let mut buf = Vec::new();
    let mut rng = Rng::new(0, 0);
    fill_batch(ds, idx, norm, Augment::default(), &mut rng, &mut buf);
    let [_, c, h, w] = ds.shape;
    Tensor { shape: vec![idx.len(), c, h, w], data: buf }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_seeded_and_uniform_enough() {
        let mut a = Rng::new(7, 1);
        let mut b = Rng::new(7, 1);
        let mut c = Rng::new(8, 1);
        let va: Vec<u32> = (0..5).map(|_| a.next_u32()).collect();
        assert_eq!(va, (0..5).map(|_| b.next_u32()).collect::<Vec<_>>());
        assert_ne!(va, (0..5).map(|_| c.next_u32()).collect::<Vec<_>>());
        let mut counts = [0usize; 10];
        for _ in 0..100_000 {
            counts[a.below(10) as usize] += 1;
        }
        assert!(counts.iter().all(|&k| (9_500..10_500).contains(&k)), "{counts:?}");
        let mut v: Vec<usize> = (0..100).collect();
        a.shuffle(&mut v);
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_ne!(v, s);
    }

    #[test]
    fn crop_and_flip() {
        let px: Vec<u8> = (0..9).map(|i| i as u8 * 10).collect();
        let ds = Dataset::new(Pixels::U8(px), [1, 1, 3, 3], vec![0], 1, "t").unwrap();
        let norm = Normalize::new(vec![0.0], vec![1.0], 1.0);
        let mut out = Vec::new();
        let mut rng = Rng::new(1, 2);
        fill_batch(&ds, &[0], &norm, Augment { crop_pad: 0, flip: false }, &mut rng, &mut out);
        assert_eq!(out, (0..9).map(|i| i as f32 * 10.0).collect::<Vec<_>>());
        let mut seen_flip = false;
        let mut seen_shift = false;
        for _ in 0..50 {
            fill_batch(&ds, &[0], &norm, Augment { crop_pad: 1, flip: true }, &mut rng, &mut out);
            let sum: f32 = out.iter().sum();
            seen_shift |= sum < 360.0;
            seen_flip |= out[4] == 40.0 && out[3] == 50.0;
            assert!(out.iter().all(|v| [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0].contains(v)));
        }
        assert!(seen_flip && seen_shift);
        assert_eq!(Augment::parse("crop:3,flip").unwrap(), Augment { crop_pad: 3, flip: true });
        assert!(Augment::parse("rotate").is_err());
    }
}
