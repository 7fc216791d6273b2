//! `temper-run eval`: top-1 accuracy of a classifier on a labeled dataset, on several threads.

use crate::args::{self, Opt};
use crate::common::{self, fmt_dims, fmt_percent, percent, Arena};
use crate::{CliError, CliResult};
use serde::Serialize;
use std::io::Read;
use std::ops::Range;
use std::path::Path;
use std::time::Instant;
use temper_data::dataset::{self, Layout, LoadOptions};
use temper_data::{Dataset, Pixels};
use temper_kernels::dispatch::Kernels;
use temper_runtime::{Model, Session};

const HELP: &str = "\
temper-run eval: top-1 accuracy on a labeled dataset

Usage: temper-run eval MODEL.tmf --images PATH --labels PATH [OPTIONS]
       temper-run eval MODEL.tmf --data SPEC [OPTIONS]

Options:
  --images PATH     images: IDX (gzip'd or not; u8, f32 or f64) or NPY (|u1 or <f4/<f8);
                    [N,H,W], [N,D], or 4-D NCHW (NHWC when the last dimension is 1, 3 or 4
                    and the second is not; --layout forces one)
  --labels PATH     labels: IDX or NPY integers, shape [N] or [N,1] (same format as --images)
  --data SPEC       a temper-data dataset spec instead of --images/--labels, e.g.
                    fashion-mnist:test, fashion-mnist:test:1000, idx:IMG,LBL, npy:IMG,LBL,
                    npz:FILE.npz, dir:FOLDER
  --limit N         evaluate the first N images only
  --threads T       worker threads, each with its own session and arena (default 1)
  --layout L        auto (default), nchw or nhwc: layout of 4-D image arrays
  --kernels LEVEL   force a kernel path (scalar, avx2, avxvnni, avx512vnni, neon, dotprod, i8mm)
  --allow-nonfinite accept NaN/Inf in f32 images (Inf saturates, NaN becomes 0; default: error)
  --json            print the result as one JSON object (accuracies in percent)
  -q, --quiet       no warnings on stderr
  --mmap            map the model (zero copy) instead of reading a private copy; only for
                    files nobody modifies meanwhile (truncating a mapped file gives SIGBUS)
  -h, --help        this help

Input path: u8 images go through the model's pixel normalization (set_input_u8) when the model
has a pixel input record (see 'info'); otherwise they are scaled to f32 in [0, 1] (pixel/255)
and quantized. f32 images are taken as already in the model's input domain. Images must have
the model input's size and channels (no resizing); a model with batch n runs n images at once.

The prediction is the argmax of graph output 0, one row of class scores per image (ties go to
the lowest class). Prints the top-1 accuracy (percent, two decimals), the count, and the accuracy of every class.
";

/// How images are fed to the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Feed {
    /// Raw u8 pixels through the model's pixel record.
    Pixels,
    /// u8 pixels scaled to `[0, 1]` f32.
    Unit,
    /// f32 values as they are.
    Float,
}

impl Feed {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Feed::Pixels => "u8 pixels through the model's pixel normalization",
            Feed::Unit => "u8 pixels scaled to f32 [0, 1] (the model has no pixel input record)",
            Feed::Float => "f32 values as stored",
        }
    }
    fn key(self) -> &'static str {
        match self {
            Feed::Pixels => "u8-pixels",
            Feed::Unit => "u8-unit-f32",
            Feed::Float => "f32",
        }
    }
}

/// How one dataset image (CHW) maps to the model input.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ImageMap {
    /// `[C, H, W]` of the dataset.
    pub(crate) chw: [usize; 3],
    /// Transpose CHW → HWC (4-D model input with more than one channel).
    pub(crate) to_hwc: bool,
    /// Images per model run (the input's leading dimension).
    pub(crate) batch: usize,
    /// Elements per image.
    pub(crate) per_image: usize,
    /// Class scores per image in output 0.
    pub(crate) classes: usize,
}

fn is_npy(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
        return true;
    }
    let mut head = [0u8; 6];
    // A checked open: a FIFO or device is left to the reader, which names the problem.
    match temper_data::fsread::open_input(path) {
        Ok(mut f) => f.file.read_exact(&mut head).is_ok() && &head == temper_data::npy::NPY_MAGIC,
        Err(_) => false,
    }
}

