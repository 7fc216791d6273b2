//! Portable glue shared by the SIMD paths: argument validation, per-channel-block constants,
//! and the im2col lowering of convolutions onto a GEMM micro-kernel (gemmlowp/XNNPACK style).
//!
//! Nothing here is ISA specific and nothing here is `unsafe`: the checks below are what lets the
//! micro-kernels use unchecked pointer arithmetic afterwards.

use crate::dispatch::IM2COL_ROWS;
use crate::pack::{self, KR, NR};
use crate::params::{Conv2d, Gemm, OutQuant};
use crate::reference::conv::{ConvArgs, DepthwiseArgs};
use crate::reference::eltwise::{AddArgs, MulArgs};
use crate::reference::pool::AvgPoolArgs;

/// A GEMM entry point, with the contract of [`crate::Kernels::gemm`].
pub type GemmFn = fn(&Gemm<'_>, &mut [i8], usize);

/// Number of entries of `mult`/`shift` an [`OutQuant`] must have for `n` channels.
fn quant_len(q: &OutQuant<'_>, n: usize) -> usize {
    if q.mult.len() == 1 {
        1
    } else {
        n
    }
}

/// Validate the arguments of a GEMM over `n` channels writing `c` with row stride `ldc`.
///
/// Panics on a violated precondition (where the reference would panic on an out-of-bounds
/// index, or where rows of `c` would overlap). Returns `false` when there is nothing to compute.
/// After it returned `true`, these reads and writes are in bounds:
/// `a[i·lda + kk]` for `i < m, kk < k`; `b[..packed_len(n, k)]`; `bias[..n]` (and `bias_u8[..n]`
/// when `uses_bias_u8`); `mult`/`shift` at the index [`OutQuant::apply`] uses; `c[i·ldc + j]`
/// for `i < m, j < n`.
pub fn check_gemm(g: &Gemm<'_>, c: &[i8], ldc: usize, uses_bias_u8: bool) -> bool {
    if g.m == 0 || g.n == 0 {
        return false;
    }
    let nq = quant_len(&g.q, g.n);
    assert!(g.q.mult.len() >= nq && g.q.shift.len() >= nq, "gemm: mult/shift length");
    assert!(g.bias.len() >= g.n, "gemm: bias length");
    if uses_bias_u8 {
        assert!(g.bias_u8.len() >= g.n, "gemm: bias_u8 length");
    }
    let blen = pack::packed_len(g.n, g.k).expect("gemm: packed size overflows");
    assert!(g.b.len() >= blen, "gemm: packed weights length");
    assert!(g.m == 1 || g.lda >= g.k, "gemm: lda < k");
    let alen = (g.m - 1).checked_mul(g.lda).and_then(|x| x.checked_add(g.k)).expect("gemm: A size overflows");
    assert!(g.a.len() >= alen, "gemm: A length");
    assert!(g.m == 1 || ldc >= g.n, "gemm: ldc < n");
    let clen = (g.m - 1).checked_mul(ldc).and_then(|x| x.checked_add(g.n)).expect("gemm: C size overflows");
    assert!(c.len() >= clen, "gemm: C length");
    true
}

/// Bias and requantization parameters of one block of [`NR`] = 16 output channels, copied out of
/// the (possibly per-tensor, possibly short) parameter slices so that SIMD code can always load
/// 16 lanes. Lanes past the last channel hold bias 0, multiplier 0 and shift 32 (a result of 0
/// that does not disable the `shift ≥ 32` fast paths).
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub struct ChannelBlock {
    /// Accumulator initial values.
    pub bias: [i32; NR],
    /// Q31 multipliers.
    pub mult: [i32; NR],
    /// Right shifts.
    pub shift: [i32; NR],
}

impl ChannelBlock {
    /// Gather channels `ch0 .. ch0 + valid` (`valid ≤ 16`) of `bias` and `q`.
    #[inline]
    pub fn new(bias: &[i32], q: &OutQuant<'_>, ch0: usize, valid: usize) -> ChannelBlock {
        if valid == NR {
            // full block: fixed-size copies (no `memcpy` calls)
            let bias: [i32; NR] = bias[ch0..ch0 + NR].try_into().unwrap_or([0; NR]);
            return if q.mult.len() == 1 {
                ChannelBlock { bias, mult: [q.mult[0]; NR], shift: [q.shift[0]; NR] }
            } else {
                ChannelBlock {
                    bias,
                    mult: q.mult[ch0..ch0 + NR].try_into().unwrap_or([0; NR]),
                    shift: q.shift[ch0..ch0 + NR].try_into().unwrap_or([32; NR]),
                }
            };
        }
        let mut b = ChannelBlock { bias: [0; NR], mult: [0; NR], shift: [32; NR] };
        b.bias[..valid].copy_from_slice(&bias[ch0..ch0 + valid]);
        if q.mult.len() == 1 {
            b.mult[..valid].fill(q.mult[0]);
            b.shift[..valid].fill(q.shift[0]);
        } else {
            b.mult[..valid].copy_from_slice(&q.mult[ch0..ch0 + valid]);
            b.shift[..valid].copy_from_slice(&q.shift[ch0..ch0 + valid]);
        }
        b
    }

    /// Whether every shift is in `[32, 62]`: then `(acc·m + 2^(s−1)) >> s` equals
    /// `((acc·m + 2^(s−1)) >> 32) >> (s − 32)` where the first result fits in 31 bits, so SIMD
    /// paths can finish with a 32-bit arithmetic shift and need no saturation.
    #[inline]
    pub fn shifts_ge_32(&self) -> bool {
        self.shift.iter().all(|&s| (32..=62).contains(&s))
    }
}

/// The part of `q` that applies to channels `ch0 ..` (per-tensor parameters stay as they are).
pub fn quant_from<'a>(q: &OutQuant<'a>, ch0: usize) -> OutQuant<'a> {
    if q.mult.len() == 1 {
        *q
    } else {
        OutQuant { mult: &q.mult[ch0..], shift: &q.shift[ch0..], ..*q }
    }
}

