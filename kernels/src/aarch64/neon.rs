//! NEON baseline: exact requantization, the SMULL/SMLAL/SADALP GEMM micro-kernel and the
//! depthwise kernel shared by every aarch64 level.
//!
//! Two int8 products can overflow 16 bits only when both are `(-128)·(-128)`; the GEMM therefore
//! adds two products in 16 bits (`smull` + `smlal`, then `sadalp` into 32 bits) only when the
//! weights contain no `-128` (checked once per call, cheap next to the GEMM), and otherwise pairs
//! each `smull` with its own `sadalp`. The code is written for in-order cores (Cortex-A53): every
//! step has independent accumulators and no loop-carried 16-bit state.
//!
//! NEON is part of the target configuration (the parent module is only compiled with
//! `target_feature = "neon"`), which is what the `SAFETY` comments on NEON intrinsics rely on;
//! `unsafe fn`s additionally require the pointer bounds stated per function.

use crate::driver::{self, ChannelBlock};
use crate::params::{Gemm, OutQuant};
use crate::reference::conv::DepthwiseArgs;
use crate::reference::eltwise::AddArgs;
use core::arch::aarch64::*;

/// Requantization constants of 4 channels.
#[derive(Clone, Copy)]
pub(crate) struct Rq4 {
    m: int32x4_t,
    /// `-shift`, sign-extended to 64 bits (SRSHL by a negative amount is a rounding right shift).
    ns_lo: int64x2_t,
    ns_hi: int64x2_t,
}

impl Rq4 {
    /// # Safety
    /// `mult` and `shift` readable for 4 `i32`.
    #[inline(always)]
    pub(crate) unsafe fn load(mult: *const i32, shift: *const i32) -> Rq4 {
        // SAFETY: NEON is part of the target configuration (module cfg); 4 readable i32 at each
        // pointer per the contract.
        unsafe {
            let (m, s) = (vld1q_s32(mult), vld1q_s32(shift));
            let ns = vnegq_s32(s);
            Rq4 { m, ns_lo: vmovl_s32(vget_low_s32(ns)), ns_hi: vmovl_high_s32(ns) }
        }
    }
}

/// Output zero point and the clamp range shifted by it, broadcast: `clamp(x + zp, min, max)` is
/// computed as `clamp(x, min − zp, max − zp) + zp`, which cannot overflow for any i32 `x` (the
/// reference adds the zero point in 64 bits).
#[derive(Clone, Copy)]
pub(crate) struct OutC {
    zp: int32x4_t,
    /// `min − zp`.
    lo: int32x4_t,
    /// `max − zp`.
    hi: int32x4_t,
}

impl OutC {
    #[inline(always)]
    pub(crate) fn new(q: &OutQuant<'_>) -> OutC {
        // SAFETY: NEON is part of the target configuration (the module is compiled only with
        // `target_feature = "neon"`); register-only intrinsics.
        unsafe { OutC { zp: vdupq_n_s32(q.zero_point), lo: vdupq_n_s32(q.min - q.zero_point), hi: vdupq_n_s32(q.max - q.zero_point) } }
    }
}

/// Exact [`crate::requant::requantize`] of 4 accumulators, plus zero point and clamp.
///
/// `SRSHL` by `-s` computes `(p + 2^(s-1)) >> s` without intermediate overflow, `SQXTN`
/// saturates to i32: exactly the reference's 64-bit formula.
#[inline(always)]
pub(crate) fn requant4(acc: int32x4_t, rq: &Rq4, oc: &OutC) -> int32x4_t {
    // SAFETY: NEON is part of the target configuration (module cfg); register-only intrinsics.
    unsafe {
        let lo = vrshlq_s64(vmull_s32(vget_low_s32(acc), vget_low_s32(rq.m)), rq.ns_lo);
        let hi = vrshlq_s64(vmull_high_s32(acc, rq.m), rq.ns_hi);
        let v = vqmovn_high_s64(vqmovn_s64(lo), hi);
        vaddq_s32(vminq_s32(vmaxq_s32(v, oc.lo), oc.hi), oc.zp)
    }
}

