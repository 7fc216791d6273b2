//! Detection: metrics, anchor-free GFL/DFL heads and their quantization.
//!
//! * [`map`] — COCO-style mAP (a replica of `pycocotools`' `COCOeval` for boxes).
//! * [`head`] — the head config (JSON) and its binding to a graph's outputs.
//! * [`decode`] — the float reference of the device post-process (DetectPostprocess).
//! * [`rewrite`] — channel slices of a head convolution become convolutions of their own.
//! * [`flow`] — calibration, lowering with the post-process appended, FP32 vs INT8 mAP, the gate.
//! * [`cli`] — `temper quantize --task detect`.

pub mod cli;
pub mod decode;
pub mod flow;
pub mod head;
pub mod map;
#[cfg(test)]
mod map_tests;
pub mod rewrite;

pub use map::{evaluate, CocoEval, Detection, GroundTruth, MapError};
