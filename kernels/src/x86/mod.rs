//! x86_64 kernel tables.
//!
//! | variant | level | features | GEMM / conv micro-kernel | depthwise | add / pooling |
//! |---|---|---|---|---|---|
//! | `avx2` | [`Level::Avx2`] | AVX2 | `vpmaddwd` on sign-extended i16 (exact), 4 rows × 8 ch | AVX2, 16 ch | AVX2 |
//! | `avxvnni` | [`Level::AvxVnni`] | AVX2, AVX-VNNI | VEX `vpdpbusd` ymm, 6 rows × 16 ch | AVX2, 16 ch | AVX2 |
//! | `avx512vl-vnni256` | (stand-in) | AVX2, AVX-512F/VL/VNNI | the same source with EVEX `vpdpbusd` ymm | AVX2, 16 ch | AVX2 |
//! | `avx512vnni` | [`Level::Avx512Vnni`] | AVX2, AVX-512F/BW/VL/VNNI | `vpdpbusd` zmm, 8 rows × 32 ch | AVX-512 `vpdpwssd`, 32 ch (or 2 pixels × 16 ch) | AVX-512BW |
//!
//! Elementwise addition (no broadcasting) uses the 16-bit digit decomposition of
//! [`driver::AddFast`]; multiplication and max and global average pooling are the portable
//! [`driver::mul`], [`driver::max_pool`] and [`driver::avg_pool`] instantiated under the AVX2 and
//! AVX-512 target features (auto-vectorized).
//!
//! **Tables inherit.** Each table lists only what it compiles differently and takes the rest from
//! the table below it (`..AVX2`) or from the reference ([`GENERIC`]): the VNNI-256 tables
//! override GEMM and convolution (`vpdpbusd`) and depthwise and addition (compiled with VNNI,
//! LLVM fuses their `vpmaddwd` + `vpaddd` into `vpdpwssd`), and inherit AVX2's multiplication and
//! pooling, whose code is instruction for instruction the same under `avx2,avxvnni` (checked in
//! the release assembly, rustc 1.95). AVX-512 overrides every entry (its instantiations use zmm).
//!
//! **Hardware coverage.** The `avxvnni` variant (VEX encoding, Intel Alder Lake / N100 class)
//! was written on an AMD Zen 4 class host (AVX-512 VNNI, no AVX-VNNI; qemu 7.2 does not emulate
//! AVX-VNNI). Hosts that report both AVX-512 VNNI and AVX-VNNI (as the shared benchmark machine
//! did on 2026-12-02) run it in `kernels/tests/exact.rs` like every other level. Its source
//! is shared instruction for instruction with the `avx512vl-vnni256` stand-in, which *is* tested
//! against the reference; only the `vpdpbusd` encoding (and the register allocation for 16 instead
//! of 32 ymm registers) differs.
//!
//! Every entry below is a safe `fn` that calls a `#[target_feature]` body. The tables are private
//! and reachable only through [`crate::dispatch::table`] / [`Variant::kernels`], which check
//! [`Features::cpu`] against the variant's `required` features first.
//!
//! Convolutions use [`driver::conv2d_im2col`]; the VNNI paths gather activations already XORed
//! with `0x80` so their inner loop skips the flip.

mod avx2;
mod dw512;
mod eltwise;
mod rowconv;
mod vnni;

use crate::dispatch::{Kernels, Level, Variant, GENERIC, SCALAR};
use crate::driver;
use crate::features::Features;
use crate::params::{Conv2d, Gemm};
use crate::reference::conv::{ConvArgs, DepthwiseArgs};
use crate::reference::eltwise::{AddArgs, MulArgs};
use crate::reference::pool::AvgPoolArgs;

const REQ_AVX2: Features = Features::AVX2;
const REQ_AVXVNNI: Features = Features(Features::AVX2.0 | Features::AVXVNNI.0);
const REQ_VNNI256_EVEX: Features = Features(Features::AVX2.0 | Features::AVX512F.0 | Features::AVX512VL.0 | Features::AVX512VNNI.0);
const REQ_AVX512: Features = Level::Avx512Vnni.required();

/// Define a safe entry point `$name` running `$body` compiled with the target features `$tf`.
macro_rules! entry {
    ($name:ident, $tf:literal, $req:expr, ($($arg:ident: $ty:ty),*), $body:expr) => {
        fn $name($($arg: $ty),*) {
            #[target_feature(enable = $tf)]
            #[allow(unused_unsafe)] // bodies that are safe calls (the convolution driver)
            unsafe fn inner($($arg: $ty),*) {
                // SAFETY: compiled with the features `$tf`; the caller checked the CPU has them.
                unsafe { $body }
            }
            debug_assert!(Features::cpu().contains($req));
            // SAFETY: this entry is reachable only through a kernel table that dispatch hands out
            // after checking that `Features::cpu()` contains `$req`, which covers `$tf`.
            unsafe { inner($($arg),*) }
        }
    };
}

