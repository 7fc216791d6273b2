//! What the windowed ops share: the [`Window`] geometry, the parameters of the convolutions
//! ([`ConvParams`]: Conv2d, Depthwise2d, ConvTranspose2d), output-size rules and the pooling
//! shape check.

use super::check::dims4;
use super::{Check, OpParams};
use crate::error::LoadError;
use crate::format::{TensorRecord, OP_PARAMS};
use temper_kernels::{Conv2d, Nhwc};

/// Geometry of a convolution, pooling or transposed convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Kernel `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Stride `[sh, sw]`.
    pub stride: [usize; 2],
    /// Dilation `[dh, dw]`.
    pub dilation: [usize; 2],
    /// Padding `[top, left, bottom, right]`.
    pub pads: [usize; 4],
}

impl Window {
    /// A square window with stride and symmetric padding, no dilation.
    pub fn square(k: usize, stride: usize, pad: usize) -> Window {
        Window { kernel: [k, k], stride: [stride, stride], dilation: [1, 1], pads: [pad; 4] }
    }

    /// Output size (floor mode) for input `[h, w]`, `None` if the window does not fit.
    pub fn out_size(&self, h: usize, w: usize) -> Option<[usize; 2]> {
        Some([
            conv_out(h, self.kernel[0], self.stride[0], self.dilation[0], self.pads[0] + self.pads[2])?,
            conv_out(w, self.kernel[1], self.stride[1], self.dilation[1], self.pads[1] + self.pads[3])?,
        ])
    }

    /// The ten params slots `kh kw sh sw dh dw pad_t pad_l pad_b pad_r`.
    pub fn encode(&self) -> [i32; 10] {
        [
            self.kernel[0] as i32,
            self.kernel[1] as i32,
            self.stride[0] as i32,
            self.stride[1] as i32,
            self.dilation[0] as i32,
            self.dilation[1] as i32,
            self.pads[0] as i32,
            self.pads[1] as i32,
            self.pads[2] as i32,
            self.pads[3] as i32,
        ]
    }

    /// Read [`Window::encode`]'s slots back (negative values read as 0).
    pub fn decode(p: &[i32]) -> Window {
        let g = |k: usize| p.get(k).copied().unwrap_or(0).max(0) as usize;
        Window { kernel: [g(0), g(1)], stride: [g(2), g(3)], dilation: [g(4), g(5)], pads: [g(6), g(7), g(8), g(9)] }
    }

    /// Kernel geometry for input `x` and output `y` (NHWC).
    pub fn geom(&self, x: Nhwc, y: Nhwc, groups: usize) -> Conv2d {
        Conv2d {
            input: x,
            output: y,
            kh: self.kernel[0],
            kw: self.kernel[1],
            sh: self.stride[0],
            sw: self.stride[1],
            dh: self.dilation[0],
            dw: self.dilation[1],
            pad_top: self.pads[0],
            pad_left: self.pads[1],
            groups,
        }
    }
}

/// Parameters of Conv2d, Depthwise2d and ConvTranspose2d:
/// `kh kw sh sw dh dw pad_t pad_l pad_b pad_r groups min max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvParams {
    /// Window geometry.
    pub window: Window,
    /// Groups (C for depthwise).
    pub groups: usize,
    /// Fused-activation clamp `(min, max)` in the output's quantized domain.
    pub clamp: (i32, i32),
}

impl OpParams for ConvParams {
    fn encode(&self) -> [i32; OP_PARAMS] {
        let mut p = [0; OP_PARAMS];
        p[..10].copy_from_slice(&self.window.encode());
        p[10] = self.groups as i32;
        p[11] = self.clamp.0;
        p[12] = self.clamp.1;
        p
    }
    fn decode(p: &[i32; OP_PARAMS]) -> Self {
        ConvParams { window: Window::decode(&p[..10]), groups: p[10].max(1) as usize, clamp: (p[11], p[12]) }
    }
}

