//! Quantization-aware training (QAT): fine-tune an FP32 student with fake quantization that
//! reproduces what the converter's lowering and `temper-runtime` compute, then emit the `.tmf`
//! with the learned activation ranges.
//!
//! What is simulated, exactly as [`crate::quant::lower()`] and the runtime do it:
//! * weights: symmetric per-output-channel int8 in −127..=127 with scale `max|w| / 127`
//!   ([`quantize_weights_per_channel`],
//!   the very function the lowering calls);
//! * activations: asymmetric int8 with [`qparams_for_range`]
//!   and [`temper_kernels::requant::quantize_f32`] (round half away from zero, saturating) on
//!   every tensor that the lowering gives its own quantization parameters (graph input, outputs
//!   of Conv/Dense/Add/Mul/pools with averaging/activation tables); MaxPool, Reshape and
//!   Identity keep their input's grid, as in the runtime;
//! * activation ranges: EMA of per-batch min/max during the first
//!   [`QatConfig::freeze_ranges_after`] steps, then frozen;
//! * Conv + BatchNorm: trained folded (Jacob et al. 2018, PyTorch's `ConvBn` QAT): the weight
//!   fake-quantized is `w·γ/√(σ²_run + ε)`; BatchNorm uses batch statistics until
//!   [`QatConfig::freeze_bn_after`] steps, then its running statistics (then the network equals
//!   the folded convolution that is emitted).
//!
//! Gradients use the straight-through estimator: they pass through weight rounding, and through
//! activation rounding inside the clipping range (zero outside). Ranges and scales are not
//! learned. With BatchNorm folding the convolution runs with `fq(w·s)/s` (`s = γ/√(σ²_run + ε)`)
//! in front of the BatchNorm, so `w` gets the straight-through gradient and γ, β the BatchNorm's;
//! the dependence of `s` inside the quantizer on γ is not differentiated (without rounding
//! `conv(x, w·s)/s` does not depend on `s` at all). Activation functions whose backward reads
//! their output (Relu, Sigmoid, …) see the fake-quantized output.
//!
//! The emitted file is lowered from the folded FP32 graph with the QAT weights and the frozen
//! QAT ranges (no re-calibration, no bias correction). [`check_agreement`] compares it, run
//! through `temper-runtime`, with the fake-quant model ([`FakeQuantModel`]).

use std::time::Instant;

use super::data::{batch_tensor, Augment, Rng};
use super::distill::batch_input;
use super::loss::{distill_loss, softmax_t};
use super::net::{prepare_for_training, Mode, Net, ParamKind};
use super::optim::{Optimizer, OptimizerKind, Schedule, ScheduleKind};
use super::TrainError;
use crate::fp32::Tensor;
use crate::ir::{ConstData, Graph, Op, TensorId};
use crate::passes;
use crate::quant::observer::quantize_weights_per_channel;
use crate::quant::{lower, qparams_for_range, Calibration, LowerOptions, Observer, PixelNorm};
use temper_data::{Dataset, Normalize};
use temper_kernels::requant::{dequantize, quantize_f32};
use temper_kernels::QParams;

/// Settings of a QAT run. Step counts are optimizer steps (mini-batches) from the start of QAT.
#[derive(Clone, Debug)]
pub struct QatConfig {
    /// Epochs over the training set (default 1: 12.5 % of the students' 8-epoch schedule;
    /// measured on Fashion-MNIST with self-distillation, INT8 − FP32 on the test set +0.06
    /// (student_kd) and −0.04 points (student_scratch); 2 epochs gave +0.14 and −0.05).
    pub epochs: usize,
    /// Mini-batch size (default 128).
    pub batch: usize,
    /// Peak learning rate of the cosine schedule (default 1e-4).
    pub lr: f32,
    /// Final learning rate of the cosine schedule (default 0).
    pub min_lr: f32,
    /// Optimizer (default Adam, β = 0.9/0.999).
    pub optimizer: OptimizerKind,
    /// BatchNorm uses batch statistics (and updates its running statistics) for this many steps,
    /// then its frozen running statistics. `None`: half of the total steps.
    pub freeze_bn_after: Option<usize>,
    /// Activation ranges follow an EMA of per-batch min/max for this many steps, then stay
    /// frozen. `None`: half of the total steps.
    pub freeze_ranges_after: Option<usize>,
    /// EMA weight of the newest batch's min/max (default 0.01, as PyTorch's QAT observer).
    pub ema_momentum: f32,
    /// Training batches run (without updates) to initialize the ranges before QAT (default 16).
    pub init_batches: usize,
    /// BatchNorm running-statistics momentum while BatchNorm is not frozen (default 0.01).
    pub bn_momentum: f32,
    /// Weight of `T²·KL(FP32 student ‖ fake-quant student)` at temperature
    /// [`QatConfig::distill_temperature`]: self-distillation from the FP32 model, `1 − α` weighs
    /// the labels (default 0.7; 0 = plain cross-entropy). Measured on Fashion-MNIST, 2 epochs:
    /// INT8 − FP32 on the test set +0.14 (student_kd) and −0.05 points (student_scratch) with
    /// 0.7, against +0.08 and −0.11 with 0.
    pub distill_alpha: f32,
    /// Temperature of the self-distillation term (default 4).
    pub distill_temperature: f32,
    /// Seed of shuffling and augmentation (default 1).
    pub seed: u64,
    /// Augmentation (default none).
    pub augment: Augment,
    /// Worker threads for training and evaluation (default 2).
    pub threads: usize,
    /// Stop every epoch after this many steps (tests and quick runs; default all).
    pub max_steps_per_epoch: Option<usize>,
    /// Validation images evaluated after each epoch for the curves (0 = all of `val`; default 0).
    pub val_samples: usize,
    /// Metadata stored in the emitted file (QAT settings and accuracies are appended).
    pub metadata: Vec<(String, String)>,
}

impl Default for QatConfig {
    fn default() -> Self {
        QatConfig {
            epochs: 1,
            batch: 128,
            lr: 1e-4,
            min_lr: 0.0,
            optimizer: OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 },
            freeze_bn_after: None,
            freeze_ranges_after: None,
            ema_momentum: 0.01,
            init_batches: 16,
            bn_momentum: 0.01,
            distill_alpha: 0.7,
            distill_temperature: 4.0,
            seed: 1,
            augment: Augment::default(),
            threads: 2,
            max_steps_per_epoch: None,
            val_samples: 0,
            metadata: Vec::new(),
        }
    }
}

/// One QAT epoch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QatEpoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss (fake-quant forward).
    pub loss: f64,
    /// Training top-1 on the batches as trained, percent.
    pub train_acc: f64,
    /// Fake-quant top-1 on the validation set (folded model, frozen-BN inference), percent.
    pub val_acc: f64,
    /// Learning rate at the end of the epoch.
    pub lr: f32,
    /// Whether BatchNorm statistics were frozen by the end of the epoch.
    pub bn_frozen: bool,
    /// Whether activation ranges were frozen by the end of the epoch.
    pub ranges_frozen: bool,
    /// Wall seconds of the epoch's training steps.
    pub seconds: f64,
    /// Training images per second.
    pub images_per_sec: f64,
}

/// Progress events of [`qat`] (for progress bars and logs).
#[derive(Clone, Debug)]
pub enum QatProgress<'a> {
    /// A stage other than training started (`"fp32 evaluation"`, `"range initialization"`,
    /// `"lowering"`, `"int8 evaluation"`, …).
    Stage(&'a str),
    /// A training step finished.
    Step {
        /// 1-based epoch.
        epoch: usize,
        /// Epochs in total.
        epochs: usize,
        /// Steps done in this epoch.
        step: usize,
        /// Steps per epoch.
        steps: usize,
        /// Mean loss of the epoch so far.
        loss: f64,
        /// Training images per second so far in this epoch.
        images_per_sec: f64,
        /// Estimated seconds left in this epoch.
        eta_seconds: f64,
    },
    /// An epoch finished.
    Epoch(&'a QatEpoch),
}

/// How the emitted `.tmf` (run through `temper-runtime`) agrees with the fake-quant model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Agreement {
    /// Images compared.
    pub images: usize,
    /// Fake-quant top-1, percent.
    pub fake_quant_top1: f64,
    /// Runtime INT8 top-1 of the emitted file, percent.
    pub int8_top1: f64,
    /// Images on which both predict the same class, percent.
    pub same_prediction: f64,
    /// Output values (logits) whose difference is at most one quantization step of the output
    /// tensor's scale, percent of all output values.
    pub logits_within_one_step: f64,
    /// Largest difference in output quantization steps.
    pub max_steps: f64,
    /// The output tensor's scale.
    pub output_scale: f32,
}

impl Agreement {
    /// The acceptance criterion: top-1 within 0.1 percentage points and ≥ 99 % of the logits
    /// within one quantization step.
    pub fn passed(&self) -> bool {
        (self.fake_quant_top1 - self.int8_top1).abs() <= 0.1 + 1e-9 && self.logits_within_one_step >= 99.0
    }
}