/// Narrow 16 i32 lanes already in `[-128, 127]` to bytes, in order.
#[inline(always)]
pub(crate) fn pack16(v: [int32x4_t; 4]) -> int8x16_t {
    // SAFETY: NEON is part of the target configuration (module cfg); register-only intrinsics.
    unsafe {
        let a = vuzp1q_s16(vreinterpretq_s16_s32(v[0]), vreinterpretq_s16_s32(v[1]));
        let b = vuzp1q_s16(vreinterpretq_s16_s32(v[2]), vreinterpretq_s16_s32(v[3]));
        vuzp1q_s8(vreinterpretq_s8_s16(a), vreinterpretq_s8_s16(b))
    }
}

/// Store the first `min(valid, 16)` bytes of `v`.
///
/// # Safety
/// `dst` writable for `min(valid, 16)` bytes.
#[inline(always)]
pub(crate) unsafe fn store_bytes(dst: *mut i8, v: int8x16_t, valid: usize) {
    // SAFETY: the contract covers the bytes written; the partial case goes through a buffer.
    unsafe {
        if valid >= 16 {
            vst1q_s8(dst, v);
        } else {
            let mut buf = [0i8; 16];
            vst1q_s8(buf.as_mut_ptr(), v);
            core::ptr::copy_nonoverlapping(buf.as_ptr(), dst, valid);
        }
    }
}

/// The 4 bytes of A at `p` (only `rem < 4` of them when `rem > 0`, zero-padded), little endian.
///
/// # Safety
/// `p` readable for 4 bytes (`rem == 0`) or `rem` bytes.
#[inline(always)]
pub(crate) unsafe fn word(p: *const i8, rem: usize) -> i32 {
    // SAFETY: per the contract.
    unsafe {
        if rem == 0 {
            p.cast::<i32>().read_unaligned()
        } else {
            let mut w = 0u32;
            for t in 0..rem {
                w |= (*p.add(t) as u8 as u32) << (8 * t);
            }
            w as i32
        }
    }
}

/// Load 16 bytes at `base + off`, or only those before `len` (zero-filled) near the end.
///
/// # Safety
/// `base` readable for `len` bytes, `off < len`.
#[inline(always)]
pub(crate) unsafe fn load16_clamped(base: *const i8, off: usize, len: usize) -> int8x16_t {
    // SAFETY: either all 16 bytes are below `len`, or only `len - off` are copied.
    unsafe {
        if off + 16 <= len {
            vld1q_s8(base.add(off))
        } else {
            let mut buf = [0i8; 16];
            core::ptr::copy_nonoverlapping(base.add(off), buf.as_mut_ptr(), len - off);
            vld1q_s8(buf.as_ptr())
        }
    }
}

/// Rows per NEON GEMM tile (16 accumulators: 4 rows × 8 channels × 2 partial sums).
const MR: usize = 4;

/// One line of the NEON tile: `acc[r][q] += sadalp(smull(B quarter, A word))`.
///
/// # Safety
/// `bp` readable for 32 bytes (channels 0–7 of a packed line).
#[inline(always)]
unsafe fn step1<const R: usize>(acc: &mut [[int32x4_t; 4]; R], bp: *const i8, words: &[i32; R]) {
    // SAFETY: NEON is part of the target configuration (module cfg); 32 readable bytes at `bp`
    // per the contract.
    unsafe {
        let (q0, q1) = (vld1q_s8(bp), vld1q_s8(bp.add(16)));
        for r in 0..R {
            let a = vreinterpretq_s8_s32(vdupq_n_s32(words[r]));
            acc[r][0] = vpadalq_s16(acc[r][0], vmull_s8(vget_low_s8(q0), vget_low_s8(a)));
            acc[r][1] = vpadalq_s16(acc[r][1], vmull_high_s8(q0, a));
            acc[r][2] = vpadalq_s16(acc[r][2], vmull_s8(vget_low_s8(q1), vget_low_s8(a)));
            acc[r][3] = vpadalq_s16(acc[r][3], vmull_high_s8(q1, a));
        }
    }
}

