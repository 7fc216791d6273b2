//! Which SIMD kernel tables a test must have compared, judged by a source independent of the
//! kernels' own feature detection.
//!
//! A test that compares kernel tables with the scalar reference counts its comparisons per table
//! and hands them to [`check_levels`]. Every table the CPU can run must have been compared; "can
//! run" is decided by what the operating system says the CPU has ([`os_features`]: the `flags`
//! line of `/proc/cpuinfo` on x86_64, the `AT_HWCAP`/`AT_HWCAP2` words of `/proc/self/auxv` on
//! aarch64, which qemu-user emulates for the `QEMU_CPU` it runs), so a detection bug that hides a
//! level fails instead of silently skipping it. `TEMPER_EXPECT_LEVELS=neon,dotprod` (set by
//! `scripts/test.sh` per emulated core) names exactly the tables that must run. A table whose
//! features the CPU lacks is never required; it is listed as not available.

use std::collections::{BTreeMap, BTreeSet};

/// The CPU's features as the operating system reports them, in the kernels crate's names
/// (`avx2`, `fma`, `avx512f`, `avx512bw`, `avx512vl`, `avx512vnni`, `avxvnni`, `neon`,
/// `dotprod`, `i8mm`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OsFeatures {
    /// Where they were read (`/proc/cpuinfo`, `/proc/self/auxv`).
    pub source: &'static str,
    /// The features present.
    pub names: BTreeSet<String>,
}

impl OsFeatures {
    /// Whether every feature of `needs` is present.
    pub fn has_all<S: AsRef<str>>(&self, needs: &[S]) -> bool {
        needs.iter().all(|n| self.names.contains(n.as_ref()))
    }
}

/// x86 `/proc/cpuinfo` flag → kernels crate name.
const X86_FLAGS: [(&str, &str); 7] = [
    ("avx2", "avx2"),
    ("fma", "fma"),
    ("avx512f", "avx512f"),
    ("avx512bw", "avx512bw"),
    ("avx512vl", "avx512vl"),
    ("avx512_vnni", "avx512vnni"),
    ("avx_vnni", "avxvnni"),
];

/// The features named on the first `flags` line of an x86 `/proc/cpuinfo` text.
pub fn parse_x86_cpuinfo(text: &str) -> Option<BTreeSet<String>> {
    let line = text.lines().find(|l| l.split(':').next().is_some_and(|k| k.trim() == "flags"))?;
    let flags: BTreeSet<&str> = line.split_once(':')?.1.split_whitespace().collect();
    Some(X86_FLAGS.iter().filter(|(flag, _)| flags.contains(flag)).map(|(_, name)| name.to_string()).collect())
}

/// The aarch64 features in a little-endian `/proc/self/auxv` image (pairs of 64-bit words):
/// `HWCAP_ASIMD` (bit 1) → `neon`, `HWCAP_ASIMDDP` (bit 20) → `dotprod`, `HWCAP2_I8MM` (bit 13)
/// → `i8mm`. `None` when there is no `AT_HWCAP` entry.
pub fn parse_aarch64_auxv(auxv: &[u8]) -> Option<BTreeSet<String>> {
    const AT_HWCAP: u64 = 16;
    const AT_HWCAP2: u64 = 26;
    let word = |c: &[u8]| u64::from_le_bytes(c.try_into().expect("8 bytes"));
    let mut hwcap = None;
    let mut hwcap2 = 0;
    for pair in auxv.chunks_exact(16) {
        match word(&pair[..8]) {
            0 => break,
            AT_HWCAP => hwcap = Some(word(&pair[8..])),
            AT_HWCAP2 => hwcap2 = word(&pair[8..]),
            _ => {}
        }
    }
    let hwcap = hwcap?;
    let mut names = BTreeSet::new();
    for (on, name) in [(hwcap >> 1 & 1 == 1, "neon"), (hwcap >> 20 & 1 == 1, "dotprod"), (hwcap2 >> 13 & 1 == 1, "i8mm")] {
        if on {
            names.insert(name.to_string());
        }
    }
    Some(names)
}

/// What the operating system says the running CPU has, or `None` where there is no such source
/// (not Linux, or an architecture without SIMD kernel tables).
pub fn os_features() -> Option<OsFeatures> {
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
        Some(OsFeatures { source: "/proc/cpuinfo", names: parse_x86_cpuinfo(&text)? })
    } else if cfg!(all(target_os = "linux", target_arch = "aarch64")) {
        let auxv = std::fs::read("/proc/self/auxv").ok()?;
        Some(OsFeatures { source: "/proc/self/auxv", names: parse_aarch64_auxv(&auxv)? })
    } else {
        None
    }
}

