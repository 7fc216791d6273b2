//! ONNX import (our own protobuf reader).
//!
//! [`load_onnx`] / [`import_bytes`] decode an ONNX `ModelProto` with a hand-written, fully
//! bounds-checked protobuf reader (no protobuf crate), fix every dynamic dimension, fold shape
//! arithmetic (Shape, Gather, Cast, Range, ConstantOfShape, …) and build an [`ir::Graph`].
//!
//! Supported: opsets 11–21 of the default domain (older opsets' attribute forms of Clip, Pad,
//! Slice, Squeeze/Unsqueeze, ReduceMean and Softmax are read too); ops Conv, ConvTranspose, Gemm,
//! MatMul (constant second input), Add, Sub, Mul, Div, Relu, Clip, LeakyRelu, HardSwish,
//! HardSigmoid, Sigmoid, Tanh, BatchNormalization, MaxPool, AveragePool, GlobalAveragePool,
//! GlobalMaxPool (only when it is a no-op), ReduceMean, Flatten, Reshape, Squeeze, Unsqueeze,
//! Transpose, Concat, Split, Slice, Pad (constant), Resize/Upsample, Softmax, Dropout, Identity,
//! Constant, and constant-only shape arithmetic (Shape, Size, Gather, Cast, Range, ConstantOfShape,
//! Expand, Equal, Less, Greater, Not, Where, Neg, …).

mod constant;
pub(crate) mod import;
mod proto;
mod tensor;
mod wire;

use std::fmt;
use std::path::Path;

use crate::ir;

/// Largest number of elements any tensor may have (guards allocations against hostile files).
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 28;

/// Why an ONNX model could not be imported. Every variant names the file and the place of the
/// problem (byte offset, node, tensor or attribute).
#[derive(Clone, Debug, PartialEq)]
pub enum OnnxError {
    /// The model (or an external data file) could not be read.
    Io {
        /// File that failed.
        file: String,
        /// OS error text.
        message: String,
    },
    /// The bytes are not a well-formed ONNX protobuf.
    Decode {
        /// File being decoded.
        file: String,
        /// Absolute byte offset of the fault.
        offset: usize,
        /// What was wrong.
        message: String,
    },
    /// An operator temper does not implement.
    UnsupportedOp {
        /// File being imported.
        file: String,
        /// ONNX op type.
        op_type: String,
        /// Operator domain ("" is the default ONNX domain).
        domain: String,
        /// Node name.
        node: String,
        /// Opset version of the node's domain.
        opset: i64,
    },
    /// A supported operator used with an attribute (or attribute-like input) temper does not
    /// implement (boxed to keep the error small).
    UnsupportedAttribute(Box<AttributeFault>),
    /// A well-formed protobuf describing an invalid or inconsistent model.
    Invalid {
        /// File being imported.
        file: String,
        /// Where: node, tensor or message description.
        context: String,
        /// What was wrong.
        message: String,
    },
    /// A dimension is still unknown after applying the user's input shape.
    DynamicShape {
        /// File being imported.
        file: String,
        /// Graph input concerned.
        tensor: String,
        /// Details, including the declared shape.
        message: String,
    },
}

/// Details of [`OnnxError::UnsupportedAttribute`].
#[derive(Clone, Debug, PartialEq)]
pub struct AttributeFault {
    /// File being imported.
    pub file: String,
    /// ONNX op type.
    pub op_type: String,
    /// Node name.
    pub node: String,
    /// Opset version.
    pub opset: i64,
    /// The attribute (or input) at fault.
    pub attribute: String,
    /// Why it is unsupported.
    pub detail: String,
}

impl fmt::Display for OnnxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OnnxError::Io { file, message } => write!(f, "{file}: cannot read: {message}"),
            OnnxError::Decode { file, offset, message } => {
                write!(f, "{file}: malformed ONNX protobuf at byte offset {offset}: {message}")
            }
            OnnxError::UnsupportedOp { file, op_type, domain, node, opset } => {
                let d = if domain.is_empty() { "ai.onnx".to_string() } else { domain.clone() };
                write!(f, "{file}: unsupported operator {op_type} (domain {d}, opset {opset}) in node '{node}'")
            }
            OnnxError::UnsupportedAttribute(a) => write!(
                f,
                "{}: node '{}' ({}, opset {}): unsupported attribute '{}': {}",
                a.file, a.node, a.op_type, a.opset, a.attribute, a.detail
            ),
            OnnxError::Invalid { file, context, message } => write!(f, "{file}: {context}: {message}"),
            OnnxError::DynamicShape { file, tensor, message } => write!(
                f,
                "{file}: input '{tensor}': {message}; pass its full shape with --input-shape (e.g. --input-shape {tensor}=1,3,224,224)"
            ),
        }
    }
}

impl std::error::Error for OnnxError {}

/// Largest ONNX file [`load_onnx`] reads: 2 GiB, the protobuf limit (larger models keep their
/// weights in external data files).
pub const ONNX_FILE_MAX: u64 = 2 << 30;

