//! Direct convolution for layers with short kernel rows (`kw · cin ≤ 16`): the first layer of a
//! network on a grayscale or RGB image, where im2col spends more time gathering a few bytes per
//! pixel than the GEMM spends on them.
//!
//! For each output row, the `kh` input rows under it are copied once (horizontal padding filled
//! with the input zero point; XOR `0x80` for ISAs whose dot product wants unsigned activations)
//! into `scratch`, each followed by 4 spare bytes. A kernel row `ky` of output pixel `x` is then
//! the `kw · cin` contiguous bytes at `row[ky] + x · sw · cin`, read as `ceil(kw · cin / 4)`
//! unaligned 32-bit words and broadcast straight into a 4-way dot product (`vpdpbusd`, `sdot`).
//! The weights are re-laid once per call (on the stack) in the same order, `(ky, 4-byte word)`,
//! with zeros for the bytes past `kw · cin` in each word: the activation bytes read there (the
//! next kernel row's bytes or the spare bytes) are multiplied by zero. `Σw` is unchanged, so the
//! packed `bias` (or `bias_u8` for flipped activations) applies as it is, and the accumulators
//! are requantized as in the GEMMs: the result is the reference's, bit for bit.
//!
//! The register tiles are per ISA ([`Tiles`]): `x86::rowconv` (zmm, ymm VNNI, AVX2) and
//! `aarch64::dot` (`sdot`).
//!
//! Rows longer than the scratch allows are done in segments of output pixels.

use crate::driver::{self, ChannelBlock};
use crate::pack;
use crate::params::Conv2d;
use crate::reference::conv::ConvArgs;

/// Most reduction lines (`kh · ceil(kw · cin / 4)`) a layer may have to run here.
const MAX_LINES: usize = 32;
/// Blocks of 16 output channels whose weights are re-laid at once.
const GROUP_BLOCKS: usize = 4;

/// Weight lines of up to [`GROUP_BLOCKS`] blocks: line `l` of block `j` at `j · lines + l`.
#[repr(C, align(64))]
struct Lines([[i8; 64]; GROUP_BLOCKS * MAX_LINES]);

/// Whether [`conv`] runs this convolution (one group, no horizontal dilation, kernel rows of
/// at most 16 bytes, at most [`MAX_LINES`] words per output value, not a plain 1×1 GEMM).
pub(crate) fn applies(g: &Conv2d) -> bool {
    let span = g.kw * g.input.c;
    let pointwise = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pad_top == 0 && g.pad_left == 0;
    g.groups == 1 && g.dw == 1 && span > 0 && span <= 16 && g.kh * span.div_ceil(4) <= MAX_LINES && !pointwise
}

/// Output pixels per segment so that `kh` rows of `((p − 1)·sw + kw)·cin + 4` bytes fit in
/// `scratch_len` bytes (0: not even one pixel fits).
pub(crate) fn segment_pixels(g: &Conv2d, scratch_len: usize) -> usize {
    let span = g.kw * g.input.c;
    let step = g.sw * g.input.c;
    let per = scratch_len / g.kh.max(1);
    if per < span + 4 || step == 0 {
        return 0;
    }
    ((per - 4 - span) / step + 1).min(g.output.w)
}

/// A register tile of `r` output pixels × `nb` blocks of 16 channels (`nb ≤ NB`), for one ISA.
pub(crate) trait Tiles {
    /// Whether activations are fed XOR `0x80` (unsigned) with `bias_u8`, else signed with `bias`.
    const U8: bool;
    /// Most pixels per tile.
    const R: usize;
    /// Most blocks per tile.
    const NB: usize;
    /// Accumulate the words at `src + i·step + offs[l]` (`i < r`) against weight line `l` of
    /// block `j` at `w + j·lines + l`, requantize with `cbs[j]`, store pixel `i` at `c + i·ldc`
    /// (`valid ≤ 16·nb` bytes).
    ///
    /// # Safety
    /// The ISA's features; `1 ≤ r ≤ R`, `1 ≤ nb ≤ NB`, `cbs.len() ≥ nb`; 4 readable bytes at
    /// every `src + i·step + offs[l]`; `nb · lines` 64-byte aligned lines readable at `w`; `c`
    /// writable for `valid` bytes at `i·ldc` for every `i < r`.
    #[allow(clippy::too_many_arguments)]
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
    );
}

