//! Kernel-level coverage shared by the kernel test binaries: which SIMD tables a test compared,
//! checked against what the CPU can run (see `temper_testkit::cpu`).

#![allow(dead_code)] // each test binary uses part of this module

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use temper_kernels::dispatch::variants;
use temper_kernels::Features;
use temper_testkit::cpu::{self, Table};

/// Feature names of a set, as `Features` prints them (`avx2 avx512f …`).
pub fn names(f: Features) -> BTreeSet<String> {
    if f.is_empty() {
        return BTreeSet::new();
    }
    f.to_string().split(' ').map(str::to_string).collect()
}

/// Every SIMD table compiled for this target (the scalar reference excluded).
pub fn tables() -> Vec<Table> {
    variants()
        .iter()
        .filter(|v| v.name != "scalar")
        .map(|v| Table { name: v.name, needs: names(v.required).into_iter().collect(), runnable: v.kernels().is_some() })
        .collect()
}

/// [`cpu::check_levels`] for this CPU with `compared` comparisons per table name.
pub fn check(compared: &BTreeMap<&str, usize>) -> Result<String, String> {
    cpu::check_levels(&tables(), &names(Features::cpu()), cpu::os_features().as_ref(), cpu::expected_levels().as_ref(), compared)
}

/// Print `line` on the process's stderr, bypassing the test harness's output capture (which
/// only takes `print!`/`eprint!`), so the summary shows in every `cargo test` log.
pub fn announce(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}
