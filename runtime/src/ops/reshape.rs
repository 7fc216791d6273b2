//! Reshape (code 10): Reshape / Flatten, a copy with the element order unchanged.
//!
//! Input: x (same quantization as the output, same element count). No params.

use super::check::numel;
use super::exec::in_out;
use super::{no_scratch, Check, Exec, OpDef};
use crate::error::LoadError;

pub(crate) const DEF: OpDef = OpDef { validate, scratch: no_scratch, run };

fn validate(c: &Check<'_, '_>) -> Result<(), LoadError> {
    c.arity(1)?;
    let x = c.act(c.ins[0])?;
    c.same_q(x, c.y)?;
    if numel(x) != numel(c.y) {
        return Err(c.err("reshape changes the element count"));
    }
    Ok(())
}

fn run(e: &mut Exec<'_, '_>) {
    let (xin, out) = in_out(e);
    out.copy_from_slice(xin);
}

#[cfg(feature = "writer")]
mod build {
    use super::super::NoParams;
    use crate::format::OpCode;
    use crate::writer::Builder;

    impl Builder {
        /// Add a reshape (element order unchanged).
        pub fn reshape(&mut self, name: &str, x: u32, y: u32) {
            self.op(OpCode::Reshape, name, &[x], y, &NoParams);
        }
    }
}
