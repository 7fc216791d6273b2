//! Reference softmax over the last (contiguous) axis, table-driven and integer-only.
//!
//! The output quantization is fixed, as in TFLite: scale `1/256`, zero point `−128`, so the
//! quantized output `o` represents the probability `(o + 128) / 256`.

/// Fraction bits of the exponential table: entry `0` is `2^16` (`exp(0) = 1`).
pub const EXP_TABLE_ONE: u32 = 1 << 16;

/// Softmax of `rows` rows of `cols` values each (row-major, `rows · cols` values):
///
/// ```text
/// m     = max_j q_j                                  (per row)
/// e_i   = exp_table[m − q_i]                         (m − q_i ∈ [0, 255])
/// S     = Σ_j e_j                                    (u64, exact)
/// out_i = min(floor((2 · 256 · e_i + S) / (2·S)), 255) − 128
/// ```
///
/// i.e. `out_i = clamp(round_half_up(256 · e_i / S) − 128, −128, 127)` with one exact rounding
/// (half up) in `u64` integer arithmetic. The probability `1.0` (`256`) saturates to `127`.
/// `exp_table[d]` should hold `round(exp(−d · β · s_in) · 2^16)` (see `build_softmax_table`,
/// `std` only); any table works as long as `S > 0` (guaranteed when `exp_table[0] > 0`) and
/// `cols · max(exp_table) < 2^54`. A row whose `S` is 0 yields `−128` everywhere.
pub fn softmax(input: &[i8], rows: usize, cols: usize, exp_table: &[u32; 256], out: &mut [i8]) {
    if cols == 0 {
        return;
    }
    for (x, o) in input[..rows * cols].chunks_exact(cols).zip(out[..rows * cols].chunks_exact_mut(cols)) {
        let m = x.iter().copied().max().unwrap_or(0) as i32;
        let sum: u64 = x.iter().map(|&q| exp_table[(m - q as i32) as usize] as u64).sum();
        if sum == 0 {
            o.fill(-128);
            continue;
        }
        for (d, &q) in o.iter_mut().zip(x) {
            let e = exp_table[(m - q as i32) as usize] as u64;
            let p = (512 * e + sum) / (2 * sum); // round_half_up(256·e / S)
            *d = (p.min(255) as i32 - 128) as i8;
        }
    }
}