/// Two lines at once: `smull` + `smlal` add two products in 16 bits before one `sadalp`.
/// Only valid when the weights contain no `-128`.
///
/// # Safety
/// `bp` and `bp + 64` readable for 32 bytes each.
#[inline(always)]
unsafe fn step2<const R: usize>(acc: &mut [[int32x4_t; 4]; R], bp: *const i8, w0: &[i32; R], w1: &[i32; R]) {
    // SAFETY: NEON is part of the target configuration (module cfg); 32 readable bytes at `bp`
    // and at `bp + 64` per the contract.
    unsafe {
        let (q0, q1, p0, p1) = (vld1q_s8(bp), vld1q_s8(bp.add(16)), vld1q_s8(bp.add(64)), vld1q_s8(bp.add(80)));
        for r in 0..R {
            let a = vreinterpretq_s8_s32(vdupq_n_s32(w0[r]));
            let b = vreinterpretq_s8_s32(vdupq_n_s32(w1[r]));
            let t0 = vmlal_s8(vmull_s8(vget_low_s8(q0), vget_low_s8(a)), vget_low_s8(p0), vget_low_s8(b));
            let t1 = vmlal_high_s8(vmull_high_s8(q0, a), p0, b);
            let t2 = vmlal_s8(vmull_s8(vget_low_s8(q1), vget_low_s8(a)), vget_low_s8(p1), vget_low_s8(b));
            let t3 = vmlal_high_s8(vmull_high_s8(q1, a), p1, b);
            acc[r][0] = vpadalq_s16(acc[r][0], t0);
            acc[r][1] = vpadalq_s16(acc[r][1], t1);
            acc[r][2] = vpadalq_s16(acc[r][2], t2);
            acc[r][3] = vpadalq_s16(acc[r][3], t3);
        }
    }
}

/// One NEON tile: `R` rows × 8 channels (`PAIR`: two lines per `sadalp`).
///
/// # Safety
/// `a` readable for `r·lda + k` bytes (`r < R`); `b` points to byte `32·h` of the first of
/// `ceil(k/4)` packed lines (64 bytes apart); `cb_off` indexes 8 lanes of `cb`; `c` writable for
/// `min(valid, 8)` bytes at `r·ldc`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize, const PAIR: bool>(
    a: *const i8,
    lda: usize,
    k: usize,
    b: *const i8,
    cb: &ChannelBlock,
    cb_off: usize,
    oc: &OutC,
    c: *mut i8,
    ldc: usize,
    valid: usize,
) {
    let k4 = k / 4;
    let mut w0 = [0i32; R];
    let mut w1 = [0i32; R];
    let mut l = 0;
    // SAFETY: NEON is part of the target configuration (module cfg). A words `4l..4l+4` with
    // `l < k/4` (and the `k % 4` tail bytes), B lines `l < ceil(k/4)`, 8 constants at `cb_off`
    // (of 16), C writes of `min(valid, 8)` bytes.
    unsafe {
        let mut acc = [[vdupq_n_s32(0); 4]; R];
        if PAIR {
            while l + 2 <= k4 {
                for r in 0..R {
                    w0[r] = word(a.add(r * lda + 4 * l), 0);
                    w1[r] = word(a.add(r * lda + 4 * l + 4), 0);
                }
                step2(&mut acc, b.add(l * 64), &w0, &w1);
                l += 2;
            }
        }
        while l < k4 {
            for (r, w) in w0.iter_mut().enumerate() {
                *w = word(a.add(r * lda + 4 * l), 0);
            }
            step1(&mut acc, b.add(l * 64), &w0);
            l += 1;
        }
        if !k.is_multiple_of(4) {
            for (r, w) in w0.iter_mut().enumerate() {
                *w = word(a.add(r * lda + 4 * k4), k % 4);
            }
            step1(&mut acc, b.add(k4 * 64), &w0);
        }
        let bias0 = vld1q_s32(cb.bias.as_ptr().add(cb_off));
        let bias1 = vld1q_s32(cb.bias.as_ptr().add(cb_off + 4));
        let rq0 = Rq4::load(cb.mult.as_ptr().add(cb_off), cb.shift.as_ptr().add(cb_off));
        let rq1 = Rq4::load(cb.mult.as_ptr().add(cb_off + 4), cb.shift.as_ptr().add(cb_off + 4));
        for (r, ar) in acc.iter().enumerate() {
            let v0 = requant4(vaddq_s32(vpaddq_s32(ar[0], ar[1]), bias0), &rq0, oc);
            let v1 = requant4(vaddq_s32(vpaddq_s32(ar[2], ar[3]), bias1), &rq1, oc);
            let bytes = pack16([v0, v1, v0, v1]);
            if valid >= 8 {
                vst1_s8(c.add(r * ldc), vget_low_s8(bytes));
            } else {
                store_bytes(c.add(r * ldc), bytes, valid);
            }
        }
    }
}

