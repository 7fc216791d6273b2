//! 1-D convolution and pooling over sequences `[N, C, L]` (sensor windows), mapped onto the 2-D
//! ops with `H = 1`: the input is reshaped to `[N, C, 1, L]`, the 2-D op runs with a `1 × K`
//! window, and its `[N, C', 1, L']` result is reshaped back to `[N, C', L']` under the node's
//! output name. The reshape pairs between consecutive 1-D ops (and the elementwise ops between
//! them) are removed by [`crate::passes::sink_reshapes`], so a 1-D network runs as a 2-D one
//! everywhere after import: FP32 engine, calibration, lowering and runtime.

use super::{Ctx, Importer, MAX_WINDOW, R};
use crate::ir::{Activation, Op, TensorId, Window};

impl Importer<'_, '_> {
    /// The `[N, C, 1, L]` view of a `[N, C, L]` tensor (folded when `x` is a constant).
    fn lift_1d(&mut self, ctx: &Ctx<'_, '_>, x: TensorId, what: &str) -> R<TensorId> {
        let s = self.shape(x);
        let [n, c, l] = s[..] else {
            return Err(ctx.invalid(format!("1-D {what} expects a 3-D tensor, got {s:?}")));
        };
        let name = format!("{}__2d", self.g.tensors[x].name);
        self.emit_node(ctx, &format!("{what}_as_2d"), Op::Reshape, vec![x], &name, Some(vec![n, c, 1, l]))
    }

    /// Emit `op` on the lifted inputs and bind the node's output to its `[N, C, L]` form.
    fn emit_1d(&mut self, ctx: &Ctx<'_, '_>, op: Op, inputs: Vec<TensorId>) -> R<()> {
        let out_name = self.output_name(ctx, 0)?;
        let y = self.emit_node(ctx, "2d", op, inputs, &format!("{out_name}__2d"), None)?;
        let [n, c, 1, l] = self.shape(y)[..] else {
            return Err(ctx.invalid(format!("1-D op produced shape {:?}", self.shape(y))));
        };
        self.emit_shaped(ctx, Op::Reshape, vec![y], Some(vec![n, c, l]))
    }

    /// Stride, padding and dilation attributes of a 1-D op over length `l` as a `1 × kernel`
    /// 2-D window.
    fn window_1d(&self, ctx: &Ctx<'_, '_>, l: usize, kernel: usize) -> R<Window> {
        let one = |name: &str, default: usize| -> R<usize> {
            match ctx.ints(name)? {
                None => Ok(default),
                Some(v) if v.len() == 1 && (1..=MAX_WINDOW).contains(&v[0]) => Ok(v[0] as usize),
                Some(v) => Err(ctx.unsupported(name, format!("{v:?}: a 1-D op needs one value in 1..={MAX_WINDOW}"))),
            }
        };
        let (stride, dilation) = (one("strides", 1)?, one("dilations", 1)?);
        let auto_pad = ctx.string("auto_pad", "NOTSET")?;
        let (begin, end) = match auto_pad.as_str() {
            "NOTSET" | "" => match ctx.ints("pads")? {
                None => (0, 0),
                Some(p) if p.len() == 2 && p.iter().all(|&d| (0..=MAX_WINDOW).contains(&d)) => (p[0] as usize, p[1] as usize),
                Some(p) => return Err(ctx.unsupported("pads", format!("{p:?}: a 1-D op needs 2 values in 0..={MAX_WINDOW}"))),
            },
            "VALID" => (0, 0),
            "SAME_UPPER" | "SAME_LOWER" => {
                let out = l.div_ceil(stride);
                let span = dilation * (kernel.max(1) - 1) + 1;
                let total = ((out.max(1) - 1) * stride + span).saturating_sub(l);
                let (small, big) = (total / 2, total - total / 2);
                if auto_pad == "SAME_UPPER" {
                    (small, big)
                } else {
                    (big, small)
                }
            }
            other => return Err(ctx.unsupported("auto_pad", format!("unknown value '{other}'"))),
        };
        Ok(Window { kernel: [1, kernel], stride: [1, stride], pads: [0, begin, 0, end], dilation: [1, dilation] })
    }

    /// `Conv` with a 3-D input `[N, C, L]` and weight `[O, C/group, K]`.
    pub(super) fn conv_1d(&mut self, ctx: &Ctx<'_, '_>, x: TensorId, w: TensorId, b: Option<TensorId>) -> R<()> {
        let (xs, ws) = (self.shape(x), self.shape(w));
        if let Some(k) = ctx.ints("kernel_shape")? {
            if k.len() != 1 || k[0] as usize != ws[2] {
                return Err(ctx.invalid(format!("kernel_shape {k:?} does not match weight {ws:?}")));
            }
        }
        let group = ctx.int("group", 1)?;
        if group < 1 {
            return Err(ctx.invalid(format!("group {group}")));
        }
        let window = self.window_1d(ctx, xs[2], ws[2])?;
        let x2 = self.lift_1d(ctx, x, "input")?;
        let w2 = self.lift_1d(ctx, w, "weight")?;
        let mut ins = vec![x2, w2];
        ins.extend(b);
        self.emit_1d(ctx, Op::Conv { window, group: group as usize, act: Activation::None }, ins)
    }

    /// `MaxPool` / `AveragePool` over `[N, C, L]`.
    pub(super) fn pool_1d(&mut self, ctx: &Ctx<'_, '_>, x: TensorId) -> R<()> {
        let k = ctx.ints("kernel_shape")?.ok_or_else(|| ctx.invalid("missing kernel_shape"))?;
        if k.len() != 1 || !(1..=MAX_WINDOW).contains(&k[0]) {
            return Err(ctx.unsupported("kernel_shape", format!("{k:?}: a 1-D pool needs one value in 1..={MAX_WINDOW}")));
        }
        let window = self.window_1d(ctx, self.shape(x)[2], k[0] as usize)?;
        let ceil_mode = ctx.int("ceil_mode", 0)? != 0;
        let op = if ctx.op() == "MaxPool" {
            Op::MaxPool { window, ceil_mode }
        } else {
            Op::AvgPool { window, ceil_mode, count_include_pad: ctx.int("count_include_pad", 0)? != 0 }
        };
        let x2 = self.lift_1d(ctx, x, "input")?;
        self.emit_1d(ctx, op, vec![x2])
    }

    /// `GlobalAveragePool` / `GlobalMaxPool` over `[N, C, L]` → `[N, C, 1]`.
    pub(super) fn global_pool_1d(&mut self, ctx: &Ctx<'_, '_>, x: TensorId) -> R<()> {
        let l = self.shape(x)[2];
        let op = if ctx.op() == "GlobalMaxPool" {
            Op::MaxPool { window: Window { kernel: [1, l], stride: [1, 1], pads: [0; 4], dilation: [1, 1] }, ceil_mode: false }
        } else {
            Op::GlobalAvgPool
        };
        let x2 = self.lift_1d(ctx, x, "input")?;
        self.emit_1d(ctx, op, vec![x2])
    }
}