/// Run the convolution directly with the tiles `T`; `false` (nothing written) when it does not
/// apply here ([`applies`], no `bias_u8` where needed, or too little scratch), and the caller goes through
/// im2col.
///
/// # Safety
/// The CPU has the features `T::tile` needs.
#[inline(always)]
pub(crate) unsafe fn conv<T: Tiles>(a: &ConvArgs<'_>, out: &mut [i8], scratch: &mut [i8]) -> bool {
    let g = &a.geom;
    let (cout, k) = (g.output.c, g.k());
    let p = segment_pixels(g, scratch.len());
    let bias = if T::U8 { a.bias_u8 } else { a.bias };
    if !applies(g) || g.output.is_empty() || bias.len() < cout || p == 0 {
        return false;
    }
    // The checks of the im2col driver, plus those of `check_gemm` on the parameters.
    let wlen = pack::packed_len(cout, k).expect("conv2d: packed size overflows");
    assert!(a.weights.len() >= wlen, "conv2d: weights length");
    assert!(a.bias.len() >= cout, "conv2d: bias length");
    assert!(out.len() >= g.output.len(), "conv2d: output length");
    assert!(a.input.len() >= g.input.len(), "conv2d: input length");
    let nq = if a.q.mult.len() == 1 { 1 } else { cout };
    assert!(a.q.mult.len() >= nq && a.q.shift.len() >= nq, "conv2d: mult/shift length");

    let (cin, span, step) = (g.input.c, g.kw * g.input.c, g.sw * g.input.c);
    let d4 = span.div_ceil(4);
    let lines = g.kh * d4;
    let rowlen = (p - 1) * step + span + 4;
    let xor = if T::U8 { 0x80u8 as i8 } else { 0 };
    let pad = (a.input_zp as i8) ^ xor;
    let mut offs = [0usize; MAX_LINES];
    for ky in 0..g.kh {
        for d in 0..d4 {
            offs[ky * d4 + d] = ky * rowlen + 4 * d;
        }
    }
    let offs = &offs[..lines];
    let mut w = Lines([[0; 64]; GROUP_BLOCKS * MAX_LINES]);
    let blocks = cout.div_ceil(16);
    let mut b0 = 0;
    while b0 < blocks {
        let nb = (blocks - b0).min(GROUP_BLOCKS);
        for j in 0..nb {
            for ky in 0..g.kh {
                for d in 0..d4 {
                    let line = &mut w.0[j * lines + ky * d4 + d];
                    for ch in 0..16 {
                        for e in 0..4 {
                            let kk = 4 * d + e;
                            // channels past `cout` are zero in the packed block
                            line[ch * 4 + e] = if kk < span { pack::get(a.weights, (b0 + j) * 16 + ch, ky * span + kk, k) } else { 0 };
                        }
                    }
                }
            }
        }
        let mut cbs = [ChannelBlock::new(bias, &a.q, b0 * 16, (cout - b0 * 16).min(16)); GROUP_BLOCKS];
        for (j, cb) in cbs.iter_mut().enumerate().take(nb).skip(1) {
            *cb = ChannelBlock::new(bias, &a.q, (b0 + j) * 16, (cout - (b0 + j) * 16).min(16));
        }
        for n in 0..g.output.n {
            for oy in 0..g.output.h {
                let mut x0 = 0;
                while x0 < g.output.w {
                    let pp = p.min(g.output.w - x0);
                    let cols = (pp - 1) * g.sw + g.kw;
                    let ix0 = (x0 * g.sw) as isize - g.pad_left as isize;
                    for ky in 0..g.kh {
                        let seg = &mut scratch[ky * rowlen..(ky + 1) * rowlen];
                        let iy = g.in_y(oy, ky);
                        if iy < 0 || iy as usize >= g.input.h {
                            seg.fill(pad);
                        } else {
                            driver::fill_row(a, n, iy as usize, ix0, &mut seg[..cols * cin], pad, xor);
                            seg[cols * cin..].fill(0);
                        }
                    }
                    let cbase = ((n * g.output.h + oy) * g.output.w + x0) * cout;
                    let mut x = 0;
                    while x < pp {
                        let r = (pp - x).min(T::R);
                        let mut j = 0;
                        while j < nb {
                            let t = (nb - j).min(T::NB);
                            let ch0 = (b0 + j) * 16;
                            let valid = (cout - ch0).min(16 * t);
                            // SAFETY: words read at `x'·step + offs[l]` (`x' < pp`) end before
                            // `(pp − 1)·step + span + 4 ≤ rowlen`, inside row `ky`'s segment of
                            // `scratch`; weight lines `j·lines .. (j + t)·lines` are in `w`; the
                            // stores write `valid` bytes at `(x + i)·cout + ch0` for `i < r`,
                            // inside the output (asserted above), `ch0 + valid ≤ cout`.
                            unsafe {
                                let src = scratch.as_ptr().add(x * step);
                                let wp = w.0.as_ptr().add(j * lines);
                                let c = out.as_mut_ptr().add(cbase + x * cout + ch0);
                                T::tile(r, t, src, step, offs, wp, lines, &cbs[j..], &a.q, c, cout, valid);
                            }
                            j += t;
                        }
                        x += r;
                    }
                    x0 += pp;
                }
            }
        }
        b0 += nb;
    }
    true
}
