//! Elementwise kernels: quantized addition without broadcasting, bit-exact with
//! [`crate::reference::eltwise::add`] by the 16-bit digit decomposition of [`AddFast`]
//! (two `vpmaddwd` on interleaved `(a, b)` pairs per 8 or 16 outputs).

use crate::driver::{add_one, AddFast};
use crate::reference::eltwise::AddArgs;
use core::arch::x86_64::*;

/// `floor(H' / 2^(s−16))` of 8 interleaved `(a, b)` pairs (see the module documentation).
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn r256(p: __m256i, m1: __m256i, m0: __m256i, ch: __m256i, cl: __m256i, sh: __m128i) -> __m256i {
    // SAFETY: AVX2 per the contract; register-only intrinsics.
    unsafe {
        let l = _mm256_add_epi32(_mm256_madd_epi16(p, m0), cl);
        let h = _mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(p, m1), ch), _mm256_srai_epi32::<16>(l));
        _mm256_sra_epi32(h, sh)
    }
}

/// [`r256`] on 16 pairs.
///
/// # Safety
/// AVX-512F/BW.
#[inline(always)]
unsafe fn r512(p: __m512i, m1: __m512i, m0: __m512i, ch: __m512i, cl: __m512i, sh: __m128i) -> __m512i {
    // SAFETY: AVX-512F/BW per the contract; register-only intrinsics.
    unsafe {
        let l = _mm512_add_epi32(_mm512_madd_epi16(p, m0), cl);
        let h = _mm512_add_epi32(_mm512_add_epi32(_mm512_madd_epi16(p, m1), ch), _mm512_srai_epi32::<16>(l));
        _mm512_sra_epi32(h, sh)
    }
}

/// AVX2 addition (16 elements per step).
///
/// # Safety
/// AVX2.
#[inline(always)]
pub(crate) unsafe fn add_avx2(args: &AddArgs<'_>, out: &mut [i8]) {
    let Some(f) = AddFast::new(args, out) else {
        crate::reference::eltwise::add(args, out);
        return;
    };
    let n = args.out_shape.len();
    let mut i = 0;
    // SAFETY: AVX2 per the contract; `AddFast::new` checked that `a`, `b` and `out` hold `n`
    // elements, and every access below is at `i + 16 ≤ n`.
    unsafe {
        let m1 = _mm256_set1_epi32(f.pair_hi());
        let m0 = _mm256_set1_epi32(f.pair_lo());
        let ch = _mm256_set1_epi32(f.ch);
        let cl = _mm256_set1_epi32(f.cl);
        let sh = _mm_cvtsi32_si128(f.sh);
        let zp = _mm256_set1_epi16(args.out_zp as i16);
        let lo = _mm256_set1_epi16(args.min.clamp(-128, 127) as i16);
        let hi = _mm256_set1_epi16(args.max.clamp(-128, 127) as i16);
        let (pa, pb, po) = (args.a.as_ptr(), args.b.as_ptr(), out.as_mut_ptr());
        while i + 16 <= n {
            let a = _mm256_cvtepi8_epi16(_mm_loadu_si128(pa.add(i).cast()));
            let b = _mm256_cvtepi8_epi16(_mm_loadu_si128(pb.add(i).cast()));
            // lanes [0-3 | 8-11] and [4-7 | 12-15]; packs restores the order per 128-bit half
            let v = _mm256_packs_epi32(
                r256(_mm256_unpacklo_epi16(a, b), m1, m0, ch, cl, sh),
                r256(_mm256_unpackhi_epi16(a, b), m1, m0, ch, cl, sh),
            );
            let v = _mm256_min_epi16(_mm256_max_epi16(_mm256_adds_epi16(v, zp), lo), hi);
            let bytes = _mm256_permute4x64_epi64::<0b1000>(_mm256_packs_epi16(v, v));
            _mm_storeu_si128(po.add(i).cast(), _mm256_castsi256_si128(bytes));
            i += 16;
        }
    }
    for (j, o) in out[..n].iter_mut().enumerate().skip(i) {
        *o = add_one(args, j);
    }
}

/// AVX-512BW addition (32 elements per step).
///
/// # Safety
/// AVX-512F/BW.
#[inline(always)]
pub(crate) unsafe fn add_avx512(args: &AddArgs<'_>, out: &mut [i8]) {
    let Some(f) = AddFast::new(args, out) else {
        crate::reference::eltwise::add(args, out);
        return;
    };
    let n = args.out_shape.len();
    let mut i = 0;
    // SAFETY: AVX-512F/BW per the contract; `AddFast::new` checked that `a`, `b` and `out` hold
    // `n` elements, and every access below is at `i + 32 ≤ n`.
    unsafe {
        let m1 = _mm512_set1_epi32(f.pair_hi());
        let m0 = _mm512_set1_epi32(f.pair_lo());
        let ch = _mm512_set1_epi32(f.ch);
        let cl = _mm512_set1_epi32(f.cl);
        let sh = _mm_cvtsi32_si128(f.sh);
        let zp = _mm512_set1_epi16(args.out_zp as i16);
        let lo = _mm512_set1_epi16(args.min.clamp(-128, 127) as i16);
        let hi = _mm512_set1_epi16(args.max.clamp(-128, 127) as i16);
        let (pa, pb, po) = (args.a.as_ptr(), args.b.as_ptr(), out.as_mut_ptr());
        while i + 32 <= n {
            let a = _mm512_cvtepi8_epi16(_mm256_loadu_si256(pa.add(i).cast()));
            let b = _mm512_cvtepi8_epi16(_mm256_loadu_si256(pb.add(i).cast()));
            let v = _mm512_packs_epi32(
                r512(_mm512_unpacklo_epi16(a, b), m1, m0, ch, cl, sh),
                r512(_mm512_unpackhi_epi16(a, b), m1, m0, ch, cl, sh),
            );
            let v = _mm512_min_epi16(_mm512_max_epi16(_mm512_adds_epi16(v, zp), lo), hi);
            _mm256_storeu_si256(po.add(i).cast(), _mm512_cvtepi16_epi8(v));
            i += 32;
        }
    }
    for (j, o) in out[..n].iter_mut().enumerate().skip(i) {
        *o = add_one(args, j);
    }
}