/// Whether any byte of `w` is `-128` (paths that add two int8 products in 16 bits need the
/// weights in `[-127, 127]`).
#[inline]
pub fn has_min_i8(w: &[i8]) -> bool {
    // Chunked OR-reduction so that it vectorizes on every target.
    let mut chunks = w.chunks_exact(64);
    for ch in &mut chunks {
        let mut any = 0u8;
        for &x in ch {
            any |= (x == i8::MIN) as u8;
        }
        if any != 0 {
            return true;
        }
    }
    chunks.remainder().contains(&i8::MIN)
}

/// Whether a convolution can use its input directly as the GEMM `A` matrix (1×1, stride 1, no
/// padding, output not larger than the input).
fn is_pointwise(a: &ConvArgs<'_>) -> bool {
    let g = &a.geom;
    g.kh == 1
        && g.kw == 1
        && g.sh == 1
        && g.sw == 1
        && g.pad_top == 0
        && g.pad_left == 0
        && g.output.n <= g.input.n
        && g.output.h <= g.input.h
        && g.output.w <= g.input.w
}

/// Convolution through im2col and a GEMM micro-kernel.
///
/// * 1×1 stride-1 unpadded convolutions run `gemm` straight on the input (no scratch).
/// * Otherwise up to [`IM2COL_ROWS`] output pixels at a time are gathered into `scratch`, one
///   row of `round_up(k, 4)` bytes per pixel in the packed reduction order `(ky, kx, c)`;
///   padding taps hold `input_zp` and the K padding holds zeros (the weights there are zero).
///   When `gemm_u8` is given, the gathered bytes are stored XOR `0x80` (unsigned activations)
///   and `gemm_u8` (which must expect that) runs on them.
///
/// Needs at most [`crate::dispatch::conv_scratch_len`] bytes of scratch; with less (a violated
/// contract) it falls back to the reference so the result stays exact.
///
/// `#[inline(always)]`: SIMD paths instantiate it inside their `#[target_feature]` entry points
/// so that the gather loops are vectorized with that level's instructions.
#[inline(always)]
pub fn conv2d_im2col(a: &ConvArgs<'_>, out: &mut [i8], scratch: &mut [i8], gemm: GemmFn, gemm_u8: Option<GemmFn>) {
    let g = &a.geom;
    let (cig, cog, k) = (g.cin_per_group(), g.cout_per_group(), g.k());
    if g.output.is_empty() || cog == 0 {
        return;
    }
    let group_len = pack::packed_len(cog, k).expect("conv2d: packed size overflows");
    assert!(a.weights.len() >= g.groups * group_len, "conv2d: weights length");
    assert!(a.bias.len() >= g.groups * cog, "conv2d: bias length");
    assert!(out.len() >= g.output.len(), "conv2d: output length");
    assert!(a.input.len() >= g.input.len(), "conv2d: input length");
    if is_pointwise(a) {
        let whole = g.output.h == g.input.h && g.output.w == g.input.w;
        for grp in 0..g.groups {
            let wg = &a.weights[grp * group_len..(grp + 1) * group_len];
            let bias = &a.bias[grp * cog..(grp + 1) * cog];
            let bias_u8 = a.bias_u8.get(grp * cog..(grp + 1) * cog).unwrap_or(&[]);
            let q = quant_from(&a.q, grp * cog);
            if whole {
                let m = g.output.n * g.output.h * g.output.w;
                let gm = Gemm { m, n: cog, k, a: &a.input[grp * cig..], lda: g.input.c, b: wg, bias, bias_u8, q };
                gemm(&gm, &mut out[grp * cog..], g.output.c);
            } else {
                for n in 0..g.output.n {
                    for oy in 0..g.output.h {
                        let ibase = ((n * g.input.h + oy) * g.input.w) * g.input.c + grp * cig;
                        let obase = ((n * g.output.h + oy) * g.output.w) * g.output.c + grp * cog;
                        let gm = Gemm { m: g.output.w, n: cog, k, a: &a.input[ibase..], lda: g.input.c, b: wg, bias, bias_u8, q };
                        gemm(&gm, &mut out[obase..], g.output.c);
                    }
                }
            }
        }
        return;
    }

    let kpad = pack::round_up(k, KR);
    let rows = IM2COL_ROWS.min(scratch.len() / kpad.max(1));
    if rows == 0 {
        crate::reference::conv2d(a, out);
        return;
    }
    let (xor, kernel) = match gemm_u8 {
        Some(f) => (0x80u8 as i8, f),
        None => (0, gemm),
    };
    let pixels = g.output.n * g.output.h * g.output.w;
    let mut p0 = 0;
    while p0 < pixels {
        let r = rows.min(pixels - p0);
        for grp in 0..g.groups {
            gather_rows(a, p0, grp, &mut scratch[..r * kpad], kpad, xor);
            let wg = &a.weights[grp * group_len..(grp + 1) * group_len];
            let bias = &a.bias[grp * cog..(grp + 1) * cog];
            let bias_u8 = a.bias_u8.get(grp * cog..(grp + 1) * cog).unwrap_or(&[]);
            let gm = Gemm { m: r, n: cog, k, a: &scratch[..r * kpad], lda: kpad, b: wg, bias, bias_u8, q: quant_from(&a.q, grp * cog) };
            kernel(&gm, &mut out[p0 * g.output.c + grp * cog..], g.output.c);
        }
        p0 += r;
    }
}

