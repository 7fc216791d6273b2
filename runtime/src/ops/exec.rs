//! The run-time view of one validated op that each op's `run` receives: the model, the op, the
//! kernel table, the arena (and, under std, the session's threads).

use super::OpParams;
use crate::model::{Model, OpView, TensorView};
use core::ops::Range;
use temper_kernels::{Kernels, Nhwc};

/// One validated op about to run.
pub(crate) struct Exec<'e, 'm> {
    /// The model.
    pub m: &'m Model<'m>,
    /// The op.
    pub op: OpView<'m>,
    /// The session's kernel table.
    pub k: &'static Kernels,
    /// The whole arena.
    pub arena: &'e mut [u8],
    /// The session's worker threads, if any.
    #[cfg(feature = "std")]
    pub threads: Option<&'e mut crate::threads::Threads>,
}

impl<'m> Exec<'_, 'm> {
    /// The typed parameters.
    pub fn params<P: OpParams>(&self) -> P {
        P::decode(self.op.params)
    }
    /// Input `i`.
    pub fn input(&self, i: usize) -> TensorView<'m> {
        self.m.tensor(self.op.inputs[i])
    }
    /// The output.
    pub fn output(&self) -> TensorView<'m> {
        self.m.tensor(self.op.outputs[0])
    }
    /// The op's scratch range in the arena.
    pub fn scratch(&self) -> Range<usize> {
        self.op.scratch_off..self.op.scratch_off + self.op.scratch_len
    }
    /// Constant i8 input `i`.
    pub fn const_i8(&self, i: usize) -> &'m [i8] {
        self.m.const_i8(self.op.inputs[i])
    }
    /// Constant i32 input `i`.
    pub fn const_i32(&self, i: usize) -> &'m [i32] {
        self.m.const_i32(self.op.inputs[i])
    }
}

/// Arena byte range of a tensor.
pub(crate) fn range(t: &TensorView<'_>) -> Range<usize> {
    t.offset..t.offset + t.len
}

/// Shape of a 4-D tensor.
pub(crate) fn nhwc(t: &TensorView<'_>) -> Nhwc {
    Nhwc::new(t.dims[0] as usize, t.dims[1] as usize, t.dims[2] as usize, t.dims[3] as usize)
}

/// Shape of a rank ≤ 4 tensor right-aligned into 4 dims (numpy broadcasting).
pub(crate) fn nhwc_padded(t: &TensorView<'_>) -> Nhwc {
    let mut d = [1u32; 4];
    let rank = t.dims.len().min(4);
    d[4 - rank..].copy_from_slice(&t.dims[t.dims.len() - rank..]);
    Nhwc::new(d[0] as usize, d[1] as usize, d[2] as usize, d[3] as usize)
}

/// Split `arena` into `N` disjoint mutable regions (the plan guarantees they do not overlap;
/// the loader checked it). Safe code: successive `split_at_mut` in offset order.
pub(crate) fn regions<const N: usize>(arena: &mut [u8], ranges: [Range<usize>; N]) -> [&mut [u8]; N] {
    let mut order: [usize; N] = core::array::from_fn(|i| i);
    order.sort_unstable_by_key(|&i| ranges[i].start);
    let mut out: [&mut [u8]; N] = core::array::from_fn(|_| <&mut [u8]>::default());
    let mut rest = arena;
    let mut base = 0usize;
    for &i in &order {
        let r = &ranges[i];
        if r.start == r.end {
            continue;
        }
        let tmp = core::mem::take(&mut rest);
        let (_, tail) = tmp.split_at_mut(r.start - base);
        let (mid, tail) = tail.split_at_mut(r.end - r.start);
        out[i] = mid;
        rest = tail;
        base = r.end;
    }
    out
}

/// Bytes as i8.
pub(crate) fn i8s(b: &[u8]) -> &[i8] {
    bytemuck::cast_slice(b)
}

/// Mutable bytes as i8.
pub(crate) fn i8s_mut(b: &mut [u8]) -> &mut [i8] {
    bytemuck::cast_slice_mut(b)
}

/// The common shape of single-input ops: the input's bytes and the output's bytes.
pub(crate) fn in_out<'b>(e: &'b mut Exec<'_, '_>) -> (&'b [i8], &'b mut [i8]) {
    let (x, y) = (e.input(0), e.output());
    let [xin, out] = regions(&mut *e.arena, [range(&x), range(&y)]);
    (i8s(xin), i8s_mut(out))
}

/// The common shape of two-input elementwise ops: both inputs' bytes (the same slice twice for
/// `x ⊕ x`) and the output's bytes.
pub(crate) fn binary<'b>(e: &'b mut Exec<'_, '_>) -> (&'b [i8], &'b [i8], &'b mut [i8]) {
    let (a, b, y) = (e.input(0), e.input(1), e.output());
    let (ar, br, yr) = (range(&a), range(&b), range(&y));
    if ar == br {
        let [xin, out] = regions(&mut *e.arena, [ar, yr]);
        let xin: &[i8] = i8s(xin);
        (xin, xin, i8s_mut(out))
    } else {
        let [ain, bin, out] = regions(&mut *e.arena, [ar, br, yr]);
        (i8s(ain), i8s(bin), i8s_mut(out))
    }
}
