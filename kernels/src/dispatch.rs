//! Kernel tables: one table of entry points per ISA level, chosen once at session creation.
//!
//! Every table compiled for the target is listed in [`variants`] together with the CPU features
//! its code uses (the scalar table is always built, as ruy/XNNPACK keep their portable path).
//! [`table`] and [`select`] only hand out a table when both the caller's feature set and the
//! running CPU ([`Features::cpu`]) contain those features: that check is what makes the safe
//! `fn` entry points of SIMD tables sound. `TEMPER_KERNELS=<level>` (see [`Level::parse`]) caps
//! the level chosen by [`detect`].

use crate::features::Features;
use crate::params::{Conv2d, Gemm};
use crate::reference::conv::{ConvArgs, DepthwiseArgs};
use crate::reference::eltwise::{AddArgs, MulArgs};
use crate::reference::pool::AvgPoolArgs;
use core::fmt;

/// A kernel path. Ordered from the most portable to the most specialised within an ISA family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Portable scalar reference (always built).
    Scalar,
    /// x86_64 AVX2 (exact 16-bit widening products).
    Avx2,
    /// x86_64 AVX-VNNI (VEX `vpdpbusd` on ymm).
    AvxVnni,
    /// x86_64 AVX-512 VNNI (`vpdpbusd` on zmm).
    Avx512Vnni,
    /// aarch64 NEON baseline.
    Neon,
    /// aarch64 `sdot`.
    NeonDot,
    /// aarch64 `smmla`.
    NeonI8mm,
}

impl Level {
    /// Every level, portable first.
    pub const ALL: [Level; 7] =
        [Level::Scalar, Level::Avx2, Level::AvxVnni, Level::Avx512Vnni, Level::Neon, Level::NeonDot, Level::NeonI8mm];

