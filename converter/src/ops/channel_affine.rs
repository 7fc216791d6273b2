//! `ChannelAffine`: `y = x·a[c] + b[c]` with constant per-channel `a`, `b` along the channel
//! axis (axis 1 of the IR's NCHW / `[N, C]` tensors).
//!
//! Not imported from ONNX directly: the graph pass [`crate::passes::affine_to_channel`] rewrites
//! constant per-tensor or per-channel `Mul`/`Add`/`Sub`/`Div` (and inference `BatchNorm`) that
//! could not be folded into a producer's weights into this op. Lowered to the runtime's
//! `ChannelAffine` (per-channel signed multiplier and offset); exported to ONNX as
//! `BatchNormalization` with mean 0, variance 1 and epsilon 0.

use std::fmt;

use super::{ExtOp, OnnxAttr, OnnxIn, OnnxNode, OpDef};
use crate::fp32::ops::View;
use crate::ir::Op;
use crate::quant::lower::{LowerCx, LowerOut};

/// Per-channel affine map. `a.len() == b.len()` = the channel count.
#[derive(Clone, PartialEq)]
pub struct ChannelAffine {
    /// Scale per channel.
    pub a: Vec<f32>,
    /// Offset per channel.
    pub b: Vec<f32>,
}

impl fmt::Debug for ChannelAffine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelAffine(a {:?}, b {:?})", self.a, self.b)
    }
}

/// The IR op `x·a[c] + b[c]` (`a`, `b` of equal length: the channel count).
pub fn op(a: Vec<f32>, b: Vec<f32>) -> Op {
    Op::Ext(ExtOp::new(ChannelAffine { a, b }))
}

/// Channels and the inner size (elements per channel per batch item) of `shape`.
fn layout(shape: &[usize]) -> Option<(usize, usize)> {
    (shape.len() >= 2).then(|| (shape[1], shape[2..].iter().product()))
}

impl ChannelAffine {
    fn check(&self, shape: &[usize]) -> Result<(usize, usize), String> {
        let (c, inner) = layout(shape).ok_or_else(|| format!("ChannelAffine needs a rank ≥ 2 input, got {shape:?}"))?;
        if self.a.len() != c || self.b.len() != c {
            return Err(format!("ChannelAffine has {} scales / {} offsets for {c} channels of {shape:?}", self.a.len(), self.b.len()));
        }
        Ok((c, inner))
    }
}

impl OpDef for ChannelAffine {
    fn name(&self) -> &'static str {
        "ChannelAffine"
    }

    fn output_shape(&self, inputs: &[&[usize]], _declared: Option<(&[usize], &[usize])>) -> Result<Vec<usize>, String> {
        if inputs.len() != 1 {
            return Err(format!("expects 1 input, got {}", inputs.len()));
        }
        self.check(inputs[0])?;
        Ok(inputs[0].to_vec())
    }

    fn run_f32(&self, inputs: &[View<'_>], _out_shape: &[usize]) -> Result<Vec<f32>, String> {
        let x = inputs[0];
        let (c, inner) = self.check(x.shape)?;
        Ok(x.data
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let k = (i / inner.max(1)) % c;
                v * self.a[k] + self.b[k]
            })
            .collect())
    }

    fn backward(&self, inputs: &[View<'_>], _y: View<'_>, dy: &[f32], need: &[bool]) -> Result<Vec<(usize, Vec<f32>)>, String> {
        if need.first() != Some(&true) {
            return Ok(vec![]);
        }
        let (c, inner) = self.check(inputs[0].shape)?;
        Ok(vec![(0, dy.iter().enumerate().map(|(i, &g)| g * self.a[(i / inner.max(1)) % c]).collect())])
    }

    fn lower(&self, cx: &mut LowerCx<'_>) -> Result<LowerOut, String> {
        let q = cx.out_qparams();
        if let Some(x) = cx.input_nhwc(0) {
            let y = cx.new_nhwc(q);
            cx.b.channel_affine(cx.name, x, y, &self.a, &self.b, (-128, 127)).map_err(|e| e.0)?;
            return Ok(LowerOut::Nhwc(y));
        }
        match cx.input_plain(0) {
            // [N, C]: the channel is the last axis in the runtime too.
            Some(x) if cx.out_rank() == 2 => {
                let y = cx.new_plain(q);
                cx.b.channel_affine(cx.name, x, y, &self.a, &self.b, (-128, 127)).map_err(|e| e.0)?;
                Ok(LowerOut::Plain(y))
            }
            _ => Err("a per-channel affine map is supported in int8 on 4-D (NCHW) and 2-D ([N, C]) tensors".into()),
        }
    }

    fn to_onnx(&self, _in_shapes: &[&[usize]], _out_shape: &[usize]) -> OnnxNode {
        let c = self.a.len();
        OnnxNode {
            op_type: "BatchNormalization",
            inputs: vec![
                OnnxIn::Input(0),
                OnnxIn::F32("scale", vec![c], self.a.clone()),
                OnnxIn::F32("bias", vec![c], self.b.clone()),
                OnnxIn::F32("mean", vec![c], vec![0.0; c]),
                OnnxIn::F32("var", vec![c], vec![1.0; c]),
            ],
            attrs: vec![("epsilon", OnnxAttr::F(0.0))],
        }
    }
}
