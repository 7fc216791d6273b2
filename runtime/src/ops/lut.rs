//! Lut (code 8): a 256-entry lookup table, `y = table[x + 128]` (HardSwish, Sigmoid, Tanh,
//! LeakyRelu, standalone clamps…).
//!
//! Inputs: x, table (i8 `[256]`). No params.

use super::check::numel;
use super::exec::in_out;
use super::{no_scratch, Check, Exec, OpDef};
use crate::error::LoadError;
use crate::format::{DType, Layout};
use temper_kernels::reference as r;

pub(crate) const DEF: OpDef = OpDef { validate, scratch: no_scratch, run };

fn validate(c: &Check<'_, '_>) -> Result<(), LoadError> {
    c.arity(2)?;
    let x = c.act(c.ins[0])?;
    let t = c.cst(c.ins[1], DType::I8, Layout::Plain)?;
    if numel(t) != 256 || numel(x) != numel(c.y) {
        return Err(c.err("lookup table must have 256 entries and output the input's size"));
    }
    Ok(())
}

fn run(e: &mut Exec<'_, '_>) {
    let table: &[i8; 256] = e.const_i8(1).try_into().unwrap_or(&[0; 256]);
    let (xin, out) = in_out(e);
    r::lut::lut(xin, table, out);
}

#[cfg(feature = "writer")]
mod build {
    use super::super::NoParams;
    use crate::format::{Layout, OpCode};
    use crate::writer::Builder;
    use alloc::format;

    impl Builder {
        /// Add a 256-entry lookup table op (index = q + 128).
        pub fn lut(&mut self, name: &str, x: u32, y: u32, table: &[i8; 256]) {
            let t = self.const_i8(&format!("{name}.table"), &[256], Layout::Plain, table, &[1.0], 0);
            self.op(OpCode::Lut, name, &[x, t], y, &NoParams);
        }
    }
}
