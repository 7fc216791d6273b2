//! Reference elementwise binary kernels (Add, Mul) over int8 NHWC tensors with numpy-style
//! broadcasting.
//!
//! # Broadcasting
//!
//! Every dimension of each input is either equal to the output dimension or 1; a dimension of
//! size 1 is repeated (element stride 0). Typical patterns: `[N,H,W,C] ⊕ [1,1,1,C]` (per-channel
//! constant), `[N,H,W,C] ⊙ [N,1,1,C]` (squeeze-and-excite), `[N,H,W,C] ⊕ [1,1,1,1]` (scalar).
//! The element of input `x` used for output index `(n, h, w, c)` is
//! `x[(n mod x.n, h mod x.h, w mod x.w, c mod x.c)]` (which is `0` or the index itself).

use crate::params::Nhwc;
use crate::requant;

/// Arguments of a quantized addition `out = a + b` (also subtraction, with `b_mult < 0`).
///
/// The two inputs are brought to a common fixed-point scale `2^-shift` by their multipliers
/// (see [`add_multipliers`]):
///
/// ```text
/// acc    = (a − a_zp) · a_mult + (b − b_zp) · b_mult                         (exact, i64)
/// out    = clamp(out_zp + ((acc + 2^(shift−1)) >> shift), min, max)          (arithmetic shift)
/// ```
///
/// i.e. one rounding, half up (towards +∞ on ties), of `acc / 2^shift`
/// ([`requant::requantize_i64`]). With zero points in `[-128, 127]`, `|a − a_zp| ≤ 255`, and
/// `|a_mult|, |b_mult| ≤ 2^31`, so `|acc| < 2^40`: no overflow is possible.
#[derive(Clone, Copy, Debug)]
pub struct AddArgs<'a> {
    /// First input, NHWC, `a_shape.len()` values.
    pub a: &'a [i8],
    /// Shape of `a` (broadcastable to `out_shape`).
    pub a_shape: Nhwc,
    /// Zero point of `a`, in `[-128, 127]`.
    pub a_zp: i32,
    /// Multiplier of `a`: `≈ (scale_a / scale_out) · 2^shift`, any `i32` (negative for Sub).
    pub a_mult: i32,
    /// Second input, NHWC, `b_shape.len()` values.
    pub b: &'a [i8],
    /// Shape of `b` (broadcastable to `out_shape`).
    pub b_shape: Nhwc,
    /// Zero point of `b`, in `[-128, 127]`.
    pub b_zp: i32,
    /// Multiplier of `b`: `≈ (scale_b / scale_out) · 2^shift`, any `i32` (negative for Sub).
    pub b_mult: i32,
    /// Common right shift, in `[1, 62]`.
    pub shift: i32,
    /// Output shape.
    pub out_shape: Nhwc,
    /// Output zero point, in `[-128, 127]`.
    pub out_zp: i32,
    /// Lower clamp (quantized), `-128..=max` (fused ReLU/clip).
    pub min: i32,
    /// Upper clamp (quantized), `min..=127`.
    pub max: i32,
}

/// Arguments of a quantized multiplication `out = a · b`:
///
/// ```text
/// acc = (a − a_zp) · (b − b_zp)                                              (exact, |acc| ≤ 65025)
/// out = clamp(out_zp + requantize(acc, mult, shift), min, max)
/// ```
///
/// with [`requant::requantize`] (`(acc · mult + 2^(shift−1)) >> shift`, one rounding, half up),
/// and `mult · 2^-shift ≈ scale_a · scale_b / scale_out` (encode it with
/// [`requant::quantize_multiplier`]).
#[derive(Clone, Copy, Debug)]
pub struct MulArgs<'a> {
    /// First input, NHWC.
    pub a: &'a [i8],
    /// Shape of `a` (broadcastable to `out_shape`).
    pub a_shape: Nhwc,
    /// Zero point of `a`, in `[-128, 127]`.
    pub a_zp: i32,
    /// Second input, NHWC.
    pub b: &'a [i8],
    /// Shape of `b` (broadcastable to `out_shape`).
    pub b_shape: Nhwc,
    /// Zero point of `b`, in `[-128, 127]`.
    pub b_zp: i32,
    /// Q31 multiplier (0 or in `[2^30, 2^31)`).
    pub mult: i32,
    /// Right shift, in `[1, 62]`.
    pub shift: i32,
    /// Output shape.
    pub out_shape: Nhwc,
    /// Output zero point, in `[-128, 127]`.
    pub out_zp: i32,
    /// Lower clamp (quantized), `-128..=max`.
    pub min: i32,
    /// Upper clamp (quantized), `min..=127`.
    pub max: i32,
}

