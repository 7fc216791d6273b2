//! aarch64 kernel tables.
//!
//! | variant | level | features | GEMM / conv micro-kernel | depthwise |
//! |---|---|---|---|---|
//! | `neon` | [`Level::Neon`] | NEON | `smull`/`smlal`/`sadalp`, 4 rows × 8 ch (Cortex-A53 class) | NEON |
//! | `dotprod` | [`Level::NeonDot`] | NEON, DotProd | `sdot` by element, 4 rows × 16 ch; first layers by direct row convolution | NEON |
//! | `i8mm` | [`Level::NeonI8mm`] | NEON, DotProd, I8MM | `smmla`, 8 rows × 8 ch (`sdot` for 1 row or K < 128) | NEON |
//!
//! Every level shares the NEON elementwise addition (`smull`/`smlal` on the 16-bit digits of
//! [`driver::AddFast`]) and the portable multiplication and max / global average pooling of
//! [`driver`]: `dotprod` starts from the `neon` table and overrides GEMM and convolution, `i8mm`
//! starts from `dotprod` and overrides them again; entries no level overrides come from the
//! reference ([`GENERIC`]).
//!
//! `sdot` and `smmla` are emitted with `asm!` (their intrinsics are unstable) inside functions
//! compiled with the `dotprod` / `i8mm` target features; the tables holding them are handed out
//! only when [`Features::cpu`] reports those features, so a Cortex-A53 never executes them.
//!
//! Tested under qemu-user with `QEMU_CPU=cortex-a53` (NEON only), `cortex-a76` (DotProd) and
//! `max` (DotProd + I8MM), never on real hardware by this crate's test suite.

mod dot;
mod neon;

use crate::dispatch::{Kernels, Level, Variant, GENERIC, SCALAR};
use crate::driver;
use crate::features::Features;
use crate::params::Gemm;
use crate::reference::conv::ConvArgs;

const REQ_NEON: Features = Level::Neon.required();
const REQ_DOT: Features = Level::NeonDot.required();
const REQ_I8MM: Features = Level::NeonI8mm.required();

// --- NEON --------------------------------------------------------------------------------------
fn conv_neon(a: &ConvArgs<'_>, out: &mut [i8], scratch: &mut [i8]) {
    driver::conv2d_im2col(a, out, scratch, neon::gemm, None)
}
// NEON is part of the aarch64 baseline: the portable drivers need no `#[target_feature]` wrapper
// and are listed directly.
// every entry is overridden; `..GENERIC` makes a new entry default to the reference
#[allow(clippy::needless_update)]
static NEON: Kernels = Kernels {
    level: Level::Neon,
    gemm: neon::gemm,
    conv2d: conv_neon,
    depthwise2d: neon::depthwise,
    add: neon::add,
    mul: driver::mul,
    max_pool: driver::max_pool,
    avg_pool: driver::avg_pool,
    ..GENERIC
};

// --- DotProd -----------------------------------------------------------------------------------
fn gemm_dot(g: &Gemm<'_>, c: &mut [i8], ldc: usize) {
    #[target_feature(enable = "dotprod")]
    unsafe fn inner(g: &Gemm<'_>, c: &mut [i8], ldc: usize) {
        // SAFETY: compiled with DotProd, which the caller checked.
        unsafe { dot::gemm_dot(g, c, ldc) }
    }
    debug_assert!(Features::cpu().contains(REQ_DOT));
    // SAFETY: reachable only through the `dotprod` table, which dispatch hands out after checking
    // that `Features::cpu()` contains DotProd.
    unsafe { inner(g, c, ldc) }
}
/// The direct convolution for short kernel rows with `sdot` tiles; `false` when it does not
/// apply (see [`crate::rowconv::conv`]).
fn rows_dot(a: &ConvArgs<'_>, out: &mut [i8], scratch: &mut [i8]) -> bool {
    #[target_feature(enable = "dotprod")]
    unsafe fn inner(a: &ConvArgs<'_>, out: &mut [i8], scratch: &mut [i8]) -> bool {
        // SAFETY: compiled with DotProd, which the caller checked.
        unsafe { crate::rowconv::conv::<dot::DotRows>(a, out, scratch) }
    }
    debug_assert!(Features::cpu().contains(REQ_DOT));
    // SAFETY: reachable only through the `dotprod` and `i8mm` tables, which dispatch hands out
    // after checking that `Features::cpu()` contains DotProd.
    unsafe { inner(a, out, scratch) }
}
fn conv_dot(a: &ConvArgs<'_>, out: &mut [i8], scratch: &mut [i8]) {
    if !rows_dot(a, out, scratch) {
        driver::conv2d_im2col(a, out, scratch, gemm_dot, None)
    }
}
static DOT: Kernels = Kernels { level: Level::NeonDot, gemm: gemm_dot, conv2d: conv_dot, ..NEON };

