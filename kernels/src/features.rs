//! CPU features relevant to the INT8 kernels, and the kernel levels they enable.

use core::fmt;

/// A set of CPU features (bitmask).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Features(pub u32);

impl Features {
    /// x86 AVX2.
    pub const AVX2: Features = Features(1 << 0);
    /// x86 FMA.
    pub const FMA: Features = Features(1 << 1);
    /// x86 AVX-512 F.
    pub const AVX512F: Features = Features(1 << 2);
    /// x86 AVX-512 BW.
    pub const AVX512BW: Features = Features(1 << 3);
    /// x86 AVX-512 VL.
    pub const AVX512VL: Features = Features(1 << 4);
    /// x86 AVX-512 VNNI.
    pub const AVX512VNNI: Features = Features(1 << 5);
    /// x86 AVX-VNNI (VEX-encoded, Alder Lake / N100 class).
    pub const AVXVNNI: Features = Features(1 << 6);
    /// aarch64 Advanced SIMD.
    pub const NEON: Features = Features(1 << 16);
    /// aarch64 dot product (`sdot`).
    pub const DOTPROD: Features = Features(1 << 17);
    /// aarch64 int8 matrix multiply (`smmla`).
    pub const I8MM: Features = Features(1 << 18);

    /// No features.
    pub const fn empty() -> Features {
        Features(0)
    }
    /// Whether every feature of `other` is present.
    pub const fn contains(self, other: Features) -> bool {
        self.0 & other.0 == other.0
    }
    /// Union.
    pub const fn union(self, other: Features) -> Features {
        Features(self.0 | other.0)
    }

    /// Features this level of the crate knows about on the compiling target's architecture.
    pub const fn arch_mask() -> Features {
        if cfg!(target_arch = "x86_64") {
            Features(
                Features::AVX2.0
                    | Features::FMA.0
                    | Features::AVX512F.0
                    | Features::AVX512BW.0
                    | Features::AVX512VL.0
                    | Features::AVX512VNNI.0
                    | Features::AVXVNNI.0,
            )
        } else if cfg!(target_arch = "aarch64") {
            Features(Features::NEON.0 | Features::DOTPROD.0 | Features::I8MM.0)
        } else {
            Features::empty()
        }
    }

    /// Whether no feature is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Intersection.
    pub const fn intersect(self, other: Features) -> Features {
        Features(self.0 & other.0)
    }

    /// Features of `self` that `have` lacks.
    pub const fn missing_from(self, have: Features) -> Features {
        Features(self.0 & !have.0)
    }

    /// Detect the running CPU's features (std detection macros).
    #[cfg(feature = "std")]
    pub fn detect() -> Features {
        #[allow(unused_mut)]
        let mut f = Features::empty();
        #[cfg(target_arch = "x86_64")]
        {
            let pairs = [
                (std::is_x86_feature_detected!("avx2"), Features::AVX2),
                (std::is_x86_feature_detected!("fma"), Features::FMA),
                (std::is_x86_feature_detected!("avx512f"), Features::AVX512F),
                (std::is_x86_feature_detected!("avx512bw"), Features::AVX512BW),
                (std::is_x86_feature_detected!("avx512vl"), Features::AVX512VL),
                (std::is_x86_feature_detected!("avx512vnni"), Features::AVX512VNNI),
                (std::is_x86_feature_detected!("avxvnni"), Features::AVXVNNI),
            ];
            for (on, bit) in pairs {
                if on {
                    f = f.union(bit);
                }
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            let pairs = [
                (std::arch::is_aarch64_feature_detected!("neon"), Features::NEON),
                (std::arch::is_aarch64_feature_detected!("dotprod"), Features::DOTPROD),
                (std::arch::is_aarch64_feature_detected!("i8mm"), Features::I8MM),
            ];
            for (on, bit) in pairs {
                if on {
                    f = f.union(bit);
                }
            }
        }
        f
    }

    /// Detection without std: the raw detection of [`Features::detect_raw`].
    #[cfg(not(feature = "std"))]
    pub fn detect() -> Features {
        Features::detect_raw()
    }

    /// Detect features without `std`, straight from the CPU.
    ///
    /// * x86_64: `cpuid` leaves 1 and 7 (sub-leaves 0 and 1), and `xgetbv(0)` to check that the
    ///   OS saves the YMM (AVX2, AVX-VNNI) and opmask/ZMM (AVX-512) state.
    /// * aarch64: `ID_AA64PFR0_EL1` (AdvSIMD), `ID_AA64ISAR0_EL1` (DP) and `ID_AA64ISAR1_EL1`
    ///   (I8MM) via `mrs`. This needs EL1 (bare metal) or a kernel that emulates EL0 reads of the
    ///   ID registers (Linux ≥ 4.11, `HWCAP_CPUID`; qemu-user does too); elsewhere it traps.
    /// * other architectures: no features.
    pub fn detect_raw() -> Features {
        #[cfg(target_arch = "x86_64")]
        {
            raw_x86::detect()
        }
        #[cfg(target_arch = "aarch64")]
        {
            raw_aarch64::detect()
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            Features::empty()
        }
    }

    /// The running CPU's features ([`Features::detect`]), detected once and cached.
    ///
    /// Kernel tables are only handed out (see [`crate::dispatch::table`]) when this contains
    /// everything their code uses, which is what makes their safe entry points sound.
    pub fn cpu() -> Features {
        use core::sync::atomic::{AtomicU32, Ordering};
        const KNOWN: u32 = 1 << 31;
        static CPU: AtomicU32 = AtomicU32::new(0);
        let v = CPU.load(Ordering::Relaxed);
        if v & KNOWN != 0 {
            return Features(v & !KNOWN);
        }
        let f = Features::detect().intersect(Features::arch_mask());
        CPU.store(f.0 | KNOWN, Ordering::Relaxed);
        f
    }
}

#[cfg(target_arch = "x86_64")]
mod raw_x86 {
    use super::Features;
    use core::arch::x86_64::{_xgetbv, CpuidResult};

