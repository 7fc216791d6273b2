//! AVX-512 depthwise convolution: 32 channels per step, `vpdpwssd` on 16-bit pairs of taps, and
//! requantization fused while the accumulators are in registers.
//!
//! Channels `c0 .. c0 + 32` of a tap are sign-extended to 32 × i16 (`vpmovsxbw`); the inputs of
//! taps `2p` and `2p+1` are interleaved (`vpunpck[lh]wd`) and multiplied by the equally
//! interleaved weights with `vpdpwssd`, which adds both exact products (at most 2^14 each) to the
//! 32-bit accumulator without saturation (like the reference's wrapping sum, as the totals never
//! leave the i32 range). The interleave puts channels `[0–3, 8–11, 16–19, 24–27]` in the "lo"
//! accumulator and `[4–7, 12–15, 20–23, 28–31]` in the "hi" one; bias and requantization
//! constants are permuted the same way, so that after requantization `vpackssdw` of (lo, hi)
//! yields the 32 results in channel order. `clamp(r + zp, min, max)` is evaluated as
//! `clamp(sat16(r) +sat zp, min, max)` (equal, since the saturations keep out-of-range values
//! out of range).
//!
//! Output rows go in bands of [`BAND`] rows; inside a band, channel blocks are outermost, so the
//! band's input stays in cache while each block's weights stay in registers.

use crate::driver;
use crate::reference::conv::DepthwiseArgs;
use core::arch::x86_64::*;

/// Largest `kh · kw` handled (larger windows use the reference).
const MAX_TAPS: usize = 64;
/// Output rows per band.
const BAND: usize = 4;

/// Requantization constants of 16 lanes (one accumulator register).
#[derive(Clone, Copy)]
struct Rq16 {
    m: __m512i,
    s: __m512i,
    fast: bool,
}

impl Rq16 {
    /// Exact [`crate::requant::requantize`] of 16 lanes (i32 results).
    ///
    /// # Safety
    /// AVX-512F.
    #[inline(always)]
    unsafe fn apply(&self, v: __m512i) -> __m512i {
        // SAFETY: AVX-512F per the contract; register-only intrinsics.
        unsafe {
            let one = _mm512_set1_epi64(1);
            if self.fast {
                // every shift in [32, 62]: the high halves of `acc·m + 2^(s−1)` fit in 31 bits
                let m_odd = _mm512_srli_epi64::<32>(self.m);
                let s_even = _mm512_and_si512(self.s, _mm512_set1_epi64(0xffff_ffff));
                let s_odd = _mm512_srli_epi64::<32>(self.s);
                let r_even = _mm512_sllv_epi64(one, _mm512_sub_epi64(s_even, one));
                let r_odd = _mm512_sllv_epi64(one, _mm512_sub_epi64(s_odd, one));
                let s32 = _mm512_sub_epi32(self.s, _mm512_set1_epi32(32));
                let pe = _mm512_add_epi64(_mm512_mul_epi32(v, self.m), r_even);
                let po = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64::<32>(v), m_odd), r_odd);
                let h = _mm512_mask_blend_epi32(0xaaaa, _mm512_srli_epi64::<32>(pe), po);
                return _mm512_srav_epi32(h, s32);
            }
            let m_lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(self.m));
            let m_hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(self.m));
            let s_lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(self.s));
            let s_hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(self.s));
            let r_lo = _mm512_sllv_epi64(one, _mm512_sub_epi64(s_lo, one));
            let r_hi = _mm512_sllv_epi64(one, _mm512_sub_epi64(s_hi, one));
            let plo = _mm512_mul_epi32(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(v)), m_lo);
            let phi = _mm512_mul_epi32(_mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(v)), m_hi);
            let ylo = _mm512_cvtsepi64_epi32(_mm512_srav_epi64(_mm512_add_epi64(plo, r_lo), s_lo));
            let yhi = _mm512_cvtsepi64_epi32(_mm512_srav_epi64(_mm512_add_epi64(phi, r_hi), s_hi));
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(ylo), yhi)
        }
    }
}

/// Constants of one block of 32 channels.
struct Block {
    /// Interleaved weights: `w[2p]` lo half, `w[2p+1]` hi half of tap pair `p`.
    w: [__m512i; MAX_TAPS],
    bias: [__m512i; 2],
    rq: [Rq16; 2],
    /// Valid channels (bit per channel).
    mask: __mmask32,
}

/// Output constants.
struct Out {
    zp: __m512i,
    lo: __m512i,
    hi: __m512i,
}

