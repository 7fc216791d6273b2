//! Transpose (code 11): 4-D transpose, `y.dims[d] = x.dims[perm[d]]`.
//!
//! Input: x (NHWC, same quantization as the output). Params: [`TransposeParams`].

use super::exec::in_out;
use super::{no_scratch, Check, Exec, OpDef, OpParams};
use crate::error::LoadError;
use crate::format::OP_PARAMS;
use temper_kernels::reference as r;

pub(crate) const DEF: OpDef = OpDef { validate, scratch: no_scratch, run };

/// Parameters of Transpose: `perm[4]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransposeParams {
    /// Output axis `d` is input axis `perm[d]`.
    pub perm: [usize; 4],
}

impl OpParams for TransposeParams {
    fn encode(&self) -> [i32; OP_PARAMS] {
        let mut p = [0; OP_PARAMS];
        p[..4].copy_from_slice(&self.perm.map(|v| v as i32));
        p
    }
    fn decode(p: &[i32; OP_PARAMS]) -> Self {
        TransposeParams { perm: [p[0], p[1], p[2], p[3]].map(|v| v.clamp(0, 3) as usize) }
    }
}

fn validate(c: &Check<'_, '_>) -> Result<(), LoadError> {
    c.arity(1)?;
    let x = c.act(c.ins[0])?;
    c.nhwc(x)?;
    c.nhwc(c.y)?;
    c.same_q(x, c.y)?;
    let mut seen = [false; 4];
    for (d, &v) in c.p[..4].iter().enumerate() {
        if !(0..4).contains(&v) || seen[v as usize] || c.y.dims[d] != x.dims[v as usize] {
            return Err(c.err("transpose permutation invalid").with(d as i64, v as i64));
        }
        seen[v as usize] = true;
    }
    Ok(())
}

fn run(e: &mut Exec<'_, '_>) {
    let p: TransposeParams = e.params();
    let x = e.input(0);
    let dims = [x.dims[0] as usize, x.dims[1] as usize, x.dims[2] as usize, x.dims[3] as usize];
    let (xin, out) = in_out(e);
    r::transpose::transpose4(xin, dims, p.perm, out);
}

#[cfg(feature = "writer")]
mod build {
    use super::TransposeParams;
    use crate::format::OpCode;
    use crate::writer::Builder;

    impl Builder {
        /// Add a 4-D transpose: `y.dims[d] = x.dims[perm[d]]`.
        pub fn transpose(&mut self, name: &str, x: u32, y: u32, perm: [usize; 4]) {
            self.op(OpCode::Transpose, name, &[x], y, &TransposeParams { perm });
        }
    }
}
