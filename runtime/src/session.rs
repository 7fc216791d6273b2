//! Heap-free execution of a validated model in a caller-given arena.

use crate::error::RunError;
use crate::format::{InputKind, OpCode};
use crate::model::{pad4, Model, TensorView};
use core::ops::Range;
use temper_kernels::dispatch::{self, Kernels};
use temper_kernels::reference as r;
use temper_kernels::requant;
use temper_kernels::{Gemm, Nhwc, OutQuant};

/// One inference context: a model, an arena, and the kernel table chosen at creation.
///
/// `run` performs no heap allocation. A `Model` can be shared by many sessions on many threads
/// (it is `Sync`); each session owns its arena.
pub struct Session<'m, 'a> {
    model: &'m Model<'m>,
    arena: &'a mut [u8],
    kernels: &'static Kernels,
    inputs_set: u64,
    #[cfg(feature = "std")]
    threads: Option<crate::threads::Threads>,
}

impl core::fmt::Debug for Session<'_, '_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "Session(model {:?}, arena {} bytes, kernels {}, threads {})",
            self.model.name(),
            self.arena.len(),
            self.kernels.level,
            self.threads()
        )
    }
}

fn nhwc(t: &TensorView<'_>) -> Nhwc {
    Nhwc::new(t.dims[0] as usize, t.dims[1] as usize, t.dims[2] as usize, t.dims[3] as usize)
}

fn nhwc_padded(m: &Model<'_>, id: u32) -> Nhwc {
    let t = m.tensor(id);
    let rec_dims = {
        let mut d = [1u32; 4];
        let rank = t.dims.len().min(4);
        d[4 - rank..].copy_from_slice(&t.dims[t.dims.len() - rank..]);
        d
    };
    let _ = pad4;
    Nhwc::new(rec_dims[0] as usize, rec_dims[1] as usize, rec_dims[2] as usize, rec_dims[3] as usize)
}

