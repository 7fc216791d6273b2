//! `Concat`: concatenation along one axis (ONNX `Concat`, every opset).
//!
//! Import folds all-constant inputs (shape arithmetic) and drops empty pieces. The int8 lowering
//! needs 4-D inputs stored NHWC; the runtime's `Concat` rescales each input whose quantization
//! differs from the output's (the writer builds the table), so the output has its own
//! calibrated range.

use std::fmt;

use super::{ExtOp, OnnxAttr, OnnxIn, OnnxNode, OpDef};
use crate::fp32::ops::View;
use crate::ir::{Op, TensorId};
use crate::onnx::import::ImportCx;
use crate::onnx::OnnxError;
use crate::quant::lower::{LowerCx, LowerOut};

/// Concatenation along `axis` (non-negative). Inputs: two or more tensors of one rank.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Concat {
    /// Axis.
    pub axis: usize,
}

impl fmt::Debug for Concat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Concat(axis {})", self.axis)
    }
}

/// The IR op concatenating along `axis`.
pub fn op(axis: usize) -> Op {
    Op::Ext(ExtOp::new(Concat { axis }))
}

/// Import ONNX `Concat`.
pub(crate) fn import(cx: &mut ImportCx<'_, '_, '_, '_, '_>) -> Result<(), OnnxError> {
    let mut ids: Vec<TensorId> = Vec::new();
    for i in 0..cx.num_inputs() {
        if let Some(id) = cx.opt_input(i)? {
            ids.push(id);
        }
    }
    if ids.is_empty() {
        return Err(cx.invalid("Concat without inputs"));
    }
    let rank = cx.shape(ids[0]).len();
    let axis = cx.attr_axis("axis", cx.attr_int("axis", 0)?, rank)?;
    // zero-sized pieces (e.g. empty shape constants) contribute nothing
    let nonempty: Vec<TensorId> = ids.iter().copied().filter(|&i| cx.shape(i).iter().product::<usize>() > 0).collect();
    let ids = if nonempty.is_empty() { vec![ids[0]] } else { nonempty };
    let shapes: Vec<Vec<usize>> = ids.iter().map(|&i| cx.shape(i)).collect();
    let refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
    let out = Concat { axis }.output_shape(&refs, None).map_err(|m| cx.invalid(m))?;
    if out.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).is_none_or(|n| n > crate::onnx::MAX_TENSOR_ELEMENTS) {
        return Err(cx.invalid("result too large"));
    }
    if cx.fold_concat(&ids, axis, &out)? {
        return Ok(());
    }
    if ids.len() == 1 {
        return cx.emit_identity(ids[0]);
    }
    cx.emit(op(axis), ids, None)
}

impl OpDef for Concat {
    fn name(&self) -> &'static str {
        "Concat"
    }

    fn output_shape(&self, inputs: &[&[usize]], _declared: Option<(&[usize], &[usize])>) -> Result<Vec<usize>, String> {
        let axis = self.axis;
        let first = inputs.first().ok_or("Concat without inputs")?;
        if axis >= first.len() {
            return Err(format!("Concat axis {axis} out of range for {first:?}"));
        }
        let mut o = first.to_vec();
        for s in &inputs[1..] {
            if s.len() != first.len() || (0..s.len()).any(|a| a != axis && s[a] != first[a]) {
                return Err(format!("Concat inputs {inputs:?} differ outside axis {axis}"));
            }
            o[axis] = o[axis].checked_add(s[axis]).ok_or("Concat size overflows")?;
        }
        Ok(o)
    }

    fn run_f32(&self, inputs: &[View<'_>], out_shape: &[usize]) -> Result<Vec<f32>, String> {
        Ok(crate::fp32::ops::concat(inputs, self.axis, out_shape))
    }

    fn backward(&self, inputs: &[View<'_>], y: View<'_>, dy: &[f32], need: &[bool]) -> Result<Vec<(usize, Vec<f32>)>, String> {
        let axis = self.axis;
        let outer: usize = y.shape[..axis].iter().product();
        let out_chunk: usize = y.shape[axis..].iter().product();
        let mut off = 0;
        let mut out = Vec::new();
        for (k, x) in inputs.iter().enumerate() {
            let chunk: usize = x.shape[axis..].iter().product();
            if need[k] {
                let mut g = Vec::with_capacity(outer * chunk);
                for o in 0..outer {
                    g.extend_from_slice(&dy[o * out_chunk + off..][..chunk]);
                }
                out.push((k, g));
            }
            off += chunk;
        }
        Ok(out)
    }

    fn lower(&self, cx: &mut LowerCx<'_>) -> Result<LowerOut, String> {
        if cx.out_rank() != 4 {
            return Err("concatenation is supported in int8 for 4-D (NCHW) tensors".into());
        }
        let mut xs = Vec::with_capacity(cx.num_inputs());
        for i in 0..cx.num_inputs() {
            xs.push(cx.input_nhwc(i).ok_or("every concatenated input must be a lowered 4-D activation (no constants)")?);
        }
        // NCHW axis → NHWC axis
        let axis = [0, 3, 1, 2][self.axis];
        let q = cx.out_qparams();
        let y = cx.new_nhwc(q);
        cx.b.concat(cx.name, &xs, y, axis).map_err(|e| e.0)?;
        Ok(LowerOut::Nhwc(y))
    }

    fn to_onnx(&self, in_shapes: &[&[usize]], _out_shape: &[usize]) -> OnnxNode {
        OnnxNode {
            op_type: "Concat",
            inputs: (0..in_shapes.len()).map(OnnxIn::Input).collect(),
            attrs: vec![("axis", OnnxAttr::I(self.axis as i64))],
        }
    }
}
