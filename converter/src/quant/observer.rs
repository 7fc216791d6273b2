//! Calibration observers: from activation statistics to an int8 range.
//!
//! Statistics are gathered in two passes over the calibration set: pass one records the global
//! min/max and an exponential moving average of per-batch min/max; pass two fills a histogram of
//! [`BINS`] bins over the global range. Each [`Observer`] then chooses a clipping range:
//!
//! * `minmax` — the global range (TFLite / ONNX Runtime default);
//! * `ema` — moving average of per-batch min/max (momentum 0.9, as PyTorch's observer);
//! * `percentile` — the 0.01 % / 99.99 % quantiles (configurable);
//! * `mse` — the range minimising the expected squared quantization error (clipping + rounding),
//!   searched over candidate ranges on the histogram;
//! * `kl` — TensorRT's entropy calibration: the range minimising KL(P ‖ Q) between the clipped
//!   reference distribution and its 256-level quantized version.

use temper_kernels::QParams;

/// Histogram bins per tensor.
pub const BINS: usize = 2048;

/// How a clipping range is chosen from statistics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Observer {
    /// Global min/max.
    MinMax,
    /// Moving average of per-batch min/max.
    Ema,
    /// Quantiles: keep `p` percent of the mass (e.g. 99.99).
    Percentile(f64),
    /// Minimum expected squared error.
    Mse,
    /// Minimum KL divergence (entropy calibration).
    Kl,
}

impl Observer {
    /// Parse `minmax`, `ema`, `percentile[:P]`, `mse`, `kl`.
    pub fn parse(s: &str) -> Option<Observer> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "minmax" | "min-max" => Some(Observer::MinMax),
            "ema" | "moving-average" => Some(Observer::Ema),
            "mse" => Some(Observer::Mse),
            "kl" | "entropy" => Some(Observer::Kl),
            "percentile" => Some(Observer::Percentile(99.99)),
            _ => {
                let p: f64 = s.strip_prefix("percentile:")?.parse().ok()?;
                (50.0..=100.0).contains(&p).then_some(Observer::Percentile(p))
            }
        }
    }
    /// All observers with their default settings.
    pub const ALL: [Observer; 5] = [Observer::MinMax, Observer::Ema, Observer::Percentile(99.99), Observer::Mse, Observer::Kl];
}

impl std::fmt::Display for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Observer::MinMax => write!(f, "minmax"),
            Observer::Ema => write!(f, "ema"),
            Observer::Percentile(p) => write!(f, "percentile:{p}"),
            Observer::Mse => write!(f, "mse"),
            Observer::Kl => write!(f, "kl"),
        }
    }
}

/// Statistics of one tensor over the calibration set.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Global minimum.
    pub min: f32,
    /// Global maximum.
    pub max: f32,
    /// EMA of per-batch minimum.
    pub ema_min: f32,
    /// EMA of per-batch maximum.
    pub ema_max: f32,
    /// Batches seen in pass one.
    pub batches: usize,
    /// Histogram over `[min, max]` (pass two).
    pub hist: Vec<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats { min: f32::INFINITY, max: f32::NEG_INFINITY, ema_min: 0.0, ema_max: 0.0, batches: 0, hist: Vec::new() }
    }
}

