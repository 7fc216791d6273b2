//! `Resize` (ONNX `Resize` opset 10+ and `Upsample`): spatial resize of NCHW, nearest or bilinear.
//!
//! The runtime's kernel (`OpCode::Resize`, `docs/FORMAT.md`) has three modes: nearest with
//! `asymmetric` coordinates and `floor` rounding, bilinear with `half_pixel` coordinates and
//! bilinear with `align_corners`. Import therefore does not keep the ONNX attributes: for the
//! node's fixed shapes it computes, output coordinate by output coordinate, the source position
//! the ONNX definition gives (its `coordinate_transformation_mode`, `nearest_mode`, and the
//! scale it really uses: the `scales` input when given, else `out / in`) and accepts the node
//! when one runtime mode gives the same source pixels (nearest) or the same source positions
//! (linear) on both axes. That covers what exporters emit for upsampling: PyTorch
//! `F.interpolate(scale_factor=2, mode='nearest')` (`asymmetric` + `floor`), Paddle's nearest
//! (`asymmetric`; `floor` and, at factor 2, `round_prefer_floor` pick the same pixels), half-pixel
//! and `pytorch_half_pixel` bilinear (PyTorch `align_corners=False`, Paddle `align_mode=0`) and
//! `align_corners`. Linear `asymmetric` (Paddle `align_mode=1`, `Upsample` linear) is refused for
//! upscaling: the runtime's kernel has no such mode.

use std::fmt;

use super::{ExtOp, OnnxAttr, OnnxIn, OnnxNode, OpDef};
use crate::fp32::ops::View;
use crate::ir::Op;
use crate::onnx::import::ImportCx;
use crate::onnx::OnnxError;
use crate::quant::lower::{LowerCx, LowerOut};

/// Interpolation of a [`Resize`], as the runtime's kernel implements it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeMode {
    /// Nearest neighbour: source index `floor(d · in / out)` (ONNX `asymmetric` + `floor`).
    Nearest,
    /// Bilinear, source position `(d + ½) · in / out − ½` clamped to the input (`half_pixel`).
    BilinearHalfPixel,
    /// Bilinear, source position `d · (in − 1) / (out − 1)` (`align_corners`).
    BilinearAlignCorners,
}

impl ResizeMode {
    /// The runtime's mode parameter (`docs/FORMAT.md`).
    pub fn code(self) -> i32 {
        match self {
            ResizeMode::Nearest => 0,
            ResizeMode::BilinearHalfPixel => 1,
            ResizeMode::BilinearAlignCorners => 2,
        }
    }
}

/// Spatial resize of NCHW to the node output's shape. Input: x.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Resize {
    /// Interpolation.
    pub mode: ResizeMode,
}

impl fmt::Debug for Resize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Resize({:?})", self.mode)
    }
}

/// The IR op resizing with `mode` (the output size is the node output's shape).
pub fn op(mode: ResizeMode) -> Op {
    Op::Ext(ExtOp::new(Resize { mode }))
}

// ----- import -----------------------------------------------------------------------------------

/// Snap `v` to the nearest integer when it is within rounding noise of it.
fn snap(v: f64) -> f64 {
    let r = v.round();
    if (v - r).abs() <= 1e-6 * r.abs().max(1.0) {
        r
    } else {
        v
    }
}

/// ONNX source coordinate of output index `d` (before rounding or clamping), or `None` for a
/// transformation mode this importer does not know.
fn onnx_coord(ctm: &str, d: usize, inn: usize, out: usize, scale: f64) -> Option<f64> {
    let d = d as f64;
    Some(match ctm {
        "half_pixel" => (d + 0.5) / scale - 0.5,
        "pytorch_half_pixel" if out > 1 => (d + 0.5) / scale - 0.5,
        "pytorch_half_pixel" => 0.0,
        "align_corners" if out > 1 => d * (inn as f64 - 1.0) / (out as f64 - 1.0),
        "align_corners" => 0.0,
        "asymmetric" => d / scale,
        "tf_half_pixel_for_nn" => (d + 0.5) / scale,
        _ => return None,
    })
}

