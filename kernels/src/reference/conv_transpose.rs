//! Reference 2-D transposed convolution (ONNX `ConvTranspose`) over NHWC int8 tensors.

use crate::params::{Conv2d, OutQuant};

/// Arguments of a (grouped) transposed convolution.
///
/// Geometry follows ONNX `ConvTranspose`: input pixel `(iy, ix)` and kernel tap `(ky, kx)`
/// contribute to output pixel
///
/// ```text
/// oy = iy · sh + ky · dh − pad_top,     ox = ix · sw + kx · dw − pad_left
/// ```
///
/// when that lands inside the output. `geom.input` is the (small) input, `geom.output` the
/// (large) output; the output size already accounts for the end padding and `output_padding`
/// (`out_h = (in_h − 1)·sh + (kh − 1)·dh + 1 + output_padding_h − pad_top − pad_bottom`), which
/// therefore need no field of their own.
#[derive(Debug)]
pub struct ConvTransposeArgs<'a> {
    /// Geometry: input = small, output = large; `kh, kw, sh, sw, dh, dw, pad_top, pad_left,
    /// groups` as in ONNX `ConvTranspose`.
    pub geom: Conv2d,
    /// Input activations, NHWC.
    pub input: &'a [i8],
    /// Input zero point, in `[-128, 127]`.
    pub input_zp: i32,
    /// Weights, plain (not packed) `[Cout][kh][kw][Cin / groups]`; output channel `oc` belongs
    /// to group `oc / (Cout / groups)` and reads that group's input channels.
    pub weights: &'a [i8],
    /// Raw bias per output channel (the input zero point is NOT folded in: the kernel subtracts
    /// it from every input value).
    pub bias: &'a [i32],
    /// Output quantization (per output channel or per tensor).
    pub q: OutQuant<'a>,
}

