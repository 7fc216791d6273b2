//! The one integer requantization used by every kernel.
//!
//! A real multiplier `r > 0` is encoded as a Q31 integer `mult ∈ [2^30, 2^31)` and a right shift
//! `shift ∈ [1, 62]` with `r ≈ mult · 2^-shift`. An accumulator is requantized with a single
//! rounding (round half up, i.e. towards +∞ on ties) in 64-bit arithmetic:
//!
//! ```text
//! requantize(acc, mult, shift) = (acc · mult + 2^(shift-1)) >> shift      (arithmetic shift)
//! ```
//!
//! `|acc| < 2^31` and `mult < 2^31`, so the product is below `2^62` and the sum cannot overflow.
//! `mult = 0` encodes a zero multiplier (a channel whose weights are all zero).

/// Smallest non-zero multiplier.
pub const MULT_MIN: i32 = 1 << 30;
/// Smallest shift.
pub const SHIFT_MIN: i32 = 1;
/// Largest shift.
pub const SHIFT_MAX: i32 = 62;

/// Whether `(mult, shift)` is a valid encoded multiplier.
pub const fn is_valid(mult: i32, shift: i32) -> bool {
    (mult == 0 || mult >= MULT_MIN) && shift >= SHIFT_MIN && shift <= SHIFT_MAX
}

