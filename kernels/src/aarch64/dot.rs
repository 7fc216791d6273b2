//! Dot-product (`sdot`, Armv8.2 DotProd) and int8 matrix-multiply (`smmla`, Armv8.6 I8MM) GEMM
//! micro-kernels.
//!
//! `vdotq_laneq_s32` and `vmmlaq_s32` are unstable in Rust, so both instructions are emitted with
//! `asm!` inside functions compiled with the matching target feature. Both multiply signed bytes
//! exactly into 32-bit accumulators (no 16-bit intermediate), so `-128` needs no special case.
//!
//! * `sdot`: the packed line's 16 bytes of 4 channels × 4 k are one `.16b` operand, the 4
//!   activations of a row are a `.4b[lane]` element of a register holding 16 k of that row;
//!   tiles of 4 rows × 16 channels (16 accumulators).
//! * `smmla`: a 2×8 block of A (two rows, 8 k) times an 8×2 block of B (two channels, 8 k) adds a
//!   2×2 block of C. Two packed lines (k and k+4) are zipped by 32-bit words into
//!   `[c0 k0..8, c1 k0..8]` operands; tiles of 8 rows × 8 channels (16 accumulators).

use super::neon::{pack16, requant4, store_bytes, word, OutC, Rq4};
use crate::driver::{self, ChannelBlock};
use crate::params::Gemm;
use core::arch::aarch64::*;
use core::arch::asm;

/// `acc.4s += b.16b · a.4b[lane]` (`sdot` by element).
macro_rules! sdot {
    ($acc:expr, $b:expr, $a:expr, $lane:literal) => {
        asm!(
            concat!("sdot {acc:v}.4s, {b:v}.16b, {a:v}.4b[", $lane, "]"),
            acc = inout(vreg) $acc,
            b = in(vreg) $b,
            a = in(vreg) $a,
            options(pure, nomem, nostack, preserves_flags)
        )
    };
}

/// Rows per `sdot` tile.
const MR_DOT: usize = 4;

/// `sdot` of one packed line (16 channels) against lane `LANE` of each row's A register.
///
/// # Safety
/// DotProd; `bp` readable for 64 bytes.
#[inline(always)]
unsafe fn dot_line<const R: usize, const LANE: usize>(acc: &mut [[int32x4_t; 4]; R], bp: *const i8, av: &[int8x16_t; R]) {
    // SAFETY: NEON is part of the target configuration; 64 readable bytes at `bp`; `sdot` needs
    // DotProd (contract); the asm only reads and writes the named registers.
    unsafe {
        let b = [vld1q_s8(bp), vld1q_s8(bp.add(16)), vld1q_s8(bp.add(32)), vld1q_s8(bp.add(48))];
        for r in 0..R {
            for q in 0..4 {
                match LANE {
                    0 => sdot!(acc[r][q], b[q], av[r], "0"),
                    1 => sdot!(acc[r][q], b[q], av[r], "1"),
                    2 => sdot!(acc[r][q], b[q], av[r], "2"),
                    _ => sdot!(acc[r][q], b[q], av[r], "3"),
                }
            }
        }
    }
}

/// The accumulators' initial values: the block's 16 biases.
///
/// # Safety
/// NEON (the target configuration).
#[inline(always)]
unsafe fn bias16(cb: &ChannelBlock) -> [int32x4_t; 4] {
    // SAFETY: `ChannelBlock` holds 16 biases.
    unsafe {
        let p = cb.bias.as_ptr();
        [vld1q_s32(p), vld1q_s32(p.add(4)), vld1q_s32(p.add(8)), vld1q_s32(p.add(12))]
    }
}