/// NEON quantized GEMM (signed activations, `bias`).
pub(crate) fn gemm(g: &Gemm<'_>, c: &mut [i8], ldc: usize) {
    if !driver::check_gemm(g, c, ldc, false) {
        return;
    }
    let blen = crate::pack::packed_len(g.n, g.k).unwrap_or(0);
    // Scanning the weights costs about one GEMM row: only worth it with a few rows.
    let pair = g.m >= 4 && !driver::has_min_i8(&g.b[..blen]);
    if pair {
        gemm_impl::<true>(g, c, ldc)
    } else {
        gemm_impl::<false>(g, c, ldc)
    }
}

fn gemm_impl<const PAIR: bool>(g: &Gemm<'_>, c: &mut [i8], ldc: usize) {
    let bstride = g.k.div_ceil(4) * 64;
    let oc = OutC::new(&g.q);
    for blk in 0..g.n.div_ceil(16) {
        let ch0 = blk * 16;
        let cb = ChannelBlock::new(g.bias, &g.q, ch0, (g.n - ch0).min(16));
        for h in 0..2 {
            let c0 = ch0 + 8 * h;
            if c0 >= g.n {
                break;
            }
            let valid = (g.n - c0).min(8);
            let mut i = 0;
            while i < g.m {
                let rows = (g.m - i).min(MR);
                // SAFETY: `check_gemm` validated the ranges: rows `i..i+rows ≤ m`, block `blk`
                // of the packed weights, channels `c0 + valid ≤ n`.
                unsafe {
                    let bp = g.b.as_ptr().add(blk * bstride + 32 * h);
                    let ap = g.a.as_ptr().add(i * g.lda);
                    let cp = c.as_mut_ptr().add(i * ldc + c0);
                    match rows {
                        4 => tile::<4, PAIR>(ap, g.lda, g.k, bp, &cb, 8 * h, &oc, cp, ldc, valid),
                        3 => tile::<3, PAIR>(ap, g.lda, g.k, bp, &cb, 8 * h, &oc, cp, ldc, valid),
                        2 => tile::<2, PAIR>(ap, g.lda, g.k, bp, &cb, 8 * h, &oc, cp, ldc, valid),
                        _ => tile::<1, PAIR>(ap, g.lda, g.k, bp, &cb, 8 * h, &oc, cp, ldc, valid),
                    }
                }
                i += rows;
            }
        }
    }
}

/// Largest `kh · kw` the NEON depthwise handles (larger windows use the reference).
const DW_MAX_TAPS: usize = 64;

