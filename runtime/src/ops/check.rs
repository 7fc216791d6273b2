//! The load-time view of one op record that each op's `validate` receives, with the checks
//! several ops share (arity, input kinds, clamps, requantization vectors, packed weights).

use super::OpParams;
use crate::error::{LoadError, LoadErrorKind as K, Location};
use crate::format::{DType, Layout, Storage, TensorRecord, OP_PARAMS};
use crate::model::Model;
use temper_kernels::{pack, requant};

/// One op record under validation. The loader has already checked the op code, the name, that
/// every id is in range and that there is exactly one output, an arena tensor.
pub(crate) struct Check<'c, 'a> {
    /// The model (its tensors are validated; its ops are being validated in order).
    pub m: &'c Model<'a>,
    /// Where errors point.
    pub at: Location,
    /// Input tensor ids.
    pub ins: &'a [u32],
    /// The output tensor.
    pub y: &'a TensorRecord,
    /// Raw parameters.
    pub p: &'a [i32; OP_PARAMS],
}

/// Element count of a (validated) tensor record.
pub(crate) fn numel(r: &TensorRecord) -> usize {
    r.dims[..r.rank as usize].iter().map(|&d| d as usize).product()
}

/// The four dims of a rank-4 record.
pub(crate) fn dims4(r: &TensorRecord) -> (usize, usize, usize, usize) {
    (r.dims[0] as usize, r.dims[1] as usize, r.dims[2] as usize, r.dims[3] as usize)
}

/// Dims right-aligned into 4 (leading 1s), as numpy broadcasting does.
pub(crate) fn pad4(r: &TensorRecord) -> [u32; 4] {
    let rank = r.rank as usize;
    let mut d = [1u32; 4];
    for k in 0..rank.min(4) {
        d[4 - rank.min(4) + k] = r.dims[k];
    }
    d
}

