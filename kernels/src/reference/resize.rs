//! Reference spatial resizing (nearest, bilinear) of int8 NHWC tensors, integer-only.
//!
//! Batch and channels are unchanged (`in_shape.n == out_shape.n`, `in_shape.c == out_shape.c`);
//! the quantization is the same in and out. Every output size needs a non-empty input along
//! that axis, and spatial sizes are below `2^26` (checked).

use crate::params::Nhwc;

/// Fraction bits `S` of the bilinear weights: each axis weight is an integer in `[0, 2^S]`.
pub const BILINEAR_FRAC_BITS: u32 = 11;

/// Spatial sizes must stay below this so that every intermediate fits `i64` (coordinates) and
/// `i32` (accumulators).
const MAX_DIM: usize = 1 << 26;

fn check_shapes(in_shape: Nhwc, out_shape: Nhwc) {
    assert!(in_shape.n == out_shape.n && in_shape.c == out_shape.c, "resize: {in_shape:?} → {out_shape:?} changes batch or channels");
    assert!(
        in_shape.h < MAX_DIM && in_shape.w < MAX_DIM && out_shape.h < MAX_DIM && out_shape.w < MAX_DIM,
        "resize: spatial size too large"
    );
    assert!((out_shape.h == 0 || in_shape.h > 0) && (out_shape.w == 0 || in_shape.w > 0), "resize: empty input for a non-empty output");
}

/// Nearest source index, ONNX `asymmetric` + `floor`: `floor(d · inn / out)`.
#[inline(always)]
fn nearest_src(d: usize, inn: usize, out: usize) -> usize {
    (d as u64 * inn as u64 / out as u64) as usize
}

/// Nearest-neighbour resize, ONNX `coordinate_transformation_mode = asymmetric`,
/// `nearest_mode = floor` (also TF `align_corners = false, half_pixel_centers = false` and the
/// ONNX `Upsample` op):
///
/// ```text
/// out[n, y, x, c] = in[n, floor(y · in_h / out_h), floor(x · in_w / out_w), c]
/// ```
///
/// computed with exact integer division. Exact (a pure gather).
pub fn resize_nearest(input: &[i8], in_shape: Nhwc, out: &mut [i8], out_shape: Nhwc) {
    check_shapes(in_shape, out_shape);
    let c_n = out_shape.c;
    let mut o = 0;
    for n in 0..out_shape.n {
        for y in 0..out_shape.h {
            let sy = nearest_src(y, in_shape.h, out_shape.h);
            for x in 0..out_shape.w {
                let sx = nearest_src(x, in_shape.w, out_shape.w);
                let i = ((n * in_shape.h + sy) * in_shape.w + sx) * c_n;
                out[o..o + c_n].copy_from_slice(&input[i..i + c_n]);
                o += c_n;
            }
        }
    }
}

/// Source indices `(i0, i1)` and the integer weight `w1 ∈ [0, 2^S]` of `i1` for output
/// coordinate `d` along an axis of `inn → out` (see [`resize_bilinear`] for the definition).
#[inline(always)]
fn bilinear_coord(d: usize, inn: usize, out: usize, align_corners: bool) -> (usize, usize, i32) {
    let (p, q): (i64, i64) = if align_corners {
        if out <= 1 {
            (0, 1)
        } else {
            (d as i64 * (inn as i64 - 1), out as i64 - 1)
        }
    } else {
        ((2 * d as i64 + 1) * inn as i64 - out as i64, 2 * out as i64)
    };
    let last = inn - 1;
    if p <= 0 {
        return (0, last.min(1), 0);
    }
    let i0 = (p / q) as usize;
    if i0 >= last {
        return (last, last, 0);
    }
    let f = p - i0 as i64 * q; // 0 ≤ f < q
    let w1 = ((f << (BILINEAR_FRAC_BITS + 1)) + q) / (2 * q);
    (i0, i0 + 1, w1 as i32)
}

