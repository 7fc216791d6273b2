//! Graph-boundary conversions: real values ↔ int8, and raw u8 pixels → int8 through lookup
//! tables that fold the input normalization into the quantization.

use crate::params::QParams;
use crate::requant;

/// Quantize real values: `out[i] = requant::quantize_f32(input[i], scale, zp)`, i.e.
/// `clamp(round_half_away(input[i] / scale) + zp, −128, 127)` (the division in `f32`, NaN →
/// `zp`). Panics when `out` is shorter than `input`.
pub fn quantize_f32(input: &[f32], scale: f32, zp: i32, out: &mut [i8]) {
    let out = &mut out[..input.len()];
    for (o, &x) in out.iter_mut().zip(input) {
        *o = requant::quantize_f32(x, scale, zp);
    }
}

/// Dequantize: `out[i] = scale · (input[i] − zp)` in `f32` ([`requant::dequantize`]). Panics when
/// `out` is shorter than `input`.
pub fn dequantize(input: &[i8], scale: f32, zp: i32, out: &mut [f32]) {
    let out = &mut out[..input.len()];
    for (o, &q) in out.iter_mut().zip(input) {
        *o = requant::dequantize(q, scale, zp);
    }
}

/// Map raw u8 pixels (NHWC, `channels` interleaved values per pixel) to int8 through one
/// 256-entry table per channel:
///
/// ```text
/// out[i] = luts[i mod channels][input[i]]       (luts.len() == channels)
/// out[i] = luts[0][input[i]]                    (luts.len() == 1: the same table for every channel)
/// ```
///
/// Exact. Panics when `channels == 0`, when `luts` has neither 1 nor `channels` tables, or when
/// `out` is shorter than `input`. Build the tables with [`build_u8_lut`].
pub fn map_u8(input: &[u8], luts: &[[i8; 256]], channels: usize, out: &mut [i8]) {
    assert!(channels > 0 && (luts.len() == channels || luts.len() == 1), "map_u8: {} tables for {channels} channels", luts.len());
    let out = &mut out[..input.len()];
    if luts.len() == 1 {
        let t = &luts[0];
        for (o, &p) in out.iter_mut().zip(input) {
            *o = t[p as usize];
        }
        return;
    }
    for (o, p) in out.chunks_mut(channels).zip(input.chunks(channels)) {
        for ((o, &p), t) in o.iter_mut().zip(p).zip(luts) {
            *o = t[p as usize];
        }
    }
}

/// Table for [`map_u8`] folding the usual image normalization into the input quantization:
///
/// ```text
/// table[p] = quantize_f32((p · pixel_scale − mean) / std_dev, q.scale, q.zero_point)
/// ```
///
/// (e.g. `pixel_scale = 1/255`, ImageNet `mean`/`std_dev` of the channel). The normalization is
/// evaluated in `f64` and rounded once to `f32` before [`requant::quantize_f32`] (round half away
/// from zero, saturating). Needs no `std`.
pub fn build_u8_lut(pixel_scale: f32, mean: f32, std_dev: f32, q: QParams) -> [i8; 256] {
    core::array::from_fn(|p| {
        let x = (p as f64 * pixel_scale as f64 - mean as f64) / std_dev as f64;
        requant::quantize_f32(x as f32, q.scale, q.zero_point)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::test_util::{assert_close, XorShift};

    #[test]
    fn quantize_and_dequantize() {
        let mut rng = XorShift::new(90);
        let input: Vec<f32> = (0..1000).map(|_| rng.f64(-20.0, 20.0) as f32).collect();
        for &(scale, zp) in &[(0.1f32, 0), (0.05, -17), (0.37, 100)] {
            let mut q = vec![0i8; input.len()];
            quantize_f32(&input, scale, zp, &mut q);
            let mut back = vec![0f32; input.len()];
            dequantize(&q, scale, zp, &mut back);
            for i in 0..input.len() {
                assert_eq!(q[i], requant::quantize_f32(input[i], scale, zp));
                let want = (input[i] as f64 / scale as f64 + zp as f64).clamp(-128.0, 127.0);
                // 0.5 for the rounding, plus f32 division noise
                assert_close(q[i], want, 0.5 + 1e-4, "quantize");
                assert_eq!(back[i], scale * (q[i] as i32 - zp) as f32);
                if q[i] > -128 && q[i] < 127 {
                    // not saturated: the round trip is within half a step
                    assert!((back[i] as f64 - input[i] as f64).abs() <= scale as f64 * (0.5 + 1e-4));
                }
            }
        }
        // ties round away from zero
        let mut q = [0i8; 4];
        quantize_f32(&[0.25, -0.25, 0.75, -0.75], 0.5, 0, &mut q);
        assert_eq!(q, [1, -1, 2, -2]);
    }

    #[test]
    fn u8_tables_match_float() {
        let mut rng = XorShift::new(91);
        let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
        for _ in 0..10 {
            let q = QParams { scale: rng.f64(0.01, 0.05) as f32, zero_point: rng.range(-128, 127) as i32 };
            let luts: Vec<[i8; 256]> = (0..3).map(|c| build_u8_lut(1.0 / 255.0, mean[c], std[c], q)).collect();
            for c in 0..3 {
                for (p, &v) in luts[c].iter().enumerate() {
                    let x = (p as f64 / 255.0 - mean[c] as f64) / std[c] as f64;
                    let want = (x / q.scale as f64 + q.zero_point as f64).clamp(-128.0, 127.0);
                    assert_close(v, want, 0.5 + 1e-4, "u8 lut");
                }
            }
            let pixels: Vec<u8> = (0..3 * 50).map(|_| rng.next_u64() as u8).collect();
            let mut out = vec![0i8; pixels.len()];
            map_u8(&pixels, &luts, 3, &mut out);
            for (i, &p) in pixels.iter().enumerate() {
                assert_eq!(out[i], luts[i % 3][p as usize]);
            }
            // one shared table
            map_u8(&pixels, &luts[1..2], 3, &mut out);
            for (i, &p) in pixels.iter().enumerate() {
                assert_eq!(out[i], luts[1][p as usize]);
            }
        }
    }

    #[test]
    #[should_panic(expected = "tables for")]
    fn map_u8_rejects_wrong_table_count() {
        let luts = [[0i8; 256]; 2];
        map_u8(&[0; 6], &luts, 3, &mut [0; 6]);
    }
}