/// Load 32 channels at `p` (only the `mask` ones; the others read as 0).
///
/// # Safety
/// AVX-512BW/VL; the masked bytes at `p` are readable (and, when `FULL`, all 32).
#[inline(always)]
unsafe fn ld<const FULL: bool>(p: *const i8, mask: __mmask32) -> __m512i {
    // SAFETY: per the contract; masked-off bytes are not accessed by `vmovdqu8` with a mask.
    unsafe {
        if FULL {
            _mm512_cvtepi8_epi16(_mm256_loadu_si256(p.cast()))
        } else {
            _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(mask, p))
        }
    }
}

/// Accumulate the tap pairs of one pixel: `$x` is an expression of the tap index `$t` yielding
/// the tap's i16 inputs (a macro, not a closure, so that everything is compiled with the entry
/// point's target features).
macro_rules! accumulate {
    ($taps:expr, $blk:expr, |$t:ident| $x:expr) => {{
        let taps: usize = $taps;
        let blk: &Block = $blk;
        let mut lo = blk.bias[0];
        let mut hi = blk.bias[1];
        let mut tt = 0;
        while tt + 2 <= taps {
            let x0 = {
                let $t = tt;
                $x
            };
            let x1 = {
                let $t = tt + 1;
                $x
            };
            lo = _mm512_dpwssd_epi32(lo, _mm512_unpacklo_epi16(x0, x1), blk.w[tt]);
            hi = _mm512_dpwssd_epi32(hi, _mm512_unpackhi_epi16(x0, x1), blk.w[tt + 1]);
            tt += 2;
        }
        if tt < taps {
            let x0 = {
                let $t = tt;
                $x
            };
            let x1 = _mm512_setzero_si512();
            lo = _mm512_dpwssd_epi32(lo, _mm512_unpacklo_epi16(x0, x1), blk.w[tt]);
            hi = _mm512_dpwssd_epi32(hi, _mm512_unpackhi_epi16(x0, x1), blk.w[tt + 1]);
        }
        (lo, hi)
    }};
}

/// Requantize, clamp and store the 32 channels of one pixel.
///
/// # Safety
/// AVX-512F/BW/VL; `dst` writable for the channels in `blk.mask`.
#[inline(always)]
unsafe fn store(lo: __m512i, hi: __m512i, blk: &Block, o: &Out, dst: *mut i8) {
    // SAFETY: per the contract; the store is masked to the valid channels.
    unsafe {
        let v = _mm512_packs_epi32(blk.rq[0].apply(lo), blk.rq[1].apply(hi));
        let v = _mm512_min_epi16(_mm512_max_epi16(_mm512_adds_epi16(v, o.zp), o.lo), o.hi);
        _mm256_mask_storeu_epi8(dst, blk.mask, _mm512_cvtepi16_epi8(v));
    }
}

/// AVX-512 depthwise convolution, exactly [`crate::reference::depthwise2d`].
///
/// # Safety
/// AVX-512F/BW/VL/VNNI.
#[inline(always)]
pub(crate) unsafe fn depthwise(a: &DepthwiseArgs<'_>, out: &mut [i8]) {
    if !driver::check_depthwise(a, out) {
        return;
    }
    let g = &a.geom;
    let taps = g.kh * g.kw;
    if taps > MAX_TAPS || taps == 0 {
        crate::reference::depthwise2d(a, out);
        return;
    }
    // SAFETY: AVX-512 per the contract; `check_depthwise` validated the slices.
    unsafe {
        match (g.kh, g.kw) {
            (3, 3) => dw::<9>(a, out),
            (5, 5) => dw::<25>(a, out),
            _ => dw::<0>(a, out),
        }
    }
}

/// Lane `i` of the "lo" (`h = 0`) or "hi" (`h = 1`) accumulator holds channel
/// `8·(i / 4) + 4·h + i % 4` of the block.
const fn lane_channel(h: usize, i: usize) -> usize {
    8 * (i / 4) + 4 * h + i % 4
}

/// The i16 weights of channels `off ..` (the `mask` ones), or with `dup` the 16 channels at `off`
/// repeated in both halves (pixel pairs).
///
/// # Safety
/// AVX-512BW/VL; the bytes read are inside the weights.
#[inline(always)]
unsafe fn wload(wp: *const i8, off: usize, mask: __mmask32, dup: bool) -> __m512i {
    // SAFETY: per the contract.
    unsafe {
        if dup {
            _mm512_cvtepi8_epi16(_mm256_broadcastsi128_si256(_mm_loadu_si128(wp.add(off).cast())))
        } else {
            _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(mask, wp.add(off)))
        }
    }
}