/// Depthwise convolution: 16 channels at a time in four i32x4 accumulators; per tap `smull`
/// (+ `smlal` of the next tap when the weights hold no `-128`) and `saddw` into 32 bits.
pub(crate) fn depthwise(a: &DepthwiseArgs<'_>, out: &mut [i8]) {
    if !driver::check_depthwise(a, out) {
        return;
    }
    let g = &a.geom;
    let taps = g.kh * g.kw;
    if taps > DW_MAX_TAPS || taps == 0 {
        crate::reference::depthwise2d(a, out);
        return;
    }
    let pair = !driver::has_min_i8(&a.weights[..taps * g.output.c]);
    match ((g.kh, g.kw), pair) {
        ((3, 3), true) => dw_impl::<9, true>(a, out),
        ((3, 3), false) => dw_impl::<9, false>(a, out),
        ((5, 5), true) => dw_impl::<25, true>(a, out),
        ((5, 5), false) => dw_impl::<25, false>(a, out),
        (_, true) => dw_impl::<0, true>(a, out),
        (_, false) => dw_impl::<0, false>(a, out),
    }
}

/// Loop-invariant geometry of the depthwise tap loads.
struct DwGeom {
    inp: *const i8,
    ilen: usize,
    ih: isize,
    iw: isize,
    ch: usize,
    c0: usize,
    kw: usize,
    dh: usize,
    dw: usize,
    toff: [usize; DW_MAX_TAPS],
    zpv: int8x16_t,
}

/// Input offsets of the taps of one border pixel (`usize::MAX` for a padding tap).
struct DwBorder {
    off: [usize; DW_MAX_TAPS],
}

impl DwBorder {
    /// The taps of the window whose top-left input coordinate is `(iy0, ix0)` in image `n`.
    #[inline(always)]
    fn new(dg: &DwGeom, kh: usize, n: usize, iy0: isize, ix0: isize) -> DwBorder {
        let mut off = [usize::MAX; DW_MAX_TAPS];
        let mut t = 0;
        for ky in 0..kh {
            let iy = iy0 + (ky * dg.dh) as isize;
            for kx in 0..dg.kw {
                let ix = ix0 + (kx * dg.dw) as isize;
                if iy >= 0 && iy < dg.ih && ix >= 0 && ix < dg.iw {
                    off[t] = ((n as isize * dg.ih + iy) * dg.iw + ix) as usize * dg.ch + dg.c0;
                }
                t += 1;
            }
        }
        DwBorder { off }
    }
}

/// The 16 input bytes (channels `c0..`) of tap `t`, or the zero point in the padding.
///
/// # Safety
/// `dg.inp` readable for `dg.ilen` bytes holding the NHWC input; `px` built for this input.
#[inline(always)]
unsafe fn dw_tap(dg: &DwGeom, px: &DwBorder, t: usize) -> int8x16_t {
    // SAFETY: a non-sentinel offset addresses an input pixel (checked when the table was built),
    // and `load16_clamped` never reads past `ilen`.
    unsafe {
        let off = px.off[t];
        if off != usize::MAX {
            load16_clamped(dg.inp, off, dg.ilen)
        } else {
            dg.zpv
        }
    }
}

/// 16 input bytes of an interior tap at `off` (clamped to the input length unless `FULL`).
///
/// # Safety
/// `off` is inside the input and, when `FULL`, so is `off + 16`.
#[inline(always)]
unsafe fn dw_ld<const FULL: bool>(dg: &DwGeom, off: usize) -> int8x16_t {
    // SAFETY: NEON is part of the target configuration; bounds per the contract.
    unsafe {
        if FULL {
            vld1q_s8(dg.inp.add(off))
        } else {
            load16_clamped(dg.inp, off, dg.ilen)
        }
    }
}

/// Per-channel-block constants of the depthwise kernel.
struct DwBlock {
    bias: [int32x4_t; 4],
    rq: [Rq4; 4],
    valid: usize,
}

