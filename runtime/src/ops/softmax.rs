//! Softmax (code 15): softmax over the last axis; the output has scale 1/256, zero point −128.
//!
//! Inputs: x, exp table (i32 `[256]`, Q16 of `exp(−d·β·s_x)`). No params.

use super::check::numel;
use super::exec::in_out;
use super::{no_scratch, Check, Exec, OpDef};
use crate::error::LoadError;
use crate::format::{DType, Layout};
use temper_kernels::reference as r;

pub(crate) const DEF: OpDef = OpDef { validate, scratch: no_scratch, run };

fn validate(c: &Check<'_, '_>) -> Result<(), LoadError> {
    c.arity(2)?;
    let (x, y) = (c.act(c.ins[0])?, c.y);
    let t = c.cst(c.ins[1], DType::I32, Layout::Plain)?;
    if numel(t) != 256 || x.dims != y.dims || x.rank != y.rank || y.zero_point != -128 || y.scale != 1.0 / 256.0 {
        return Err(c.err("softmax needs a 256-entry table, same shape, output scale 1/256 zero point -128"));
    }
    Ok(())
}

fn run(e: &mut Exec<'_, '_>) {
    let x = e.input(0);
    let cols = *x.dims.last().unwrap_or(&1) as usize;
    let rows = x.numel() / cols.max(1);
    let tu: &[u32] = bytemuck::cast_slice(e.const_i32(1));
    let table: &[u32; 256] = tu.try_into().unwrap_or(&[0; 256]);
    let (xin, out) = in_out(e);
    r::softmax::softmax(xin, rows, cols, table, out);
}

#[cfg(feature = "writer")]
mod build {
    use super::super::NoParams;
    use crate::format::OpCode;
    use crate::writer::Builder;
    use alloc::format;
    use alloc::vec::Vec;

    impl Builder {
        /// Add a softmax over the last axis; `y` must have scale 1/256 and zero point −128.
        pub fn softmax(&mut self, name: &str, x: u32, y: u32, table: &[u32; 256]) {
            let t: Vec<i32> = table.iter().map(|&v| v as i32).collect();
            let tid = self.const_i32(&format!("{name}.exp"), &[256], &t);
            self.op(OpCode::Softmax, name, &[x, tid], y, &NoParams);
        }
    }
}
