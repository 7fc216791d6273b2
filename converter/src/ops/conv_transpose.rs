//! `ConvTranspose`: transposed 2-D convolution (ONNX `ConvTranspose`, every opset), the
//! upsampling head of segmentation and text-detection models (DBNet's probability map).
//!
//! Import resolves `auto_pad`, `output_shape` and `output_padding` into explicit pads and an
//! extra end size. The op is linear: BatchNorm and constant per-channel Add/Mul that follow it
//! fold into its weights and bias, and a following Relu/Clip fuses into it. The int8 lowering
//! quantizes the weights per output channel into the runtime's `[O, KH, KW, C/group]` layout
//! (from ONNX's `[C, O/group, KH, KW]`) for the runtime's `ConvTranspose2d`.

use std::fmt;

use super::{ExtOp, OnnxAttr, OnnxIn, OnnxNode, OpDef};
use crate::fp32::ops::View;
use crate::ir::{Activation, Op, Window};
use crate::onnx::import::ImportCx;
use crate::onnx::OnnxError;
use crate::quant::lower::{LowerCx, LowerOut};
use crate::quant::observer::quantize_weights_per_channel;
use temper_runtime::writer::{clamp_range, QWeights, Window as RtWindow};

/// Largest window size, stride, dilation or pad accepted on import.
const MAX_WINDOW: i64 = 1 << 20;

/// Transposed convolution. Inputs: x `[N, C, H, W]`, w `[C, O/group, KH, KW]`, optional bias `[O]`.
#[derive(Clone, Copy, PartialEq)]
pub struct ConvTranspose {
    /// Window geometry (pads as in ONNX: the output is cropped by them).
    pub window: Window,
    /// Extra size added to the end side of the output.
    pub output_padding: [usize; 2],
    /// Group count.
    pub group: usize,
    /// Fused activation.
    pub act: Activation,
}

impl fmt::Debug for ConvTranspose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = &self.window;
        write!(
            f,
            "ConvTranspose(kernel {:?}, stride {:?}, dilation {:?}, pads {:?}, output_padding {:?}, group {}, act {:?})",
            w.kernel, w.stride, w.dilation, w.pads, self.output_padding, self.group, self.act
        )
    }
}

/// The IR op.
pub fn op(window: Window, output_padding: [usize; 2], group: usize, act: Activation) -> Op {
    Op::Ext(ExtOp::new(ConvTranspose { window, output_padding, group, act }))
}

/// Import ONNX `ConvTranspose`.
pub(crate) fn import(cx: &mut ImportCx<'_, '_, '_, '_, '_>) -> Result<(), OnnxError> {
    let x = cx.input(0)?;
    let w = cx.input(1)?;
    let b = cx.opt_input(2)?;
    let (xs, ws) = (cx.shape(x), cx.shape(w));
    if xs.len() != 4 || ws.len() != 4 {
        return Err(cx.unsupported("kernel_shape", format!("only 2-D transposed convolution (input {xs:?}, weight {ws:?})")));
    }
    let group = cx.attr_int("group", 1)?;
    if group < 1 {
        return Err(cx.invalid(format!("group {group}")));
    }
    let kernel = [ws[2], ws[3]];
    if let Some(k) = cx.attr_ints("kernel_shape")? {
        if k.len() != 2 || k[0] as usize != kernel[0] || k[1] as usize != kernel[1] {
            return Err(cx.unsupported("kernel_shape", format!("{k:?} differs from the weight's {kernel:?}")));
        }
    }
    let two = |cx: &ImportCx<'_, '_, '_, '_, '_>, name: &str, default: usize| -> Result<[usize; 2], OnnxError> {
        match cx.attr_ints(name)? {
            None => Ok([default; 2]),
            Some(v) if v.len() == 2 && v.iter().all(|&d| (0..=MAX_WINDOW).contains(&d)) => Ok([v[0] as usize, v[1] as usize]),
            Some(v) => Err(cx.unsupported(name, format!("{v:?}: only 2-D, values in 0..={MAX_WINDOW}"))),
        }
    };
    let stride = two(cx, "strides", 1)?;
    let dilation = two(cx, "dilations", 1)?;
    let mut output_padding = two(cx, "output_padding", 0)?;
    if stride.contains(&0) || dilation.contains(&0) {
        return Err(cx.invalid("strides and dilations must be ≥ 1"));
    }
    let auto_pad = cx.attr_string("auto_pad", "NOTSET")?;
    let output_shape = cx.attr_ints("output_shape")?;
    let full = |a: usize, op: usize| stride[a] * (xs[2 + a].max(1) - 1) + op + dilation[a] * (kernel[a].max(1) - 1) + 1;
    let mut pads = [0usize; 4];
    let target: Option<[usize; 2]> = match (&output_shape, auto_pad.as_str()) {
        (Some(os), _) => {
            let os = if os.len() == 4 { &os[2..] } else { &os[..] };
            if os.len() != 2 || os.iter().any(|&d| !(1..=MAX_WINDOW).contains(&d)) {
                return Err(cx.unsupported("output_shape", format!("{os:?}")));
            }
            Some([os[0] as usize, os[1] as usize])
        }
        (None, "SAME_UPPER" | "SAME_LOWER") => Some([xs[2] * stride[0], xs[3] * stride[1]]),
        _ => None,
    };
    if let Some(t) = target {
        for a in 0..2 {
            let f = full(a, output_padding[a]);
            if f < t[a] {
                // grow the output on the end side
                output_padding[a] += t[a] - f;
                continue;
            }
            let total = f - t[a];
            if auto_pad == "SAME_UPPER" {
                pads[a] = total / 2;
                pads[a + 2] = total - total / 2;
            } else {
                pads[a] = total - total / 2;
                pads[a + 2] = total / 2;
            }
        }
    } else {
        match auto_pad.as_str() {
            "NOTSET" | "" => {
                if let Some(p) = cx.attr_ints("pads")? {
                    if p.len() != 4 || p.iter().any(|&d| !(0..=MAX_WINDOW).contains(&d)) {
                        return Err(cx.unsupported("pads", format!("{p:?}")));
                    }
                    pads = [p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize];
                }
            }
            "VALID" => {}
            other => return Err(cx.unsupported("auto_pad", format!("unknown value '{other}'"))),
        }
    }
    let window = Window { kernel, stride, pads, dilation };
    let mut ins = vec![x, w];
    ins.extend(b);
    cx.emit(op(window, output_padding, group as usize, Activation::None), ins, None)
}

