//! Test-only helpers shared by every temper test suite.
//!
//! **Required coverage.** A test that cannot run because something outside the repository is
//! missing (the shared models, a data set, Python, a CPU level) calls [`skip`]. Outside CI that
//! prints a `SKIPPED:` line and the test returns. When coverage is required — `CI` is set to
//! anything but `""`, `0` or `false` (CI runs with `CI=true`), or `TEMPER_REQUIRE` names the
//! need (`TEMPER_REQUIRE=data,levels,python`, or `all`) — the same call panics, naming what is
//! missing, so a green run means every test really ran. `TEMPER_REQUIRE=none` turns it off
//! even under CI (for a deliberate partial run by hand).
//!
//! **Locations.** [`models_dir`] and [`fmnist_dir`] find the shared models and Fashion-MNIST
//! the same way in every suite.

use std::path::PathBuf;

pub mod cpu;

/// Something a test needs from outside the repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// `../shared/models`, Fashion-MNIST and other fetched data.
    Data,
    /// A SIMD kernel level the CPU reports (a level the CPU lacks is never required).
    Levels,
    /// `python3` with the modules a cross-check uses.
    Python,
    /// A host tool (C/C++ compiler, qemu) a test drives.
    Tools,
}

impl Need {
    /// Name as written in `TEMPER_REQUIRE`.
    pub const fn name(self) -> &'static str {
        match self {
            Need::Data => "data",
            Need::Levels => "levels",
            Need::Python => "python",
            Need::Tools => "tools",
        }
    }
}

fn truthy(v: &str) -> bool {
    let v = v.trim();
    !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false"))
}

/// Whether a missing `need` must fail the test (see the crate docs).
pub fn required(need: Need) -> bool {
    required_in(std::env::var("TEMPER_REQUIRE").ok().as_deref(), std::env::var("CI").ok().as_deref(), need)
}

/// [`required`] with the two variables given (`TEMPER_REQUIRE`, `CI`), for tests of the rule.
pub fn required_in(require: Option<&str>, ci: Option<&str>, need: Need) -> bool {
    if let Some(list) = require {
        let items: Vec<&str> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        if items.iter().any(|s| s.eq_ignore_ascii_case("none")) {
            return false;
        }
        if items.iter().any(|s| s.eq_ignore_ascii_case("all") || s.eq_ignore_ascii_case(need.name())) {
            return true;
        }
    }
    ci.is_some_and(truthy)
}

/// Report that a test cannot run because `what` is missing: a failure when coverage of `need`
/// is required, otherwise a `SKIPPED:` line on stdout and stderr (the caller then returns).
///
/// # Panics
/// When [`required`]`(need)` holds.
#[track_caller]
pub fn skip(need: Need, what: &str) {
    if required(need) {
        panic!(
            "required {} missing: {what} (coverage is required because CI or TEMPER_REQUIRE is set; TEMPER_REQUIRE=none to allow skips)",
            need.name()
        );
    }
    println!("SKIPPED: {what}");
    eprintln!("SKIPPED: {what}");
}

/// The workspace root (the folder holding the top `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The shared models folder (`TEMPER_MODELS_DIR`, else `../shared/models` beside the checkout)
/// if it holds every file of `files`; otherwise [`skip`]s with [`Need::Data`] and returns `None`.
#[track_caller]
pub fn models_dir(files: &[&str]) -> Option<PathBuf> {
    let dir = std::env::var_os("TEMPER_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("../shared/models"));
    let missing: Vec<&str> = files.iter().copied().filter(|f| !dir.join(f).is_file()).collect();
    if missing.is_empty() {
        return Some(dir);
    }
    skip(Need::Data, &format!("{} lacks {} (set TEMPER_MODELS_DIR)", dir.display(), missing.join(", ")));
    None
}

/// The Fashion-MNIST folder (`TEMPER_FMNIST_DIR`, else the `dataset-fashion-mnist` package's)
/// if it holds the four IDX files; otherwise [`skip`]s with [`Need::Data`] and returns `None`.
#[track_caller]
pub fn fmnist_dir() -> Option<PathBuf> {
    let dir =
        std::env::var_os("TEMPER_FMNIST_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/share/datasets/fashion-mnist"));
    const FILES: [&str; 4] =
        ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"];
    if FILES.iter().all(|f| dir.join(f).is_file()) {
        return Some(dir);
    }
    skip(Need::Data, &format!("Fashion-MNIST not found in {} (apt-get install dataset-fashion-mnist)", dir.display()));
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_requires_everything() {
        for need in [Need::Data, Need::Levels, Need::Python, Need::Tools] {
            assert!(required_in(None, Some("true"), need));
            assert!(required_in(None, Some("1"), need));
            assert!(!required_in(None, Some("false"), need));
            assert!(!required_in(None, Some(""), need));
            assert!(!required_in(None, None, need));
        }
    }

    #[test]
    fn require_list_selects_needs() {
        assert!(required_in(Some("data,levels"), None, Need::Data));
        assert!(required_in(Some(" data , levels "), None, Need::Levels));
        assert!(!required_in(Some("data,levels"), None, Need::Python));
        assert!(required_in(Some("all"), None, Need::Python));
        assert!(!required_in(Some("none"), Some("true"), Need::Data));
        assert!(required_in(Some("python"), Some("true"), Need::Data), "CI still requires what the list omits");
    }

    #[test]
    fn skip_panics_only_when_required() {
        // The rule itself is tested above; here, that `skip` obeys it for this process.
        let r = std::panic::catch_unwind(|| skip(Need::Tools, "a tool this test invents"));
        assert_eq!(r.is_err(), required(Need::Tools));
    }
}