/// Copy input columns `x0 .. x0 + dst.len() / c` of row `(n, iy)` (the first may lie left of the
/// input, the last right of it) into `dst`, every byte XOR `xor`; columns outside the input
/// are filled with `pad`.
#[inline(always)]
pub fn fill_row(a: &ConvArgs<'_>, n: usize, iy: usize, x0: isize, dst: &mut [i8], pad: i8, xor: i8) {
    let (c, w) = (a.geom.input.c, a.geom.input.w as isize);
    let cols = dst.len() / c.max(1);
    let left = (x0.min(0).unsigned_abs()).min(cols);
    let end = ((w - x0).max(0) as usize).min(cols).max(left);
    dst[..left * c].fill(pad);
    if end > left {
        let s = ((n * a.geom.input.h + iy) * a.geom.input.w + (x0 + left as isize) as usize) * c;
        copy_xor(&mut dst[left * c..end * c], &a.input[s..s + (end - left) * c], xor);
    }
    dst[end * c..].fill(pad);
}

/// Copy `src` to `dst` XOR `xor` (a plain copy when `xor` is 0).
#[inline(always)]
pub fn copy_xor(dst: &mut [i8], src: &[i8], xor: i8) {
    let src = &src[..dst.len()];
    if dst.len() < 8 {
        // few input channels (e.g. a grayscale first layer): a plain byte loop
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s ^ xor;
        }
        return;
    }
    if xor == 0 {
        dst.copy_from_slice(src);
        return;
    }
    // Fixed-size chunks, so that each becomes a single vector operation after inlining.
    #[inline(always)]
    fn chunks<const W: usize>(dst: &mut [i8], src: &[i8], xor: i8) -> usize {
        let n = dst.len() / W * W;
        for (d, s) in dst[..n].chunks_exact_mut(W).zip(src[..n].chunks_exact(W)) {
            let mut t = [0i8; W];
            for i in 0..W {
                t[i] = s[i] ^ xor;
            }
            d.copy_from_slice(&t);
        }
        n
    }
    let mut done = chunks::<32>(dst, src, xor);
    done += chunks::<16>(&mut dst[done..], &src[done..], xor);
    done += chunks::<8>(&mut dst[done..], &src[done..], xor);
    for (d, &s) in dst[done..].iter_mut().zip(&src[done..]) {
        *d = s ^ xor;
    }
}

/// Gather the receptive fields of output pixels `p0 ..` (flat NHW index; one per `kpad`-byte row
/// of `rows`) for group `grp`, every byte XOR `xor`.
///
/// Pixels go by runs within one output row: for a run whose windows are horizontally inside the
/// input (and one group, no horizontal dilation), each kernel row is one contiguous span per
/// pixel, advancing by `sw · c` from pixel to pixel, so the copies need no index arithmetic.
#[inline(always)]
fn gather_rows(a: &ConvArgs<'_>, p0: usize, grp: usize, rows: &mut [i8], kpad: usize, xor: i8) {
    let g = &a.geom;
    let contiguous = g.groups == 1 && g.dw == 1;
    let (xlo, xhi) = interior_x(g);
    let nrows = rows.len() / kpad;
    let (mut ox, mut oy, mut n) = (p0 % g.output.w, (p0 / g.output.w) % g.output.h, p0 / (g.output.w * g.output.h));
    let mut i = 0;
    while i < nrows {
        let seg = (nrows - i).min(g.output.w - ox);
        let (fa, fb) = if contiguous {
            let fa = ox.max(xlo).min(ox + seg);
            (fa, (ox + seg).min(xhi).max(fa))
        } else {
            (ox + seg, ox + seg)
        };
        for x in (ox..fa).chain(fb..ox + seg) {
            let r = i + x - ox;
            gather_pixel(a, n, oy, x, grp, &mut rows[r * kpad..(r + 1) * kpad], xor);
        }
        if fa < fb {
            gather_run(a, n, oy, fa, fb - fa, &mut rows[(i + fa - ox) * kpad..(i + fb - ox) * kpad], kpad, xor);
        }
        i += seg;
        ox += seg;
        if ox == g.output.w {
            ox = 0;
            oy += 1;
            if oy == g.output.h {
                oy = 0;
                n += 1;
            }
        }
    }
}

