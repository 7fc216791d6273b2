//! Add (code 4): elementwise add with numpy broadcasting (rank ≤ 4).
//!
//! Inputs: a, b. Params: [`AddParams`]:
//! `y = clamp(z_y + ((a − z_a)·a_mult + (b − z_b)·b_mult + 2^(shift−1)) >> shift)` in i64.

use super::exec::{binary, nhwc_padded};
use super::{no_scratch, Check, Exec, OpDef, OpParams};
use crate::error::LoadError;
use crate::format::OP_PARAMS;
use temper_kernels::reference as r;

pub(crate) const DEF: OpDef = OpDef { validate, scratch: no_scratch, run };

/// Parameters of Add: `a_mult b_mult shift min max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddParams {
    /// Multiplier of `a − z_a`.
    pub a_mult: i32,
    /// Multiplier of `b − z_b`.
    pub b_mult: i32,
    /// Right shift, 1..=62.
    pub shift: i32,
    /// Clamp `(min, max)` in the output's quantized domain.
    pub clamp: (i32, i32),
}

impl OpParams for AddParams {
    fn encode(&self) -> [i32; OP_PARAMS] {
        let mut p = [0; OP_PARAMS];
        p[..5].copy_from_slice(&[self.a_mult, self.b_mult, self.shift, self.clamp.0, self.clamp.1]);
        p
    }
    fn decode(p: &[i32; OP_PARAMS]) -> Self {
        AddParams { a_mult: p[0], b_mult: p[1], shift: p[2], clamp: (p[3], p[4]) }
    }
}

fn validate(c: &Check<'_, '_>) -> Result<(), LoadError> {
    c.arity(2)?;
    let (a, b) = (c.act(c.ins[0])?, c.act(c.ins[1])?);
    c.broadcast(a, b)?;
    let p: AddParams = c.params();
    if !(1..=62).contains(&p.shift) {
        return Err(c.err("add shift out of range").with(p.shift as i64, 62));
    }
    c.clamp(p.clamp.0, p.clamp.1)
}

fn run(e: &mut Exec<'_, '_>) {
    let p: AddParams = e.params();
    let (k, a, b, y) = (e.k, e.input(0), e.input(1), e.output());
    let (ain, bin, out) = binary(e);
    let args = r::eltwise::AddArgs {
        a: ain,
        a_shape: nhwc_padded(&a),
        a_zp: a.zero_point,
        a_mult: p.a_mult,
        b: bin,
        b_shape: nhwc_padded(&b),
        b_zp: b.zero_point,
        b_mult: p.b_mult,
        shift: p.shift,
        out_shape: nhwc_padded(&y),
        out_zp: y.zero_point,
        min: p.clamp.0,
        max: p.clamp.1,
    };
    (k.add)(&args, out);
}

#[cfg(feature = "writer")]
mod build {
    use super::AddParams;
    use crate::format::OpCode;
    use crate::writer::{err, BuildError, Builder};
    use alloc::format;
    use temper_kernels::requant::{quantize_multiplier, round_half_away};

    impl Builder {
        /// Add an elementwise add `y = clamp(a + b)` with broadcasting.
        pub fn add(&mut self, name: &str, a: u32, b: u32, y: u32, clamp: (i32, i32)) -> Result<(), BuildError> {
            let (qa, qb, qy) = (self.qparams(a), self.qparams(b), self.qparams(y));
            let ra = qa.scale as f64 / qy.scale as f64;
            let rb = qb.scale as f64 / qy.scale as f64;
            let big = ra.max(rb);
            let (_, s) = quantize_multiplier(big).ok_or_else(|| BuildError(format!("{name}: add scale ratio {big} cannot be encoded")))?;
            let enc = |r: f64| round_half_away(r * (1u64 << s) as f64) as i64;
            let (ma, mb) = (enc(ra), enc(rb));
            if ma > i32::MAX as i64 || mb > i32::MAX as i64 {
                return err(format!("{name}: add multipliers overflow"));
            }
            self.op(OpCode::Add, name, &[a, b], y, &AddParams { a_mult: ma as i32, b_mult: mb as i32, shift: s, clamp });
            Ok(())
        }
    }
}
