//! Cache-blocked f32 GEMM on packed panels, written so LLVM auto-vectorizes the micro-kernel
//! (fixed-size `[f32; NR]` rows accumulated in a local `[[f32; NR]; MR]` tile).
//!
//! `A` is packed into panels of [`MR`] rows (for each k: `MR` values), `B` into panels of [`NR`]
//! columns (for each k: `NR` values); partial panels are zero-padded. `C += A·B` is computed tile
//! by tile, blocking `k` by [`KC`] so a `B` panel stays in L1 while the `A` panels stream.

/// Rows of the micro-tile.
pub(crate) const MR: usize = 4;
/// Columns of the micro-tile.
pub(crate) const NR: usize = 8;
/// k-blocking.
const KC: usize = 256;

/// Number of `p`-wide panels needed to cover `n`.
#[inline]
pub(crate) fn panels(n: usize, p: usize) -> usize {
    n.div_ceil(p)
}

/// `A` (`m × k`) packed into `MR`-row panels.
pub(crate) struct PackedA {
    pub k: usize,
    pub data: Vec<[f32; MR]>,
}

impl PackedA {
    /// Pack `A[i][kk] = f(i, kk)`.
    pub(crate) fn from_fn(m: usize, k: usize, f: impl Fn(usize, usize) -> f32) -> Self {
        let mut data = vec![[0.0; MR]; panels(m, MR) * k];
        for p in 0..panels(m, MR) {
            let rows = MR.min(m - p * MR);
            let dst = &mut data[p * k..(p + 1) * k];
            for i in 0..rows {
                for (kk, d) in dst.iter_mut().enumerate() {
                    d[i] = f(p * MR + i, kk);
                }
            }
        }
        PackedA { k, data }
    }

    /// Pack row-major `A` with row stride `lda`.
    pub(crate) fn from_rows(a: &[f32], m: usize, k: usize, lda: usize) -> Self {
        let mut data = vec![[0.0; MR]; panels(m, MR) * k];
        for p in 0..panels(m, MR) {
            let rows = MR.min(m - p * MR);
            let dst = &mut data[p * k..(p + 1) * k];
            for i in 0..rows {
                let src = &a[(p * MR + i) * lda..][..k];
                for (d, &s) in dst.iter_mut().zip(src) {
                    d[i] = s;
                }
            }
        }
        PackedA { k, data }
    }

    /// Panels `p0..p1` (rows `p0*MR..`), for splitting work across threads.
    pub(crate) fn panel_range(&self, p0: usize, p1: usize) -> &[[f32; MR]] {
        &self.data[p0 * self.k..p1 * self.k]
    }
}

/// Pack row-major `B` (`k × n`, row stride `ldb`) into `NR`-column panels, reusing `out`.
pub(crate) fn pack_b_rows(b: &[f32], k: usize, n: usize, ldb: usize, out: &mut Vec<[f32; NR]>) {
    out.clear();
    out.resize(panels(n, NR) * k, [0.0; NR]);
    for q in 0..panels(n, NR) {
        let j0 = q * NR;
        let cols = NR.min(n - j0);
        let dst = &mut out[q * k..(q + 1) * k];
        for (kk, d) in dst.iter_mut().enumerate() {
            d[..cols].copy_from_slice(&b[kk * ldb + j0..][..cols]);
        }
    }
}

/// Pack `Bᵀ` of a row-major `n × k` matrix `w` (so `B[kk][j] = w[j][kk]`): dense weights.
pub(crate) fn pack_b_transposed(w: &[f32], n: usize, k: usize) -> Vec<[f32; NR]> {
    let mut out = vec![[0.0; NR]; panels(n, NR) * k];
    for q in 0..panels(n, NR) {
        let j0 = q * NR;
        let cols = NR.min(n - j0);
        let dst = &mut out[q * k..(q + 1) * k];
        for j in 0..cols {
            let src = &w[(j0 + j) * k..][..k];
            for (d, &s) in dst.iter_mut().zip(src) {
                d[j] = s;
            }
        }
    }
    out
}

#[inline(always)]
fn kernel(a: &[[f32; MR]], b: &[[f32; NR]]) -> [[f32; NR]; MR] {
    let mut c = [[0.0f32; NR]; MR];
    for (av, bv) in a.iter().zip(b) {
        for i in 0..MR {
            let ai = av[i];
            for j in 0..NR {
                c[i][j] += ai * bv[j];
            }
        }
    }
    c
}

/// `C[m × n] += A·B` with `A` packed (`panels(m, MR) * k` rows of `MR`), `B` packed
/// (`panels(n, NR) * k` rows of `NR`), `C` row-major with row stride `ldc`.
pub(crate) fn gemm_acc(m: usize, n: usize, k: usize, pa: &[[f32; MR]], pb: &[[f32; NR]], c: &mut [f32], ldc: usize) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let (pm, pn) = (panels(m, MR), panels(n, NR));
    debug_assert!(pa.len() >= pm * k && pb.len() >= pn * k);
    let mut k0 = 0;
    while k0 < k {
        let kc = KC.min(k - k0);
        for q in 0..pn {
            let bq = &pb[q * k + k0..q * k + k0 + kc];
            let j0 = q * NR;
            let nj = NR.min(n - j0);
            for p in 0..pm {
                let ap = &pa[p * k + k0..p * k + k0 + kc];
                let acc = kernel(ap, bq);
                let i0 = p * MR;
                let mi = MR.min(m - i0);
                for (i, arow) in acc.iter().enumerate().take(mi) {
                    let row = &mut c[(i0 + i) * ldc + j0..][..nj];
                    if nj == NR {
                        for j in 0..NR {
                            row[j] += arow[j];
                        }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for kk in 0..k {
                    s += a[i * k + kk] * b[kk * n + j];
                }
                c[i * n + j] = s;
            }
        }
        c
    }

    #[test]
    fn matches_naive() {
        for &(m, n, k) in &[(1, 1, 1), (7, 9, 3), (13, 17, 300), (6, 8, 256), (33, 70, 513)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.1).collect();
            let pa = PackedA::from_rows(&a, m, k, k);
            let mut pb = Vec::new();
            pack_b_rows(&b, k, n, n, &mut pb);
            let mut c = vec![0.0; m * n];
            gemm_acc(m, n, k, &pa.data, &pb, &mut c, n);
            let r = naive(&a, &b, m, n, k);
            for (x, y) in c.iter().zip(&r) {
                assert!((x - y).abs() < 1e-3, "{m}x{n}x{k}: {x} vs {y}");
            }
            // transposed packing of Bᵀ
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            let pbt = pack_b_transposed(&bt, n, k);
            assert_eq!(pbt, pb);
        }
    }
}