impl<'a> Check<'_, 'a> {
    /// An invalid-model error at this op.
    pub fn err(&self, what: &'static str) -> LoadError {
        LoadError::new(K::Invalid, what, self.at)
    }

    /// The typed parameters (their values not yet checked).
    pub fn params<P: OpParams>(&self) -> P {
        P::decode(self.p)
    }

    /// A tensor record by id (ids were checked by the loader).
    pub fn rec(&self, id: u32) -> &'a TensorRecord {
        self.m.rec(id)
    }

    /// Exactly `n` inputs.
    pub fn arity(&self, n: usize) -> Result<(), LoadError> {
        if self.ins.len() != n {
            return Err(self.err("wrong number of inputs").with(self.ins.len() as i64, n as i64));
        }
        Ok(())
    }

    /// Input `id` is an activation (arena tensor).
    pub fn act(&self, id: u32) -> Result<&'a TensorRecord, LoadError> {
        let r = self.rec(id);
        if r.storage != Storage::Arena as u32 {
            return Err(self.err("input must be an activation").with(id as i64, 0));
        }
        Ok(r)
    }

    /// Input `id` is a constant of this dtype and layout.
    pub fn cst(&self, id: u32, dt: DType, layout: Layout) -> Result<&'a TensorRecord, LoadError> {
        let r = self.rec(id);
        if r.storage != Storage::Constant as u32 || r.dtype != dt as u32 || r.layout != layout as u32 {
            return Err(self.err("constant input of the wrong kind").with(id as i64, dt as i64));
        }
        Ok(r)
    }

    /// A fused-activation clamp `[lo, hi]` within int8.
    pub fn clamp(&self, lo: i32, hi: i32) -> Result<(), LoadError> {
        if !(-128..=127).contains(&lo) || !(-128..=127).contains(&hi) || lo > hi {
            return Err(self.err("activation clamp range invalid").with(lo as i64, hi as i64));
        }
        Ok(())
    }

    /// `a` and `b` have the same quantization.
    pub fn same_q(&self, a: &TensorRecord, b: &TensorRecord) -> Result<(), LoadError> {
        if a.scale != b.scale || a.zero_point != b.zero_point {
            return Err(self.err("op requires identical input/output quantization"));
        }
        Ok(())
    }

    /// `r` is a 4-D (NHWC) activation.
    pub fn nhwc(&self, r: &TensorRecord) -> Result<(), LoadError> {
        if r.rank != 4 {
            return Err(self.err("expected a 4-D NHWC activation").with(r.rank as i64, 4));
        }
        Ok(())
    }

    /// Window parameters `p[base..base + 10]` (kh kw sh sw dh dw pt pl pb pr): the first six in
    /// 1..=4096, the pads in 0..=4096.
    pub fn window(&self, base: usize) -> Result<[usize; 10], LoadError> {
        let mut w = [0usize; 10];
        for (k, slot) in w.iter_mut().enumerate() {
            let v = self.p[base + k];
            let lo = if k < 6 { 1 } else { 0 };
            if v < lo || v > 4096 {
                return Err(self.err("window parameter out of range").with(v as i64, (base + k) as i64));
            }
            *slot = v as usize;
        }
        Ok(w)
    }

    /// Shapes `a` and `b` (rank ≤ 4) broadcast to the output, numpy style.
    pub fn broadcast(&self, a: &TensorRecord, b: &TensorRecord) -> Result<(), LoadError> {
        let y = self.y;
        for r in [a, b, y] {
            if r.rank > 4 {
                return Err(self.err("elementwise ops take rank ≤ 4"));
            }
        }
        let (ya, yb, yo) = (pad4(a), pad4(b), pad4(y));
        for d in 0..4 {
            let ok = |v: u32| v == yo[d] || v == 1;
            if !ok(ya[d]) || !ok(yb[d]) || yo[d] != ya[d].max(yb[d]) {
                return Err(self.err("shapes do not broadcast to the output").with(d as i64, yo[d] as i64));
            }
        }
        Ok(())
    }

    /// A bias: constant i32 vector of `n` values.
    pub fn bias(&self, id: u32, n: usize) -> Result<(), LoadError> {
        let r = self.rec(id);
        if r.storage != Storage::Constant as u32 || r.dtype != DType::I32 as u32 || numel(r) != n {
            return Err(self.err("bias must be a constant i32 vector with one value per output channel").with(id as i64, n as i64));
        }
        Ok(())
    }

    /// Requantization multipliers and shifts: constant i32, per tensor or `n` per channel,
    /// every pair valid.
    pub fn requant(&self, mid: u32, sid: u32, n: usize) -> Result<(), LoadError> {
        let (m, s) = (self.rec(mid), self.rec(sid));
        for r in [m, s] {
            let len = numel(r);
            if r.storage != Storage::Constant as u32 || r.dtype != DType::I32 as u32 || (len != 1 && len != n) {
                return Err(self.err("requantization multipliers/shifts must be constant i32, per tensor or per channel"));
            }
        }
        let (mv, sv) = (self.m.const_i32(mid), self.m.const_i32(sid));
        if mv.len() != sv.len() {
            return Err(self.err("multiplier and shift counts differ"));
        }
        for (k, (&mm, &ss)) in mv.iter().zip(sv).enumerate() {
            if !requant::is_valid(mm, ss) {
                return Err(self.err("requantization multiplier or shift out of range").with(k as i64, mm as i64));
            }
        }
        Ok(())
    }

    /// Packed weights: padding is zero, values lie in −127..=127, and `bias_u8[c]` equals
    /// `bias[c] − 128 · Σ_k w[c][k]` (wrapping), so that every kernel path — signed or unsigned
    /// activations — computes the same accumulators. One pass over the weights, no heap.
    pub fn packed(&self, wid: u32, bias: u32, bias_u8: u32) -> Result<(), LoadError> {
        let r = self.rec(wid);
        let (groups, n, k) = (r.dims[0] as usize, r.dims[1] as usize, r.dims[2] as usize);
        let w = self.m.const_i8(wid);
        let (b, bu) = (self.m.const_i32(bias), self.m.const_i32(bias_u8));
        let k4 = k.div_ceil(pack::KR);
        let block = k4 * pack::NR * pack::KR;
        let per = pack::packed_len(n, k).unwrap_or(0);
        for g in 0..groups {
            for nb in 0..n.div_ceil(pack::NR) {
                let mut sums = [0i32; pack::NR];
                let base = g * per + nb * block;
                for (i, &v) in w[base..base + block].iter().enumerate() {
                    let lane = (i / pack::KR) % pack::NR;
                    let kk = (i / (pack::NR * pack::KR)) * pack::KR + i % pack::KR;
                    let ch = nb * pack::NR + lane;
                    if ch >= n || kk >= k {
                        if v != 0 {
                            return Err(self.err("packed weight padding is not zero").with((base + i) as i64, 0));
                        }
                    } else if v == -128 {
                        return Err(self.err("weights must lie in -127..=127 (symmetric int8)").with((base + i) as i64, 0));
                    } else {
                        sums[lane] += v as i32;
                    }
                }
                for (lane, &s) in sums.iter().enumerate() {
                    let ch = nb * pack::NR + lane;
                    if ch < n {
                        let c = g * n + ch;
                        if bu[c] != b[c].wrapping_sub(128i32.wrapping_mul(s)) {
                            return Err(self.err("bias_u8 inconsistent with bias and weights").with(c as i64, 0));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