/// NHWC shape of rank-4 dims, `None` for another rank.
pub(crate) fn nhwc_of(d: &[u32]) -> Option<Nhwc> {
    match *d {
        [n, h, w, c] => Some(Nhwc::new(n as usize, h as usize, w as usize, c as usize)),
        _ => None,
    }
}

/// Kernel geometry of a convolution-like op from its params and the dims of input 0 and the
/// output (rank 4 after validation; a zero shape otherwise).
pub(crate) fn conv_geom(p: &ConvParams, x: &[u32], y: &[u32]) -> Conv2d {
    let zero = Nhwc::new(0, 0, 0, 0);
    p.window.geom(nhwc_of(x).unwrap_or(zero), nhwc_of(y).unwrap_or(zero), p.groups)
}

/// Floor-mode output size of a window, `None` when the window does not fit.
pub(crate) fn conv_out(i: usize, k: usize, s: usize, d: usize, pad: usize) -> Option<usize> {
    let eff = d.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
    let span = i.checked_add(pad)?.checked_sub(eff)?;
    Some(span.checked_div(s)? + 1)
}

/// The checks Conv2d, Depthwise2d and ConvTranspose2d share: window and clamp ranges, `n_in`
/// inputs, NHWC input and output, groups dividing both channel counts, same batch. Returns the
/// checked window slots, groups and the input record.
pub(crate) fn check_conv<'a>(c: &Check<'_, 'a>, n_in: usize) -> Result<([usize; 10], usize, &'a TensorRecord), LoadError> {
    let w = c.window(0)?;
    let groups = c.p[10];
    c.clamp(c.p[11], c.p[12])?;
    c.arity(n_in)?;
    let x = c.act(c.ins[0])?;
    c.nhwc(x)?;
    c.nhwc(c.y)?;
    let (n, _, _, ch) = dims4(x);
    let (yn, _, _, yc) = dims4(c.y);
    if groups < 1 || ch % groups as usize != 0 || yc % groups as usize != 0 || yn != n {
        return Err(c.err("channels not divisible by groups, or batch differs").with(groups as i64, ch as i64));
    }
    Ok((w, groups as usize, x))
}

/// Conv2d / Depthwise2d: the output size follows the floor-mode rule.
pub(crate) fn check_conv_out(c: &Check<'_, '_>, w: &[usize; 10], x: &TensorRecord) -> Result<(), LoadError> {
    let (_, h, wd, _) = dims4(x);
    let (_, yh, yw, _) = dims4(c.y);
    let oh = conv_out(h, w[0], w[2], w[4], w[6] + w[8]);
    let ow = conv_out(wd, w[1], w[3], w[5], w[7] + w[9]);
    if oh != Some(yh) || ow != Some(yw) {
        return Err(c.err("output shape inconsistent with conv parameters").with(yh as i64, oh.unwrap_or(0) as i64));
    }
    Ok(())
}

/// Pooling: one NHWC activation in, the output size floor or ceil mode of the window
/// `[kh, kw, sh, sw, pt, pl, pb, pr]`, padding smaller than the window, same batch and channels.
pub(crate) fn check_pool_shape(c: &Check<'_, '_>, x: &TensorRecord, k: [usize; 8]) -> Result<(), LoadError> {
    let [kh, kw, sh, sw, pt, pl, pb, pr] = k;
    let (n, h, wd, ch) = dims4(x);
    let (yn, yh, yw, yc) = dims4(c.y);
    if pt >= kh || pb >= kh || pl >= kw || pr >= kw {
        return Err(c.err("pool padding must be smaller than the window"));
    }
    let fh = conv_out(h, kh, sh, 1, pt + pb);
    let fw = conv_out(wd, kw, sw, 1, pl + pr);
    let okh = fh.is_some_and(|f| yh == f || yh == f + 1) && (yh - 1) * sh < h + pt;
    let okw = fw.is_some_and(|f| yw == f || yw == f + 1) && (yw - 1) * sw < wd + pl;
    if n != yn || ch != yc || !okh || !okw {
        return Err(c.err("pool output shape inconsistent with its window").with(yh as i64, fh.unwrap_or(0) as i64));
    }
    Ok(())
}
