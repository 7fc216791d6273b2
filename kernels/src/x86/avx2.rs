//! AVX2 building blocks: exact requantization in ymm registers, the AVX2 GEMM micro-kernel
//! (exact 16-bit widening products with `vpmaddwd`) and the depthwise kernel that every x86 level
//! shares.
//!
//! Nothing here carries `#[target_feature]`: these are `#[inline(always)]` bodies that the entry
//! points in [`super`] instantiate under each level's features, so one source serves the AVX2,
//! AVX-VNNI and AVX-512 builds. Every function is `unsafe` with the same contract: the caller
//! runs on a CPU with AVX2 and inlines it into a function compiled with (at least) AVX2, and the
//! pointer arguments satisfy the bounds stated per function.

use crate::driver::{self, ChannelBlock};
use crate::params::{Gemm, OutQuant};
use crate::reference::conv::DepthwiseArgs;
use core::arch::x86_64::*;

/// Requantization constants of 8 channels.
///
/// `vpmuldq` multiplies the even 32-bit lanes, so the 8 channels are split into even and odd
/// halves of 4 × 64-bit lanes. Two exact evaluations of `(p + 2^(s-1)) >> s`, `p = acc · mult`:
///
/// * fast (every shift in `[32, 62]`, the usual case): take the high 32 bits of `p + 2^(s-1)`
///   (which fit in 31 bits) and shift them right arithmetically by `s − 32` with `vpsravd`;
/// * general: AVX2 has no 64-bit arithmetic shift, so compute
///   `((p + 2^(s-1) + 2^63) >>> s) − 2^(63 − s)` with the logical `vpsrlvq`, then saturate to
///   i32 when some shift is below 31 (only then can the result leave the i32 range).
#[derive(Clone, Copy)]
pub(crate) struct Rq8 {
    m_even: __m256i,
    m_odd: __m256i,
    /// 64-bit shift counts (general path).
    s_even: __m256i,
    s_odd: __m256i,
    /// `2^(s-1)`.
    r_even: __m256i,
    r_odd: __m256i,
    /// `2^(63-s)` (general path).
    c_even: __m256i,
    c_odd: __m256i,
    /// `s − 32` as 8 × i32 (fast path).
    s32: __m256i,
    /// Every shift in `[32, 62]`.
    pub(crate) fast: bool,
    /// Some shift below 31 (general path only).
    saturate: bool,
}

impl Rq8 {
    /// Load the constants of 8 channels.
    ///
    /// # Safety
    /// AVX2; `mult` and `shift` point to 8 readable `i32` each, shifts in `[1, 62]` (or anything
    /// for lanes whose result is discarded).
    #[inline(always)]
    pub(crate) unsafe fn load(mult: *const i32, shift: *const i32) -> Rq8 {
        // SAFETY: AVX2 per the contract; both pointers cover 8 i32 (unaligned loads).
        unsafe {
            let m = _mm256_loadu_si256(mult.cast());
            let s = _mm256_loadu_si256(shift.cast());
            let saturate = _mm256_movemask_epi8(_mm256_cmpgt_epi32(_mm256_set1_epi32(31), s)) != 0;
            let out_of_fast = _mm256_or_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(32), s), _mm256_cmpgt_epi32(s, _mm256_set1_epi32(62)));
            let fast = _mm256_movemask_epi8(out_of_fast) == 0;
            let lo32 = _mm256_set1_epi64x(0xffff_ffff);
            let s_even = _mm256_and_si256(s, lo32);
            let s_odd = _mm256_srli_epi64::<32>(s);
            let one = _mm256_set1_epi64x(1);
            let top = _mm256_set1_epi64x(i64::MIN);
            Rq8 {
                m_even: m,
                m_odd: _mm256_srli_epi64::<32>(m),
                s_even,
                s_odd,
                r_even: _mm256_sllv_epi64(one, _mm256_sub_epi64(s_even, one)),
                r_odd: _mm256_sllv_epi64(one, _mm256_sub_epi64(s_odd, one)),
                c_even: _mm256_srlv_epi64(top, s_even),
                c_odd: _mm256_srlv_epi64(top, s_odd),
                s32: _mm256_sub_epi32(s, _mm256_set1_epi32(32)),
                fast,
                saturate,
            }
        }
    }
}