/// Gather `len` consecutive output pixels `(n, oy, x0 ..)` whose windows are horizontally inside
/// the input, for a convolution with one group and no horizontal dilation.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gather_run(a: &ConvArgs<'_>, n: usize, oy: usize, x0: usize, len: usize, rows: &mut [i8], kpad: usize, xor: i8) {
    let g = &a.geom;
    let k = g.k();
    let span = g.kw * g.input.c;
    let step = g.sw * g.input.c;
    let pad = (a.input_zp as i8) ^ xor;
    if span <= 16 {
        gather_run_small(a, n, oy, x0, len, rows, kpad, xor);
        return;
    }
    for ky in 0..g.kh {
        let iy = g.in_y(oy, ky);
        let dst = rows.chunks_exact_mut(kpad).map(|r| &mut r[ky * span..(ky + 1) * span]);
        if iy < 0 || iy as usize >= g.input.h {
            for d in dst {
                for b in d.iter_mut() {
                    *b = pad;
                }
            }
        } else {
            let s0 = ((n * g.input.h + iy as usize) * g.input.w + g.in_x(x0, 0) as usize) * g.input.c;
            let src = &a.input[s0..s0 + (len - 1) * step + span];
            for (j, d) in dst.enumerate() {
                copy_xor(d, &src[j * step..j * step + span], xor);
            }
        }
    }
    for r in rows.chunks_exact_mut(kpad) {
        for b in r[k..].iter_mut() {
            *b = 0;
        }
    }
}

/// [`gather_run`] for kernel rows of at most 16 bytes (`kw · c ≤ 16`, e.g. a first layer on a
/// grayscale or RGB image): pixel by pixel, each kernel row is one 16-byte copy that may spill
/// into the bytes after it, which the next copy (or the next pixel's row) overwrites; only copies
/// that would leave `rows` or read past the input are cut to their exact length.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gather_run_small(a: &ConvArgs<'_>, n: usize, oy: usize, x0: usize, len: usize, rows: &mut [i8], kpad: usize, xor: i8) {
    let g = &a.geom;
    let k = g.k();
    let span = g.kw * g.input.c;
    let step = g.sw * g.input.c;
    let pad = [(a.input_zp as i8) ^ xor; 16];
    // input offset of each kernel row's first byte for pixel x0 (None: a padding row)
    let mut src = [None; 16];
    let kh = g.kh.min(16);
    for (ky, s) in src.iter_mut().enumerate().take(kh) {
        let iy = g.in_y(oy, ky);
        if iy >= 0 && (iy as usize) < g.input.h {
            *s = Some(((n * g.input.h + iy as usize) * g.input.w + g.in_x(x0, 0) as usize) * g.input.c);
        }
    }
    let total = rows.len();
    for j in 0..len {
        let base = j * kpad;
        for ky in 0..g.kh {
            let v: [i8; 16] = match src.get(ky).copied().flatten() {
                Some(s0) => {
                    let s = s0 + j * step;
                    match a.input.get(s..s + 16) {
                        Some(x) => {
                            let mut v = [0i8; 16];
                            for (d, &b) in v.iter_mut().zip(x) {
                                *d = b ^ xor;
                            }
                            v
                        }
                        None => {
                            let mut v = pad;
                            for (d, &b) in v.iter_mut().zip(&a.input[s..s + span]) {
                                *d = b ^ xor;
                            }
                            v
                        }
                    }
                }
                None if ky < 16 => pad,
                None => {
                    // more than 16 kernel rows: compute the offset directly
                    let iy = g.in_y(oy, ky);
                    if iy >= 0 && (iy as usize) < g.input.h {
                        let s = ((n * g.input.h + iy as usize) * g.input.w + g.in_x(x0 + j, 0) as usize) * g.input.c;
                        let mut v = pad;
                        for (d, &b) in v.iter_mut().zip(&a.input[s..s + span]) {
                            *d = b ^ xor;
                        }
                        v
                    } else {
                        pad
                    }
                }
            };
            let off = base + ky * span;
            if off + 16 <= total {
                rows[off..off + 16].copy_from_slice(&v);
            } else {
                rows[off..off + span].copy_from_slice(&v[..span]);
            }
        }
        // K padding (at most 3 bytes): one 4-byte store where it fits (spilling into the next row,
        // which is written afterwards), so that no `memset` call is emitted per pixel
        if base + k + 4 <= total {
            rows[base + k..base + k + 4].copy_from_slice(&[0; 4]);
        } else {
            for b in &mut rows[base + k..base + kpad] {
                *b = 0;
            }
        }
    }
}

/// Gather one output pixel, checking every tap.
#[inline(always)]
fn gather_pixel(a: &ConvArgs<'_>, n: usize, oy: usize, ox: usize, grp: usize, row: &mut [i8], xor: i8) {
    let g = &a.geom;
    let cig = g.cin_per_group();
    let k = g.k();
    let span = g.kw * cig;
    let pad = (a.input_zp as i8) ^ xor;
    let (patch, tail) = row.split_at_mut(k);
    for (ky, dst_row) in patch.chunks_exact_mut(span).enumerate() {
        let iy = g.in_y(oy, ky);
        if iy < 0 || iy as usize >= g.input.h {
            for d in dst_row.iter_mut() {
                *d = pad;
            }
            continue;
        }
        let ybase = (n * g.input.h + iy as usize) * g.input.w;
        for (kx, dst) in dst_row.chunks_exact_mut(cig).enumerate() {
            let ix = g.in_x(ox, kx);
            if ix < 0 || ix as usize >= g.input.w {
                for d in dst.iter_mut() {
                    *d = pad;
                }
            } else {
                let s = (ybase + ix as usize) * g.input.c + grp * cig;
                copy_xor(dst, &a.input[s..s + cig], xor);
            }
        }
    }
    for b in tail {
        *b = 0;
    }
}

