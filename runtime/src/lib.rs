//! temper runtime: loads `.tmf` INT8 models without copying (memory-mapped files or `&'static`
//! flash), validates all of them before anything runs, and executes them in a caller-given arena
//! planned by the converter, with no heap allocation on the inference path.
//!
//! ```no_run
//! # #[cfg(feature = "std")] {
//! use temper_runtime::{Model, MappedModel, Session};
//! let file = MappedModel::open("model.tmf").unwrap();
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

/// A model file mapped into memory (std).
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct MappedModel {
    map: memmap2::Mmap,
    path: std::path::PathBuf,
}

/// Error opening a model file: I/O, or the file's content.
#[cfg(feature = "std")]
#[derive(Debug)]
pub enum OpenError {
    /// The file could not be opened or mapped.
    Io(std::path::PathBuf, std::io::Error),
    /// The file is not a valid model.
    Load(std::path::PathBuf, LoadError),
}

#[cfg(feature = "std")]
impl core::fmt::Display for OpenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OpenError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            OpenError::Load(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for OpenError {}

#[cfg(feature = "std")]
impl MappedModel {
    /// Map and validate a model file.
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<MappedModel, OpenError> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path).map_err(|e| OpenError::Io(path.clone(), e))?;
        // SAFETY: the mapping is read-only and private to this process; the loader validates
        // every byte it uses. If another process truncates the file while mapped, accesses may
        // fault (SIGBUS) — the documented hazard of memory-mapped files, which deployments avoid
        // by replacing model files with an atomic rename (as the converter writes them).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| OpenError::Io(path.clone(), e))?;
        Model::from_bytes(&map).map_err(|e| OpenError::Load(path.clone(), e))?;
        Ok(MappedModel { map, path })
    }

    /// The validated model. The checksums were verified in `open`; the structure is validated
    /// again here (the mapping is private and read-only, so this only fails if the file was
    /// modified in place underneath the mapping).
    pub fn model(&self) -> Result<Model<'_>, OpenError> {
        Model::from_bytes_with(&self.map, LoadOptions { verify_checksums: false }).map_err(|e| OpenError::Load(self.path.clone(), e))
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }
}
