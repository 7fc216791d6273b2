//! Helpers shared by the commands: opening models with clear errors, choosing kernels,
//! aligned arenas, shapes, class labels, percentages, JSON output and progress.

use crate::{CliError, CliResult};
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::path::Path;
use temper_kernels::dispatch::{self, Kernels, Level};
use temper_kernels::Features;
use temper_runtime::format::InputKind;
use temper_runtime::{Model, ModelFile, OpenError, TensorView};

/// Alignment of session arenas (the runtime's data alignment; SIMD-friendly).
pub const ARENA_ALIGN: usize = 64;

/// Read (a private copy; `mmap`: map, zero copy) and fully validate (structure and checksums)
/// a model file. The copy is immune to the file being replaced or truncated while the command
/// runs; the mapping is for read-only media (see `temper_runtime::ModelFile`).
pub fn open_model(path: &str, mmap: bool) -> CliResult<ModelFile> {
    let p = Path::new(path);
    let r = if mmap { ModelFile::open_mapped(p) } else { ModelFile::open(p) };
    r.map_err(|e| open_error(path, e))
}

/// The validated model view of a loaded file.
pub fn view<'f>(file: &'f ModelFile, path: &str) -> CliResult<Model<'f>> {
    file.model().map_err(|e| open_error(path, e))
}

fn open_error(path: &str, e: OpenError) -> CliError {
    match e {
        OpenError::Io(_, e) => CliError::failed(format!("cannot open model {path}: {e}")),
        // The LoadError's Display starts with "invalid model: …".
        OpenError::Load(_, e) => CliError::failed(format!("{path}: {e}")),
    }
}

/// Names of every kernel level, for messages.
pub fn level_names() -> String {
    Level::ALL.iter().map(|l| l.name()).collect::<Vec<_>>().join(", ")
}

/// The kernel table for `--kernels LEVEL`, or the detected best one (honouring
/// `TEMPER_KERNELS`) when no level is given. An explicit level overrides the environment.
pub fn select_kernels(command: &'static str, level: Option<&str>) -> CliResult<&'static Kernels> {
    let Some(name) = level else {
        return Ok(dispatch::detect());
    };
    let Some(level) = Level::parse(name) else {
        return Err(CliError::usage(command, format!("unknown kernel level '{name}' (one of: {})", level_names())));
    };
    if let Some(k) = dispatch::table(level, Features::cpu()) {
        return Ok(k);
    }
    let why = match dispatch::variants().iter().find(|v| v.primary && v.level == level) {
        Some(v) => format!("this CPU lacks {}", v.missing()),
        None => "it is not compiled for this target".to_string(),
    };
    Err(CliError::failed(format!("kernel level '{level}' is not available: {why} (CPU features: {})", Features::cpu())))
}

/// A zeroed, 64-byte aligned byte buffer for a session arena (safe code: an over-allocated
/// `Vec` sliced at the first aligned address).
#[derive(Debug)]
pub struct Arena {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl Arena {
    /// An arena of `len` bytes.
    pub fn new(len: usize) -> Arena {
        let buf = vec![0u8; len + ARENA_ALIGN];
        let misalign = buf.as_ptr() as usize % ARENA_ALIGN;
        let start = (ARENA_ALIGN - misalign) % ARENA_ALIGN;
        Arena { buf, start, len }
    }

    /// The aligned bytes.
    pub fn bytes(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

/// `[1, 8, 8, 2]`.
pub fn fmt_dims<T: std::fmt::Display>(dims: &[T]) -> String {
    let mut s = String::from("[");
    for (i, d) in dims.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{d}");
    }
    s.push(']');
    s
}

/// Dimensions as `usize`.
pub fn dims_usize(t: &TensorView<'_>) -> Vec<usize> {
    t.dims.iter().map(|&d| d as usize).collect()
}

/// Whether graph input tensor `id` accepts raw u8 pixels (it has a pixel input record).
pub fn accepts_pixels(model: &Model<'_>, id: u32) -> bool {
    model.input_record(id).is_some_and(|r| r.kind == InputKind::Pixels as u32)
}

/// Class names from the `labels` metadata (comma-separated), if present.
pub fn model_labels(model: &Model<'_>) -> Vec<String> {
    match model.meta("labels") {
        Some(v) if !v.trim().is_empty() => v.split(',').map(|s| s.trim().to_string()).collect(),
        _ => Vec::new(),
    }
}

/// Index of the largest value (the first one on ties); `None` for an empty slice.
pub fn argmax<T: PartialOrd + Copy>(v: &[T]) -> Option<usize> {
    let mut best: Option<(usize, T)> = None;
    for (i, &x) in v.iter().enumerate() {
        let better = match best {
            None => true,
            Some((_, b)) => x.partial_cmp(&b) == Some(std::cmp::Ordering::Greater),
        };
        if better {
            best = Some((i, x));
        }
    }
    best.map(|(i, _)| i)
}

/// Print `value` as one line of JSON on stdout (`--json`).
pub fn print_json<T: serde::Serialize>(value: &T) -> CliResult {
    let text = serde_json::to_string(value).map_err(|e| CliError::failed(format!("cannot write JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// `100 · part / whole`: accuracies are percentages everywhere (NaN when `whole` is 0; JSON
/// writes it as `null`).
pub fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        f64::NAN
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// A percentage as printed: two decimals and a percent sign, `92.60%` (as `temper quantize`
/// prints accuracies); `-` when not defined.
pub fn fmt_percent(p: f64) -> String {
    if p.is_finite() {
        format!("{p:.2}%")
    } else {
        "-".to_string()
    }
}

/// Whether progress messages go to stderr: never with `--quiet`; otherwise when stderr is a
/// terminal (a redirected log gets the result, not the progress) or `forced` (`--progress`).
pub fn show_progress(quiet: bool, forced: bool) -> bool {
    !quiet && (forced || std::io::stderr().is_terminal())
}

/// A deterministic xorshift64 generator (benchmark inputs).
#[derive(Clone, Debug)]
pub struct XorShift(pub u64);

impl XorShift {
    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_first_on_ties() {
        assert_eq!(argmax(&[1, 3, 3, 2]), Some(1));
        assert_eq!(argmax::<f32>(&[]), None);
        assert_eq!(argmax(&[-1.0f32, -0.5]), Some(1));
    }

    #[test]
    fn percentages() {
        assert_eq!(fmt_percent(percent(9154, 10000)), "91.54%");
        assert_eq!(fmt_percent(percent(2, 3)), "66.67%");
        assert_eq!(fmt_percent(percent(1, 0)), "-");
        assert_eq!(percent(3, 3), 100.0);
    }

    #[test]
    fn arena_is_aligned() {
        for n in [0, 1, 100, 4097] {
            let mut a = Arena::new(n);
            let b = a.bytes();
            assert_eq!(b.len(), n);
            assert_eq!(b.as_ptr() as usize % ARENA_ALIGN, 0);
        }
    }
}
