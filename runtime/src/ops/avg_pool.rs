//! AvgPool (code 7): average pooling (global pooling is a window of the whole input).
//!
//! Input: x (NHWC). Params: [`AvgPoolParams`]:
//! `y = clamp(z_y + round_half_up(Σ(x − z_x) · mult / (count · 2^shift)))`, exact.

use super::exec::{in_out, nhwc};
use super::window::{check_pool_shape, Window};
use super::{no_scratch, Check, Exec, OpDef, OpParams};
use crate::error::LoadError;
use crate::format::OP_PARAMS;
use temper_kernels::reference as r;
use temper_kernels::requant;

pub(crate) const DEF: OpDef = OpDef { validate, scratch: no_scratch, run };

/// Parameters of AvgPool: `kh kw sh sw pad_t pad_l pad_b pad_r count_include_pad mult shift min max`
/// (no dilation slots).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPoolParams {
    /// Window geometry (dilation is not encoded; it reads back as 1).
    pub window: Window,
    /// Whether padded taps count in the divisor.
    pub count_include_pad: bool,
    /// Rescale multiplier (`s_x / s_y`).
    pub mult: i32,
    /// Rescale shift.
    pub shift: i32,
    /// Clamp `(min, max)` in the output's quantized domain.
    pub clamp: (i32, i32),
}

impl OpParams for AvgPoolParams {
    fn encode(&self) -> [i32; OP_PARAMS] {
        let w = &self.window;
        let mut p = [0; OP_PARAMS];
        p[..13].copy_from_slice(&[
            w.kernel[0] as i32,
            w.kernel[1] as i32,
            w.stride[0] as i32,
            w.stride[1] as i32,
            w.pads[0] as i32,
            w.pads[1] as i32,
            w.pads[2] as i32,
            w.pads[3] as i32,
            self.count_include_pad as i32,
            self.mult,
            self.shift,
            self.clamp.0,
            self.clamp.1,
        ]);
        p
    }
    fn decode(p: &[i32; OP_PARAMS]) -> Self {
        let g = |k: usize| p[k].max(0) as usize;
        AvgPoolParams {
            window: Window { kernel: [g(0), g(1)], stride: [g(2), g(3)], dilation: [1, 1], pads: [g(4), g(5), g(6), g(7)] },
            count_include_pad: p[8] != 0,
            mult: p[9],
            shift: p[10],
            clamp: (p[11], p[12]),
        }
    }
}

fn validate(c: &Check<'_, '_>) -> Result<(), LoadError> {
    c.arity(1)?;
    let x = c.act(c.ins[0])?;
    c.nhwc(x)?;
    c.nhwc(c.y)?;
    let p = c.p;
    let mut w = [0usize; 8];
    for k in 0..8 {
        let lo = if k < 4 { 1 } else { 0 };
        if p[k] < lo || p[k] > 4096 {
            return Err(c.err("pool parameter out of range").with(p[k] as i64, k as i64));
        }
        w[k] = p[k] as usize;
    }
    if !(0..=1).contains(&p[8]) || !requant::is_valid(p[9], p[10]) {
        return Err(c.err("avg pool flags or multiplier invalid"));
    }
    c.clamp(p[11], p[12])?;
    check_pool_shape(c, x, w)
}

fn run(e: &mut Exec<'_, '_>) {
    let p: AvgPoolParams = e.params();
    let (k, x, y) = (e.k, e.input(0), e.output());
    let args = r::pool::AvgPoolArgs {
        geom: p.window.geom(nhwc(&x), nhwc(&y), 1),
        count_include_pad: p.count_include_pad,
        input_zp: x.zero_point,
        mult: p.mult,
        shift: p.shift,
        out_zp: y.zero_point,
        min: p.clamp.0,
        max: p.clamp.1,
    };
    let (xin, out) = in_out(e);
    (k.avg_pool)(&args, xin, out);
}

#[cfg(feature = "writer")]
mod build {
    use super::AvgPoolParams;
    use crate::format::OpCode;
    use crate::writer::{BuildError, Builder, Window};
    use alloc::format;
    use temper_kernels::requant::quantize_multiplier;

    impl Builder {
        /// Add average pooling (global pooling: a window of the whole input).
        pub fn avg_pool(
            &mut self,
            name: &str,
            x: u32,
            y: u32,
            win: Window,
            count_include_pad: bool,
            clamp: (i32, i32),
        ) -> Result<(), BuildError> {
            let (xq, yq) = (self.qparams(x), self.qparams(y));
            let (mult, shift) = quantize_multiplier(xq.scale as f64 / yq.scale as f64)
                .ok_or_else(|| BuildError(format!("{name}: scale ratio cannot be encoded")))?;
            let params = AvgPoolParams { window: win, count_include_pad, mult, shift, clamp };
            self.op(OpCode::AvgPool, name, &[x], y, &params);
            Ok(())
        }
    }
}