    /// Lower-case name, as accepted by [`Level::parse`] and the `TEMPER_KERNELS` variable.
    pub const fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2",
            Level::AvxVnni => "avxvnni",
            Level::Avx512Vnni => "avx512vnni",
            Level::Neon => "neon",
            Level::NeonDot => "dotprod",
            Level::NeonI8mm => "i8mm",
        }
    }

    /// Parse a level name.
    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL.iter().copied().find(|l| l.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Features this level needs.
    pub const fn required(self) -> Features {
        match self {
            Level::Scalar => Features::empty(),
            Level::Avx2 => Features::AVX2,
            Level::AvxVnni => Features(Features::AVX2.0 | Features::AVXVNNI.0),
            Level::Avx512Vnni => {
                Features(Features::AVX2.0 | Features::AVX512F.0 | Features::AVX512BW.0 | Features::AVX512VL.0 | Features::AVX512VNNI.0)
            }
            Level::Neon => Features::NEON,
            Level::NeonDot => Features(Features::NEON.0 | Features::DOTPROD.0),
            Level::NeonI8mm => Features(Features::NEON.0 | Features::DOTPROD.0 | Features::I8MM.0),
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One table of kernel entry points. Every entry produces exactly the bytes of the scalar
/// reference for the same arguments.
pub struct Kernels {
    /// The level this table implements.
    pub level: Level,
    /// Quantized GEMM (fully connected, 1×1 convolution).
    pub gemm: fn(&Gemm<'_>, &mut [i8], usize),
    /// Grouped convolution; the slice is scratch of [`conv_scratch_len`] bytes.
    pub conv2d: fn(&ConvArgs<'_>, &mut [i8], &mut [i8]),
    /// Depthwise convolution.
    pub depthwise2d: fn(&DepthwiseArgs<'_>, &mut [i8]),
    /// Quantized elementwise addition (with broadcasting).
    pub add: fn(&AddArgs<'_>, &mut [i8]),
    /// Quantized elementwise multiplication (with broadcasting).
    pub mul: fn(&MulArgs<'_>, &mut [i8]),
    /// Max pooling: `(geometry, input, output, min, max)`.
    pub max_pool: fn(&Conv2d, &[i8], &mut [i8], i32, i32),
    /// Average pooling.
    pub avg_pool: fn(&AvgPoolArgs, &[i8], &mut [i8]),
}

impl fmt::Debug for Kernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kernels({})", self.level)
    }
}

/// Rows of output pixels gathered at once by im2col-based convolution paths.
pub const IM2COL_ROWS: usize = 32;

/// Scratch bytes a convolution needs on every path (the plan reserves this in the arena).
pub fn conv_scratch_len(g: &Conv2d) -> usize {
    if g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.groups == 1 && g.pad_top == 0 && g.pad_left == 0 {
        0
    } else {
        IM2COL_ROWS * crate::pack::round_up(g.k(), crate::pack::KR)
    }
}

fn scalar_conv(a: &ConvArgs<'_>, out: &mut [i8], _scratch: &mut [i8]) {
    crate::reference::conv2d(a, out)
}

/// The scalar reference entries: the base every level's table starts from.
///
/// A level's table lists only the entries it has a faster path for and takes the rest from here
/// (`Kernels { level: .., gemm: .., ..GENERIC }`, as tract's `generic()` + `plug`), so adding an
/// entry point means one field in [`Kernels`], its reference here, and overrides only in the
/// levels that beat the reference.
pub const GENERIC: Kernels = Kernels {
    level: Level::Scalar,
    gemm: crate::reference::gemm,
    conv2d: scalar_conv,
    depthwise2d: crate::reference::depthwise2d,
    add: crate::reference::eltwise::add,
    mul: crate::reference::eltwise::mul,
    max_pool: crate::reference::pool::max_pool,
    avg_pool: crate::reference::pool::avg_pool,
};

/// The scalar reference table ([`GENERIC`]).
pub static SCALAR: Kernels = GENERIC;

/// One compiled kernel table and the CPU features its code needs.
#[derive(Debug)]
pub struct Variant {
    /// Unique name, e.g. `"avx512vnni"` or `"avx512vl-vnni256"`.
    pub name: &'static str,
    /// The level this table implements.
    pub level: Level,
    /// Every CPU feature the table's code uses: a superset of `level.required()` for primary
    /// variants; test stand-ins (such as the EVEX form of the AVX-VNNI kernels) may need other
    /// features than their level.
    pub required: Features,
    /// Whether [`table`] returns this variant for `level` (false for stand-ins).
    pub primary: bool,
    /// Free-form remark (e.g. which hardware it was never run on).
    pub note: &'static str,
    kernels: &'static Kernels,
}

impl Variant {
    /// Declare a variant (crate-internal: the kernels must really only use `required`).
    pub(crate) const fn new(
        name: &'static str,
        level: Level,
        required: Features,
        primary: bool,
        note: &'static str,
        kernels: &'static Kernels,
    ) -> Variant {
        Variant { name, level, required, primary, note, kernels }
    }

    /// The table, if the running CPU has every feature it needs.
    pub fn kernels(&self) -> Option<&'static Kernels> {
        if Features::cpu().contains(self.required) {
            Some(self.kernels)
        } else {
            None
        }
    }

    /// Features the running CPU lacks for this variant (empty when it can run).
    pub fn missing(&self) -> Features {
        self.required.missing_from(Features::cpu())
    }
}

#[cfg(target_arch = "x86_64")]
use crate::x86::VARIANTS;

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
use crate::aarch64::VARIANTS;

#[cfg(not(any(target_arch = "x86_64", all(target_arch = "aarch64", target_feature = "neon"))))]
static VARIANTS: [Variant; 1] = [Variant::new("scalar", Level::Scalar, Features::empty(), true, "", &SCALAR)];

/// Every kernel table compiled for this target, portable first, whether or not this CPU can run
/// it (use [`Variant::kernels`]).
pub fn variants() -> &'static [Variant] {
    &VARIANTS
}

/// The table for `level` if it is compiled for this target, `features` allow it, and the
/// running CPU supports it.
pub fn table(level: Level, features: Features) -> Option<&'static Kernels> {
    if !features.contains(level.required()) {
        return None;
    }
    variants().iter().find(|v| v.primary && v.level == level).and_then(Variant::kernels)
}

/// The best table for `features`, not above `cap` when given.
pub fn select(features: Features, cap: Option<Level>) -> &'static Kernels {
    let mut best = &SCALAR;
    for level in Level::ALL {
        if cap.is_some_and(|c| level > c) {
            continue;
        }
        if let Some(t) = table(level, features) {
            if t.level >= best.level {
                best = t;
            }
        }
    }
    best
}

/// The level cap requested through the `TEMPER_KERNELS` environment variable, if any.
#[cfg(feature = "std")]
pub fn env_cap() -> Option<Level> {
    std::env::var("TEMPER_KERNELS").ok().and_then(|s| Level::parse(&s))
}

/// The best table for the running CPU, honouring `TEMPER_KERNELS` (std only; it may only lower
/// the level).
pub fn detect() -> &'static Kernels {
    #[cfg(feature = "std")]
    let cap = env_cap();
    #[cfg(not(feature = "std"))]
    let cap = None;
    let k = select(Features::cpu(), cap);
    log::info!("temper kernels: features [{}], path {}", Features::cpu(), k.level);
    k
}
