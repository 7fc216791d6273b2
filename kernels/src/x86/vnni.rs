//! VNNI GEMM micro-kernels: `vpdpbusd` over the packed layout.
//!
//! `vpdpbusd` multiplies *unsigned* bytes by signed bytes, so activations are fed as `a ^ 0x80`
//! (`= a + 128` as u8) and accumulators start from `Gemm::bias_u8 = bias − 128·Σw`, which cancels
//! the offset exactly (all arithmetic is modulo 2^32, like the reference's wrapping adds). The
//! products are exact: `vpdpbusd` (not `vpdpbusds`) adds four products of at most 2^15 each into
//! the wrapping 32-bit accumulator.
//!
//! * [`gemm512`]: zmm, one 64-byte packed line = 16 channels × 4 k per register; tiles of up to
//!   [`MR512`] rows × 32 channels (16 accumulators + 2 weight registers), requantized in registers
//!   with AVX-512 (`vpmuldq`, `vpsravq`, `vpmovsqd`) and stored with a byte mask on channel tails.
//! * [`gemm256`]: ymm, generic over the encoding of `vpdpbusd` ([`Dot256`]): [`Vex`] is AVX-VNNI
//!   (Alder Lake, N100 class; 16 ymm registers, so tiles of [`MR256`] rows × 16 channels), [`Evex`]
//!   is the AVX-512VL form. Both share this source and the AVX2 requantization, so testing the
//!   EVEX form exercises everything but the instruction encoding.
//!
//! When `U8` is true, `A` already holds `a ^ 0x80` (the im2col gather stores it that way) and the
//! XOR is skipped.

use super::avx2::{pack16, requant8, store_bytes, tail_word, OutC, Rq8};
use crate::driver::{self, ChannelBlock};
use crate::params::Gemm;
use core::arch::x86_64::*;

/// Rows per zmm tile.
pub(crate) const MR512: usize = 8;

/// One 4-deep reduction step of [`tile512`]: the packed lines at `bp + j·bstride`, `j < NB`.
///
/// # Safety
/// AVX-512F/VNNI; 64 readable bytes at each `bp + j·bstride`.
#[inline(always)]
unsafe fn step512<const R: usize, const NB: usize, const U8: bool>(
    acc: &mut [[__m512i; NB]; R],
    bp: *const i8,
    bstride: usize,
    words: &[i32; R],
) {
    // SAFETY: AVX-512 and the readable lines per the contract.
    unsafe {
        let mut bv = [_mm512_setzero_si512(); NB];
        for (j, x) in bv.iter_mut().enumerate() {
            *x = _mm512_loadu_si512(bp.add(j * bstride).cast());
        }
        for r in 0..R {
            let av = _mm512_set1_epi32(words[r]);
            let av = if U8 { av } else { _mm512_xor_si512(av, _mm512_set1_epi8(-128)) };
            for j in 0..NB {
                acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], av, bv[j]);
            }
        }
    }
}