/// `[O][KH][KW][C/group]` (runtime) from ONNX `[C][O/group][KH][KW]`.
fn to_runtime_layout(w: &[f32], ws: &[usize], group: usize) -> Vec<f32> {
    let (c, og, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
    let cg = c / group;
    let mut out = vec![0f32; w.len()];
    for ci in 0..c {
        let grp = ci / cg;
        for j in 0..og {
            let oc = grp * og + j;
            for y in 0..kh {
                for x in 0..kw {
                    out[((oc * kh + y) * kw + x) * cg + ci % cg] = w[((ci * og + j) * kh + y) * kw + x];
                }
            }
        }
    }
    out
}

impl OpDef for ConvTranspose {
    fn name(&self) -> &'static str {
        "ConvTranspose"
    }

    fn output_shape(&self, inputs: &[&[usize]], _declared: Option<(&[usize], &[usize])>) -> Result<Vec<usize>, String> {
        if !(2..=3).contains(&inputs.len()) {
            return Err(format!("ConvTranspose takes 2 or 3 inputs, got {}", inputs.len()));
        }
        let (x, w, window) = (inputs[0], inputs[1], &self.window);
        if w.len() != 4 || x.len() != 4 {
            return Err(format!("ConvTranspose expects 4-D input and weight, got {x:?} and {w:?}"));
        }
        let g = self.group;
        if g == 0 || w[0] != x[1] || x[1] % g != 0 {
            return Err(format!("ConvTranspose: input {x:?}, weight {w:?} and group {g} are inconsistent"));
        }
        if [w[2], w[3]] != window.kernel {
            return Err(format!("ConvTranspose: weight {w:?} does not match kernel {:?}", window.kernel));
        }
        let o = w[1] * g;
        if inputs.len() == 3 && inputs[2].iter().product::<usize>() != o {
            return Err(format!("ConvTranspose: bias {:?} does not have {o} elements", inputs[2]));
        }
        let mut out = vec![x[0], o, 0, 0];
        for a in 0..2 {
            let full = window.stride[a]
                .checked_mul(x[2 + a].max(1) - 1)
                .and_then(|v| v.checked_add(self.output_padding[a]))
                .and_then(|v| v.checked_add(window.dilation[a].checked_mul(window.kernel[a].max(1) - 1)?))
                .and_then(|v| v.checked_add(1))
                .ok_or("ConvTranspose output size overflows")?;
            let pads = window.pads[a].checked_add(window.pads[a + 2]).ok_or("ConvTranspose pads overflow")?;
            if full <= pads {
                return Err(format!("ConvTranspose: pads {:?} remove the whole output", window.pads));
            }
            out[2 + a] = full - pads;
        }
        Ok(out)
    }

    fn run_f32(&self, inputs: &[View<'_>], out_shape: &[usize]) -> Result<Vec<f32>, String> {
        let bias = inputs.get(2).map(|b| b.data);
        let threads = crate::fp32::default_threads();
        Ok(crate::fp32::ops::conv_transpose2d(inputs[0], inputs[1], bias, &self.window, self.group, self.act, out_shape, threads))
    }

    fn act(&self) -> Option<Activation> {
        Some(self.act)
    }

    fn with_act(&self, act: Activation) -> Option<Op> {
        Some(Op::Ext(ExtOp::new(ConvTranspose { act, ..*self })))
    }

    fn is_linear(&self) -> bool {
        true
    }

    fn weight_channel(&self, wshape: &[usize], idx: usize) -> usize {
        // w [C, O/g, KH, KW]: element idx belongs to input channel c, group c / (C/g)
        let og = wshape[1];
        let per_c: usize = wshape[1..].iter().product();
        let ksz: usize = wshape[2..].iter().product();
        let c = idx / per_c.max(1);
        let j = (idx % per_c.max(1)) / ksz.max(1);
        let cg = wshape[0] / self.group.max(1);
        (c / cg.max(1)) * og + j
    }

    fn lower(&self, cx: &mut LowerCx<'_>) -> Result<LowerOut, String> {
        let x = cx.input_nhwc(0).ok_or("transposed-convolution input must be a lowered 4-D activation")?;
        let (ws, w) = cx.const_input(1).ok_or("transposed-convolution weights must be constant")?;
        if ws.len() != 4 {
            return Err(format!("transposed-convolution weights {ws:?} are not 4-D"));
        }
        let (g, og, kh, kw) = (self.group, ws[1], ws[2], ws[3]);
        let (o, cg) = (og * g, ws[0] / g);
        let wt = to_runtime_layout(w, ws, g);
        let (q, scales) = quantize_weights_per_channel(&wt, o);
        let mut bias_f: Vec<f64> = match cx.num_inputs() {
            3 => cx.const_input(2).ok_or("transposed-convolution bias must be constant")?.1.iter().map(|&v| v as f64).collect(),
            _ => vec![0.0; o],
        };
        // Bias correction: the weight rounding error times the input's channel means, averaged
        // over the taps that reach one output pixel (kh·kw / (sh·sw) of the kh·kw taps).
        if let Some(means) = cx.input_means().filter(|m| m.len() == cg * g) {
            let k = kh * kw * cg;
            let per = 1.0 / (self.window.stride[0] * self.window.stride[1]) as f64;
            for (oc, b) in bias_f.iter_mut().enumerate() {
                let grp = oc / og;
                let mut d = 0.0;
                for t in 0..kh * kw {
                    for c in 0..cg {
                        let idx = oc * k + t * cg + c;
                        d += (wt[idx] as f64 - q[idx] as f64 * scales[oc] as f64) * means[grp * cg + c];
                    }
                }
                *b += d * per;
            }
        }
        let xq = cx.qparams(x);
        let bias: Vec<i32> =
            bias_f.iter().zip(&scales).map(|(&v, &s)| (v / (xq.scale as f64 * s as f64)).round().clamp(-2e9, 2e9) as i32).collect();
        let yq = cx.out_qparams();
        let clamp = match self.act {
            Activation::None => (-128, 127),
            Activation::Relu => clamp_range(Some(0.0), None, yq),
            Activation::Clip { min, max } => clamp_range(Some(min), Some(max), yq),
        };
        let y = cx.new_nhwc(yq);
        let wd = &self.window;
        // the runtime crops `pads` and derives the extra end size from the output's dims
        let win = RtWindow { kernel: wd.kernel, stride: wd.stride, dilation: wd.dilation, pads: wd.pads };
        cx.b.conv_transpose2d(cx.name, x, y, win, g, QWeights { data: &q, scales: &scales, bias: &bias }, clamp).map_err(|e| e.0)?;
        Ok(LowerOut::Nhwc(y))
    }

    fn to_onnx(&self, in_shapes: &[&[usize]], _out_shape: &[usize]) -> OnnxNode {
        let w = &self.window;
        let ints = |v: &[usize]| OnnxAttr::Is(v.iter().map(|&d| d as i64).collect());
        OnnxNode {
            op_type: "ConvTranspose",
            inputs: (0..in_shapes.len()).map(OnnxIn::Input).collect(),
            attrs: vec![
                ("kernel_shape", ints(&w.kernel)),
                ("strides", ints(&w.stride)),
                ("dilations", ints(&w.dilation)),
                ("pads", ints(&w.pads)),
                ("group", OnnxAttr::I(self.group as i64)),
                ("output_padding", ints(&self.output_padding)),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_layout_moves_every_weight_to_its_output_channel() {
        // C = 4, group 2, O/g = 3, 1×2 kernel: weight value encodes (c, j, x)
        let ws = [4, 3, 1, 2];
        let w: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let r = to_runtime_layout(&w, &ws, 2);
        for c in 0..4 {
            for j in 0..3 {
                for x in 0..2 {
                    let oc = (c / 2) * 3 + j;
                    assert_eq!(r[(oc * 2 + x) * 2 + c % 2], w[(c * 3 + j) * 2 + x]);
                }
            }
        }
        let d = ConvTranspose {
            window: Window { kernel: [1, 2], stride: [1, 1], pads: [0; 4], dilation: [1, 1] },
            output_padding: [0, 0],
            group: 2,
            act: Activation::None,
        };
        for (i, _) in w.iter().enumerate() {
            let (c, j) = (i / 6, (i % 6) / 2);
            assert_eq!(d.weight_channel(&ws, i), (c / 2) * 3 + j);
        }
    }
}