/// Requantize `R` rows × 16 channels of accumulators and store row `r` at `c + r·ldc`
/// (`min(valid, 16)` bytes each).
///
/// # Safety
/// NEON; `c` writable for `min(valid, 16)` bytes at `r·ldc` for every `r < R`.
#[inline(always)]
unsafe fn store16<const R: usize>(acc: &[[int32x4_t; 4]; R], cb: &ChannelBlock, oc: &OutC, c: *mut i8, ldc: usize, valid: usize) {
    // SAFETY: per the contract; `ChannelBlock` holds 16 multipliers and shifts.
    unsafe {
        let (m, s) = (cb.mult.as_ptr(), cb.shift.as_ptr());
        let rq = [Rq4::load(m, s), Rq4::load(m.add(4), s.add(4)), Rq4::load(m.add(8), s.add(8)), Rq4::load(m.add(12), s.add(12))];
        for (r, ar) in acc.iter().enumerate() {
            let v = [requant4(ar[0], &rq[0], oc), requant4(ar[1], &rq[1], oc), requant4(ar[2], &rq[2], oc), requant4(ar[3], &rq[3], oc)];
            store_bytes(c.add(r * ldc), pack16(v), valid);
        }
    }
}

/// One `sdot` tile: `R` rows × 16 channels.
///
/// # Safety
/// DotProd; `a` readable for `r·lda + k` bytes (`r < R`); `b` points to the first of
/// `ceil(k/4)` packed lines; `c` writable for `min(valid, 16)` bytes at `r·ldc`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn dot_tile<const R: usize>(
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
    // SAFETY: A reads: 16 bytes at `16·j` only while `16·j + 16 ≤ k`, then words at `4l` with
    // `4l + 4 ≤ k` and the `k % 4` tail; B lines `< ceil(k/4)`; C writes `min(valid, 16)` bytes.
    unsafe {
        let mut acc = [bias16(cb); R];
        let mut av = [vdupq_n_s8(0); R];
        let k16 = k / 16;
        for j in 0..k16 {
            for (r, x) in av.iter_mut().enumerate() {
                *x = vld1q_s8(a.add(r * lda + 16 * j));
            }
            let bp = b.add(j * 256);
            dot_line::<R, 0>(&mut acc, bp, &av);
            dot_line::<R, 1>(&mut acc, bp.add(64), &av);
            dot_line::<R, 2>(&mut acc, bp.add(128), &av);
            dot_line::<R, 3>(&mut acc, bp.add(192), &av);
        }
        let k4 = k.div_ceil(4);
        for l in 4 * k16..k4 {
            let rem = if 4 * l + 4 <= k { 0 } else { k % 4 };
            for (r, x) in av.iter_mut().enumerate() {
                *x = vreinterpretq_s8_s32(vdupq_n_s32(word(a.add(r * lda + 4 * l), rem)));
            }
            dot_line::<R, 0>(&mut acc, b.add(l * 64), &av);
        }
        store16(&acc, cb, oc, c, ldc, valid);
    }
}

/// `sdot` tiles of the direct convolution for short kernel rows ([`crate::rowconv`]): up to 4
/// pixels × 16 channels, signed activations (no flip) and `bias`; each line's word is duplicated
/// into all lanes and multiplied by element 0.
pub(crate) struct DotRows;

impl crate::rowconv::Tiles for DotRows {
    const U8: bool = false;
    const R: usize = MR_DOT;
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
        let oc = OutC::new(q);
        // SAFETY: the trait contract (DotProd: the caller is compiled with it), with `$r = r`.
        unsafe {
            match r {
                4 => rows_tile::<4>(src, step, offs, w, &cbs[0], &oc, c, ldc, valid),
                3 => rows_tile::<3>(src, step, offs, w, &cbs[0], &oc, c, ldc, valid),
                2 => rows_tile::<2>(src, step, offs, w, &cbs[0], &oc, c, ldc, valid),
                _ => rows_tile::<1>(src, step, offs, w, &cbs[0], &oc, c, ldc, valid),
            }
        }
    }
}