/// The constants of channels `c0 .. c0 + 32` (with `dup`: channels `0 .. 16` twice, `c = 16`).
///
/// # Safety
/// AVX-512F/BW/VL; `a` validated by `check_depthwise`, `c0 < c`.
#[inline(always)]
unsafe fn block(a: &DepthwiseArgs<'_>, taps: usize, c0: usize, dup: bool, blk: &mut Block) {
    let c = a.geom.output.c;
    let valid = if dup { 32 } else { (c - c0).min(32) };
    let per_tensor = a.q.mult.len() == 1;
    let mut bias = [[0i32; 16]; 2];
    let mut mult = [[0i32; 16]; 2];
    // lanes past the last channel: bias 0, multiplier 0, shift 32 (a result of 0)
    let mut shift = [[32i32; 16]; 2];
    for h in 0..2 {
        for i in 0..16 {
            let ch = lane_channel(h, i);
            if ch < valid {
                let ch = if dup { ch % 16 } else { ch };
                let q = if per_tensor { 0 } else { c0 + ch };
                bias[h][i] = a.bias[c0 + ch];
                mult[h][i] = a.q.mult[q];
                shift[h][i] = a.q.shift[q];
            }
        }
    }
    let mask: __mmask32 = if valid == 32 { u32::MAX } else { (1u32 << valid) - 1 };
    // SAFETY: AVX-512 per the contract; weight loads are masked to the valid channels of taps
    // `t < kh·kw` (`check_depthwise`: `weights.len() ≥ kh·kw·c`); the arrays are local.
    unsafe {
        for h in 0..2 {
            let fast = shift[h].iter().all(|&s| (32..=62).contains(&s));
            blk.rq[h] = Rq16 { m: _mm512_loadu_si512(mult[h].as_ptr().cast()), s: _mm512_loadu_si512(shift[h].as_ptr().cast()), fast };
            blk.bias[h] = _mm512_loadu_si512(bias[h].as_ptr().cast());
        }
        let wp = a.weights.as_ptr();
        let mut t = 0;
        while t < taps {
            let w0 = wload(wp, t * c + c0, mask, dup);
            let w1 = if t + 1 < taps { wload(wp, (t + 1) * c + c0, mask, dup) } else { _mm512_setzero_si512() };
            blk.w[t] = _mm512_unpacklo_epi16(w0, w1);
            blk.w[t + 1] = _mm512_unpackhi_epi16(w0, w1);
            t += 2;
        }
        blk.mask = mask;
    }
}

/// Weights of a 3×3 window for [`row3x3`], paired vertically: `p_*[kx]` interleaves rows 0 and
/// 1 of column `kx`, `s_*[kx]` row 2 with zeros (lo/hi halves as in [`Block::w`]).
#[derive(Clone, Copy)]
struct W3 {
    p_lo: [__m512i; 3],
    p_hi: [__m512i; 3],
    s_lo: [__m512i; 3],
    s_hi: [__m512i; 3],
}

/// The [`W3`] of channels `c0 ..` (the `mask` ones) of a 3×3 depthwise layer.
///
/// # Safety
/// AVX-512BW/VL; `a` validated by `check_depthwise`, `kh = kw = 3`, `c0 < c`.
#[inline(always)]
unsafe fn w3(a: &DepthwiseArgs<'_>, c0: usize, mask: __mmask32) -> W3 {
    let c = a.geom.output.c;
    let wp = a.weights.as_ptr();
    // SAFETY: masked loads of the valid channels of taps `< 9` (`weights.len() ≥ 9·c`).
    unsafe {
        let z = _mm512_setzero_si512();
        let mut w = W3 { p_lo: [z; 3], p_hi: [z; 3], s_lo: [z; 3], s_hi: [z; 3] };
        for kx in 0..3 {
            let r0 = wload(wp, kx * c + c0, mask, false);
            let r1 = wload(wp, (3 + kx) * c + c0, mask, false);
            let r2 = wload(wp, (6 + kx) * c + c0, mask, false);
            w.p_lo[kx] = _mm512_unpacklo_epi16(r0, r1);
            w.p_hi[kx] = _mm512_unpackhi_epi16(r0, r1);
            w.s_lo[kx] = _mm512_unpacklo_epi16(r2, z);
            w.s_hi[kx] = _mm512_unpackhi_epi16(r2, z);
        }
        w
    }
}

