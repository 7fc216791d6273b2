//! Packed weight layout for GEMM-shaped kernels (convolution, fully connected).
//!
//! Weights `B[n][k]` (output channel `n`, reduction index `k`) are stored in blocks of
//! [`NR`] = 16 output channels; inside a block, `k` advances in groups of [`KR`] = 4 consecutive
//! values, and each group holds the 4 values of all 16 channels one after another:
//!
//! ```text
//! offset(n, k) = ((n / 16) · K4 + k / 4) · 64 + (n % 16) · 4 + k % 4,     K4 = ceil(k_total / 4)
//! ```
//!
//! so one 64-byte line feeds a `vpdpbusd` zmm (16 lanes × 4 bytes), two ymm (8 lanes), or four
//! NEON `sdot` registers (4 lanes each). Channels past `n` and reduction indices past `k` are
//! zero, so kernels may run full blocks. For convolutions the reduction index is
//! `(ky · KW + kx) · Cin_g + c` (NHWC patch order), and groups are packed one after another.

/// Output channels per block.
pub const NR: usize = 16;
/// Consecutive reduction values per 32-bit lane.
pub const KR: usize = 4;

/// Round `x` up to a multiple of `m`.
pub const fn round_up(x: usize, m: usize) -> usize {
    x.div_ceil(m) * m
}

/// Bytes of a packed `n × k` matrix, or `None` on overflow.
pub const fn packed_len(n: usize, k: usize) -> Option<usize> {
    match (n.checked_add(NR - 1), k.checked_add(KR - 1)) {
        (Some(a), Some(b)) => (a / NR * NR).checked_mul(b / KR * KR),
        _ => None,
    }
}

/// Offset of `B[n][k]` in a packed matrix with reduction length `k_total`.
#[inline(always)]
pub const fn offset(n: usize, k: usize, k_total: usize) -> usize {
    let k4 = k_total.div_ceil(KR);
    ((n / NR) * k4 + k / KR) * (NR * KR) + (n % NR) * KR + k % KR
}

/// Pack row-major `w[n][k]` into `out` (`packed_len(n, k)` bytes).
pub fn pack_into(w: &[i8], n: usize, k: usize, out: &mut [i8]) {
    assert_eq!(w.len(), n * k, "pack_into: weight length");
    out.fill(0);
    for r in 0..n {
        for c in 0..k {
            out[offset(r, c, k)] = w[r * k + c];
        }
    }
}

/// Read `B[n][k]` back from a packed matrix.
#[inline(always)]
pub fn get(packed: &[i8], n: usize, k: usize, k_total: usize) -> i8 {
    packed[offset(n, k, k_total)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_roundtrip_and_padding() {
        for &(n, k) in &[(1, 1), (3, 5), (16, 4), (17, 9), (40, 33)] {
            let w: [i8; 40 * 33] = core::array::from_fn(|i| (i as i32 * 7 % 251 - 125) as i8);
            let w = &w[..n * k];
            let len = packed_len(n, k).unwrap();
            let mut p = [0i8; 48 * 36];
            let p = &mut p[..len];
            pack_into(w, n, k, p);
            for r in 0..n {
                for c in 0..k {
                    assert_eq!(get(p, r, c, k), w[r * k + c]);
                }
            }
            let nz: usize = p.iter().filter(|&&v| v != 0).count();
            let wz: usize = w.iter().filter(|&&v| v != 0).count();
            assert_eq!(nz, wz, "padding must be zero");
        }
        assert_eq!(packed_len(usize::MAX, 4), None);
        assert_eq!(packed_len(17, 9), Some(32 * 12));
    }
}