/// Table for [`softmax`]: entry `d` is `round(exp(−d · β · input_scale) · 2^16)` (rounded half
/// away from zero, computed in `f64`), so entry 0 is `2^16` and the table is non-increasing.
/// `input_scale` and `beta` must be finite and positive.
#[cfg(feature = "std")]
pub fn build_softmax_table(input_scale: f32, beta: f32) -> [u32; 256] {
    let k = input_scale as f64 * beta as f64;
    core::array::from_fn(|d| {
        let v = (-(d as f64) * k).exp() * EXP_TABLE_ONE as f64;
        crate::requant::round_half_away(v) as u32
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::test_util::{assert_close, exact_round, XorShift};

    #[test]
    fn table_properties() {
        for &(s, b) in &[(0.1f32, 1.0f32), (0.02, 1.0), (1.0, 2.0), (1e-4, 1.0)] {
            let t = build_softmax_table(s, b);
            assert_eq!(t[0], EXP_TABLE_ONE);
            assert!(t.windows(2).all(|w| w[0] >= w[1]));
            for (d, &v) in t.iter().enumerate() {
                let want = (-(d as f64) * s as f64 * b as f64).exp() * 65536.0;
                assert!((v as f64 - want).abs() <= 0.5 + 1e-9, "d={d}");
            }
        }
    }

    #[test]
    fn softmax_matches_float_and_exact() {
        let mut rng = XorShift::new(40);
        for &cols in &[1usize, 2, 3, 10, 100, 1000] {
            for trial in 0..8 {
                let scale = 10f64.powf(rng.f64(-2.5, 0.0)) as f32;
                let beta = if trial % 2 == 0 { 1.0 } else { rng.f64(0.5, 2.0) as f32 };
                let table = build_softmax_table(scale, beta);
                let rows = 3;
                let mut input = rng.vec_i8(rows * cols);
                if trial == 3 {
                    input.fill(7); // all equal: uniform distribution
                }
                let mut out = vec![0i8; rows * cols];
                softmax(&input, rows, cols, &table, &mut out);
                for r in 0..rows {
                    let x = &input[r * cols..(r + 1) * cols];
                    let o = &out[r * cols..(r + 1) * cols];
                    let m = *x.iter().max().unwrap() as i32;
                    let k = scale as f64 * beta as f64;
                    let ex: Vec<f64> = x.iter().map(|&q| (-(m - q as i32) as f64 * k).exp()).collect();
                    let s_true: f64 = ex.iter().sum();
                    // exact integer definition
                    let s_int: i128 = x.iter().map(|&q| table[(m - q as i32) as usize] as i128).sum();
                    for (i, &q) in x.iter().enumerate() {
                        let e = table[(m - q as i32) as usize] as i128;
                        let want = (exact_round(256 * e, s_int) - 128).clamp(-128, 127);
                        assert_eq!(o[i] as i128, want, "cols {cols} trial {trial} exact");
                        // float: p·256 − 128; table rounding moves each e by ≤ 0.5/2^16 (in
                        // units of exp), so p moves by ≤ (0.5 + p·cols·0.5) / (2^16·S_true − cols·0.5).
                        let p = ex[i] / s_true;
                        let f = (p * 256.0 - 128.0).clamp(-128.0, 127.0);
                        let bound = 0.5 + 256.0 * (0.5 + p * cols as f64 * 0.5) / (65536.0 * s_true - 0.5 * cols as f64) + 1e-9;
                        assert_close(o[i], f, bound, &format!("cols {cols} trial {trial} float"));
                    }
                    // probabilities sum to ≈ 1 (256 in the output domain): each output is within
                    // 0.5 of 256·e_i/S and Σ 256·e_i/S = 256 exactly (unless 1.0 saturated).
                    let total: i64 = o.iter().map(|&v| v as i64 + 128).sum();
                    if !o.contains(&127) {
                        assert!((total - 256).abs() as f64 <= cols as f64 * 0.5, "sum {total}");
                    }
                }
            }
        }
    }

    #[test]
    fn softmax_uniform_and_saturation() {
        let table = build_softmax_table(0.1, 1.0);
        let mut out = [0i8; 4];
        softmax(&[5, 5, 5, 5], 1, 4, &table, &mut out);
        assert_eq!(out, [-64; 4]); // 0.25 → 64 − 128
        let mut out = [0i8; 1];
        softmax(&[-3], 1, 1, &table, &mut out);
        assert_eq!(out, [127]); // 1.0 saturates
                                // a huge gap: the smaller value's table entry is 0
        let table = build_softmax_table(1.0, 1.0);
        let mut out = [0i8; 2];
        softmax(&[127, -128], 1, 2, &table, &mut out);
        assert_eq!(out, [127, -128]);
    }

    #[test]
    fn softmax_ties_round_half_up() {
        // Hand-built table to land exactly on halves: e = 1, S = 512 → 256/512 = 0.5 → 1.
        let mut table = [0u32; 256];
        table[0] = 1;
        table[1] = 511;
        let mut out = [0i8; 2];
        // the max gets table[0] = 1, the other (max − 1) gets 511
        softmax(&[10, 9], 1, 2, &table, &mut out);
        assert_eq!(out, [-127, 127]); // 0.5 → 1 → −127 ; 255.5 → 256 → saturates at 255 → 127
                                      // 3/2: e = 3, S = 512 → 1.5 → 2
        table[0] = 3;
        table[1] = 509;
        softmax(&[10, 9], 1, 2, &table, &mut out);
        assert_eq!(out, [-126, 127]); // 1.5 → 2 → −126 ; 254.5 → 255 → 127
                                      // S = 0 row
        let zero = [0u32; 256];
        softmax(&[1, 2], 1, 2, &zero, &mut out);
        assert_eq!(out, [-128, -128]);
    }
}