/// `count` interior output pixels of one row of a 3×3, undilated depthwise layer with
/// horizontal stride `S`, 32 channels (`blk`): each input column (three rows, at `p + x·c`,
/// `p + x·c + row`, `p + x·c + 2·row`) is sign-extended and interleaved once — rows 0 and 1
/// into pairs, row 2 with zeros — and then serves every output whose window covers it (three
/// with stride 1), instead of being re-extended and re-paired for each tap of each output.
///
/// # Safety
/// AVX-512F/BW/VL/VNNI; the windows of the `count` pixels (first column at `p`, columns `S`
/// apart) are inside the input, with 32 readable channels when `FULL` and the `blk.mask` ones
/// otherwise; `dst` (first pixel) writable for the masked channels of `count` pixels `c` apart.
#[inline(never)]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
#[allow(clippy::too_many_arguments)]
unsafe fn row3x3<const S: usize, const FULL: bool>(
    p: *const i8,
    row: usize,
    c: usize,
    count: usize,
    w: &W3,
    blk: &Block,
    o: &Out,
    dst: *mut i8,
) {
    // SAFETY: per the contract: columns `x < (count − 1)·S + 3` of the three rows are inside
    // the input; the stores are masked, one pixel each.
    unsafe {
        let z = _mm512_setzero_si512();
        macro_rules! col {
            ($x:expr) => {{
                let q = p.add($x * c);
                let r0 = ld::<FULL>(q, blk.mask);
                let r1 = ld::<FULL>(q.add(row), blk.mask);
                let r2 = ld::<FULL>(q.add(2 * row), blk.mask);
                [_mm512_unpacklo_epi16(r0, r1), _mm512_unpackhi_epi16(r0, r1), _mm512_unpacklo_epi16(r2, z), _mm512_unpackhi_epi16(r2, z)]
            }};
        }
        macro_rules! out {
            ($j:expr, $c0:expr, $c1:expr, $c2:expr) => {{
                let cols = [&$c0, &$c1, &$c2];
                let (mut lp, mut ls, mut hp, mut hs) = (blk.bias[0], z, blk.bias[1], z);
                for kx in 0..3 {
                    lp = _mm512_dpwssd_epi32(lp, cols[kx][0], w.p_lo[kx]);
                    hp = _mm512_dpwssd_epi32(hp, cols[kx][1], w.p_hi[kx]);
                    ls = _mm512_dpwssd_epi32(ls, cols[kx][2], w.s_lo[kx]);
                    hs = _mm512_dpwssd_epi32(hs, cols[kx][3], w.s_hi[kx]);
                }
                store(_mm512_add_epi32(lp, ls), _mm512_add_epi32(hp, hs), blk, o, dst.add($j * c));
            }};
        }
        let mut c0 = col!(0);
        if S == 1 {
            let mut c1 = col!(1);
            for j in 0..count {
                let c2 = col!(j + 2);
                out!(j, c0, c1, c2);
                c0 = c1;
                c1 = c2;
            }
        } else {
            for j in 0..count {
                let c1 = col!(S * j + 1);
                let c2 = col!(S * j + 2);
                out!(j, c0, c1, c2);
                c0 = c2;
            }
        }
    }
}