/// ONNX nearest source index (`nearest_mode`; `simple` is opset ≤ 10: ceil when downscaling,
/// floor otherwise), clamped to the input.
fn onnx_nearest(x: f64, mode: &str, inn: usize, out: usize) -> Option<usize> {
    let x = snap(x);
    let i = match mode {
        "round_prefer_floor" if x.fract() == 0.5 => x.floor(),
        "round_prefer_ceil" if x.fract() == 0.5 => x.ceil(),
        "round_prefer_floor" | "round_prefer_ceil" => x.round(),
        "floor" => x.floor(),
        "ceil" => x.ceil(),
        "simple" if out < inn => x.ceil(),
        "simple" => x.floor(),
        _ => return None,
    };
    Some(i.clamp(0.0, inn as f64 - 1.0) as usize)
}

/// The runtime's source position of output index `d` for a bilinear mode, clamped.
fn runtime_linear(mode: ResizeMode, d: usize, inn: usize, out: usize) -> f64 {
    let p = match mode {
        ResizeMode::BilinearAlignCorners if out > 1 => d as f64 * (inn as f64 - 1.0) / (out as f64 - 1.0),
        ResizeMode::BilinearAlignCorners => 0.0,
        _ => (d as f64 + 0.5) * inn as f64 / out as f64 - 0.5,
    };
    p.clamp(0.0, inn as f64 - 1.0)
}