/// Quantized elementwise multiplication, exactly [`crate::reference::eltwise::mul`], over
/// contiguous runs: both inputs of the output's shape (hard-swish style `x · f(x)`), or one of
/// them a per-channel vector broadcast over the pixels (`[n or 1, 1, 1, c]`, squeeze-and-excite
/// style); other broadcasts use the reference. The run loop is plain integer code written to be
/// vectorized with the caller's target features.
#[inline(always)]
pub fn mul(args: &MulArgs<'_>, out: &mut [i8]) {
    let o = args.out_shape;
    let total = o.len();
    let per_channel = |s: crate::params::Nhwc| s.h == 1 && s.w == 1 && s.c == o.c && (s.n == 1 || s.n == o.n) && (o.h > 1 || o.w > 1);
    let run = |a: &[i8], b: &[i8], out: &mut [i8]| {
        let (za, zb, m, sh, zo, lo, hi) = (args.a_zp, args.b_zp, args.mult, args.shift, args.out_zp, args.min, args.max);
        for ((y, &x), &z) in out.iter_mut().zip(a).zip(b) {
            let acc = (x as i32 - za) * (z as i32 - zb);
            *y = (crate::requant::requantize(acc, m, sh) as i64 + zo as i64).clamp(lo as i64, hi as i64) as i8;
        }
    };
    if args.a_shape == o && args.b_shape == o && args.a.len() >= total && args.b.len() >= total && out.len() >= total {
        run(&args.a[..total], &args.b[..total], &mut out[..total]);
        return;
    }
    let c = o.c;
    let pixels = o.n * o.h * o.w;
    let fits = |v: &[i8], s: crate::params::Nhwc| v.len() >= s.len();
    if c > 0 && out.len() >= total && fits(args.a, args.a_shape) && fits(args.b, args.b_shape) {
        let (big, vec, big_is_a) = if args.a_shape == o && per_channel(args.b_shape) {
            (args.a, args.b, true)
        } else if args.b_shape == o && per_channel(args.a_shape) {
            (args.b, args.a, false)
        } else {
            (&[][..], &[][..], false)
        };
        if !big.is_empty() {
            let vshape = if big_is_a { args.b_shape } else { args.a_shape };
            for p in 0..pixels {
                let v0 = if vshape.n == 1 { 0 } else { p / (o.h * o.w) * c };
                let (x, v) = (&big[p * c..(p + 1) * c], &vec[v0..v0 + c]);
                let y = &mut out[p * c..(p + 1) * c];
                // the product is symmetric in value, but zero points belong to their input
                if big_is_a {
                    run(x, v, y);
                } else {
                    run(v, x, y);
                }
            }
            return;
        }
    }
    crate::reference::eltwise::mul(args, out);
}

/// Validate depthwise arguments; returns `false` when there is nothing to compute.
///
/// After it returned `true`: `groups == input.c == output.c`, `input`, `out`, `weights`
/// (`kh · kw · c`), `bias` (`c`) and `mult`/`shift` are long enough for the reference's indexing.
pub fn check_depthwise(a: &DepthwiseArgs<'_>, out: &[i8]) -> bool {
    let g = &a.geom;
    if g.output.is_empty() {
        return false;
    }
    let c = g.output.c;
    assert!(g.input.c == c, "depthwise2d: input and output channel counts differ");
    assert!(a.input.len() >= g.input.len(), "depthwise2d: input length");
    assert!(out.len() >= g.output.len(), "depthwise2d: output length");
    assert!(a.weights.len() >= g.kh * g.kw * c, "depthwise2d: weights length");
    assert!(a.bias.len() >= c, "depthwise2d: bias length");
    let nq = quant_len(&a.q, c);
    assert!(a.q.mult.len() >= nq && a.q.shift.len() >= nq, "depthwise2d: mult/shift length");
    true
}

/// Horizontal range `[lo, hi)` of output columns whose whole kernel window is inside the input
/// (no padding tap), for a depthwise or convolution geometry.
pub fn interior_x(g: &crate::params::Conv2d) -> (usize, usize) {
    interior(g.output.w, g.input.w, g.sw, g.dw, g.kw, g.pad_left)
}

/// Vertical range `[lo, hi)` of output rows whose whole kernel window is inside the input.
pub fn interior_y(g: &crate::params::Conv2d) -> (usize, usize) {
    interior(g.output.h, g.input.h, g.sh, g.dh, g.kh, g.pad_top)
}

