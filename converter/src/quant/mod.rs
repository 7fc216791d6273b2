//! Post-training quantization: calibration statistics, int8 parameters, and lowering of the
//! FP32 IR to a `.tmf` built with the runtime's writer.

pub mod lower;
pub mod observer;
pub mod ocs;
pub mod sensitivity;

pub use lower::{lower, LowerOptions, PixelNorm, QuantError};
pub use observer::{qparams_for_range, Observer, Stats};

use crate::fp32;
use crate::ir::{Graph, Op, TensorId};

/// Statistics of every activation tensor over a calibration set.
#[derive(Clone, Debug, Default)]
pub struct Calibration {
    /// Per IR tensor (empty stats for constants and unobserved tensors).
    pub stats: Vec<Stats>,
    /// Per IR tensor: mean of each channel (axis 1) for inputs of Conv/Dense (bias correction).
    pub channel_means: Vec<Vec<f64>>,
    /// Images seen.
    pub samples: usize,
}

impl Calibration {
    /// Run the FP32 graph over `batches` twice (ranges, then histograms) and collect statistics.
    pub fn collect(g: &Graph, batches: &[fp32::Tensor]) -> Result<Calibration, fp32::Fp32Error> {
        let n = g.tensors.len();
        let mut stats = vec![Stats::default(); n];
        let mut sums: Vec<Vec<f64>> = vec![Vec::new(); n];
        let mut counts = vec![0usize; n];
        let wants_mean: Vec<bool> = (0..n)
            .map(|t| g.nodes.iter().any(|nd| matches!(nd.op, Op::Conv { .. } | Op::Dense { .. }) && nd.inputs.first() == Some(&t)))
            .collect();
        let mut samples = 0;
        for b in batches {
            samples += b.shape.first().copied().unwrap_or(1);
            for &i in &g.inputs {
                stats[i].observe_range(&b.data);
                if wants_mean[i] {
                    accumulate_mean(&mut sums[i], &mut counts[i], &b.shape, &b.data);
                }
            }
            fp32::run_observed(g, std::slice::from_ref(b), &mut |id: TensorId, t: &fp32::Tensor| {
                stats[id].observe_range(&t.data);
                if wants_mean[id] {
                    accumulate_mean(&mut sums[id], &mut counts[id], &t.shape, &t.data);
                }
            })?;
        }
        for b in batches {
            for &i in &g.inputs {
                stats[i].observe_hist(&b.data);
            }
            fp32::run_observed(g, std::slice::from_ref(b), &mut |id: TensorId, t: &fp32::Tensor| stats[id].observe_hist(&t.data))?;
        }
        let channel_means = sums.into_iter().zip(counts).map(|(s, c)| s.into_iter().map(|v| v / c.max(1) as f64).collect()).collect();
        Ok(Calibration { stats, channel_means, samples })
    }
}

impl Calibration {
    /// Fixed activation ranges instead of measured statistics (e.g. the ranges learned by
    /// quantization-aware training): tensor `t` is quantized with exactly `ranges[t] = (lo, hi)`
    /// (through [`qparams_for_range`]) whatever the [`Observer`]; `None` entries and tensors
    /// past the end have no statistics. There are no channel means, so bias correction does
    /// nothing.
    pub fn from_ranges(ranges: &[Option<(f32, f32)>]) -> Calibration {
        let stats = ranges
            .iter()
            .map(|r| match *r {
                Some((lo, hi)) => Stats { min: lo, max: hi, ema_min: lo, ema_max: hi, batches: 1, hist: Vec::new() },
                None => Stats::default(),
            })
            .collect();
        Calibration { stats, channel_means: Vec::new(), samples: 0 }
    }
}

/// Add per-channel (axis 1) sums of an NCHW or NK tensor.
fn accumulate_mean(sum: &mut Vec<f64>, count: &mut usize, shape: &[usize], data: &[f32]) {
    if shape.len() < 2 {
        return;
    }
    let (n, c) = (shape[0], shape[1]);
    let inner: usize = shape[2..].iter().product();
    if sum.len() != c {
        *sum = vec![0.0; c];
    }
    for b in 0..n {
        for (ch, s) in sum.iter_mut().enumerate() {
            let base = (b * c + ch) * inner;
            *s += data[base..base + inner].iter().map(|&v| v as f64).sum::<f64>();
        }
    }
    *count += n * inner;
}
