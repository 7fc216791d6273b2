//! Kernel selection: caps, feature requirements, level names, `TEMPER_KERNELS`, raw detection.

use temper_kernels::dispatch::{self, select, table, variants, Level};
use temper_kernels::Features;

mod common;

/// Every feature bit the crate knows.
const BITS: [Features; 10] = [
    Features::AVX2,
    Features::FMA,
    Features::AVX512F,
    Features::AVX512BW,
    Features::AVX512VL,
    Features::AVX512VNNI,
    Features::AVXVNNI,
    Features::NEON,
    Features::DOTPROD,
    Features::I8MM,
];

fn subset(mask: u32) -> Features {
    let mut f = Features::empty();
    for (i, b) in BITS.iter().enumerate() {
        if mask >> i & 1 == 1 {
            f = f.union(*b);
        }
    }
    f
}

#[test]
fn select_respects_cap_and_features() {
    let cpu = Features::cpu();
    println!("cpu features: [{cpu}]");
    let caps: Vec<Option<Level>> = core::iter::once(None).chain(Level::ALL.iter().copied().map(Some)).collect();
    for mask in 0..(1u32 << BITS.len()) {
        let f = subset(mask);
        for &cap in &caps {
            let k = select(f, cap);
            assert!(cap.is_none_or(|c| k.level <= c), "select({f}, {cap:?}) = {} above the cap", k.level);
            assert!(f.contains(k.level.required()), "select({f}, {cap:?}) = {} needs [{}]", k.level, k.level.required());
            assert!(cpu.contains(k.level.required()), "select({f}, {cap:?}) = {} but the CPU lacks it", k.level);
            // it is the best such level
            for l in Level::ALL {
                if l > k.level && cap.is_none_or(|c| l <= c) {
                    assert!(table(l, f).is_none(), "select({f}, {cap:?}) = {} but {l} is available", k.level);
                }
            }
        }
    }
}

#[test]
fn scalar_cap_always_scalar() {
    for mask in [0, u32::MAX >> (32 - BITS.len())] {
        assert_eq!(select(subset(mask), Some(Level::Scalar)).level, Level::Scalar);
        assert_eq!(select(subset(mask), Some(Level::parse("scalar").unwrap())).level, Level::Scalar);
    }
}

#[test]
fn tables_and_variants_are_consistent() {
    for v in variants() {
        if v.primary {
            assert!(v.required.contains(v.level.required()), "{}: required [{}] below its level's", v.name, v.required);
        }
        match v.kernels() {
            Some(k) => {
                assert_eq!(k.level, v.level, "{}", v.name);
                assert!(Features::cpu().contains(v.required));
            }
            None => {
                assert!(!v.missing().is_empty());
                println!("skipped {}: CPU lacks {}", v.name, v.missing());
            }
        }
        if v.primary {
            let t = table(v.level, v.required);
            assert_eq!(t.is_some(), v.kernels().is_some(), "{}", v.name);
        }
    }
    assert!(table(Level::Scalar, Features::empty()).is_some());
    // a level whose features are not offered is never returned, whatever the CPU
    for l in Level::ALL.into_iter().filter(|&l| l != Level::Scalar) {
        assert!(table(l, Features::empty()).is_none(), "{l}");
    }
}

#[test]
fn level_names_round_trip() {
    for l in Level::ALL {
        assert_eq!(Level::parse(l.name()), Some(l));
        assert_eq!(Level::parse(&format!("  {}\n", l.name().to_uppercase())), Some(l));
        assert_eq!(l.to_string(), l.name());
    }
    assert_eq!(Level::parse(""), None);
    assert_eq!(Level::parse("avx3"), None);
    assert_eq!(Level::parse("neon dotprod"), None);
}

#[test]
fn env_cap_limits_detect() {
    // The only test in this binary touching the environment (tests run on threads).
    let best = dispatch::detect().level;
    std::env::set_var("TEMPER_KERNELS", "scalar");
    assert_eq!(dispatch::env_cap(), Some(Level::Scalar));
    assert_eq!(dispatch::detect().level, Level::Scalar);
    for l in Level::ALL {
        std::env::set_var("TEMPER_KERNELS", l.name());
        let got = dispatch::detect().level;
        assert!(got <= l && got <= best, "TEMPER_KERNELS={l} gave {got}");
    }
    std::env::set_var("TEMPER_KERNELS", "no-such-level");
    assert_eq!(dispatch::env_cap(), None);
    assert_eq!(dispatch::detect().level, best);
    std::env::remove_var("TEMPER_KERNELS");
    assert_eq!(dispatch::detect().level, best);
    println!("best level on this CPU: {best}");
}

#[test]
fn raw_detection_matches_std() {
    let std_f = Features::detect().intersect(Features::arch_mask());
    let raw = Features::detect_raw();
    println!("std detection: [{std_f}], raw detection: [{raw}]");
    assert_eq!(raw, std_f);
    assert_eq!(Features::cpu(), std_f);
}

#[test]
fn detection_agrees_with_the_os() {
    // /proc/cpuinfo (x86_64) or the aux vector's HWCAPs (aarch64, emulated by qemu-user for
    // QEMU_CPU): a feature the detection misses would silently drop a kernel level.
    let detected = common::names(Features::cpu());
    match temper_testkit::cpu::os_features() {
        Some(os) => assert_eq!(detected, os.names, "Features::cpu() disagrees with {}", os.source),
        None if Features::arch_mask().is_empty() => println!("no SIMD features on this architecture"),
        None => temper_testkit::skip(temper_testkit::Need::Levels, "no independent source of CPU features on this OS"),
    }
}