fn interior(out: usize, inp: usize, s: usize, d: usize, kk: usize, pad: usize) -> (usize, usize) {
    // first o with o·s ≥ pad; last o with o·s − pad + (kk−1)·d ≤ inp − 1
    let span = (kk - 1) * d;
    let lo = pad.div_ceil(s.max(1)).min(out);
    if inp + pad < span + 1 {
        return (lo, lo);
    }
    let hi = ((inp + pad - span - 1) / s.max(1) + 1).min(out);
    (lo, hi.max(lo))
}

/// Max pooling, exactly [`crate::reference::pool::max_pool`], written for vectorization: the
/// window of each output pixel is clipped to the input once, and channels go in fixed-size
/// chunks (one vector `max` each once inlined into an entry point compiled with SIMD features).
///
/// `#[inline(always)]`: SIMD tables instantiate it inside their `#[target_feature]` entry points.
#[inline(always)]
pub fn max_pool(geom: &Conv2d, input: &[i8], out: &mut [i8], min: i32, max: i32) {
    let g = geom;
    assert!(g.input.c == g.output.c && g.input.n == g.output.n, "pool: input and output differ in batch or channels");
    let c = g.output.c;
    if g.output.is_empty() {
        return;
    }
    assert!(out.len() >= g.output.len() && input.len() >= g.input.len(), "max_pool: buffer length");
    let (lo, hi) = (min.clamp(-128, 127) as i8, max.clamp(-128, 127) as i8);
    let (lo, hi) = (lo, hi.max(lo));
    // taps of one row of the window that are inside the input: [kx0, kx1) for output column ox
    let kx_range = |ox: usize| -> (usize, usize) {
        let mut a = g.kw;
        let mut b = 0;
        for kx in 0..g.kw {
            let ix = g.in_x(ox, kx);
            if ix >= 0 && (ix as usize) < g.input.w {
                a = a.min(kx);
                b = kx + 1;
            }
        }
        (a, b.max(a))
    };
    const MAX_TAPS: usize = 16;
    let mut acc = [i8::MIN; 64];
    let mut offs = [0usize; MAX_TAPS];
    // interior pixels: every tap inside, at fixed offsets from the window's top-left cell
    let taps = g.kh * g.kw;
    let (ylo, yhi) = interior_y(g);
    let (xlo, xhi) = interior_x(g);
    let mut toff = [0usize; MAX_TAPS];
    if taps <= MAX_TAPS {
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                toff[ky * g.kw + kx] = (ky * g.dh * g.input.w + kx * g.dw) * c;
            }
        }
    }
    for n in 0..g.output.n {
        for oy in 0..g.output.h {
            if taps <= MAX_TAPS && oy >= ylo && oy < yhi && xlo < xhi {
                let iy0 = oy * g.sh - g.pad_top;
                for ox in xlo..xhi {
                    let base = ((n * g.input.h + iy0) * g.input.w + ox * g.sw - g.pad_left) * c;
                    let obase = ((n * g.output.h + oy) * g.output.w + ox) * c;
                    let win = &input[base..base + toff[taps - 1] + c];
                    let dst = &mut out[obase..obase + c];
                    let mut c0 = 0;
                    while c0 + 16 <= c {
                        let mut v = [i8::MIN; 16];
                        for &o in &toff[..taps] {
                            let x: &[i8; 16] = win[o + c0..o + c0 + 16].try_into().unwrap_or(&[i8::MIN; 16]);
                            for i in 0..16 {
                                v[i] = v[i].max(x[i]);
                            }
                        }
                        for x in v.iter_mut() {
                            *x = (*x).clamp(lo, hi);
                        }
                        dst[c0..c0 + 16].copy_from_slice(&v);
                        c0 += 16;
                    }
                    if c0 < c {
                        let w = c - c0;
                        let mut v = [i8::MIN; 16];
                        for &o in &toff[..taps] {
                            for (a, &x) in v[..w].iter_mut().zip(&win[o + c0..o + c]) {
                                *a = (*a).max(x);
                            }
                        }
                        for (d, &x) in dst[c0..].iter_mut().zip(&v[..w]) {
                            *d = x.clamp(lo, hi);
                        }
                    }
                }
            }
            for ox in 0..g.output.w {
                if taps <= MAX_TAPS && oy >= ylo && oy < yhi && ox >= xlo && ox < xhi {
                    continue;
                }
                let (kx0, kx1) = kx_range(ox);
                let obase = ((n * g.output.h + oy) * g.output.w + ox) * c;
                let dst = &mut out[obase..obase + c];
                // input offsets of the taps inside the input
                let mut nt = 0;
                let mut many = false;
                for ky in 0..g.kh {
                    let iy = g.in_y(oy, ky);
                    if iy < 0 || iy as usize >= g.input.h {
                        continue;
                    }
                    for kx in kx0..kx1 {
                        // dilation may skip columns: re-check each tap
                        let ix = g.in_x(ox, kx);
                        if ix < 0 || ix as usize >= g.input.w {
                            continue;
                        }
                        if nt == MAX_TAPS {
                            many = true;
                            break;
                        }
                        offs[nt] = ((n * g.input.h + iy as usize) * g.input.w + ix as usize) * c;
                        nt += 1;
                    }
                }
                if many {
                    // large windows: the reference loop for this pixel
                    dst.fill(i8::MIN);
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let (iy, ix) = (g.in_y(oy, ky), g.in_x(ox, kx));
                            if iy >= 0 && ix >= 0 && (iy as usize) < g.input.h && (ix as usize) < g.input.w {
                                let s = ((n * g.input.h + iy as usize) * g.input.w + ix as usize) * c;
                                max_into(dst, &input[s..s + c]);
                            }
                        }
                    }
                    for d in dst.iter_mut() {
                        *d = (*d).clamp(lo, hi);
                    }
                    continue;
                }
                let offs = &offs[..nt];
                let mut c0 = 0;
                while c0 + 16 <= c {
                    let mut v = [i8::MIN; 16];
                    for &o in offs {
                        let x: &[i8; 16] = input[o + c0..o + c0 + 16].try_into().unwrap_or(&[i8::MIN; 16]);
                        for i in 0..16 {
                            v[i] = v[i].max(x[i]);
                        }
                    }
                    for x in v.iter_mut() {
                        *x = (*x).clamp(lo, hi);
                    }
                    dst[c0..c0 + 16].copy_from_slice(&v);
                    c0 += 16;
                }
                while c0 < c {
                    let w = (c - c0).min(64);
                    let acc = &mut acc[..w];
                    acc.fill(i8::MIN);
                    for &o in offs {
                        max_into(acc, &input[o + c0..o + c0 + w]);
                    }
                    for (d, &x) in dst[c0..c0 + w].iter_mut().zip(acc.iter()) {
                        *d = x.clamp(lo, hi);
                    }
                    c0 += w;
                }
            }
        }
    }
}