/// Element strides `[n, h, w, c]` of a tensor of shape `s` read as if broadcast to `out`
/// (stride 0 along broadcast dimensions). Panics when `s` is not broadcastable to `out`.
fn broadcast_strides(s: Nhwc, out: Nhwc) -> [usize; 4] {
    let dims = [(s.n, out.n), (s.h, out.h), (s.w, out.w), (s.c, out.c)];
    assert!(dims.iter().all(|&(d, o)| d == o || d == 1), "eltwise: shape {s:?} does not broadcast to {out:?}");
    let dense = [s.h * s.w * s.c, s.w * s.c, s.c, 1];
    let mut st = [0usize; 4];
    for i in 0..4 {
        st[i] = if dims[i].0 == 1 { 0 } else { dense[i] };
    }
    st
}

/// Call `f(out_index, a_index, b_index)` for every output element, in NHWC order.
#[inline(always)]
fn for_each_broadcast(out: Nhwc, sa: [usize; 4], sb: [usize; 4], mut f: impl FnMut(usize, usize, usize)) {
    let mut o = 0;
    for n in 0..out.n {
        for h in 0..out.h {
            for w in 0..out.w {
                let ia = n * sa[0] + h * sa[1] + w * sa[2];
                let ib = n * sb[0] + h * sb[1] + w * sb[2];
                for c in 0..out.c {
                    f(o, ia + c * sa[3], ib + c * sb[3]);
                    o += 1;
                }
            }
        }
    }
}

/// Quantized addition with broadcasting; writes `args.out_shape.len()` values (see [`AddArgs`]
/// for the exact arithmetic).
pub fn add(args: &AddArgs<'_>, out: &mut [i8]) {
    let sa = broadcast_strides(args.a_shape, args.out_shape);
    let sb = broadcast_strides(args.b_shape, args.out_shape);
    let (am, bm) = (args.a_mult as i64, args.b_mult as i64);
    let (azp, bzp) = (args.a_zp as i64, args.b_zp as i64);
    for_each_broadcast(args.out_shape, sa, sb, |o, ia, ib| {
        let acc = (args.a[ia] as i64 - azp) * am + (args.b[ib] as i64 - bzp) * bm;
        let v = requant::requantize_i64(acc, args.shift) as i64 + args.out_zp as i64;
        out[o] = v.clamp(args.min as i64, args.max as i64) as i8;
    });
}

/// Quantized multiplication with broadcasting; writes `args.out_shape.len()` values (see
/// [`MulArgs`] for the exact arithmetic).
pub fn mul(args: &MulArgs<'_>, out: &mut [i8]) {
    let sa = broadcast_strides(args.a_shape, args.out_shape);
    let sb = broadcast_strides(args.b_shape, args.out_shape);
    for_each_broadcast(args.out_shape, sa, sb, |o, ia, ib| {
        let acc = (args.a[ia] as i32 - args.a_zp) * (args.b[ib] as i32 - args.b_zp);
        let v = requant::requantize(acc, args.mult, args.shift) as i64 + args.out_zp as i64;
        out[o] = v.clamp(args.min as i64, args.max as i64) as i8;
    });
}