impl Stats {
    /// Pass one: record one batch of values.
    pub fn observe_range(&mut self, values: &[f32]) {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for &v in values {
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
        if lo > hi {
            return;
        }
        self.min = self.min.min(lo);
        self.max = self.max.max(hi);
        if self.batches == 0 {
            self.ema_min = lo;
            self.ema_max = hi;
        } else {
            self.ema_min = 0.9 * self.ema_min + 0.1 * lo;
            self.ema_max = 0.9 * self.ema_max + 0.1 * hi;
        }
        self.batches += 1;
    }

    /// Pass two: add one batch of values to the histogram.
    pub fn observe_hist(&mut self, values: &[f32]) {
        if self.hist.is_empty() {
            self.hist = vec![0; BINS];
        }
        let (lo, hi) = (self.min, self.max);
        let w = (hi - lo).max(f32::MIN_POSITIVE);
        for &v in values {
            if v.is_finite() {
                let b = (((v - lo) / w) * BINS as f32) as isize;
                self.hist[b.clamp(0, BINS as isize - 1) as usize] += 1;
            }
        }
    }

    fn bin_center(&self, b: usize) -> f64 {
        let w = (self.max - self.min) as f64 / BINS as f64;
        self.min as f64 + (b as f64 + 0.5) * w
    }

    /// The clipping range chosen by `obs`.
    pub fn range(&self, obs: Observer) -> (f32, f32) {
        if self.min.is_nan() || self.max.is_nan() || self.min > self.max {
            return (0.0, 0.0);
        }
        let needs_hist = matches!(obs, Observer::Percentile(_) | Observer::Mse | Observer::Kl);
        if needs_hist && self.hist.iter().sum::<u64>() == 0 {
            return (self.min, self.max);
        }
        match obs {
            Observer::MinMax => (self.min, self.max),
            Observer::Ema => (self.ema_min, self.ema_max),
            Observer::Percentile(p) => self.percentile(p),
            Observer::Mse => self.mse(),
            Observer::Kl => self.kl(),
        }
    }

    fn percentile(&self, p: f64) -> (f32, f32) {
        let total: u64 = self.hist.iter().sum();
        let tail = ((1.0 - p / 100.0) * total as f64).floor() as u64;
        let w = (self.max - self.min) / BINS as f32;
        let mut acc = 0u64;
        let mut lo_b = 0;
        for (b, &c) in self.hist.iter().enumerate() {
            acc += c;
            if acc > tail {
                lo_b = b;
                break;
            }
        }
        acc = 0;
        let mut hi_b = BINS - 1;
        for (b, &c) in self.hist.iter().enumerate().rev() {
            acc += c;
            if acc > tail {
                hi_b = b;
                break;
            }
        }
        let lo = if self.min >= 0.0 { self.min } else { self.min + lo_b as f32 * w };
        (lo, self.min + (hi_b + 1) as f32 * w)
    }

    /// Expected squared error of quantizing the histogram with range `[lo, hi]`.
    fn quant_error(&self, lo: f64, hi: f64) -> f64 {
        let scale = ((hi - lo) / 255.0).max(1e-12);
        let mut err = 0.0;
        for (b, &c) in self.hist.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let x = self.bin_center(b);
            let q = ((x.clamp(lo, hi) - lo) / scale).round() * scale + lo;
            let e = x - q;
            err += c as f64 * e * e;
        }
        err
    }

    fn mse(&self) -> (f32, f32) {
        let (min, max) = (self.min as f64, self.max as f64);
        let mut best = (self.quant_error(min.min(0.0), max.max(0.0)), min, max);
        for i in 1..=100 {
            let f = 1.0 - i as f64 * 0.0095; // shrink to 5 % of the range
            let (lo, hi) = (if min < 0.0 { min * f } else { min }, max * f);
            let e = self.quant_error(lo.min(0.0), hi.max(0.0));
            if e < best.0 {
                best = (e, lo, hi);
            }
        }
        (best.1 as f32, best.2 as f32)
    }

    fn kl(&self) -> (f32, f32) {
        // Entropy calibration on the side with the larger magnitude (one-sided, as TensorRT);
        // the other side keeps its extreme.
        let zero_bin = if self.min >= 0.0 { 0 } else { (((-self.min) / (self.max - self.min)) * BINS as f32) as usize };
        let zero_bin = zero_bin.min(BINS - 1);
        let pos: Vec<u64> = self.hist[zero_bin..].to_vec();
        let levels = if self.min >= 0.0 { 256 } else { 128 };
        let n = pos.len();
        if n <= levels {
            return (self.min, self.max);
        }
        let mut best = (f64::INFINITY, n);
        let mut i = levels;
        while i <= n {
            let kl = kl_for(&pos, i, levels);
            if kl < best.0 {
                best = (kl, i);
            }
            i += 8;
        }
        let w = (self.max - self.min) / BINS as f32;
        let hi = self.min + (zero_bin + best.1) as f32 * w;
        let lo = if self.min < 0.0 { (-hi).max(self.min) } else { self.min };
        (lo, hi)
    }
}

fn kl_for(hist: &[u64], i: usize, levels: usize) -> f64 {
    let mut p: Vec<f64> = hist[..i].iter().map(|&v| v as f64).collect();
    let outliers: f64 = hist[i..].iter().map(|&v| v as f64).sum();
    p[i - 1] += outliers;
    let mut q = vec![0f64; i];
    let per = i as f64 / levels as f64;
    for l in 0..levels {
        let start = (l as f64 * per) as usize;
        let end = (((l + 1) as f64 * per) as usize).min(i).max(start + 1);
        let sum: f64 = hist[start..end].iter().map(|&v| v as f64).sum();
        let nz = hist[start..end].iter().filter(|&&v| v > 0).count();
        if nz > 0 {
            for k in start..end {
                if hist[k] > 0 {
                    q[k] = sum / nz as f64;
                }
            }
        }
    }
    let ps: f64 = p.iter().sum();
    let qs: f64 = q.iter().sum();
    if ps == 0.0 || qs == 0.0 {
        return f64::INFINITY;
    }
    let mut kl = 0.0;
    for k in 0..i {
        if p[k] > 0.0 {
            let pk = p[k] / ps;
            let qk = (q[k] / qs).max(1e-12);
            kl += pk * (pk / qk).ln();
        }
    }
    kl
}