/// Split `arena` into `N` disjoint mutable regions (the plan guarantees they do not overlap;
/// the loader checked it). Safe code: successive `split_at_mut` in offset order.
fn regions<const N: usize>(arena: &mut [u8], ranges: [Range<usize>; N]) -> [&mut [u8]; N] {
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

fn i8s(b: &[u8]) -> &[i8] {
    bytemuck::cast_slice(b)
}
fn i8s_mut(b: &mut [u8]) -> &mut [i8] {
    bytemuck::cast_slice_mut(b)
}

impl<'m, 'a> Session<'m, 'a> {
    /// Create a session with the best kernels for this CPU (honouring `TEMPER_KERNELS` under std).
    pub fn new(model: &'m Model<'m>, arena: &'a mut [u8]) -> Result<Self, RunError> {
        Self::with_kernels(model, arena, dispatch::detect())
    }

    /// Create a session with an explicit kernel table (tests, benchmarks, forced levels).
    pub fn with_kernels(model: &'m Model<'m>, arena: &'a mut [u8], kernels: &'static Kernels) -> Result<Self, RunError> {
        if arena.len() < model.arena_size() {
            return Err(RunError::ArenaTooSmall { needed: model.arena_size(), given: arena.len() });
        }
        Ok(Session {
            model,
            arena,
            kernels,
            inputs_set: 0,
            #[cfg(feature = "std")]
            threads: None,
        })
    }

    /// Spread large layers over `threads` threads in all: this one and `threads − 1` workers,
    /// started here and stopped when the session is dropped; 0 or 1 (the default): this thread
    /// only. At most [`crate::threads::MAX_THREADS`]. Outputs are bit-identical whatever the
    /// count; layers too small to gain from it still run on one thread. Batch-1 latency is the
    /// target: parts are bands of output rows. Idle workers sleep (no spinning).
    ///
    /// # Errors
    /// [`RunError::ThreadsUnavailable`] when the operating system refuses to start the threads.
    #[cfg(feature = "std")]
    pub fn with_threads(mut self, threads: usize) -> Result<Self, RunError> {
        self.set_threads(threads)?;
        Ok(self)
    }

    /// [`Session::with_threads`] on an existing session (the previous workers are stopped
    /// first; the split threshold goes back to its default).
    ///
    /// # Errors
    /// [`RunError::ThreadsUnavailable`] (the session then runs on one thread).
    #[cfg(feature = "std")]
    pub fn set_threads(&mut self, threads: usize) -> Result<(), RunError> {
        self.threads = None;
        if threads >= 2 {
            let m = self.model;
            let scratch = (0..m.op_count()).map(|i| m.op(i).scratch_len).max().unwrap_or(0);
            self.threads = Some(crate::threads::Threads::new(threads, scratch).map_err(|_| RunError::ThreadsUnavailable { threads })?);
        }
        Ok(())
    }

    /// Split layers only into parts of at least `macs` multiply-accumulates each (default
    /// [`crate::threads::MIN_WORK_PER_PART`]; 1 splits every splittable layer, as tests do).
    /// No effect without [`Session::with_threads`].
    #[cfg(feature = "std")]
    pub fn set_min_work_per_part(&mut self, macs: usize) {
        if let Some(t) = self.threads.as_mut() {
            t.min_work = macs.max(1);
        }
    }

    /// Threads this session runs on (1 unless [`Session::with_threads`] asked for more).
    pub fn threads(&self) -> usize {
        #[cfg(feature = "std")]
        if let Some(t) = &self.threads {
            return t.count();
        }
        1
    }

    /// The kernel table in use.
    pub fn kernels(&self) -> &'static Kernels {
        self.kernels
    }

    /// The model.
    pub fn model(&self) -> &'m Model<'m> {
        self.model
    }

    fn input_view(&self, index: usize) -> Result<TensorView<'m>, RunError> {
        let id = *self.model.graph_inputs().get(index).ok_or(RunError::NoSuchTensor { index })?;
        Ok(self.model.tensor(id))
    }

    fn output_view(&self, index: usize) -> Result<TensorView<'m>, RunError> {
        let id = *self.model.graph_outputs().get(index).ok_or(RunError::NoSuchTensor { index })?;
        Ok(self.model.tensor(id))
    }

    fn input_slot(&mut self, index: usize, n: usize) -> Result<&mut [i8], RunError> {
        let t = self.input_view(index)?;
        if n != t.numel() {
            return Err(RunError::WrongLength { expected: t.numel(), given: n });
        }
        if index < 64 {
            self.inputs_set |= 1 << index;
        }
        Ok(i8s_mut(&mut self.arena[t.offset..t.offset + t.len]))
    }

    /// Set graph input `index` from already-quantized int8 values (NHWC for 4-D inputs).
    pub fn set_input_i8(&mut self, index: usize, data: &[i8]) -> Result<(), RunError> {
        self.input_slot(index, data.len())?.copy_from_slice(data);
        Ok(())
    }

    /// Set graph input `index` from real values, quantized with the input's scale and zero point.
    pub fn set_input_f32(&mut self, index: usize, data: &[f32]) -> Result<(), RunError> {
        let t = self.input_view(index)?;
        let dst = self.input_slot(index, data.len())?;
        r::quantize::quantize_f32(data, t.scale, t.zero_point, dst);
        Ok(())
    }

    /// Set graph input `index` from raw u8 pixels (NHWC), applying the normalization folded into
    /// the model (`(pixel · pixel_scale − mean[c]) / std[c]`, then quantization).
    pub fn set_input_u8(&mut self, index: usize, pixels: &[u8]) -> Result<(), RunError> {
        let t = self.input_view(index)?;
        let rec = match self.model.input_record(t.id) {
            Some(rec) if rec.kind == InputKind::Pixels as u32 => *rec,
            _ => return Err(RunError::NotPixelInput { index }),
        };
        let c = rec.channels as usize;
        let mut luts = [[0i8; 256]; 4];
        for (ch, lut) in luts.iter_mut().enumerate().take(c) {
            for (p, v) in lut.iter_mut().enumerate() {
                let x = (p as f32 * rec.pixel_scale - rec.mean[ch]) / rec.std[ch];
                *v = requant::quantize_f32(x, t.scale, t.zero_point);
            }
        }
        let dst = self.input_slot(index, pixels.len())?;
        r::quantize::map_u8(pixels, &luts[..c], c, dst);
        Ok(())
    }

    /// Quantized output `index` (valid after `run`).
    pub fn output_i8(&self, index: usize) -> Result<&[i8], RunError> {
        let t = self.output_view(index)?;
        Ok(i8s(&self.arena[t.offset..t.offset + t.len]))
    }

    /// Dequantized output `index` written into `out` (valid after `run`).
    pub fn output_f32(&self, index: usize, out: &mut [f32]) -> Result<(), RunError> {
        let t = self.output_view(index)?;
        if out.len() != t.numel() {
            return Err(RunError::WrongLength { expected: t.numel(), given: out.len() });
        }
        r::quantize::dequantize(i8s(&self.arena[t.offset..t.offset + t.len]), t.scale, t.zero_point, out);
        Ok(())
    }

    /// Run every op in order. No heap allocation.
    pub fn run(&mut self) -> Result<(), RunError> {
        let n_in = self.model.graph_inputs().len();
        for i in 0..n_in.min(64) {
            if self.inputs_set & (1 << i) == 0 {
                return Err(RunError::InputNotSet { index: i });
            }
        }
        for i in 0..self.model.op_count() {
            self.run_op(i);
        }
        Ok(())
    }

    /// Run op `index` alone (per-op profiling): ops read what earlier ops wrote, so call it for
    /// `0..op_count()` in order after the inputs are set. Out-of-range indices do nothing.
    pub fn run_single(&mut self, index: usize) {
        if index < self.model.op_count() {
            self.run_op(index);
        }
    }

    fn run_op(&mut self, index: usize) {
        let m = self.model;
        let k = self.kernels;
        let op = m.op(index);
        let p = op.params;
        let y = m.tensor(op.outputs[0]);
        let yr = y.offset..y.offset + y.len;
        let x = m.tensor(op.inputs[0]);
        let xr = x.offset..x.offset + x.len;
        let arena = &mut *self.arena;
        match op.code {
            OpCode::Conv2d => {
                let sr = op.scratch_off..op.scratch_off + op.scratch_len;
                let [xin, out, scratch] = regions(arena, [xr, yr, sr]);
                let args = r::conv::ConvArgs {
                    geom: m.conv_geom(index),
                    input: i8s(xin),
                    input_zp: x.zero_point,
                    weights: m.const_i8(op.inputs[1]),
                    bias: m.const_i32(op.inputs[2]),
                    bias_u8: m.const_i32(op.inputs[3]),
                    q: OutQuant {
                        mult: m.const_i32(op.inputs[4]),
                        shift: m.const_i32(op.inputs[5]),
                        zero_point: y.zero_point,
                        min: p[11],
                        max: p[12],
                    },
                };
                let (out, scratch) = (i8s_mut(out), i8s_mut(scratch));
                #[cfg(feature = "std")]
                if let Some(t) = self.threads.as_mut() {
                    if t.conv(k, &args, &mut *out, &mut *scratch) {
                        return;
                    }
                }
                (k.conv2d)(&args, out, scratch);
            }
            OpCode::Depthwise2d => {
                let [xin, out] = regions(arena, [xr, yr]);
                let args = r::conv::DepthwiseArgs {
                    geom: m.conv_geom(index),
                    input: i8s(xin),
                    input_zp: x.zero_point,
                    weights: m.const_i8(op.inputs[1]),
                    bias: m.const_i32(op.inputs[2]),
                    q: OutQuant {
                        mult: m.const_i32(op.inputs[3]),
                        shift: m.const_i32(op.inputs[4]),
                        zero_point: y.zero_point,
                        min: p[11],
                        max: p[12],
                    },
                };
                let out = i8s_mut(out);
                #[cfg(feature = "std")]
                if let Some(t) = self.threads.as_mut() {
                    if t.depthwise(k, &args, &mut *out) {
                        return;
                    }
                }
                (k.depthwise2d)(&args, out);
            }
            OpCode::ConvTranspose2d => {
                let [xin, out] = regions(arena, [xr, yr]);
                let args = r::conv_transpose::ConvTransposeArgs {
                    geom: m.conv_geom(index),
                    input: i8s(xin),
                    input_zp: x.zero_point,
                    weights: m.const_i8(op.inputs[1]),
                    bias: m.const_i32(op.inputs[2]),
                    q: OutQuant {
                        mult: m.const_i32(op.inputs[3]),
                        shift: m.const_i32(op.inputs[4]),
                        zero_point: y.zero_point,
                        min: p[11],
                        max: p[12],
                    },
                };
                r::conv_transpose::conv_transpose2d(&args, i8s_mut(out));
            }
            OpCode::FullyConnected => {
                let w = m.tensor(op.inputs[1]);
                let (n, kk) = (w.dims[1] as usize, w.dims[2] as usize);
                let [xin, out] = regions(arena, [xr, yr]);
                let g = Gemm {
                    m: x.numel() / kk,
                    n,
                    k: kk,
                    a: i8s(xin),
                    lda: kk,
                    b: m.const_i8(op.inputs[1]),
                    bias: m.const_i32(op.inputs[2]),
                    bias_u8: m.const_i32(op.inputs[3]),
                    q: OutQuant {
                        mult: m.const_i32(op.inputs[4]),
                        shift: m.const_i32(op.inputs[5]),
                        zero_point: y.zero_point,
                        min: p[0],
                        max: p[1],
                    },
                };
                let out = i8s_mut(out);
                #[cfg(feature = "std")]
                if let Some(t) = self.threads.as_mut() {
                    if t.gemm(k, &g, &mut *out, n) {
                        return;
                    }
                }
                (k.gemm)(&g, out, n);
            }
            OpCode::Add | OpCode::Mul => {
                let b = m.tensor(op.inputs[1]);
                let br = b.offset..b.offset + b.len;
                let (a_shape, b_shape, out_shape) = (nhwc_padded(m, x.id), nhwc_padded(m, b.id), nhwc_padded(m, y.id));
                if xr == br {
                    // x ⊕ x: the same tensor twice.
                    let [xin, out] = regions(arena, [xr, yr]);
                    let xin: &[i8] = i8s(xin);
                    eltwise(k, op.code, p, xin, a_shape, x.zero_point, xin, b_shape, b.zero_point, out_shape, y.zero_point, i8s_mut(out));
                } else {
                    let [xin, bin, out] = regions(arena, [xr, br, yr]);
                    eltwise(
                        k,
                        op.code,
                        p,
                        i8s(xin),
                        a_shape,
                        x.zero_point,
                        i8s(bin),
                        b_shape,
                        b.zero_point,
                        out_shape,
                        y.zero_point,
                        i8s_mut(out),
                    );
                }
            }
            OpCode::MaxPool => {
                let [xin, out] = regions(arena, [xr, yr]);
                (k.max_pool)(&m.conv_geom(index), i8s(xin), i8s_mut(out), p[10], p[11]);
            }
            OpCode::AvgPool => {
                let [xin, out] = regions(arena, [xr, yr]);
                let mut geom = m.conv_geom(index);
                // AvgPool params: kh kw sh sw pt pl pb pr cip mult shift min max (no dilation).
                geom.dh = 1;
                geom.dw = 1;
                geom.pad_top = p[4] as usize;
                geom.pad_left = p[5] as usize;
                let args = r::pool::AvgPoolArgs {
                    geom,
                    count_include_pad: p[8] != 0,
                    input_zp: x.zero_point,
                    mult: p[9],
                    shift: p[10],
                    out_zp: y.zero_point,
                    min: p[11],
                    max: p[12],
                };
                (k.avg_pool)(&args, i8s(xin), i8s_mut(out));
            }
            OpCode::Lut => {
                let [xin, out] = regions(arena, [xr, yr]);
                let t = m.const_i8(op.inputs[1]);
                let table: &[i8; 256] = t.try_into().unwrap_or(&[0; 256]);
                r::lut::lut(i8s(xin), table, i8s_mut(out));
            }
            OpCode::Concat => {
                let n = op.inputs.len() - 1;
                let table = m.const_i32(op.inputs[n]);
                let axis = p[0] as usize;
                let out_shape = nhwc(&y);
                let mut offset = 0usize;
                for (j, &id) in op.inputs[..n].iter().enumerate() {
                    let xi = m.tensor(id);
                    let shape = nhwc(&xi);
                    let [xin, out] = regions(&mut *arena, [xi.offset..xi.offset + xi.len, yr.clone()]);
                    let (mult, shift) = (table[2 * j], table[2 * j + 1]);
                    let rescale = if mult == 0 && shift == 0 {
                        None
                    } else {
                        Some(r::concat::Rescale { in_zp: xi.zero_point, mult, shift, out_zp: y.zero_point })
                    };
                    r::concat::concat_one(i8s(xin), shape, axis, offset, i8s_mut(out), out_shape, rescale);
                    offset += [shape.n, shape.h, shape.w, shape.c][axis];
                }
            }
            OpCode::Reshape => {
                let [xin, out] = regions(arena, [xr, yr]);
                out.copy_from_slice(xin);
            }
            OpCode::Transpose => {
                let [xin, out] = regions(arena, [xr, yr]);
                let d = |t: &TensorView<'_>| [t.dims[0] as usize, t.dims[1] as usize, t.dims[2] as usize, t.dims[3] as usize];
                let perm = [p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize];
                r::transpose::transpose4(i8s(xin), d(&x), perm, i8s_mut(out));
            }
            OpCode::Pad => {
                let [xin, out] = regions(arena, [xr, yr]);
                let begin = [p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize];
                r::pad::pad(i8s(xin), nhwc(&x), i8s_mut(out), nhwc(&y), begin, x.zero_point as i8);
            }
            OpCode::Resize => {
                let [xin, out] = regions(arena, [xr, yr]);
                match p[0] {
                    0 => r::resize::resize_nearest(i8s(xin), nhwc(&x), i8s_mut(out), nhwc(&y)),
                    mode => r::resize::resize_bilinear(i8s(xin), nhwc(&x), i8s_mut(out), nhwc(&y), mode == 2, x.zero_point),
                }
            }
            OpCode::Softmax => {
                let cols = *x.dims.last().unwrap_or(&1) as usize;
                let rows = x.numel() / cols.max(1);
                let [xin, out] = regions(arena, [xr, yr]);
                let t = m.const_i32(op.inputs[1]);
                let tu: &[u32] = bytemuck::cast_slice(t);
                let table: &[u32; 256] = tu.try_into().unwrap_or(&[0; 256]);
                r::softmax::softmax(i8s(xin), rows, cols, table, i8s_mut(out));
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn eltwise(
    k: &Kernels,
    code: OpCode,
    p: &[i32; 16],
    a: &[i8],
    a_shape: Nhwc,
    a_zp: i32,
    b: &[i8],
    b_shape: Nhwc,
    b_zp: i32,
    out_shape: Nhwc,
    out_zp: i32,
    out: &mut [i8],
) {
    if code == OpCode::Add {
        let args = r::eltwise::AddArgs {
            a,
            a_shape,
            a_zp,
            a_mult: p[0],
            b,
            b_shape,
            b_zp,
            b_mult: p[1],
            shift: p[2],
            out_shape,
            out_zp,
            min: p[3],
            max: p[4],
        };
        (k.add)(&args, out);
    } else {
        let args =
            r::eltwise::MulArgs { a, a_shape, a_zp, b, b_shape, b_zp, mult: p[0], shift: p[1], out_shape, out_zp, min: p[2], max: p[3] };
        (k.mul)(&args, out);
    }
}