/// One zmm tile: `R` rows × `NB`·16 channels.
///
/// # Safety
/// AVX-512F/BW/VL/VNNI; `a` readable for `r·lda + k` bytes (`r < R`); `b` points to the first
/// line of a packed block of `ceil(k/4)` lines, blocks `bstride` bytes apart, `NB` blocks
/// readable; `cbs[j]` holds the constants of block `j`; `c` writable for `valid` bytes (at most
/// `16·NB`) at `r·ldc` for every `r < R`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile512<const R: usize, const NB: usize, const U8: bool>(
    a: *const i8,
    lda: usize,
    k: usize,
    b: *const i8,
    bstride: usize,
    cbs: &[ChannelBlock; NB],
    q: &crate::params::OutQuant<'_>,
    c: *mut i8,
    ldc: usize,
    valid: usize,
) {
    // SAFETY: AVX-512 per the contract; reads: A bytes `4l..4l+4` (`l < k/4`) and the `k % 4`
    // tail bytes of rows `r < R`, B lines `l < ceil(k/4)` of `NB` blocks, constants from `cbs`;
    // writes: masked to `valid` bytes per row.
    unsafe {
        let mut init = [_mm512_setzero_si512(); NB];
        for j in 0..NB {
            init[j] = _mm512_load_si512(cbs[j].bias.as_ptr().cast());
        }
        let mut acc = [init; R];
        let k4 = k / 4;
        let mut words = [0i32; R];
        let mut l = 0;
        if R <= 2 {
            // Few rows: not enough independent accumulators to hide the `vpdpbusd` latency, so
            // even and odd steps go to separate accumulators, added before requantization.
            let mut acc2 = [[_mm512_setzero_si512(); NB]; R];
            while l + 2 <= k4 {
                for (r, w) in words.iter_mut().enumerate() {
                    *w = a.add(r * lda + 4 * l).cast::<i32>().read_unaligned();
                }
                step512::<R, NB, U8>(&mut acc, b.add(l * 64), bstride, &words);
                for (r, w) in words.iter_mut().enumerate() {
                    *w = a.add(r * lda + 4 * l + 4).cast::<i32>().read_unaligned();
                }
                step512::<R, NB, U8>(&mut acc2, b.add(l * 64 + 64), bstride, &words);
                l += 2;
            }
            for (x, y) in acc.iter_mut().zip(&acc2) {
                for (xj, yj) in x.iter_mut().zip(y) {
                    *xj = _mm512_add_epi32(*xj, *yj);
                }
            }
        }
        while l < k4 {
            for (r, w) in words.iter_mut().enumerate() {
                *w = a.add(r * lda + 4 * l).cast::<i32>().read_unaligned();
            }
            step512::<R, NB, U8>(&mut acc, b.add(l * 64), bstride, &words);
            l += 1;
        }
        if !k.is_multiple_of(4) {
            // Missing bytes are 0 (or 0x80 after the flip): their weights are zero.
            for (r, w) in words.iter_mut().enumerate() {
                *w = tail_word(a.add(r * lda + 4 * k4), k % 4);
            }
            step512::<R, NB, U8>(&mut acc, b.add(k4 * 64), bstride, &words);
        }
        store512::<R, NB>(acc, cbs, q, c, ldc, valid);
    }
}