/// A fake-quant model: the folded FP32 graph with the QAT weights and the frozen activation
/// ranges. Its forward pass is what the emitted file computes, up to the runtime's integer
/// rounding of bias and requantization multipliers.
#[derive(Clone, Debug)]
pub struct FakeQuantModel {
    /// The folded, optimized FP32 graph (BatchNorm folded, activations fused) holding the QAT
    /// weights in FP32; its quantized weights are exactly those of the emitted file.
    pub graph: Graph,
    /// Activation range `(lo, hi)` per tensor of [`FakeQuantModel::graph`] (by tensor id;
    /// `None` for tensors that keep their input's grid or are constants).
    pub ranges: Vec<Option<(f32, f32)>>,
}

/// The result of [`qat`].
#[derive(Clone, Debug)]
pub struct QatOutcome {
    /// The emitted `.tmf` (QAT weights, BatchNorm folded, QAT activation ranges).
    pub bytes: Vec<u8>,
    /// The fake-quant model the file was lowered from.
    pub model: FakeQuantModel,
    /// FP32 top-1 of the student before QAT on the validation set, percent.
    pub fp32_accuracy: f64,
    /// Fake-quant top-1 after QAT on the validation set, percent.
    pub fake_quant_accuracy: f64,
    /// Top-1 of the emitted file through `temper-runtime` on the validation set, percent.
    pub int8_accuracy: f64,
    /// Agreement of the emitted file with the fake-quant model on the validation set.
    pub agreement: Agreement,
    /// Per-epoch curves.
    pub epochs: Vec<QatEpoch>,
    /// Seconds of the training steps.
    pub train_seconds: f64,
    /// Seconds of the whole call.
    pub seconds: f64,
}

/// How a tensor is quantized by the lowering.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Point {
    /// Its own range (tracked in QAT, then fixed in the file).
    Ranged,
    /// Fixed parameters chosen by the lowering (softmax output).
    Fixed(QParams),
}

/// Which tensors of a lowerable (folded, optimized) graph get their own quantization
/// parameters in [`lower`]: graph inputs and the outputs of every op that requantizes. Ops that
/// keep their input's grid (MaxPool, Reshape, Identity, Resize: [`keeps_grid`]) get no entry.
fn quant_points(g: &Graph) -> Vec<Option<Point>> {
    let mut p = vec![None; g.tensors.len()];
    for &i in &g.inputs {
        p[i] = Some(Point::Ranged);
    }
    for n in &g.nodes {
        let kind = match n.op {
            _ if keeps_grid(&n.op) => None,
            Op::Softmax { .. } => Some(Point::Fixed(QParams { scale: 1.0 / 256.0, zero_point: -128 })),
            _ => Some(Point::Ranged),
        };
        if let (Some(k), Some(&o)) = (kind, n.outputs.first()) {
            p[o] = Some(k);
        }
    }
    p
}

/// Whether `op`'s output stays on its first input's quantization grid in [`lower`].
fn keeps_grid(op: &Op) -> bool {
    match op {
        Op::MaxPool { .. } | Op::Reshape | Op::Identity => true,
        Op::Ext(e) => e.def().keeps_grid(),
        _ => false,
    }
}

/// The real interval `[lo, hi]` an int8 tensor with `q` represents.
fn representable(q: QParams) -> (f32, f32) {
    (q.scale * (-128 - q.zero_point) as f32, q.scale * (127 - q.zero_point) as f32)
}

/// Fake-quantize `data` in place exactly as the runtime quantizes and dequantizes
/// ([`quantize_f32`] then [`dequantize`]). With `mask`, records for each value whether it lies
/// inside the representable interval (where the straight-through gradient passes).
pub fn fake_quant(data: &mut [f32], q: QParams, mask: Option<&mut Vec<bool>>) {
    if let Some(m) = mask {
        let (lo, hi) = representable(q);
        m.clear();
        m.extend(data.iter().map(|&v| v >= lo && v <= hi));
    }
    for v in data.iter_mut() {
        *v = dequantize(quantize_f32(*v, q.scale, q.zero_point), q.scale, q.zero_point);
    }
}

/// Fake-quantize weights `[rows][k]` symmetric per row exactly as the lowering quantizes them:
/// every value becomes `q · scale` with `(q, scale)` from
/// [`quantize_weights_per_channel`].
pub fn fake_quant_weights(w: &[f32], rows: usize) -> Vec<f32> {
    let (q, s) = quantize_weights_per_channel(w, rows);
    let k = w.len() / rows.max(1);
    q.iter().enumerate().map(|(i, &v)| v as f32 * s[(i / k.max(1)).min(rows.saturating_sub(1))]).collect()
}

