//! ConvTranspose2d (code 14): transposed 2-D convolution.
//!
//! Inputs: x (NHWC), w (`[O, KH, KW, C/g]`), bias (raw), mult, shift. Params: [`ConvParams`].

use super::check::dims4;
use super::exec::{i8s, i8s_mut, range};
use super::window::{check_conv, conv_geom, ConvParams};
use super::{no_scratch, regions, Check, Exec, OpDef};
use crate::error::LoadError;
use crate::format::{DType, Layout};
use temper_kernels::reference as r;
use temper_kernels::OutQuant;

pub(crate) const DEF: OpDef = OpDef { validate, scratch: no_scratch, run };

fn validate(c: &Check<'_, '_>) -> Result<(), LoadError> {
    let (w, groups, x) = check_conv(c, 5)?;
    let (_, h, wd, ch) = dims4(x);
    let (_, yh, yw, yc) = dims4(c.y);
    let base = (h - 1).saturating_mul(w[2]).saturating_add(w[4] * (w[0] - 1) + 1);
    let basew = (wd - 1).saturating_mul(w[3]).saturating_add(w[5] * (w[1] - 1) + 1);
    let ok_h = base.saturating_sub(w[6] + w[8]);
    let ok_w = basew.saturating_sub(w[7] + w[9]);
    if ok_h == 0 || ok_w == 0 || yh < ok_h || yh >= ok_h + w[2] || yw < ok_w || yw >= ok_w + w[3] {
        return Err(c.err("output shape inconsistent with transposed-conv parameters").with(yh as i64, ok_h as i64));
    }
    let ins = c.ins;
    let wt = c.cst(ins[1], DType::I8, Layout::Plain)?;
    if wt.rank != 4 || dims4(wt) != (yc, w[0], w[1], ch / groups) {
        return Err(c.err("transposed-conv weights must be [O, KH, KW, C/groups]"));
    }
    c.bias(ins[2], yc)?;
    c.requant(ins[3], ins[4], yc)
}

fn run(e: &mut Exec<'_, '_>) {
    let p: ConvParams = e.params();
    let (x, y) = (e.input(0), e.output());
    let (weights, bias, mult, shift) = (e.const_i8(1), e.const_i32(2), e.const_i32(3), e.const_i32(4));
    let [xin, out] = regions(&mut *e.arena, [range(&x), range(&y)]);
    let args = r::conv_transpose::ConvTransposeArgs {
        geom: conv_geom(&p, x.dims, y.dims),
        input: i8s(xin),
        input_zp: x.zero_point,
        weights,
        bias,
        q: OutQuant { mult, shift, zero_point: y.zero_point, min: p.clamp.0, max: p.clamp.1 },
    };
    r::conv_transpose::conv_transpose2d(&args, i8s_mut(out));
}

#[cfg(feature = "writer")]
mod build {
    use super::ConvParams;
    use crate::format::{Layout, OpCode};
    use crate::writer::{err, BuildError, Builder, QWeights, Window};
    use alloc::format;

    impl Builder {
        /// Add a transposed convolution; weights `[O][KH][KW][C/groups]`, raw bias.
        #[allow(clippy::too_many_arguments)]
        pub fn conv_transpose2d(
            &mut self,
            name: &str,
            x: u32,
            y: u32,
            win: Window,
            groups: usize,
            w: QWeights<'_>,
            clamp: (i32, i32),
        ) -> Result<(), BuildError> {
            let c = self.dims(x)[3];
            let o = self.dims(y)[3];
            let (kh, kw) = (win.kernel[0], win.kernel[1]);
            if groups == 0
                || !c.is_multiple_of(groups)
                || w.data.len() != o * kh * kw * (c / groups)
                || w.scales.len() != o
                || w.bias.len() != o
            {
                return err(format!("{name}: transposed-conv weights do not match"));
            }
            let (xq, yq) = (self.qparams(x), self.qparams(y));
            let wid = self.const_i8(&format!("{name}.weights"), &[o, kh, kw, c / groups], Layout::Plain, w.data, w.scales, 0);
            let b = self.const_i32(&format!("{name}.bias"), &[o], w.bias);
            let (mult, shift) = self.requant_vecs(name, xq.scale, w.scales, yq.scale)?;
            self.op(OpCode::ConvTranspose2d, name, &[x, wid, b, mult, shift], y, &ConvParams { window: win, groups, clamp });
            Ok(())
        }
    }
}