/// The table names listed in `TEMPER_EXPECT_LEVELS`, if set.
pub fn expected_levels() -> Option<BTreeSet<String>> {
    let v = std::env::var("TEMPER_EXPECT_LEVELS").ok()?;
    Some(v.split(',').map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect())
}

/// One SIMD kernel table a test compares with the scalar reference.
#[derive(Clone, Debug)]
pub struct Table {
    /// The table's unique name (`Variant::name`).
    pub name: &'static str,
    /// The features its code needs, in the kernels crate's names.
    pub needs: Vec<String>,
    /// Whether the kernels crate hands it out on this CPU (`Variant::kernels().is_some()`).
    pub runnable: bool,
}

/// Check that the comparisons a test made cover what the CPU can run, and say what ran.
///
/// * `detected`: the kernels crate's detection (`Features::cpu()`), in its names;
/// * `os`: [`os_features`]; when given it must agree with `detected`;
/// * `expected`: [`expected_levels`]; when given, exactly these tables must have been compared;
/// * `compared`: comparisons per table name.
///
/// Every table whose features the CPU has (by `os`, else by `detected`) needs at least one
/// comparison. On success, returns the one-line summary
/// `levels compared (ARCH): … [; not available: …] (…)`; otherwise every problem found.
pub fn check_levels(
    tables: &[Table],
    detected: &BTreeSet<String>,
    os: Option<&OsFeatures>,
    expected: Option<&BTreeSet<String>>,
    compared: &BTreeMap<&str, usize>,
) -> Result<String, String> {
    let arch = std::env::consts::ARCH;
    let mut problems = Vec::new();
    if let Some(os) = os {
        if &os.names != detected {
            problems.push(format!(
                "feature detection disagrees with {}: detected [{}], {} reports [{}]",
                os.source,
                join(detected),
                os.source,
                join(&os.names)
            ));
        }
    }
    let claims = |t: &Table| t.needs.iter().all(|n| os.map_or(detected, |o| &o.names).contains(n));
    let count = |t: &Table| compared.get(t.name).copied().unwrap_or(0);
    let mut ran = Vec::new();
    let mut absent = Vec::new();
    for t in tables {
        let n = count(t);
        if n > 0 {
            ran.push(t.name.to_string());
        } else if claims(t) {
            problems.push(format!(
                "{} was never compared although the CPU has [{}] (runnable per the kernels crate: {})",
                t.name,
                t.needs.join(" "),
                t.runnable
            ));
        } else {
            let missing: Vec<&str> =
                t.needs.iter().map(String::as_str).filter(|n| !os.map_or(detected, |o| &o.names).contains(*n)).collect();
            absent.push(format!("{} (CPU lacks {})", t.name, missing.join(" ")));
        }
    }
    if let Some(want) = expected {
        let got: BTreeSet<String> = ran.iter().cloned().collect();
        if &got != want {
            problems.push(format!("TEMPER_EXPECT_LEVELS={} but the levels compared are [{}]", join(want), join(&got)));
        }
    }
    if !problems.is_empty() {
        return Err(format!("kernel level coverage on {arch}:\n  {}", problems.join("\n  ")));
    }
    let mut line = format!("levels compared ({arch}): {}", if ran.is_empty() { "none (scalar only)".to_string() } else { ran.join(" ") });
    if !absent.is_empty() {
        line += &format!("; not available: {}", absent.join(", "));
    }
    line += &match (os, expected) {
        (Some(o), Some(_)) => format!(" (detection agrees with {}; as TEMPER_EXPECT_LEVELS lists)", o.source),
        (Some(o), None) => format!(" (detection agrees with {})", o.source),
        (None, Some(_)) => " (as TEMPER_EXPECT_LEVELS lists)".to_string(),
        (None, None) => " (no independent feature source on this target)".to_string(),
    };
    Ok(line)
}

