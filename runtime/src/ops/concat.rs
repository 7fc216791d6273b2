//! Concat (code 9): concatenation along an NHWC axis, rescaling inputs whose quantization
//! differs from the output's.
//!
//! Inputs: x₀ … xₙ₋₁, rescale (i32 `[n, 2]`: mult, shift, or 0, 0 for a plain copy).
//! Params: [`ConcatParams`].

use super::check::{numel, pad4};
use super::exec::{i8s, i8s_mut, nhwc, range};
use super::{no_scratch, regions, Check, Exec, OpDef, OpParams};
use crate::error::LoadError;
use crate::format::{DType, Layout, OP_PARAMS};
use temper_kernels::reference as r;
use temper_kernels::requant;

pub(crate) const DEF: OpDef = OpDef { validate, scratch: no_scratch, run };

/// Parameters of Concat: `axis` (NHWC, 0..4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConcatParams {
    /// Axis.
    pub axis: usize,
}

impl OpParams for ConcatParams {
    fn encode(&self) -> [i32; OP_PARAMS] {
        let mut p = [0; OP_PARAMS];
        p[0] = self.axis as i32;
        p
    }
    fn decode(p: &[i32; OP_PARAMS]) -> Self {
        ConcatParams { axis: p[0].clamp(0, 3) as usize }
    }
}

fn validate(c: &Check<'_, '_>) -> Result<(), LoadError> {
    let ins = c.ins;
    if ins.len() < 2 {
        return Err(c.err("concat needs inputs and a rescale table"));
    }
    let n = ins.len() - 1;
    let table = c.cst(ins[n], DType::I32, Layout::Plain)?;
    if numel(table) != n * 2 {
        return Err(c.err("concat rescale table must be [inputs, 2]"));
    }
    let t = c.m.const_i32(ins[n]);
    for k in 0..n {
        let (m, s) = (t[2 * k], t[2 * k + 1]);
        if (m != 0 || s != 0) && !requant::is_valid(m, s) {
            return Err(c.err("concat rescale multiplier invalid").with(m as i64, s as i64));
        }
    }
    let axis = c.p[0];
    c.nhwc(c.y)?;
    if !(0..4).contains(&axis) {
        return Err(c.err("concat axis out of range").with(axis as i64, 3));
    }
    let yd = pad4(c.y);
    let mut sum = 0u64;
    for &id in &ins[..n] {
        let x = c.act(id)?;
        c.nhwc(x)?;
        let xd = pad4(x);
        for d in 0..4 {
            if d != axis as usize && xd[d] != yd[d] {
                return Err(c.err("concat inputs differ off the axis").with(d as i64, 0));
            }
        }
        sum += xd[axis as usize] as u64;
    }
    if sum != yd[axis as usize] as u64 {
        return Err(c.err("concat sizes do not add up").with(sum as i64, yd[axis as usize] as i64));
    }
    Ok(())
}

fn run(e: &mut Exec<'_, '_>) {
    let p: ConcatParams = e.params();
    let n = e.op.inputs.len() - 1;
    let table = e.const_i32(n);
    let y = e.output();
    let out_shape = nhwc(&y);
    let mut offset = 0usize;
    for j in 0..n {
        let xi = e.input(j);
        let shape = nhwc(&xi);
        let [xin, out] = regions(&mut *e.arena, [range(&xi), range(&y)]);
        let (mult, shift) = (table[2 * j], table[2 * j + 1]);
        let rescale = if mult == 0 && shift == 0 {
            None
        } else {
            Some(r::concat::Rescale { in_zp: xi.zero_point, mult, shift, out_zp: y.zero_point })
        };
        r::concat::concat_one(i8s(xin), shape, p.axis, offset, i8s_mut(out), out_shape, rescale);
        offset += [shape.n, shape.h, shape.w, shape.c][p.axis];
    }
}

#[cfg(feature = "writer")]
mod build {
    use super::ConcatParams;
    use crate::format::OpCode;
    use crate::writer::{BuildError, Builder};
    use alloc::format;
    use alloc::vec::Vec;
    use temper_kernels::requant::quantize_multiplier;

    impl Builder {
        /// Add concatenation along NHWC `axis`, rescaling inputs whose quantization differs.
        pub fn concat(&mut self, name: &str, xs: &[u32], y: u32, axis: usize) -> Result<(), BuildError> {
            let qy = self.qparams(y);
            let mut table = Vec::new();
            for &x in xs {
                let q = self.qparams(x);
                if q == qy {
                    table.extend([0, 0]);
                } else {
                    let (m, s) = quantize_multiplier(q.scale as f64 / qy.scale as f64)
                        .ok_or_else(|| BuildError(format!("{name}: rescale cannot be encoded")))?;
                    table.extend([m, s]);
                }
            }
            let t = self.const_i32(&format!("{name}.rescale"), &[xs.len(), 2], &table);
            let mut ins = xs.to_vec();
            ins.push(t);
            self.op(OpCode::Concat, name, &ins, y, &ConcatParams { axis });
            Ok(())
        }
    }
}
