//! Error type shared by every reader in this crate.
//!
//! A [`DataError`] always names the *source* it concerns (a file path, an NPZ
//! member such as `data.npz:x.npy`, or a spec string), says what went wrong
//! ([`ErrorKind`]) and, where it is meaningful, the byte offset in the source at
//! which the problem was detected.

use std::fmt;
use std::io;
use std::path::Path;

/// What went wrong while reading or validating data.
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An operating-system I/O error (open, read, write, rename, ...).
    Io(io::Error),
    /// The file does not start with the expected magic bytes.
    BadMagic {
        /// Human-readable description of what was expected.
        expected: String,
        /// The bytes actually found (possibly fewer than expected).
        found: Vec<u8>,
    },
    /// The input ended before a structure was complete.
    Truncated {
        /// Number of bytes that were needed from the offset on.
        needed: u64,
        /// Number of bytes actually available from the offset on.
        available: u64,
    },
    /// Dimensions, element counts or payload sizes do not agree.
    ShapeMismatch(String),
    /// A label is not smaller than the number of classes.
    LabelOutOfRange {
        /// Index of the offending sample.
        index: usize,
        /// The label value found.
        label: i64,
        /// The number of classes the labels must stay below.
        num_classes: u64,
    },
    /// The data set (or folder, or array) holds no samples; the string says what is empty.
    Empty(String),
    /// The element type is not supported by this reader or by this operation.
    UnsupportedDtype(String),
    /// The input is malformed in some other way (bad header, corrupt stream, ...).
    Format(String),
    /// A dataset specification string or argument is invalid.
    InvalidSpec(String),
}

/// Error returned by every fallible function of this crate.
///
/// `Display` renders as `SOURCE: problem` or `SOURCE at byte N: problem`.
#[derive(Debug)]
pub struct DataError {
    /// The file path (or `archive:member`, or spec string) the error concerns.
    pub source_name: String,
    /// Byte offset in the source where the problem was found, when meaningful.
    pub offset: Option<u64>,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl DataError {
    /// Creates an error for `source` with no byte offset.
    pub fn new(source: impl Into<String>, kind: ErrorKind) -> Self {
        DataError { source_name: source.into(), offset: None, kind }
    }

    /// Creates an error for `source` detected at byte `offset`.
    pub fn at(source: impl Into<String>, offset: u64, kind: ErrorKind) -> Self {
        DataError { source_name: source.into(), offset: Some(offset), kind }
    }

    /// Wraps an I/O error that happened on `path`.
    pub fn io(path: &Path, err: io::Error) -> Self {
        DataError::new(path.display().to_string(), ErrorKind::Io(err))
    }

    /// Shorthand for an [`ErrorKind::Format`] error at `offset`.
    pub fn format_at(source: impl Into<String>, offset: u64, msg: impl Into<String>) -> Self {
        DataError::at(source, offset, ErrorKind::Format(msg.into()))
    }

    /// Shorthand for an [`ErrorKind::Format`] error without offset.
    pub fn format(source: impl Into<String>, msg: impl Into<String>) -> Self {
        DataError::new(source, ErrorKind::Format(msg.into()))
    }

    /// Shorthand for an [`ErrorKind::ShapeMismatch`] error.
    pub fn shape(source: impl Into<String>, msg: impl Into<String>) -> Self {
        DataError::new(source, ErrorKind::ShapeMismatch(msg.into()))
    }

    /// Shorthand for an [`ErrorKind::Truncated`] error at `offset`.
    pub fn truncated(source: impl Into<String>, offset: u64, needed: u64, available: u64) -> Self {
        DataError::at(source, offset, ErrorKind::Truncated { needed, available })
    }

    /// Shorthand for an [`ErrorKind::InvalidSpec`] error.
    pub fn spec(source: impl Into<String>, msg: impl Into<String>) -> Self {
        DataError::new(source, ErrorKind::InvalidSpec(msg.into()))
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Io(e) => write!(f, "I/O error: {e}"),
            ErrorKind::BadMagic { expected, found } => {
                write!(f, "wrong magic: expected {expected}, found [")?;
                for (i, b) in found.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{b:02x}")?;
                }
                f.write_str("]")
            }
            ErrorKind::Truncated { needed, available } => write!(f, "truncated: needed {needed} more byte(s), only {available} available"),
            ErrorKind::ShapeMismatch(m) => write!(f, "shape mismatch: {m}"),
            ErrorKind::LabelOutOfRange { index, label, num_classes } => {
                write!(f, "label out of range: sample {index} has label {label}, but there are only {num_classes} classes")
            }
            ErrorKind::Empty(what) => write!(f, "empty data set: {what}"),
            ErrorKind::UnsupportedDtype(d) => write!(f, "unsupported dtype: {d}"),
            ErrorKind::Format(m) => write!(f, "malformed: {m}"),
            ErrorKind::InvalidSpec(m) => write!(f, "invalid dataset spec: {m}"),
        }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(off) => write!(f, "{} at byte {}: {}", self.source_name, off, self.kind),
            None => write!(f, "{}: {}", self.source_name, self.kind),
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}
