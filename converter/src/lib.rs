//! temper converter: imports FP32 ONNX models, runs them in f32, calibrates and quantizes them to
//! INT8, and emits validated `.tmf` files for the temper runtime.
//!
//! Data flows one way: ONNX → [`ir::Graph`] → passes → (calibrate) → quantized graph → `.tmf`.

pub mod detect;
pub mod eval;
pub mod feed;
pub mod fp32;
pub mod ir;
pub mod onnx;
pub mod ops;
pub mod passes;
pub mod pipeline;
pub mod ptq;
pub mod quant;
pub mod report;
pub mod train;
