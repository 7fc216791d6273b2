//! `temper-run run`: run a model on NPY inputs and write its dequantized outputs.

use crate::args::{self, Opt};
use crate::common::{self, fmt_dims, Arena};
use crate::{CliError, CliResult};
use serde::Serialize;
use std::path::Path;
use temper_data::{NpyArray, NpyData};
use temper_runtime::{Model, Session};

const HELP: &str = "\
temper-run run: run a model on NPY input(s)

Usage: temper-run run MODEL.tmf --input x.npy [--output y.npy] [OPTIONS]

Options:
  --input PATH      NPY input; repeat once per graph input, in graph-input order
  --output PATH     write graph output 0 (repeat for outputs 1, 2, …) as NPY
  --raw             the input holds raw 0..=255 pixel values of any numeric dtype (e.g. float
                    0..255 images); they are fed as u8 through the model's pixel normalization
  --output-i8       write the raw quantized int8 outputs instead of dequantized f32
  --allow-nonfinite accept NaN/Inf in f32 inputs (Inf saturates, NaN becomes 0); by default
                    they are an error naming the first one
  --layout L        auto (default), nchw or nhwc: layout of 4-D inputs
  --kernels LEVEL   force a kernel path (scalar, avx2, avxvnni, avx512vnni, neon, dotprod, i8mm)
  --json            print the result as one JSON object: inputs, every row of output 0 (top-1,
                    label, score, all values), the files written
  --mmap            map the model (zero copy) instead of reading a private copy; only for
                    files nobody modifies meanwhile (truncating a mapped file gives SIGBUS)
  -h, --help        this help

Input dtypes:
  f32   real values in the model's input domain, quantized with the input's scale/zero point
  i8    already quantized values, copied as they are
  u8    raw pixels (NHWC), normalized by the model's pixel input record
        ((p * pixel_scale - mean[c]) / std[c]); only for models that have one (see 'info')

Shapes: model inputs are NHWC [n, h, w, c]. The NPY may hold a batch: its leading dimension
may be any multiple k·n, and the model then runs k times. A 4-D NPY is taken as NHWC when its
shape matches [k·n, h, w, c]; otherwise as NCHW when it matches [k·n, c, h, w], and it is
transposed to NHWC (when both match, NHWC wins; --layout forces one). A single item may also
omit the leading batch dimension when n = 1.

Output: each graph output is dequantized to f32 (or int8 with --output-i8), the items
concatenated along the leading dimension, and the top-1 class of every row of output 0 is
printed (with the class name from the model's 'labels' metadata, if any).
";

/// How to read 4-D input arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutOpt {
    /// NHWC if the shape matches the model's input, else NCHW if that matches.
    Auto,
    /// `[N, C, H, W]`, transposed to NHWC.
    Nchw,
    /// `[N, H, W, C]`, the model's own layout.
    Nhwc,
}

impl LayoutOpt {
    /// Parse `--layout`.
    pub fn parse(command: &'static str, v: Option<&str>) -> CliResult<LayoutOpt> {
        match v.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            None | Some("auto") => Ok(LayoutOpt::Auto),
            Some("nchw") => Ok(LayoutOpt::Nchw),
            Some("nhwc") => Ok(LayoutOpt::Nhwc),
            Some(other) => Err(CliError::usage(command, format!("--layout must be auto, nchw or nhwc, got '{other}'"))),
        }
    }
}

/// How an input array maps onto the model's input: number of model runs, and whether it is
/// NCHW (to be transposed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fit {
    /// Model runs (items of the model's own batch size).
    pub items: usize,
    /// The array is NCHW.
    pub nchw: bool,
}

