//! f32 GEMM for training: `C (+)= A·B` on packed panels with strided (possibly transposed)
//! operands, multiversioned for AVX2+FMA with a portable fallback.
//!
//! This follows the design of the inference GEMM in `fp32/gemm.rs` (packed `A` panels of [`MR`]
//! rows, packed `B` panels of [`NR`] columns, a fixed-size accumulator tile that LLVM keeps in
//! registers and vectorizes, `k` blocked by `KC`), with three differences the backward pass
//! needs: operands are read through row/column strides (so `Aᵀ`, `Bᵀ` need no copies), the
//! result can overwrite or accumulate, and the micro-kernel is compiled twice: once with
//! `#[target_feature(enable = "avx2,fma")]` (fused multiply-add, 8-wide) and once for the
//! baseline target; [`gemm_packed`] picks one at run time (`is_x86_feature_detected!`, cached).
//! On aarch64 the fused variant is used directly (NEON FMA is baseline there).

/// Rows of the micro-tile.
pub(crate) const MR: usize = 6;
/// Columns of the micro-tile (two AVX2 registers).
pub(crate) const NR: usize = 16;
/// k-blocking: one `B` panel block is `KC·NR` floats (16 KiB), kept in L1 while `A` streams.
const KC: usize = 256;

/// A strided matrix operand: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// Row-major matrix with row stride `ld`.
    pub(crate) fn rows(data: &'a [f32], ld: usize) -> Self {
        Mat { data, rs: ld, cs: 1 }
    }
    /// The transpose of a row-major matrix with row stride `ld`.
    pub(crate) fn trans(data: &'a [f32], ld: usize) -> Self {
        Mat { data, rs: 1, cs: ld }
    }
}

/// Pack `A` (`m × k`) into `MR`-row panels: panel `p` holds, for each `kk`, `MR` values.
pub(crate) fn pack_a(m: usize, k: usize, a: Mat<'_>, out: &mut Vec<f32>) {
    let pm = m.div_ceil(MR);
    // Old contents are overwritten; only the padding rows of a partial last panel are zeroed.
    out.resize(pm * MR * k, 0.0);
    for p in 0..pm {
        let rows = MR.min(m - p * MR);
        let dst = &mut out[p * MR * k..(p + 1) * MR * k];
        if rows < MR {
            dst.fill(0.0);
        }
        if a.cs == 1 {
            for i in 0..rows {
                let src = &a.data[(p * MR + i) * a.rs..][..k];
                for (kk, &v) in src.iter().enumerate() {
                    dst[kk * MR + i] = v;
                }
            }
        } else {
            for (kk, d) in dst.chunks_exact_mut(MR).enumerate() {
                let base = kk * a.cs + p * MR * a.rs;
                for (i, di) in d.iter_mut().enumerate().take(rows) {
                    *di = a.data[base + i * a.rs];
                }
            }
        }
    }
}

/// Pack `B` (`k × n`) into `NR`-column panels: panel `q` holds, for each `kk`, `NR` values.
pub(crate) fn pack_b(k: usize, n: usize, b: Mat<'_>, out: &mut Vec<f32>) {
    let pn = n.div_ceil(NR);
    // Old contents are overwritten; only the padding columns of a partial last panel are zeroed.
    out.resize(pn * NR * k, 0.0);
    for q in 0..pn {
        let j0 = q * NR;
        let cols = NR.min(n - j0);
        let dst = &mut out[q * NR * k..(q + 1) * NR * k];
        if cols < NR {
            dst.fill(0.0);
        }
        if b.cs == 1 && cols == NR {
            for (kk, d) in dst.chunks_exact_mut(NR).enumerate() {
                let d: &mut [f32; NR] = d.try_into().expect("NR chunk");
                let s: &[f32; NR] = b.data[kk * b.rs + j0..][..NR].try_into().expect("NR values");
                *d = *s;
            }
        } else if b.cs == 1 {
            for (kk, d) in dst.chunks_exact_mut(NR).enumerate() {
                d[..cols].copy_from_slice(&b.data[kk * b.rs + j0..][..cols]);
            }
        } else if b.rs == 1 {
            for j in 0..cols {
                let src = &b.data[(j0 + j) * b.cs..][..k];
                for (kk, &v) in src.iter().enumerate() {
                    dst[kk * NR + j] = v;
                }
            }
        } else {
            for (kk, d) in dst.chunks_exact_mut(NR).enumerate() {
                for (j, dj) in d.iter_mut().enumerate().take(cols) {
                    *dj = b.data[kk * b.rs + (j0 + j) * b.cs];
                }
            }
        }
    }
}

