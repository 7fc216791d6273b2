//! FullyConnected (code 3): `y [.., N] = x [.., K] · wᵀ`, GEMM-packed weights.
//!
//! Inputs: x, w (packed `[1, N, K]`), bias, bias_u8, mult, shift. Params: [`FcParams`].

use super::check::numel;
use super::exec::{i8s, i8s_mut, range};
use super::{no_scratch, regions, Check, Exec, OpDef, OpParams};
use crate::error::LoadError;
use crate::format::{DType, Layout, OP_PARAMS};
use temper_kernels::{Gemm, OutQuant};

pub(crate) const DEF: OpDef = OpDef { validate, scratch: no_scratch, run };

/// Parameters of FullyConnected: `min max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FcParams {
    /// Fused-activation clamp `(min, max)` in the output's quantized domain.
    pub clamp: (i32, i32),
}

impl OpParams for FcParams {
    fn encode(&self) -> [i32; OP_PARAMS] {
        let mut p = [0; OP_PARAMS];
        p[0] = self.clamp.0;
        p[1] = self.clamp.1;
        p
    }
    fn decode(p: &[i32; OP_PARAMS]) -> Self {
        FcParams { clamp: (p[0], p[1]) }
    }
}

fn validate(c: &Check<'_, '_>) -> Result<(), LoadError> {
    c.arity(6)?;
    c.clamp(c.p[0], c.p[1])?;
    let (ins, y) = (c.ins, c.y);
    let x = c.act(ins[0])?;
    let wt = c.cst(ins[1], DType::I8, Layout::Packed)?;
    let (nn, k) = (wt.dims[1] as usize, wt.dims[2] as usize);
    let xk = x.dims[x.rank as usize - 1] as usize;
    let m = numel(x) / xk.max(1);
    if wt.dims[0] != 1 || xk != k || numel(y) != m * nn || y.dims[y.rank as usize - 1] as usize != nn {
        return Err(c.err("fully connected shapes inconsistent (x [.., K], w [1, N, K], y [.., N])").with(xk as i64, k as i64));
    }
    c.bias(ins[2], nn)?;
    c.bias(ins[3], nn)?;
    c.requant(ins[4], ins[5], nn)?;
    c.packed(ins[1], ins[2], ins[3])
}

fn run(e: &mut Exec<'_, '_>) {
    let p: FcParams = e.params();
    let (x, y, w) = (e.input(0), e.output(), e.input(1));
    let (n, kk) = (w.dims[1] as usize, w.dims[2] as usize);
    let (b, bias, bias_u8, mult, shift) = (e.const_i8(1), e.const_i32(2), e.const_i32(3), e.const_i32(4), e.const_i32(5));
    let [xin, out] = regions(&mut *e.arena, [range(&x), range(&y)]);
    let g = Gemm {
        m: x.numel() / kk,
        n,
        k: kk,
        a: i8s(xin),
        lda: kk,
        b,
        bias,
        bias_u8,
        q: OutQuant { mult, shift, zero_point: y.zero_point, min: p.clamp.0, max: p.clamp.1 },
    };
    let out = i8s_mut(out);
    #[cfg(feature = "std")]
    if let Some(t) = e.threads.as_deref_mut() {
        if t.gemm(e.k, &g, &mut *out, n) {
            return;
        }
    }
    (e.k.gemm)(&g, out, n);
}

#[cfg(feature = "writer")]
mod build {
    use super::FcParams;
    use crate::format::{Layout, OpCode};
    use crate::writer::{err, BuildError, Builder, QWeights};
    use alloc::format;
    use alloc::vec;
    use alloc::vec::Vec;
    use temper_kernels::pack;

    impl Builder {
        /// Add a fully connected layer: `x [.., K]`, weights `[N][K]`, output `y [.., N]`.
        pub fn fully_connected(&mut self, name: &str, x: u32, y: u32, w: QWeights<'_>, clamp: (i32, i32)) -> Result<(), BuildError> {
            let k = *self.dims(x).last().unwrap_or(&0);
            let n = *self.dims(y).last().unwrap_or(&0);
            if k == 0 || w.data.len() != n * k || w.scales.len() != n || w.bias.len() != n {
                return err(format!(
                    "{name}: weights {} / scales {} / bias {} do not match N={n}, K={k}",
                    w.data.len(),
                    w.scales.len(),
                    w.bias.len()
                ));
            }
            let (xq, yq) = (self.qparams(x), self.qparams(y));
            let wsum: Vec<i32> = (0..n).map(|j| w.data[j * k..(j + 1) * k].iter().map(|&v| v as i32).sum()).collect();
            let bias: Vec<i32> = (0..n).map(|j| w.bias[j].wrapping_sub(xq.zero_point.wrapping_mul(wsum[j]))).collect();
            let bias_u8: Vec<i32> = (0..n).map(|j| bias[j].wrapping_sub(128i32.wrapping_mul(wsum[j]))).collect();
            let per = pack::packed_len(n, k).ok_or_else(|| BuildError(format!("{name}: weights too large")))?;
            let mut packed = vec![0i8; per];
            pack::pack_into(w.data, n, k, &mut packed);
            let wid = self.const_i8(&format!("{name}.weights"), &[1, n, k], Layout::Packed, &packed, w.scales, 1);
            let b = self.const_i32(&format!("{name}.bias"), &[n], &bias);
            let bu = self.const_i32(&format!("{name}.bias_u8"), &[n], &bias_u8);
            let (mult, shift) = self.requant_vecs(name, xq.scale, w.scales, yq.scale)?;
            self.op(OpCode::FullyConnected, name, &[x, wid, b, bu, mult, shift], y, &FcParams { clamp });
            Ok(())
        }
    }
}