/// Asymmetric int8 quantization of the range `[lo, hi]` (widened to include 0, as every op's
/// zero padding must be exact).
pub fn qparams_for_range(lo: f32, hi: f32) -> QParams {
    let lo = lo.min(0.0) as f64;
    let hi = hi.max(0.0) as f64;
    let mut scale = (hi - lo) / 255.0;
    if scale.is_nan() || scale <= 1e-12 {
        scale = 1e-6;
    }
    let zp = (-128.0 - lo / scale).round().clamp(-128.0, 127.0) as i32;
    QParams { scale: scale as f32, zero_point: zp }
}

/// Symmetric per-channel int8 weights: `(q, scales)` for weights `[C][K]` (row-major per
/// output channel), range −127..=127.
pub fn quantize_weights_per_channel(w: &[f32], channels: usize) -> (Vec<i8>, Vec<f32>) {
    let k = w.len() / channels.max(1);
    let mut q = vec![0i8; w.len()];
    let mut scales = vec![0f32; channels];
    for c in 0..channels {
        let row = &w[c * k..(c + 1) * k];
        let amax = row.iter().fold(0f32, |m, &v| m.max(v.abs()));
        let s = if amax > 0.0 { amax / 127.0 } else { 1e-8 };
        scales[c] = s;
        for (j, &v) in row.iter().enumerate() {
            q[c * k + j] = (v / s).round().clamp(-127.0, 127.0) as i8;
        }
    }
    (q, scales)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats_of(values: &[f32]) -> Stats {
        let mut s = Stats::default();
        for chunk in values.chunks(100) {
            s.observe_range(chunk);
        }
        for chunk in values.chunks(100) {
            s.observe_hist(chunk);
        }
        s
    }

    #[test]
    fn minmax_and_percentile_on_outliers() {
        // 10,000 values in [0, 1] plus one outlier at 100.
        let mut v: Vec<f32> = (0..10_000).map(|i| (i % 1000) as f32 / 1000.0).collect();
        v.push(100.0);
        let s = stats_of(&v);
        assert_eq!(s.range(Observer::MinMax), (0.0, 100.0));
        let (lo, hi) = s.range(Observer::Percentile(99.9));
        assert_eq!(lo, 0.0);
        assert!(hi < 1.2 && hi > 0.9, "percentile hi {hi}");
        let (_, hi) = s.range(Observer::Kl);
        assert!(hi < 50.0, "kl should clip the lone outlier, got {hi}");
    }

    #[test]
    fn mse_clips_a_long_tail_and_beats_minmax() {
        // Exponential distribution: a long thin tail that min-max spends most levels on.
        let mut x = 0x2545F4914F6CDD1Du64;
        let v: Vec<f32> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let u = ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                (-u.ln()) as f32
            })
            .collect();
        let s = stats_of(&v);
        let (lo, hi) = s.range(Observer::Mse);
        assert!(hi < s.max, "mse range {hi} vs max {}", s.max);
        assert!(s.quant_error(lo as f64, hi as f64) < s.quant_error(s.min as f64, s.max as f64));
    }

    #[test]
    fn qparams_include_zero_and_cover_range() {
        let q = qparams_for_range(0.0, 6.0);
        assert_eq!(q.zero_point, -128);
        assert!((q.scale - 6.0 / 255.0).abs() < 1e-7);
        let q = qparams_for_range(-1.0, 1.0);
        assert!((q.zero_point).abs() <= 1);
        let q = qparams_for_range(2.0, 3.0); // widened to include 0
        assert_eq!(q.zero_point, -128);
        assert!((q.scale - 3.0 / 255.0).abs() < 1e-7);
    }

    #[test]
    fn per_channel_weights_are_symmetric_and_exact_at_max() {
        let w = [0.5, -1.0, 0.25, 2.0, 0.0, -0.5];
        let (q, s) = quantize_weights_per_channel(&w, 2);
        assert_eq!(q[1], -127);
        assert_eq!(q[3], 127);
        assert!((s[0] - 1.0 / 127.0).abs() < 1e-9 && (s[1] - 2.0 / 127.0).abs() < 1e-9);
        assert_eq!(Observer::parse("percentile:99.9"), Some(Observer::Percentile(99.9)));
        assert_eq!(Observer::parse("bogus"), None);
    }
}