/// Multiply-add flavour of the micro-kernel.
trait Madd {
    fn madd(a: f32, b: f32, c: f32) -> f32;
}

/// `a·b + c` with two roundings (any target).
#[cfg_attr(target_arch = "aarch64", allow(dead_code))]
struct Plain;
impl Madd for Plain {
    #[inline(always)]
    fn madd(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// Fused multiply-add (only used where the target has FMA).
#[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
struct Fused;
impl Madd for Fused {
    #[inline(always)]
    fn madd(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

#[inline(always)]
fn kernel<M: Madd>(kc: usize, a: &[f32], b: &[f32]) -> [[f32; NR]; MR] {
    let mut acc = [[0.0f32; NR]; MR];
    for (av, bv) in a[..kc * MR].chunks_exact(MR).zip(b[..kc * NR].chunks_exact(NR)) {
        let av: &[f32; MR] = av.try_into().expect("MR chunk");
        let bv: &[f32; NR] = bv.try_into().expect("NR chunk");
        for i in 0..MR {
            let ai = av[i];
            for j in 0..NR {
                acc[i][j] = M::madd(ai, bv[j], acc[i][j]);
            }
        }
    }
    acc
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gemm_impl<M: Madd>(m: usize, n: usize, k: usize, pa: &[f32], pb: &[f32], c: &mut [f32], ldc: usize, accumulate: bool) {
    let (pm, pn) = (m.div_ceil(MR), n.div_ceil(NR));
    let mut k0 = 0;
    while k0 < k {
        let kc = KC.min(k - k0);
        let store = k0 == 0 && !accumulate;
        for q in 0..pn {
            let bq = &pb[q * NR * k + k0 * NR..][..kc * NR];
            let j0 = q * NR;
            let nj = NR.min(n - j0);
            for p in 0..pm {
                let ap = &pa[p * MR * k + k0 * MR..][..kc * MR];
                let acc = kernel::<M>(kc, ap, bq);
                let i0 = p * MR;
                let mi = MR.min(m - i0);
                for (i, arow) in acc.iter().enumerate().take(mi) {
                    let row = &mut c[(i0 + i) * ldc + j0..][..nj];
                    if nj == NR {
                        // fixed length: vector moves instead of a memmove call
                        let row: &mut [f32; NR] = row.try_into().expect("NR columns");
                        if store {
                            *row = *arow;
                        } else {
                            for j in 0..NR {
                                row[j] += arow[j];
                            }
                        }
                    } else if store {
                        row.copy_from_slice(&arow[..nj]);
                    } else {
                        for (r, &v) in row.iter_mut().zip(arow) {
                            *r += v;
                        }
                    }
                }
            }
        }
        k0 += kc;
    }
    if k == 0 && !accumulate {
        for i in 0..m {
            c[i * ldc..i * ldc + n].fill(0.0);
        }
    }
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_avx2(m: usize, n: usize, k: usize, pa: &[f32], pb: &[f32], c: &mut [f32], ldc: usize, accumulate: bool) {
    gemm_impl::<Fused>(m, n, k, pa, pb, c, ldc, accumulate)
}

/// Whether the AVX2+FMA kernel is used on this machine.
pub fn simd_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            return "avx2+fma";
        }
        "sse2 (portable)"
    }
    #[cfg(target_arch = "aarch64")]
    {
        "neon fma"
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "portable"
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| std::env::var_os("TEMPER_NO_AVX2").is_none() && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// `C[m × n] (+)= A·B` with `A` packed by [`pack_a`] and `B` by [`pack_b`]; `C` row-major with
/// row stride `ldc`. With `accumulate == false` C is overwritten.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_packed(m: usize, n: usize, k: usize, pa: &[f32], pb: &[f32], c: &mut [f32], ldc: usize, accumulate: bool) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(pa.len() >= m.div_ceil(MR) * MR * k && pb.len() >= n.div_ceil(NR) * NR * k, "gemm: packed operands too short");
    assert!(c.len() >= (m - 1) * ldc + n, "gemm: C too short");
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            // SAFETY: `has_avx2_fma` verified at run time that this CPU supports AVX2 and FMA,
            // the only requirement of `gemm_avx2`; its body is safe code.
            unsafe { gemm_avx2(m, n, k, pa, pb, c, ldc, accumulate) };
            return;
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        gemm_impl::<Fused>(m, n, k, pa, pb, c, ldc, accumulate);
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        gemm_impl::<Plain>(m, n, k, pa, pb, c, ldc, accumulate);
    }
}

/// Reusable packing buffers.
#[derive(Default)]
pub(crate) struct Scratch {
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

/// `C (+)= A·B` for strided operands (packs both into `s`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(m: usize, n: usize, k: usize, a: Mat<'_>, b: Mat<'_>, c: &mut [f32], ldc: usize, accumulate: bool, s: &mut Scratch) {
    pack_a(m, k, a, &mut s.a);
    pack_b(k, n, b, &mut s.b);
    gemm_packed(m, n, k, &s.a, &s.b, c, ldc, accumulate);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: Mat<'_>, b: Mat<'_>) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|kk| a.data[i * a.rs + kk * a.cs] as f64 * b.data[kk * b.rs + j * b.cs] as f64).sum();
            }
        }
        c
    }

    #[test]
    fn strided_variants_match_naive() {
        let mut s = Scratch::default();
        for &(m, n, k) in &[(1, 1, 1), (7, 9, 3), (13, 17, 300), (6, 16, 256), (33, 70, 513), (16, 784, 9), (0, 3, 3), (3, 3, 0)] {
            let av: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1).collect();
            let bv: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.1).collect();
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let a = if ta { Mat::trans(&av, m) } else { Mat::rows(&av, k) };
                let b = if tb { Mat::trans(&bv, k) } else { Mat::rows(&bv, n) };
                let want = naive(m, n, k, a, b);
                for accumulate in [false, true] {
                    let mut c = vec![1.0f32; m * n];
                    gemm(m, n, k, a, b, &mut c, n, accumulate, &mut s);
                    for (x, y) in c.iter().zip(&want) {
                        let y = if accumulate { y + 1.0 } else { *y };
                        assert!((*x as f64 - y).abs() < 1e-3 * (1.0 + y.abs()), "{m}x{n}x{k} {ta} {tb}: {x} vs {y}");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod bench {
    use super::*;

    #[test]
    #[ignore = "a benchmark, not a test: prints GFLOPS (cargo test --release -p temper-converter gemm_gflops -- --ignored --nocapture)"]
    fn gemm_gflops() {
        let mut s = Scratch::default();
        for &(m, n, k) in &[(16, 784, 9), (32, 392, 144), (128, 294, 1152), (64, 1568, 128), (512, 64, 1152)] {
            let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32).collect();
            let mut c = vec![0.0; m * n];
            pack_a(m, k, Mat::rows(&a, k), &mut s.a);
            pack_b(k, n, Mat::rows(&b, n), &mut s.b);
            let reps = (2e9 / (2.0 * (m * n * k) as f64)) as usize + 1;
            let t = std::time::Instant::now();
            for _ in 0..reps {
                gemm_packed(m, n, k, &s.a, &s.b, &mut c, n, false);
            }
            let dt = t.elapsed().as_secs_f64();
            let t2 = std::time::Instant::now();
            for _ in 0..reps.min(200) {
                gemm(m, n, k, Mat::rows(&a, k), Mat::rows(&b, n), &mut c, n, false, &mut s);
            }
            let dt2 = t2.elapsed().as_secs_f64() / reps.min(200) as f64;
            eprintln!(
                "{m}x{n}x{k}: {:.1} GFLOP/s packed-only, {:.1} GFLOP/s with packing ({})",
                2.0 * (m * n * k) as f64 * reps as f64 / dt / 1e9,
                2.0 * (m * n * k) as f64 / dt2 / 1e9,
                simd_path()
            );
        }
    }
}
