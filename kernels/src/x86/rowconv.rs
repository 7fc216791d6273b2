//! x86 register tiles of the direct convolution for short kernel rows ([`crate::rowconv`]):
//! AVX-512 VNNI zmm, and 256-bit (AVX-VNNI, its AVX-512VL stand-in, AVX2 emulation).

use super::avx2::{pack16, requant8, store_bytes, OutC, Rq8};
use super::vnni::{store512, Dot256, MR256};
use crate::driver::ChannelBlock;
use crate::rowconv::Tiles;
use core::arch::x86_64::*;

/// AVX-512 VNNI tiles: up to 8 pixels × 32 channels (zmm accumulators), requantized by the
/// GEMM's [`store512`].
pub(crate) struct Zmm;

impl Tiles for Zmm {
    const U8: bool = true;
    const R: usize = 8;
    const NB: usize = 2;

    #[inline(always)]
    unsafe fn tile(
        r: usize,
        nb: usize,
        src: *const i8,
        step: usize,
        offs: &[usize],
        w: *const [i8; 64],
        lines: usize,
        cbs: &[ChannelBlock],
        q: &crate::params::OutQuant<'_>,
        c: *mut i8,
        ldc: usize,
        valid: usize,
    ) {
        macro_rules! go {
            ($r:literal, $nb:literal) => {{
                let cb: &[ChannelBlock; $nb] = cbs[..$nb].try_into().unwrap_or_else(|_| unreachable!());
                // SAFETY: the trait contract, with `$r = r`, `$nb = nb`.
                unsafe { tile512::<$r, $nb>(src, step, offs, w, lines, cb, q, c, ldc, valid) }
            }};
        }
        macro_rules! rows {
            ($nb:literal) => {
                match r {
                    8 => go!(8, $nb),
                    7 => go!(7, $nb),
                    6 => go!(6, $nb),
                    5 => go!(5, $nb),
                    4 => go!(4, $nb),
                    3 => go!(3, $nb),
                    2 => go!(2, $nb),
                    _ => go!(1, $nb),
                }
            };
        }
        if nb == 2 {
            rows!(2)
        } else {
            rows!(1)
        }
    }
}

/// `R` output pixels × `NB` blocks of 16 channels: words at `src + r·step + offs[l]`, weight
/// line `l` of block `j` at `w + j·lines + l`.
///
/// # Safety
/// AVX-512F/BW/VL/VNNI; 4 readable bytes at every `src + r·step + offs[l]`; `NB · lines` lines
/// readable at `w` (64-byte aligned); `c` writable for `valid` bytes at `r·ldc`, `r < R`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile512<const R: usize, const NB: usize>(
    src: *const i8,
    step: usize,
    offs: &[usize],
    w: *const [i8; 64],
    lines: usize,
    cbs: &[ChannelBlock; NB],
    q: &crate::params::OutQuant<'_>,
    c: *mut i8,
    ldc: usize,
    valid: usize,
) {
    // SAFETY: AVX-512 per the contract; every read and write is one the contract allows.
    unsafe {
        let mut init = [_mm512_setzero_si512(); NB];
        for j in 0..NB {
            init[j] = _mm512_load_si512(cbs[j].bias.as_ptr().cast());
        }
        let mut acc = [init; R];
        for (l, &off) in offs.iter().enumerate() {
            let mut bv = [_mm512_setzero_si512(); NB];
            for (j, b) in bv.iter_mut().enumerate() {
                *b = _mm512_load_si512(w.add(j * lines + l).cast());
            }
            for (r, ar) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_epi32(src.add(r * step + off).cast::<i32>().read_unaligned());
                for j in 0..NB {
                    ar[j] = _mm512_dpbusd_epi32(ar[j], av, bv[j]);
                }
            }
        }
        store512::<R, NB>(acc, cbs, q, c, ldc, valid);
    }
}

/// 256-bit tiles (AVX-VNNI, its AVX-512VL stand-in, or AVX2's exact emulation, by `D`): up to 6
/// pixels × 16 channels (two ymm accumulators each), requantized as the 256-bit GEMM does.
pub(crate) struct Ymm<D>(core::marker::PhantomData<D>);

impl<D: Dot256> Tiles for Ymm<D> {
    const U8: bool = true;
    const R: usize = MR256;
    const NB: usize = 1;

    #[inline(always)]
    unsafe fn tile(
        r: usize,
        _nb: usize,
        src: *const i8,
        step: usize,
        offs: &[usize],
        w: *const [i8; 64],
        _lines: usize,
        cbs: &[ChannelBlock],
        q: &crate::params::OutQuant<'_>,
        c: *mut i8,
        ldc: usize,
        valid: usize,
    ) {
        macro_rules! go {
            ($r:literal) => {
                // SAFETY: the trait contract, with `$r = r`, one block.
                unsafe { tile256::<D, $r>(src, step, offs, w, &cbs[0], q, c, ldc, valid) }
            };
        }
        match r {
            6 => go!(6),
            5 => go!(5),
            4 => go!(4),
            3 => go!(3),
            2 => go!(2),
            _ => go!(1),
        }
    }
}

/// `R` output pixels × 16 channels with ymm accumulators.
///
/// # Safety
/// AVX2 and the encoding `D`; 4 readable bytes at every `src + r·step + offs[l]`; `offs.len()`
/// lines readable at `w` (64-byte aligned); `c` writable for `min(valid, 16)` bytes at `r·ldc`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile256<D: Dot256, const R: usize>(
    src: *const i8,
    step: usize,
    offs: &[usize],
    w: *const [i8; 64],
    cb: &ChannelBlock,
    q: &crate::params::OutQuant<'_>,
    c: *mut i8,
    ldc: usize,
    valid: usize,
) {
    // SAFETY: AVX2 and `D` per the contract; every read and write is one the contract allows.
    unsafe {
        let b0 = _mm256_load_si256(cb.bias.as_ptr().cast());
        let b1 = _mm256_load_si256(cb.bias.as_ptr().add(8).cast());
        let mut acc = [[b0, b1]; R];
        for (l, &off) in offs.iter().enumerate() {
            let w0 = _mm256_load_si256(w.add(l).cast());
            let w1 = _mm256_load_si256(w.add(l).cast::<i8>().add(32).cast());
            for (r, ar) in acc.iter_mut().enumerate() {
                let av = _mm256_set1_epi32(src.add(r * step + off).cast::<i32>().read_unaligned());
                ar[0] = D::dpbusd(ar[0], av, w0);
                ar[1] = D::dpbusd(ar[1], av, w1);
            }
        }
        let oc = OutC::new(q);
        let rq0 = Rq8::load(cb.mult.as_ptr(), cb.shift.as_ptr());
        let rq1 = Rq8::load(cb.mult.as_ptr().add(8), cb.shift.as_ptr().add(8));
        for (r, ar) in acc.iter().enumerate() {
            let bytes = pack16(requant8(ar[0], &rq0, &oc), requant8(ar[1], &rq1, &oc));
            store_bytes(c.add(r * ldc), bytes, valid);
        }
    }
}