/// Requantize one accumulator: `round_half_up(acc · mult / 2^shift)`.
///
/// The caller guarantees `is_valid(mult, shift)` (the model loader checks it).
#[inline(always)]
pub fn requantize(acc: i32, mult: i32, shift: i32) -> i32 {
    let p = acc as i64 * mult as i64;
    let r = (p + (1i64 << (shift - 1))) >> shift;
    // |r| ≤ 2^31 · 2^31 / 2^1 = 2^61 in theory; saturate to i32 so the clamp that follows is exact.
    r.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// Requantize a 64-bit accumulator (used by elementwise kernels whose sums exceed 32 bits).
///
/// The caller guarantees `|acc| < 2^40` and `is_valid(mult, shift)`.
#[inline(always)]
pub fn requantize_i64(acc: i64, shift: i32) -> i32 {
    let r = (acc + (1i64 << (shift - 1))) >> shift;
    r.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// Encode a real multiplier `r` as `(mult, shift)`; `None` when `r` is not finite, negative, or
/// too large (≥ 2^30) to encode. Values too small for shift 62 encode as `(0, 62)`.
pub fn quantize_multiplier(r: f64) -> Option<(i32, i32)> {
    if !r.is_finite() || r < 0.0 {
        return None;
    }
    if r == 0.0 {
        return Some((0, SHIFT_MAX));
    }
    // r = m · 2^e with m ∈ [0.5, 1)
    let (m, e) = frexp(r);
    let mut q = round_half_away(m * (1u64 << 31) as f64) as i64;
    let mut e = e;
    if q == 1i64 << 31 {
        q /= 2;
        e += 1;
    }
    let shift = 31 - e;
    if shift < SHIFT_MIN {
        return None;
    }
    if shift > SHIFT_MAX {
        // Reduce precision until the shift fits; below that the value is zero.
        let extra = shift - SHIFT_MAX;
        if extra >= 31 {
            return Some((0, SHIFT_MAX));
        }
        let q2 = (q + (1i64 << (extra - 1))) >> extra;
        // q2 < 2^30 here, so it is not a valid normalized multiplier: encode zero when tiny.
        if q2 < MULT_MIN as i64 {
            return Some((0, SHIFT_MAX));
        }
        return Some((q2 as i32, SHIFT_MAX));
    }
    Some((q as i32, shift))
}

/// Decompose `x > 0` into `m · 2^e` with `m ∈ [0.5, 1)`.
fn frexp(x: f64) -> (f64, i32) {
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // subnormal: scale up first
        let (m, e) = frexp(x * (1u64 << 54) as f64);
        return (m, e - 54);
    }
    let e = exp - 1022;
    let m = f64::from_bits((bits & !(0x7ffu64 << 52)) | (1022u64 << 52));
    (m, e)
}

/// Round half away from zero without `std` (`f64::round` needs std/libm).
pub fn round_half_away(x: f64) -> f64 {
    let t = trunc(x);
    let frac = x - t;
    if frac >= 0.5 {
        t + 1.0
    } else if frac <= -0.5 {
        t - 1.0
    } else {
        t
    }
}

/// Truncate towards zero without `std`.
pub fn trunc(x: f64) -> f64 {
    if x.abs() >= (1u64 << 52) as f64 || x.is_nan() {
        x
    } else {
        (x as i64) as f64
    }
}

/// Quantize one real value to int8 with round-half-away-from-zero, saturating.
#[inline]
pub fn quantize_f32(x: f32, scale: f32, zero_point: i32) -> i8 {
    let v = round_half_away((x / scale) as f64);
    let v = if v.is_nan() { 0.0 } else { v };
    (v.clamp(-1e9, 1e9) as i64 + zero_point as i64).clamp(-128, 127) as i8
}

/// Dequantize one int8 value.
#[inline]
pub fn dequantize(q: i8, scale: f32, zero_point: i32) -> f32 {
    scale * (q as i32 - zero_point) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact rational reference: round_half_up(acc · mult / 2^shift) with i128.
    fn exact(acc: i32, mult: i32, shift: i32) -> i64 {
        let num = acc as i128 * mult as i128;
        let den = 1i128 << shift;
        // floor((2·num + den) / (2·den)) = round half up
        (2 * num + den).div_euclid(2 * den) as i64
    }

    #[test]
    fn requantize_matches_exact_rational_on_edges() {
        let accs = [
            0,
            1,
            -1,
            2,
            -2,
            127,
            -128,
            (1 << 20) + 1,
            -(1 << 20) - 1,
            i32::MAX,
            i32::MIN,
            i32::MIN + 1,
            i32::MAX - 1,
            123_456_789,
            -987_654_321,
        ];
        let mults = [0, MULT_MIN, MULT_MIN + 1, i32::MAX, 1_500_000_000, 1_234_567_891];
        for &a in &accs {
            for &m in &mults {
                for s in SHIFT_MIN..=SHIFT_MAX {
                    let e = exact(a, m, s).clamp(i32::MIN as i64, i32::MAX as i64);
                    assert_eq!(requantize(a, m, s) as i64, e, "acc={a} mult={m} shift={s}");
                }
            }
        }
    }

    #[test]
    fn ties_round_up() {
        // 3 · 2^30 / 2^31 = 1.5 → 2 ; -3 · 2^30 / 2^31 = -1.5 → -1
        assert_eq!(requantize(3, MULT_MIN, 31), 2);
        assert_eq!(requantize(-3, MULT_MIN, 31), -1);
        assert_eq!(requantize(1, MULT_MIN, 31), 1); // 0.5 → 1
        assert_eq!(requantize(-1, MULT_MIN, 31), 0); // -0.5 → 0
    }

    #[test]
    fn pseudo_random_against_exact() {
        let mut s = 0x9e3779b97f4a7c15u64;
        for _ in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let acc = s as i32;
            let mult = MULT_MIN + ((s >> 32) as i32 & (MULT_MIN - 1));
            let shift = 1 + ((s >> 40) % 62) as i32;
            let e = exact(acc, mult, shift).clamp(i32::MIN as i64, i32::MAX as i64);
            assert_eq!(requantize(acc, mult, shift) as i64, e);
        }
    }

    #[test]
    fn quantize_multiplier_roundtrip() {
        for &r in &[1e-9, 1e-5, 0.000123, 0.25, 0.5, 0.75, 0.999999, 1.0, 3.7, 1000.0, 1e8] {
            let (m, s) = quantize_multiplier(r).unwrap();
            assert!(is_valid(m, s), "r={r} m={m} s={s}");
            let back = m as f64 / (1u64 << s.min(62)) as f64;
            assert!(((back - r) / r).abs() < 1e-9, "r={r} back={back}");
        }
        assert_eq!(quantize_multiplier(0.0), Some((0, SHIFT_MAX)));
        assert_eq!(quantize_multiplier(1e-30), Some((0, SHIFT_MAX)));
        assert_eq!(quantize_multiplier(-1.0), None);
        assert_eq!(quantize_multiplier(f64::NAN), None);
        assert_eq!(quantize_multiplier(f64::INFINITY), None);
        assert_eq!(quantize_multiplier(2f64.powi(31)), None);
        // just below 1.0 rounds up to 2^31 and renormalizes
        let (m, s) = quantize_multiplier(1.0 - 1e-12).unwrap();
        assert_eq!((m, s), (MULT_MIN, 30));
    }

    #[test]
    fn quantize_dequantize() {
        assert_eq!(quantize_f32(0.5, 0.5, 0), 1);
        assert_eq!(quantize_f32(0.25, 0.5, 0), 1); // 0.5 → away from zero
        assert_eq!(quantize_f32(-0.25, 0.5, 0), -1);
        assert_eq!(quantize_f32(1e30, 0.1, 0), 127);
        assert_eq!(quantize_f32(-1e30, 0.1, 3), -128);
        assert_eq!(quantize_f32(f32::NAN, 0.1, 3), 3);
        assert_eq!(dequantize(10, 0.5, 2), 4.0);
    }
}