/// Requantize a tile of accumulators (`R` rows × `NB` blocks of 16 channels, `acc[r][j]`) and
/// store it: row `r` at `c + r·ldc`, `valid ≤ 16·NB` bytes per row (a byte mask on the tail).
///
/// # Safety
/// AVX-512F/BW/VL; `c` writable for `valid` bytes at `r·ldc` for every `r < R`.
#[inline(always)]
pub(crate) unsafe fn store512<const R: usize, const NB: usize>(
    acc: [[__m512i; NB]; R],
    cbs: &[ChannelBlock; NB],
    q: &crate::params::OutQuant<'_>,
    c: *mut i8,
    ldc: usize,
    valid: usize,
) {
    // SAFETY: AVX-512 per the contract; the stores are masked to `valid` bytes per row.
    unsafe {
        if NB == 2 && R >= 2 && cbs.iter().all(ChannelBlock::shifts_ge_32) {
            store_pairs512::<R, NB>(acc, cbs, q, c, ldc, valid);
            return;
        }
        // clamp(x + zp, min, max) = clamp(x, min − zp, max − zp) + zp, without overflow
        let zp = _mm512_set1_epi32(q.zero_point);
        let lo = _mm512_set1_epi32(q.min - q.zero_point);
        let hi = _mm512_set1_epi32(q.max - q.zero_point);
        let one = _mm512_set1_epi64(1);
        for j in 0..NB {
            let m = _mm512_load_si512(cbs[j].mult.as_ptr().cast());
            let s = _mm512_load_si512(cbs[j].shift.as_ptr().cast());
            let nv = valid.saturating_sub(16 * j).min(16);
            let mask: __mmask16 = ((1u32 << nv) - 1) as __mmask16;
            if cbs[j].shifts_ge_32() {
                // Every shift in [32, 62]: the high 32 bits of `acc·m + 2^(s−1)` fit in 31 bits;
                // shifting them by `s − 32` (32-bit arithmetic shift) is exact and never saturates.
                let m_odd = _mm512_srli_epi64::<32>(m);
                let s_even = _mm512_and_si512(s, _mm512_set1_epi64(0xffff_ffff));
                let s_odd = _mm512_srli_epi64::<32>(s);
                let r_even = _mm512_sllv_epi64(one, _mm512_sub_epi64(s_even, one));
                let r_odd = _mm512_sllv_epi64(one, _mm512_sub_epi64(s_odd, one));
                let s32 = _mm512_sub_epi32(s, _mm512_set1_epi32(32));
                for (r, ar) in acc.iter().enumerate() {
                    let v = ar[j];
                    let pe = _mm512_add_epi64(_mm512_mul_epi32(v, m), r_even);
                    let po = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64::<32>(v), m_odd), r_odd);
                    let h = _mm512_mask_blend_epi32(0xaaaa, _mm512_srli_epi64::<32>(pe), po);
                    let y = _mm512_srav_epi32(h, s32);
                    let y = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(y, lo), hi), zp);
                    _mm_mask_storeu_epi8(c.add(r * ldc + 16 * j), mask, _mm512_cvtepi32_epi8(y));
                }
                continue;
            }
            let m_lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(m));
            let m_hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(m));
            let s_lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(s));
            let s_hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(s));
            let r_lo = _mm512_sllv_epi64(one, _mm512_sub_epi64(s_lo, one));
            let r_hi = _mm512_sllv_epi64(one, _mm512_sub_epi64(s_hi, one));
            for (r, ar) in acc.iter().enumerate() {
                let v = ar[j];
                let plo = _mm512_mul_epi32(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(v)), m_lo);
                let phi = _mm512_mul_epi32(_mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(v)), m_hi);
                let ylo = _mm512_cvtsepi64_epi32(_mm512_srav_epi64(_mm512_add_epi64(plo, r_lo), s_lo));
                let yhi = _mm512_cvtsepi64_epi32(_mm512_srav_epi64(_mm512_add_epi64(phi, r_hi), s_hi));
                let y = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(ylo), yhi);
                let y = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(y, lo), hi), zp);
                _mm_mask_storeu_epi8(c.add(r * ldc + 16 * j), mask, _mm512_cvtepi32_epi8(y));
            }
        }
    }
}

/// Constants of the fast requantization of one block (every shift in `[32, 62]`).
#[derive(Clone, Copy)]
struct Fast16 {
    m: __m512i,
    m_odd: __m512i,
    r_even: __m512i,
    r_odd: __m512i,
    s32: __m512i,
}

impl Fast16 {
    /// # Safety
    /// AVX-512F; `cb.shifts_ge_32()`.
    #[inline(always)]
    unsafe fn new(cb: &ChannelBlock) -> Fast16 {
        // SAFETY: AVX-512F per the contract; aligned loads of the block's constants.
        unsafe {
            let one = _mm512_set1_epi64(1);
            let m = _mm512_load_si512(cb.mult.as_ptr().cast());
            let s = _mm512_load_si512(cb.shift.as_ptr().cast());
            let s_even = _mm512_and_si512(s, _mm512_set1_epi64(0xffff_ffff));
            let s_odd = _mm512_srli_epi64::<32>(s);
            Fast16 {
                m,
                m_odd: _mm512_srli_epi64::<32>(m),
                r_even: _mm512_sllv_epi64(one, _mm512_sub_epi64(s_even, one)),
                r_odd: _mm512_sllv_epi64(one, _mm512_sub_epi64(s_odd, one)),
                s32: _mm512_sub_epi32(s, _mm512_set1_epi32(32)),
            }
        }
    }