/// `acc[i] = max(acc[i], x[i])`, in fixed-size chunks so that each becomes one vector op.
#[inline(always)]
fn max_into(acc: &mut [i8], x: &[i8]) {
    let x = &x[..acc.len()];
    #[inline(always)]
    fn chunks<const W: usize>(acc: &mut [i8], x: &[i8]) -> usize {
        let n = acc.len() / W * W;
        for (a, s) in acc[..n].chunks_exact_mut(W).zip(x[..n].chunks_exact(W)) {
            let mut t = [0i8; W];
            for i in 0..W {
                t[i] = a[i].max(s[i]);
            }
            a.copy_from_slice(&t);
        }
        n
    }
    let mut done = chunks::<32>(acc, x);
    done += chunks::<16>(&mut acc[done..], &x[done..]);
    for (a, &s) in acc[done..].iter_mut().zip(&x[done..]) {
        *a = (*a).max(s);
    }
}

/// Loop constants of the SIMD additions (`a ⊕ b` without broadcasting), bit-exact with
/// [`crate::reference::eltwise::add`].
///
/// The reference computes, in `i64`, `acc = (a − a_zp)·a_mult + (b − b_zp)·b_mult` and
/// `r = (acc + 2^(s−1)) >> s`. The zero points and the rounding term go into one constant
/// `C = 2^(s−1) − a_zp·a_mult − b_zp·b_mult`, and every multiplier is split into signed 16-bit
/// digits `m = m1·2^16 + m0` (`m0 ∈ [−2^15, 2^15)`), so that 16×16-bit multiplies give
/// `H = a·a_m1 + b·b_m1` and `L = a·a_m0 + b·b_m0` exactly in 32 bits. With
/// `C = Ch·2^16 + Cl` (`0 ≤ Cl < 2^16`):
///
/// ```text
/// a·a_mult + b·b_mult + C = 2^16·H' + (L + Cl) mod 2^16,   H' = H + Ch + ((L + Cl) >> 16)
/// r = floor(H' / 2^(s−16))                                   (s ≥ 16; arithmetic shifts)
/// ```
///
/// exact as long as `H'` fits in 32 bits, which [`AddFast::new`] checks (`16 ≤ s ≤ 46`, high
/// digits in i16). `clamp(r + out_zp, min, max)` is then evaluated as
/// `clamp(sat16(r) +sat out_zp, min, max)`, equal because the saturations keep values outside
/// `[-128, 127]` outside. Broadcasting inputs and other parameters go to the reference.
#[derive(Clone, Copy, Debug)]
pub struct AddFast {
    /// High digit of `a_mult`.
    pub a1: i16,
    /// Low digit of `a_mult`.
    pub a0: i16,
    /// High digit of `b_mult`.
    pub b1: i16,
    /// Low digit of `b_mult`.
    pub b0: i16,
    /// `C >> 16`.
    pub ch: i32,
    /// `C & 0xffff`.
    pub cl: i32,
    /// `s − 16`.
    pub sh: i32,
}

impl AddFast {
    /// The constants when `args` qualifies: no broadcasting, `16 ≤ shift ≤ 46`, zero points in
    /// range, digits in i16, and `a`, `b`, `out` long enough.
    pub fn new(args: &AddArgs<'_>, out: &[i8]) -> Option<AddFast> {
        let n = args.out_shape.len();
        if args.a_shape != args.out_shape || args.b_shape != args.out_shape || args.a.len() < n || args.b.len() < n || out.len() < n {
            return None;
        }
        if !(16..=46).contains(&args.shift) || !(-128..=127).contains(&args.a_zp) || !(-128..=127).contains(&args.b_zp) {
            return None;
        }
        if !(-128..=args.max).contains(&args.min) || args.max > 127 || !(-128..=127).contains(&args.out_zp) {
            return None;
        }
        let split = |m: i32| -> Option<(i16, i16)> {
            let m0 = m as i16;
            let m1 = (m as i64 - m0 as i64) >> 16;
            Some((i16::try_from(m1).ok()?, m0))
        };
        let (a1, a0) = split(args.a_mult)?;
        let (b1, b0) = split(args.b_mult)?;
        let c = (1i64 << (args.shift - 1)) - args.a_zp as i64 * args.a_mult as i64 - args.b_zp as i64 * args.b_mult as i64;
        let ch = c >> 16;
        // |H| ≤ 2·128·2^15 = 2^23 and the carry is below 2^8: H' fits when |Ch| < 2^30.
        if ch.abs() >= 1 << 30 {
            return None;
        }
        Some(AddFast { a1, a0, b1, b0, ch: ch as i32, cl: (c & 0xffff) as i32, sh: args.shift - 16 })
    }

