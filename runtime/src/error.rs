//! Errors as data: `Copy`, `no_std`, each saying what is wrong and where.

use crate::format::SectionKind;
use core::fmt;

/// Where in the file a problem was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// At a byte offset of the file.
    File {
        /// Byte offset.
        offset: u64,
    },
    /// In a section, at a byte offset of the file.
    Section {
        /// The section.
        kind: SectionKind,
        /// Byte offset from the start of the file.
        offset: u64,
    },
    /// In the record of tensor `index` (at a file offset).
    Tensor {
        /// Tensor id.
        index: u32,
        /// Byte offset of the record.
        offset: u64,
    },
    /// In the record of op `index`.
    Op {
        /// Op index (execution order).
        index: u32,
        /// Byte offset of the record.
        offset: u64,
    },
    /// In the input record `index`.
    Input {
        /// Input record index.
        index: u32,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Location::File { offset } => write!(f, "file byte {offset}"),
            Location::Section { kind, offset } => write!(f, "{} section, file byte {offset}", kind.name()),
            Location::Tensor { index, offset } => write!(f, "tensor {index} (record at file byte {offset})"),
            Location::Op { index, offset } => write!(f, "op {index} (record at file byte {offset})"),
            Location::Input { index } => write!(f, "input record {index}"),
        }
    }
}

/// Coarse class of a load error, for programs that react to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadErrorKind {
    /// Not a temper model, or truncated.
    Format,
    /// A version or flag this reader does not support.
    Version,
    /// A checksum does not match.
    Checksum,
    /// Buffer alignment too weak for zero-copy access.
    Alignment,
    /// An offset, length or count is out of bounds or overflows.
    Bounds,
    /// A code, shape, parameter or quantization value is invalid.
    Invalid,
    /// The memory plan is inconsistent (overlap of live tensors, out of arena).
    Plan,
}

/// A model that cannot be loaded. `value` carries the offending number where there is one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadError {
    /// Class.
    pub kind: LoadErrorKind,
    /// What is wrong.
    pub what: &'static str,
    /// Where.
    pub at: Location,
    /// The offending value, or an expected/actual pair, if any.
    pub value: Option<(i64, i64)>,
}

impl LoadError {
    pub(crate) const fn new(kind: LoadErrorKind, what: &'static str, at: Location) -> Self {
        LoadError { kind, what, at, value: None }
    }
    pub(crate) const fn with(mut self, a: i64, b: i64) -> Self {
        self.value = Some((a, b));
        self
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid model: {} at {}", self.what, self.at)?;
        if let Some((a, b)) = self.value {
            write!(f, " (got {a}, limit/expected {b})")?;
        }
        Ok(())
    }
}

#[cfg(feature = "std")]
impl std::error::Error for LoadError {}

/// An error while creating or running a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunError {
    /// The arena given is smaller than the plan needs.
    ArenaTooSmall {
        /// Bytes the plan needs.
        needed: usize,
        /// Bytes given.
        given: usize,
    },
    /// No graph input/output with this index.
    NoSuchTensor {
        /// The index given.
        index: usize,
    },
    /// The data given does not have the tensor's element count.
    WrongLength {
        /// Elements expected.
        expected: usize,
        /// Elements given.
        given: usize,
    },
    /// The input does not accept raw pixels (the model has no pixel normalization).
    NotPixelInput {
        /// Graph input index.
        index: usize,
    },
    /// A graph input was not set before `run`.
    InputNotSet {
        /// Graph input index.
        index: usize,
    },
    /// An f32 input holds NaN or ±Inf (see `Session::set_input_f32_saturating` to accept them).
    NonFinite {
        /// Graph input index.
        index: usize,
        /// Index of the first non-finite element.
        element: usize,
    },
    /// The operating system refused to start the worker threads asked for.
    ThreadsUnavailable {
        /// Threads asked for.
        threads: usize,
    },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RunError::ArenaTooSmall { needed, given } => {
                write!(f, "arena too small: the model needs {needed} bytes, {given} given")
            }
            RunError::NoSuchTensor { index } => write!(f, "no graph input/output with index {index}"),
            RunError::WrongLength { expected, given } => {
                write!(f, "wrong input size: {given} elements given, the tensor has {expected}")
            }
            RunError::NotPixelInput { index } => {
                write!(f, "graph input {index} takes no raw u8 pixels (no pixel normalization in the model)")
            }
            RunError::InputNotSet { index } => write!(f, "graph input {index} was not set before run()"),
            RunError::NonFinite { index, element } => {
                write!(f, "graph input {index}: element {element} is not a finite number (NaN or infinity); non-finite inputs are rejected")
            }
            RunError::ThreadsUnavailable { threads } => write!(f, "could not start worker threads for {threads} threads"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for RunError {}
