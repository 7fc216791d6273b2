//! Training engine: reverse-mode differentiation over the IR, optimizers and schedules,
//! knowledge distillation, checkpoints and ONNX export.
//!
//! * [`net`]: [`Net`], a trainable network over an [`ir::Graph`](crate::ir::Graph) — a forward
//!   pass recording a [`Tape`], and a backward pass node by node (Conv with groups/stride/padding/
//!   dilation, Dense, broadcasting Add/Sub/Mul/Div, fused and standalone Relu/Clip, LeakyRelu,
//!   HardSwish, HardSigmoid, Sigmoid, Tanh, Max/Avg/GlobalAvg pooling, ReduceMean, Reshape,
//!   Concat, Softmax, Transpose, Slice, Pad, and BatchNorm in training mode with running
//!   statistics). Imported models keep BatchNorm unfused for training
//!   ([`prepare_for_training`]); [`Net::export_graph`] folds it for PTQ and export.
//! * `gemm` / `kernels`: im2col + packed f32 GEMM (AVX2+FMA when the CPU has it, detected at
//!   run time), batch split over scoped threads.
//! * [`optim`]: SGD (momentum, Nesterov), Adam, AdamW, weight decay; constant / step / cosine
//!   schedules with linear warm-up. [`data`]: PCG32, shuffling, crop/flip augmentation.
//! * [`loss`] and [`distill`]: cross-entropy, `(1 − α)·CE + α·T²·KL` with constant / decay /
//!   warm-up α schedules, several teachers (weighted soft targets, weights given or from
//!   validation accuracy), soft targets cached when inputs are not augmented, feature mimicking
//!   with learned 1×1 adapters.
//! * [`trainer`]: the epoch loop with NaN/Inf checks naming step and layer, validation, progress
//!   line and per-epoch [`checkpoint`]s (NPZ) with resume.
//! * [`export`]: ONNX (opset 13) writer; [`cli`]: `temper train` / `temper distill`.

pub mod arch;
pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod distill;
pub mod export;
mod gemm;
pub(crate) mod kernels;
pub mod loss;
pub mod net;
pub mod optim;
pub mod qat;
pub mod trainer;

#[cfg(test)]
mod gradcheck;

use std::fmt;

pub use data::{Augment, Rng};
pub use distill::{evaluate, AlphaSchedule, Distiller, KdConfig, MimicSpec, Teacher};
pub use gemm::simd_path;
pub use net::{prepare_for_training, Mode, Net, Param, ParamKind, Tape};
pub use optim::{Optimizer, OptimizerKind, Schedule, ScheduleKind};
pub use qat::{qat, QatConfig, QatOutcome};
pub use trainer::{benchmark, train, EpochReport, TrainConfig, TrainReport};

/// A training failure.
#[derive(Clone, Debug, PartialEq)]
pub enum TrainError {
    /// The graph cannot be trained (unsupported op, inconsistent shapes, …).
    Graph(String),
    /// A non-finite loss, gradient or weight; names the step and the layer.
    NonFinite(String),
    /// Bad configuration or data.
    Config(String),
    /// Reading or writing a file failed.
    Io(String),
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainError::Graph(m) => write!(f, "training graph: {m}"),
            TrainError::NonFinite(m) => write!(f, "training diverged: {m}"),
            TrainError::Config(m) => write!(f, "training configuration: {m}"),
            TrainError::Io(m) => write!(f, "training i/o: {m}"),
        }
    }
}

impl std::error::Error for TrainError {}
