//! Reference concatenation of int8 NHWC tensors, one input at a time.

use crate::params::Nhwc;
use crate::requant;

/// Requantization of an int8 tensor into another scale/zero point:
///
/// ```text
/// out = clamp(out_zp + requantize(q − in_zp, mult, shift), −128, 127)
/// ```
///
/// with [`requant::requantize`] (`(acc · mult + 2^(shift−1)) >> shift`: one rounding, half up)
/// and `mult · 2^-shift ≈ scale_in / scale_out`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rescale {
    /// Input zero point, in `[-128, 127]`.
    pub in_zp: i32,
    /// Q31 multiplier (0 or in `[2^30, 2^31)`).
    pub mult: i32,
    /// Right shift, in `[1, 62]`.
    pub shift: i32,
    /// Output zero point, in `[-128, 127]`.
    pub out_zp: i32,
}

impl Rescale {
    /// Requantize one value (see [`Rescale`]).
    #[inline(always)]
    pub fn apply(&self, q: i8) -> i8 {
        let v = requant::requantize(q as i32 - self.in_zp, self.mult, self.shift) as i64 + self.out_zp as i64;
        v.clamp(-128, 127) as i8
    }
}

/// Dimensions `[n, h, w, c]` of a shape.
#[inline]
pub(crate) const fn dims(s: Nhwc) -> [usize; 4] {
    [s.n, s.h, s.w, s.c]
}

/// Write one input of a concatenation into its place in `out`.
///
/// `axis` is the NHWC axis (`0` = N, `1` = H, `2` = W, `3` = C); `in_shape` equals `out_shape`
/// on every other axis, and the input occupies positions `offset .. offset + in_shape[axis]`
/// along `axis` of the output:
///
/// ```text
/// out[.., offset + i, ..] = f(input[.., i, ..])      f = identity (None) or Rescale::apply
/// ```
///
/// Calling it for every input with running offsets builds the full concatenation. Exact
/// (integer-only). Panics when the shapes do not fit.
pub fn concat_one(input: &[i8], in_shape: Nhwc, axis: usize, offset: usize, out: &mut [i8], out_shape: Nhwc, rescale: Option<Rescale>) {
    let (di, dout) = (dims(in_shape), dims(out_shape));
    assert!(axis < 4, "concat: axis {axis} out of range");
    assert!(
        (0..4).all(|i| i == axis || di[i] == dout[i]) && offset + di[axis] <= dout[axis],
        "concat: {in_shape:?} at offset {offset} on axis {axis} does not fit {out_shape:?}"
    );
    let outer: usize = di[..axis].iter().product();
    let inner: usize = di[axis + 1..].iter().product();
    // Contiguous run copied per outer index: in_shape[axis] · inner values.
    let run = di[axis] * inner;
    for o in 0..outer {
        let src = &input[o * run..(o + 1) * run];
        let start = (o * dout[axis] + offset) * inner;
        let dst = &mut out[start..start + run];
        match rescale {
            None => dst.copy_from_slice(src),
            Some(r) => {
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = r.apply(s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::test_util::{assert_close, exact_round, XorShift};
    use crate::requant::quantize_multiplier;

    fn with_axis(s: Nhwc, axis: usize, v: usize) -> Nhwc {
        let mut d = dims(s);
        d[axis] = v;
        Nhwc::new(d[0], d[1], d[2], d[3])
    }

    #[test]
    fn concat_copy_every_axis_exact() {
        let mut rng = XorShift::new(20);
        let base = Nhwc::new(2, 3, 4, 5);
        for axis in 0..4 {
            let sizes = [1usize, 3, 2];
            let total: usize = sizes.iter().sum();
            let out_shape = with_axis(base, axis, total);
            let inputs: Vec<(Nhwc, Vec<i8>)> = sizes
                .iter()
                .map(|&s| {
                    let sh = with_axis(base, axis, s);
                    (sh, rng.vec_i8(sh.len()))
                })
                .collect();
            let mut out = vec![0i8; out_shape.len()];
            let mut off = 0;
            for (sh, data) in &inputs {
                concat_one(data, *sh, axis, off, &mut out, out_shape, None);
                off += dims(*sh)[axis];
            }
            // independent check by full multi-index
            let od = dims(out_shape);
            let mut o = 0;
            for n in 0..od[0] {
                for h in 0..od[1] {
                    for w in 0..od[2] {
                        for c in 0..od[3] {
                            let mut idx = [n, h, w, c];
                            let mut j = 0;
                            while idx[axis] >= sizes[j] {
                                idx[axis] -= sizes[j];
                                j += 1;
                            }
                            let (sh, data) = &inputs[j];
                            let d = dims(*sh);
                            let i = ((idx[0] * d[1] + idx[1]) * d[2] + idx[2]) * d[3] + idx[3];
                            assert_eq!(out[o], data[i], "axis {axis} at {o}");
                            o += 1;
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn concat_rescale_matches_float_and_exact() {
        let mut rng = XorShift::new(21);
        let a_shape = Nhwc::new(1, 2, 2, 256);
        let all: Vec<i8> = (0..a_shape.len()).map(|i| (i % 256) as u8 as i8).collect();
        let out_shape = Nhwc::new(1, 2, 2, 512);
        for trial in 0..20 {
            let (si, so) = (10f64.powf(rng.f64(-2.0, 0.0)), 10f64.powf(rng.f64(-2.0, 0.0)));
            let (mult, shift) = quantize_multiplier(si / so).unwrap();
            let r = Rescale { in_zp: rng.range(-128, 127) as i32, mult, shift, out_zp: rng.range(-128, 127) as i32 };
            let mut out = vec![0i8; out_shape.len()];
            concat_one(&all, a_shape, 3, 256, &mut out, out_shape, Some(r));
            for p in 0..4 {
                for c in 0..256 {
                    let q = all[p * 256 + c];
                    let got = out[p * 512 + 256 + c];
                    let d = q as i128 - r.in_zp as i128;
                    let exact = (r.out_zp as i128 + exact_round(d * mult as i128, 1i128 << shift)).clamp(-128, 127);
                    assert_eq!(got as i128, exact, "trial {trial} q={q}");
                    let f = (r.out_zp as f64 + si * d as f64 / so).clamp(-128.0, 127.0);
                    assert_close(got, f, 0.5 + (d as f64).abs() * 0.5 / (1u64 << shift) as f64 + 1e-9, "rescale");
                    assert_eq!(out[p * 512 + c], 0, "untouched part");
                }
            }
        }
        // ties: ratio 1/2 → q/2 rounds half up
        let r = Rescale { in_zp: 0, mult: 1 << 30, shift: 31, out_zp: 0 };
        assert_eq!([1i8, -1, 3, -3, 127, -128].map(|q| r.apply(q)), [1, 0, 2, -1, 64, -64]);
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn concat_rejects_overflowing_offset() {
        let s = Nhwc::new(1, 1, 1, 2);
        concat_one(&[0; 2], s, 3, 3, &mut [0; 4], Nhwc::new(1, 1, 1, 4), None);
    }
}