/// `R` output pixels × 16 channels of the direct convolution.
///
/// # Safety
/// DotProd; 4 readable bytes at every `src + r·step + offs[l]`; `offs.len()` 64-byte lines
/// readable at `w`; `c` writable for `min(valid, 16)` bytes at `r·ldc`, `r < R`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_tile<const R: usize>(
    src: *const i8,
    step: usize,
    offs: &[usize],
    w: *const [i8; 64],
    cb: &ChannelBlock,
    oc: &OutC,
    c: *mut i8,
    ldc: usize,
    valid: usize,
) {
    // SAFETY: per the contract; the asm only reads and writes the named registers.
    unsafe {
        let mut acc = [bias16(cb); R];
        let mut av = [vdupq_n_s8(0); R];
        for (l, &off) in offs.iter().enumerate() {
            for (r, x) in av.iter_mut().enumerate() {
                *x = vreinterpretq_s8_s32(vdupq_n_s32(src.add(r * step + off).cast::<i32>().read_unaligned()));
            }
            dot_line::<R, 0>(&mut acc, w.add(l).cast(), &av);
        }
        store16(&acc, cb, oc, c, ldc, valid);
    }
}

/// `sdot` quantized GEMM (signed activations, `bias`).
///
/// # Safety
/// The CPU supports DotProd and the caller is compiled with it.
#[inline(always)]
pub(crate) unsafe fn gemm_dot(g: &Gemm<'_>, c: &mut [i8], ldc: usize) {
    if !driver::check_gemm(g, c, ldc, false) {
        return;
    }
    let bstride = g.k.div_ceil(4) * 64;
    let oc = OutC::new(&g.q);
    for blk in 0..g.n.div_ceil(16) {
        let ch0 = blk * 16;
        let valid = (g.n - ch0).min(16);
        let cb = ChannelBlock::new(g.bias, &g.q, ch0, valid);
        let mut i = 0;
        while i < g.m {
            let rows = (g.m - i).min(MR_DOT);
            // SAFETY: validated by `check_gemm` (rows `i..i+rows ≤ m`, block `blk`, channels
            // `ch0 + valid ≤ n`); DotProd per the contract.
            unsafe {
                let bp = g.b.as_ptr().add(blk * bstride);
                let ap = g.a.as_ptr().add(i * g.lda);
                let cp = c.as_mut_ptr().add(i * ldc + ch0);
                match rows {
                    4 => dot_tile::<4>(ap, g.lda, g.k, bp, &cb, &oc, cp, ldc, valid),
                    3 => dot_tile::<3>(ap, g.lda, g.k, bp, &cb, &oc, cp, ldc, valid),
                    2 => dot_tile::<2>(ap, g.lda, g.k, bp, &cb, &oc, cp, ldc, valid),
                    _ => dot_tile::<1>(ap, g.lda, g.k, bp, &cb, &oc, cp, ldc, valid),
                }
            }
            i += rows;
        }
    }
}

/// `acc.4s += a.16b (2×8) · b.16b (8×2)ᵀ` (`smmla`).
macro_rules! smmla {
    ($acc:expr, $a:expr, $b:expr) => {
        asm!(
            "smmla {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) $acc,
            a = in(vreg) $a,
            b = in(vreg) $b,
            options(pure, nomem, nostack, preserves_flags)
        )
    };
}

/// Row pairs per `smmla` tile (8 rows).
const RP_MMLA: usize = 4;

/// One 8-deep step of the `smmla` tile: lines `p0` (k..k+4) and `p1` (k+4..k+8), channels
/// `8h..8h+8` (the pointers already include the `32·h` byte offset); `av[rp]` holds the two rows
/// of pair `rp`, 8 k each.
///
/// # Safety
/// I8MM; `p0` and `p1` readable for 32 bytes.
#[inline(always)]
unsafe fn mmla_step<const RP: usize>(acc: &mut [[int32x4_t; 4]; RP], p0: *const i8, p1: *const i8, av: &[int8x16_t; RP]) {
    // SAFETY: NEON is part of the target configuration; 32 readable bytes at both pointers;
    // `smmla` needs I8MM (contract).
    unsafe {
        let (x0, x1) = (vreinterpretq_s32_s8(vld1q_s8(p0)), vreinterpretq_s32_s8(vld1q_s8(p0.add(16))));
        let (y0, y1) = (vreinterpretq_s32_s8(vld1q_s8(p1)), vreinterpretq_s32_s8(vld1q_s8(p1.add(16))));
        // [c0 k0..4, c0 k4..8, c1 k0..4, c1 k4..8] = columns c0, c1 of the 8×2 operand
        let bm = [
            vreinterpretq_s8_s32(vzip1q_s32(x0, y0)),
            vreinterpretq_s8_s32(vzip2q_s32(x0, y0)),
            vreinterpretq_s8_s32(vzip1q_s32(x1, y1)),
            vreinterpretq_s8_s32(vzip2q_s32(x1, y1)),
        ];
        for rp in 0..RP {
            for cp in 0..4 {
                smmla!(acc[rp][cp], av[rp], bm[cp]);
            }
        }
    }
}