/// Depthwise body for `T` taps (`T = 0`: taken from the geometry).
///
/// # Safety
/// AVX-512F/BW/VL/VNNI; arguments validated by `check_depthwise`, `kh · kw ≤ MAX_TAPS`.
#[inline(always)]
unsafe fn dw<const T: usize>(a: &DepthwiseArgs<'_>, out: &mut [i8]) {
    let g = &a.geom;
    let taps = if T > 0 { T } else { g.kh * g.kw };
    let c = g.output.c;
    let mut toff = [0usize; MAX_TAPS];
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            toff[ky * g.kw + kx] = (ky * g.dh * g.input.w + kx * g.dw) * c;
        }
    }
    let (ylo, yhi) = driver::interior_y(g);
    let (xlo, xhi) = driver::interior_x(g);
    let (ih, iw) = (g.input.h as isize, g.input.w as isize);
    // SAFETY: AVX-512 per the contract. Input reads: interior pixels read taps inside the image
    // (`interior_[xy]`), 32 bytes only for full blocks (`c0 + 32 ≤ c`) and masked to the valid
    // channels otherwise; border pixels check every tap. Output writes are masked to the valid
    // channels of one output pixel, inside `out` (checked length).
    unsafe {
        let o = Out {
            zp: _mm512_set1_epi16(a.q.zero_point as i16),
            lo: _mm512_set1_epi16(a.q.min.clamp(-128, 127) as i16),
            hi: _mm512_set1_epi16(a.q.max.clamp(-128, 127) as i16),
        };
        let zpv = _mm512_set1_epi16(a.input_zp as i8 as i16);
        let mut blk = Block {
            w: [_mm512_setzero_si512(); MAX_TAPS],
            bias: [_mm512_setzero_si512(); 2],
            rq: [Rq16 { m: _mm512_setzero_si512(), s: _mm512_setzero_si512(), fast: false }; 2],
            mask: 0,
        };
        // 16 channels, horizontal stride 1: two neighbouring interior pixels fill one register
        // (their windows are 16 bytes apart), with the block constants duplicated
        let pairs = c == 16 && g.sw == 1;
        // 3×3, undilated, stride 1 or 2: interior rows by sliding columns (`row3x3`)
        let rows3 = T == 9 && g.dh == 1 && g.dw == 1 && (g.sw == 1 || g.sw == 2) && !pairs;
        let z = _mm512_setzero_si512();
        let wz = W3 { p_lo: [z; 3], p_hi: [z; 3], s_lo: [z; 3], s_hi: [z; 3] };
        let mut blk2 = Block { w: blk.w, bias: blk.bias, rq: blk.rq, mask: 0 };
        let inp = a.input.as_ptr();
        let outp = out.as_mut_ptr();
        for n in 0..g.output.n {
            let mut y0 = 0;
            while y0 < g.output.h {
                let y1 = (y0 + BAND).min(g.output.h);
                let mut c0 = 0;
                while c0 < c {
                    block(a, taps, c0, false, &mut blk);
                    if pairs {
                        block(a, taps, 0, true, &mut blk2);
                    }
                    let full = c0 + 32 <= c;
                    let wv = if rows3 { w3(a, c0, blk.mask) } else { wz };
                    for oy in y0..y1 {
                        let iy0 = (oy * g.sh) as isize - g.pad_top as isize;
                        let orow = (n * g.output.h + oy) * g.output.w;
                        let yin = oy >= ylo && oy < yhi;
                        let (rlo, rhi) = if yin && xlo < xhi { (xlo, xhi) } else { (0, 0) };
                        for ox in (0..rlo).chain(rhi.max(rlo)..g.output.w) {
                            let ix0 = (ox * g.sw) as isize - g.pad_left as isize;
                            let (lo, hi) = accumulate!(taps, &blk, |t| {
                                let (ky, kx) = (t / g.kw, t % g.kw);
                                let iy = iy0 + (ky * g.dh) as isize;
                                let ix = ix0 + (kx * g.dw) as isize;
                                if iy >= 0 && iy < ih && ix >= 0 && ix < iw {
                                    let off = ((n as isize * ih + iy) * iw + ix) as usize * c + c0;
                                    ld::<false>(inp.add(off), blk.mask)
                                } else {
                                    zpv
                                }
                            });
                            store(lo, hi, &blk, &o, outp.add((orow + ox) * c + c0));
                        }
                        if rlo < rhi {
                            let base = ((n * g.input.h + iy0 as usize) * g.input.w + rlo * g.sw - g.pad_left) * c + c0;
                            let step = g.sw * c;
                            let mut j0 = 0;
                            if pairs {
                                while j0 + 2 <= rhi - rlo {
                                    let p = inp.add(base + j0 * step);
                                    let (lo, hi) = accumulate!(taps, &blk2, |t| ld::<true>(p.add(toff[t]), blk2.mask));
                                    store(lo, hi, &blk2, &o, outp.add((orow + rlo + j0) * c));
                                    j0 += 2;
                                }
                            }
                            if rows3 && j0 < rhi - rlo {
                                let (p, d, n) = (inp.add(base + j0 * step), outp.add((orow + rlo + j0) * c + c0), rhi - rlo - j0);
                                let row = g.input.w * c;
                                match (g.sw, full) {
                                    (1, true) => row3x3::<1, true>(p, row, c, n, &wv, &blk, &o, d),
                                    (1, false) => row3x3::<1, false>(p, row, c, n, &wv, &blk, &o, d),
                                    (_, true) => row3x3::<2, true>(p, row, c, n, &wv, &blk, &o, d),
                                    (_, false) => row3x3::<2, false>(p, row, c, n, &wv, &blk, &o, d),
                                }
                                continue;
                            }
                            for (j, ox) in (rlo..rhi).enumerate().skip(j0) {
                                let p = inp.add(base + j * step);
                                let (lo, hi) = if full {
                                    accumulate!(taps, &blk, |t| ld::<true>(p.add(toff[t]), blk.mask))
                                } else {
                                    accumulate!(taps, &blk, |t| ld::<false>(p.add(toff[t]), blk.mask))
                                };
                                store(lo, hi, &blk, &o, outp.add((orow + ox) * c + c0));
                            }
                        }
                    }
                    c0 += 32;
                }
                y0 = y1;
            }
        }
    }
}