    /// `requantize(v)` per lane: the high halves of `v·m + 2^(s−1)` (odd dwords of the even and
    /// odd 64-bit products, interleaved by one `vpermt2d`), shifted right by `s − 32`.
    ///
    /// # Safety
    /// AVX-512F.
    #[inline(always)]
    unsafe fn apply(&self, v: __m512i) -> __m512i {
        // SAFETY: AVX-512F per the contract; register-only intrinsics.
        unsafe {
            let pe = _mm512_add_epi64(_mm512_mul_epi32(v, self.m), self.r_even);
            let po = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64::<32>(v), self.m_odd), self.r_odd);
            let idx = _mm512_set_epi32(31, 15, 29, 13, 27, 11, 25, 9, 23, 7, 21, 5, 19, 3, 17, 1);
            _mm512_srav_epi32(_mm512_permutex2var_epi32(pe, idx, po), self.s32)
        }
    }
}

/// Requantize and store a tile of 32 channels (`NB == 2`, every shift in `[32, 62]`), two rows
/// at a time: `vpackssdw` of the two blocks, `+zp` with `vpaddsw`, `vpacksswb` of the two rows,
/// the clamp on bytes, one `vpermd` to restore the channel order. Equal to the reference's
/// `clamp(requantize(acc) + zp, min, max)` because the saturations keep values outside
/// `[-128, 127]` outside.
///
/// # Safety
/// AVX-512F/BW/VL; `c` writable for `valid ≤ 32` bytes at `r·ldc`, `r < R`.
#[inline(always)]
unsafe fn store_pairs512<const R: usize, const NB: usize>(
    acc: [[__m512i; NB]; R],
    cbs: &[ChannelBlock; NB],
    q: &crate::params::OutQuant<'_>,
    c: *mut i8,
    ldc: usize,
    valid: usize,
) {
    // SAFETY: AVX-512 per the contract; the stores are masked to `valid` bytes per row.
    unsafe {
        let f0 = Fast16::new(&cbs[0]);
        let f1 = Fast16::new(&cbs[1]);
        let zp = _mm512_set1_epi16(q.zero_point as i16);
        let lo = _mm512_set1_epi8(q.min.clamp(-128, 127) as i8);
        let hi = _mm512_set1_epi8(q.max.clamp(-128, 127) as i8);
        // dword d of 128-bit lane L after the packs: [r ch 4L, r ch 16+4L, r+1 ch 4L, r+1 ch 16+4L]
        let idx = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
        let mask: __mmask32 = if valid >= 32 { u32::MAX } else { (1u32 << valid) - 1 };
        // a macro rather than a closure: compiled with the caller's target features
        macro_rules! row16 {
            ($r:expr) => {
                _mm512_adds_epi16(_mm512_packs_epi32(f0.apply(acc[$r][0]), f1.apply(acc[$r][1])), zp)
            };
        }
        let mut r = 0;
        while r < R {
            let a = row16!(r);
            let b = if r + 1 < R { row16!(r + 1) } else { a };
            let v = _mm512_min_epi8(_mm512_max_epi8(_mm512_packs_epi16(a, b), lo), hi);
            let v = _mm512_permutexvar_epi32(idx, v);
            _mm256_mask_storeu_epi8(c.add(r * ldc), mask, _mm512_castsi512_si256(v));
            if r + 1 < R {
                _mm256_mask_storeu_epi8(c.add((r + 1) * ldc), mask, _mm512_extracti64x4_epi64::<1>(v));
            }
            r += 2;
        }
    }
}

