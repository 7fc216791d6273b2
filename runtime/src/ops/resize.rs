//! Resize (code 13): spatial resize of an NHWC activation (batch and channels unchanged).
//!
//! Input: x (same quantization as the output). Params: [`ResizeParams`].

use super::exec::{in_out, nhwc};
use super::{no_scratch, Check, Exec, OpDef, OpParams};
use crate::error::LoadError;
use crate::format::OP_PARAMS;
use temper_kernels::reference as r;

pub(crate) const DEF: OpDef = OpDef { validate, scratch: no_scratch, run };

/// Interpolation of a resize.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum ResizeMode {
    /// Nearest neighbour, asymmetric coordinates, floor.
    Nearest = 0,
    /// Bilinear, half-pixel coordinates.
    Bilinear = 1,
    /// Bilinear, align-corners coordinates.
    BilinearAlignCorners = 2,
}

impl ResizeMode {
    /// Decode a params value.
    pub fn from_code(v: i32) -> Option<ResizeMode> {
        match v {
            0 => Some(ResizeMode::Nearest),
            1 => Some(ResizeMode::Bilinear),
            2 => Some(ResizeMode::BilinearAlignCorners),
            _ => None,
        }
    }
}

/// Parameters of Resize: `mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResizeParams {
    /// Interpolation.
    pub mode: ResizeMode,
}

impl OpParams for ResizeParams {
    fn encode(&self) -> [i32; OP_PARAMS] {
        let mut p = [0; OP_PARAMS];
        p[0] = self.mode as i32;
        p
    }
    fn decode(p: &[i32; OP_PARAMS]) -> Self {
        ResizeParams { mode: ResizeMode::from_code(p[0]).unwrap_or(ResizeMode::Bilinear) }
    }
}

fn validate(c: &Check<'_, '_>) -> Result<(), LoadError> {
    c.arity(1)?;
    let x = c.act(c.ins[0])?;
    c.nhwc(x)?;
    c.nhwc(c.y)?;
    c.same_q(x, c.y)?;
    if ResizeMode::from_code(c.p[0]).is_none() || x.dims[0] != c.y.dims[0] || x.dims[3] != c.y.dims[3] {
        return Err(c.err("resize mode or shape invalid").with(c.p[0] as i64, 2));
    }
    Ok(())
}

fn run(e: &mut Exec<'_, '_>) {
    let p: ResizeParams = e.params();
    let (x, y) = (e.input(0), e.output());
    let (xs, ys, zp) = (nhwc(&x), nhwc(&y), x.zero_point);
    let (xin, out) = in_out(e);
    match p.mode {
        ResizeMode::Nearest => r::resize::resize_nearest(xin, xs, out, ys),
        mode => r::resize::resize_bilinear(xin, xs, out, ys, mode == ResizeMode::BilinearAlignCorners, zp),
    }
}

#[cfg(feature = "writer")]
mod build {
    use super::{ResizeMode, ResizeParams};
    use crate::format::OpCode;
    use crate::writer::Builder;

    impl Builder {
        /// Add a resize: mode 0 nearest, 1 bilinear half-pixel, 2 bilinear align-corners
        /// ([`ResizeMode`]; another value makes [`Builder::finish`] fail validation).
        pub fn resize(&mut self, name: &str, x: u32, y: u32, mode: i32) {
            match ResizeMode::from_code(mode) {
                Some(mode) => self.resize_mode(name, x, y, mode),
                None => self.raw_op(OpCode::Resize, name, &[x], y, &[mode], 0),
            }
        }

        /// Add a resize with a typed mode.
        pub fn resize_mode(&mut self, name: &str, x: u32, y: u32, mode: ResizeMode) {
            self.op(OpCode::Resize, name, &[x], y, &ResizeParams { mode });
        }
    }
}
