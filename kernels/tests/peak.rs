//! The peak-measurement loops used by the benchmark compute what they claim (checksums).

/// `Σ_{i<4} a_i · b_i` over the little-endian bytes of two words, `a` unsigned or signed.
#[allow(dead_code)]
fn dot4(a: i32, b: i32, a_unsigned: bool) -> i32 {
    let (a, b) = (a.to_le_bytes(), b.to_le_bytes());
    (0..4).map(|i| if a_unsigned { a[i] as i32 } else { a[i] as i8 as i32 } * (b[i] as i8 as i32)).sum()
}

#[cfg(target_arch = "x86_64")]
#[test]
fn vnni512_peak_checksum() {
    use temper_kernels::x86::{vnni512_peak, VNNI512_PEAK_MACS_PER_ITER};
    for (iters, seed) in [(0u64, 5), (1, 0x7f80_01ff), (37, -123_456_789)] {
        match vnni512_peak(iters, seed) {
            None => {
                println!("skipped vnni512_peak: CPU lacks avx512f/avx512vnni");
                return;
            }
            Some(sum) => {
                // 16 accumulators × 16 lanes, each `iters` times u8(seed) · i8(seed.rotl(7))
                let lanes = (VNNI512_PEAK_MACS_PER_ITER / 4) as i32;
                let want = dot4(seed, seed.rotate_left(7), true).wrapping_mul(lanes).wrapping_mul(iters as i32);
                assert_eq!(sum, want, "iters={iters} seed={seed}");
            }
        }
    }
}

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
#[test]
fn sdot_peak_checksum() {
    use temper_kernels::aarch64::{sdot_peak, SDOT_PEAK_MACS_PER_ITER};
    for (iters, seed) in [(0u64, 5), (1, 0x7f80_01ff), (37, -123_456_789)] {
        match sdot_peak(iters, seed) {
            None => {
                println!("skipped sdot_peak: CPU lacks dotprod");
                return;
            }
            Some(sum) => {
                // 16 accumulators × 4 lanes, each `iters` times i8(seed.rotl(7)) · i8(seed)
                let lanes = (SDOT_PEAK_MACS_PER_ITER / 4) as i32;
                let want = dot4(seed, seed.rotate_left(7), false).wrapping_mul(lanes).wrapping_mul(iters as i32);
                assert_eq!(sum, want, "iters={iters} seed={seed}");
            }
        }
    }
}
