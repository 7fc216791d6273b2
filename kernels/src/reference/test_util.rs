//! Deterministic helpers shared by the reference-kernel tests (no `rand` crate).

/// A xorshift64 generator: fast, deterministic, good enough for test data.
pub(crate) struct XorShift(u64);

impl XorShift {
    /// A generator from a seed (any value; zero is remapped).
    pub(crate) fn new(seed: u64) -> Self {
        XorShift(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    /// Next raw 64-bit value.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut s = self.0;
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        self.0 = s;
        s
    }

    /// Uniform integer in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }

    /// Uniform `usize` in `lo..=hi`.
    pub(crate) fn urange(&mut self, lo: usize, hi: usize) -> usize {
        self.range(lo as i64, hi as i64) as usize
    }

    /// Uniform int8.
    pub(crate) fn i8(&mut self) -> i8 {
        self.next_u64() as i8
    }

    /// A vector of `n` uniform int8 values.
    pub(crate) fn vec_i8(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| self.i8()).collect()
    }

    /// Uniform `f64` in `[lo, hi)`.
    pub(crate) fn f64(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// Exact `round_half_up(num / den)` for `den > 0`: `floor((2·num + den) / (2·den))`.
pub(crate) fn exact_round(num: i128, den: i128) -> i128 {
    assert!(den > 0);
    (2 * num + den).div_euclid(2 * den)
}

/// Assert `|got − want| ≤ bound` with a readable message.
#[track_caller]
pub(crate) fn assert_close(got: i8, want: f64, bound: f64, what: &str) {
    let err = (got as f64 - want).abs();
    assert!(err <= bound, "{what}: got {got}, want {want:.6} (err {err:.6} > bound {bound:.6})");
}