    /// `(b1 << 16) | a1` (an `(a, b)` i16 pair per 32-bit lane, for `pmaddwd`).
    pub fn pair_hi(&self) -> i32 {
        ((self.b1 as u16 as u32) << 16 | self.a1 as u16 as u32) as i32
    }

    /// `(b0 << 16) | a0`.
    pub fn pair_lo(&self) -> i32 {
        ((self.b0 as u16 as u32) << 16 | self.a0 as u16 as u32) as i32
    }
}

/// Element `i` of an addition without broadcasting, the reference way (vector tails).
#[inline(always)]
pub fn add_one(args: &AddArgs<'_>, i: usize) -> i8 {
    let acc = (args.a[i] as i64 - args.a_zp as i64) * args.a_mult as i64 + (args.b[i] as i64 - args.b_zp as i64) * args.b_mult as i64;
    let v = crate::requant::requantize_i64(acc, args.shift) as i64 + args.out_zp as i64;
    v.clamp(args.min as i64, args.max as i64) as i8
}

/// Average pooling, exactly [`crate::reference::pool::avg_pool`]. Global pooling (one window
/// covering the whole unpadded input, the usual classifier head) sums each channel over the
/// pixels in i32 lanes, chunks of 64 channels at a time (vectorized once inlined into a SIMD entry
/// point), and finishes with the reference's exact [`mean_requant`]; other windows use the
/// reference.
///
/// [`mean_requant`]: crate::reference::pool::mean_requant
#[inline(always)]
pub fn avg_pool(args: &AvgPoolArgs, input: &[i8], out: &mut [i8]) {
    let g = &args.geom;
    let global = g.kh == g.input.h
        && g.kw == g.input.w
        && g.pad_top == 0
        && g.pad_left == 0
        && g.output.h == 1
        && g.output.w == 1
        && g.input.c == g.output.c
        && g.input.n == g.output.n
        && g.input.h * g.input.w < 1 << 23;
    if !global || g.output.is_empty() || input.len() < g.input.len() || out.len() < g.output.len() {
        crate::reference::pool::avg_pool(args, input, out);
        return;
    }
    let c = g.input.c;
    let pixels = g.input.h * g.input.w;
    let count = pixels as u64; // every cell is inside the input
    let zp = args.input_zp as i64;
    for n in 0..g.input.n {
        let img = &input[n * pixels * c..(n + 1) * pixels * c];
        let mut c0 = 0;
        while c0 < c {
            let w = (c - c0).min(64);
            let mut acc = [0i32; 64];
            for px in 0..pixels {
                let x = &img[px * c + c0..px * c + c0 + w];
                for (a, &v) in acc[..w].iter_mut().zip(x) {
                    *a += v as i32;
                }
            }
            for (j, &s) in acc[..w].iter().enumerate() {
                let sum = s as i64 - zp * pixels as i64;
                let v = crate::reference::pool::mean_requant(sum, count, args.mult, args.shift) + args.out_zp as i64;
                out[n * c + c0 + j] = v.clamp(args.min as i64, args.max as i64) as i8;
            }
            c0 += w;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{Conv2d, Nhwc};

    #[test]
    fn interior_matches_brute_force() {
        for inp in 1usize..12 {
            for k in 1..6 {
                for s in 1..4 {
                    for d in 1..3 {
                        for pad in 0..4 {
                            let out = (inp + 2 * pad).saturating_sub((k - 1) * d + 1) / s + 1;
                            let g = Conv2d {
                                input: Nhwc::new(1, inp, inp, 1),
                                output: Nhwc::new(1, out, out, 1),
                                kh: k,
                                kw: k,
                                sh: s,
                                sw: s,
                                dh: d,
                                dw: d,
                                pad_top: pad,
                                pad_left: pad,
                                groups: 1,
                            };
                            let (lo, hi) = interior_x(&g);
                            for o in 0..out {
                                let inside = (0..k).all(|t| {
                                    let x = g.in_x(o, t);
                                    x >= 0 && (x as usize) < inp
                                });
                                assert_eq!(inside, o >= lo && o < hi, "inp={inp} k={k} s={s} d={d} pad={pad} o={o}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn min_i8_scan() {
        let mut w = [1i8; 200];
        assert!(!has_min_i8(&w));
        for i in [0, 63, 64, 130, 199] {
            w[i] = i8::MIN;
            assert!(has_min_i8(&w));
            w[i] = 127;
        }
    }
}
