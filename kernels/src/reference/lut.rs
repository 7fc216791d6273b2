//! Reference table lookup: any int8 → int8 function (sigmoid, tanh, hard-swish, GELU, …)
//! precomputed into 256 entries by the converter.

use crate::params::QParams;
use crate::requant;

/// Apply a 256-entry table: `out[i] = table[(input[i] as i32 + 128) as usize]`.
///
/// Entry `j` of the table is the output for input value `j − 128`. Exact. Panics when `out` is
/// shorter than `input`.
pub fn lut(input: &[i8], table: &[i8; 256], out: &mut [i8]) {
    let out = &mut out[..input.len()];
    for (o, &x) in out.iter_mut().zip(input) {
        *o = table[(x as i32 + 128) as usize];
    }
}

/// Build the table of a real function `f` between two quantizations:
///
/// ```text
/// table[j] = quantize_f32(f(in_q.scale · ((j − 128) − in_q.zero_point)), out_q.scale, out_q.zero_point)
/// ```
///
/// with [`requant::dequantize`] for the input (`f32`) and [`requant::quantize_f32`] for the
/// output (round half away from zero, saturating to `[-128, 127]`, NaN → zero point). It needs
/// no `std` itself; `f` may (e.g. `f32::exp`).
pub fn build_lut(in_q: QParams, out_q: QParams, f: impl Fn(f32) -> f32) -> [i8; 256] {
    core::array::from_fn(|j| {
        let x = requant::dequantize((j as i32 - 128) as i8, in_q.scale, in_q.zero_point);
        requant::quantize_f32(f(x), out_q.scale, out_q.zero_point)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::test_util::{assert_close, XorShift};

    #[test]
    fn identity_and_arbitrary_tables_exact() {
        let all: Vec<i8> = (-128..=127).collect();
        let q = QParams { scale: 0.037, zero_point: -3 };
        let id = build_lut(q, q, |x| x);
        assert_eq!(id.to_vec(), all, "identity table");
        let mut out = vec![0i8; 256];
        lut(&all, &id, &mut out);
        assert_eq!(out, all);
        let mut rng = XorShift::new(30);
        let table: [i8; 256] = core::array::from_fn(|_| rng.i8());
        let input = rng.vec_i8(1000);
        let mut out = vec![0i8; 1000];
        lut(&input, &table, &mut out);
        for (i, &x) in input.iter().enumerate() {
            assert_eq!(out[i], table[(x as i16 + 128) as usize]);
        }
    }

    #[test]
    fn sigmoid_tanh_tables_match_float() {
        type Named = (&'static str, fn(f64) -> f64);
        let fs: [Named; 3] =
            [("sigmoid", |x| 1.0 / (1.0 + (-x).exp())), ("tanh", f64::tanh), ("hardswish", |x| x * (x + 3.0).clamp(0.0, 6.0) / 6.0)];
        let mut rng = XorShift::new(31);
        for (name, f) in fs {
            for _ in 0..20 {
                let in_q = QParams { scale: rng.f64(0.01, 0.2) as f32, zero_point: rng.range(-128, 127) as i32 };
                let out_q = QParams { scale: rng.f64(1.0 / 256.0, 0.1) as f32, zero_point: rng.range(-128, 127) as i32 };
                let table = build_lut(in_q, out_q, |x| f(x as f64) as f32);
                for (j, &v) in table.iter().enumerate() {
                    let x = in_q.scale as f64 * ((j as i32 - 128) - in_q.zero_point) as f64;
                    let want = (f(x) / out_q.scale as f64 + out_q.zero_point as f64).clamp(-128.0, 127.0);
                    // 0.5 for rounding plus f32 evaluation noise (relative 1e-6 of the value)
                    let bound = 0.5 + 1e-5 * (1.0 + want.abs());
                    assert_close(v, want, bound, name);
                }
            }
        }
    }
}