/// One `smmla` tile: `RP` row pairs (`rows ≤ 2·RP` real rows; missing rows repeat the last one
/// and are not stored) × 8 channels.
///
/// # Safety
/// I8MM; `a` readable for `r·lda + k` bytes (`r < rows`); `b` points to byte `32·h` of the first
/// of `ceil(k/4)` packed lines; `cb_off` indexes 8 lanes of `cb`; `c` writable for
/// `min(valid, 8)` bytes at `r·ldc` (`r < rows`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn mmla_tile<const RP: usize>(
    a: *const i8,
    lda: usize,
    rows: usize,
    k: usize,
    b: *const i8,
    cb: &ChannelBlock,
    cb_off: usize,
    oc: &OutC,
    c: *mut i8,
    ldc: usize,
    valid: usize,
) {
    // SAFETY: row pointers are clamped to `rows − 1`; A reads are 8 bytes at `8j` while
    // `8j + 8 ≤ k`, then the `< 8` remaining bytes one by one; B lines `< ceil(k/4)` (the second
    // line of the last step only when it exists); C writes `min(valid, 8)` bytes of rows `< rows`.
    unsafe {
        let mut rowp = [[a; 2]; RP];
        for (rp, pair) in rowp.iter_mut().enumerate() {
            for (h, p) in pair.iter_mut().enumerate() {
                *p = a.add((2 * rp + h).min(rows - 1) * lda);
            }
        }
        let mut acc = [[vdupq_n_s32(0); 4]; RP];
        let mut av = [vdupq_n_s8(0); RP];
        let k8 = k / 8;
        for j in 0..k8 {
            for (rp, x) in av.iter_mut().enumerate() {
                *x = vcombine_s8(vld1_s8(rowp[rp][0].add(8 * j)), vld1_s8(rowp[rp][1].add(8 * j)));
            }
            mmla_step(&mut acc, b.add(2 * j * 64), b.add((2 * j + 1) * 64), &av);
        }
        let rem = k - 8 * k8;
        if rem > 0 {
            for (rp, x) in av.iter_mut().enumerate() {
                let mut buf = [0i8; 16];
                core::ptr::copy_nonoverlapping(rowp[rp][0].add(8 * k8), buf.as_mut_ptr(), rem);
                core::ptr::copy_nonoverlapping(rowp[rp][1].add(8 * k8), buf.as_mut_ptr().add(8), rem);
                *x = vld1q_s8(buf.as_ptr());
            }
            let zero = [0i8; 32];
            let p1 = if rem > 4 { b.add((2 * k8 + 1) * 64) } else { zero.as_ptr() };
            mmla_step(&mut acc, b.add(2 * k8 * 64), p1, &av);
        }
        let bias0 = vld1q_s32(cb.bias.as_ptr().add(cb_off));
        let bias1 = vld1q_s32(cb.bias.as_ptr().add(cb_off + 4));
        let rq0 = Rq4::load(cb.mult.as_ptr().add(cb_off), cb.shift.as_ptr().add(cb_off));
        let rq1 = Rq4::load(cb.mult.as_ptr().add(cb_off + 4), cb.shift.as_ptr().add(cb_off + 4));
        for (rp, ap) in acc.iter().enumerate() {
            // acc[rp][cp] = [r0 c2cp, r0 c2cp+1, r1 c2cp, r1 c2cp+1]
            let x: [int64x2_t; 4] =
                [vreinterpretq_s64_s32(ap[0]), vreinterpretq_s64_s32(ap[1]), vreinterpretq_s64_s32(ap[2]), vreinterpretq_s64_s32(ap[3])];
            let r0a = vreinterpretq_s32_s64(vzip1q_s64(x[0], x[1]));
            let r1a = vreinterpretq_s32_s64(vzip2q_s64(x[0], x[1]));
            let r0b = vreinterpretq_s32_s64(vzip1q_s64(x[2], x[3]));
            let r1b = vreinterpretq_s32_s64(vzip2q_s64(x[2], x[3]));
            for (half, (xa, xb)) in [(r0a, r0b), (r1a, r1b)].into_iter().enumerate() {
                let r = 2 * rp + half;
                if r >= rows {
                    break;
                }
                let v0 = requant4(vaddq_s32(xa, bias0), &rq0, oc);
                let v1 = requant4(vaddq_s32(xb, bias1), &rq1, oc);
                let bytes = pack16([v0, v1, v0, v1]);
                if valid >= 8 {
                    vst1_s8(c.add(r * ldc), vget_low_s8(bytes));
                } else {
                    store_bytes(c.add(r * ldc), bytes, valid);
                }
            }
        }
    }
}

