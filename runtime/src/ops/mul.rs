//! Mul (code 5): elementwise multiply with numpy broadcasting (rank ≤ 4).
//!
//! Inputs: a, b. Params: [`MulParams`]: `y = clamp(z_y + requant((a − z_a)·(b − z_b)))`.

use super::exec::{binary, nhwc_padded};
use super::{no_scratch, Check, Exec, OpDef, OpParams};
use crate::error::LoadError;
use crate::format::OP_PARAMS;
use temper_kernels::reference as r;
use temper_kernels::requant;

pub(crate) const DEF: OpDef = OpDef { validate, scratch: no_scratch, run };

/// Parameters of Mul: `mult shift min max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MulParams {
    /// Requantization multiplier.
    pub mult: i32,
    /// Requantization shift.
    pub shift: i32,
    /// Clamp `(min, max)` in the output's quantized domain.
    pub clamp: (i32, i32),
}

impl OpParams for MulParams {
    fn encode(&self) -> [i32; OP_PARAMS] {
        let mut p = [0; OP_PARAMS];
        p[..4].copy_from_slice(&[self.mult, self.shift, self.clamp.0, self.clamp.1]);
        p
    }
    fn decode(p: &[i32; OP_PARAMS]) -> Self {
        MulParams { mult: p[0], shift: p[1], clamp: (p[2], p[3]) }
    }
}

fn validate(c: &Check<'_, '_>) -> Result<(), LoadError> {
    c.arity(2)?;
    let (a, b) = (c.act(c.ins[0])?, c.act(c.ins[1])?);
    c.broadcast(a, b)?;
    let p: MulParams = c.params();
    if !requant::is_valid(p.mult, p.shift) {
        return Err(c.err("mul multiplier/shift invalid").with(p.mult as i64, p.shift as i64));
    }
    c.clamp(p.clamp.0, p.clamp.1)
}

fn run(e: &mut Exec<'_, '_>) {
    let p: MulParams = e.params();
    let (k, a, b, y) = (e.k, e.input(0), e.input(1), e.output());
    let (ain, bin, out) = binary(e);
    let args = r::eltwise::MulArgs {
        a: ain,
        a_shape: nhwc_padded(&a),
        a_zp: a.zero_point,
        b: bin,
        b_shape: nhwc_padded(&b),
        b_zp: b.zero_point,
        mult: p.mult,
        shift: p.shift,
        out_shape: nhwc_padded(&y),
        out_zp: y.zero_point,
        min: p.clamp.0,
        max: p.clamp.1,
    };
    (k.mul)(&args, out);
}

#[cfg(feature = "writer")]
mod build {
    use super::MulParams;
    use crate::format::OpCode;
    use crate::writer::{BuildError, Builder};
    use alloc::format;
    use temper_kernels::requant::quantize_multiplier;

    impl Builder {
        /// Add an elementwise multiply with broadcasting.
        pub fn mul(&mut self, name: &str, a: u32, b: u32, y: u32, clamp: (i32, i32)) -> Result<(), BuildError> {
            let (qa, qb, qy) = (self.qparams(a), self.qparams(b), self.qparams(y));
            let r = qa.scale as f64 * qb.scale as f64 / qy.scale as f64;
            let (mult, shift) = quantize_multiplier(r).ok_or_else(|| BuildError(format!("{name}: mul scale {r} cannot be encoded")))?;
            self.op(OpCode::Mul, name, &[a, b], y, &MulParams { mult, shift, clamp });
            Ok(())
        }
    }
}
