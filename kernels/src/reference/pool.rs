//! Reference pooling kernels (max, average, global average) over int8 NHWC tensors.
//!
//! Windows follow [`Conv2d`]: output `(oy, ox)` covers input rows `oy·sh + ky·dh − pad_top`
//! (`ky < kh`) and columns `ox·sw + kx·dw − pad_left` (`kx < kw`). Cells outside the input
//! (padding, including the bottom/right overhang of "ceil mode" output sizes) are never read.
//! Pooling is per channel: `geom.input.c == geom.output.c`, `geom.input.n == geom.output.n`, and
//! `geom.groups` is ignored.

use super::concat::Rescale;
use crate::params::{Conv2d, Nhwc};

/// Input offset of cell `(n, iy, ix, 0)` of the window tap `(ky, kx)` for output `(oy, ox)`, or
/// `None` when that cell is outside the input.
#[inline(always)]
fn tap(g: &Conv2d, n: usize, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<usize> {
    let (iy, ix) = (g.in_y(oy, ky), g.in_x(ox, kx));
    if iy < 0 || ix < 0 || iy as usize >= g.input.h || ix as usize >= g.input.w {
        return None;
    }
    Some(((n * g.input.h + iy as usize) * g.input.w + ix as usize) * g.input.c)
}

fn check_geom(g: &Conv2d) {
    assert!(
        g.input.c == g.output.c && g.input.n == g.output.n,
        "pool: input {:?} and output {:?} differ in batch or channels",
        g.input,
        g.output
    );
}

/// Max pooling with the same quantization in and out:
///
/// ```text
/// out[n, oy, ox, c] = clamp(max({−128} ∪ {x[n, iy, ix, c] : (iy, ix) in the window and inside the input}), min, max)
/// ```
///
/// Padded cells are ignored (equivalently, they hold −128, the identity of `max` on int8); a
/// window entirely outside the input yields `clamp(−128, min, max)`. `min`/`max` implement a
/// fused ReLU/clip (`-128 ≤ min ≤ max ≤ 127`). Integer-only, exact.
pub fn max_pool(geom: &Conv2d, input: &[i8], out: &mut [i8], min: i32, max: i32) {
    let g = geom;
    check_geom(g);
    let c_n = g.output.c;
    let mut o = 0;
    for n in 0..g.output.n {
        for oy in 0..g.output.h {
            for ox in 0..g.output.w {
                let dst = &mut out[o..o + c_n];
                dst.fill(i8::MIN);
                for ky in 0..g.kh {
                    for kx in 0..g.kw {
                        if let Some(base) = tap(g, n, oy, ox, ky, kx) {
                            for (d, &x) in dst.iter_mut().zip(&input[base..base + c_n]) {
                                *d = (*d).max(x);
                            }
                        }
                    }
                }
                for d in dst.iter_mut() {
                    *d = (*d as i32).clamp(min, max) as i8;
                }
                o += c_n;
            }
        }
    }
}

/// Arguments of an average pooling.
///
/// `mult · 2^-shift` is the real ratio `scale_in / scale_out` (encode it with
/// [`crate::requant::quantize_multiplier`]; `(2^30, 30)` when in and out share the scale).
#[derive(Clone, Copy, Debug)]
pub struct AvgPoolArgs {
    /// Window geometry (`groups` and channel grouping ignored).
    pub geom: Conv2d,
    /// Divide by every window cell (`kh · kw`) instead of only the cells inside the input.
    pub count_include_pad: bool,
    /// Input zero point, in `[-128, 127]`.
    pub input_zp: i32,
    /// Q31 multiplier (0 or in `[2^30, 2^31)`).
    pub mult: i32,
    /// Right shift, in `[1, 62]`.
    pub shift: i32,
    /// Output zero point, in `[-128, 127]`.
    pub out_zp: i32,
    /// Lower clamp (quantized), `-128..=max`.
    pub min: i32,
    /// Upper clamp (quantized), `min..=127`.
    pub max: i32,
}

/// The `i64` evaluation of [`mean_requant`], or `None` when an intermediate would overflow.
#[inline]
fn mean_requant_i64(sum: i64, count: u64, mult: i32, shift: i32) -> Option<i64> {
    let num = sum.checked_mul(mult as i64)?;
    let den = i64::try_from(count).ok()?.checked_mul(1i64 << shift)?;
    let n2 = num.checked_mul(2)?.checked_add(den)?;
    Some(n2.div_euclid(den.checked_mul(2)?))
}

/// `round_half_up(sum · mult / (count · 2^shift))`, computed exactly as
/// `floor((2·num + den) / (2·den))` with `num = sum · mult`, `den = count · 2^shift`; `0` when
/// `count == 0`. Uses `i64` when every intermediate fits, `i128` otherwise (same result).
#[inline]
pub fn mean_requant(sum: i64, count: u64, mult: i32, shift: i32) -> i64 {
    if count == 0 {
        return 0;
    }
    if let Some(v) = mean_requant_i64(sum, count, mult, shift) {
        return v;
    }
    let num = sum as i128 * mult as i128;
    let den = (count as i128).checked_mul(1i128 << shift).expect("avg_pool: window too large");
    let two_den = den.checked_mul(2).expect("avg_pool: window too large");
    let r = (2 * num + den).div_euclid(two_den);
    // |r| ≤ 255 · 2^31 / 2 < 2^39: always fits.
    r as i64
}

/// Average pooling:
///
/// ```text
/// S     = Σ (x[n, iy, ix, c] − input_zp)          over window cells inside the input   (exact)
/// count = kh · kw                  if count_include_pad
///       = #window cells inside the input          otherwise
/// out   = clamp(out_zp + floor((2·S·mult + count·2^shift) / (2·count·2^shift)), min, max)
/// ```
///
/// i.e. `round_half_up(S · mult / (count · 2^shift))`: the mean and the rescale are fused into a
/// single exact rounding (half up, towards +∞ on ties), computed with exact integer floor
/// division (`i64` when it provably fits, else `i128`). A window with `count == 0` (entirely in
/// the padding, `count_include_pad` off) yields `clamp(out_zp, min, max)`. Padded cells
/// contribute nothing to `S` (they equal the zero point); with `count_include_pad` they still
/// count in the divisor, and so do cells of a ceil-mode overhang past the bottom/right edge.
/// (`i128` always suffices: `|S| < 2^63`, `count < 2^64`, `shift ≤ 62`.)
pub fn avg_pool(args: &AvgPoolArgs, input: &[i8], out: &mut [i8]) {
    let g = &args.geom;
    check_geom(g);
    let c_n = g.output.c;
    let zp = args.input_zp as i64;
    let full = (g.kh as u64).saturating_mul(g.kw as u64);
    let mut o = 0;
    for n in 0..g.output.n {
        for oy in 0..g.output.h {
            for ox in 0..g.output.w {
                for c in 0..c_n {
                    let mut sum = 0i64;
                    let mut inside = 0u64;
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            if let Some(base) = tap(g, n, oy, ox, ky, kx) {
                                sum += input[base + c] as i64 - zp;
                                inside += 1;
                            }
                        }
                    }
                    let count = if args.count_include_pad { full } else { inside };
                    let v = mean_requant(sum, count, args.mult, args.shift) + args.out_zp as i64;
                    out[o + c] = v.clamp(args.min as i64, args.max as i64) as i8;
                }
                o += c_n;
            }
        }
    }
}