/// Output zero point and the clamp range shifted by it, broadcast: `clamp(x + zp, min, max)` is
/// computed as `clamp(x, min − zp, max − zp) + zp`, which cannot overflow for any i32 `x` (the
/// reference adds the zero point in 64 bits).
#[derive(Clone, Copy)]
pub(crate) struct OutC {
    zp: __m256i,
    /// `min − zp`.
    lo: __m256i,
    /// `max − zp`.
    hi: __m256i,
}

impl OutC {
    /// # Safety
    /// AVX2.
    #[inline(always)]
    pub(crate) unsafe fn new(q: &OutQuant<'_>) -> OutC {
        // SAFETY: AVX2 per the contract; register-only intrinsics.
        unsafe {
            OutC {
                zp: _mm256_set1_epi32(q.zero_point),
                lo: _mm256_set1_epi32(q.min - q.zero_point),
                hi: _mm256_set1_epi32(q.max - q.zero_point),
            }
        }
    }
}

/// Saturate 64-bit lanes to the i32 range (the result is read from the low 32 bits).
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn sat_i32(y: __m256i) -> __m256i {
    // SAFETY: AVX2 per the contract; register-only intrinsics.
    unsafe {
        let max = _mm256_set1_epi64x(i32::MAX as i64);
        let min = _mm256_set1_epi64x(i32::MIN as i64);
        let y = _mm256_blendv_epi8(y, max, _mm256_cmpgt_epi64(y, max));
        _mm256_blendv_epi8(y, min, _mm256_cmpgt_epi64(min, y))
    }
}

/// [`requant8`] when `rq.fast` is known to hold (every shift in `[32, 62]`).
///
/// # Safety
/// AVX2; `rq.fast`.
#[inline(always)]
pub(crate) unsafe fn requant8_fast(acc: __m256i, rq: &Rq8, oc: &OutC) -> __m256i {
    // SAFETY: AVX2 per the contract; register-only intrinsics.
    unsafe {
        let pe = _mm256_add_epi64(_mm256_mul_epi32(acc, rq.m_even), rq.r_even);
        let po = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64::<32>(acc), rq.m_odd), rq.r_odd);
        let h = _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<32>(pe), po);
        let v = _mm256_srav_epi32(h, rq.s32);
        _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(v, oc.lo), oc.hi), oc.zp)
    }
}

/// Exact [`crate::requant::requantize`] of 8 accumulators, plus zero point and clamp: the i32
/// results (already in `[min, max]`).
///
/// # Safety
/// AVX2.
#[inline(always)]
pub(crate) unsafe fn requant8(acc: __m256i, rq: &Rq8, oc: &OutC) -> __m256i {
    // SAFETY: AVX2 per the contract; register-only intrinsics.
    unsafe {
        let pe = _mm256_add_epi64(_mm256_mul_epi32(acc, rq.m_even), rq.r_even);
        let po = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64::<32>(acc), rq.m_odd), rq.r_odd);
        let v = if rq.fast {
            // high halves: even lanes moved down, odd lanes already in place
            let h = _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<32>(pe), po);
            _mm256_srav_epi32(h, rq.s32)
        } else {
            let top = _mm256_set1_epi64x(i64::MIN);
            let mut ye = _mm256_sub_epi64(_mm256_srlv_epi64(_mm256_xor_si256(pe, top), rq.s_even), rq.c_even);
            let mut yo = _mm256_sub_epi64(_mm256_srlv_epi64(_mm256_xor_si256(po, top), rq.s_odd), rq.c_odd);
            if rq.saturate {
                ye = sat_i32(ye);
                yo = sat_i32(yo);
            }
            _mm256_blend_epi32::<0b1010_1010>(ye, _mm256_slli_epi64::<32>(yo))
        };
        _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(v, oc.lo), oc.hi), oc.zp)
    }
}