/// Match an array shape to the model input `dims` (NHWC for 4-D). Errors say what would fit.
pub fn fit_shape(shape: &[usize], dims: &[usize], layout: LayoutOpt) -> Result<Fit, String> {
    let b = dims.first().copied().unwrap_or(1).max(1);
    let mut s = shape.to_vec();
    if s.len() + 1 == dims.len() && b == 1 {
        s.insert(0, 1);
    }
    let four = dims.len() == 4;
    let expect = || {
        let mut m = format!("[k·{b}{}] (NHWC)", dims.get(1..).unwrap_or(&[]).iter().map(|d| format!(", {d}")).collect::<String>());
        if four {
            m.push_str(&format!(" or [k·{b}, {}, {}, {}] (NCHW)", dims[3], dims[1], dims[2]));
        }
        m
    };
    let mismatch = || format!("shape {} does not fit the model input {} (NHWC); expected {}", fmt_dims(shape), fmt_dims(dims), expect());
    if s.len() != dims.len() || s.is_empty() {
        return Err(mismatch());
    }
    if s[0] == 0 {
        return Err(format!("shape {} holds no items", fmt_dims(shape)));
    }
    let lead = s[0].is_multiple_of(b);
    let nhwc_ok = lead && s.get(1..) == dims.get(1..);
    let nchw_ok = four && lead && s[1..] == [dims[3], dims[1], dims[2]];
    let items = s[0] / b;
    match layout {
        LayoutOpt::Auto if nhwc_ok => Ok(Fit { items, nchw: false }),
        LayoutOpt::Auto if nchw_ok => Ok(Fit { items, nchw: true }),
        LayoutOpt::Nhwc if nhwc_ok => Ok(Fit { items, nchw: false }),
        LayoutOpt::Nchw if !four => Err(format!("--layout nchw needs a 4-D model input; this one is {}", fmt_dims(dims))),
        LayoutOpt::Nchw if nchw_ok => Ok(Fit { items, nchw: true }),
        _ => Err(mismatch()),
    }
}

/// Transpose `[n, c, h, w]` to `[n, h, w, c]`.
pub fn nchw_to_nhwc<T: Copy>(v: &[T], [n, c, h, w]: [usize; 4]) -> Vec<T> {
    let mut out = Vec::with_capacity(v.len());
    for i in 0..n {
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    out.push(v[((i * c + ch) * h + y) * w + x]);
                }
            }
        }
    }
    out
}

/// Input values in one of the three forms the session takes.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// Real values (`set_input_f32`).
    F32(Vec<f32>),
    /// Quantized values (`set_input_i8`).
    I8(Vec<i8>),
    /// Raw pixels (`set_input_u8`).
    U8(Vec<u8>),
}

impl Values {
    fn dtype(&self) -> &'static str {
        match self {
            Values::F32(_) => "f32",
            Values::I8(_) => "i8",
            Values::U8(_) => "u8",
        }
    }

    fn transposed(self, shape4: [usize; 4]) -> Values {
        match self {
            Values::F32(v) => Values::F32(nchw_to_nhwc(&v, shape4)),
            Values::I8(v) => Values::I8(nchw_to_nhwc(&v, shape4)),
            Values::U8(v) => Values::U8(nchw_to_nhwc(&v, shape4)),
        }
    }

    /// Feed item `k` (of `per` elements) to graph input `index`.
    fn feed(&self, s: &mut Session<'_, '_>, index: usize, k: usize, per: usize) -> Result<(), temper_runtime::RunError> {
        let r = k * per..(k + 1) * per;
        match self {
            // Non-finite values were rejected in `prepare` unless --allow-nonfinite.
            Values::F32(v) => s.set_input_f32_saturating(index, &v[r]),
            Values::I8(v) => s.set_input_i8(index, &v[r]),
            Values::U8(v) => s.set_input_u8(index, &v[r]),
        }
    }
}