// --- AVX2 -------------------------------------------------------------------------------------
entry!(gemm_avx2, "avx2", REQ_AVX2, (g: &Gemm<'_>, c: &mut [i8], ldc: usize), avx2::gemm(g, c, ldc));
entry!(dw_avx2, "avx2", REQ_AVX2, (a: &DepthwiseArgs<'_>, out: &mut [i8]), avx2::depthwise(a, out));
entry!(conv_avx2, "avx2", REQ_AVX2, (a: &ConvArgs<'_>, out: &mut [i8], scratch: &mut [i8]),
if !crate::rowconv::conv::<rowconv::Ymm<vnni::Avx2Madd>>(a, out, scratch) {
    driver::conv2d_im2col(a, out, scratch, gemm_avx2, None)
});
entry!(add_avx2, "avx2", REQ_AVX2, (a: &AddArgs<'_>, out: &mut [i8]), eltwise::add_avx2(a, out));
entry!(avgpool_avx2, "avx2", REQ_AVX2, (a: &AvgPoolArgs, x: &[i8], y: &mut [i8]), driver::avg_pool(a, x, y));
entry!(mul_avx2, "avx2", REQ_AVX2, (a: &MulArgs<'_>, out: &mut [i8]), driver::mul(a, out));
entry!(maxpool_avx2, "avx2", REQ_AVX2, (g: &Conv2d, x: &[i8], y: &mut [i8], lo: i32, hi: i32), driver::max_pool(g, x, y, lo, hi));
// every entry is overridden; `..GENERIC` makes a new entry default to the reference
#[allow(clippy::needless_update)]
static AVX2: Kernels = Kernels {
    level: Level::Avx2,
    gemm: gemm_avx2,
    conv2d: conv_avx2,
    depthwise2d: dw_avx2,
    add: add_avx2,
    mul: mul_avx2,
    max_pool: maxpool_avx2,
    avg_pool: avgpool_avx2,
    ..GENERIC
};

// --- AVX-VNNI (VEX) ---------------------------------------------------------------------------
entry!(gemm_avxvnni, "avx2,avxvnni", REQ_AVXVNNI, (g: &Gemm<'_>, c: &mut [i8], ldc: usize),
    vnni::gemm256::<vnni::Vex, false>(g, c, ldc));
entry!(gemm_avxvnni_u8, "avx2,avxvnni", REQ_AVXVNNI, (g: &Gemm<'_>, c: &mut [i8], ldc: usize),
    vnni::gemm256::<vnni::Vex, true>(g, c, ldc));
entry!(dw_avxvnni, "avx2,avxvnni", REQ_AVXVNNI, (a: &DepthwiseArgs<'_>, out: &mut [i8]), avx2::depthwise(a, out));
entry!(conv_avxvnni, "avx2,avxvnni", REQ_AVXVNNI, (a: &ConvArgs<'_>, out: &mut [i8], scratch: &mut [i8]),
if !crate::rowconv::conv::<rowconv::Ymm<vnni::Vex>>(a, out, scratch) {
    driver::conv2d_im2col(a, out, scratch, gemm_avxvnni, Some(gemm_avxvnni_u8))
});
entry!(add_avxvnni, "avx2,avxvnni", REQ_AVXVNNI, (a: &AddArgs<'_>, out: &mut [i8]), eltwise::add_avx2(a, out));
static AVXVNNI: Kernels =
    Kernels { level: Level::AvxVnni, gemm: gemm_avxvnni, conv2d: conv_avxvnni, depthwise2d: dw_avxvnni, add: add_avxvnni, ..AVX2 };

// --- 256-bit VNNI, EVEX encoding (test stand-in for AVX-VNNI) ----------------------------------
entry!(gemm_vnni256e, "avx2,avx512f,avx512vl,avx512vnni", REQ_VNNI256_EVEX, (g: &Gemm<'_>, c: &mut [i8], ldc: usize),
    vnni::gemm256::<vnni::Evex, false>(g, c, ldc));
entry!(gemm_vnni256e_u8, "avx2,avx512f,avx512vl,avx512vnni", REQ_VNNI256_EVEX, (g: &Gemm<'_>, c: &mut [i8], ldc: usize),
    vnni::gemm256::<vnni::Evex, true>(g, c, ldc));
entry!(dw_vnni256e, "avx2,avx512f,avx512vl,avx512vnni", REQ_VNNI256_EVEX, (a: &DepthwiseArgs<'_>, out: &mut [i8]),
    avx2::depthwise(a, out));
entry!(conv_vnni256e, "avx2,avx512f,avx512vl,avx512vnni", REQ_VNNI256_EVEX,
(a: &ConvArgs<'_>, out: &mut [i8], scratch: &mut [i8]),
if !crate::rowconv::conv::<rowconv::Ymm<vnni::Evex>>(a, out, scratch) {
    driver::conv2d_im2col(a, out, scratch, gemm_vnni256e, Some(gemm_vnni256e_u8))
});
entry!(add_vnni256e, "avx2,avx512f,avx512vl,avx512vnni", REQ_VNNI256_EVEX, (a: &AddArgs<'_>, out: &mut [i8]), eltwise::add_avx2(a, out));
static VNNI256_EVEX: Kernels =
    Kernels { level: Level::AvxVnni, gemm: gemm_vnni256e, conv2d: conv_vnni256e, depthwise2d: dw_vnni256e, add: add_vnni256e, ..AVX2 };

// --- AVX-512 VNNI ------------------------------------------------------------------------------
entry!(gemm_avx512, "avx2,avx512f,avx512bw,avx512vl,avx512vnni", REQ_AVX512, (g: &Gemm<'_>, c: &mut [i8], ldc: usize),
    vnni::gemm512::<false>(g, c, ldc));
entry!(gemm_avx512_u8, "avx2,avx512f,avx512bw,avx512vl,avx512vnni", REQ_AVX512, (g: &Gemm<'_>, c: &mut [i8], ldc: usize),
    vnni::gemm512::<true>(g, c, ldc));
entry!(dw_avx512, "avx2,avx512f,avx512bw,avx512vl,avx512vnni", REQ_AVX512, (a: &DepthwiseArgs<'_>, out: &mut [i8]),
    dw512::depthwise(a, out));
entry!(conv_avx512, "avx2,avx512f,avx512bw,avx512vl,avx512vnni", REQ_AVX512,
(a: &ConvArgs<'_>, out: &mut [i8], scratch: &mut [i8]),
if !crate::rowconv::conv::<rowconv::Zmm>(a, out, scratch) {
    driver::conv2d_im2col(a, out, scratch, gemm_avx512, Some(gemm_avx512_u8))
});
entry!(add_avx512, "avx2,avx512f,avx512bw,avx512vl,avx512vnni", REQ_AVX512, (a: &AddArgs<'_>, out: &mut [i8]), eltwise::add_avx512(a, out));
entry!(avgpool_avx512, "avx2,avx512f,avx512bw,avx512vl,avx512vnni", REQ_AVX512, (a: &AvgPoolArgs, x: &[i8], y: &mut [i8]), driver::avg_pool(a, x, y));
entry!(mul_avx512, "avx2,avx512f,avx512bw,avx512vl,avx512vnni", REQ_AVX512, (a: &MulArgs<'_>, out: &mut [i8]), driver::mul(a, out));
entry!(maxpool_avx512, "avx2,avx512f,avx512bw,avx512vl,avx512vnni", REQ_AVX512, (g: &Conv2d, x: &[i8], y: &mut [i8], lo: i32, hi: i32), driver::max_pool(g, x, y, lo, hi));
// every entry is overridden; `..GENERIC` makes a new entry default to the reference
#[allow(clippy::needless_update)]
static AVX512: Kernels = Kernels {
    level: Level::Avx512Vnni,
    gemm: gemm_avx512,
    conv2d: conv_avx512,
    depthwise2d: dw_avx512,
    add: add_avx512,
    mul: mul_avx512,
    max_pool: maxpool_avx512,
    avg_pool: avgpool_avx512,
    ..GENERIC
};

/// Every table compiled for x86_64 (see [`crate::dispatch::variants`]).
pub(crate) static VARIANTS: [Variant; 5] = [
    Variant::new("scalar", Level::Scalar, Features::empty(), true, "", &SCALAR),
    Variant::new("avx2", Level::Avx2, REQ_AVX2, true, "", &AVX2),
    Variant::new("avxvnni", Level::AvxVnni, REQ_AVXVNNI, true, "VEX vpdpbusd: compared byte for byte with the scalar reference by the tests whenever the CPU reports avx_vnni (see the levels-compared line); never run on an Intel N100", &AVXVNNI),
    Variant::new("avx512vl-vnni256", Level::AvxVnni, REQ_VNNI256_EVEX, false, "EVEX stand-in sharing the avxvnni source", &VNNI256_EVEX),
    Variant::new("avx512vnni", Level::Avx512Vnni, REQ_AVX512, true, "", &AVX512),
];

/// Run `iters` iterations of 16 independent `vpdpbusd zmm` (1024 multiply-accumulates per
/// iteration) and return a checksum; `None` when the CPU lacks AVX-512 VNNI. Benchmarks time it
/// to measure the single-core VNNI peak.
pub fn vnni512_peak(iters: u64, seed: i32) -> Option<i32> {
    if !Features::cpu().contains(Features(Features::AVX512F.0 | Features::AVX512VNNI.0)) {
        return None;
    }
    // SAFETY: the CPU has AVX-512F and AVX512-VNNI (checked above).
    Some(unsafe { vnni::peak512(iters, seed) })
}

/// Multiply-accumulates per iteration of [`vnni512_peak`].
pub const VNNI512_PEAK_MACS_PER_ITER: u64 = 16 * 64;
