//! Converter ops that live in one place: one module per op with its ONNX import (attribute
//! parsing), output-shape rule, FP32 execution, quantization grid, int8 lowering and ONNX export,
//! registered once in `REGISTRY`.
//!
//! The stages consult the registry instead of matching on the op: ONNX import looks the node's
//! `op_type` up in `REGISTRY`, and shape inference, the FP32 engine, QAT's quantization points,
//! the lowering and the ONNX writer all go through the `OpDef` methods of [`Op::Ext`]. Adding
//! an op is a new file here and one line in `REGISTRY` (see `docs/ADDING_AN_OP.md`).
//!
//! Ops not yet migrated keep their variant of [`Op`] and their arms in each stage.
//!
//! [`Op`]: crate::ir::Op
//! [`Op::Ext`]: crate::ir::Op::Ext

use std::fmt;
use std::sync::Arc;

use crate::fp32::ops::View;
use crate::ir::{Activation, Op};
use crate::onnx::import::ImportCx;
use crate::onnx::OnnxError;
use crate::quant::lower::{LowerCx, LowerOut};

pub mod channel_affine;
pub mod concat;
pub mod conv_transpose;
pub mod pad;
pub mod resize;

/// Import one ONNX node of a registered type (emits IR nodes through `cx`).
pub(crate) type ImportFn = fn(&mut ImportCx<'_, '_, '_, '_, '_>) -> Result<(), OnnxError>;

/// One registered op: the ONNX op types it imports.
pub(crate) struct Registration {
    /// ONNX `op_type`s (default domain) handled by `import`.
    pub onnx: &'static [&'static str],
    /// The importer.
    pub import: ImportFn,
}

/// Every op living in this module, consulted by ONNX import before its built-in table.
#[rustfmt::skip] // one line per op
pub(crate) static REGISTRY: &[Registration] = &[
    Registration { onnx: &["Resize", "Upsample"], import: resize::import },
    Registration { onnx: &["Concat"], import: concat::import },
    Registration { onnx: &["Pad"], import: pad::import },
    Registration { onnx: &["ConvTranspose"], import: conv_transpose::import },
];

/// The importer registered for an ONNX `op_type`, if any.
pub(crate) fn importer(op_type: &str) -> Option<ImportFn> {
    REGISTRY.iter().find(|r| r.onnx.contains(&op_type)).map(|r| r.import)
}

/// An input of an exported ONNX node.
#[derive(Clone, Debug)]
pub(crate) enum OnnxIn {
    /// The IR node's input `i`.
    Input(usize),
    /// An f32 initializer (name suffix, shape, data).
    F32(&'static str, Vec<usize>, Vec<f32>),
    /// A 1-D i64 initializer (name suffix, data).
    I64(&'static str, Vec<i64>),
}

/// An attribute of an exported ONNX node.
#[derive(Clone, Debug)]
pub(crate) enum OnnxAttr {
    /// INT.
    I(i64),
    /// STRING.
    S(String),
    /// FLOAT.
    F(f32),
    /// INTS.
    Is(Vec<i64>),
}

/// How an op appears in an ONNX file written by the converter.
#[derive(Clone, Debug)]
pub(crate) struct OnnxNode {
    /// `op_type`.
    pub op_type: &'static str,
    /// Inputs in ONNX order.
    pub inputs: Vec<OnnxIn>,
    /// Attributes.
    pub attrs: Vec<(&'static str, OnnxAttr)>,
}

/// Everything the converter's stages need to know about one op.
pub(crate) trait OpDef: fmt::Debug + Send + Sync {
    /// Short op name for messages and reports.
    fn name(&self) -> &'static str;
    /// Output shape for the given input shapes; `declared` is `(declared first-input shape,
    /// declared output shape)` from the graph (see [`crate::fp32::shape::infer_output_shape`]).
    fn output_shape(&self, inputs: &[&[usize]], declared: Option<(&[usize], &[usize])>) -> Result<Vec<usize>, String>;
    /// FP32 execution: the output's elements for `out_shape`.
    fn run_f32(&self, inputs: &[View<'_>], out_shape: &[usize]) -> Result<Vec<f32>, String>;
    /// Training: the gradients of the inputs in `need` (`(input index, gradient)`) from the
    /// output's gradient `dy`, given the inputs and the output `y` of the forward pass. The
    /// default refuses: the op cannot be trained through.
    fn backward(&self, inputs: &[View<'_>], y: View<'_>, dy: &[f32], need: &[bool]) -> Result<Vec<(usize, Vec<f32>)>, String> {
        let _ = (inputs, y, dy, need);
        Err(format!("no gradient implemented for {} (it cannot be trained through)", self.name()))
    }
    /// Whether the output stays on its first input's quantization grid (no requantization;
    /// QAT gives it no quantization point of its own).
    fn keeps_grid(&self) -> bool {
        false
    }
    /// The activation fused into the output, for ops that can carry one (`None`: cannot).
    fn act(&self) -> Option<Activation> {
        None
    }
    /// The same op with `act` fused into its output (`None`: it cannot carry one).
    fn with_act(&self, act: Activation) -> Option<Op> {
        let _ = act;
        None
    }
    /// Whether the op is linear in input 0 with weights in input 1 and an optional per-output-
    /// channel bias in input 2, so that a following per-channel affine map (BatchNorm, constant
    /// Add/Mul) folds into them (see [`OpDef::weight_channel`]).
    fn is_linear(&self) -> bool {
        false
    }
    /// For linear ops: the output channel weight element `idx` (of weights shaped `wshape`)
    /// contributes to. The default is the first axis (Conv's `[O, ..]`).
    fn weight_channel(&self, wshape: &[usize], idx: usize) -> usize {
        idx / wshape[1..].iter().product::<usize>().max(1)
    }
    /// Int8 lowering through the runtime writer.
    fn lower(&self, cx: &mut LowerCx<'_>) -> Result<LowerOut, String>;
    /// The ONNX node the converter's writer emits for it (`in_shapes` / `out_shape`: the IR shapes).
    fn to_onnx(&self, in_shapes: &[&[usize]], out_shape: &[usize]) -> OnnxNode;
}

/// An op implemented in [`crate::ops`] (the payload of [`crate::ir::Op::Ext`]).
#[derive(Clone)]
pub struct ExtOp(Arc<dyn OpDef>);

impl ExtOp {
    pub(crate) fn new(d: impl OpDef + 'static) -> ExtOp {
        ExtOp(Arc::new(d))
    }
    /// The op's definition.
    pub(crate) fn def(&self) -> &dyn OpDef {
        self.0.as_ref()
    }
    /// Short op name.
    pub fn name(&self) -> &'static str {
        self.0.name()
    }
}

impl fmt::Debug for ExtOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Two ops are equal when they have the same name and the same parameters (compared through
/// their `Debug` form, which every op prints in full).
impl PartialEq for ExtOp {
    fn eq(&self, other: &ExtOp) -> bool {
        self.name() == other.name() && format!("{:?}", self.0) == format!("{:?}", other.0)
    }
}