/// The message of a checked-read error without the repeated file name.
fn io_message(e: temper_data::DataError) -> String {
    match e.kind {
        temper_data::ErrorKind::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// Shapes given for graph inputs (the `--input-shape` option): by input name, or unnamed for the
/// first graph input. A given shape must have the declared rank and agree with every fixed
/// dimension the model declares; it replaces the dynamic ones (`batch`, `N`, `?`, …).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputShapes {
    /// `(input name or None for the first input, full shape)`.
    pub entries: Vec<(Option<String>, Vec<usize>)>,
}

impl InputShapes {
    /// One unnamed shape for the first input (or none).
    pub fn first(shape: Option<&[usize]>) -> InputShapes {
        InputShapes { entries: shape.map(|s| vec![(None, s.to_vec())]).unwrap_or_default() }
    }

    /// Parse `--input-shape` values: `NAME=d0,d1,…` or `d0,d1,…` (the first input), one per
    /// value. An input may be named once; at most one value may be unnamed.
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<InputShapes, String> {
        let mut entries: Vec<(Option<String>, Vec<usize>)> = Vec::new();
        for v in values {
            let v = v.as_ref().trim();
            let (name, dims) = match v.rsplit_once('=') {
                Some((n, d)) if !n.trim().is_empty() => (Some(n.trim().to_string()), d),
                Some(_) => return Err(format!("--input-shape '{v}': the input name before '=' is empty")),
                None => (None, v),
            };
            let shape = dims
                .split(',')
                .map(|d| match d.trim().parse::<usize>() {
                    Ok(x) if x > 0 => Ok(x),
                    _ => Err(format!("--input-shape '{v}': '{}' is not a dimension ≥ 1", d.trim())),
                })
                .collect::<Result<Vec<usize>, String>>()?;
            if entries.iter().any(|(n, _)| *n == name) {
                return Err(match name {
                    Some(n) => format!("--input-shape: input '{n}' is given twice"),
                    None => "--input-shape: more than one shape without an input name (use NAME=DIMS)".into(),
                });
            }
            entries.push((name, shape));
        }
        Ok(InputShapes { entries })
    }

    /// The shape given for graph input `name` (the `index`-th non-initializer input).
    pub(crate) fn get(&self, name: &str, index: usize) -> Option<&[usize]> {
        let named = self.entries.iter().find(|(n, _)| n.as_deref() == Some(name));
        let unnamed = || self.entries.iter().find(|(n, _)| n.is_none()).filter(|_| index == 0);
        named.or_else(unnamed).map(|(_, s)| s.as_slice())
    }
}

/// Load an ONNX model file and import it into an [`ir::Graph`].
///
/// External tensor data is read from files inside the model's directory only. `input_shape`
/// fixes the shape of the (first) graph input; without it only a dynamic batch dimension is
/// accepted (and set to 1). [`load_onnx_with`] takes shapes by input name.
pub fn load_onnx(path: &Path, input_shape: Option<&[usize]>) -> Result<ir::Graph, OnnxError> {
    load_onnx_with(path, &InputShapes::first(input_shape))
}

/// [`load_onnx`] with shapes for any graph inputs, by name (see [`InputShapes`]).
pub fn load_onnx_with(path: &Path, input_shapes: &InputShapes) -> Result<ir::Graph, OnnxError> {
    let label = path.display().to_string();
    let bytes = temper_data::fsread::read_input_prefixed(path, 16, |head, len| {
        // A protobuf starts with a tag: field number > 0 and a defined wire type. Checked on
        // the first byte so that, e.g., a large file of zeros is refused without reading it.
        if let Some(&b) = head.first() {
            if b >> 3 == 0 || !matches!(b & 7, 0 | 1 | 2 | 5) {
                return Err(temper_data::DataError::format(
                    label.as_str(),
                    format!("not an ONNX (protobuf) file: byte 0 is 0x{b:02x}, not a valid field tag"),
                ));
            }
        }
        if len > ONNX_FILE_MAX {
            return Err(temper_data::fsread::too_large(path, len, ONNX_FILE_MAX, "an ONNX model may have (the 2 GiB protobuf limit)"));
        }
        Ok(ONNX_FILE_MAX)
    })
    .map_err(|e| OnnxError::Io { file: label.clone(), message: io_message(e) })?;
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    import_bytes_with(&bytes, Some(&base), input_shapes, &label)
}

/// Import an ONNX model from bytes. `base_dir` is the directory external data is resolved
/// against (`None` forbids external data); `file_label` names the model in error messages.
pub fn import_bytes(
    bytes: &[u8],
    base_dir: Option<&Path>,
    input_shape: Option<&[usize]>,
    file_label: &str,
) -> Result<ir::Graph, OnnxError> {
    import_bytes_with(bytes, base_dir, &InputShapes::first(input_shape), file_label)
}

/// [`import_bytes`] with shapes for any graph inputs, by name (see [`InputShapes`]).
pub fn import_bytes_with(
    bytes: &[u8],
    base_dir: Option<&Path>,
    input_shapes: &InputShapes,
    file_label: &str,
) -> Result<ir::Graph, OnnxError> {
    let model =
        proto::decode_model(bytes).map_err(|e| OnnxError::Decode { file: file_label.to_string(), offset: e.offset, message: e.message })?;
    import::import_model(&model, base_dir, input_shapes, file_label)
}
