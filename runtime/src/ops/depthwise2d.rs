//! Depthwise2d (code 2): depthwise 2-D convolution.
//!
//! Inputs: x (NHWC), w (`[KH, KW, C]`), bias, mult, shift. Params: [`ConvParams`] with
//! groups = C. Emitted by `Builder::conv2d` (in `conv2d.rs`) when `groups == C == O`.

use super::check::dims4;
use super::exec::{i8s, i8s_mut, range};
use super::window::{check_conv, check_conv_out, conv_geom, ConvParams};
use super::{no_scratch, regions, Check, Exec, OpDef};
use crate::error::LoadError;
use crate::format::{DType, Layout};
use temper_kernels::reference as r;
use temper_kernels::OutQuant;

pub(crate) const DEF: OpDef = OpDef { validate, scratch: no_scratch, run };

fn validate(c: &Check<'_, '_>) -> Result<(), LoadError> {
    let (w, groups, x) = check_conv(c, 5)?;
    check_conv_out(c, &w, x)?;
    let (_, _, _, ch) = dims4(x);
    let yc = c.y.dims[3] as usize;
    let ins = c.ins;
    if groups != ch || yc != ch {
        return Err(c.err("depthwise requires groups = in channels = out channels"));
    }
    let wt = c.cst(ins[1], DType::I8, Layout::Plain)?;
    if wt.rank != 3 || wt.dims[0] as usize != w[0] || wt.dims[1] as usize != w[1] || wt.dims[2] as usize != ch {
        return Err(c.err("depthwise weights must be [KH, KW, C]"));
    }
    c.bias(ins[2], ch)?;
    c.requant(ins[3], ins[4], ch)?;
    if c.m.const_i8(ins[1]).contains(&-128) {
        return Err(c.err("weights must lie in -127..=127 (symmetric int8)"));
    }
    Ok(())
}

fn run(e: &mut Exec<'_, '_>) {
    let p: ConvParams = e.params();
    let (x, y) = (e.input(0), e.output());
    let (weights, bias, mult, shift) = (e.const_i8(1), e.const_i32(2), e.const_i32(3), e.const_i32(4));
    let [xin, out] = regions(&mut *e.arena, [range(&x), range(&y)]);
    let args = r::conv::DepthwiseArgs {
        geom: conv_geom(&p, x.dims, y.dims),
        input: i8s(xin),
        input_zp: x.zero_point,
        weights,
        bias,
        q: OutQuant { mult, shift, zero_point: y.zero_point, min: p.clamp.0, max: p.clamp.1 },
    };
    let out = i8s_mut(out);
    #[cfg(feature = "std")]
    if let Some(t) = e.threads.as_deref_mut() {
        if t.depthwise(e.k, &args, &mut *out) {
            return;
        }
    }
    (e.k.depthwise2d)(&args, out);
}