/// Pack 16 i32 lanes already in `[-128, 127]` (`v0` channels 0–7, `v1` 8–15) to 16 bytes.
///
/// # Safety
/// AVX2.
#[inline(always)]
pub(crate) unsafe fn pack16(v0: __m256i, v1: __m256i) -> __m128i {
    // SAFETY: AVX2 per the contract; register-only intrinsics.
    unsafe {
        let p = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(v0, v1));
        _mm_packs_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256::<1>(p))
    }
}

/// Store the first `valid` bytes of `v` (`valid ≥ 16` stores all 16).
///
/// # Safety
/// SSE2; `dst` is writable for `min(valid, 16)` bytes.
#[inline(always)]
pub(crate) unsafe fn store_bytes(dst: *mut i8, v: __m128i, valid: usize) {
    // SAFETY: the contract covers `min(valid, 16)` bytes at `dst`; the partial case copies from
    // a local buffer.
    unsafe {
        if valid >= 16 {
            _mm_storeu_si128(dst.cast(), v);
        } else {
            let mut buf = [0i8; 16];
            _mm_storeu_si128(buf.as_mut_ptr().cast(), v);
            core::ptr::copy_nonoverlapping(buf.as_ptr(), dst, valid);
        }
    }
}

/// The last `rem` (1..=3) bytes of a row as a little-endian word, zero-padded.
///
/// # Safety
/// `p` is readable for `rem` bytes.
#[inline(always)]
pub(crate) unsafe fn tail_word(p: *const i8, rem: usize) -> i32 {
    let mut w = 0u32;
    for t in 0..rem {
        // SAFETY: t < rem, readable per the contract.
        w |= (unsafe { *p.add(t) } as u8 as u32) << (8 * t);
    }
    w as i32
}

/// One 4-deep reduction step of [`tile`]: 8 channels of the packed line at `bp`.
///
/// # Safety
/// AVX2; `bp` readable for 32 bytes.
#[inline(always)]
unsafe fn madd_step<const R: usize>(acc: &mut [[__m256i; 2]; R], bp: *const i8, words: &[i32; R]) {
    // SAFETY: AVX2 and 32 readable bytes at `bp` per the contract.
    unsafe {
        let b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(bp.cast()));
        let b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(bp.add(16).cast()));
        for r in 0..R {
            let av = _mm256_cvtepi8_epi16(_mm_set1_epi32(words[r]));
            acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(av, b0));
            acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(av, b1));
        }
    }
}

/// Rows per AVX2 GEMM tile.
const MR: usize = 4;

/// One AVX2 tile: `R` rows × 8 channels. Per 4-deep reduction step, 4 channels × 4 k of the
/// packed line are sign-extended to 16 bits and multiplied by the 4 activations (repeated) with
/// `vpmaddwd`, which is exact (two products of at most 2^14 summed in 32 bits); each 32-bit lane
/// keeps two partial sums of one channel that are added at the end.
///
/// # Safety
/// AVX2; `a` readable for `r·lda + k` bytes for every `r < R`; `b` points to half `h` (byte
/// `32·h`) of the first line of a packed block with `ceil(k/4)` lines; `cb_off` indexes 8 lanes
/// inside `cb`; `c` writable for `min(valid, 8)` bytes at `r·ldc` for every `r < R`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize>(
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
    // SAFETY: every access below stays within the ranges of the contract: A bytes `4l..4l+4` with
    // `l < k/4` (plus the `k % 4` tail bytes), B lines `l < ceil(k/4)`, 8 constants at `cb_off`.
    unsafe {
        let mut acc = [[_mm256_setzero_si256(); 2]; R];
        let k4 = k / 4;
        let mut words = [0i32; R];
        for l in 0..k4 {
            for (r, w) in words.iter_mut().enumerate() {
                *w = a.add(r * lda + 4 * l).cast::<i32>().read_unaligned();
            }
            madd_step(&mut acc, b.add(l * 64), &words);
        }
        if !k.is_multiple_of(4) {
            for (r, w) in words.iter_mut().enumerate() {
                *w = tail_word(a.add(r * lda + 4 * k4), k % 4);
            }
            madd_step(&mut acc, b.add(k4 * 64), &words);
        }
        let bias = _mm256_load_si256(cb.bias.as_ptr().add(cb_off).cast());
        let rq = Rq8::load(cb.mult.as_ptr().add(cb_off), cb.shift.as_ptr().add(cb_off));
        for (r, ar) in acc.iter().enumerate() {
            // hadd: [c0 c1 c4 c5 | c2 c3 c6 c7]; the permute restores channel order.
            let s = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_hadd_epi32(ar[0], ar[1]));
            let v = requant8(_mm256_add_epi32(s, bias), &rq, oc);
            let bytes = pack16(v, v);
            if valid >= 8 {
                _mm_storel_epi64(c.add(r * ldc).cast(), bytes);
            } else {
                store_bytes(c.add(r * ldc), bytes, valid);
            }
        }
    }
}