// --- I8MM --------------------------------------------------------------------------------------
/// Shortest reduction for which the `smmla` GEMM runs; shorter ones (first layers, small-K 1×1
/// layers) use `sdot`, whose 4-row × 16-channel tiles waste less on them. Executed instructions
/// under qemu (`kernel_once`, M×K×N): 784×12×16 sdot 77 k / smmla 137 k; 3136×24×144 3.37 M /
/// 3.77 M; 196×96×576 1.53 M / 1.54 M; 784×144×32 448 k / 427 k.
const MMLA_MIN_K: usize = 128;
fn gemm_i8mm(g: &Gemm<'_>, c: &mut [i8], ldc: usize) {
    #[target_feature(enable = "dotprod,i8mm")]
    unsafe fn inner(g: &Gemm<'_>, c: &mut [i8], ldc: usize) {
        // SAFETY: compiled with DotProd and I8MM, which the caller checked.
        unsafe {
            if g.k >= MMLA_MIN_K {
                dot::gemm_mmla(g, c, ldc)
            } else {
                dot::gemm_dot(g, c, ldc)
            }
        }
    }
    debug_assert!(Features::cpu().contains(REQ_I8MM));
    // SAFETY: reachable only through the `i8mm` table, which dispatch hands out after checking
    // that `Features::cpu()` contains DotProd and I8MM.
    unsafe { inner(g, c, ldc) }
}
fn conv_i8mm(a: &ConvArgs<'_>, out: &mut [i8], scratch: &mut [i8]) {
    if !rows_dot(a, out, scratch) {
        driver::conv2d_im2col(a, out, scratch, gemm_i8mm, None)
    }
}
static I8MM: Kernels = Kernels { level: Level::NeonI8mm, gemm: gemm_i8mm, conv2d: conv_i8mm, ..DOT };

/// Every table compiled for aarch64 (see [`crate::dispatch::variants`]).
pub(crate) static VARIANTS: [Variant; 4] = [
    Variant::new("scalar", Level::Scalar, Features::empty(), true, "", &SCALAR),
    Variant::new("neon", Level::Neon, REQ_NEON, true, "", &NEON),
    Variant::new("dotprod", Level::NeonDot, REQ_DOT, true, "", &DOT),
    Variant::new("i8mm", Level::NeonI8mm, REQ_I8MM, true, "", &I8MM),
];

/// Run `iters` iterations of 16 independent `sdot` (256 multiply-accumulates per iteration) and
/// return a checksum; `None` when the CPU lacks DotProd. Benchmarks time it for the peak.
pub fn sdot_peak(iters: u64, seed: i32) -> Option<i32> {
    if !Features::cpu().contains(REQ_DOT) {
        return None;
    }
    // SAFETY: the CPU has DotProd (checked above).
    Some(unsafe { dot::peak_sdot(iters, seed) })
}

/// Multiply-accumulates per iteration of [`sdot_peak`].
pub const SDOT_PEAK_MACS_PER_ITER: u64 = 16 * 16;