/// Accumulate the taps of one pixel onto the bias; `tap(t)` yields tap `t`'s 16 input bytes.
#[inline(always)]
fn dw_accumulate<const PAIR: bool>(
    taps: usize,
    wv: &[int8x16_t; DW_MAX_TAPS],
    bias: [int32x4_t; 4],
    mut tap: impl FnMut(usize) -> int8x16_t,
) -> [int32x4_t; 4] {
    let mut acc = bias;
    let mut t = 0;
    // SAFETY: NEON is part of the target configuration (module cfg); register-only intrinsics.
    unsafe {
        if PAIR {
            while t + 2 <= taps {
                let (x0, x1) = (tap(t), tap(t + 1));
                let (w0, w1) = (wv[t], wv[t + 1]);
                let lo = vmlal_s8(vmull_s8(vget_low_s8(x0), vget_low_s8(w0)), vget_low_s8(x1), vget_low_s8(w1));
                let hi = vmlal_high_s8(vmull_high_s8(x0, w0), x1, w1);
                addw(&mut acc, lo, hi);
                t += 2;
            }
        }
        while t < taps {
            let x = tap(t);
            let w = wv[t];
            addw(&mut acc, vmull_s8(vget_low_s8(x), vget_low_s8(w)), vmull_high_s8(x, w));
            t += 1;
        }
    }
    acc
}

/// Requantize the accumulators of one pixel and store `valid` bytes at `dst`.
///
/// # Safety
/// `dst` writable for `min(valid, 16)` bytes.
#[inline(always)]
unsafe fn dw_store(acc: [int32x4_t; 4], blk: &DwBlock, oc: &OutC, dst: *mut i8) {
    let v = [
        requant4(acc[0], &blk.rq[0], oc),
        requant4(acc[1], &blk.rq[1], oc),
        requant4(acc[2], &blk.rq[2], oc),
        requant4(acc[3], &blk.rq[3], oc),
    ];
    // SAFETY: per the contract.
    unsafe { store_bytes(dst, pack16(v), blk.valid) };
}

/// A run of `count` interior pixels whose windows start at input offsets `ioff + i·istep` and
/// whose outputs are at `out + i·ostep`, two pixels at a time (independent work for in-order
/// cores).
///
/// # Safety
/// Every window of the run is inside the input, every output inside `out`; `FULL` as in
/// [`dw_ld`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn dw_run<const T: usize, const PAIR: bool, const FULL: bool>(
    dg: &DwGeom,
    taps: usize,
    wv: &[int8x16_t; DW_MAX_TAPS],
    blk: &DwBlock,
    oc: &OutC,
    (ioff, istep, count): (usize, usize, usize),
    out: *mut i8,
    ostep: usize,
) {
    let taps = if T > 0 { T } else { taps };
    let mut i = 0;
    // SAFETY: pixel `i < count` of the run (contract).
    unsafe {
        while i + 2 <= count {
            let (o0, o1) = (ioff + i * istep, ioff + (i + 1) * istep);
            let a = dw_accumulate::<PAIR>(taps, wv, blk.bias, |t| dw_ld::<FULL>(dg, o0 + dg.toff[t]));
            let b = dw_accumulate::<PAIR>(taps, wv, blk.bias, |t| dw_ld::<FULL>(dg, o1 + dg.toff[t]));
            dw_store(a, blk, oc, out.add(i * ostep));
            dw_store(b, blk, oc, out.add((i + 1) * ostep));
            i += 2;
        }
        if i < count {
            let o0 = ioff + i * istep;
            let a = dw_accumulate::<PAIR>(taps, wv, blk.bias, |t| dw_ld::<FULL>(dg, o0 + dg.toff[t]));
            dw_store(a, blk, oc, out.add(i * ostep));
        }
    }
}