/// Run the tiles of one column panel (`NB` blocks) over all rows.
///
/// # Safety
/// As [`tile512`], for rows `0..g.m` of a GEMM validated by [`driver::check_gemm`].
#[inline(always)]
unsafe fn panel512<const NB: usize, const U8: bool>(g: &Gemm<'_>, blk: usize, c: &mut [i8], ldc: usize) {
    let bstride = g.k.div_ceil(4) * 64;
    let ch0 = blk * 16;
    let valid = (g.n - ch0).min(16 * NB);
    let mut cbs = [ChannelBlock::new(g.bias_u8, &g.q, ch0, valid.min(16)); NB];
    for (j, cb) in cbs.iter_mut().enumerate().skip(1) {
        *cb = ChannelBlock::new(g.bias_u8, &g.q, ch0 + 16 * j, valid.saturating_sub(16 * j).min(16));
    }
    // SAFETY: the caller validated the GEMM; block `blk + NB − 1` exists because
    // `16·blk + valid ≤ n` rounds up within `packed_len`; rows `i + rows ≤ m`.
    unsafe {
        let bp = g.b.as_ptr().add(blk * bstride);
        let mut i = 0;
        while i < g.m {
            let rows = (g.m - i).min(if NB > 2 { 2 } else { MR512 });
            let ap = g.a.as_ptr().add(i * g.lda);
            let cp = c.as_mut_ptr().add(i * ldc + ch0);
            macro_rules! go {
                ($r:literal) => {
                    tile512::<$r, NB, U8>(ap, g.lda, g.k, bp, bstride, &cbs, &g.q, cp, ldc, valid)
                };
            }
            if NB > 2 {
                // wide panels are only used for one or two rows
                match rows {
                    1 => go!(1),
                    _ => go!(2),
                }
                i += rows;
                continue;
            }
            match rows {
                8 => go!(8),
                7 => go!(7),
                6 => go!(6),
                5 => go!(5),
                4 => go!(4),
                3 => go!(3),
                2 => go!(2),
                _ => go!(1),
            }
            i += rows;
        }
    }
}

/// Bytes of the stack buffer into which the VNNI GEMMs copy signed activation rows XOR `0x80`,
/// so that the micro-kernels broadcast each word straight from memory instead of loading,
/// flipping and broadcasting it for every column panel.
const FLIP_BUF: usize = 8192;

/// A 64-byte aligned [`FLIP_BUF`].
#[repr(C, align(64))]
struct FlipBuf([i8; FLIP_BUF]);