/// Convert NPY data to session values; `raw` turns any integral 0..=255 data into pixels.
pub fn to_values(data: NpyData, raw: bool, path: &str) -> Result<Values, String> {
    let pixel = |x: f64, i: usize| -> Result<u8, String> {
        if x.is_finite() && x.fract() == 0.0 && (0.0..=255.0).contains(&x) {
            Ok(x as u8)
        } else {
            Err(format!("{path}: --raw needs pixel values that are whole numbers in 0..=255; element {i} is {x}"))
        }
    };
    match (data, raw) {
        (NpyData::F32(v), false) => Ok(Values::F32(v)),
        (NpyData::I8(v), false) => Ok(Values::I8(v)),
        (NpyData::U8(v), _) => Ok(Values::U8(v)),
        (NpyData::I8(_), true) => Err(format!("{path}: --raw given but the array is i8 (quantized values); raw pixels are u8 0..=255")),
        (NpyData::F32(v), true) => v.iter().enumerate().map(|(i, &x)| pixel(x as f64, i)).collect::<Result<_, _>>().map(Values::U8),
        (NpyData::I32(v), true) => v.iter().enumerate().map(|(i, &x)| pixel(x as f64, i)).collect::<Result<_, _>>().map(Values::U8),
        (NpyData::I64(v), true) => v.iter().enumerate().map(|(i, &x)| pixel(x as f64, i)).collect::<Result<_, _>>().map(Values::U8),
        (d @ (NpyData::I32(_) | NpyData::I64(_)), false) => Err(format!(
            "{path}: unsupported input dtype {} (give f32 real values, i8 quantized values or u8 raw pixels; --raw takes integer pixel values)",
            d.descr()
        )),
    }
}

struct Prepared {
    values: Values,
    fit: Fit,
    shape: Vec<usize>,
}

fn prepare(model: &Model<'_>, index: usize, path: &str, raw: bool, layout: LayoutOpt, allow_nonfinite: bool) -> CliResult<Prepared> {
    let id = model.graph_inputs()[index];
    let t = model.tensor(id);
    let dims = common::dims_usize(&t);
    let arr: NpyArray = temper_data::read_npy(Path::new(path)).map_err(|e| CliError::failed(e.to_string()))?;
    let values = to_values(arr.data, raw, path).map_err(CliError::failed)?;
    if let (Values::F32(v), false) = (&values, allow_nonfinite) {
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(CliError::failed(format!(
                "{path}: element {i} is {} (not a finite number); non-finite inputs are rejected (--allow-nonfinite saturates them)",
                v[i]
            )));
        }
    }
    if matches!(values, Values::U8(_)) && !common::accepts_pixels(model, id) {
        return Err(CliError::failed(format!(
            "{path}: u8 raw pixels given, but model input {index} '{}' accepts no raw pixels (no pixel input record); give f32 values in the model's input domain or i8 quantized values",
            t.name
        )));
    }
    let fit = fit_shape(&arr.shape, &dims, layout)
        .map_err(|m| CliError::failed(format!("{path}: wrong input shape for model input {index} '{}': {m}", t.name)))?;
    let values = if fit.nchw {
        // fit_shape guarantees a 4-D shape here (possibly with an implied batch dimension).
        let s = if arr.shape.len() == 4 { arr.shape.clone() } else { [&[1usize][..], &arr.shape[..]].concat() };
        values.transposed([s[0], s[1], s[2], s[3]])
    } else {
        values
    };
    Ok(Prepared { values, fit, shape: arr.shape })
}