/// Widen 16-bit products into the four 32-bit accumulators.
#[inline(always)]
fn addw(acc: &mut [int32x4_t; 4], lo: int16x8_t, hi: int16x8_t) {
    // SAFETY: NEON is part of the target configuration (module cfg); register-only intrinsics.
    unsafe {
        acc[0] = vaddw_s16(acc[0], vget_low_s16(lo));
        acc[1] = vaddw_high_s16(acc[1], lo);
        acc[2] = vaddw_s16(acc[2], vget_low_s16(hi));
        acc[3] = vaddw_high_s16(acc[3], hi);
    }
}

fn dw_impl<const T: usize, const PAIR: bool>(a: &DepthwiseArgs<'_>, out: &mut [i8]) {
    let g = &a.geom;
    let taps = if T > 0 { T } else { g.kh * g.kw };
    let ch = g.output.c;
    let mut toff = [0usize; DW_MAX_TAPS];
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            toff[ky * g.kw + kx] = (ky * g.dh * g.input.w + kx * g.dw) * ch;
        }
    }
    let (ylo, yhi) = driver::interior_y(g);
    let (xlo, xhi) = driver::interior_x(g);
    let mut dg = DwGeom {
        inp: a.input.as_ptr(),
        ilen: a.input.len(),
        ih: g.input.h as isize,
        iw: g.input.w as isize,
        ch,
        c0: 0,
        kw: g.kw,
        dh: g.dh,
        dw: g.dw,
        toff,
        // SAFETY: NEON is part of the target configuration (module cfg).
        zpv: unsafe { vdupq_n_s8(a.input_zp as i8) },
    };
    let oc = OutC::new(&a.q);
    let wlen = a.weights.len();
    // SAFETY: NEON is part of the target configuration (module cfg).
    let mut wv = [unsafe { vdupq_n_s8(0) }; DW_MAX_TAPS];
    let mut c0 = 0;
    while c0 < ch {
        let valid = (ch - c0).min(16);
        dg.c0 = c0;
        for (t, w) in wv.iter_mut().enumerate().take(taps) {
            // SAFETY: `t < kh·kw` and `c0 < c`, so the offset is inside the checked weights.
            *w = unsafe { load16_clamped(a.weights.as_ptr(), t * ch + c0, wlen) };
        }
        let cb = ChannelBlock::new(a.bias, &a.q, c0, valid);
        // SAFETY: NEON is part of the target configuration; `ChannelBlock` holds 16 lanes of each
        // array.
        let (bias, rq) = unsafe {
            let p = cb.bias.as_ptr();
            let bias = [vld1q_s32(p), vld1q_s32(p.add(4)), vld1q_s32(p.add(8)), vld1q_s32(p.add(12))];
            let (m, s) = (cb.mult.as_ptr(), cb.shift.as_ptr());
            let rq = [Rq4::load(m, s), Rq4::load(m.add(4), s.add(4)), Rq4::load(m.add(8), s.add(8)), Rq4::load(m.add(12), s.add(12))];
            (bias, rq)
        };
        let blk = DwBlock { bias, rq, valid };
        let full = valid == 16;
        for n in 0..g.output.n {
            for oy in 0..g.output.h {
                let iy0 = (oy * g.sh) as isize - g.pad_top as isize;
                let orow = (n * g.output.h + oy) * g.output.w;
                let (run_lo, run_hi) = if oy >= ylo && oy < yhi { (xlo, xhi) } else { (0, 0) };
                for ox in (0..run_lo).chain(run_hi.max(run_lo)..g.output.w) {
                    let px = DwBorder::new(&dg, g.kh, n, iy0, (ox * g.sw) as isize - g.pad_left as isize);
                    // SAFETY: border taps are checked in `dw_tap`; `t < taps`.
                    let acc = dw_accumulate::<PAIR>(taps, &wv, blk.bias, |t| unsafe { dw_tap(&dg, &px, t) });
                    // SAFETY: output pixel `(n, oy, ox)`, channels `c0..c0 + valid` (checked).
                    unsafe { dw_store(acc, &blk, &oc, out.as_mut_ptr().add((orow + ox) * ch + c0)) };
                }
                if run_lo < run_hi {
                    let ix0 = run_lo * g.sw - g.pad_left;
                    let ioff = ((n * g.input.h + iy0 as usize) * g.input.w + ix0) * ch + c0;
                    let run = (ioff, g.sw * ch, run_hi - run_lo);
                    // SAFETY: the run covers interior pixels only (`interior_[xy]`), their
                    // outputs are inside `out`; `full` means `c0 + 16 ≤ c`.
                    unsafe {
                        let o = out.as_mut_ptr().add((orow + run_lo) * ch + c0);
                        if full {
                            dw_run::<T, PAIR, true>(&dg, taps, &wv, &blk, &oc, run, o, ch);
                        } else {
                            dw_run::<T, PAIR, false>(&dg, taps, &wv, &blk, &oc, run, o, ch);
                        }
                    }
                }
            }
        }
        c0 += 16;
    }
}