/// Run `$kernel(sub, c, ldc)` (which expects `A` XOR `0x80`) on chunks of rows of the validated
/// GEMM `$g`, each copied XOR `0x80` into a stack buffer, and evaluate to `true`; `false`
/// (nothing done) when a row does not fit (`k > FLIP_BUF`) or `k == 0`. A macro rather than a
/// function taking a closure, so that the kernel is inlined with the caller's target features.
macro_rules! flipped_chunks {
    ($g:expr, $c:expr, $ldc:expr, $kernel:path) => {{
        let (g, c, ldc): (&Gemm<'_>, &mut [i8], usize) = ($g, $c, $ldc);
        if g.k == 0 || g.k > FLIP_BUF {
            false
        } else {
            let mut buf = FlipBuf([0; FLIP_BUF]);
            let per = FLIP_BUF / g.k;
            let mut i0 = 0;
            while i0 < g.m {
                let rows = (g.m - i0).min(per);
                if g.lda == g.k {
                    // contiguous rows: one copy
                    let s = i0 * g.k;
                    driver::copy_xor(&mut buf.0[..rows * g.k], &g.a[s..s + rows * g.k], 0x80u8 as i8);
                } else {
                    for r in 0..rows {
                        let s = (i0 + r) * g.lda;
                        driver::copy_xor(&mut buf.0[r * g.k..(r + 1) * g.k], &g.a[s..s + g.k], 0x80u8 as i8);
                    }
                }
                let sub = Gemm { m: rows, a: &buf.0[..rows * g.k], lda: g.k, ..*g };
                // SAFETY: rows `i0 .. i0 + rows` of a GEMM validated by `check_gemm`, with `A`
                // replaced by `rows · k` bytes at stride `k`, form a valid GEMM; `C` from row `i0`
                // keeps `(rows − 1)·ldc + n` bytes.
                unsafe { $kernel(&sub, &mut c[i0 * ldc..], ldc) };
                i0 += rows;
            }
            true
        }
    }};
}

/// AVX-512 VNNI quantized GEMM (uses `bias_u8`).
///
/// # Safety
/// AVX-512F/BW/VL/VNNI.
#[inline(always)]
pub(crate) unsafe fn gemm512<const U8: bool>(g: &Gemm<'_>, c: &mut [i8], ldc: usize) {
    if !driver::check_gemm(g, c, ldc, true) {
        return;
    }
    // Only for several column panels: one panel pass does not amortize the copy (measured).
    if !U8 && g.n > 32 && flipped_chunks!(g, c, ldc, gemm512_checked::<true>) {
        return;
    }
    // SAFETY: validated above.
    unsafe { gemm512_checked::<U8>(g, c, ldc) }
}

/// [`gemm512`] after validation.
///
/// # Safety
/// AVX-512F/BW/VL/VNNI; `g`, `c`, `ldc` validated by [`driver::check_gemm`] (with `bias_u8`).
#[inline(always)]
unsafe fn gemm512_checked<const U8: bool>(g: &Gemm<'_>, c: &mut [i8], ldc: usize) {
    if g.m > MC512 && g.n > 32 && g.m * ldc >= CHUNK_MIN_OUT {
        // Several column panels over many rows: go by chunks of rows, so that each chunk's output
        // rows are written completely (all panels) while they are in cache.
        let mut i0 = 0;
        while i0 < g.m {
            let rows = (g.m - i0).min(MC512);
            let sub = Gemm { m: rows, a: &g.a[i0 * g.lda..], ..*g };
            // SAFETY: the rows `i0 .. i0 + rows` of a validated GEMM form a valid GEMM
            // (`a` and `c` keep `(rows − 1)·ld + k` and `(rows − 1)·ldc + n` elements).
            unsafe { panels512::<U8>(&sub, &mut c[i0 * ldc..], ldc) };
            i0 += rows;
        }
        return;
    }
    // SAFETY: validated by the caller.
    unsafe { panels512::<U8>(g, c, ldc) }
}

/// Output size (bytes) from which [`gemm512`] goes by chunks of rows (outputs that no longer
/// fit in L2 when written panel by panel).
const CHUNK_MIN_OUT: usize = 512 * 1024;
/// Rows per chunk of [`gemm512`] (a multiple of [`MR512`]).
const MC512: usize = 64;

/// Every column panel of a validated GEMM.
///
/// # Safety
/// AVX-512F/BW/VL/VNNI; `g`, `c`, `ldc` validated by [`driver::check_gemm`].
#[inline(always)]
unsafe fn panels512<const U8: bool>(g: &Gemm<'_>, c: &mut [i8], ldc: usize) {
    let blocks = g.n.div_ceil(16);
    let mut blk = 0;
    // SAFETY: validated above; AVX-512 per the contract.
    unsafe {
        if g.m <= 2 {
            while blk + 4 <= blocks {
                panel512::<4, U8>(g, blk, c, ldc);
                blk += 4;
            }
        }
        while blk + 2 <= blocks {
            panel512::<2, U8>(g, blk, c, ldc);
            blk += 2;
        }
        if blk < blocks {
            panel512::<1, U8>(g, blk, c, ldc);
        }
    }
}

/// A 256-bit `vpdpbusd`: one of its two encodings, or its exact AVX2 emulation.
pub(crate) trait Dot256 {
    /// `acc + Σ₄ u8(a) · i8(b)` per 32-bit lane.
    ///
    /// # Safety
    /// The CPU supports this encoding and the caller is compiled with its target features.
    unsafe fn dpbusd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i;
}

/// AVX-512VL + AVX512-VNNI (EVEX) encoding.
pub(crate) struct Evex;
/// AVX-VNNI (VEX) encoding.
pub(crate) struct Vex;

impl Dot256 for Evex {
    #[inline(always)]
    unsafe fn dpbusd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: per the trait contract the CPU has AVX512-VNNI and AVX512VL.
        unsafe { _mm256_dpbusd_epi32(acc, a, b) }
    }
}

/// `vpdpbusd` emulated exactly with AVX2 (for the AVX2 level's direct first-layer convolution):
/// even and odd bytes widened to 16 bits (activations zero-, weights sign-extended) and
/// multiplied pairwise by `vpmaddwd` — `|u8 · i8| ≤ 32,640`, so nothing saturates.
pub(crate) struct Avx2Madd;

