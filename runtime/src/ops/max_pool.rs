//! MaxPool (code 6): max pooling, same quantization in and out.
//!
//! Input: x (NHWC). Params: [`MaxPoolParams`].

use super::exec::{in_out, nhwc};
use super::window::{check_pool_shape, Window};
use super::{no_scratch, Check, Exec, OpDef, OpParams};
use crate::error::LoadError;
use crate::format::OP_PARAMS;

pub(crate) const DEF: OpDef = OpDef { validate, scratch: no_scratch, run };

/// Parameters of MaxPool: `kh kw sh sw 1 1 pad_t pad_l pad_b pad_r min max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPoolParams {
    /// Window geometry (dilation 1).
    pub window: Window,
    /// Clamp `(min, max)` in the output's quantized domain.
    pub clamp: (i32, i32),
}

impl OpParams for MaxPoolParams {
    fn encode(&self) -> [i32; OP_PARAMS] {
        let mut p = [0; OP_PARAMS];
        p[..10].copy_from_slice(&self.window.encode());
        p[10] = self.clamp.0;
        p[11] = self.clamp.1;
        p
    }
    fn decode(p: &[i32; OP_PARAMS]) -> Self {
        MaxPoolParams { window: Window::decode(&p[..10]), clamp: (p[10], p[11]) }
    }
}

fn validate(c: &Check<'_, '_>) -> Result<(), LoadError> {
    c.arity(1)?;
    let x = c.act(c.ins[0])?;
    c.nhwc(x)?;
    c.nhwc(c.y)?;
    let w = c.window(0)?;
    c.clamp(c.p[10], c.p[11])?;
    c.same_q(x, c.y)?;
    if w[4] != 1 || w[5] != 1 {
        return Err(c.err("dilated pooling is not supported"));
    }
    check_pool_shape(c, x, [w[0], w[1], w[2], w[3], w[6], w[7], w[8], w[9]])
}

fn run(e: &mut Exec<'_, '_>) {
    let p: MaxPoolParams = e.params();
    let (k, x, y) = (e.k, e.input(0), e.output());
    let geom = p.window.geom(nhwc(&x), nhwc(&y), 1);
    let (xin, out) = in_out(e);
    (k.max_pool)(&geom, xin, out, p.clamp.0, p.clamp.1);
}

#[cfg(feature = "writer")]
mod build {
    use super::MaxPoolParams;
    use crate::format::OpCode;
    use crate::writer::{Builder, Window};

    impl Builder {
        /// Add max pooling (same quantization in and out).
        pub fn max_pool(&mut self, name: &str, x: u32, y: u32, win: Window, clamp: (i32, i32)) {
            self.op(OpCode::MaxPool, name, &[x], y, &MaxPoolParams { window: win, clamp });
        }
    }
}