    /// `cpuid` of `leaf` and `sub_leaf`. The intrinsic is a safe function in current Rust and an
    /// `unsafe fn` in the declared minimum version (1.89): the block compiles on both.
    #[allow(unused_unsafe)]
    fn cpuid(leaf: u32, sub_leaf: u32) -> CpuidResult {
        // SAFETY: every x86_64 CPU has the `cpuid` instruction; leaves above the maximum are
        // never asked for (callers check leaf 0's `eax` first).
        unsafe { core::arch::x86_64::__cpuid_count(leaf, sub_leaf) }
    }

    /// `xgetbv(0)`.
    ///
    /// # Safety
    /// The CPU must support `xgetbv` (CPUID.1:ECX.OSXSAVE).
    #[target_feature(enable = "xsave")]
    unsafe fn xcr0() -> u64 {
        // SAFETY: the caller checked OSXSAVE, so `xgetbv` exists and XCR0 is readable.
        unsafe { _xgetbv(0) }
    }

    pub(super) fn detect() -> Features {
        let bit = |r: u32, b: u32| r >> b & 1 == 1;
        let max_leaf = cpuid(0, 0).eax;
        if max_leaf < 1 {
            return Features::empty();
        }
        let l1 = cpuid(1, 0);
        if !bit(l1.ecx, 27) || !bit(l1.ecx, 28) {
            return Features::empty(); // no OSXSAVE or no AVX: nothing we use is enabled
        }
        // SAFETY: CPUID.1:ECX.OSXSAVE (bit 27) is set, so xgetbv is available and enabled.
        let xcr0 = unsafe { xcr0() };
        let ymm_os = xcr0 & 0b110 == 0b110; // SSE + AVX state
        let zmm_os = ymm_os && xcr0 & 0b1110_0000 == 0b1110_0000; // opmask, ZMM_Hi256, Hi16_ZMM
        if !ymm_os {
            return Features::empty();
        }
        let mut f = Features::empty();
        if bit(l1.ecx, 12) {
            f = f.union(Features::FMA);
        }
        if max_leaf < 7 {
            return f;
        }
        let l7 = cpuid(7, 0);
        if bit(l7.ebx, 5) {
            f = f.union(Features::AVX2);
        }
        if zmm_os {
            let pairs = [
                (bit(l7.ebx, 16), Features::AVX512F),
                (bit(l7.ebx, 30), Features::AVX512BW),
                (bit(l7.ebx, 31), Features::AVX512VL),
                (bit(l7.ecx, 11), Features::AVX512VNNI),
            ];
            for (on, b) in pairs {
                if on {
                    f = f.union(b);
                }
            }
        }
        if l7.eax >= 1 && bit(cpuid(7, 1).eax, 4) {
            f = f.union(Features::AVXVNNI);
        }
        f
    }
}

#[cfg(target_arch = "aarch64")]
mod raw_aarch64 {
    use super::Features;
    use core::arch::asm;

    pub(super) fn detect() -> Features {
        let (pfr0, isar0, isar1): (u64, u64, u64);
        // SAFETY: reading the ID registers has no side effect. At EL1 it is always allowed; at EL0
        // Linux (≥ 4.11) and qemu-user emulate the read (the documented precondition of
        // `detect_raw`). The asm touches no memory and only writes its output registers.
        unsafe {
            asm!("mrs {}, ID_AA64PFR0_EL1", out(reg) pfr0, options(nomem, nostack, preserves_flags));
            asm!("mrs {}, ID_AA64ISAR0_EL1", out(reg) isar0, options(nomem, nostack, preserves_flags));
            asm!("mrs {}, ID_AA64ISAR1_EL1", out(reg) isar1, options(nomem, nostack, preserves_flags));
        }
        let field = |r: u64, lsb: u32| (r >> lsb) & 0xf;
        let mut f = Features::empty();
        // AdvSIMD: 0b0000 implemented, 0b0001 with FP16, 0b1111 not implemented.
        if field(pfr0, 20) != 0xf {
            f = f.union(Features::NEON);
            if field(isar0, 44) >= 1 {
                f = f.union(Features::DOTPROD);
            }
            if field(isar1, 52) >= 1 {
                f = f.union(Features::I8MM);
            }
        }
        f
    }
}

impl fmt::Debug for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(Features, &str); 10] = [
            (Features::AVX2, "avx2"),
            (Features::FMA, "fma"),
            (Features::AVX512F, "avx512f"),
            (Features::AVX512BW, "avx512bw"),
            (Features::AVX512VL, "avx512vl"),
            (Features::AVX512VNNI, "avx512vnni"),
            (Features::AVXVNNI, "avxvnni"),
            (Features::NEON, "neon"),
            (Features::DOTPROD, "dotprod"),
            (Features::I8MM, "i8mm"),
        ];
        let mut first = true;
        for (bit, name) in NAMES {
            if self.contains(bit) {
                if !first {
                    f.write_str(" ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("(none)")?;
        }
        Ok(())
    }
}