fn join(s: &BTreeSet<String>) -> String {
    s.iter().map(String::as_str).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn table(name: &'static str, needs: &[&str], runnable: bool) -> Table {
        Table { name, needs: needs.iter().map(|s| s.to_string()).collect(), runnable }
    }

    #[test]
    fn cpuinfo_flags_map_to_kernel_names() {
        let text = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512vl avx512_vnni\nbugs\t\t: none\n\
                    processor\t: 1\nflags\t\t: avx_vnni\n";
        assert_eq!(parse_x86_cpuinfo(text), Some(set(&["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512vnni"])));
        assert_eq!(parse_x86_cpuinfo("flags\t: sse2 avx_vnni avx2\n"), Some(set(&["avx2", "avxvnni"])));
        assert_eq!(parse_x86_cpuinfo("model name\t: x\n"), None);
    }

    #[test]
    fn auxv_hwcaps_map_to_kernel_names() {
        let pairs =
            |ps: &[(u64, u64)]| ps.iter().flat_map(|(k, v)| k.to_le_bytes().into_iter().chain(v.to_le_bytes())).collect::<Vec<u8>>();
        assert_eq!(parse_aarch64_auxv(&pairs(&[(6, 4096), (16, 0b11), (26, 0), (0, 0)])), Some(set(&["neon"])));
        assert_eq!(parse_aarch64_auxv(&pairs(&[(16, 1 << 1 | 1 << 20), (0, 0)])), Some(set(&["neon", "dotprod"])));
        assert_eq!(parse_aarch64_auxv(&pairs(&[(26, 1 << 13), (16, 1 << 1 | 1 << 20)])), Some(set(&["neon", "dotprod", "i8mm"])));
        // entries after AT_NULL are not read
        assert_eq!(parse_aarch64_auxv(&pairs(&[(0, 0), (16, 2)])), None);
    }

    #[test]
    fn a_claimed_level_never_compared_fails() {
        let tables = [table("avx2", &["avx2"], true), table("avx512vnni", &["avx2", "avx512f"], true)];
        let cpu = set(&["avx2", "avx512f"]);
        let os = OsFeatures { source: "/proc/cpuinfo", names: cpu.clone() };
        let all: BTreeMap<&str, usize> = [("avx2", 3), ("avx512vnni", 1)].into();
        let line = check_levels(&tables, &cpu, Some(&os), None, &all).unwrap();
        assert!(line.starts_with(&format!("levels compared ({}): avx2 avx512vnni (", std::env::consts::ARCH)), "{line}");
        let one: BTreeMap<&str, usize> = [("avx2", 3), ("avx512vnni", 0)].into();
        let e = check_levels(&tables, &cpu, Some(&os), None, &one).unwrap_err();
        assert!(e.contains("avx512vnni was never compared"), "{e}");
    }

    #[test]
    fn detection_hiding_a_level_fails() {
        // the OS reports avx512f, detection does not: the table is not runnable, yet required
        let tables = [table("avx2", &["avx2"], true), table("avx512vnni", &["avx2", "avx512f"], false)];
        let os = OsFeatures { source: "/proc/cpuinfo", names: set(&["avx2", "avx512f"]) };
        let compared: BTreeMap<&str, usize> = [("avx2", 3)].into();
        let e = check_levels(&tables, &set(&["avx2"]), Some(&os), None, &compared).unwrap_err();
        assert!(e.contains("detection disagrees with /proc/cpuinfo"), "{e}");
        assert!(e.contains("avx512vnni was never compared"), "{e}");
    }

    #[test]
    fn a_level_the_cpu_lacks_is_listed_not_required() {
        let tables = [table("neon", &["neon"], true), table("i8mm", &["neon", "dotprod", "i8mm"], false)];
        let cpu = set(&["neon"]);
        let compared: BTreeMap<&str, usize> = [("neon", 1)].into();
        let line = check_levels(&tables, &cpu, None, None, &compared).unwrap();
        assert!(line.contains(": neon; not available: i8mm (CPU lacks dotprod i8mm)"), "{line}");
    }

    #[test]
    fn expected_levels_must_match_exactly() {
        let tables = [table("neon", &["neon"], true), table("dotprod", &["neon", "dotprod"], true)];
        let cpu = set(&["neon", "dotprod"]);
        let compared: BTreeMap<&str, usize> = [("neon", 1), ("dotprod", 2)].into();
        assert!(check_levels(&tables, &cpu, None, Some(&set(&["neon", "dotprod"])), &compared).is_ok());
        let e = check_levels(&tables, &cpu, None, Some(&set(&["neon"])), &compared).unwrap_err();
        assert!(e.contains("TEMPER_EXPECT_LEVELS=neon but the levels compared are [dotprod neon]"), "{e}");
    }
}