/// The dataset of `--data SPEC` or `--images/--labels` (`command` names the caller in usage errors).
pub(crate) fn load(command: &'static str, p: &args::Parsed) -> CliResult<Dataset> {
    let layout = match p.get("layout").map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("auto") => Layout::Auto,
        Some("nchw") => Layout::Nchw,
        Some("nhwc") => Layout::Nhwc,
        Some(other) => return Err(CliError::usage(command, format!("--layout must be auto, nchw or nhwc, got '{other}'"))),
    };
    let opts = LoadOptions { layout, ..LoadOptions::default() };
    let fail = |e: temper_data::DataError| CliError::failed(e.to_string());
    let ds = load_any(command, p, &opts, fail)?;
    if let (Pixels::F32(v), false) = (&ds.images, p.flag("allow-nonfinite")) {
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(CliError::failed(format!(
                "{}: image {} element {} is {} (not a finite number); non-finite inputs are rejected (--allow-nonfinite saturates them)",
                ds.source,
                i / ds.shape[1..].iter().product::<usize>().max(1),
                i % ds.shape[1..].iter().product::<usize>().max(1),
                v[i]
            )));
        }
    }
    Ok(ds)
}

fn load_any(
    command: &'static str,
    p: &args::Parsed,
    opts: &LoadOptions,
    fail: impl Fn(temper_data::DataError) -> CliError,
) -> CliResult<Dataset> {
    let opts = *opts;
    match (p.get("data"), p.get("images"), p.get("labels")) {
        (Some(spec), None, None) => dataset::load_dataset_with(spec, &opts).map_err(fail),
        (Some(_), _, _) => Err(CliError::usage(command, "give either --data SPEC or --images/--labels, not both")),
        (None, Some(images), Some(labels)) => {
            let (i, l) = (Path::new(images), Path::new(labels));
            if is_npy(i) {
                dataset::load_npy(i, l, &opts).map_err(fail)
            } else {
                dataset::load_idx(i, l, &opts).map_err(fail)
            }
        }
        (None, Some(_), None) => Err(CliError::usage(command, "missing --labels PATH")),
        (None, None, Some(_)) => Err(CliError::usage(command, "missing --images PATH")),
        (None, None, None) => Err(CliError::usage(command, "missing --images PATH --labels PATH (or --data SPEC)")),
    }
}

/// How the dataset's images map to the model's single input.
pub(crate) fn image_map(model: &Model<'_>, ds: &Dataset) -> CliResult<ImageMap> {
    let ins = model.graph_inputs();
    if ins.len() != 1 {
        return Err(CliError::failed(format!("eval needs a model with one graph input; this one has {}", ins.len())));
    }
    let t = model.tensor(ins[0]);
    let dims = common::dims_usize(&t);
    let [_, c, h, w] = ds.shape;
    let batch = dims.first().copied().unwrap_or(1).max(1);
    let per_image = t.numel() / batch;
    let to_hwc = if dims.len() == 4 {
        if dims[1..] != [h, w, c] {
            return Err(CliError::failed(format!(
                "{}: images are {c}x{h}x{w} (CxHxW) but model input '{}' takes {} (NHWC: {}x{}x{} per image); no resizing is done",
                ds.source,
                t.name,
                fmt_dims(&dims),
                dims[3],
                dims[1],
                dims[2]
            )));
        }
        c > 1
    } else {
        if per_image != c * h * w {
            return Err(CliError::failed(format!(
                "{}: images have {} values ({c}x{h}x{w}) but model input '{}' {} takes {per_image} per image",
                ds.source,
                c * h * w,
                t.name,
                fmt_dims(&dims)
            )));
        }
        false
    };
    let y = model.tensor(model.graph_outputs()[0]);
    if !y.numel().is_multiple_of(batch) {
        return Err(CliError::failed(format!(
            "model output '{}' {} does not hold one row of class scores per image (input batch {batch})",
            y.name,
            fmt_dims(y.dims)
        )));
    }
    Ok(ImageMap { chw: [c, h, w], to_hwc, batch, per_image, classes: y.numel() / batch })
}

/// Copy image `src` (CHW) into `dst` in the model's element order, converting each value.
pub(crate) fn place<T: Copy, U>(src: &[T], map: &ImageMap, dst: &mut [U], f: impl Fn(T) -> U) {
    let [c, h, w] = map.chw;
    if map.to_hwc {
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    dst[(y * w + x) * c + ch] = f(src[(ch * h + y) * w + x]);
                }
            }
        }
    } else {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = f(s);
        }
    }
}

