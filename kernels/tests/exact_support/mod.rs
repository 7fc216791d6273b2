//! The harness of `exact.rs`: random data, requantization and packed weights, guarded buffers
//! compared byte for byte with the scalar reference, and the count of comparisons per table
//! that makes each test fail unless it compared every table the CPU can run.

use crate::common;
use std::cell::RefCell;
use std::collections::BTreeMap;
use temper_kernels::dispatch::{variants, Kernels, Variant};
use temper_kernels::pack;
use temper_kernels::params::OutQuant;

/// xorshift64* PRNG.
pub struct Rng(u64);

impl Rng {
    pub fn new(salt: u64) -> Rng {
        let seed = std::env::var("TEMPER_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_1234_abcd_9876u64);
        Rng(seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    pub fn usize(&mut self, lo: usize, hi: usize) -> usize {
        self.range(lo as i64, hi as i64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.usize(0, xs.len() - 1)]
    }
    pub fn i8s(&mut self, n: usize, lo: i64, hi: i64) -> Vec<i8> {
        (0..n).map(|_| self.range(lo, hi) as i8).collect()
    }
}

pub fn cases(default: usize) -> usize {
    let scale: f64 = std::env::var("TEMPER_TEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    ((default as f64 * scale).ceil() as usize).max(1)
}

thread_local! {
    /// Comparisons with the scalar reference made by the test running on this thread, per table.
    pub static COMPARED: RefCell<BTreeMap<&'static str, usize>> = const { RefCell::new(BTreeMap::new()) };
}

/// The tables a test compares with the reference. When the test ends without a panic, dropping
/// this checks that the test compared every table the CPU can run (`common::check`).
pub struct Runnable(pub Vec<(&'static Variant, &'static Kernels)>);

impl std::ops::Deref for Runnable {
    type Target = [(&'static Variant, &'static Kernels)];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<'a> IntoIterator for &'a Runnable {
    type Item = &'a (&'static Variant, &'static Kernels);
    type IntoIter = std::slice::Iter<'a, (&'static Variant, &'static Kernels)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl Drop for Runnable {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let compared = COMPARED.with(|c| c.take());
        if let Err(e) = common::check(&compared) {
            panic!("{e}");
        }
    }
}

/// The SIMD tables this CPU runs, to compare with the scalar reference (the comparison count of
/// this thread starts at zero).
pub fn runnable() -> Runnable {
    COMPARED.with(|c| c.borrow_mut().clear());
    let v: Vec<_> = variants().iter().filter(|var| var.name != "scalar").filter_map(|var| Some((var, var.kernels()?))).collect();
    println!("testing against scalar: {:?}", v.iter().map(|(var, _)| var.name).collect::<Vec<_>>());
    Runnable(v)
}

/// Random weights: full range, symmetric `[-127, 127]` (paths that pair products in 16 bits
/// take a faster route then), or extreme values only.
pub fn weights(r: &mut Rng, n: usize) -> Vec<i8> {
    match r.usize(0, 9) {
        0..=3 => r.i8s(n, -128, 127),
        4..=7 => r.i8s(n, -127, 127),
        8 => (0..n).map(|_| if r.chance(50) { -128 } else { 127 }).collect(),
        _ => r.i8s(n, -3, 3),
    }
}

pub fn activations(r: &mut Rng, n: usize) -> Vec<i8> {
    match r.usize(0, 5) {
        0 => (0..n).map(|_| if r.chance(50) { -128 } else { 127 }).collect(),
        1 => (0..n).map(|_| if r.chance(70) { -128 } else { r.range(-128, 127) as i8 }).collect(),
        _ => r.i8s(n, -128, 127),
    }
}

/// Owned output quantization.
pub struct Quant {
    pub mult: Vec<i32>,
    pub shift: Vec<i32>,
    pub zp: i32,
    pub min: i32,
    pub max: i32,
}

impl Quant {
    pub fn q(&self) -> OutQuant<'_> {
        OutQuant { mult: &self.mult, shift: &self.shift, zero_point: self.zp, min: self.min, max: self.max }
    }
}

/// Random requantization for `n` channels whose accumulators stay below `2^acc_bits`.
///
/// Shifts usually put the result near the int8 range; "saturating" cases use shifts small enough
/// for `requantize` to saturate to the i32 range before the zero point is added.
pub fn quant(r: &mut Rng, n: usize, acc_bits: u32) -> Quant {
    assert!(acc_bits <= 31);
    let per_tensor = r.chance(30);
    let len = if per_tensor { 1 } else { n };
    let saturating = r.chance(8);
    let min_shift = (acc_bits as i32 + 31 - 29).clamp(1, 62);
    let mut mult = Vec::with_capacity(len);
    let mut shift = Vec::with_capacity(len);
    let shift_mode = r.usize(0, 2);
    for _ in 0..len {
        mult.push(match r.usize(0, 19) {
            0 => 0,
            1 => 1 << 30,
            2 => i32::MAX,
            _ => r.range(1 << 30, i32::MAX as i64) as i32,
        });
        shift.push(if saturating {
            r.range(1, 40) as i32
        } else {
            match shift_mode {
                // typical: the result spans the int8 range
                0 => (acc_bits as i32 + 31 - 8 + r.range(-3, 3) as i32).clamp(min_shift, 62),
                1 => r.range(min_shift as i64, 62) as i32,
                _ => min_shift,
            }
        });
    }
    let zp = if saturating && r.chance(30) { r.pick(&[-128, 127]) } else { r.range(-128, 127) as i32 };
    let (min, max) = match r.usize(0, 3) {
        0 => (-128, 127),
        1 => (zp.max(-128), 127),                // fused ReLU
        2 => (zp.max(-128), (zp + 40).min(127)), // ReLU6-like
        _ => {
            let a = r.range(-128, 127) as i32;
            let b = r.range(-128, 127) as i32;
            (a.min(b), a.max(b))
        }
    };
    Quant { mult, shift, zp, min, max }
}

/// Packed weights plus both biases for `n` channels of reduction `k` with input zero point `za`.
pub struct Packed {
    pub b: Vec<i8>,
    pub bias: Vec<i32>,
    pub bias_u8: Vec<i32>,
}

pub fn pack_weights(r: &mut Rng, w: &[i8], n: usize, k: usize, za: i32, full_range_bias: bool) -> Packed {
    let mut b = vec![0i8; pack::packed_len(n, k).unwrap()];
    pack::pack_into(w, n, k, &mut b);
    let mut bias = Vec::with_capacity(n);
    let mut bias_u8 = Vec::with_capacity(n);
    for j in 0..n {
        let wsum: i32 = w[j * k..(j + 1) * k].iter().map(|&x| x as i32).sum();
        let raw = if full_range_bias { r.next() as i32 } else { r.range(-(1 << 20), 1 << 20) as i32 };
        let bj = raw.wrapping_sub(za.wrapping_mul(wsum));
        bias.push(bj);
        bias_u8.push(bj.wrapping_sub(128 * wsum));
    }
    Packed { b, bias, bias_u8 }
}

/// Bits bounding `|accumulator|` for a reduction of length `k` (products, folded zero point, and
/// the ±2^20 raw bias).
pub fn bits_for(k: usize) -> u32 {
    let bound = 2 * k as u64 * 128 * 128 + (1 << 20);
    (64 - bound.leading_zeros()).min(31)
}

pub const SENTINEL: i8 = 0x5a;
pub const GUARD: usize = 67;

/// Require `got` (from table `variant`) to equal the scalar reference's `want`, and count the
/// comparison for `variant`.
pub fn check_equal(what: &str, variant: &'static str, case: &str, want: &[i8], got: &[i8]) {
    COMPARED.with(|c| *c.borrow_mut().entry(variant).or_default() += 1);
    if want != got {
        let i = want.iter().zip(got).position(|(a, b)| a != b).unwrap();
        panic!(
            "{what} mismatch on {variant}: {case}\nfirst difference at byte {i}: scalar {} vs {variant} {} ({} bytes differ)",
            want[i],
            got[i],
            want.iter().zip(got).filter(|(a, b)| a != b).count()
        );
    }
}

/// Require the `GUARD` bytes after the first `len` of `buf` to be untouched. (A table's guard
/// bytes are compared with the reference's by `check_equal`; this pins the reference's.)
pub fn assert_guard(what: &str, case: &str, buf: &[i8], len: usize) {
    assert_eq!(buf.len(), len + GUARD);
    if let Some(i) = buf[len..].iter().position(|&b| b != SENTINEL) {
        panic!("{what} wrote past its {len} outputs: {case}, guard byte {i} is {}", buf[len + i]);
    }
}