fn range_of(data: &[f32]) -> (f32, f32) {
    data.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

fn qparams_of(point: Point, range: Option<(f32, f32)>) -> Option<QParams> {
    match point {
        Point::Fixed(q) => Some(q),
        Point::Ranged => range.map(|(lo, hi)| qparams_for_range(lo, hi)),
    }
}

/// Straight-through masks per tensor (`true`: inside the clipping range).
type Masks = Vec<Option<Vec<bool>>>;

/// A linear op followed by BatchNorm, trained in folded form.
#[derive(Clone, Debug)]
struct Fold {
    /// BatchNorm node index in the training graph.
    bn: usize,
    /// Linear (Conv/Dense) node index.
    linear: usize,
    /// Parameter indices.
    w: usize,
    b: Option<usize>,
    gamma: usize,
    beta: usize,
    mean: usize,
    var: usize,
    eps: f32,
}

impl Fold {
    /// `γ / √(σ² + ε)` per channel, computed as `passes::fold_batchnorm` does.
    fn factors(&self, net: &Net) -> Vec<f32> {
        let (g, v) = (&net.params[self.gamma].value, &net.params[self.var].value);
        g.iter().zip(v).map(|(&g, &v)| g / (v + self.eps).sqrt()).collect()
    }
}

/// A weight that is fake-quantized: parameter index, output channels, fold.
#[derive(Clone, Debug)]
struct QWeight {
    param: usize,
    rows: usize,
    fold: Option<usize>,
}

/// The QAT state over the training graph.
struct Trainer {
    net: Net,
    folds: Vec<Fold>,
    weights: Vec<QWeight>,
    /// Per training-graph tensor: how it is quantized.
    points: Vec<Option<Point>>,
    /// Per training-graph tensor: the current range.
    ranges: Vec<Option<(f32, f32)>>,
    /// Observations per tensor (warm EMA).
    seen: Vec<usize>,
    ema: f32,
}

fn param_index(net: &Net, t: TensorId) -> Option<usize> {
    net.params.iter().position(|p| p.tensor == t)
}

impl Trainer {
    fn new(student: &Graph, cfg: &QatConfig) -> Result<Trainer, TrainError> {
        let mut g = student.clone();
        prepare_for_training(&mut g)?;
        let net = Net::new(g, cfg.threads)?;
        let g = net.graph();
        let mut uses = vec![0usize; g.tensors.len()];
        for n in &g.nodes {
            for &t in &n.inputs {
                uses[t] += 1;
            }
        }
        for &t in &g.outputs {
            uses[t] += 1;
        }
        let mut folds = Vec::new();
        for (i, n) in g.nodes.iter().enumerate() {
            let Op::BatchNorm { eps } = n.op else { continue };
            let Some(p) = g.producer(n.inputs[0]) else { continue };
            let lin = &g.nodes[p];
            if !matches!(lin.op, Op::Conv { act: crate::ir::Activation::None, .. } | Op::Dense { act: crate::ir::Activation::None })
                || uses[n.inputs[0]] != 1
                || uses[lin.inputs[1]] != 1
            {
                continue;
            }
            let pi = |k: usize| n.inputs.get(k).and_then(|&t| param_index(&net, t));
            let (Some(w), Some(gamma), Some(beta), Some(mean), Some(var)) = (param_index(&net, lin.inputs[1]), pi(1), pi(2), pi(3), pi(4))
            else {
                continue;
            };
            let b = lin.inputs.get(2).and_then(|&t| param_index(&net, t));
            folds.push(Fold { bn: i, linear: p, w, b, gamma, beta, mean, var, eps });
        }
        let mut weights = Vec::new();
        for (k, p) in net.params.iter().enumerate() {
            if p.kind != ParamKind::Weight {
                continue;
            }
            let Some(node) = g.nodes.iter().position(|n| n.inputs.get(1) == Some(&p.tensor)) else { continue };
            if !matches!(g.nodes[node].op, Op::Conv { .. } | Op::Dense { .. }) {
                continue;
            }
            let fold = folds.iter().position(|f| f.w == k);
            weights.push(QWeight { param: k, rows: p.shape.first().copied().unwrap_or(1).max(1), fold });
        }
        let n = g.tensors.len();
        let mut t = Trainer { net, folds, weights, points: vec![None; n], ranges: vec![None; n], seen: vec![0; n], ema: cfg.ema_momentum };
        // The quantization points are those of the folded graph, found by tensor name.
        let folded = t.folded_graph()?;
        let fp = quant_points(&folded);
        for (id, p) in fp.iter().enumerate() {
            let Some(p) = p else { continue };
            let name = &folded.tensors[id].name;
            let tid = t.net.tensor_id(name).ok_or_else(|| {
                TrainError::Graph(format!("QAT: tensor '{name}' of the folded graph has no counterpart in the training graph"))
            })?;
            t.points[tid] = Some(*p);
        }
        Ok(t)
    }

    /// The FP32 graph with BatchNorm folded exactly as the fake-quant weights assume, optimized
    /// (activations fused) like the graph PTQ lowers.
    fn folded_graph(&self) -> Result<Graph, TrainError> {
        let mut g = self.net.to_graph();
        let mut remove = Vec::new();
        for f in &self.folds {
            let s = f.factors(&self.net);
            let (beta, mean) = (&self.net.params[f.beta].value, &self.net.params[f.mean].value);
            let w = &self.net.params[f.w].value;
            let rows = s.len();
            let k = w.len() / rows.max(1);
            let wf: Vec<f32> = w.iter().enumerate().map(|(i, &v)| v * s[i / k.max(1)]).collect();
            let old_b = f.b.map(|b| self.net.params[b].value.clone()).unwrap_or_else(|| vec![0.0; rows]);
            let bf: Vec<f32> = (0..rows).map(|c| old_b[c] * s[c] + (beta[c] - mean[c] * s[c])).collect();
            let wt = self.net.params[f.w].tensor;
            g.tensors[wt].data = Some(ConstData::F32(wf));
            match f.b {
                Some(b) => g.tensors[self.net.params[b].tensor].data = Some(ConstData::F32(bf)),
                None => {
                    let name = format!("{}__qat_bias", g.nodes[f.linear].name);
                    let id = g.add_tensor(name, vec![rows], Some(ConstData::F32(bf)));
                    g.nodes[f.linear].inputs.push(id);
                }
            }
            g.nodes[f.linear].outputs = g.nodes[f.bn].outputs.clone();
            remove.push(f.bn);
        }
        remove.sort_unstable();
        for &i in remove.iter().rev() {
            g.nodes.remove(i);
        }
        passes::optimize(&mut g).map_err(|e| TrainError::Graph(format!("QAT folding: {e}")))?;
        Ok(g)
    }

    /// Replace every quantized weight by its fake-quant value; returns the FP32 masters.
    fn swap_in_fake_weights(&mut self) -> Vec<Vec<f32>> {
        let mut masters = Vec::with_capacity(self.weights.len());
        for qw in &self.weights {
            let w = &self.net.params[qw.param].value;
            let eff = match qw.fold {
                None => fake_quant_weights(w, qw.rows),
                Some(f) => {
                    // Folded weight w·s quantized, then unscaled: conv(x, fq(w·s))/s feeds the
                    // BatchNorm (PyTorch's ConvBn QAT).
                    let s = self.folds[f].factors(&self.net);
                    let k = w.len() / qw.rows;
                    let scaled: Vec<f32> = w.iter().enumerate().map(|(i, &v)| v * s[i / k]).collect();
                    let fq = fake_quant_weights(&scaled, qw.rows);
                    fq.iter().enumerate().map(|(i, &v)| if s[i / k] != 0.0 { v / s[i / k] } else { 0.0 }).collect()
                }
            };
            masters.push(std::mem::replace(&mut self.net.params[qw.param].value, eff));
        }
        masters
    }

    fn restore_weights(&mut self, masters: Vec<Vec<f32>>) {
        for (qw, m) in self.weights.iter().zip(masters) {
            self.net.params[qw.param].value = m;
        }
    }

    /// Update the range of tensor `t` from one batch (warm EMA: running mean for the first
    /// `1/ema` batches, then EMA with weight `ema`).
    fn observe(ranges: &mut [Option<(f32, f32)>], seen: &mut [usize], ema: f32, t: TensorId, data: &[f32]) {
        let (lo, hi) = range_of(data);
        if lo > hi {
            return;
        }
        seen[t] += 1;
        let m = (1.0 / seen[t] as f32).max(ema);
        ranges[t] = Some(match ranges[t] {
            None => (lo, hi),
            Some((a, b)) => ((1.0 - m) * a + m * lo, (1.0 - m) * b + m * hi),
        });
    }

    /// One forward pass with fake quantization (`quantize` false: observation only).
    /// Returns the tape and the straight-through masks per tensor.
    fn forward(&mut self, mut x: Tensor, mode: Mode, track: bool, quantize: bool) -> Result<(super::Tape, Masks), TrainError> {
        let Trainer { net, points, ranges, seen, ema, .. } = self;
        let ema = *ema;
        let mut masks: Masks = vec![None; points.len()];
        let g = net.graph();
        let check = |t: TensorId, data: &[f32]| -> Result<(), TrainError> {
            if let Some(j) = data.iter().position(|v| !v.is_finite()) {
                let layer = g.producer(t).map(|p| format!("layer '{}' ({})", g.nodes[p].name, g.nodes[p].op.name()));
                return Err(TrainError::NonFinite(format!(
                    "{}: element {j} of '{}' is {}",
                    layer.unwrap_or_else(|| "input".into()),
                    g.tensors[t].name,
                    data[j]
                )));
            }
            Ok(())
        };
        for &i in &g.inputs {
            check(i, &x.data)?;
            if track {
                Self::observe(ranges, seen, ema, i, &x.data);
            }
            if quantize {
                if let Some(q) = points[i].and_then(|p| qparams_of(p, ranges[i])) {
                    fake_quant(&mut x.data, q, None);
                }
            }
        }
        let tape = net.forward_with(std::slice::from_ref(&x), mode, &mut |t, y| {
            let Some(p) = points[t] else { return Ok(()) };
            check(t, &y.data)?;
            if track && p == Point::Ranged {
                Self::observe(ranges, seen, ema, t, &y.data);
            }
            if quantize {
                if let Some(q) = qparams_of(p, ranges[t]) {
                    let mut m = Vec::new();
                    fake_quant(&mut y.data, q, Some(&mut m));
                    masks[t] = Some(m);
                }
            }
            Ok(())
        })?;
        Ok((tape, masks))
    }

    /// The fake-quant model of the current state: folded graph and ranges mapped by name.
    fn model(&self) -> Result<FakeQuantModel, TrainError> {
        let graph = self.folded_graph()?;
        let points = quant_points(&graph);
        let mut ranges = vec![None; graph.tensors.len()];
        for (id, p) in points.iter().enumerate() {
            if *p != Some(Point::Ranged) {
                continue;
            }
            let name = &graph.tensors[id].name;
            let r = self.net.tensor_id(name).and_then(|t| self.ranges[t]);
            ranges[id] = Some(r.ok_or_else(|| TrainError::Graph(format!("QAT: no activation range was observed for tensor '{name}'")))?);
        }
        Ok(FakeQuantModel { graph, ranges })
    }
}

impl FakeQuantModel {
    /// Fake-quant logits (graph output 0) of the images `idx` of `ds`, as `[idx.len(), classes]`
    /// flattened; `net` must come from [`FakeQuantModel::net`].
    fn forward_batch(&self, net: &Net, points: &[Option<Point>], mut x: Tensor) -> Result<Tensor, TrainError> {
        let g = &self.graph;
        for &i in &g.inputs {
            if let Some(q) = points[i].and_then(|p| qparams_of(p, self.ranges[i])) {
                fake_quant(&mut x.data, q, None);
            }
        }
        let tape = net.forward_with(std::slice::from_ref(&x), Mode::Eval, &mut |t, y| {
            if let Some(q) = points[t].and_then(|p| qparams_of(p, self.ranges[t])) {
                fake_quant(&mut y.data, q, None);
            }
            Ok(())
        })?;
        net.outputs(&tape).first().map(|t| (*t).clone()).ok_or_else(|| TrainError::Graph("the graph has no output".into()))
    }

    /// The quantization grid of tensor `t`: its own parameters, or those of the tensor it was
    /// computed from by ops that keep the grid (MaxPool, Reshape, Identity).
    fn grid(&self, points: &[Option<Point>], t: TensorId) -> Option<QParams> {
        let mut t = t;
        for _ in 0..=self.graph.nodes.len() {
            if let Some(p) = points[t] {
                return qparams_of(p, self.ranges[t]);
            }
            let n = &self.graph.nodes[self.graph.producer(t)?];
            if !keeps_grid(&n.op) {
                return None;
            }
            t = n.inputs[0];
        }
        None
    }

    /// A network over [`FakeQuantModel::graph`] whose Conv/Dense weights are their fake-quant
    /// values (exactly the int8 weights of the file times their scales) and whose biases are
    /// rounded to the file's int32 grid (`input scale × weight scale`).
    fn net(&self, threads: usize) -> Result<Net, TrainError> {
        let mut net = Net::new(self.graph.clone(), threads)?;
        let g = net.graph().clone();
        let points = quant_points(&g);
        for n in &g.nodes {
            if !matches!(n.op, Op::Conv { .. } | Op::Dense { .. }) {
                continue;
            }
            let Some(wp) = net.params.iter().position(|p| p.tensor == n.inputs[1] && p.kind == ParamKind::Weight) else { continue };
            let rows = net.params[wp].shape.first().copied().unwrap_or(1).max(1);
            let (_, scales) = quantize_weights_per_channel(&net.params[wp].value, rows);
            net.params[wp].value = fake_quant_weights(&net.params[wp].value, rows);
            let (Some(&bt), Some(xq)) = (n.inputs.get(2), self.grid(&points, n.inputs[0])) else { continue };
            if let Some(bp) = net.params.iter().position(|p| p.tensor == bt && p.kind == ParamKind::Bias) {
                for (c, b) in net.params[bp].value.iter_mut().enumerate() {
                    // As the lowering: round(b / (sx·sw)) in f64, clamped; back to real.
                    let step = xq.scale as f64 * scales[c.min(rows - 1)] as f64;
                    let q = (*b as f64 / step).round().clamp(-2e9, 2e9);
                    *b = (q * step) as f32;
                }
            }
        }
        Ok(net)
    }

    /// Fake-quant outputs (graph output 0) of every image of `ds`: `(values, per-image length)`.
    pub fn logits(&self, ds: &Dataset, norm: &Normalize, threads: usize) -> Result<(Vec<f32>, usize), TrainError> {
        let net = self.net(threads)?;
        let points = quant_points(&self.graph);
        let mut out = Vec::new();
        let mut width = 0;
        let idx: Vec<usize> = (0..ds.len()).collect();
        for chunk in idx.chunks(256) {
            let y = self.forward_batch(&net, &points, batch_tensor(ds, chunk, norm))?;
            width = y.data.len() / chunk.len().max(1);
            out.extend_from_slice(&y.data);
        }
        Ok((out, width))
    }

    /// Fake-quant top-1 accuracy on `ds`, percent.
    pub fn accuracy(&self, ds: &Dataset, norm: &Normalize, threads: usize) -> Result<f64, TrainError> {
        let (y, w) = self.logits(ds, norm, threads)?;
        Ok(top1(&y, w, &ds.labels))
    }

    /// Lower to a `.tmf` with exactly these ranges (no calibration, no bias correction); `norm`
    /// is folded into the input so the device takes raw u8 pixels.
    pub fn lower(&self, norm: &Normalize, metadata: Vec<(String, String)>) -> Result<Vec<u8>, TrainError> {
        let cal = Calibration::from_ranges(&self.ranges);
        let opts = LowerOptions {
            observer: Observer::MinMax,
            bias_correction: false,
            pixel_norm: Some(PixelNorm { pixel_scale: norm.scale, mean: norm.mean.clone(), std: norm.std.clone() }),
            metadata,
            expose_all: false,
        };
        lower(&self.graph, &cal, &opts).map(|l| l.bytes).map_err(|e| TrainError::Graph(e.to_string()))
    }
}

fn top1(y: &[f32], width: usize, labels: &[u32]) -> f64 {
    if width == 0 {
        return 0.0;
    }
    let preds = super::loss::argmax_rows(y, width);
    let ok = preds.iter().zip(labels).filter(|(p, l)| **p as u32 == **l).count();
    100.0 * ok as f64 / labels.len().max(1) as f64
}

/// Quantization-aware training of `student` on `train`, then lowering to a `.tmf`.
///
/// `student` is an FP32 graph as imported from ONNX (BatchNorm unfused or already folded) or
/// [`Net::to_graph`](super::Net::to_graph) of a trained network; it is not modified.
/// Convolutions followed by BatchNorm are trained in folded form. Every op must have an int8
/// lowering (the check runs before training).
///
/// `val` gives the per-epoch fake-quant curve and the final figures in [`QatOutcome`] (FP32
/// before QAT, fake-quant after, runtime INT8 of the emitted file and their [`Agreement`]).
/// `norm` normalizes the images and is folded into the file (raw u8 input on the device).
/// `progress` sees every [`QatProgress`] event.
///
/// Errors: [`TrainError::Config`] for bad settings or data, [`TrainError::Graph`] for a graph
/// that cannot be trained or lowered (naming the node), [`TrainError::NonFinite`] when training
/// diverges (naming step and layer).
pub fn qat(
    student: &Graph,
    train: &Dataset,
    val: &Dataset,
    norm: &Normalize,
    cfg: &QatConfig,
    progress: &mut dyn FnMut(&QatProgress),
) -> Result<QatOutcome, TrainError> {
    let t_start = Instant::now();
    if cfg.batch == 0 || cfg.epochs == 0 {
        return Err(TrainError::Config("QAT needs batch size and epochs ≥ 1".into()));
    }
    if !(cfg.lr.is_finite() && cfg.lr > 0.0 && cfg.min_lr.is_finite() && cfg.min_lr >= 0.0) {
        return Err(TrainError::Config(format!("QAT learning rates must be finite and positive (lr {}, min lr {})", cfg.lr, cfg.min_lr)));
    }
    if !(cfg.ema_momentum > 0.0 && cfg.ema_momentum <= 1.0 && (0.0..=1.0).contains(&cfg.distill_alpha)) {
        return Err(TrainError::Config("QAT: the EMA momentum must be in (0, 1] and the distillation weight in [0, 1]".into()));
    }
    if !(cfg.distill_temperature.is_finite() && cfg.distill_temperature > 0.0) {
        return Err(TrainError::Config("QAT: the distillation temperature must be > 0".into()));
    }
    if train.is_empty() || val.is_empty() {
        return Err(TrainError::Config("QAT needs non-empty training and validation sets".into()));
    }
    norm.validate(train.channels()).map_err(|e| TrainError::Config(e.to_string()))?;
    let mut t = Trainer::new(student, cfg)?;
    t.net.bn_momentum = cfg.bn_momentum;
    let fp32_net = t.net.clone();
    let classes = t.net.graph().outputs.first().map(|&o| t.net.graph().tensors[o].shape.last().copied().unwrap_or(0)).unwrap_or(0);
    if classes == 0 || val.num_classes > classes || train.num_classes > classes {
        return Err(TrainError::Config(format!(
            "QAT: the model has {classes} outputs but the data has {} classes",
            train.num_classes.max(val.num_classes)
        )));
    }

    progress(&QatProgress::Stage("fp32 evaluation"));
    let (fp32_accuracy, _) = super::evaluate(&fp32_net, val, norm, 500)?;

    // Range initialization: observe without quantizing activations (weights fake-quantized),
    // BatchNorm on its running statistics.
    progress(&QatProgress::Stage("range initialization"));
    let n = train.len();
    let steps_per_epoch = {
        let s = n.div_ceil(cfg.batch);
        cfg.max_steps_per_epoch.map_or(s, |m| s.min(m.max(1)))
    };
    let total = steps_per_epoch * cfg.epochs;
    let freeze_bn = cfg.freeze_bn_after.unwrap_or(total / 2);
    let freeze_ranges = cfg.freeze_ranges_after.unwrap_or(total / 2);
    {
        let mut order: Vec<usize> = (0..n).collect();
        Rng::new(cfg.seed, 0x9a7).shuffle(&mut order);
        for idx in order.chunks(cfg.batch).take(cfg.init_batches.max(1)) {
            let x = batch_tensor(train, idx, norm);
            let masters = t.swap_in_fake_weights();
            let r = t.forward(x, Mode::Eval, true, false);
            t.restore_weights(masters);
            r?;
        }
    }
    // The graph must lower before we spend time training it.
    t.model()?.lower(norm, Vec::new())?;

    let schedule = Schedule { base_lr: cfg.lr, kind: ScheduleKind::Cosine { min_lr: cfg.min_lr }, warmup_steps: 0 };
    let mut opt = Optimizer::new(cfg.optimizer, 0.0, t.net.params.len());
    let out_id = t.net.graph().outputs[0];
    let val_eval = if cfg.val_samples > 0 && cfg.val_samples < val.len() {
        val.take(cfg.val_samples).map_err(|e| TrainError::Config(e.to_string()))?
    } else {
        val.clone()
    };
    let mut epochs = Vec::new();
    let mut step = 0usize;
    let mut train_seconds = 0.0;
    let mut buf = Vec::new();
    for epoch in 0..cfg.epochs {
        let mut order: Vec<usize> = (0..n).collect();
        Rng::new(cfg.seed, 1 + epoch as u64).shuffle(&mut order);
        let mut aug_rng = Rng::new(cfg.seed, 0x1000 + epoch as u64);
        let t0 = Instant::now();
        let (mut sum_loss, mut correct, mut seen, mut batches) = (0.0f64, 0usize, 0usize, 0usize);
        let mut lr = cfg.lr;
        for (b, idx) in order.chunks(cfg.batch).take(steps_per_epoch).enumerate() {
            let x = batch_input(train, idx, norm, cfg.augment, &mut aug_rng, &mut buf);
            let labels: Vec<u32> = idx.iter().map(|&i| train.labels[i]).collect();
            lr = schedule.lr(step, total, steps_per_epoch);
            let soft = if cfg.distill_alpha > 0.0 {
                let tape = fp32_net.forward(std::slice::from_ref(&x), Mode::Eval)?;
                let y = fp32_net.outputs(&tape)[0];
                Some(softmax_t(&y.data, classes, cfg.distill_temperature))
            } else {
                None
            };
            let mode = if step < freeze_bn { Mode::Train } else { Mode::Eval };
            let masters = t.swap_in_fake_weights();
            let res = (|| -> Result<super::loss::LossOut, TrainError> {
                let (tape, masks) = t.forward(x.clone(), mode, step < freeze_ranges, true)?;
                let logits = t.net.outputs(&tape)[0];
                let out = distill_loss(&logits.data, classes, &labels, soft.as_deref(), cfg.distill_alpha, cfg.distill_temperature);
                if !out.total.is_finite() {
                    return Err(TrainError::NonFinite(format!("loss is {}", out.total)));
                }
                t.net.zero_grad();
                t.net.backward_with(&tape, vec![(out_id, out.grad.clone())], &[], &mut |id, dy| {
                    if let Some(m) = &masks[id] {
                        for (g, &keep) in dy.iter_mut().zip(m) {
                            if !keep {
                                *g = 0.0;
                            }
                        }
                    }
                })?;
                t.net.update_running_stats(&tape);
                Ok(out)
            })();
            t.restore_weights(masters);
            let out = res.map_err(|e| match e {
                TrainError::NonFinite(m) => TrainError::NonFinite(format!("QAT step {step} (epoch {}, batch {b}): {m}", epoch + 1)),
                e => e,
            })?;
            buf = x.data;
            for p in &t.net.params {
                if let Some(j) = p.grad.iter().position(|v| !v.is_finite()) {
                    return Err(TrainError::NonFinite(format!(
                        "QAT step {step} (epoch {}): gradient of '{}' in layer '{}' is {} at element {j}",
                        epoch + 1,
                        p.name,
                        p.layer,
                        p.grad[j]
                    )));
                }
            }
            opt.step(&mut t.net.params, lr);
            step += 1;
            batches += 1;
            sum_loss += out.total;
            correct += out.correct;
            seen += idx.len();
            let el = t0.elapsed().as_secs_f64();
            progress(&QatProgress::Step {
                epoch: epoch + 1,
                epochs: cfg.epochs,
                step: b + 1,
                steps: steps_per_epoch,
                loss: sum_loss / batches as f64,
                images_per_sec: seen as f64 / el.max(1e-9),
                eta_seconds: (steps_per_epoch - b - 1) as f64 * el / (b + 1) as f64,
            });
        }
        let seconds = t0.elapsed().as_secs_f64();
        train_seconds += seconds;
        let val_acc = t.model()?.accuracy(&val_eval, norm, cfg.threads)?;
        let rep = QatEpoch {
            epoch: epoch + 1,
            loss: sum_loss / batches.max(1) as f64,
            train_acc: correct as f64 * 100.0 / seen.max(1) as f64,
            val_acc,
            lr,
            bn_frozen: step >= freeze_bn,
            ranges_frozen: step >= freeze_ranges,
            seconds,
            images_per_sec: seen as f64 / seconds.max(1e-9),
        };
        progress(&QatProgress::Epoch(&rep));
        epochs.push(rep);
    }

    progress(&QatProgress::Stage("lowering"));
    let model = t.model()?;
    let mut meta = cfg.metadata.clone();
    meta.extend([
        ("quantization".to_string(), "qat".to_string()),
        ("qat.epochs".to_string(), cfg.epochs.to_string()),
        ("qat.steps".to_string(), step.to_string()),
        ("qat.lr".to_string(), format!("{:e}", cfg.lr)),
        ("qat.freeze_bn_after".to_string(), freeze_bn.to_string()),
        ("qat.freeze_ranges_after".to_string(), freeze_ranges.to_string()),
        ("accuracy.fp32".to_string(), format!("{fp32_accuracy:.2}")),
    ]);
    let bytes = model.lower(norm, meta.clone())?;
    progress(&QatProgress::Stage("int8 evaluation"));
    let agreement = check_agreement(&model, &bytes, val, norm, cfg.threads)?;
    meta.push(("accuracy.fake_quant".to_string(), format!("{:.2}", agreement.fake_quant_top1)));
    meta.push(("accuracy.int8".to_string(), format!("{:.2}", agreement.int8_top1)));
    // Same tensors and ops; only the metadata differs from the file just measured.
    let bytes = model.lower(norm, meta)?;
    Ok(QatOutcome {
        bytes,
        fp32_accuracy,
        fake_quant_accuracy: agreement.fake_quant_top1,
        int8_accuracy: agreement.int8_top1,
        agreement,
        model,
        epochs,
        train_seconds,
        seconds: t_start.elapsed().as_secs_f64(),
    })
}

/// Run the emitted file `bytes` through `temper-runtime` and the fake-quant `model` on every
/// image of `ds`, and compare top-1 and logits.
pub fn check_agreement(
    model: &FakeQuantModel,
    bytes: &[u8],
    ds: &Dataset,
    norm: &Normalize,
    threads: usize,
) -> Result<Agreement, TrainError> {
    let buf = temper_runtime::writer::AlignedBuf::from_bytes(bytes);
    let m = temper_runtime::Model::from_bytes(buf.as_bytes()).map_err(|e| TrainError::Graph(format!("emitted model: {e}")))?;
    let out = *m.graph_outputs().first().ok_or_else(|| TrainError::Graph("emitted model has no output".into()))?;
    let scale = m.tensor(out).scale;
    let (acc, rt) = crate::eval::int8_run(bytes, ds, norm, threads).map_err(|e| TrainError::Graph(format!("runtime: {e}")))?;
    let (fq, width) = model.logits(ds, norm, threads)?;
    if rt.iter().any(|r| r.len() != width) {
        return Err(TrainError::Graph(format!("runtime output length differs from the fake-quant model's ({width})")));
    }
    let (mut within, mut total, mut max_steps) = (0usize, 0usize, 0f64);
    let mut same = 0usize;
    let fq_preds = super::loss::argmax_rows(&fq, width);
    for (i, r) in rt.iter().enumerate() {
        let f = &fq[i * width..(i + 1) * width];
        for (a, b) in r.iter().zip(f) {
            let steps = ((a - b).abs() / scale.max(f32::MIN_POSITIVE)) as f64;
            max_steps = max_steps.max(steps);
            // Tolerance: both sides are on the same grid; allow float noise in the division.
            if steps <= 1.0 + 1e-3 {
                within += 1;
            }
            total += 1;
        }
        if fq_preds[i] as u32 == acc.predictions[i] {
            same += 1;
        }
    }
    let n = ds.len().max(1) as f64;
    Ok(Agreement {
        images: ds.len(),
        fake_quant_top1: top1(&fq, width, &ds.labels),
        int8_top1: acc.top1,
        same_prediction: same as f64 * 100.0 / n,
        logits_within_one_step: within as f64 * 100.0 / total.max(1) as f64,
        max_steps,
        output_scale: scale,
    })
}

/// What [`check_weights`] compared.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WeightCheck {
    /// Conv/Dense layers compared.
    pub layers: usize,
    /// Weight values compared.
    pub values: usize,
    /// Values whose `int8 × scale` in the file differs (bitwise) from the fake-quant weight,
    /// with the first few as `(layer, index in the IR weight tensor)`.
    pub mismatches: usize,
    /// The first mismatches.
    pub first: Vec<(String, usize)>,
}