/// Reference transposed convolution in gather form; writes the NHWC output.
///
/// ```text
/// acc[n, oy, ox, oc] = bias[oc] + Σ_{ky, kx, c} (x[n, iy, ix, g·Cin_g + c] − input_zp) · w[oc][ky][kx][c]
///     over taps with  oy + pad_top − ky·dh = iy·sh  and  ox + pad_left − kx·dw = ix·sw
///     (both divisible by the stride, 0 ≤ iy < in_h, 0 ≤ ix < in_w),   g = oc / Cout_g
/// out = q.apply(acc, oc) = clamp(zero_point + requantize(acc, mult[oc], shift[oc]), min, max)
/// ```
///
/// An output pixel reached by no tap gets `acc = bias[oc]`. The accumulator is `i32` with
/// wrapping addition, exactly like [`super::conv2d`] (the converter keeps `|acc| < 2^31`). One
/// rounding (half up) in the requantization.
pub fn conv_transpose2d(args: &ConvTransposeArgs<'_>, out: &mut [i8]) {
    let g = &args.geom;
    assert!(g.groups > 0 && g.sh > 0 && g.sw > 0, "conv_transpose2d: zero groups or stride");
    let (cig, cog) = (g.cin_per_group(), g.cout_per_group());
    assert!(
        g.input.n == g.output.n && cig * g.groups == g.input.c && cog * g.groups == g.output.c,
        "conv_transpose2d: channels/groups/batch mismatch in {g:?}"
    );
    let mut o = 0;
    for n in 0..g.output.n {
        for oy in 0..g.output.h {
            for ox in 0..g.output.w {
                for oc in 0..g.output.c {
                    let grp = oc / cog;
                    let mut acc = args.bias[oc];
                    for ky in 0..g.kh {
                        let ty = (oy + g.pad_top) as isize - (ky * g.dh) as isize;
                        if ty < 0 || !(ty as usize).is_multiple_of(g.sh) || ty as usize / g.sh >= g.input.h {
                            continue;
                        }
                        let iy = ty as usize / g.sh;
                        for kx in 0..g.kw {
                            let tx = (ox + g.pad_left) as isize - (kx * g.dw) as isize;
                            if tx < 0 || !(tx as usize).is_multiple_of(g.sw) || tx as usize / g.sw >= g.input.w {
                                continue;
                            }
                            let ix = tx as usize / g.sw;
                            let xb = ((n * g.input.h + iy) * g.input.w + ix) * g.input.c + grp * cig;
                            let wb = ((oc * g.kh + ky) * g.kw + kx) * cig;
                            for c in 0..cig {
                                let x = args.input[xb + c] as i32 - args.input_zp;
                                acc = acc.wrapping_add(x * args.weights[wb + c] as i32);
                            }
                        }
                    }
                    out[o] = args.q.apply(acc, oc);
                    o += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Nhwc;
    use crate::reference::test_util::{assert_close, exact_round, XorShift};
    use crate::requant::quantize_multiplier;

    /// A test case: `(n, (in_h, in_w), cin, cout, (kh, kw), (sh, sw), (dh, dw),
    /// (pad_top, pad_left, pad_bottom, pad_right), (out_pad_h, out_pad_w), groups)`.
    type Case = (
        usize,
        (usize, usize),
        usize,
        usize,
        (usize, usize),
        (usize, usize),
        (usize, usize),
        (usize, usize, usize, usize),
        (usize, usize),
        usize,
    );

    fn geom(c: &Case) -> Conv2d {
        let &(n, (ih, iw), cin, cout, (kh, kw), (sh, sw), (dh, dw), (pt, pl, pb, pr), (oph, opw), groups) = c;
        let oh = (ih - 1) * sh + (kh - 1) * dh + 1 + oph - pt - pb;
        let ow = (iw - 1) * sw + (kw - 1) * dw + 1 + opw - pl - pr;
        Conv2d {
            input: Nhwc::new(n, ih, iw, cin),
            output: Nhwc::new(n, oh, ow, cout),
            kh,
            kw,
            sh,
            sw,
            dh,
            dw,
            pad_top: pt,
            pad_left: pl,
            groups,
        }
    }

    #[test]
    fn conv_transpose_matches_scatter_and_float() {
        let cases: [Case; 7] = [
            (1, (3, 3), 4, 5, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), (1, 1), 1), // typical 2× upsampling
            (2, (4, 5), 3, 2, (4, 4), (2, 2), (1, 1), (1, 1, 1, 1), (0, 0), 1),
            (1, (3, 4), 2, 3, (3, 2), (1, 1), (2, 3), (0, 1, 2, 0), (0, 0), 1), // dilation
            (1, (4, 4), 4, 6, (3, 3), (2, 1), (1, 1), (0, 2, 1, 0), (1, 0), 2), // groups
            (1, (5, 3), 3, 3, (2, 2), (2, 2), (1, 1), (0, 0, 0, 0), (0, 0), 3), // depthwise
            (1, (3, 3), 2, 2, (2, 2), (3, 3), (1, 1), (0, 0, 0, 0), (2, 1), 1), // gaps: outputs without taps
            (1, (1, 1), 8, 4, (1, 1), (1, 1), (1, 1), (0, 0, 0, 0), (0, 0), 1),
        ];
        let mut rng = XorShift::new(80);
        for (ci, c) in cases.iter().enumerate() {
            let g = geom(c);
            let (cin, cout, (kh, kw), (sh, sw_), (dh, dw), groups) = (c.2, c.3, c.4, c.5, c.6, c.9);
            let (cig, cog) = (cin / groups, cout / groups);
            let is = g.input;
            let os = g.output;
            for trial in 0..3 {
                let input = rng.vec_i8(is.len());
                let weights = rng.vec_i8(cout * kh * kw * cig);
                let (sx, zx) = (rng.f64(0.01, 0.1), rng.range(-128, 127) as i32);
                let per_channel = trial != 1;
                let sw0 = rng.f64(0.001, 0.02);
                let wscale: Vec<f64> = (0..cout).map(|_| if per_channel { rng.f64(0.001, 0.02) } else { sw0 }).collect();
                let so = rng.f64(0.05, 0.5);
                let zo = rng.range(-20, 20) as i32;
                let bias_f: Vec<f64> = (0..cout).map(|_| rng.f64(-1.0, 1.0)).collect();
                let bias: Vec<i32> = (0..cout).map(|o| (bias_f[o] / (sx * wscale[o])).round() as i32).collect();
                let ms: Vec<(i32, i32)> = (0..cout).map(|o| quantize_multiplier(sx * wscale[o] / so).unwrap()).collect();
                let mult: Vec<i32> = ms.iter().map(|m| m.0).collect();
                let shift: Vec<i32> = ms.iter().map(|m| m.1).collect();
                let nq = if per_channel { cout } else { 1 };
                let (min, max) = if trial == 2 { (zo, 127) } else { (-128, 127) };
                let args = ConvTransposeArgs {
                    geom: g,
                    input: &input,
                    input_zp: zx,
                    weights: &weights,
                    bias: &bias,
                    q: OutQuant { mult: &mult[..nq], shift: &shift[..nq], zero_point: zo, min, max },
                };
                let mut out = vec![0i8; os.len()];
                conv_transpose2d(&args, &mut out);

                // Independent scatter form: every input value times every tap, added where it lands.
                let mut acc = vec![0i64; os.len()];
                let mut touched = vec![false; os.len()];
                for n in 0..is.n {
                    for iy in 0..is.h {
                        for ix in 0..is.w {
                            for ic in 0..cin {
                                let grp = ic / cig;
                                let xv = (input[((n * is.h + iy) * is.w + ix) * cin + ic] as i32 - zx) as i64;
                                for oc in grp * cog..(grp + 1) * cog {
                                    for ky in 0..kh {
                                        for kx in 0..kw {
                                            let oy = (iy * sh + ky * dh) as i64 - g.pad_top as i64;
                                            let ox = (ix * sw_ + kx * dw) as i64 - g.pad_left as i64;
                                            if oy < 0 || ox < 0 || oy >= os.h as i64 || ox >= os.w as i64 {
                                                continue;
                                            }
                                            let wv = weights[((oc * kh + ky) * kw + kx) * cig + ic - grp * cig] as i64;
                                            let o = ((n * os.h + oy as usize) * os.w + ox as usize) * os.c + oc;
                                            acc[o] += xv * wv;
                                            touched[o] = true;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                if ci == 5 {
                    assert!(touched.iter().any(|&t| !t), "case 5 must have outputs without taps");
                }
                for (o, &a) in acc.iter().enumerate() {
                    let oc = o % os.c;
                    let qi = if per_channel { oc } else { 0 };
                    let total = a + bias[oc] as i64;
                    let want =
                        (zo as i128 + exact_round(total as i128 * mult[qi] as i128, 1i128 << shift[qi])).clamp(min as i128, max as i128);
                    assert_eq!(out[o] as i128, want, "case {ci} trial {trial} exact at {o}");
                    // float: Σ real products + real bias, in output units
                    let real = a as f64 * sx * wscale[oc] + bias_f[oc];
                    let f = (real / so + zo as f64).clamp(min as f64, max as f64);
                    // bias rounding (≤ 0.5·sx·sw_oc in real units) plus multiplier encoding error
                    let bound = 0.5 + 0.5 * sx * wscale[oc] / so + total.abs() as f64 * 0.5 / (1u64 << shift[qi]) as f64 + 1e-9;
                    assert_close(out[o], f, bound, &format!("case {ci} trial {trial} float at {o}"));
                }
            }
        }
    }
}