/// AVX2 quantized GEMM (signed activations, `bias`).
///
/// # Safety
/// AVX2 (see the module contract).
#[inline(always)]
pub(crate) unsafe fn gemm(g: &Gemm<'_>, c: &mut [i8], ldc: usize) {
    if !driver::check_gemm(g, c, ldc, false) {
        return;
    }
    let bstride = g.k.div_ceil(4) * 64;
    // SAFETY: `check_gemm` validated every range the tiles touch (A rows `< m` of `k` bytes, B of
    // `packed_len(n, k)` bytes, C rows `< m` of `n` bytes); channels `ch0 + valid ≤ n`.
    unsafe {
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
                let bp = g.b.as_ptr().add(blk * bstride + 32 * h);
                let mut i = 0;
                while i < g.m {
                    let rows = (g.m - i).min(MR);
                    let ap = g.a.as_ptr().add(i * g.lda);
                    let cp = c.as_mut_ptr().add(i * ldc + c0);
                    match rows {
                        4 => tile::<4>(ap, g.lda, g.k, bp, &cb, 8 * h, &oc, cp, ldc, valid),
                        3 => tile::<3>(ap, g.lda, g.k, bp, &cb, 8 * h, &oc, cp, ldc, valid),
                        2 => tile::<2>(ap, g.lda, g.k, bp, &cb, 8 * h, &oc, cp, ldc, valid),
                        _ => tile::<1>(ap, g.lda, g.k, bp, &cb, 8 * h, &oc, cp, ldc, valid),
                    }
                    i += rows;
                }
            }
        }
    }
}

/// Largest `kh · kw` the SIMD depthwise handles (larger windows use the reference).
pub(crate) const DW_MAX_TAPS: usize = 64;

/// Load 16 bytes at `base + off`, or only the bytes before `len` (zero-filled) near the end.
///
/// # Safety
/// SSE2; `base` is readable for `len` bytes and `off < len`.
#[inline(always)]
unsafe fn load16_clamped(base: *const i8, off: usize, len: usize) -> __m128i {
    // SAFETY: either the 16 bytes are below `len`, or only `len - off` bytes are copied.
    unsafe {
        if off + 16 <= len {
            _mm_loadu_si128(base.add(off).cast())
        } else {
            let mut buf = [0i8; 16];
            core::ptr::copy_nonoverlapping(base.add(off), buf.as_mut_ptr(), len - off);
            _mm_loadu_si128(buf.as_ptr().cast())
        }
    }
}

