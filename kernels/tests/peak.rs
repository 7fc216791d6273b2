//! The peak-measurement loops used by the benchmark compute what they claim (checksums). A loop
//! that returns `None` although the operating system reports the features it needs fails.

mod common;

#[allow(unused_imports)]
use temper_kernels::Features;

/// `Σ_{i<4} a_i · b_i` over the little-endian bytes of two words, `a` unsigned or signed.
#[allow(dead_code)]
fn dot4(a: i32, b: i32, a_unsigned: bool) -> i32 {
    let (a, b) = (a.to_le_bytes(), b.to_le_bytes());
    (0..4).map(|i| if a_unsigned { a[i] as i32 } else { a[i] as i8 as i32 } * (b[i] as i8 as i32)).sum()
}

/// Whether the CPU has every feature of `needs`: by the operating system's report when there is
/// one (so a detection bug cannot excuse a missing run), else by the crate's detection.
#[allow(dead_code)]
fn cpu_has(needs: Features) -> bool {
    match temper_testkit::cpu::os_features() {
        Some(os) => os.has_all(&common::names(needs).into_iter().collect::<Vec<_>>()),
        None => Features::cpu().contains(needs),
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn vnni512_peak_checksum() {
    use temper_kernels::x86::{vnni512_peak, VNNI512_PEAK_MACS_PER_ITER};
    let needs = Features(Features::AVX512F.0 | Features::AVX512VNNI.0);
    for (iters, seed) in [(0u64, 5), (1, 0x7f80_01ff), (37, -123_456_789)] {
        match vnni512_peak(iters, seed) {
            None => {
                assert!(!cpu_has(needs), "vnni512_peak did not run although the CPU has [{needs}]");
                println!("vnni512_peak not available: CPU lacks {}", needs.missing_from(Features::cpu()));
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
    let needs = Features(Features::NEON.0 | Features::DOTPROD.0);
    for (iters, seed) in [(0u64, 5), (1, 0x7f80_01ff), (37, -123_456_789)] {
        match sdot_peak(iters, seed) {
            None => {
                assert!(!cpu_has(needs), "sdot_peak did not run although the CPU has [{needs}]");
                println!("sdot_peak not available: CPU lacks {}", needs.missing_from(Features::cpu()));
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