/// Bilinear resize, integer-only with fixed-point weights and a single final rounding.
///
/// Source coordinate of output index `d` along an axis `in → out`, as an exact rational `P/Q`:
///
/// ```text
/// align_corners = false (ONNX/TF half_pixel):  P/Q = ((2·d + 1)·in − out) / (2·out)
///                                              (= (d + ½)·in/out − ½)
/// align_corners = true:                        P/Q = d·(in − 1) / (out − 1)      (0 when out = 1)
/// ```
///
/// then, with `S = BILINEAR_FRAC_BITS` (11):
///
/// ```text
/// P ≤ 0:                i0 = 0,      i1 = min(1, in−1), w1 = 0      (clamp at the first pixel)
/// floor(P/Q) ≥ in − 1:  i0 = in − 1, i1 = in − 1,       w1 = 0      (clamp at the last pixel)
/// otherwise:            i0 = floor(P/Q), i1 = i0 + 1, f = P − i0·Q,
///                       w1 = floor((f · 2^(S+1) + Q) / (2·Q))        (= round_half_up(f/Q · 2^S))
/// w0 = 2^S − w1
/// ```
///
/// and every output value is (all in `i32`: `|acc| ≤ 128 · 2^2S = 2^29`)
///
/// ```text
/// acc = wy0·(wx0·q[y0,x0] + wx1·q[y0,x1]) + wy1·(wx0·q[y1,x0] + wx1·q[y1,x1])
/// out = (acc + 2^(2S−1)) >> 2S                                    (arithmetic shift: half up)
/// ```
///
/// The weights of each axis sum to exactly `2^S`, so the result is a convex combination and
/// needs no clamp. Compared with the exact real interpolation the error is at most
/// `0.5 + 2 · 255 · 2^-(S+1) ≈ 0.625` LSB (each axis weight is off by ≤ `2^-(S+1)`); for
/// power-of-two scale factors with half_pixel the weights are exact and the bound is 0.5.
///
/// `input_zp` (the common zero point) does not change the result: interpolating `q − zp` and
/// adding `zp` back gives the same integer because the weights sum to `2^2S` exactly. It is
/// accepted for interface symmetry with other kernels and only range-checked in debug builds.
pub fn resize_bilinear(input: &[i8], in_shape: Nhwc, out: &mut [i8], out_shape: Nhwc, align_corners: bool, input_zp: i32) {
    debug_assert!((-128..=127).contains(&input_zp), "resize: zero point out of range");
    check_shapes(in_shape, out_shape);
    let one = 1i32 << BILINEAR_FRAC_BITS;
    let round = 1i32 << (2 * BILINEAR_FRAC_BITS - 1);
    let c_n = out_shape.c;
    let at = |n: usize, y: usize, x: usize, c: usize| input[((n * in_shape.h + y) * in_shape.w + x) * c_n + c] as i32;
    let mut o = 0;
    for n in 0..out_shape.n {
        for y in 0..out_shape.h {
            let (y0, y1, wy1) = bilinear_coord(y, in_shape.h, out_shape.h, align_corners);
            let wy0 = one - wy1;
            for x in 0..out_shape.w {
                let (x0, x1, wx1) = bilinear_coord(x, in_shape.w, out_shape.w, align_corners);
                let wx0 = one - wx1;
                for c in 0..c_n {
                    let top = wx0 * at(n, y0, x0, c) + wx1 * at(n, y0, x1, c);
                    let bottom = wx0 * at(n, y1, x0, c) + wx1 * at(n, y1, x1, c);
                    let acc = wy0 * top + wy1 * bottom;
                    out[o] = ((acc + round) >> (2 * BILINEAR_FRAC_BITS)) as i8;
                    o += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::test_util::{assert_close, exact_round, XorShift};

    const S: u32 = BILINEAR_FRAC_BITS;

    fn shapes() -> Vec<(Nhwc, Nhwc)> {
        vec![
            (Nhwc::new(1, 4, 4, 3), Nhwc::new(1, 8, 8, 3)),
            (Nhwc::new(2, 3, 5, 2), Nhwc::new(2, 5, 3, 2)),
            (Nhwc::new(1, 7, 6, 1), Nhwc::new(1, 2, 13, 1)),
            (Nhwc::new(1, 5, 5, 4), Nhwc::new(1, 5, 5, 4)),
            (Nhwc::new(1, 1, 4, 2), Nhwc::new(1, 3, 1, 2)),
            (Nhwc::new(1, 2, 2, 1), Nhwc::new(1, 32, 17, 1)),
            (Nhwc::new(1, 16, 9, 2), Nhwc::new(1, 4, 3, 2)),
        ]
    }

    fn at(s: Nhwc, v: &[i8], n: usize, y: usize, x: usize, c: usize) -> i8 {
        v[((n * s.h + y) * s.w + x) * s.c + c]
    }

    #[test]
    fn nearest_exact() {
        let mut rng = XorShift::new(50);
        for (si, &(is, os)) in shapes().iter().enumerate() {
            let input = rng.vec_i8(is.len());
            let mut out = vec![0i8; os.len()];
            resize_nearest(&input, is, &mut out, os);
            let mut o = 0;
            for n in 0..os.n {
                for y in 0..os.h {
                    for x in 0..os.w {
                        for c in 0..os.c {
                            // independent: ONNX asymmetric x_orig = x / scale, scale = out / in
                            let sy = (y as f64 / (os.h as f64 / is.h as f64) + 1e-9).floor() as usize;
                            let sx = (x as f64 / (os.w as f64 / is.w as f64) + 1e-9).floor() as usize;
                            assert_eq!(out[o], at(is, &input, n, sy.min(is.h - 1), sx.min(is.w - 1), c), "shape {si}");
                            o += 1;
                        }
                    }
                }
            }
        }
        // 2× upsampling duplicates pixels
        let mut out = [0i8; 4];
        resize_nearest(&[1, 2], Nhwc::new(1, 1, 2, 1), &mut out, Nhwc::new(1, 1, 4, 1));
        assert_eq!(out, [1, 1, 2, 2]);
    }

    /// Independent real-valued source coordinate (ONNX formulas), clamped to `[0, in − 1]`.
    fn src_f64(d: usize, inn: usize, out: usize, align: bool) -> f64 {
        let x = if align {
            if out == 1 {
                0.0
            } else {
                d as f64 * (inn - 1) as f64 / (out - 1) as f64
            }
        } else {
            (d as f64 + 0.5) * inn as f64 / out as f64 - 0.5
        };
        x.clamp(0.0, (inn - 1) as f64)
    }

    /// Independent exact source coordinate as a reduced-free rational `(num, den)`, clamped.
    fn src_rational(d: usize, inn: usize, out: usize, align: bool) -> (i128, i128) {
        let (num, den) = if align {
            if out == 1 {
                (0, 1)
            } else {
                (d as i128 * (inn as i128 - 1), out as i128 - 1)
            }
        } else {
            // (d + 1/2)·in/out − 1/2 = ((2d + 1)·in − out) / (2·out)
            ((2 * d as i128 + 1) * inn as i128 - out as i128, 2 * out as i128)
        };
        let num = num.clamp(0, (inn as i128 - 1) * den);
        (num, den)
    }

    /// The documented integer weights from the exact rational coordinate.
    fn int_weights(d: usize, inn: usize, out: usize, align: bool) -> (usize, usize, i128) {
        let (num, den) = src_rational(d, inn, out, align);
        let i0 = (num / den) as usize;
        let f = num - i0 as i128 * den;
        let w1 = exact_round(f << S, den);
        (i0, (i0 + 1).min(inn - 1), w1)
    }

    #[test]
    fn bilinear_matches_float_and_exact() {
        let mut rng = XorShift::new(51);
        for (si, &(is, os)) in shapes().iter().enumerate() {
            for &align in &[false, true] {
                for _ in 0..3 {
                    let input = rng.vec_i8(is.len());
                    let zp = rng.range(-128, 127) as i32;
                    let mut out = vec![0i8; os.len()];
                    resize_bilinear(&input, is, &mut out, os, align, zp);
                    let mut o = 0;
                    for n in 0..os.n {
                        for y in 0..os.h {
                            let fy = src_f64(y, is.h, os.h, align);
                            let (fy0, fy1) = (fy.floor() as usize, (fy.floor() as usize + 1).min(is.h - 1));
                            let ty = fy - fy.floor();
                            let (y0, y1, wy1) = int_weights(y, is.h, os.h, align);
                            for x in 0..os.w {
                                let fx = src_f64(x, is.w, os.w, align);
                                let (fx0, fx1) = (fx.floor() as usize, (fx.floor() as usize + 1).min(is.w - 1));
                                let tx = fx - fx.floor();
                                let (x0, x1, wx1) = int_weights(x, is.w, os.w, align);
                                for c in 0..os.c {
                                    let q = |yy, xx| at(is, &input, n, yy, xx, c) as f64;
                                    let real = (1.0 - ty) * ((1.0 - tx) * q(fy0, fx0) + tx * q(fy0, fx1))
                                        + ty * ((1.0 - tx) * q(fy1, fx0) + tx * q(fy1, fx1));
                                    let bound = 0.5 + 2.0 * 255.0 / (1u64 << (S + 1)) as f64 + 1e-9;
                                    assert_close(out[o], real, bound, &format!("shape {si} align {align}"));
                                    // exact integer spec, with zero point subtracted and re-added
                                    let qi = |yy, xx| at(is, &input, n, yy, xx, c) as i128 - zp as i128;
                                    let one = 1i128 << S;
                                    let acc = (one - wy1) * ((one - wx1) * qi(y0, x0) + wx1 * qi(y0, x1))
                                        + wy1 * ((one - wx1) * qi(y1, x0) + wx1 * qi(y1, x1));
                                    let want = exact_round(acc, 1i128 << (2 * S)) + zp as i128;
                                    assert_eq!(out[o] as i128, want, "shape {si} align {align} exact");
                                    o += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn bilinear_identity_and_exact_ratios() {
        let mut rng = XorShift::new(52);
        let s = Nhwc::new(2, 5, 7, 3);
        let input = rng.vec_i8(s.len());
        for &align in &[false, true] {
            let mut out = vec![0i8; s.len()];
            resize_bilinear(&input, s, &mut out, s, align, 0);
            assert_eq!(out, input, "same size is the identity (align {align})");
        }
        // 2× half_pixel: weights ¼/¾ are exact, so the error is ≤ 0.5 exactly.
        let is = Nhwc::new(1, 1, 2, 1);
        let os = Nhwc::new(1, 1, 4, 1);
        let mut out = [0i8; 4];
        resize_bilinear(&[0, 100], is, &mut out, os, false, 0);
        assert_eq!(out, [0, 25, 75, 100]);
        resize_bilinear(&[0, 2], is, &mut out, os, false, 0);
        assert_eq!(out, [0, 1, 2, 2]); // 0.5 → 1, 1.5 → 2
    }

    #[test]
    fn bilinear_ties_round_half_up() {
        // align_corners 2 → 3: the middle sample is the exact average.
        let is = Nhwc::new(1, 1, 2, 1);
        let os = Nhwc::new(1, 1, 3, 1);
        let mut out = [0i8; 3];
        for &(a, b, mid) in &[(0i8, 1i8, 1i8), (-1, 0, 0), (-128, 127, 0), (126, 127, 127), (-128, -127, -127)] {
            resize_bilinear(&[a, b], is, &mut out, os, true, 0);
            assert_eq!(out, [a, mid, b], "({a} + {b}) / 2");
        }
        // 2×2 → 3×3: the centre is the average of four.
        let is = Nhwc::new(1, 2, 2, 1);
        let os = Nhwc::new(1, 3, 3, 1);
        let mut out = [0i8; 9];
        resize_bilinear(&[1, 0, 0, 1], is, &mut out, os, true, 5);
        assert_eq!(out[4], 1); // 0.5 → 1
        resize_bilinear(&[-1, 0, 0, -1], is, &mut out, os, true, 5);
        assert_eq!(out[4], 0); // −0.5 → 0
        resize_bilinear(&[3, 0, 0, 0], is, &mut out, os, true, 5);
        assert_eq!(out[4], 1); // 0.75 → 1
    }
}