/// Depthwise convolution, any window up to [`DW_MAX_TAPS`] taps, any stride/dilation/padding.
///
/// Channels go 16 at a time in i16 lanes; taps go in pairs: the inputs of taps `2p` and `2p+1`
/// are interleaved (`vpunpck[lh]wd`) and multiplied by the equally interleaved weights with
/// `vpmaddwd`, which adds the two exact products into 32 bits. Padding taps read `input_zp`.
///
/// # Safety
/// AVX2.
#[inline(always)]
pub(crate) unsafe fn depthwise(a: &DepthwiseArgs<'_>, out: &mut [i8]) {
    if !driver::check_depthwise(a, out) {
        return;
    }
    let g = &a.geom;
    if g.kh * g.kw > DW_MAX_TAPS || g.kh * g.kw == 0 {
        crate::reference::depthwise2d(a, out);
        return;
    }
    // SAFETY: AVX2 per the contract; `check_depthwise` validated the slices `dw_impl` indexes.
    unsafe {
        match (g.kh, g.kw) {
            (3, 3) => dw_impl::<9>(a, out),
            (5, 5) => dw_impl::<25>(a, out),
            _ => dw_impl::<0>(a, out),
        }
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
    zpv: __m128i,
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

/// The 16 input bytes (channels `c0..`) of tap `t` of pixel `px`, or the zero point when the tap
/// falls in the padding.
///
/// # Safety
/// SSE2; `dg.inp` readable for `dg.ilen` bytes holding the NHWC input; `px` built for this input.
#[inline(always)]
unsafe fn dw_tap(dg: &DwGeom, px: &DwBorder, t: usize) -> __m128i {
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

/// Per-channel-block constants of the depthwise kernel.
struct DwBlock {
    bias: [__m256i; 2],
    rq: [Rq8; 2],
    valid: usize,
}

/// A run of consecutive interior output pixels of one row.
struct DwRun {
    /// Input offset of the first pixel's window (top-left tap, channel `c0`).
    ioff: usize,
    /// Input offset step between pixels (`sw · c`).
    istep: usize,
    count: usize,
    /// Output of the first pixel (channel `c0`).
    out: *mut i8,
    ostep: usize,
}

/// The accumulators (channel-interleaved, see [`dw_store`]) of a border pixel: every tap checked.
///
/// # Safety
/// As [`dw_tap`].
#[inline(always)]
unsafe fn dw_pixel<const T: usize>(dg: &DwGeom, taps: usize, wv: &[__m256i; DW_MAX_TAPS], px: &DwBorder) -> (__m256i, __m256i) {
    let taps = if T > 0 { T } else { taps };
    // SAFETY: AVX2 (contract); tap indices `< taps`.
    unsafe {
        let mut lo = _mm256_setzero_si256();
        let mut hi = _mm256_setzero_si256();
        for p in 0..taps.div_ceil(2) {
            let x0 = _mm256_cvtepi8_epi16(dw_tap(dg, px, 2 * p));
            let x1 = if 2 * p + 1 < taps { _mm256_cvtepi8_epi16(dw_tap(dg, px, 2 * p + 1)) } else { _mm256_setzero_si256() };
            lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(x0, x1), wv[2 * p]));
            hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(x0, x1), wv[2 * p + 1]));
        }
        (lo, hi)
    }
}

/// 16 input bytes at `off` (clamped to the input length unless `FULL`).
///
/// # Safety
/// SSE2; `off` is inside the input and, when `FULL`, so is `off + 16`.
#[inline(always)]
unsafe fn dw_ld<const FULL: bool>(dg: &DwGeom, off: usize) -> __m128i {
    // SAFETY: per the contract.
    unsafe {
        if FULL {
            _mm_loadu_si128(dg.inp.add(off).cast())
        } else {
            load16_clamped(dg.inp, off, dg.ilen)
        }
    }
}

/// The accumulators of an interior pixel whose window starts at input offset `ioff`.
///
/// # Safety
/// AVX2; every tap `ioff + toff[t]` is an input pixel (interior window); `FULL`: 16 channels are
/// left from `c0`, so 16-byte loads stay inside the pixel.
#[inline(always)]
unsafe fn dw_interior<const T: usize, const FULL: bool>(
    dg: &DwGeom,
    taps: usize,
    wv: &[__m256i; DW_MAX_TAPS],
    ioff: usize,
) -> (__m256i, __m256i) {
    let taps = if T > 0 { T } else { taps };
    // SAFETY: per the contract; non-`FULL` loads are clamped to the input length.
    unsafe {
        let mut lo = _mm256_setzero_si256();
        let mut hi = _mm256_setzero_si256();
        for p in 0..taps.div_ceil(2) {
            let x0 = _mm256_cvtepi8_epi16(dw_ld::<FULL>(dg, ioff + dg.toff[2 * p]));
            let x1 =
                if 2 * p + 1 < taps { _mm256_cvtepi8_epi16(dw_ld::<FULL>(dg, ioff + dg.toff[2 * p + 1])) } else { _mm256_setzero_si256() };
            lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(x0, x1), wv[2 * p]));
            hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(x0, x1), wv[2 * p + 1]));
        }
        (lo, hi)
    }
}

