//! Reference 2-D convolutions over NHWC int8 tensors.

use crate::pack;
use crate::params::{Conv2d, OutQuant};

/// Arguments of a (grouped) convolution with packed weights.
#[derive(Debug)]
pub struct ConvArgs<'a> {
    /// Geometry (input/output shapes, window, groups).
    pub geom: Conv2d,
    /// Input activations, NHWC.
    pub input: &'a [i8],
    /// Input zero point: the value of padded cells.
    pub input_zp: i32,
    /// Weights packed per group (see [`crate::pack`]), groups one after another, each
    /// `pack::packed_len(cout_per_group, k)` bytes.
    pub weights: &'a [i8],
    /// Bias per output channel, input zero point folded in.
    pub bias: &'a [i32],
    /// Bias per output channel for unsigned-activation paths.
    pub bias_u8: &'a [i32],
    /// Output quantization (per output channel).
    pub q: OutQuant<'a>,
}

/// Arguments of a depthwise convolution (groups = channels, multiplier 1).
#[derive(Debug)]
pub struct DepthwiseArgs<'a> {
    /// Geometry (`groups == input.c == output.c`).
    pub geom: Conv2d,
    /// Input activations, NHWC.
    pub input: &'a [i8],
    /// Input zero point: the value of padded cells.
    pub input_zp: i32,
    /// Weights `[kh · kw][c]`, channel fastest.
    pub weights: &'a [i8],
    /// Bias per channel, input zero point folded in (`bias - zp · Σ w`).
    pub bias: &'a [i32],
    /// Output quantization.
    pub q: OutQuant<'a>,
}

/// Reference grouped convolution; writes the NHWC output.
pub fn conv2d(a: &ConvArgs<'_>, out: &mut [i8]) {
    let g = &a.geom;
    let (cig, cog, k) = (g.cin_per_group(), g.cout_per_group(), g.k());
    let group_len = pack::packed_len(cog, k).unwrap_or(0);
    for n in 0..g.output.n {
        for oy in 0..g.output.h {
            for ox in 0..g.output.w {
                let obase = ((n * g.output.h + oy) * g.output.w + ox) * g.output.c;
                for grp in 0..g.groups {
                    let wg = &a.weights[grp * group_len..(grp + 1) * group_len];
                    for oc in 0..cog {
                        let ch = grp * cog + oc;
                        let mut acc = a.bias[ch];
                        for ky in 0..g.kh {
                            let iy = g.in_y(oy, ky);
                            for kx in 0..g.kw {
                                let ix = g.in_x(ox, kx);
                                let inside = iy >= 0 && ix >= 0 && (iy as usize) < g.input.h && (ix as usize) < g.input.w;
                                for c in 0..cig {
                                    let x = if inside {
                                        let off = ((n * g.input.h + iy as usize) * g.input.w + ix as usize) * g.input.c + grp * cig + c;
                                        a.input[off] as i32
                                    } else {
                                        a.input_zp
                                    };
                                    let kk = (ky * g.kw + kx) * cig + c;
                                    acc = acc.wrapping_add(x * pack::get(wg, oc, kk, k) as i32);
                                }
                            }
                        }
                        out[obase + ch] = a.q.apply(acc, ch);
                    }
                }
            }
        }
    }
}

/// Reference depthwise convolution; writes the NHWC output.
pub fn depthwise2d(a: &DepthwiseArgs<'_>, out: &mut [i8]) {
    let g = &a.geom;
    let c_n = g.output.c;
    for n in 0..g.output.n {
        for oy in 0..g.output.h {
            for ox in 0..g.output.w {
                let obase = ((n * g.output.h + oy) * g.output.w + ox) * c_n;
                for c in 0..c_n {
                    let mut acc = a.bias[c];
                    for ky in 0..g.kh {
                        let iy = g.in_y(oy, ky);
                        for kx in 0..g.kw {
                            let ix = g.in_x(ox, kx);
                            let inside = iy >= 0 && ix >= 0 && (iy as usize) < g.input.h && (ix as usize) < g.input.w;
                            let x = if inside {
                                a.input[((n * g.input.h + iy as usize) * g.input.w + ix as usize) * g.input.c + c] as i32
                            } else {
                                a.input_zp
                            };
                            acc = acc.wrapping_add(x * a.weights[(ky * g.kw + kx) * c_n + c] as i32);
                        }
                    }
                    out[obase + c] = a.q.apply(acc, c);
                }
            }
        }
    }
}
