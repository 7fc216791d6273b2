//! temper runtime: loads `.tmf` INT8 models (a private copy of a file, an explicit memory
//! mapping for read-only media, or `&'static` flash without copying), validates all of them before anything runs, and executes them in a caller-given arena
//! planned by the converter, with no heap allocation on the inference path.
//!
//! ```no_run
//! # #[cfg(feature = "std")] {
//! use temper_runtime::{Model, ModelFile, Session};
//! let file = ModelFile::open("model.tmf").unwrap();
//! let model = file.model().unwrap();
//! let mut arena = vec![0u8; model.arena_size()];
//! let mut s = Session::new(&model, &mut arena).unwrap();
//! s.set_input_f32(0, &[0.0; 784]).unwrap();
//! s.run().unwrap();
//! let mut logits = [0f32; 10];
//! s.output_f32(0, &mut logits).unwrap();
//! # }
//! ```
#![cfg_attr(not(feature = "std"), no_std)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod error;
#[cfg(feature = "std")]
pub mod file;
pub mod format;
pub mod model;
pub mod ops;
pub mod session;
#[cfg(feature = "std")]
pub mod threads;
#[cfg(feature = "writer")]
pub mod writer;

pub use error::{LoadError, LoadErrorKind, Location, RunError};
pub use format::{DType, OpCode};
pub use model::{LoadOptions, Model, OpView, TensorView};
pub use session::Session;
pub use temper_kernels as kernels;

/// Bytes aligned for zero-copy loading, e.g. a model embedded with `include_bytes!`:
///
/// ```ignore
/// static MODEL: &temper_runtime::AlignedBytes<[u8]> = &temper_runtime::AlignedBytes(*include_bytes!("m.tmf"));
/// ```
#[repr(C, align(64))]
#[derive(Debug)]
pub struct AlignedBytes<T: ?Sized>(pub T);

impl<const N: usize> AlignedBytes<[u8; N]> {
    /// The bytes.
    pub const fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(feature = "std")]
pub use file::{MappedModel, ModelFile, OpenError};