/// Predict images `range` (a whole number of model batches, except perhaps at the end).
fn worker(
    model: &Model<'_>,
    kernels: &'static Kernels,
    ds: &Dataset,
    map: &ImageMap,
    feed: Feed,
    range: Range<usize>,
) -> Result<Vec<u32>, String> {
    let mut arena = Arena::new(model.arena_size());
    let mut s = Session::with_kernels(model, arena.bytes(), kernels).map_err(|e| e.to_string())?;
    let il = map.per_image;
    let mut u8buf = vec![0u8; if feed == Feed::Pixels { map.batch * il } else { 0 }];
    let mut f32buf = vec![0f32; if feed == Feed::Pixels { 0 } else { map.batch * il }];
    let mut preds = Vec::with_capacity(range.len());
    let mut start = range.start;
    while start < range.end {
        let real = (range.end - start).min(map.batch);
        for j in 0..map.batch {
            // A partial last batch repeats its last image; those predictions are dropped.
            let i = start + j.min(real - 1);
            match (feed, &ds.images) {
                (Feed::Pixels, Pixels::U8(v)) => place(&v[i * il..(i + 1) * il], map, &mut u8buf[j * il..(j + 1) * il], |p| p),
                (Feed::Unit, Pixels::U8(v)) => {
                    place(&v[i * il..(i + 1) * il], map, &mut f32buf[j * il..(j + 1) * il], |p| p as f32 / 255.0)
                }
                (_, Pixels::F32(v)) => place(&v[i * il..(i + 1) * il], map, &mut f32buf[j * il..(j + 1) * il], |p| p),
                (Feed::Float, Pixels::U8(_)) => return Err("internal: f32 feed for u8 data".into()),
            }
        }
        let r = if feed == Feed::Pixels { s.set_input_u8(0, &u8buf) } else { s.set_input_f32_saturating(0, &f32buf) };
        r.and_then(|()| s.run()).map_err(|e| e.to_string())?;
        let out = s.output_i8(0).map_err(|e| e.to_string())?;
        for row in out.chunks(map.classes).take(real) {
            preds.push(common::argmax(row).unwrap_or(0) as u32);
        }
        start += real;
    }
    Ok(preds)
}

/// Accuracy counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Score {
    /// Images evaluated.
    pub count: usize,
    /// Correct top-1 predictions.
    pub correct: usize,
    /// Per class: (images, correct).
    pub per_class: Vec<(usize, usize)>,
}

/// Score predictions against labels over `classes` classes.
pub fn score(preds: &[u32], labels: &[u32], classes: usize) -> Score {
    let mut s = Score { count: preds.len().min(labels.len()), correct: 0, per_class: vec![(0, 0); classes] };
    for (&p, &l) in preds.iter().zip(labels) {
        let hit = p == l;
        s.correct += hit as usize;
        if let Some(c) = s.per_class.get_mut(l as usize) {
            c.0 += 1;
            c.1 += hit as usize;
        }
    }
    s
}

/// `eval --json`.
#[derive(Debug, Serialize)]
struct EvalJson<'a> {
    model: &'a str,
    name: &'a str,
    data: &'a str,
    count: usize,
    correct: usize,
    /// Top-1 accuracy in percent.
    accuracy: f64,
    input: &'static str,
    threads: usize,
    kernels: &'static str,
    seconds: f64,
    images_per_s: f64,
    /// Labels the model can never predict (>= its number of output classes).
    unreachable_labels: usize,
    per_class: Vec<ClassJson>,
}

/// One class in `eval --json`.
#[derive(Debug, Serialize)]
struct ClassJson {
    class: usize,
    name: Option<String>,
    count: usize,
    correct: usize,
    /// Percent; `null` for a class with no images.
    accuracy: f64,
}