/// Compare, bit for bit, every Conv/Dense weight of the emitted file (`int8 × per-channel
/// scale`, read back from the packed layout) with the fake-quant weight of `model` that QAT
/// trained with.
pub fn check_weights(model: &FakeQuantModel, bytes: &[u8]) -> Result<WeightCheck, TrainError> {
    use temper_kernels::pack;
    use temper_runtime::format::OpCode;
    let buf = temper_runtime::writer::AlignedBuf::from_bytes(bytes);
    let m = temper_runtime::Model::from_bytes(buf.as_bytes()).map_err(|e| TrainError::Graph(format!("emitted model: {e}")))?;
    let g = &model.graph;
    let mut rep = WeightCheck::default();
    for op in m.ops() {
        let Some(node) = g.nodes.iter().find(|n| n.name == op.name && matches!(n.op, Op::Conv { .. } | Op::Dense { .. })) else {
            continue;
        };
        let wname = format!("{}.weights", op.name);
        let Some(&wid) = op.inputs.iter().find(|&&t| m.tensor(t).name == wname) else {
            return Err(TrainError::Graph(format!("emitted model: op '{}' has no weight tensor '{wname}'", op.name)));
        };
        let bad = |what: &str| TrainError::Graph(format!("emitted model: weights of '{}': {what}", op.name));
        let dims: Vec<usize> = m.tensor(wid).dims.iter().map(|&d| d as usize).collect();
        let scales = m.channel_scales(wid).ok_or_else(|| bad("no per-channel scales"))?;
        let packed = m.const_i8(wid);
        let w = g.const_f32(node.inputs[1]).ok_or_else(|| bad("the IR weight is not constant"))?;
        let ws = &g.tensors[node.inputs[1]].shape;
        let rows = ws[0];
        let fq = fake_quant_weights(w, rows);
        let k_ir = w.len() / rows.max(1);
        if let (Op::Conv { group, .. }, OpCode::Depthwise2d) = (&node.op, op.code) {
            // Depthwise: plain [KH][KW][C], one channel per output.
            if *group != rows
                || dims.len() != 3
                || dims[2] != rows
                || dims[0] * dims[1] != k_ir
                || scales.len() != rows
                || packed.len() != w.len()
            {
                return Err(bad(&format!("depthwise file dims {dims:?} do not match the IR weight {ws:?}")));
            }
            rep.layers += 1;
            for oc in 0..rows {
                for t in 0..k_ir {
                    let file = packed[t * rows + oc] as f32 * scales[oc];
                    rep.values += 1;
                    if file.to_bits() != fq[oc * k_ir + t].to_bits() {
                        rep.mismatches += 1;
                        if rep.first.len() < 8 {
                            rep.first.push((op.name.to_string(), oc * k_ir + t));
                        }
                    }
                }
            }
            continue;
        }
        if dims.len() != 3 || scales.len() != rows || dims[1] * dims[0] != rows || dims[2] != k_ir {
            return Err(bad(&format!("file dims {dims:?} do not match the IR weight {ws:?}")));
        }
        let (groups, cog, k) = (dims[0], dims[1], dims[2]);
        let per = pack::packed_len(cog, k).ok_or_else(|| bad("size overflow"))?;
        if packed.len() < groups * per {
            return Err(bad("packed data too short"));
        }
        // IR reduction index → file reduction index.
        let col: Vec<usize> = match node.op {
            Op::Conv { .. } => {
                let (cg, kh, kw) = (ws[1], ws[2], ws[3]);
                (0..k).map(|j| (j % (kh * kw)) * cg + j / (kh * kw)).collect()
            }
            _ => {
                let src = node.inputs[0];
                let flat = g.producer(src).map(|p| &g.nodes[p]).filter(|p| p.op == Op::Reshape).and_then(|p| {
                    let s = &g.tensors[p.inputs[0]].shape;
                    let all_dense =
                        g.consumers(src).iter().all(|&c| matches!(g.nodes[c].op, Op::Dense { .. }) && g.nodes[c].inputs[0] == src);
                    (s.len() == 4 && s[2] * s[3] != 1 && all_dense && !g.outputs.contains(&src)).then(|| (s[1], s[2], s[3]))
                });
                match flat {
                    Some((c, h, ww)) => (0..k).map(|j| ((j % (h * ww)) * c) + j / (h * ww)).collect(),
                    None => (0..k).collect(),
                }
            }
        };
        rep.layers += 1;
        for oc in 0..rows {
            let (grp, r) = (oc / cog, oc % cog);
            for (j, &fj) in col.iter().enumerate() {
                let q = pack::get(&packed[grp * per..(grp + 1) * per], r, fj, k);
                let file = q as f32 * scales[oc];
                rep.values += 1;
                if file.to_bits() != fq[oc * k_ir + j].to_bits() {
                    rep.mismatches += 1;
                    if rep.first.len() < 8 {
                        rep.first.push((op.name.to_string(), oc * k_ir + j));
                    }
                }
            }
        }
    }
    Ok(rep)
}