/// Import ONNX `Resize` (opset 10+) or `Upsample` (see the module documentation).
pub(crate) fn import(cx: &mut ImportCx<'_, '_, '_, '_, '_>) -> Result<(), OnnxError> {
    let x = cx.input(0)?;
    let s = cx.shape(x);
    if s.len() != 4 {
        return Err(cx.unsupported("scales", format!("only 4-D NCHW inputs, got {s:?}")));
    }
    if s.contains(&0) {
        return Err(cx.invalid(format!("empty input {s:?}")));
    }
    let upsample = cx.op_type() == "Upsample";
    let old = upsample || cx.opset() < 11;
    let (scales, sizes) = if upsample && cx.opset() < 9 {
        (cx.attr_floats("scales")?, None)
    } else if old {
        (cx.const_f32(1, "scales")?, None)
    } else {
        let sc = cx.const_f32(2, "scales")?.filter(|v| !v.is_empty());
        let sz = cx.const_i64(3, "sizes")?.filter(|v| !v.is_empty());
        (sc, sz)
    };
    if !old {
        if cx.attr_ints("axes")?.is_some() {
            return Err(cx.unsupported("axes", "Resize with axes is not supported"));
        }
        if cx.attr_int("antialias", 0)? != 0 {
            return Err(cx.unsupported("antialias", "antialiased resize is not supported"));
        }
        let policy = cx.attr_string("keep_aspect_ratio_policy", "stretch")?;
        if sizes.is_some() && policy != "stretch" {
            return Err(cx.unsupported("keep_aspect_ratio_policy", format!("'{policy}' (supported: stretch)")));
        }
    }
    // output size and the scale ONNX divides by, per axis
    let (out, scale): (Vec<usize>, Vec<f64>) = match (sizes, scales) {
        (Some(sz), _) => {
            if sz.len() != 4 || sz.iter().any(|&v| v < 0) {
                return Err(cx.invalid(format!("sizes {sz:?} must be 4 non-negative values")));
            }
            let out: Vec<usize> = sz.iter().map(|&v| v as usize).collect();
            let scale = out.iter().zip(&s).map(|(&o, &i)| o as f64 / i as f64).collect();
            (out, scale)
        }
        (None, Some(sc)) => {
            if sc.len() != 4 || sc.iter().any(|&v| !(v > 0.0 && v.is_finite() && v < 1e6)) {
                return Err(cx.invalid(format!("scales {sc:?} must be 4 positive values")));
            }
            let out = s.iter().zip(&sc).map(|(&d, &f)| (d as f64 * f as f64).floor() as usize).collect();
            (out, sc.iter().map(|&v| v as f64).collect())
        }
        (None, None) => return Err(cx.invalid("neither scales nor sizes given")),
    };
    if out[0] != s[0] || out[1] != s[1] {
        return Err(cx.unsupported("scales", format!("only spatial resizing: {s:?} → {out:?}")));
    }
    if out[2] == 0 || out[3] == 0 {
        return Err(cx.invalid(format!("empty output {out:?}")));
    }
    if out == s && scale.iter().all(|&v| v == 1.0) {
        return cx.emit_identity(x);
    }
    if out.iter().product::<usize>() > crate::onnx::MAX_TENSOR_ELEMENTS {
        return Err(cx.invalid(format!("output {out:?} too large")));
    }
    let mode = cx.attr_string("mode", "nearest")?;
    let ctm = if old { "asymmetric".to_string() } else { cx.attr_string("coordinate_transformation_mode", "half_pixel")? };
    let nearest_mode = if old { "simple".to_string() } else { cx.attr_string("nearest_mode", "round_prefer_floor")? };
    let axes = [2usize, 3];
    let unknown_ctm = || {
        cx.unsupported(
            "coordinate_transformation_mode",
            format!("'{ctm}' (supported: half_pixel, pytorch_half_pixel, align_corners, asymmetric, tf_half_pixel_for_nn)"),
        )
    };
    let m = match mode.as_str() {
        "nearest" => {
            for &a in &axes {
                let (inn, o) = (s[a], out[a]);
                for d in 0..o {
                    let c = onnx_coord(&ctm, d, inn, o, scale[a]).ok_or_else(unknown_ctm)?;
                    let src = onnx_nearest(c, &nearest_mode, inn, o)
                        .ok_or_else(|| cx.unsupported("nearest_mode", format!("'{nearest_mode}'")))?;
                    if src != d * inn / o {
                        return Err(cx.unsupported(
                            "coordinate_transformation_mode",
                            format!(
                                "nearest resize with '{ctm}' / nearest_mode '{nearest_mode}' for {s:?} → {out:?} picks other pixels than \
                                 the runtime's nearest (asymmetric, floor, scale out/in)"
                            ),
                        ));
                    }
                }
            }
            ResizeMode::Nearest
        }
        "linear" | "bilinear" => {
            let mut found = None;
            for cand in [ResizeMode::BilinearHalfPixel, ResizeMode::BilinearAlignCorners] {
                let mut same = true;
                for &a in &axes {
                    let (inn, o) = (s[a], out[a]);
                    for d in 0..o {
                        let c = onnx_coord(&ctm, d, inn, o, scale[a]).ok_or_else(unknown_ctm)?.clamp(0.0, inn as f64 - 1.0);
                        same &= (c - runtime_linear(cand, d, inn, o)).abs() <= 1e-6 * inn as f64;
                    }
                }
                if same {
                    found = Some(cand);
                    break;
                }
            }
            found.ok_or_else(|| {
                cx.unsupported(
                    "coordinate_transformation_mode",
                    format!(
                        "linear resize with '{ctm}' for {s:?} → {out:?} (scales {scale:?}): the runtime's bilinear kernel has \
                         half_pixel and align_corners only"
                    ),
                )
            })?
        }
        other => return Err(cx.unsupported("mode", format!("'{other}' interpolation (supported: nearest, linear)"))),
    };
    cx.emit(op(m), vec![x], Some(out))
}

// ----- the stages -------------------------------------------------------------------------------