/// Entry point of `eval`.
pub fn main(argv: &[String]) -> CliResult {
    const OPTS: &[Opt] = &[
        Opt::flag("allow-nonfinite"),
        Opt::flag("mmap"),
        Opt::value("images"),
        Opt::value("labels"),
        Opt::value("data"),
        Opt::value("limit"),
        Opt::value("threads"),
        Opt::value("layout"),
        Opt::value("kernels"),
        Opt::flag("json"),
    ];
    let p = args::parse("eval", argv, OPTS)?;
    if p.help {
        print!("{HELP}");
        return Ok(());
    }
    let path = p.model_path()?;
    let limit: Option<usize> = match p.get("limit") {
        None => None,
        Some(_) => Some(p.number("limit", 1, 1)?),
    };
    let threads: usize = p.number("threads", 1, 1)?;
    let json = p.flag("json");
    let kernels = common::select_kernels("eval", p.get("kernels"))?;
    let file = common::open_model(path, p.flag("mmap"))?;
    let model = common::view(&file, path)?;
    let mut ds = load("eval", &p)?;
    if let Some(n) = limit {
        ds = ds.take(n).map_err(|e| CliError::failed(e.to_string()))?;
    }
    let map = image_map(&model, &ds)?;
    let input_id = model.graph_inputs()[0];
    let feed = match ds.images {
        Pixels::U8(_) if common::accepts_pixels(&model, input_id) => Feed::Pixels,
        Pixels::U8(_) => Feed::Unit,
        Pixels::F32(_) => Feed::Float,
    };

    let n = ds.len();
    let batches = n.div_ceil(map.batch);
    let threads = threads.min(batches).max(1);
    let per_thread = batches.div_ceil(threads);
    let ranges: Vec<Range<usize>> = (0..threads)
        .map(|t| (t * per_thread * map.batch).min(n)..((t + 1) * per_thread * map.batch).min(n))
        .filter(|r| !r.is_empty())
        .collect();
    let t0 = Instant::now();
    let results: Vec<Result<Vec<u32>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ranges
            .iter()
            .map(|r| {
                let (model, ds, map, r) = (&model, &ds, &map, r.clone());
                scope.spawn(move || worker(model, kernels, ds, map, feed, r))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a worker thread panicked".to_string()))).collect()
    });
    let secs = t0.elapsed().as_secs_f64();
    let mut preds = Vec::with_capacity(n);
    for r in results {
        preds.extend(r.map_err(|e| CliError::failed(format!("{path}: {e}")))?);
    }

    let classes = ds.num_classes.max(map.classes);
    let sc = score(&preds, &ds.labels, classes);
    let labels = common::model_labels(&model);
    let name = |c: usize| ds.class_names.get(c).or(labels.get(c)).cloned();
    let unreachable = ds.labels.iter().filter(|&&l| l as usize >= map.classes).count();
    if unreachable > 0 && !p.quiet {
        eprintln!(
            "temper-run: warning: {unreachable} label(s) are >= the model's {} output classes and can never be predicted",
            map.classes
        );
    }
    let acc = percent(sc.correct, sc.count);
    let per_s = n as f64 / secs.max(1e-9);
    if json {
        let per_class = sc
            .per_class
            .iter()
            .enumerate()
            .map(|(c, &(count, correct))| ClassJson { class: c, name: name(c), count, correct, accuracy: percent(correct, count) })
            .collect();
        return common::print_json(&EvalJson {
            model: path,
            name: model.name(),
            data: &ds.source,
            count: sc.count,
            correct: sc.correct,
            accuracy: acc,
            input: feed.key(),
            threads: ranges.len(),
            kernels: kernels.level.name(),
            seconds: secs,
            images_per_s: per_s,
            unreachable_labels: unreachable,
            per_class,
        });
    }
    println!(
        "model {} ({path}), kernels {}, {} thread(s)",
        if model.name().is_empty() { "(unnamed)" } else { model.name() },
        kernels.level,
        ranges.len()
    );
    let [c, h, w] = map.chw;
    println!("data {}: {n} images {c}x{h}x{w}, fed as {}", ds.source, feed.describe());
    println!("top-1 accuracy: {} ({}/{})", fmt_percent(acc), sc.correct, sc.count);
    println!("per class:");
    println!("  {:>5}  {:<16} {:>7} {:>7} {:>9}", "class", "name", "count", "correct", "accuracy");
    for (cl, &(cnt, ok)) in sc.per_class.iter().enumerate() {
        println!("  {cl:>5}  {:<16} {cnt:>7} {ok:>7} {:>9}", name(cl).unwrap_or_default(), fmt_percent(percent(ok, cnt)));
    }
    println!("time {secs:.3} s ({per_s:.1} images/s)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores() {
        let s = score(&[0, 1, 1, 2], &[0, 1, 2, 2], 3);
        assert_eq!(s.count, 4);
        assert_eq!(s.correct, 3);
        assert_eq!(s.per_class, vec![(1, 1), (1, 1), (2, 1)]);
    }

    #[test]
    fn places_chw_as_hwc() {
        let map = ImageMap { chw: [2, 1, 2], to_hwc: true, batch: 1, per_image: 4, classes: 2 };
        let mut d = [0u8; 4];
        place(&[1, 2, 3, 4], &map, &mut d, |v| v);
        assert_eq!(d, [1, 3, 2, 4]);
    }
}
