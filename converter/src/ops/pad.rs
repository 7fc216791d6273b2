//! `Pad` (ONNX `Pad`, `constant` mode; pads as attribute before opset 11, as inputs from 11 with
//! optional `axes` from 18).
//!
//! The int8 lowering is the runtime's `Pad` on 4-D NHWC tensors, which fills with the input's
//! zero point: exact for a fill value of 0, the only value it accepts.

use std::fmt;

use super::{ExtOp, OnnxAttr, OnnxIn, OnnxNode, OpDef};
use crate::fp32::ops::View;
use crate::ir::Op;
use crate::onnx::import::ImportCx;
use crate::onnx::OnnxError;
use crate::quant::lower::{LowerCx, LowerOut};
use crate::train::kernels::{contiguous_strides, for_each_bcast};

/// Largest pad accepted from a model.
const MAX_PAD: i64 = 1 << 20;

/// Constant padding. `pads` is ONNX order: all begins, then all ends. Input: x.
#[derive(Clone, PartialEq)]
pub struct Pad {
    /// Pads.
    pub pads: Vec<usize>,
    /// Fill value.
    pub value: f32,
}

impl fmt::Debug for Pad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pad({:?}, value {:?})", self.pads, self.value)
    }
}

/// The IR op padding by `pads` (ONNX order) with `value`.
pub fn op(pads: Vec<usize>, value: f32) -> Op {
    Op::Ext(ExtOp::new(Pad { pads, value }))
}

/// Import ONNX `Pad`.
pub(crate) fn import(cx: &mut ImportCx<'_, '_, '_, '_, '_>) -> Result<(), OnnxError> {
    let x = cx.input(0)?;
    let r = cx.shape(x).len();
    let mode = cx.attr_string("mode", "constant")?;
    if mode != "constant" {
        return Err(cx.unsupported("mode", format!("'{mode}' padding (only 'constant' is supported)")));
    }
    let (pads, value) = if cx.opset() >= 11 {
        let p = cx.const_i64(1, "pads")?.ok_or_else(|| cx.invalid("missing pads"))?;
        let v = match cx.const_f32(2, "constant_value")? {
            Some(c) if c.len() == 1 => c[0],
            Some(_) => return Err(cx.invalid("constant_value must be a scalar")),
            None => 0.0,
        };
        let p = if let Some(axes) = cx.const_i64(3, "axes")? {
            if p.len() != 2 * axes.len() {
                return Err(cx.invalid("pads length does not match axes"));
            }
            let mut full = vec![0i64; 2 * r];
            for (i, &a) in axes.iter().enumerate() {
                let a = cx.attr_axis("axes", a, r)?;
                full[a] = p[i];
                full[a + r] = p[i + axes.len()];
            }
            full
        } else {
            p
        };
        (p, v)
    } else {
        let p = cx.attr_ints("pads")?.or(cx.attr_ints("paddings")?).ok_or_else(|| cx.invalid("missing pads"))?;
        (p, cx.attr_float("value", 0.0)?)
    };
    if pads.len() != 2 * r {
        return Err(cx.invalid(format!("{} pads for rank {r}", pads.len())));
    }
    if pads.iter().any(|&p| p < 0) {
        return Err(cx.unsupported("pads", format!("{pads:?}: negative pads (cropping) are not supported")));
    }
    if pads.iter().any(|&p| p > MAX_PAD) {
        return Err(cx.invalid(format!("pads {pads:?} are too large")));
    }
    let pads: Vec<usize> = pads.iter().map(|&p| p as usize).collect();
    if pads.iter().all(|&p| p == 0) {
        return cx.emit_identity(x);
    }
    cx.emit(op(pads, value), vec![x], None)
}

impl OpDef for Pad {
    fn name(&self) -> &'static str {
        "Pad"
    }

    fn output_shape(&self, inputs: &[&[usize]], _declared: Option<(&[usize], &[usize])>) -> Result<Vec<usize>, String> {
        if inputs.len() != 1 {
            return Err(format!("expects 1 input, got {}", inputs.len()));
        }
        let (x, pads) = (inputs[0], &self.pads);
        if pads.len() != 2 * x.len() {
            return Err(format!("Pad has {} pads for rank {}", pads.len(), x.len()));
        }
        x.iter()
            .enumerate()
            .map(|(i, &d)| d.checked_add(pads[i]).and_then(|v| v.checked_add(pads[i + x.len()])))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| format!("Pad {pads:?} of {x:?} overflows"))
    }

    fn run_f32(&self, inputs: &[View<'_>], out_shape: &[usize]) -> Result<Vec<f32>, String> {
        Ok(crate::fp32::ops::pad(inputs[0], &self.pads, self.value, out_shape))
    }

    fn backward(&self, inputs: &[View<'_>], y: View<'_>, dy: &[f32], need: &[bool]) -> Result<Vec<(usize, Vec<f32>)>, String> {
        if need.first() != Some(&true) {
            return Ok(vec![]);
        }
        let xs = inputs[0].shape;
        let ost = contiguous_strides(y.shape);
        let base: usize = (0..xs.len()).map(|i| self.pads[i] * ost[i]).sum();
        let zero = vec![0; xs.len()];
        let mut dx = vec![0.0f32; inputs[0].data.len()];
        for_each_bcast(xs, &ost, &zero, |i, io, _| dx[i] = dy[base + io]);
        Ok(vec![(0, dx)])
    }

    fn lower(&self, cx: &mut LowerCx<'_>) -> Result<LowerOut, String> {
        if self.value != 0.0 {
            return Err(format!("padding with {} (the runtime pads with the zero point: only 0 is exact)", self.value));
        }
        let x = cx.input_nhwc(0).ok_or("padding is supported in int8 for 4-D (NCHW) tensors")?;
        let p = &self.pads;
        // NCHW begins/ends → NHWC
        let nhwc = |o: usize| [p[o], p[o + 2], p[o + 3], p[o + 1]];
        let q = cx.qparams(x);
        let y = cx.new_nhwc(q);
        cx.b.pad(cx.name, x, y, nhwc(0), nhwc(4));
        Ok(LowerOut::Nhwc(y))
    }

    fn keeps_grid(&self) -> bool {
        true
    }

    fn to_onnx(&self, _in_shapes: &[&[usize]], _out_shape: &[usize]) -> OnnxNode {
        OnnxNode {
            op_type: "Pad",
            inputs: vec![
                OnnxIn::Input(0),
                OnnxIn::I64("pads", self.pads.iter().map(|&v| v as i64).collect()),
                OnnxIn::F32("value", vec![], vec![self.value]),
            ],
            attrs: vec![("mode", OnnxAttr::S("constant".into()))],
        }
    }
}