impl OpDef for Resize {
    fn name(&self) -> &'static str {
        "Resize"
    }

    fn output_shape(&self, inputs: &[&[usize]], declared: Option<(&[usize], &[usize])>) -> Result<Vec<usize>, String> {
        if inputs.len() != 1 {
            return Err(format!("expects 1 input, got {}", inputs.len()));
        }
        let (_, dout) = declared.ok_or("Resize needs the declared output shape")?;
        let x = inputs[0];
        if x.len() != 4 || dout.len() != 4 {
            return Err(format!("Resize expects NCHW, got {x:?} → {dout:?}"));
        }
        if (x[2] == 0 || x[3] == 0) && dout[2] * dout[3] > 0 {
            return Err(format!("Resize of an empty input {x:?} to {dout:?}"));
        }
        Ok(vec![x[0], x[1], dout[2], dout[3]])
    }

    fn run_f32(&self, inputs: &[View<'_>], out_shape: &[usize]) -> Result<Vec<f32>, String> {
        Ok(resize_f32(inputs[0], self.mode, out_shape))
    }

    fn keeps_grid(&self) -> bool {
        true
    }

    fn backward(&self, inputs: &[View<'_>], y: View<'_>, dy: &[f32], need: &[bool]) -> Result<Vec<(usize, Vec<f32>)>, String> {
        Ok(if need.first() == Some(&true) { vec![(0, resize_backward(inputs[0].shape, self.mode, y.shape, dy))] } else { vec![] })
    }

    fn lower(&self, cx: &mut LowerCx<'_>) -> Result<LowerOut, String> {
        let x = cx.input_nhwc(0).ok_or("resize input must be 4-D")?;
        let q = cx.qparams(x);
        let y = cx.new_nhwc(q);
        cx.b.resize(cx.name, x, y, self.mode.code());
        Ok(LowerOut::Nhwc(y))
    }

    fn to_onnx(&self, in_shapes: &[&[usize]], out_shape: &[usize]) -> OnnxNode {
        // scales (not sizes): the batch stays free; each is the smallest f32 with
        // floor(in · scale) = out, which import maps back to this mode
        let mut scales = vec![1.0f32, 1.0];
        for a in 2..4 {
            let (i, o) = (in_shapes[0][a], out_shape[a]);
            let mut s = o as f32 / i as f32;
            while ((i as f32) * s).floor() < o as f32 {
                s = f32::from_bits(s.to_bits() + 1);
            }
            scales.push(s);
        }
        let (m, ctm) = match self.mode {
            ResizeMode::Nearest => ("nearest", "asymmetric"),
            ResizeMode::BilinearHalfPixel => ("linear", "half_pixel"),
            ResizeMode::BilinearAlignCorners => ("linear", "align_corners"),
        };
        OnnxNode {
            op_type: "Resize",
            inputs: vec![OnnxIn::Input(0), OnnxIn::F32("roi", vec![0], vec![]), OnnxIn::F32("scales", vec![4], scales)],
            attrs: vec![
                ("mode", OnnxAttr::S(m.into())),
                ("coordinate_transformation_mode", OnnxAttr::S(ctm.into())),
                ("nearest_mode", OnnxAttr::S("floor".into())),
            ],
        }
    }
}

/// Per output index along one axis: the two source indices and the weight of the second
/// (nearest: the same index twice, weight 0).
fn axis_taps(mode: ResizeMode, o: usize, i: usize) -> Vec<(usize, usize, f32)> {
    (0..o)
        .map(|d| {
            if mode == ResizeMode::Nearest {
                let s = (d * i / o).min(i - 1);
                return (s, s, 0.0);
            }
            let src = if mode == ResizeMode::BilinearHalfPixel {
                ((d as f32 + 0.5) * i as f32 / o as f32 - 0.5).max(0.0)
            } else if o > 1 {
                d as f32 * (i - 1) as f32 / (o - 1) as f32
            } else {
                0.0
            };
            let src = src.min((i - 1) as f32);
            let i0 = src.floor() as usize;
            let i1 = (i0 + 1).min(i - 1);
            (i0, i1, src - i0 as f32)
        })
        .collect()
}

/// FP32 spatial resize of NCHW (the definitions of [`ResizeMode`]).
pub(crate) fn resize_f32(x: View<'_>, mode: ResizeMode, out_shape: &[usize]) -> Vec<f32> {
    let (h, w) = (x.shape[2], x.shape[3]);
    let (oh, ow) = (out_shape[2], out_shape[3]);
    let planes = x.shape[0] * x.shape[1];
    let mut out = Vec::with_capacity(planes * oh * ow);
    if h == 0 || w == 0 {
        out.resize(planes * oh * ow, 0.0);
        return out;
    }
    let (ys, xs) = (axis_taps(mode, oh, h), axis_taps(mode, ow, w));
    for p in 0..planes {
        let ip = &x.data[p * h * w..][..h * w];
        for &(y0, y1, ly) in &ys {
            for &(x0, x1, lx) in &xs {
                let v = if mode == ResizeMode::Nearest {
                    ip[y0 * w + x0]
                } else {
                    let a = ip[y0 * w + x0] * (1.0 - lx) + ip[y0 * w + x1] * lx;
                    let b = ip[y1 * w + x0] * (1.0 - lx) + ip[y1 * w + x1] * lx;
                    a * (1.0 - ly) + b * ly
                };
                out.push(v);
            }
        }
    }
    out
}

/// Gradient of [`resize_f32`] with respect to its input: each output gradient goes back to the
/// source pixels with the interpolation weights.
fn resize_backward(x_shape: &[usize], mode: ResizeMode, out_shape: &[usize], dy: &[f32]) -> Vec<f32> {
    let (h, w) = (x_shape[2], x_shape[3]);
    let (oh, ow) = (out_shape[2], out_shape[3]);
    let planes = x_shape[0] * x_shape[1];
    let mut dx = vec![0.0f32; planes * h * w];
    if h == 0 || w == 0 {
        return dx;
    }
    let (ys, xs) = (axis_taps(mode, oh, h), axis_taps(mode, ow, w));
    for p in 0..planes {
        let g = &mut dx[p * h * w..][..h * w];
        let d = &dy[p * oh * ow..][..oh * ow];
        for (oy, &(y0, y1, ly)) in ys.iter().enumerate() {
            for (ox, &(x0, x1, lx)) in xs.iter().enumerate() {
                let v = d[oy * ow + ox];
                g[y0 * w + x0] += v * (1.0 - ly) * (1.0 - lx);
                g[y0 * w + x1] += v * (1.0 - ly) * lx;
                g[y1 * w + x0] += v * ly * (1.0 - lx);
                g[y1 * w + x1] += v * ly * lx;
            }
        }
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_modes() {
        let x = [0.0f32, 1.0, 2.0, 3.0];
        let v = View { shape: &[1, 1, 2, 2], data: &x };
        let hp = resize_f32(v, ResizeMode::BilinearHalfPixel, &[1, 1, 4, 4]);
        assert_eq!(&hp[..8], &[0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5]);
        let ac = resize_f32(v, ResizeMode::BilinearAlignCorners, &[1, 1, 3, 3]);
        assert_eq!(ac, vec![0.0, 0.5, 1.0, 1.0, 1.5, 2.0, 2.0, 2.5, 3.0]);
        let nn = resize_f32(v, ResizeMode::Nearest, &[1, 1, 2, 4]);
        assert_eq!(nn, vec![0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
    }

    #[test]
    fn onnx_modes_map_to_runtime_modes() {
        // ×2 upsampling: every nearest_mode with asymmetric picks floor(d/2)
        for m in ["floor", "round_prefer_floor"] {
            assert!((0..8).all(|d| onnx_nearest(onnx_coord("asymmetric", d, 4, 8, 2.0).unwrap(), m, 4, 8) == Some(d / 2)), "{m}");
        }
        // round_prefer_ceil picks other pixels (d = 1 → 0.5 → 1), as does ×3 round_prefer_floor (d = 2 → 0.67 → 1)
        assert_eq!(onnx_nearest(onnx_coord("asymmetric", 1, 4, 8, 2.0).unwrap(), "round_prefer_ceil", 4, 8), Some(1));
        assert_eq!(onnx_nearest(onnx_coord("asymmetric", 2, 4, 12, 3.0).unwrap(), "round_prefer_floor", 4, 12), Some(1));
        // pytorch_half_pixel equals half_pixel for outputs longer than 1
        for d in 0..8 {
            let c = onnx_coord("pytorch_half_pixel", d, 4, 8, 2.0).unwrap().clamp(0.0, 3.0);
            assert!((c - runtime_linear(ResizeMode::BilinearHalfPixel, d, 4, 8)).abs() < 1e-12);
        }
    }
}