/// Usage of `temper qat`.
pub const USAGE: &str = "temper qat — quantization-aware training of an FP32 model, emitting an INT8 .tmf

USAGE:
  temper qat --model S.onnx -o OUT.tmf [options]

options:
  --train SPEC              training data (default fashion-mnist:train)
  --val SPEC                validation data: per-epoch curve and final figures (default fashion-mnist:val)
  --test SPEC               data the agreement check and the final accuracies are reported on
                            (optional; the check uses --val without it)
  --epochs E                epochs (default 1)
  --batch B                 mini-batch size (default 128)
  --lr LR                   peak learning rate, Adam with cosine decay (default 1e-4)
  --min-lr LR               final learning rate (default 0)
  --freeze-bn-after N       steps with BatchNorm batch statistics before freezing them (default half)
  --freeze-ranges-after N   steps of EMA range tracking before freezing the ranges (default half)
  --ema M                   EMA weight of each batch's min/max (default 0.01)
  --init-batches N          batches observed to initialize the ranges (default 16)
  --bn-momentum M           BatchNorm running-statistics momentum before the freeze (default 0.01)
  --distill-alpha A         weight of self-distillation from the FP32 model (default 0.7; 0 = labels only)
  --distill-T T             its temperature (default 4)
  --augment A               none | crop[:P] | flip | crop,flip (default none)
  --seed S                  shuffling seed (default 1)
  --threads T               worker threads (default 2)
  --max-steps N             stop every epoch after N steps (quick runs)
  --val-samples N           validation images for the per-epoch curve (default all)
  --max-drop P              fail if INT8 top-1 is more than P points below FP32 (on --val)
  --mean M / --std S / --pixel-scale X   normalization of u8 data (default 0 / 1 / 1/255; Fashion-MNIST's
                            0.2860 / 0.3530 for fashion-mnist:* data); f32 data is taken as given
  --no-progress             no progress line

