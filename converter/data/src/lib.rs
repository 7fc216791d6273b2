//! `temper-data`: dataset and tensor readers for temper.
//!
//! Used by the converter (calibration and validation sets) and by the device
//! CLI `temper-run` (evaluation and runs).
//!
//! * [`idx`] — IDX files (MNIST / Fashion-MNIST), gzip'd or not.
//! * [`npy`] — NPY v1/v2/v3 read and write, NPZ read and write.
//! * [`images`] — PNG / JPEG decoding, resizing, channel handling, image folders.
//! * [`dataset`] — a uniform labeled in-memory [`Dataset`], loaded from a spec
//!   string with [`load_dataset`], with subsets and normalized batches.
//! * [`detect`] — detection datasets (COCO JSON, YOLO txt, Pascal VOC XML) and the letterbox /
//!   resize geometry.
//! * [`fsout`], [`commit`] — output checks, one commit for a run's outputs, output locks.
//! * [`error`] — the [`DataError`] type returned by everything here.
//!
//! No function in this crate panics on malformed input; every problem is a
//! [`DataError`] naming the file (and byte offset where relevant).

#![forbid(unsafe_code)]

pub mod commit;
pub mod dataset;
pub mod detect;
pub mod error;
pub mod fsout;
pub mod fsread;
pub mod idx;
pub mod images;
pub mod npy;
mod util;
mod zip;

pub use dataset::{load_dataset, load_dataset_with, Batch, Dataset, LoadOptions, Normalize, Pixels};
pub use detect::{load_detection, DetBox, DetLoadOptions, DetSample, DetectionDataset, Geometry};
pub use error::{DataError, ErrorKind};
pub use idx::{read_idx, read_idx_any, read_idx_bytes, IdxArray, IdxData, IdxTensor};
pub use images::{read_image, ColorMode, Image};
pub use npy::{read_npy, read_npy_bytes, read_npz, write_npy, write_npy_f32, write_npy_i8, write_npy_u8, write_npz, NpyArray, NpyData};
