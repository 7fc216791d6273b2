//! Conv2d (code 1): grouped 2-D convolution with GEMM-packed weights.
//!
//! Inputs: x (NHWC), w (packed `[g, O/g, KH·KW·C/g]`), bias, bias_u8, mult, shift.
//! Params: [`ConvParams`]. Scratch: [`temper_kernels::dispatch::conv_scratch_len`].

use super::check::dims4;
use super::exec::{i8s, i8s_mut, range};
use super::window::{check_conv, check_conv_out, conv_geom, ConvParams};
use super::{regions, Check, Exec, OpDef, OpParams};
use crate::error::LoadError;
use crate::format::{DType, Layout, OP_PARAMS};
use temper_kernels::reference as r;
use temper_kernels::OutQuant;

pub(crate) const DEF: OpDef = OpDef { validate, scratch, run };

fn validate(c: &Check<'_, '_>) -> Result<(), LoadError> {
    let (w, groups, x) = check_conv(c, 6)?;
    check_conv_out(c, &w, x)?;
    let (_, _, _, ch) = dims4(x);
    let yc = c.y.dims[3] as usize;
    let ins = c.ins;
    let wt = c.cst(ins[1], DType::I8, Layout::Packed)?;
    let k = w[0] * w[1] * (ch / groups);
    if wt.dims[0] as usize != groups || wt.dims[1] as usize != yc / groups || wt.dims[2] as usize != k {
        return Err(c.err("packed conv weights must be [groups, O/groups, KH·KW·C/groups]"));
    }
    c.bias(ins[2], yc)?;
    c.bias(ins[3], yc)?;
    c.requant(ins[4], ins[5], yc)?;
    c.packed(ins[1], ins[2], ins[3])
}

fn scratch(p: &[i32; OP_PARAMS], x: &[u32], y: &[u32]) -> usize {
    if x.len() != 4 || y.len() != 4 {
        return 0;
    }
    temper_kernels::dispatch::conv_scratch_len(&conv_geom(&ConvParams::decode(p), x, y))
}

fn run(e: &mut Exec<'_, '_>) {
    let p: ConvParams = e.params();
    let (x, y) = (e.input(0), e.output());
    let (weights, bias, bias_u8, mult, shift) = (e.const_i8(1), e.const_i32(2), e.const_i32(3), e.const_i32(4), e.const_i32(5));
    let ranges = [range(&x), range(&y), e.scratch()];
    let [xin, out, scratch] = regions(&mut *e.arena, ranges);
    let args = r::conv::ConvArgs {
        geom: conv_geom(&p, x.dims, y.dims),
        input: i8s(xin),
        input_zp: x.zero_point,
        weights,
        bias,
        bias_u8,
        q: OutQuant { mult, shift, zero_point: y.zero_point, min: p.clamp.0, max: p.clamp.1 },
    };
    let (out, scratch) = (i8s_mut(out), i8s_mut(scratch));
    #[cfg(feature = "std")]
    if let Some(t) = e.threads.as_deref_mut() {
        if t.conv(e.k, &args, &mut *out, &mut *scratch) {
            return;
        }
    }
    (e.k.conv2d)(&args, out, scratch);
}

#[cfg(feature = "writer")]
mod build {
    use super::ConvParams;
    use crate::format::{Layout, OpCode};
    use crate::writer::{err, BuildError, Builder, QWeights, Window};
    use alloc::format;
    use alloc::vec;
    use alloc::vec::Vec;
    use temper_kernels::pack;

    impl Builder {
        /// Add a convolution (dense, grouped or depthwise — depthwise when `groups == C == O`).
        /// Output `y` must already exist with the right shape. Returns nothing; errors name the op.
        #[allow(clippy::too_many_arguments)]
        pub fn conv2d(
            &mut self,
            name: &str,
            x: u32,
            y: u32,
            win: Window,
            groups: usize,
            w: QWeights<'_>,
            clamp: (i32, i32),
        ) -> Result<(), BuildError> {
            let (xd, yd) = (self.dims(x).to_vec(), self.dims(y).to_vec());
            if xd.len() != 4 || yd.len() != 4 {
                return err(format!("{name}: conv needs NHWC activations"));
            }
            let (c, o) = (xd[3], yd[3]);
            if groups == 0 || c % groups != 0 || o % groups != 0 {
                return err(format!("{name}: channels {c}/{o} not divisible by groups {groups}"));
            }
            let (xq, yq) = (self.qparams(x), self.qparams(y));
            let (kh, kw) = (win.kernel[0], win.kernel[1]);
            let k = kh * kw * (c / groups);
            if w.data.len() != o * k || w.scales.len() != o || w.bias.len() != o {
                return err(format!(
                    "{name}: weights {} / scales {} / bias {} do not match O={o}, K={k}",
                    w.data.len(),
                    w.scales.len(),
                    w.bias.len()
                ));
            }
            let wsum: Vec<i32> = (0..o).map(|oc| w.data[oc * k..(oc + 1) * k].iter().map(|&v| v as i32).sum()).collect();
            let bias: Vec<i32> = (0..o).map(|oc| w.bias[oc].wrapping_sub(xq.zero_point.wrapping_mul(wsum[oc]))).collect();
            let params = ConvParams { window: win, groups, clamp };
            let (mult, shift) = self.requant_vecs(name, xq.scale, w.scales, yq.scale)?;
            let bias_id = self.const_i32(&format!("{name}.bias"), &[o], &bias);
            if groups == c && groups == o && groups > 1 {
                // Depthwise: weights [O][KH][KW][1] → [KH][KW][C].
                let mut dw = vec![0i8; kh * kw * c];
                for ch in 0..c {
                    for t in 0..kh * kw {
                        dw[t * c + ch] = w.data[ch * kh * kw + t];
                    }
                }
                let wid = self.const_i8(&format!("{name}.weights"), &[kh, kw, c], Layout::Plain, &dw, w.scales, 2);
                self.op(OpCode::Depthwise2d, name, &[x, wid, bias_id, mult, shift], y, &params);
            } else {
                let cog = o / groups;
                let per = pack::packed_len(cog, k).ok_or_else(|| BuildError(format!("{name}: weights too large")))?;
                let mut packed = vec![0i8; per * groups];
                for g in 0..groups {
                    pack::pack_into(&w.data[g * cog * k..(g + 1) * cog * k], cog, k, &mut packed[g * per..(g + 1) * per]);
                }
                let wid = self.const_i8(&format!("{name}.weights"), &[groups, cog, k], Layout::Packed, &packed, w.scales, 1);
                let bias_u8: Vec<i32> = (0..o).map(|oc| bias[oc].wrapping_sub(128i32.wrapping_mul(wsum[oc]))).collect();
                let bu = self.const_i32(&format!("{name}.bias_u8"), &[o], &bias_u8);
                self.op(OpCode::Conv2d, name, &[x, wid, bias_id, bu, mult, shift], y, &params);
            }
            Ok(())
        }
    }
}