The file is written (atomically) only when the emitted model agrees with the fake-quant model
(top-1 within 0.1 points, ≥ 99 % of logits within one output quantization step; on --test if
given, else on --val), its int8 weights × scales equal the fake-quant weights bit for bit, and
the optional --max-drop gate passes; otherwise the command exits with status 1.";

/// `temper qat` with the arguments after the command name. Returns whether the model passed
/// its checks and was written.
pub fn run_cli(args: &[String]) -> Result<bool, String> {
    use std::collections::HashMap;
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(true);
    }
    const KNOWN: &[&str] = &[
        "model",
        "o",
        "out",
        "train",
        "val",
        "test",
        "epochs",
        "batch",
        "lr",
        "min-lr",
        "freeze-bn-after",
        "freeze-ranges-after",
        "ema",
        "init-batches",
        "bn-momentum",
        "distill-alpha",
        "distill-T",
        "augment",
        "seed",
        "threads",
        "max-steps",
        "val-samples",
        "max-drop",
        "mean",
        "std",
        "pixel-scale",
    ];
    let mut opts: HashMap<String, String> = HashMap::new();
    let mut quiet = false;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--no-progress" {
            quiet = true;
            i += 1;
            continue;
        }
        let key = match a.strip_prefix("--") {
            Some(k) => k,
            None if a == "-o" => "o",
            None => return Err(format!("unexpected argument '{a}' (see temper qat --help)")),
        };
        if !KNOWN.contains(&key) {
            return Err(format!("unknown option --{key} (see temper qat --help)"));
        }
        let v = args.get(i + 1).ok_or_else(|| format!("option --{key} needs a value"))?;
        opts.insert(key.to_string(), v.clone());
        i += 2;
    }
    fn num<T: std::str::FromStr>(opts: &HashMap<String, String>, k: &str) -> Result<Option<T>, String> {
        opts.get(k).map(|v| v.parse::<T>().map_err(|_| format!("--{k}: '{v}' is not a valid number"))).transpose()
    }
    let floats = |s: &str, what: &str| -> Result<Vec<f32>, String> {
        s.split(',').map(|v| v.trim().parse::<f32>().map_err(|_| format!("{what}: '{v}' is not a number"))).collect()
    };
    let get = |k: &str, d: &'static str| opts.get(k).map(|s| s.as_str()).unwrap_or(d).to_string();
    let model_path = opts.get("model").ok_or("missing --model S.onnx")?.clone();
    let out = std::path::PathBuf::from(opts.get("o").or(opts.get("out")).ok_or("missing -o OUT.tmf")?);
    temper_data::fsout::check_outputs(&[std::path::Path::new(&model_path)], &[out.as_path()]).map_err(|e| e.to_string())?;
    let dflt = Normalize::default_for(&get("train", "fashion-mnist:train"));
    let norm = Normalize::new(
        opts.get("mean").map(|v| floats(v, "--mean")).transpose()?.unwrap_or(dflt.mean),
        opts.get("std").map(|v| floats(v, "--std")).transpose()?.unwrap_or(dflt.std),
        opts.get("pixel-scale").map(|v| floats(v, "--pixel-scale")).transpose()?.map_or(dflt.scale, |v| v[0]),
    );
    let d = QatConfig::default();
    let cfg = QatConfig {
        epochs: num(&opts, "epochs")?.unwrap_or(d.epochs),
        batch: num(&opts, "batch")?.unwrap_or(d.batch),
        lr: num(&opts, "lr")?.unwrap_or(d.lr),
        min_lr: num(&opts, "min-lr")?.unwrap_or(d.min_lr),
        freeze_bn_after: num(&opts, "freeze-bn-after")?,
        freeze_ranges_after: num(&opts, "freeze-ranges-after")?,
        ema_momentum: num(&opts, "ema")?.unwrap_or(d.ema_momentum),
        init_batches: num(&opts, "init-batches")?.unwrap_or(d.init_batches),
        bn_momentum: num(&opts, "bn-momentum")?.unwrap_or(d.bn_momentum),
        distill_alpha: num(&opts, "distill-alpha")?.unwrap_or(d.distill_alpha),
        distill_temperature: num(&opts, "distill-T")?.unwrap_or(d.distill_temperature),
        seed: num(&opts, "seed")?.unwrap_or(d.seed),
        augment: Augment::parse(&get("augment", "none"))?,
        threads: num::<usize>(&opts, "threads")?.unwrap_or(d.threads).max(1),
        max_steps_per_epoch: num(&opts, "max-steps")?,
        val_samples: num(&opts, "val-samples")?.unwrap_or(0),
        metadata: vec![
            ("converter.version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
            (
                "source.model".to_string(),
                std::path::Path::new(&model_path).file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default(),
            ),
        ],
        ..d
    };
    let max_drop: Option<f64> = num(&opts, "max-drop")?;
    let g = crate::onnx::load_onnx(std::path::Path::new(&model_path), None).map_err(|e| format!("{model_path}: {e}"))?;
    let train = temper_data::load_dataset(&get("train", "fashion-mnist:train")).map_err(|e| e.to_string())?;
    let val = temper_data::load_dataset(&get("val", "fashion-mnist:val")).map_err(|e| e.to_string())?;
    let mut cfg = cfg;
    cfg.metadata.insert(0, ("name".to_string(), g.name.clone()));
    if !val.class_names.is_empty() {
        cfg.metadata.push(("labels".to_string(), val.class_names.join(",")));
    }
    eprintln!(
        "QAT of {model_path}: {} epochs, batch {}, lr {:e} (Adam, cosine), BatchNorm frozen after {}, ranges after {} steps; {} threads",
        cfg.epochs,
        cfg.batch,
        cfg.lr,
        cfg.freeze_bn_after.map_or("half of the steps".to_string(), |s| s.to_string()),
        cfg.freeze_ranges_after.map_or("half of the".to_string(), |s| s.to_string()),
        cfg.threads
    );
    let mut last = Instant::now();
    let outcome = qat(&g, &train, &val, &norm, &cfg, &mut |p| match p {
        QatProgress::Stage(s) => {
            if !quiet {
                eprintln!("{s} …");
            }
        }
        QatProgress::Step { epoch, epochs, step, steps, loss, images_per_sec, eta_seconds } => {
            if !quiet && (last.elapsed().as_secs_f64() > 0.5 || step == steps) {
                last = Instant::now();
                eprint!("\repoch {epoch}/{epochs} {step}/{steps}  loss {loss:.4}  {images_per_sec:.0} img/s  ETA {:.0} s   ", eta_seconds);
                if step == steps {
                    eprintln!();
                }
            }
        }
        QatProgress::Epoch(e) => println!(
            "epoch {}/{}  loss {:.4}  train acc {:.2}%  fake-quant val acc {:.2}%  lr {:.2e}  BN {}  ranges {}  {:.1} s  {:.0} img/s",
            e.epoch,
            cfg.epochs,
            e.loss,
            e.train_acc,
            e.val_acc,
            e.lr,
            if e.bn_frozen { "frozen" } else { "batch stats" },
            if e.ranges_frozen { "frozen" } else { "EMA" },
            e.seconds,
            e.images_per_sec
        ),
    })
    .map_err(|e| e.to_string())?;
    println!(
        "validation ({} images): FP32 {:.2}%  fake-quant {:.2}%  INT8 (emitted file, temper-runtime) {:.2}%",
        val.len(),
        outcome.fp32_accuracy,
        outcome.fake_quant_accuracy,
        outcome.int8_accuracy
    );
    let mut agreement = outcome.agreement.clone();
    let mut set = "validation";
    if let Some(spec) = opts.get("test") {
        let test = temper_data::load_dataset(spec).map_err(|e| e.to_string())?;
        let fp = crate::eval::fp32_accuracy(
            &{
                let mut g2 = g.clone();
                passes::optimize(&mut g2).map_err(|e| e.to_string())?;
                g2
            },
            &test,
            &norm,
        )
        .map_err(|e| e.to_string())?;
        agreement = check_agreement(&outcome.model, &outcome.bytes, &test, &norm, cfg.threads).map_err(|e| e.to_string())?;
        set = "test";
        println!(
            "test ({} images): FP32 {:.2}%  fake-quant {:.2}%  INT8 (emitted file, temper-runtime) {:.2}%  (INT8 − FP32 {:+.2} points)",
            test.len(),
            fp.top1,
            agreement.fake_quant_top1,
            agreement.int8_top1,
            agreement.int8_top1 - fp.top1
        );
    }
    println!(
        "agreement on {set}: top-1 fake-quant {:.2}% vs INT8 {:.2}% (|Δ| {:.2} points, limit 0.1); same prediction {:.2}%; \
         logits within one step ({:.4}) {:.3}% (limit ≥ 99%), max {:.2} steps",
        agreement.fake_quant_top1,
        agreement.int8_top1,
        (agreement.fake_quant_top1 - agreement.int8_top1).abs(),
        agreement.same_prediction,
        agreement.output_scale,
        agreement.logits_within_one_step,
        agreement.max_steps
    );
    let wc = check_weights(&outcome.model, &outcome.bytes).map_err(|e| e.to_string())?;
    println!(
        "weights: {} values in {} layers; file int8 × scale equals the fake-quant weight bit for bit on {} ({} mismatches)",
        wc.values,
        wc.layers,
        wc.values - wc.mismatches,
        wc.mismatches
    );
    println!(
        "time: {:.1} s training ({} epochs), {:.1} s in total; file {} bytes",
        outcome.train_seconds,
        outcome.epochs.len(),
        outcome.seconds,
        outcome.bytes.len()
    );
    let mut failures = Vec::new();
    if !agreement.passed() {
        failures.push("the emitted file does not agree with the fake-quant model".to_string());
    }
    if wc.mismatches > 0 {
        failures.push(format!("{} weights of the file differ from the fake-quant weights (first: {:?})", wc.mismatches, wc.first));
    }
    if let Some(m) = max_drop {
        let drop = outcome.fp32_accuracy - outcome.int8_accuracy;
        if drop > m {
            failures.push(format!("INT8 top-1 is {drop:.2} points below FP32 on validation (allowed {m})"));
        }
    }
    if !failures.is_empty() {
        eprintln!("QAT check failed: {}; {} not written", failures.join("; "), out.display());
        return Ok(false);
    }
    crate::ptq::write_atomic(&out, &outcome.bytes).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("wrote {} ({} bytes)", out.display(), outcome.bytes.len());
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Activation, Node, Window};
    use temper_data::Pixels;

    fn rand_vec(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| rng.normal() * scale).collect()
    }

    /// x [N,1,8,8] → Conv 3×3 (4 ch, no bias) → BatchNorm → Relu → depthwise Conv 3×3 (bias)
    /// → BatchNorm → Relu → MaxPool 2 → Flatten → Dense 64→3.
    fn conv_bn_graph(seed: u64) -> Graph {
        let mut rng = Rng::new(seed, 3);
        let mut g = Graph { name: "qat-test".into(), ..Default::default() };
        let x = g.add_tensor("x", vec![1, 1, 8, 8], None);
        let w = g.add_tensor("conv.w", vec![4, 1, 3, 3], Some(ConstData::F32(rand_vec(&mut rng, 36, 0.5))));
        let c = g.add_tensor("conv.out", vec![1, 4, 8, 8], None);
        let gamma = g.add_tensor("bn.gamma", vec![4], Some(ConstData::F32(vec![1.2, 0.8, -0.5, 2.0])));
        let beta = g.add_tensor("bn.beta", vec![4], Some(ConstData::F32(vec![0.1, -0.2, 0.3, 0.0])));
        let mean = g.add_tensor("bn.mean", vec![4], Some(ConstData::F32(vec![0.05, -0.1, 0.2, 0.0])));
        let var = g.add_tensor("bn.var", vec![4], Some(ConstData::F32(vec![0.9, 1.5, 0.4, 2.2])));
        let b = g.add_tensor("bn.out", vec![1, 4, 8, 8], None);
        let r = g.add_tensor("relu.out", vec![1, 4, 8, 8], None);
        let dww = g.add_tensor("dw.w", vec![4, 1, 3, 3], Some(ConstData::F32(rand_vec(&mut rng, 36, 0.5))));
        let dwb = g.add_tensor("dw.b", vec![4], Some(ConstData::F32(vec![0.0, 0.1, -0.1, 0.2])));
        let d = g.add_tensor("dw.out", vec![1, 4, 8, 8], None);
        let bn2: Vec<TensorId> =
            [vec![0.9f32, 1.1, 1.0, 0.7], vec![0.0, 0.1, 0.2, -0.1], vec![0.1, 0.0, -0.1, 0.3], vec![1.2, 0.8, 1.0, 0.6]]
                .into_iter()
                .enumerate()
                .map(|(i, v)| g.add_tensor(format!("bn2.{i}"), vec![4], Some(ConstData::F32(v))))
                .collect();
        let b2 = g.add_tensor("bn2.out", vec![1, 4, 8, 8], None);
        let r2 = g.add_tensor("relu2.out", vec![1, 4, 8, 8], None);
        let p = g.add_tensor("pool.out", vec![1, 4, 4, 4], None);
        let f = g.add_tensor("flat", vec![1, 64], None);
        let dw = g.add_tensor("fc.w", vec![3, 64], Some(ConstData::F32(rand_vec(&mut rng, 192, 0.2))));
        let db = g.add_tensor("fc.b", vec![3], Some(ConstData::F32(vec![0.1, 0.0, -0.1])));
        let y = g.add_tensor("logits", vec![1, 3], None);
        let win = |k: usize, s: usize, pad: usize| Window { kernel: [k, k], stride: [s, s], pads: [pad; 4], dilation: [1, 1] };
        let node = |name: &str, op: Op, inputs: Vec<TensorId>, out: TensorId| Node { name: name.into(), op, inputs, outputs: vec![out] };
        g.nodes = vec![
            node("conv", Op::Conv { window: win(3, 1, 1), group: 1, act: Activation::None }, vec![x, w], c),
            node("bn", Op::BatchNorm { eps: 1e-5 }, vec![c, gamma, beta, mean, var], b),
            node("relu", Op::Act(Activation::Relu), vec![b], r),
            node("dw", Op::Conv { window: win(3, 1, 1), group: 4, act: Activation::None }, vec![r, dww, dwb], d),
            node("bn2", Op::BatchNorm { eps: 1e-3 }, vec![d, bn2[0], bn2[1], bn2[2], bn2[3]], b2),
            node("relu2", Op::Act(Activation::Relu), vec![b2], r2),
            node("pool", Op::MaxPool { window: win(2, 2, 0), ceil_mode: false }, vec![r2], p),
            node("flatten", Op::Reshape, vec![p], f),
            node("fc", Op::Dense { act: Activation::None }, vec![f, dw, db], y),
        ];
        g.inputs = vec![x];
        g.outputs = vec![y];
        g
    }

    fn images(n: usize, seed: u64) -> Dataset {
        let mut rng = Rng::new(seed, 5);
        let px: Vec<u8> = (0..n * 64).map(|_| rng.below(256) as u8).collect();
        let labels: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
        Dataset::new(Pixels::U8(px), [n, 1, 8, 8], labels, 3, "synthetic").unwrap()
    }

    #[test]
    fn fake_quant_activations_match_the_runtimes_quantize_bit_for_bit() {
        // x [1, 4096] → Reshape → y: the file quantizes the input and dequantizes the output with
        // the same parameters, so y is the runtime's quantize + dequantize of x.
        let mut g = Graph { name: "fq".into(), ..Default::default() };
        let x = g.add_tensor("x", vec![1, 4096], None);
        let y = g.add_tensor("y", vec![1, 4096], None);
        g.nodes = vec![Node { name: "r".into(), op: Op::Reshape, inputs: vec![x], outputs: vec![y] }];
        g.inputs = vec![x];
        g.outputs = vec![y];
        let mut rng = Rng::new(11, 1);
        for &(lo, hi) in &[(-1.3f32, 2.7f32), (0.0, 6.0), (-0.01, 0.02), (-5.0, -1.0), (0.3, 0.31)] {
            let q = qparams_for_range(lo, hi);
            let mut ranges = vec![None; 2];
            ranges[x] = Some((lo, hi));
            ranges[y] = Some((lo, hi));
            let bytes = FakeQuantModel { graph: g.clone(), ranges: ranges.clone() }.lower(&Normalize::identity(), Vec::new()).unwrap();
            let buf = temper_runtime::writer::AlignedBuf::from_bytes(&bytes);
            let model = temper_runtime::Model::from_bytes(buf.as_bytes()).unwrap();
            let mut arena = vec![0u8; model.arena_size()];
            let mut sess = temper_runtime::Session::new(&model, &mut arena).unwrap();
            assert_eq!(
                (model.tensor(model.graph_outputs()[0]).scale, model.tensor(model.graph_outputs()[0]).zero_point),
                (q.scale, q.zero_point)
            );
            // Random values over twice the range, plus exact ties between grid points.
            let width = (hi - lo).max(0.1);
            let mut v: Vec<f32> = (0..2048).map(|_| lo - width / 2.0 + rng.next_f32() * 2.0 * width).collect();
            v.extend((0..2048i32).map(|i| q.scale * ((i % 300 - 150 - q.zero_point) as f32 + 0.5)));
            sess.set_input_f32(0, &v).unwrap();
            sess.run().unwrap();
            let mut rt = vec![0f32; v.len()];
            sess.output_f32(0, &mut rt).unwrap();
            let mut fq = v.clone();
            fake_quant(&mut fq, q, None);
            for (i, (a, b)) in rt.iter().zip(&fq).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "range ({lo}, {hi}), value {} → runtime {a}, fake-quant {b} (#{i})", v[i]);
            }
        }
    }

    #[test]
    fn fake_quant_weights_are_the_lowered_int8_weights_times_scales() {
        let g = conv_bn_graph(7);
        let ds = images(64, 1);
        let cfg = QatConfig { threads: 1, ..Default::default() };
        let mut t = Trainer::new(&g, &cfg).unwrap();
        assert_eq!(t.folds.len(), 2, "conv + BatchNorm is trained folded");
        for c in 0..4 {
            // a varied folded model: running statistics moved, weights moved
            t.net.params[t.folds[0].var].value[c] *= 1.0 + 0.1 * c as f32;
        }
        let masters = t.swap_in_fake_weights();
        t.forward(batch_tensor(&ds, &(0..64).collect::<Vec<_>>(), &Normalize::unit()), Mode::Eval, true, false).unwrap();
        t.restore_weights(masters);
        let model = t.model().unwrap();
        let bytes = model.lower(&Normalize::unit(), Vec::new()).unwrap();
        let rep = check_weights(&model, &bytes).unwrap();
        assert_eq!(rep.layers, 3);
        assert_eq!(rep.values, 36 + 36 + 192);
        assert_eq!(rep.mismatches, 0, "{:?}", rep.first);
        // The folded weight the training forward quantizes (w·γ/√(σ²+ε)) is the one in the file:
        // conv(x, fq(w·s))/s · s == the folded model's weight.
        let masters = t.swap_in_fake_weights();
        let eff = t.net.params[t.folds[0].w].value.clone();
        t.restore_weights(masters);
        let s = t.folds[0].factors(&t.net);
        let folded = model.graph.nodes.iter().find(|n| n.name == "conv").unwrap();
        let wf = fake_quant_weights(model.graph.const_f32(folded.inputs[1]).unwrap(), 4);
        for (i, (&e, &f)) in eff.iter().zip(&wf).enumerate() {
            assert!((e * s[i / 9] - f).abs() <= 1e-6 * f.abs().max(1e-3), "weight {i}: {} vs {f}", e * s[i / 9]);
        }
    }

    #[test]
    fn frozen_bn_training_forward_equals_the_folded_fake_quant_model() {
        let g = conv_bn_graph(9);
        let ds = images(96, 2);
        let norm = Normalize::unit();
        let cfg = QatConfig { threads: 1, ..Default::default() };
        let mut t = Trainer::new(&g, &cfg).unwrap();
        let idx: Vec<usize> = (0..96).collect();
        let masters = t.swap_in_fake_weights();
        t.forward(batch_tensor(&ds, &idx, &norm), Mode::Eval, true, false).unwrap();
        let (tape, masks) = t.forward(batch_tensor(&ds, &idx, &norm), Mode::Eval, false, true).unwrap();
        t.restore_weights(masters);
        let train_logits = t.net.outputs(&tape)[0].data.clone();
        assert_eq!(masks.iter().flatten().count(), 3, "input is quantized outside the net; relu outputs and logits inside");
        let model = t.model().unwrap();
        let (fq, width) = model.logits(&ds, &norm, 1).unwrap();
        assert_eq!(width, 3);
        let q = qparams_for_range(model.ranges[model.graph.outputs[0]].unwrap().0, model.ranges[model.graph.outputs[0]].unwrap().1);
        let off = train_logits.iter().zip(&fq).filter(|(a, b)| (*a - *b).abs() > q.scale * 1.001).count();
        let same = train_logits.iter().zip(&fq).filter(|(a, b)| a == b).count();
        assert_eq!(off, 0, "frozen-BN training forward and folded model differ by more than a step");
        assert!(same * 100 >= train_logits.len() * 95, "only {same} of {} logits identical", train_logits.len());
        // And the emitted file agrees with the fake-quant model.
        let bytes = model.lower(&norm, Vec::new()).unwrap();
        let a = check_agreement(&model, &bytes, &ds, &norm, 1).unwrap();
        assert!(a.passed(), "{a:?}");
    }

    #[test]
    fn qat_trains_and_rejects_bad_settings() {
        let g = conv_bn_graph(5);
        let train = images(256, 3);
        let val = images(64, 4);
        let norm = Normalize::unit();
        let bad = QatConfig { lr: f32::NAN, ..Default::default() };
        assert!(matches!(qat(&g, &train, &val, &norm, &bad, &mut |_| {}), Err(TrainError::Config(_))));
        let bad = QatConfig { epochs: 0, ..Default::default() };
        assert!(matches!(qat(&g, &train, &val, &norm, &bad, &mut |_| {}), Err(TrainError::Config(_))));
        let cfg = QatConfig {
            epochs: 2,
            batch: 32,
            lr: 1e-3,
            threads: 1,
            freeze_bn_after: Some(5),
            freeze_ranges_after: Some(10),
            ..Default::default()
        };
        let mut steps = 0;
        let out = qat(&g, &train, &val, &norm, &cfg, &mut |p| {
            if let QatProgress::Step { .. } = p {
                steps += 1
            }
        })
        .unwrap();
        assert_eq!(steps, 16);
        assert_eq!(out.epochs.len(), 2);
        assert!(out.epochs[1].bn_frozen && out.epochs[1].ranges_frozen);
        assert!(out.agreement.passed(), "{:?}", out.agreement);
        assert_eq!(check_weights(&out.model, &out.bytes).unwrap().mismatches, 0);
        // A graph op without int8 lowering is refused before training.
        let mut g2 = conv_bn_graph(5);
        let y = g2.outputs[0];
        let z = g2.add_tensor("z", vec![1, 3], None);
        g2.nodes.push(Node { name: "sub".into(), op: Op::Sub, inputs: vec![y, y], outputs: vec![z] });
        g2.outputs = vec![z];
        assert!(matches!(qat(&g2, &train, &val, &norm, &cfg, &mut |_| {}), Err(TrainError::Graph(_))));
    }
}