/// Geometry of a global pooling over `input`: one window of `h × w` cells, no padding, output
/// `[n, 1, 1, c]`.
pub const fn global_geometry(input: Nhwc) -> Conv2d {
    Conv2d {
        input,
        output: Nhwc::new(input.n, 1, 1, input.c),
        kh: input.h,
        kw: input.w,
        sh: 1,
        sw: 1,
        dh: 1,
        dw: 1,
        pad_top: 0,
        pad_left: 0,
        groups: 1,
    }
}

/// Global average pooling `[n, h, w, c] → [n, 1, 1, c]`: exactly [`avg_pool`] with the window
/// of [`global_geometry`] (count `h · w`), i.e.
/// `out = clamp(q.out_zp + round_half_up(Σ (x − q.in_zp) · q.mult / (h·w · 2^q.shift)), min, max)`.
pub fn global_avg_pool(input_shape: Nhwc, input: &[i8], q: Rescale, min: i32, max: i32, out: &mut [i8]) {
    let args = AvgPoolArgs {
        geom: global_geometry(input_shape),
        count_include_pad: false,
        input_zp: q.in_zp,
        mult: q.mult,
        shift: q.shift,
        out_zp: q.out_zp,
        min,
        max,
    };
    avg_pool(&args, input, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::test_util::{assert_close, exact_round, XorShift};
    use crate::requant::{quantize_multiplier, MULT_MIN};

    /// Output size like ONNX/PyTorch: floor or ceil of `(in + pads − dilated_k) / s` plus 1, with
    /// the ceil-mode rule that the last window must start inside the input or left padding.
    fn out_size(inp: usize, k: usize, s: usize, d: usize, pad_begin: usize, pad_end: usize, ceil: bool) -> usize {
        let span = inp + pad_begin + pad_end - ((k - 1) * d + 1);
        let mut o = if ceil { span.div_ceil(s) } else { span / s } + 1;
        if ceil && (o - 1) * s >= inp + pad_begin {
            o -= 1;
        }
        o
    }

    #[allow(clippy::too_many_arguments)]
    fn geom(
        n: usize,
        h: usize,
        w: usize,
        c: usize,
        k: (usize, usize),
        s: (usize, usize),
        d: (usize, usize),
        pad: (usize, usize, usize, usize),
        ceil: bool,
    ) -> Conv2d {
        let oh = out_size(h, k.0, s.0, d.0, pad.0, pad.2, ceil);
        let ow = out_size(w, k.1, s.1, d.1, pad.1, pad.3, ceil);
        Conv2d {
            input: Nhwc::new(n, h, w, c),
            output: Nhwc::new(n, oh, ow, c),
            kh: k.0,
            kw: k.1,
            sh: s.0,
            sw: s.1,
            dh: d.0,
            dw: d.1,
            pad_top: pad.0,
            pad_left: pad.1,
            groups: 1,
        }
    }

    fn geoms() -> Vec<Conv2d> {
        vec![
            geom(2, 8, 8, 3, (2, 2), (2, 2), (1, 1), (0, 0, 0, 0), false),
            geom(1, 7, 9, 4, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), false),
            geom(1, 7, 7, 2, (2, 2), (2, 2), (1, 1), (0, 0, 0, 0), true), // ceil: overhang
            geom(1, 6, 5, 3, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), true),
            geom(2, 9, 10, 3, (3, 2), (1, 3), (2, 1), (2, 0, 2, 1), false), // dilation
            geom(1, 5, 5, 5, (5, 5), (1, 1), (1, 1), (2, 2, 2, 2), false),
            geom(1, 4, 6, 1, (1, 1), (1, 1), (1, 1), (0, 0, 0, 0), false),
            geom(1, 3, 3, 2, (3, 3), (3, 3), (1, 1), (2, 2, 2, 2), true), // windows mostly padding
            geom(1, 2, 2, 1, (2, 2), (2, 2), (1, 1), (2, 2, 0, 0), false), // a window entirely in padding
        ]
    }

    /// Independent window enumeration: the list of in-range input cells of window `(oy, ox)`.
    fn cells(g: &Conv2d, oy: usize, ox: usize) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let iy = (oy * g.sh + ky * g.dh) as i64 - g.pad_top as i64;
                let ix = (ox * g.sw + kx * g.dw) as i64 - g.pad_left as i64;
                if (0..g.input.h as i64).contains(&iy) && (0..g.input.w as i64).contains(&ix) {
                    v.push((iy as usize, ix as usize));
                }
            }
        }
        v
    }

    fn at(s: Nhwc, x: &[i8], n: usize, y: usize, xx: usize, c: usize) -> i8 {
        x[((n * s.h + y) * s.w + xx) * s.c + c]
    }

    #[test]
    fn max_pool_exact() {
        let mut rng = XorShift::new(10);
        for (gi, g) in geoms().iter().enumerate() {
            for &(min, max) in &[(-128, 127), (-5, 127), (0, 6), (-128, -100)] {
                let input = rng.vec_i8(g.input.len());
                let mut out = vec![0i8; g.output.len()];
                max_pool(g, &input, &mut out, min, max);
                let mut o = 0;
                for n in 0..g.output.n {
                    for oy in 0..g.output.h {
                        for ox in 0..g.output.w {
                            for c in 0..g.output.c {
                                let m = cells(g, oy, ox).iter().map(|&(y, x)| at(g.input, &input, n, y, x, c) as i32).max();
                                let want = m.unwrap_or(-128).clamp(min, max);
                                assert_eq!(out[o] as i32, want, "geom {gi} at {n},{oy},{ox},{c}");
                                o += 1;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Check `avg_pool` against both an exact i128 evaluation and an f64 mean.
    fn check_avg(args: &AvgPoolArgs, input: &[i8], ratio: f64, what: &str) {
        let g = &args.geom;
        let mut out = vec![0i8; g.output.len()];
        avg_pool(args, input, &mut out);
        let mut o = 0;
        for n in 0..g.output.n {
            for oy in 0..g.output.h {
                for ox in 0..g.output.w {
                    let cs = cells(g, oy, ox);
                    let count = if args.count_include_pad { g.kh * g.kw } else { cs.len() };
                    for c in 0..g.output.c {
                        let sum: i128 = cs.iter().map(|&(y, x)| at(g.input, input, n, y, x, c) as i128 - args.input_zp as i128).sum();
                        let exact = if count == 0 { 0 } else { exact_round(sum * args.mult as i128, (count as i128) << args.shift) };
                        let want = (args.out_zp as i128 + exact).clamp(args.min as i128, args.max as i128);
                        assert_eq!(out[o] as i128, want, "{what}: exact at {n},{oy},{ox},{c}");
                        // independent float: mean in real units, rescaled
                        let mean = if count == 0 { 0.0 } else { sum as f64 / count as f64 };
                        let f = (args.out_zp as f64 + mean * ratio).clamp(args.min as f64, args.max as f64);
                        let bound = 0.5 + mean.abs() * 0.5 / (1u64 << args.shift) as f64 + 1e-9;
                        assert_close(out[o], f, bound, what);
                        o += 1;
                    }
                }
            }
        }
    }

    #[test]
    fn avg_pool_matches_float_and_exact() {
        let mut rng = XorShift::new(11);
        for (gi, g) in geoms().iter().enumerate() {
            for &cip in &[false, true] {
                for trial in 0..6 {
                    let input = rng.vec_i8(g.input.len());
                    let ratio = if trial == 0 { 1.0 } else { 10f64.powf(rng.f64(-1.0, 1.0)) };
                    let (mult, shift) = quantize_multiplier(ratio).unwrap();
                    let zo = rng.range(-30, 30) as i32;
                    let args = AvgPoolArgs {
                        geom: *g,
                        count_include_pad: cip,
                        input_zp: rng.range(-128, 127) as i32,
                        mult,
                        shift,
                        out_zp: zo,
                        min: if trial % 2 == 1 { zo } else { -128 },
                        max: 127,
                    };
                    check_avg(&args, &input, ratio, &format!("geom {gi} cip {cip} trial {trial}"));
                }
            }
        }
    }

    #[test]
    fn avg_pool_count_include_pad_and_ties() {
        // 3×3 window, stride 1, pad 1 on a 2×2 input of ones, zp 0, ratio 1:
        // corner output has 4 cells inside: mean 1 (exclude pad) vs 4/9 → 0 (include pad).
        let g = geom(1, 2, 2, 1, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), false);
        let input = [9i8, 9, 9, 9];
        let mk =
            |cip| AvgPoolArgs { geom: g, count_include_pad: cip, input_zp: 0, mult: MULT_MIN, shift: 30, out_zp: 0, min: -128, max: 127 };
        let mut out = [0i8; 4];
        avg_pool(&mk(false), &input, &mut out);
        assert_eq!(out, [9; 4]);
        avg_pool(&mk(true), &input, &mut out);
        assert_eq!(out, [4; 4]); // 36 / 9 = 4
        let input = [1i8, 2, 3, 5];
        avg_pool(&mk(true), &input, &mut out);
        assert_eq!(out, [1; 4]); // 11 / 9 = 1.22 → 1
        let input = [1i8, 2, 3, 8];
        avg_pool(&mk(true), &input, &mut out);
        assert_eq!(out, [2; 4]); // 14 / 9 = 1.56 → 2

        // Ties: 1×2 windows, ratio 1 → (a + b) / 2.
        let g = geom(1, 1, 2, 6, (1, 2), (1, 1), (1, 1), (0, 0, 0, 0), false);
        let a = [1i8, -1, 3, -3, 127, -128];
        let b = [2i8, -2, 0, 0, 126, -127];
        let mut input = [0i8; 12];
        input[..6].copy_from_slice(&a);
        input[6..].copy_from_slice(&b);
        let args =
            AvgPoolArgs { geom: g, count_include_pad: false, input_zp: 0, mult: MULT_MIN, shift: 30, out_zp: 0, min: -128, max: 127 };
        let mut out = [0i8; 6];
        avg_pool(&args, &input, &mut out);
        assert_eq!(out, [2, -1, 2, -1, 127, -127]); // 1.5→2, −1.5→−1, 1.5→2, −1.5→−1, 126.5→127, −127.5→−127

        // Tie with a non-trivial multiplier: 3 cells, ratio 2^30·3/2^31 = 1.5 → S·1.5/3 = S/2.
        let g = geom(1, 1, 3, 1, (1, 3), (1, 1), (1, 1), (0, 0, 0, 0), false);
        let args = AvgPoolArgs { geom: g, count_include_pad: false, input_zp: 0, mult: 3 << 29, shift: 30, out_zp: 0, min: -128, max: 127 };
        let mut out = [0i8; 1];
        avg_pool(&args, &[1, 1, 1], &mut out);
        assert_eq!(out, [2]); // 3 · 1.5 / 3 = 1.5 → 2
        avg_pool(&args, &[-1, -1, -1], &mut out);
        assert_eq!(out, [-1]); // −1.5 → −1
    }

    #[test]
    fn avg_pool_i128_path_matches_exact() {
        // shift 62 makes 2·count·2^62 overflow i64: the i128 path must agree with the exact value.
        let mut rng = XorShift::new(12);
        let g = geom(1, 6, 6, 3, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), false);
        for _ in 0..20 {
            let input = rng.vec_i8(g.input.len());
            let mult = rng.range(MULT_MIN as i64, i32::MAX as i64) as i32;
            let args = AvgPoolArgs {
                geom: g,
                count_include_pad: false,
                input_zp: rng.range(-128, 127) as i32,
                mult,
                shift: 62,
                out_zp: 0,
                min: -128,
                max: 127,
            };
            check_avg(&args, &input, mult as f64 / 2f64.powi(62), "i128 path");
            // and a large-ratio case where the result saturates
            let args = AvgPoolArgs { shift: 1, ..args };
            check_avg(&args, &input, mult as f64 / 2.0, "saturating");
        }
        // direct helper checks on both paths
        for &(sum, count, mult, shift) in
            &[(3i64, 2u64, MULT_MIN, 31), (-3, 2, MULT_MIN, 31), (-765, 3, i32::MAX, 62), (1 << 40, 1 << 20, i32::MAX, 62)]
        {
            let want = exact_round(sum as i128 * mult as i128, (count as i128) << shift) as i64;
            assert_eq!(mean_requant(sum, count, mult, shift), want);
        }
    }

    #[test]
    fn global_avg_pool_matches_avg_pool_and_float() {
        let mut rng = XorShift::new(13);
        for &shape in &[Nhwc::new(1, 7, 7, 8), Nhwc::new(2, 1, 1, 3), Nhwc::new(1, 13, 5, 2), Nhwc::new(3, 16, 16, 1)] {
            let input = rng.vec_i8(shape.len());
            let ratio = 10f64.powf(rng.f64(-0.5, 0.5));
            let (mult, shift) = quantize_multiplier(ratio).unwrap();
            let q = Rescale { in_zp: rng.range(-128, 127) as i32, mult, shift, out_zp: rng.range(-10, 10) as i32 };
            let mut out = vec![0i8; shape.n * shape.c];
            global_avg_pool(shape, &input, q, -128, 127, &mut out);
            let args = AvgPoolArgs {
                geom: global_geometry(shape),
                count_include_pad: true, // no padding: same as false
                input_zp: q.in_zp,
                mult,
                shift,
                out_zp: q.out_zp,
                min: -128,
                max: 127,
            };
            check_avg(&args, &input, ratio, "global");
            for n in 0..shape.n {
                for c in 0..shape.c {
                    let mut s = 0.0;
                    for y in 0..shape.h {
                        for x in 0..shape.w {
                            s += (at(shape, &input, n, y, x, c) as i32 - q.in_zp) as f64;
                        }
                    }
                    let mean = s / (shape.h * shape.w) as f64;
                    let bound = 0.5 + mean.abs() * 0.5 / (1u64 << shift) as f64 + 1e-9;
                    assert_close(out[n * shape.c + c], (q.out_zp as f64 + mean * ratio).clamp(-128.0, 127.0), bound, "global float");
                }
            }
        }
    }
}
