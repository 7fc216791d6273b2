//! ChannelAffine (code 16): per-channel affine map `y = x·a[c] + b[c]`, channel = last axis.
//!
//! Inputs: x (activation, rank 1..=4), mult, shift, offset (constant i32, one value per channel
//! each). Params: [`ChannelAffineParams`]. Per element of channel `c`:
//! `d = x − z_x` (negated when `mult[c] < 0`), `y = clamp(offset[c] + requant(d, |mult[c]|,
//! shift[c]))`. The writer computes `|mult|/shift ≈ |a|·s_x/s_y` and `offset = z_y + round(b/s_y)`.

use super::check::numel;
use super::exec::in_out;
use super::{no_scratch, Check, Exec, OpDef, OpParams};
use crate::error::LoadError;
use crate::format::{DType, Storage, OP_PARAMS};
use temper_kernels::reference as r;
use temper_kernels::reference::channel_affine::OFFSET_MAX;
use temper_kernels::requant;

pub(crate) const DEF: OpDef = OpDef { validate, scratch: no_scratch, run };

/// Parameters of ChannelAffine: `min max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelAffineParams {
    /// Clamp `(min, max)` in the output's quantized domain.
    pub clamp: (i32, i32),
}

impl OpParams for ChannelAffineParams {
    fn encode(&self) -> [i32; OP_PARAMS] {
        let mut p = [0; OP_PARAMS];
        p[0] = self.clamp.0;
        p[1] = self.clamp.1;
        p
    }
    fn decode(p: &[i32; OP_PARAMS]) -> Self {
        ChannelAffineParams { clamp: (p[0], p[1]) }
    }
}

fn validate(c: &Check<'_, '_>) -> Result<(), LoadError> {
    c.arity(4)?;
    c.clamp(c.p[0], c.p[1])?;
    let x = c.act(c.ins[0])?;
    let rank = x.rank as usize;
    if !(1..=4).contains(&rank) || c.y.rank != x.rank || c.y.dims[..rank] != x.dims[..rank] {
        return Err(c.err("channel affine output must have the input's shape (rank 1..=4)").with(rank as i64, c.y.rank as i64));
    }
    let ch = x.dims[rank - 1] as usize;
    if ch == 0 {
        return Err(c.err("channel affine needs at least one channel"));
    }
    for &id in &c.ins[1..] {
        let t = c.rec(id);
        if t.storage != Storage::Constant as u32 || t.dtype != DType::I32 as u32 || numel(t) != ch {
            return Err(c.err("channel affine mult/shift/offset must be constant i32 with one value per channel").with(id as i64, ch as i64));
        }
    }
    let (mult, shift, offset) = (c.m.const_i32(c.ins[1]), c.m.const_i32(c.ins[2]), c.m.const_i32(c.ins[3]));
    for k in 0..ch {
        let m = mult[k].checked_abs().unwrap_or(-1);
        if !requant::is_valid(m, shift[k]) {
            return Err(c.err("channel affine multiplier or shift out of range").with(k as i64, mult[k] as i64));
        }
        if !(-OFFSET_MAX..=OFFSET_MAX).contains(&offset[k]) {
            return Err(c.err("channel affine offset out of range").with(k as i64, offset[k] as i64));
        }
    }
    Ok(())
}

fn run(e: &mut Exec<'_, '_>) {
    let p: ChannelAffineParams = e.params();
    let x_zp = e.input(0).zero_point;
    let (mult, shift, offset) = (e.const_i32(1), e.const_i32(2), e.const_i32(3));
    let args = r::ChannelAffineArgs { x_zp, mult, shift, offset, min: p.clamp.0, max: p.clamp.1 };
    let (xin, out) = in_out(e);
    r::channel_affine(xin, &args, out);
}

#[cfg(feature = "writer")]
mod build {
    use super::{ChannelAffineParams, OFFSET_MAX};
    use crate::format::OpCode;
    use crate::writer::{err, BuildError, Builder};
    use alloc::format;
    use alloc::vec::Vec;
    use temper_kernels::requant::quantize_multiplier;

    impl Builder {
        /// Add a per-channel affine map `y = x·a[c] + b[c]` over the last axis of `x` (`a`, `b`:
        /// one real value per channel; `a` may be negative or zero).
        pub fn channel_affine(&mut self, name: &str, x: u32, y: u32, a: &[f32], b: &[f32], clamp: (i32, i32)) -> Result<(), BuildError> {
            let ch = *self.dims(x).last().unwrap_or(&0);
            if ch == 0 || a.len() != ch || b.len() != ch {
                return err(format!("{name}: {} scales / {} offsets for {ch} channels", a.len(), b.len()));
            }
            let (xq, yq) = (self.qparams(x), self.qparams(y));
            let (mut mult, mut shift, mut offset) = (Vec::with_capacity(ch), Vec::with_capacity(ch), Vec::with_capacity(ch));
            for k in 0..ch {
                if !a[k].is_finite() || !b[k].is_finite() {
                    return err(format!("{name}: channel {k}: scale {} / offset {} is not finite", a[k], b[k]));
                }
                let r = a[k].abs() as f64 * xq.scale as f64 / yq.scale as f64;
                let (m, s) = quantize_multiplier(r).ok_or_else(|| BuildError(format!("{name}: channel {k}: multiplier {r} cannot be encoded")))?;
                mult.push(if a[k] < 0.0 { -m } else { m });
                shift.push(s);
                let o = yq.zero_point as f64 + b[k] as f64 / yq.scale as f64;
                offset.push(o.round().clamp(-(OFFSET_MAX as f64), OFFSET_MAX as f64) as i32);
            }
            let m = self.const_i32(&format!("{name}.mult"), &[ch], &mult);
            let s = self.const_i32(&format!("{name}.shift"), &[ch], &shift);
            let o = self.const_i32(&format!("{name}.offset"), &[ch], &offset);
            self.op(OpCode::ChannelAffine, name, &[x, m, s, o], y, &ChannelAffineParams { clamp });
            Ok(())
        }
    }
}
