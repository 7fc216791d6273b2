//! Pad (code 12): constant padding with the input's zero point.
//!
//! Input: x (NHWC, same quantization as the output). Params: [`PadParams`].

use super::exec::{in_out, nhwc};
use super::{no_scratch, Check, Exec, OpDef, OpParams};
use crate::error::LoadError;
use crate::format::OP_PARAMS;
use temper_kernels::reference as r;

pub(crate) const DEF: OpDef = OpDef { validate, scratch: no_scratch, run };

/// Parameters of Pad: `begin[4] end[4]` (NHWC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PadParams {
    /// Elements added before, per axis.
    pub begin: [usize; 4],
    /// Elements added after, per axis.
    pub end: [usize; 4],
}

impl OpParams for PadParams {
    fn encode(&self) -> [i32; OP_PARAMS] {
        let mut p = [0; OP_PARAMS];
        for d in 0..4 {
            p[d] = self.begin[d] as i32;
            p[4 + d] = self.end[d] as i32;
        }
        p
    }
    fn decode(p: &[i32; OP_PARAMS]) -> Self {
        let g = |k: usize| p[k].max(0) as usize;
        PadParams { begin: [g(0), g(1), g(2), g(3)], end: [g(4), g(5), g(6), g(7)] }
    }
}

fn validate(c: &Check<'_, '_>) -> Result<(), LoadError> {
    c.arity(1)?;
    let x = c.act(c.ins[0])?;
    c.nhwc(x)?;
    c.nhwc(c.y)?;
    c.same_q(x, c.y)?;
    for d in 0..4 {
        let (b, e) = (c.p[d], c.p[4 + d]);
        if !(0..=1 << 20).contains(&b) || !(0..=1 << 20).contains(&e) || c.y.dims[d] as i64 != x.dims[d] as i64 + b as i64 + e as i64 {
            return Err(c.err("pad sizes inconsistent").with(d as i64, b as i64));
        }
    }
    Ok(())
}

fn run(e: &mut Exec<'_, '_>) {
    let p: PadParams = e.params();
    let (x, y) = (e.input(0), e.output());
    let (xs, ys, zp) = (nhwc(&x), nhwc(&y), x.zero_point as i8);
    let (xin, out) = in_out(e);
    r::pad::pad(xin, xs, out, ys, p.begin, zp);
}

#[cfg(feature = "writer")]
mod build {
    use super::PadParams;
    use crate::format::OpCode;
    use crate::writer::Builder;

    impl Builder {
        /// Add constant padding (with the input's zero point): `begin`/`end` per NHWC axis.
        pub fn pad(&mut self, name: &str, x: u32, y: u32, begin: [usize; 4], end: [usize; 4]) {
            self.op(OpCode::Pad, name, &[x], y, &PadParams { begin, end });
        }
    }
}