impl Dot256 for Avx2Madd {
    #[inline(always)]
    unsafe fn dpbusd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: per the trait contract the CPU has AVX2; register-only intrinsics.
        unsafe {
            let a_even = _mm256_and_si256(a, _mm256_set1_epi16(0x00ff));
            let a_odd = _mm256_srli_epi16::<8>(a);
            let b_even = _mm256_srai_epi16::<8>(_mm256_slli_epi16::<8>(b));
            let b_odd = _mm256_srai_epi16::<8>(b);
            _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_madd_epi16(a_even, b_even), _mm256_madd_epi16(a_odd, b_odd)))
        }
    }
}

impl Dot256 for Vex {
    #[inline(always)]
    unsafe fn dpbusd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: per the trait contract the CPU has AVX-VNNI.
        unsafe { _mm256_dpbusd_avx_epi32(acc, a, b) }
    }
}

/// Rows per ymm tile (12 accumulators + 2 weights + activation + XOR constant = 16 registers).
pub(crate) const MR256: usize = 6;

/// One 4-deep reduction step of [`tile256`] on the packed line at `bp`.
///
/// # Safety
/// AVX2 and the encoding `D`; 64 readable bytes at `bp`.
#[inline(always)]
unsafe fn step256<D: Dot256, const R: usize, const U8: bool>(acc: &mut [[__m256i; 2]; R], bp: *const i8, words: &[i32; R]) {
    // SAFETY: per the contract.
    unsafe {
        let w0 = _mm256_loadu_si256(bp.cast());
        let w1 = _mm256_loadu_si256(bp.add(32).cast());
        for r in 0..R {
            let av = _mm256_set1_epi32(words[r]);
            let av = if U8 { av } else { _mm256_xor_si256(av, _mm256_set1_epi8(-128)) };
            acc[r][0] = D::dpbusd(acc[r][0], av, w0);
            acc[r][1] = D::dpbusd(acc[r][1], av, w1);
        }
    }
}

/// One ymm tile: `R` rows × 16 channels (a packed line is two ymm).
///
/// # Safety
/// AVX2 and the [`Dot256`] encoding `D`; `a` readable for `r·lda + k` bytes (`r < R`); `b` points
/// to the first of `ceil(k/4)` packed lines; `c` writable for `min(valid, 16)` bytes at `r·ldc`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile256<D: Dot256, const R: usize, const U8: bool>(
    a: *const i8,
    lda: usize,
    k: usize,
    b: *const i8,
    cb: &ChannelBlock,
    oc: &OutC,
    c: *mut i8,
    ldc: usize,
    valid: usize,
) {
    // SAFETY: as in `tile512`: A bytes `4l..4l+4` (`l < k/4`) and tails, B lines
    // `l < ceil(k/4)`, constants from `cb`, writes of `min(valid, 16)` bytes per row.
    unsafe {
        let b0 = _mm256_load_si256(cb.bias.as_ptr().cast());
        let b1 = _mm256_load_si256(cb.bias.as_ptr().add(8).cast());
        let mut acc = [[b0, b1]; R];
        let k4 = k / 4;
        let mut words = [0i32; R];
        let mut l = 0;
        if R <= 2 {
            // Few rows: split the reduction over two accumulator sets to hide the latency.
            let mut acc2 = [[_mm256_setzero_si256(); 2]; R];
            while l + 2 <= k4 {
                for (r, w) in words.iter_mut().enumerate() {
                    *w = a.add(r * lda + 4 * l).cast::<i32>().read_unaligned();
                }
                step256::<D, R, U8>(&mut acc, b.add(l * 64), &words);
                for (r, w) in words.iter_mut().enumerate() {
                    *w = a.add(r * lda + 4 * l + 4).cast::<i32>().read_unaligned();
                }
                step256::<D, R, U8>(&mut acc2, b.add(l * 64 + 64), &words);
                l += 2;
            }
            for (x, y) in acc.iter_mut().zip(&acc2) {
                for (xj, yj) in x.iter_mut().zip(y) {
                    *xj = _mm256_add_epi32(*xj, *yj);
                }
            }
        }
        while l < k4 {
            for (r, w) in words.iter_mut().enumerate() {
                *w = a.add(r * lda + 4 * l).cast::<i32>().read_unaligned();
            }
            step256::<D, R, U8>(&mut acc, b.add(l * 64), &words);
            l += 1;
        }
        if !k.is_multiple_of(4) {
            for (r, w) in words.iter_mut().enumerate() {
                *w = tail_word(a.add(r * lda + 4 * k4), k % 4);
            }
            step256::<D, R, U8>(&mut acc, b.add(k4 * 64), &words);
        }
        let rq0 = Rq8::load(cb.mult.as_ptr(), cb.shift.as_ptr());
        let rq1 = Rq8::load(cb.mult.as_ptr().add(8), cb.shift.as_ptr().add(8));
        for (r, ar) in acc.iter().enumerate() {
            let bytes = pack16(requant8(ar[0], &rq0, oc), requant8(ar[1], &rq1, oc));
            store_bytes(c.add(r * ldc), bytes, valid);
        }
    }
}

