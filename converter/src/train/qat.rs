//! Quantization-aware training (QAT): fine-tune an FP32 student with fake quantization that
//! reproduces what the converter's lowering and `temper-runtime` compute, then emit the `.tmf`
//! with the learned activation ranges.
//!
//! What is simulated, exactly as [`crate::quant::lower`] and the runtime do it:
//! * weights: symmetric per-output-channel int8 in −127..=127 with scale `max|w| / 127`
//!   ([`quantize_weights_per_channel`](crate::quant::observer::quantize_weights_per_channel),
//!   the very function the lowering calls);
//! * activations: asymmetric int8 with [`qparams_for_range`](crate::quant::qparams_for_range)
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
//! learned.
//!
//! The emitted file is lowered from the folded FP32 graph with the QAT weights and the frozen
//! QAT ranges (no re-calibration, no bias correction). [`check_agreement`] compares it, run
//! through `temper-runtime`, with the fake-quant model ([`FakeQuantModel`]).

use super::data::Augment;
use super::optim::OptimizerKind;
use super::TrainError;
use crate::ir::Graph;
use temper_data::{Dataset, Normalize};

/// Settings of a QAT run. Step counts are optimizer steps (mini-batches) from the start of QAT.
#[derive(Clone, Debug)]
pub struct QatConfig {
    /// Epochs over the training set (default 2).
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
    /// [`QatConfig::distill_temperature`] (self-distillation from the FP32 model; default 0 = off,
    /// plain cross-entropy).
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
            epochs: 2,
            batch: 128,
            lr: 1e-4,
            min_lr: 0.0,
            optimizer: OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 },
            freeze_bn_after: None,
            freeze_ranges_after: None,
            ema_momentum: 0.01,
            init_batches: 16,
            bn_momentum: 0.01,
            distill_alpha: 0.0,
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
    let _ = (student, train, val, norm, cfg, progress);
    Err(TrainError::Config("QAT is not implemented yet".into()))
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
    let _ = (model, bytes, ds, norm, threads);
    Err(TrainError::Config("QAT is not implemented yet".into()))
}