/// `floor(H' / 2^(s−16))` of 4 elements (see [`driver::AddFast`]).
#[inline(always)]
fn add4(a: int16x4_t, b: int16x4_t, f: &driver::AddFast, ch: int32x4_t, cl: int32x4_t, nsh: int32x4_t) -> int32x4_t {
    // SAFETY: NEON is part of the target configuration (module cfg); register-only intrinsics.
    unsafe {
        let l = vaddq_s32(vmlal_n_s16(vmull_n_s16(a, f.a0), b, f.b0), cl);
        let h = vaddq_s32(vmlal_n_s16(vmull_n_s16(a, f.a1), b, f.b1), ch);
        // SSHL by a negative count: arithmetic (truncating) right shift
        vshlq_s32(vaddq_s32(h, vshrq_n_s32::<16>(l)), nsh)
    }
}

/// NEON quantized addition, bit-exact with [`crate::reference::eltwise::add`] (16 elements per
/// step; broadcasting and unusual parameters use the reference).
pub(crate) fn add(args: &AddArgs<'_>, out: &mut [i8]) {
    let Some(f) = driver::AddFast::new(args, out) else {
        crate::reference::eltwise::add(args, out);
        return;
    };
    let n = args.out_shape.len();
    let mut i = 0;
    // SAFETY: NEON (module cfg); `AddFast::new` checked that `a`, `b` and `out` hold `n`
    // elements, and every access below is at `i + 16 ≤ n`.
    unsafe {
        let ch = vdupq_n_s32(f.ch);
        let cl = vdupq_n_s32(f.cl);
        let nsh = vdupq_n_s32(-f.sh);
        let zp = vdupq_n_s16(args.out_zp as i16);
        let lo = vdupq_n_s16(args.min as i16);
        let hi = vdupq_n_s16(args.max as i16);
        let (pa, pb, po) = (args.a.as_ptr(), args.b.as_ptr(), out.as_mut_ptr());
        while i + 16 <= n {
            let a = vld1q_s8(pa.add(i));
            let b = vld1q_s8(pb.add(i));
            let (a0, a1) = (vmovl_s8(vget_low_s8(a)), vmovl_high_s8(a));
            let (b0, b1) = (vmovl_s8(vget_low_s8(b)), vmovl_high_s8(b));
            let q = |x: int16x8_t, y: int16x8_t| {
                let r0 = add4(vget_low_s16(x), vget_low_s16(y), &f, ch, cl, nsh);
                let r1 = add4(vget_high_s16(x), vget_high_s16(y), &f, ch, cl, nsh);
                let v = vqaddq_s16(vqmovn_high_s32(vqmovn_s32(r0), r1), zp);
                vminq_s16(vmaxq_s16(v, lo), hi)
            };
            let v0 = q(a0, b0);
            let v1 = q(a1, b1);
            vst1q_s8(po.add(i), vmovn_high_s16(vmovn_s16(v0), v1));
            i += 16;
        }
    }
    for (j, o) in out[..n].iter_mut().enumerate().skip(i) {
        *o = driver::add_one(args, j);
    }
}
