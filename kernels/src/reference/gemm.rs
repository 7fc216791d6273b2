//! Reference quantized GEMM over packed weights.

use crate::pack;
use crate::params::Gemm;

/// `C[m, n] = requant(Σ_k A[m, k] · B[n, k] + bias[n])`, written with row stride `ldc`.
pub fn gemm(g: &Gemm<'_>, c: &mut [i8], ldc: usize) {
    for i in 0..g.m {
        let a = &g.a[i * g.lda..i * g.lda + g.k];
        for j in 0..g.n {
            let mut acc = g.bias[j];
            for (kk, &av) in a.iter().enumerate() {
                acc = acc.wrapping_add(av as i32 * pack::get(g.b, j, kk, g.k) as i32);
            }
            c[i * ldc + j] = g.q.apply(acc, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::OutQuant;
    use crate::requant::quantize_multiplier;

    #[test]
    fn gemm_matches_float_within_half_step() {
        let (m, n, k) = (3, 5, 7);
        let a: [i8; 21] = core::array::from_fn(|i| (i as i32 * 37 % 255 - 127) as i8);
        let w: [i8; 35] = core::array::from_fn(|i| (i as i32 * 53 % 255 - 127) as i8);
        let mut packed = [0i8; 16 * 8];
        pack::pack_into(&w, n, k, &mut packed);
        let (sa, za, sw, so, zo) = (0.05f64, 3i32, 0.01f64, 0.2f64, -5i32);
        let bias_f = [0.1f64, -0.3, 0.0, 0.25, 1.0];
        let mut bias = [0i32; 5];
        for j in 0..n {
            let wsum: i32 = (0..k).map(|kk| w[j * k + kk] as i32).sum();
            bias[j] = (bias_f[j] / (sa * sw)).round() as i32 - za * wsum;
        }
        let (mult, shift) = quantize_multiplier(sa * sw / so).unwrap();
        let g = Gemm {
            m,
            n,
            k,
            a: &a,
            lda: k,
            b: &packed,
            bias: &bias,
            bias_u8: &bias,
            q: OutQuant { mult: &[mult], shift: &[shift], zero_point: zo, min: -128, max: 127 },
        };
        let mut c = [0i8; 15];
        gemm(&g, &mut c, n);
        for i in 0..m {
            for j in 0..n {
                let mut r = bias_f[j];
                for kk in 0..k {
                    r += sa * (a[i * k + kk] as i32 - za) as f64 * sw * w[j * k + kk] as f64;
                }
                let q = (r / so + zo as f64).clamp(-128.0, 127.0);
                assert!(
                    (c[i * n + j] as f64 - q).abs() <= 0.5 + 1e-6 + (0.5 / (sa * sw)) * sa * sw / so,
                    "{i},{j}: {} vs {q}",
                    c[i * n + j]
                );
            }
        }
    }
}
