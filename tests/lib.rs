//! Shared helpers for the workspace integration tests in `tests/tests/*.rs`.

use temper_kernels::QParams;
use temper_runtime::writer::{clamp_range, Builder, QWeights, Window};

/// A deterministic xorshift generator.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// Next raw value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }
    /// Uniform integer in `[lo, hi]`.
    pub fn int(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i32
    }
}

/// A small CNN with known float weights, for end-to-end checks.
#[derive(Clone, Debug)]
pub struct TinyCnn {
    /// Conv weights `[O=4][KH=3][KW=3][C=2]`.
    pub conv_w: Vec<f32>,
    /// Conv bias.
    pub conv_b: Vec<f32>,
    /// FC weights `[N=3][K=4·4·4]` in HWC order of the pooled tensor.
    pub fc_w: Vec<f32>,
    /// FC bias.
    pub fc_b: Vec<f32>,
}

/// Input `[1, 8, 8, 2]` quantization.
pub const IN_Q: QParams = QParams { scale: 1.0 / 64.0, zero_point: -3 };
/// Conv output quantization.
pub const CONV_Q: QParams = QParams { scale: 0.05, zero_point: -128 };
/// FC output quantization.
pub const FC_Q: QParams = QParams { scale: 0.1, zero_point: 5 };

impl TinyCnn {
    /// Random weights from a seed.
    pub fn new(seed: u64) -> TinyCnn {
        let mut r = Rng(seed);
        TinyCnn {
            conv_w: (0..4 * 9 * 2).map(|_| r.uniform(-0.5, 0.5)).collect(),
            conv_b: (0..4).map(|_| r.uniform(-0.2, 0.2)).collect(),
            fc_w: (0..3 * 64).map(|_| r.uniform(-0.3, 0.3)).collect(),
            fc_b: (0..3).map(|_| r.uniform(-0.5, 0.5)).collect(),
        }
    }

    /// Per-channel symmetric int8 quantization of `[C][K]` weights.
    pub fn quantize(w: &[f32], channels: usize) -> (Vec<i8>, Vec<f32>) {
        let k = w.len() / channels;
        let mut q = vec![0i8; w.len()];
        let mut s = vec![0f32; channels];
        for c in 0..channels {
            let amax = w[c * k..(c + 1) * k].iter().fold(0f32, |m, v| m.max(v.abs()));
            s[c] = amax / 127.0;
            for j in 0..k {
                q[c * k + j] = (w[c * k + j] / s[c]).round() as i8;
            }
        }
        (q, s)
    }

    /// Build the `.tmf`: conv 3×3 pad 1 + ReLU → maxpool 2×2 → flatten → FC.
    pub fn build(&self) -> Vec<u8> {
        let mut b = Builder::new("tiny-cnn");
        let x = b.activation("x", &[1, 8, 8, 2], IN_Q);
        b.input(x);
        let c = b.activation("conv", &[1, 8, 8, 4], CONV_Q);
        let (cq, cs) = Self::quantize(&self.conv_w, 4);
        let cb: Vec<i32> = (0..4).map(|o| (self.conv_b[o] / (IN_Q.scale * cs[o])).round() as i32).collect();
        b.conv2d(
            "conv",
            x,
            c,
            Window::square(3, 1, 1),
            1,
            QWeights { data: &cq, scales: &cs, bias: &cb },
            clamp_range(Some(0.0), None, CONV_Q),
        )
        .unwrap();
        let p = b.activation("pool", &[1, 4, 4, 4], CONV_Q);
        b.max_pool("pool", c, p, Window::square(2, 2, 0), (-128, 127));
        let f = b.activation("flat", &[1, 64], CONV_Q);
        b.reshape("flatten", p, f);
        let y = b.activation("logits", &[1, 3], FC_Q);
        let (fq, fs) = Self::quantize(&self.fc_w, 3);
        let fb: Vec<i32> = (0..3).map(|o| (self.fc_b[o] / (CONV_Q.scale * fs[o])).round() as i32).collect();
        b.fully_connected("fc", f, y, QWeights { data: &fq, scales: &fs, bias: &fb }, (-128, 127)).unwrap();
        b.output(y);
        b.meta("labels", "a,b,c");
        b.finish().unwrap()
    }

    /// Independent float forward pass on the dequantized input (NHWC), with the float weights.
    /// Returns `(conv_out, logits)`.
    pub fn forward_f64(&self, x: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let mut conv = vec![0f64; 8 * 8 * 4];
        for y in 0..8 {
            for xx in 0..8 {
                for o in 0..4 {
                    let mut acc = self.conv_b[o] as f64;
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (iy, ix) = (y as isize + ky as isize - 1, xx as isize + kx as isize - 1);
                            if !(0..8).contains(&iy) || !(0..8).contains(&ix) {
                                continue;
                            }
                            for c in 0..2 {
                                acc += x[((iy * 8 + ix) * 2) as usize + c] as f64 * self.conv_w[((o * 3 + ky) * 3 + kx) * 2 + c] as f64;
                            }
                        }
                    }
                    conv[(y * 8 + xx) * 4 + o] = acc.max(0.0);
                }
            }
        }
        let mut pool = vec![0f64; 64];
        for y in 0..4 {
            for xx in 0..4 {
                for c in 0..4 {
                    let mut m = f64::MIN;
                    for dy in 0..2 {
                        for dx in 0..2 {
                            m = m.max(conv[((2 * y + dy) * 8 + 2 * xx + dx) * 4 + c]);
                        }
                    }
                    pool[(y * 4 + xx) * 4 + c] = m;
                }
            }
        }
        let logits = (0..3).map(|o| self.fc_b[o] as f64 + (0..64).map(|k| pool[k] * self.fc_w[o * 64 + k] as f64).sum::<f64>()).collect();
        (conv, logits)
    }
}

pub mod det;