/// Multipliers of a quantized addition with input scales `sa`, `sb` and output scale `so`:
/// `(a_mult, b_mult, shift)` with `a_mult = round(sa / so · 2^shift)`,
/// `b_mult = round(sb / so · 2^shift)` (rounding half away from zero, in `f64`, without `std`),
/// where `shift ∈ [1, 62]` is chosen so that `max(a_mult, b_mult) ∈ [2^30, 2^31)` (the larger
/// ratio gets full Q31 precision, exactly as [`requant::quantize_multiplier`] encodes it).
///
/// Returns `None` when a scale is not finite and positive, when `max(sa, sb) / so ≥ 2^30` (shift
/// would be below 1) or `< 2^-32` (shift would exceed 62). The result always satisfies
/// `255 · (|a_mult| + |b_mult|) < 2^40`, so [`add`] cannot overflow (checked here anyway). For a
/// subtraction `a − b`, negate `b_mult`.
pub fn add_multipliers(sa: f64, sb: f64, so: f64) -> Option<(i32, i32, i32)> {
    let ok = |s: f64| s.is_finite() && s > 0.0;
    if !(ok(sa) && ok(sb) && ok(so)) {
        return None;
    }
    let (ra, rb) = (sa / so, sb / so);
    let rmax = if ra >= rb { ra } else { rb };
    if !rmax.is_finite() {
        return None;
    }
    let (m, shift) = requant::quantize_multiplier(rmax)?;
    if m < requant::MULT_MIN {
        return None; // too small to normalize with shift ≤ 62
    }
    let scale = (1u64 << shift) as f64; // exact: shift ≤ 62
    let qa = requant::round_half_away(ra * scale) as i64;
    let qb = requant::round_half_away(rb * scale) as i64;
    let top = if qa >= qb { qa } else { qb };
    if !(requant::MULT_MIN as i64..1i64 << 31).contains(&top) || qa < 0 || qb < 0 {
        return None;
    }
    if 255 * (qa + qb) >= 1i64 << 40 {
        return None;
    }
    Some((qa as i32, qb as i32, shift))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::test_util::{assert_close, exact_round, XorShift};
    use crate::requant::{quantize_multiplier, MULT_MIN};

    /// Independent broadcast index: `x[(n mod x.n, h mod x.h, w mod x.w, c mod x.c)]`.
    fn bidx(s: Nhwc, n: usize, h: usize, w: usize, c: usize) -> usize {
        (((n % s.n) * s.h + h % s.h) * s.w + w % s.w) * s.c + c % s.c
    }

    fn patterns() -> Vec<(Nhwc, Nhwc, Nhwc)> {
        let full = Nhwc::new(2, 3, 4, 5);
        vec![
            (full, full, full),
            (full, Nhwc::new(1, 1, 1, 5), full),
            (Nhwc::new(1, 1, 1, 5), full, full),
            (full, Nhwc::new(2, 1, 1, 5), full), // squeeze-excite
            (full, Nhwc::new(1, 1, 1, 1), full), // scalar
            (Nhwc::new(1, 1, 1, 1), full, full),
            (Nhwc::new(2, 1, 4, 1), Nhwc::new(1, 3, 1, 5), full), // both broadcast
            (Nhwc::new(1, 7, 1, 3), Nhwc::new(1, 7, 9, 3), Nhwc::new(1, 7, 9, 3)),
        ]
    }

    fn for_each_index(s: Nhwc, mut f: impl FnMut(usize, usize, usize, usize, usize)) {
        let mut o = 0;
        for n in 0..s.n {
            for h in 0..s.h {
                for w in 0..s.w {
                    for c in 0..s.c {
                        f(o, n, h, w, c);
                        o += 1;
                    }
                }
            }
        }
    }

    #[test]
    fn add_matches_float_with_broadcasting() {
        let mut rng = XorShift::new(1);
        let scales = [0.003, 0.02, 0.05, 0.1, 0.37, 1.0, 2.5];
        for (pi, &(sa_shape, sb_shape, so_shape)) in patterns().iter().enumerate() {
            for trial in 0..40 {
                let a = rng.vec_i8(sa_shape.len());
                let b = rng.vec_i8(sb_shape.len());
                let sa = scales[rng.urange(0, 6)];
                let sb = scales[rng.urange(0, 6)];
                let so = scales[rng.urange(0, 6)] * rng.f64(0.5, 2.0);
                let (za, zb, zo) = (rng.range(-128, 127) as i32, rng.range(-128, 127) as i32, rng.range(-20, 20) as i32);
                let sub = trial % 5 == 4;
                let (am, bm, shift) = add_multipliers(sa, sb, so).unwrap();
                let (min, max) = if trial % 3 == 0 { (zo, 127) } else { (-128, 127) };
                let args = AddArgs {
                    a: &a,
                    a_shape: sa_shape,
                    a_zp: za,
                    a_mult: am,
                    b: &b,
                    b_shape: sb_shape,
                    b_zp: zb,
                    b_mult: if sub { -bm } else { bm },
                    shift,
                    out_shape: so_shape,
                    out_zp: zo,
                    min,
                    max,
                };
                let mut out = vec![0i8; so_shape.len()];
                add(&args, &mut out);
                let sign = if sub { -1.0 } else { 1.0 };
                for_each_index(so_shape, |o, n, h, w, c| {
                    let da = (a[bidx(sa_shape, n, h, w, c)] as i32 - za) as f64;
                    let db = (b[bidx(sb_shape, n, h, w, c)] as i32 - zb) as f64;
                    let real = sa * da + sign * sb * db;
                    let want = (real / so + zo as f64).clamp(min as f64, max as f64);
                    // 0.5 for the rounding, plus the multiplier encoding error (≤ 0.5 / 2^shift each).
                    let bound = 0.5 + (da.abs() + db.abs()) * 0.5 / (1u64 << shift) as f64 + 1e-9;
                    assert_close(out[o], want, bound, &format!("pattern {pi} trial {trial} at {o}"));
                });
            }
        }
    }

    #[test]
    fn add_exhaustive_against_exact_rational() {
        // Every (a, b) pair against the exact i128 definition, for several parameter sets,
        // including ties (a_mult = b_mult = 2^30, shift 31: (da + db) / 2).
        let mut rng = XorShift::new(2);
        let mut params = vec![(MULT_MIN, MULT_MIN, 31, 0, 0, 0), (MULT_MIN, -MULT_MIN, 31, 3, -7, 1)];
        for _ in 0..6 {
            let am = rng.range(-(1 << 31) + 1, (1 << 31) - 1) as i32;
            let bm = rng.range(-(1 << 31) + 1, (1 << 31) - 1) as i32;
            let shift = rng.range(28, 40) as i32;
            params.push((am, bm, shift, rng.range(-128, 127) as i32, rng.range(-128, 127) as i32, rng.range(-128, 127) as i32));
        }
        let all: Vec<i8> = (-128..=127).collect();
        let one = Nhwc::new(1, 1, 1, 256);
        for &(am, bm, shift, za, zb, zo) in &params {
            for bv in -128..=127i8 {
                let b = [bv];
                let args = AddArgs {
                    a: &all,
                    a_shape: one,
                    a_zp: za,
                    a_mult: am,
                    b: &b,
                    b_shape: Nhwc::new(1, 1, 1, 1),
                    b_zp: zb,
                    b_mult: bm,
                    shift,
                    out_shape: one,
                    out_zp: zo,
                    min: -128,
                    max: 127,
                };
                let mut out = [0i8; 256];
                add(&args, &mut out);
                for (i, &av) in all.iter().enumerate() {
                    let num = (av as i128 - za as i128) * am as i128 + (bv as i128 - zb as i128) * bm as i128;
                    let want = (zo as i128 + exact_round(num, 1i128 << shift)).clamp(-128, 127);
                    assert_eq!(out[i] as i128, want, "a={av} b={bv} am={am} bm={bm} shift={shift}");
                }
            }
        }
    }

    #[test]
    fn add_ties_round_half_up() {
        // (da + db) / 2 with zero points 0.
        let cases = [(1i8, 0i8, 1i8), (-1, 0, 0), (3, 0, 2), (-3, 0, -1), (0, -5, -2), (127, 127, 127), (-128, -127, -127)];
        for &(a, b, want) in &cases {
            let args = AddArgs {
                a: &[a],
                a_shape: Nhwc::new(1, 1, 1, 1),
                a_zp: 0,
                a_mult: MULT_MIN,
                b: &[b],
                b_shape: Nhwc::new(1, 1, 1, 1),
                b_zp: 0,
                b_mult: MULT_MIN,
                shift: 31,
                out_shape: Nhwc::new(1, 1, 1, 1),
                out_zp: 0,
                min: -128,
                max: 127,
            };
            let mut out = [0i8];
            add(&args, &mut out);
            assert_eq!(out[0], want, "({a} + {b}) / 2");
        }
    }

    #[test]
    fn add_multipliers_properties() {
        assert_eq!(add_multipliers(1.0, 1.0, 1.0), Some((MULT_MIN, MULT_MIN, 30)));
        assert_eq!(add_multipliers(0.5, 0.25, 1.0), Some((MULT_MIN, MULT_MIN / 2, 31)));
        assert_eq!(add_multipliers(0.0, 1.0, 1.0), None);
        assert_eq!(add_multipliers(1.0, -1.0, 1.0), None);
        assert_eq!(add_multipliers(1.0, 1.0, f64::NAN), None);
        assert_eq!(add_multipliers(f64::INFINITY, 1.0, 1.0), None);
        assert_eq!(add_multipliers(2f64.powi(30), 1.0, 1.0), None);
        assert_eq!(add_multipliers(1e-11, 1e-12, 1.0), None);
        assert_eq!(add_multipliers(1e300, 1.0, 1e-300), None);
        let mut rng = XorShift::new(3);
        for _ in 0..10_000 {
            let sa = 10f64.powf(rng.f64(-6.0, 3.0));
            let sb = 10f64.powf(rng.f64(-6.0, 3.0));
            let so = 10f64.powf(rng.f64(-6.0, 3.0));
            let Some((am, bm, shift)) = add_multipliers(sa, sb, so) else {
                panic!("sa={sa} sb={sb} so={so}");
            };
            assert!((1..=62).contains(&shift));
            assert!((MULT_MIN..=i32::MAX).contains(&am.max(bm)));
            let p = (1u64 << shift) as f64;
            assert!((am as f64 - sa / so * p).abs() <= 0.5 + 1e-6);
            assert!((bm as f64 - sb / so * p).abs() <= 0.5 + 1e-6);
            // the larger multiplier is exactly what quantize_multiplier encodes
            let rmax = (sa / so).max(sb / so);
            assert_eq!(quantize_multiplier(rmax), Some((am.max(bm), shift)));
        }
    }

    #[test]
    fn mul_matches_float_with_broadcasting() {
        let mut rng = XorShift::new(4);
        for (pi, &(sa_shape, sb_shape, so_shape)) in patterns().iter().enumerate() {
            for trial in 0..40 {
                let a = rng.vec_i8(sa_shape.len());
                let b = rng.vec_i8(sb_shape.len());
                let sa = 10f64.powf(rng.f64(-3.0, 0.0));
                let sb = 10f64.powf(rng.f64(-3.0, 0.0));
                let so = sa * sb * 10f64.powf(rng.f64(0.0, 3.0));
                let (za, zb, zo) = (rng.range(-128, 127) as i32, rng.range(-128, 127) as i32, rng.range(-128, 127) as i32);
                let (mult, shift) = quantize_multiplier(sa * sb / so).unwrap();
                let (min, max) = if trial % 3 == 0 { (zo, 127) } else { (-128, 127) };
                let args = MulArgs {
                    a: &a,
                    a_shape: sa_shape,
                    a_zp: za,
                    b: &b,
                    b_shape: sb_shape,
                    b_zp: zb,
                    mult,
                    shift,
                    out_shape: so_shape,
                    out_zp: zo,
                    min,
                    max,
                };
                let mut out = vec![0i8; so_shape.len()];
                mul(&args, &mut out);
                for_each_index(so_shape, |o, n, h, w, c| {
                    let da = (a[bidx(sa_shape, n, h, w, c)] as i32 - za) as f64;
                    let db = (b[bidx(sb_shape, n, h, w, c)] as i32 - zb) as f64;
                    let want = ((sa * da) * (sb * db) / so + zo as f64).clamp(min as f64, max as f64);
                    let bound = 0.5 + (da * db).abs() * 0.5 / (1u64 << shift) as f64 + 1e-9;
                    assert_close(out[o], want, bound, &format!("pattern {pi} trial {trial} at {o}"));
                });
            }
        }
    }

    #[test]
    fn mul_exhaustive_against_exact_rational() {
        let mut rng = XorShift::new(5);
        // (2^30, 31) halves the product: every odd product is a tie.
        let mut params = vec![(MULT_MIN, 31, 0, 0, 0), (MULT_MIN, 31, -1, 1, 0)];
        for _ in 0..6 {
            let mult = rng.range(MULT_MIN as i64, i32::MAX as i64) as i32;
            let shift = rng.range(30, 48) as i32;
            params.push((mult, shift, rng.range(-128, 127) as i32, rng.range(-128, 127) as i32, rng.range(-128, 127) as i32));
        }
        let all: Vec<i8> = (-128..=127).collect();
        let one = Nhwc::new(1, 1, 1, 256);
        for &(mult, shift, za, zb, zo) in &params {
            for bv in -128..=127i8 {
                let args = MulArgs {
                    a: &all,
                    a_shape: one,
                    a_zp: za,
                    b: &[bv],
                    b_shape: Nhwc::new(1, 1, 1, 1),
                    b_zp: zb,
                    mult,
                    shift,
                    out_shape: one,
                    out_zp: zo,
                    min: -128,
                    max: 127,
                };
                let mut out = [0i8; 256];
                mul(&args, &mut out);
                for (i, &av) in all.iter().enumerate() {
                    let num = (av as i128 - za as i128) * (bv as i128 - zb as i128) * mult as i128;
                    let want = (zo as i128 + exact_round(num, 1i128 << shift)).clamp(-128, 127);
                    assert_eq!(out[i] as i128, want, "a={av} b={bv} mult={mult} shift={shift}");
                }
            }
        }
        // explicit ties: 3·1/2 = 1.5 → 2, −3·1/2 = −1.5 → −1, 1/2 → 1, −1/2 → 0
        for &(a, b, want) in &[(3i8, 1i8, 2i8), (-3, 1, -1), (1, 1, 1), (-1, 1, 0), (-5, -1, 3)] {
            let args = MulArgs {
                a: &[a],
                a_shape: Nhwc::new(1, 1, 1, 1),
                a_zp: 0,
                b: &[b],
                b_shape: Nhwc::new(1, 1, 1, 1),
                b_zp: 0,
                mult: MULT_MIN,
                shift: 31,
                out_shape: Nhwc::new(1, 1, 1, 1),
                out_zp: 0,
                min: -128,
                max: 127,
            };
            let mut out = [0i8];
            mul(&args, &mut out);
            assert_eq!(out[0], want, "{a}·{b}/2");
        }
    }

    #[test]
    #[should_panic(expected = "does not broadcast")]
    fn incompatible_shapes_panic() {
        let a = [0i8; 6];
        let args = MulArgs {
            a: &a,
            a_shape: Nhwc::new(1, 1, 2, 3),
            a_zp: 0,
            b: &a,
            b_shape: Nhwc::new(1, 1, 3, 2),
            b_zp: 0,
            mult: MULT_MIN,
            shift: 31,
            out_shape: Nhwc::new(1, 1, 3, 3),
            out_zp: 0,
            min: -128,
            max: 127,
        };
        mul(&args, &mut [0i8; 9]);
    }
}