/// Restore channel order (`lo` holds channels `[0..4 | 8..12]`, `hi` `[4..8 | 12..16]`), add the
/// bias, requantize and store `valid` bytes at `dst`.
///
/// # Safety
/// AVX2; `dst` writable for `min(valid, 16)` bytes; `FAST` only when both `rq` are fast.
#[inline(always)]
unsafe fn dw_store<const FAST: bool>(lo: __m256i, hi: __m256i, blk: &DwBlock, oc: &OutC, dst: *mut i8) {
    // SAFETY: per the contract.
    unsafe {
        let v0 = _mm256_add_epi32(_mm256_permute2x128_si256::<0x20>(lo, hi), blk.bias[0]);
        let v1 = _mm256_add_epi32(_mm256_permute2x128_si256::<0x31>(lo, hi), blk.bias[1]);
        let bytes = if FAST {
            pack16(requant8_fast(v0, &blk.rq[0], oc), requant8_fast(v1, &blk.rq[1], oc))
        } else {
            pack16(requant8(v0, &blk.rq[0], oc), requant8(v1, &blk.rq[1], oc))
        };
        store_bytes(dst, bytes, blk.valid);
    }
}

/// A run of interior pixels, two at a time.
///
/// # Safety
/// AVX2; the run's windows are inside the input and its outputs inside `out`; `FULL` and `FAST`
/// as in [`dw_interior`] and [`dw_store`].
#[inline(always)]
unsafe fn dw_run<const T: usize, const FULL: bool, const FAST: bool>(
    dg: &DwGeom,
    taps: usize,
    wv: &[__m256i; DW_MAX_TAPS],
    run: &DwRun,
    blk: &DwBlock,
    oc: &OutC,
) {
    // SAFETY: per the contract; pixel `i < count` of the run.
    unsafe {
        let mut i = 0;
        while i + 2 <= run.count {
            let a = dw_interior::<T, FULL>(dg, taps, wv, run.ioff + i * run.istep);
            let b = dw_interior::<T, FULL>(dg, taps, wv, run.ioff + (i + 1) * run.istep);
            dw_store::<FAST>(a.0, a.1, blk, oc, run.out.add(i * run.ostep));
            dw_store::<FAST>(b.0, b.1, blk, oc, run.out.add((i + 1) * run.ostep));
            i += 2;
        }
        if i < run.count {
            let a = dw_interior::<T, FULL>(dg, taps, wv, run.ioff + i * run.istep);
            dw_store::<FAST>(a.0, a.1, blk, oc, run.out.add(i * run.ostep));
        }
    }
}

