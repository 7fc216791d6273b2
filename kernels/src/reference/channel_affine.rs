//! Reference per-channel int8 affine map `y = x·a[c] + b[c]` (channel = last axis).

use crate::requant::{self, requantize};

/// Largest offset magnitude a channel may carry (anything larger saturates the int8 output
/// anyway; the model loader rejects more).
pub const OFFSET_MAX: i32 = 1 << 24;

/// Arguments of [`channel_affine`]. The channel of element `i` is `i % channels`.
#[derive(Clone, Copy, Debug)]
pub struct ChannelAffineArgs<'a> {
    /// Input zero point.
    pub x_zp: i32,
    /// Per-channel signed multipliers: `|mult[c]|` with `shift[c]` is a valid
    /// [`requant`] pair; a negative value negates the channel (`a[c] < 0`).
    pub mult: &'a [i32],
    /// Per-channel shifts.
    pub shift: &'a [i32],
    /// Per-channel offsets in the output's quantized domain (`z_y + round(b[c] / s_y)`), in
    /// `−OFFSET_MAX..=OFFSET_MAX`.
    pub offset: &'a [i32],
    /// Output clamp (quantized), within int8.
    pub min: i32,
    /// Output clamp upper bound.
    pub max: i32,
}

/// Apply the per-channel affine map to `x` (any number of whole rows of `channels =
/// mult.len()` values) into `y` (same length):
///
/// ```text
/// d = x − z_x;   if mult[c] < 0 { d = −d }
/// y = clamp(offset[c] + requantize(d, |mult[c]|, shift[c]), min, max)
/// ```
///
/// With `mult/shift ≈ |a[c]|·s_x/s_y` and `offset = z_y + round(b[c]/s_y)` this is
/// `round(z_y + (a[c]·s_x·(x − z_x) + b[c]) / s_y)` within one step (one rounding in the
/// requantization, one in the offset). Exact integer arithmetic; no heap. Panics only on a
/// violated precondition (lengths, invalid multipliers), which the loader rules out.
pub fn channel_affine(x: &[i8], args: &ChannelAffineArgs<'_>, y: &mut [i8]) {
    let c = args.mult.len();
    assert!(c > 0 && args.shift.len() == c && args.offset.len() == c, "channel_affine: per-channel vectors differ");
    assert!(x.len() == y.len() && x.len().is_multiple_of(c), "channel_affine: lengths");
    for (xr, yr) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)) {
        for k in 0..c {
            let d = xr[k] as i32 - args.x_zp;
            let m = args.mult[k];
            let (d, m) = if m < 0 { (-d, m.checked_neg().expect("valid multiplier")) } else { (d, m) };
            debug_assert!(requant::is_valid(m, args.shift[k]));
            let v = requantize(d, m, args.shift[k]) as i64 + args.offset[k] as i64;
            yr[k] = v.clamp(args.min as i64, args.max as i64) as i8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::test_util::XorShift;
    use crate::requant::quantize_multiplier;

    #[test]
    fn matches_exact_f64_within_one_step() {
        let mut rng = XorShift::new(77);
        let mut worst = 0f64;
        for trial in 0..200 {
            let c = rng.urange(1, 9);
            let rows = rng.urange(1, 7);
            let (sx, sy) = (0.001 + rng.urange(1, 1000) as f64 * 1e-3, 0.001 + rng.urange(1, 1000) as f64 * 1e-3);
            let (zx, zy) = (rng.range(-128, 127) as i32, rng.range(-128, 127) as i32);
            // a spans both signs, zero and large magnitudes; b both signs.
            let a: Vec<f64> = (0..c)
                .map(|k| match (trial + k) % 5 {
                    0 => 0.0,
                    1 => -(rng.urange(1, 4000) as f64) * 1e-3,
                    2 => rng.urange(1, 4000) as f64 * 1e-3,
                    3 => -(rng.urange(1, 100) as f64),
                    _ => rng.urange(1, 100) as f64 * 1e-4,
                })
                .collect();
            let b: Vec<f64> = (0..c).map(|_| rng.range(-3000, 3000) as f64 * 1e-3).collect();
            let mut mult = vec![0; c];
            let mut shift = vec![0; c];
            let mut offset = vec![0; c];
            for k in 0..c {
                let (m, s) = quantize_multiplier(a[k].abs() * sx / sy).unwrap();
                mult[k] = if a[k] < 0.0 { -m } else { m };
                shift[k] = s;
                offset[k] = (zy as f64 + b[k] / sy).round() as i32;
            }
            let (min, max) = if trial % 3 == 0 { (-128, 127) } else { (zy.max(-100), 127) };
            let x = rng.vec_i8(rows * c);
            let mut y = vec![0i8; x.len()];
            let args = ChannelAffineArgs { x_zp: zx, mult: &mult, shift: &shift, offset: &offset, min, max };
            channel_affine(&x, &args, &mut y);
            for (i, (&xv, &yv)) in x.iter().zip(&y).enumerate() {
                let k = i % c;
                let real = a[k] * sx * (xv as i32 - zx) as f64 + b[k];
                let want = (zy as f64 + real / sy).clamp(min as f64, max as f64);
                let dev = (yv as f64 - want).abs();
                worst = worst.max(dev);
                assert!(dev <= 1.0, "trial {trial} elem {i}: got {yv}, exact {want} (a {}, b {})", a[k], b[k]);
            }
        }
        // one rounding in the requantization, one in the offset: at most a step, not less than
        // half of one on this many values.
        assert!(worst > 0.5 && worst <= 1.0, "worst deviation {worst}");
    }

    #[test]
    fn negative_multiplier_negates_and_clamps() {
        let (m, s) = quantize_multiplier(1.0).unwrap();
        let args = ChannelAffineArgs { x_zp: 3, mult: &[-m, m], shift: &[s, s], offset: &[10, -10], min: -128, max: 127 };
        let x = [13i8, 13, -128, -128, 127, 127];
        let mut y = [0i8; 6];
        channel_affine(&x, &args, &mut y);
        // channel 0: 10 − (x − 3); channel 1: −10 + (x − 3)
        assert_eq!(y, [0, 0, 127, -128, -114, 114]);
    }
}