/// Entry point of `run`.
pub fn main(argv: &[String]) -> CliResult {
    const OPTS: &[Opt] = &[
        Opt::flag("mmap"),
        Opt::repeated("input"),
        Opt::repeated("output"),
        Opt::flag("raw"),
        Opt::flag("output-i8"),
        Opt::flag("allow-nonfinite"),
        Opt::value("layout"),
        Opt::value("kernels"),
        Opt::flag("json"),
    ];
    let p = args::parse("run", argv, OPTS)?;
    if p.help {
        print!("{HELP}");
        return Ok(());
    }
    let path = p.model_path()?;
    let inputs = p.all("input");
    if inputs.is_empty() {
        return Err(CliError::usage("run", "missing --input x.npy"));
    }
    let outputs = p.all("output");
    let raw = p.flag("raw");
    let want_i8 = p.flag("output-i8");
    let layout = LayoutOpt::parse("run", p.get("layout"))?;
    let kernels = common::select_kernels("run", p.get("kernels"))?;

    // No output may be the model, an input or another output (checked before anything runs).
    let ins: Vec<&Path> = std::iter::once(path).chain(inputs.iter().copied()).map(Path::new).collect();
    let outs: Vec<&Path> = outputs.iter().map(Path::new).collect();
    temper_data::fsout::check_outputs(&ins, &outs).map_err(|e| CliError::failed(format!("--output {e}")))?;
    let file = common::open_model(path, p.flag("mmap"))?;
    let model = common::view(&file, path)?;
    let g_in = model.graph_inputs();
    let g_out = model.graph_outputs();
    if inputs.len() != g_in.len() {
        let names: Vec<&str> = g_in.iter().map(|&id| model.tensor(id).name).collect();
        return Err(CliError::failed(format!(
            "{path}: the model has {} graph input(s) ({}); give one --input per graph input, in order ({} given)",
            g_in.len(),
            names.join(", "),
            inputs.len()
        )));
    }
    if outputs.len() > g_out.len() {
        return Err(CliError::usage(
            "run",
            format!("{} --output paths given, but the model has only {} graph output(s)", outputs.len(), g_out.len()),
        ));
    }

    let mut prepared = Vec::with_capacity(inputs.len());
    for (i, inp) in inputs.iter().enumerate() {
        prepared.push(prepare(&model, i, inp, raw, layout, p.flag("allow-nonfinite"))?);
    }
    let items = prepared[0].fit.items;
    if let Some((i, q)) = prepared.iter().enumerate().find(|(_, q)| q.fit.items != items) {
        return Err(CliError::failed(format!(
            "{}: holds {} item(s) but {} holds {items}; every input needs the same number of items",
            inputs[i], q.fit.items, inputs[0]
        )));
    }

    let mut arena = Arena::new(model.arena_size());
    let mut session = Session::with_kernels(&model, arena.bytes(), kernels).map_err(|e| CliError::failed(format!("{path}: {e}")))?;
    let per_in: Vec<usize> = g_in.iter().map(|&id| model.tensor(id).numel()).collect();
    let per_out: Vec<usize> = g_out.iter().map(|&id| model.tensor(id).numel()).collect();
    let mut out_f32: Vec<Vec<f32>> = per_out.iter().map(|&n| Vec::with_capacity(n * items)).collect();
    let mut out_i8: Vec<Vec<i8>> = vec![Vec::new(); g_out.len()];
    let mut buf = Vec::new();
    for k in 0..items {
        for (i, q) in prepared.iter().enumerate() {
            q.values.feed(&mut session, i, k, per_in[i]).map_err(|e| CliError::failed(format!("{}: {e}", inputs[i])))?;
        }
        session.run().map_err(|e| CliError::failed(format!("{path}: {e}")))?;
        for (j, &n) in per_out.iter().enumerate() {
            buf.resize(n, 0.0);
            session.output_f32(j, &mut buf).map_err(|e| CliError::failed(format!("{path}: {e}")))?;
            out_f32[j].extend_from_slice(&buf);
            if want_i8 {
                out_i8[j].extend_from_slice(session.output_i8(j).map_err(|e| CliError::failed(format!("{path}: {e}")))?);
            }
        }
    }

    // Write the outputs first: the report names only files that exist.
    let mut written = Vec::with_capacity(outputs.len());
    for (j, out) in outputs.iter().enumerate() {
        let t = model.tensor(g_out[j]);
        let mut shape = common::dims_usize(&t);
        if let Some(d0) = shape.first_mut() {
            *d0 *= items;
        }
        let res = if want_i8 {
            temper_data::write_npy_i8(Path::new(out), &shape, &out_i8[j])
        } else {
            temper_data::write_npy_f32(Path::new(out), &shape, &out_f32[j])
        };
        res.map_err(|e| CliError::failed(format!("cannot write output: {e}")))?;
        written.push(WrittenJson { output: j, name: t.name, path: out, dtype: if want_i8 { "i8" } else { "f32" }, shape });
    }

    let labels = common::model_labels(&model);
    let y0 = model.tensor(g_out[0]);
    let cols = y0.dims.last().map_or(1, |&d| d as usize).max(1);
    let rows: Vec<RowJson<'_>> = out_f32[0]
        .chunks(cols)
        .enumerate()
        .map(|(item, scores)| {
            let top1 = if cols > 1 { common::argmax(scores) } else { None };
            RowJson { item, top1, label: top1.and_then(|c| labels.get(c)).map(String::as_str), score: top1.map(|c| scores[c]), scores }
        })
        .collect();
    let inputs_json: Vec<InputJson<'_>> = prepared
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let t = model.tensor(g_in[i]);
            InputJson {
                input: i,
                name: t.name,
                dims: t.dims,
                path: inputs[i],
                dtype: q.values.dtype(),
                shape: &q.shape,
                transposed_from_nchw: q.fit.nchw,
            }
        })
        .collect();
    if p.flag("json") {
        return common::print_json(&RunJson {
            model: path,
            name: model.name(),
            kernels: kernels.level.name(),
            items,
            inputs: inputs_json,
            output0: OutputJson { name: y0.name, dims: y0.dims, rows },
            written,
        });
    }

    println!(
        "model {} ({path}), kernels {}, {items} run(s)",
        if model.name().is_empty() { "(unnamed)" } else { model.name() },
        kernels.level
    );
    for x in &inputs_json {
        println!(
            "input {} '{}' {}: {} {} {}{}",
            x.input,
            x.name,
            fmt_dims(x.dims),
            x.path,
            x.dtype,
            fmt_dims(x.shape),
            if x.transposed_from_nchw { " (NCHW, transposed to NHWC)" } else { "" }
        );
    }
    const MAX_ROWS: usize = 50;
    for r in rows.iter().take(MAX_ROWS) {
        let mut line = format!("item {}:", r.item);
        if let (Some(c), Some(score)) = (r.top1, r.score) {
            line.push_str(&format!(" top-1 {c}"));
            if let Some(name) = r.label {
                line.push_str(&format!(" ({name})"));
            }
            line.push_str(&format!(" score {score:.4}"));
        }
        if cols <= 16 {
            let s: Vec<String> = r.scores.iter().map(|v| format!("{v:.4}")).collect();
            line.push_str(&format!("  [{}]", s.join(", ")));
        }
        println!("{line}");
    }
    if rows.len() > MAX_ROWS {
        println!(
            "… {} more row(s) not shown{}",
            rows.len() - MAX_ROWS,
            if outputs.is_empty() { " (write them with --output or --json)" } else { "" }
        );
    }
    for w in &written {
        println!("wrote output {} '{}' to {}: {} {}", w.output, w.name, w.path, w.dtype, fmt_dims(&w.shape));
    }
    Ok(())
}

