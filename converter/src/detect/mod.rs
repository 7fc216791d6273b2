//! Detection: metrics (and, later, heads and post-processing).
//!
//! * [`map`] — COCO-style mAP (a replica of `pycocotools`' `COCOeval` for boxes).

pub mod map;
#[cfg(test)]
mod map_tests;

pub use map::{evaluate, CocoEval, Detection, GroundTruth, MapError};