/// 256-bit VNNI quantized GEMM (uses `bias_u8`), generic over the `vpdpbusd` encoding.
///
/// # Safety
/// AVX2 and the encoding `D` (see [`Dot256`]).
#[inline(always)]
pub(crate) unsafe fn gemm256<D: Dot256, const U8: bool>(g: &Gemm<'_>, c: &mut [i8], ldc: usize) {
    if !driver::check_gemm(g, c, ldc, true) {
        return;
    }
    // Only for several column blocks: one pass does not amortize the copy.
    if !U8 && g.n > 16 && flipped_chunks!(g, c, ldc, gemm256_checked::<D, true>) {
        return;
    }
    // SAFETY: validated above.
    unsafe { gemm256_checked::<D, U8>(g, c, ldc) }
}

/// [`gemm256`] after validation.
///
/// # Safety
/// AVX2 and the encoding `D`; `g`, `c`, `ldc` validated by [`driver::check_gemm`].
#[inline(always)]
unsafe fn gemm256_checked<D: Dot256, const U8: bool>(g: &Gemm<'_>, c: &mut [i8], ldc: usize) {
    let bstride = g.k.div_ceil(4) * 64;
    // SAFETY: `check_gemm` validated every range the tiles touch; `ch0 + valid ≤ n`.
    unsafe {
        let oc = OutC::new(&g.q);
        for blk in 0..g.n.div_ceil(16) {
            let ch0 = blk * 16;
            let valid = (g.n - ch0).min(16);
            let cb = ChannelBlock::new(g.bias_u8, &g.q, ch0, valid);
            let bp = g.b.as_ptr().add(blk * bstride);
            let mut i = 0;
            while i < g.m {
                let rows = (g.m - i).min(MR256);
                let ap = g.a.as_ptr().add(i * g.lda);
                let cp = c.as_mut_ptr().add(i * ldc + ch0);
                macro_rules! go {
                    ($r:literal) => {
                        tile256::<D, $r, U8>(ap, g.lda, g.k, bp, &cb, &oc, cp, ldc, valid)
                    };
                }
                match rows {
                    6 => go!(6),
                    5 => go!(5),
                    4 => go!(4),
                    3 => go!(3),
                    2 => go!(2),
                    _ => go!(1),
                }
                i += rows;
            }
        }
    }
}

/// Multiply-accumulates of the zmm peak loop per iteration (16 independent accumulators).
const PEAK_ACCS: usize = 16;

/// A tight loop of `16 · iters` independent `vpdpbusd zmm` (64 MACs each), for measuring the
/// single-core VNNI peak. Returns a checksum so the work cannot be elided.
///
/// # Safety
/// AVX-512F + AVX512-VNNI.
#[target_feature(enable = "avx512f,avx512vnni")]
pub(crate) unsafe fn peak512(iters: u64, seed: i32) -> i32 {
    let a = _mm512_set1_epi32(seed);
    let b = _mm512_set1_epi32(seed.rotate_left(7));
    let mut acc = [_mm512_setzero_si512(); PEAK_ACCS];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm512_dpbusd_epi32(*x, a, b);
        }
    }
    let mut s = _mm512_setzero_si512();
    for x in acc {
        s = _mm512_add_epi32(s, x);
    }
    _mm512_reduce_add_epi32(s)
}