/// `run --json`.
#[derive(Debug, Serialize)]
struct RunJson<'a> {
    model: &'a str,
    name: &'a str,
    kernels: &'static str,
    /// Model runs.
    items: usize,
    inputs: Vec<InputJson<'a>>,
    /// Graph output 0, dequantized: one row per class-score vector (its last dimension).
    output0: OutputJson<'a>,
    /// The `--output` files written.
    written: Vec<WrittenJson<'a>>,
}

/// One input of `run --json`.
#[derive(Debug, Serialize)]
struct InputJson<'a> {
    input: usize,
    name: &'a str,
    dims: &'a [u32],
    path: &'a str,
    dtype: &'static str,
    shape: &'a [usize],
    transposed_from_nchw: bool,
}

/// Output 0 of `run --json`.
#[derive(Debug, Serialize)]
struct OutputJson<'a> {
    name: &'a str,
    dims: &'a [u32],
    rows: Vec<RowJson<'a>>,
}

/// One row of output 0.
#[derive(Debug, Serialize)]
struct RowJson<'a> {
    item: usize,
    /// Index of the largest value (`null` for one-column outputs).
    top1: Option<usize>,
    /// Its class name from the model's `labels` metadata.
    label: Option<&'a str>,
    score: Option<f32>,
    scores: &'a [f32],
}