/// `smmla` quantized GEMM (signed activations, `bias`); single rows go to the `sdot` kernel.
///
/// # Safety
/// The CPU supports I8MM and DotProd and the caller is compiled with both.
#[inline(always)]
pub(crate) unsafe fn gemm_mmla(g: &Gemm<'_>, c: &mut [i8], ldc: usize) {
    if g.m == 1 {
        // SAFETY: DotProd per the contract.
        return unsafe { gemm_dot(g, c, ldc) };
    }
    if !driver::check_gemm(g, c, ldc, false) {
        return;
    }
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
                let rows = (g.m - i).min(2 * RP_MMLA);
                // SAFETY: validated by `check_gemm` (rows `i..i+rows ≤ m`, block `blk`, channels
                // `c0 + valid ≤ n`); I8MM per the contract.
                unsafe {
                    let bp = g.b.as_ptr().add(blk * bstride + 32 * h);
                    let ap = g.a.as_ptr().add(i * g.lda);
                    let cp = c.as_mut_ptr().add(i * ldc + c0);
                    match rows.div_ceil(2) {
                        4 => mmla_tile::<4>(ap, g.lda, rows, g.k, bp, &cb, 8 * h, &oc, cp, ldc, valid),
                        3 => mmla_tile::<3>(ap, g.lda, rows, g.k, bp, &cb, 8 * h, &oc, cp, ldc, valid),
                        2 => mmla_tile::<2>(ap, g.lda, rows, g.k, bp, &cb, 8 * h, &oc, cp, ldc, valid),
                        _ => mmla_tile::<1>(ap, g.lda, rows, g.k, bp, &cb, 8 * h, &oc, cp, ldc, valid),
                    }
                }
                i += rows;
            }
        }
    }
}

/// A tight loop of `16 · iters` independent `sdot` (16 MACs each); returns a checksum.
///
/// # Safety
/// The CPU supports DotProd.
#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn peak_sdot(iters: u64, seed: i32) -> i32 {
    let a = vreinterpretq_s8_s32(vdupq_n_s32(seed));
    let b = vreinterpretq_s8_s32(vdupq_n_s32(seed.rotate_left(7)));
    let mut acc = [vdupq_n_s32(0); 16];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            // SAFETY: DotProd per the contract; register-only asm.
            unsafe { sdot!(*x, b, a, "0") };
        }
    }
    let mut s = vdupq_n_s32(0);
    for x in acc {
        s = vaddq_s32(s, x);
    }
    vaddvq_s32(s)
}