/// Depthwise body for `T` taps (`T = 0`: taken from the geometry).
///
/// # Safety
/// AVX2; arguments validated by [`driver::check_depthwise`], `kh · kw ≤ DW_MAX_TAPS`.
#[inline(always)]
unsafe fn dw_impl<const T: usize>(a: &DepthwiseArgs<'_>, out: &mut [i8]) {
    let g = &a.geom;
    let taps = if T > 0 { T } else { g.kh * g.kw };
    let pairs = taps.div_ceil(2);
    let ch = g.output.c;
    debug_assert!(taps <= DW_MAX_TAPS);
    let (ih, iw) = (g.input.h as isize, g.input.w as isize);
    let mut toff = [0usize; DW_MAX_TAPS];
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            toff[ky * g.kw + kx] = (ky * g.dh * g.input.w + kx * g.dw) * ch;
        }
    }
    let (ylo, yhi) = driver::interior_y(g);
    let (xlo, xhi) = driver::interior_x(g);
    let wlen = a.weights.len();
    // SAFETY: AVX2 per the contract. Input reads: runs of interior pixels (`interior_[xy]`) read
    // taps whose coordinates are inside the image, 16 bytes unchecked only for full 16-channel
    // blocks (`c0 + 16 ≤ c`) and clamped to `input.len()` otherwise; border pixels check each tap.
    // Weight reads are clamped to `weights.len()` (tap `t < kh·kw`, channel `c0 < c`). Output
    // writes cover `min(16, c − c0)` bytes of an output pixel, inside `out` (checked length).
    unsafe {
        let oc = OutC::new(&a.q);
        let mut dg = DwGeom {
            inp: a.input.as_ptr(),
            ilen: a.input.len(),
            ih,
            iw,
            ch,
            c0: 0,
            kw: g.kw,
            dh: g.dh,
            dw: g.dw,
            toff,
            zpv: _mm_set1_epi8(a.input_zp as i8),
        };
        let mut wv = [_mm256_setzero_si256(); DW_MAX_TAPS];
        let mut c0 = 0;
        while c0 < ch {
            let valid = (ch - c0).min(16);
            dg.c0 = c0;
            for p in 0..pairs {
                let w0 = _mm256_cvtepi8_epi16(load16_clamped(a.weights.as_ptr(), 2 * p * ch + c0, wlen));
                let w1 = if 2 * p + 1 < taps {
                    _mm256_cvtepi8_epi16(load16_clamped(a.weights.as_ptr(), (2 * p + 1) * ch + c0, wlen))
                } else {
                    _mm256_setzero_si256()
                };
                wv[2 * p] = _mm256_unpacklo_epi16(w0, w1);
                wv[2 * p + 1] = _mm256_unpackhi_epi16(w0, w1);
            }
            let cb = ChannelBlock::new(a.bias, &a.q, c0, valid);
            let bias0 = _mm256_load_si256(cb.bias.as_ptr().cast());
            let bias1 = _mm256_load_si256(cb.bias.as_ptr().add(8).cast());
            let rq0 = Rq8::load(cb.mult.as_ptr(), cb.shift.as_ptr());
            let rq1 = Rq8::load(cb.mult.as_ptr().add(8), cb.shift.as_ptr().add(8));
            let blk = DwBlock { bias: [bias0, bias1], rq: [rq0, rq1], valid };
            let full = valid == 16;
            let fast = rq0.fast && rq1.fast;
            for n in 0..g.output.n {
                for oy in 0..g.output.h {
                    let iy0 = (oy * g.sh) as isize - g.pad_top as isize;
                    let yin = oy >= ylo && oy < yhi;
                    let orow = (n * g.output.h + oy) * g.output.w;
                    let (run_lo, run_hi) = if yin { (xlo, xhi) } else { (0, 0) };
                    for ox in (0..run_lo).chain(run_hi.max(run_lo)..g.output.w) {
                        let px = DwBorder::new(&dg, g.kh, n, iy0, (ox * g.sw) as isize - g.pad_left as isize);
                        let (lo, hi) = dw_pixel::<T>(&dg, taps, &wv, &px);
                        dw_store::<false>(lo, hi, &blk, &oc, out.as_mut_ptr().add((orow + ox) * ch + c0));
                    }
                    if run_lo < run_hi {
                        let ix0 = run_lo * g.sw - g.pad_left;
                        let ioff = ((n * g.input.h + iy0 as usize) * g.input.w + ix0) * ch + c0;
                        let run = DwRun {
                            ioff,
                            istep: g.sw * ch,
                            count: run_hi - run_lo,
                            out: out.as_mut_ptr().add((orow + run_lo) * ch + c0),
                            ostep: ch,
                        };
                        match (full, fast) {
                            (true, true) => dw_run::<T, true, true>(&dg, taps, &wv, &run, &blk, &oc),
                            (true, false) => dw_run::<T, true, false>(&dg, taps, &wv, &run, &blk, &oc),
                            (false, true) => dw_run::<T, false, true>(&dg, taps, &wv, &run, &blk, &oc),
                            (false, false) => dw_run::<T, false, false>(&dg, taps, &wv, &run, &blk, &oc),
                        }
                    }
                }
            }
            c0 += 16;
        }
    }
}