/// One written output file.
#[derive(Debug, Serialize)]
struct WrittenJson<'a> {
    output: usize,
    name: &'a str,
    path: &'a str,
    dtype: &'static str,
    shape: Vec<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_nhwc_nchw_and_batches() {
        let m = [1, 4, 5, 3];
        assert_eq!(fit_shape(&[1, 4, 5, 3], &m, LayoutOpt::Auto), Ok(Fit { items: 1, nchw: false }));
        assert_eq!(fit_shape(&[2, 3, 4, 5], &m, LayoutOpt::Auto), Ok(Fit { items: 2, nchw: true }));
        assert_eq!(fit_shape(&[4, 5, 3], &m, LayoutOpt::Auto), Ok(Fit { items: 1, nchw: false }));
        assert_eq!(fit_shape(&[3, 4, 5], &m, LayoutOpt::Auto), Ok(Fit { items: 1, nchw: true }));
        assert!(fit_shape(&[1, 4, 5, 3], &m, LayoutOpt::Nchw).is_err());
        assert!(fit_shape(&[1, 4, 4, 3], &m, LayoutOpt::Auto).is_err());
        assert!(fit_shape(&[0, 4, 5, 3], &m, LayoutOpt::Auto).is_err());
        // Batch-2 model: multiples of 2 only.
        assert_eq!(fit_shape(&[4, 10], &[2, 10], LayoutOpt::Auto), Ok(Fit { items: 2, nchw: false }));
        assert!(fit_shape(&[3, 10], &[2, 10], LayoutOpt::Auto).is_err());
        assert!(fit_shape(&[10], &[2, 10], LayoutOpt::Auto).is_err());
        assert!(fit_shape(&[2, 10], &[2, 10], LayoutOpt::Nchw).is_err());
        // Ambiguous square shape: NHWC wins unless forced.
        let sq = [1, 3, 3, 3];
        assert_eq!(fit_shape(&[1, 3, 3, 3], &sq, LayoutOpt::Auto), Ok(Fit { items: 1, nchw: false }));
        assert_eq!(fit_shape(&[1, 3, 3, 3], &sq, LayoutOpt::Nchw), Ok(Fit { items: 1, nchw: true }));
    }

    #[test]
    fn transposes() {
        // n=1, c=2, h=1, w=3
        let v = [0, 1, 2, 10, 11, 12];
        assert_eq!(nchw_to_nhwc(&v, [1, 2, 1, 3]), vec![0, 10, 1, 11, 2, 12]);
    }

    #[test]
    fn raw_values() {
        assert_eq!(to_values(NpyData::F32(vec![0.0, 255.0]), true, "x"), Ok(Values::U8(vec![0, 255])));
        assert!(to_values(NpyData::F32(vec![0.5]), true, "x").is_err());
        assert!(to_values(NpyData::I64(vec![256]), true, "x").is_err());
        assert!(to_values(NpyData::I32(vec![1]), false, "x").is_err());
        assert_eq!(to_values(NpyData::I8(vec![-1]), false, "x"), Ok(Values::I8(vec![-1])));
    }
}
