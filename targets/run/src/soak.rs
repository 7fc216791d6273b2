//! `temper-run soak`: run a model for a long time on a labeled dataset, cyclically, and check
//! that every output is byte-identical to the first pass's output for the same input and that
//! the resident memory does not grow after warm-up.

use crate::args::{self, Opt};
use crate::common::{self, fmt_percent, percent, Arena};
use crate::eval::{self, Feed, ImageMap};
use crate::{CliError, CliResult};
use serde::Serialize;
use std::io::Read as _;
use std::time::Instant;
use temper_data::{Dataset, Pixels};
use temper_runtime::{Model, Session};

const HELP: &str = "\
temper-run soak: long-run stability check on a labeled dataset

Usage: temper-run soak MODEL.tmf --data SPEC [OPTIONS]
       temper-run soak MODEL.tmf --images PATH --labels PATH [OPTIONS]

Options:
  --data SPEC         a temper-data dataset spec, e.g. fashion-mnist:test (see 'eval --help')
  --images PATH       images (IDX or NPY), with --labels PATH
  --limit N           use the first N images only
  --count N           model runs in total (default 1000000)
  --rss-every N       sample the resident set size every N runs (default 10000)
  --warmup N          runs after the first pass before the RSS baseline is taken (default 10000)
  --rss-slack KIB     tolerated RSS growth above the baseline, in KiB (default 0)
  --layout L          auto (default), nchw or nhwc: layout of 4-D image arrays
  --kernels LEVEL     force a kernel path (scalar, avx2, avxvnni, avx512vnni, neon, dotprod, i8mm)
  --allow-nonfinite   accept NaN/Inf in f32 images (Inf saturates, NaN becomes 0; default: error)
  --json              print the result as one JSON object (accuracy in percent)
  -q, --quiet         no progress lines on stderr
  --progress          progress lines on stderr even when it is not a terminal
  --mmap              map the model (zero copy) instead of reading a private copy; only for
                      files nobody modifies meanwhile (truncating a mapped file gives SIGBUS)
  -h, --help          this help

One session and one arena run the images in order, cyclically, COUNT times. The first pass over
the images records every output byte; every later run must give exactly the same bytes for the
same image (it fails at the first difference, naming the run, the image and the byte). The
resident set size (/proc/self/statm, resident pages times the page size from /proc/self/auxv)
is sampled every N runs without allocating; the baseline is taken after the first pass plus
the warm-up runs, and the command fails if any later sample exceeds it by more than the slack.
Progress goes to stderr ten times during the run when stderr is a terminal or with --progress
(never with --quiet).
Prints the count, the time, the throughput, the top-1 accuracy of the first pass (percent), and
the RSS minimum, baseline and maximum.
";

/// Resident set size in KiB from `/proc/self/statm` and the page size, without allocating.
pub fn rss_kib(page_kib: u64) -> Option<u64> {
    let mut f = std::fs::File::open("/proc/self/statm").ok()?;
    let mut buf = [0u8; 128];
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    parse_statm_resident(&buf[..n]).map(|pages| pages * page_kib)
}

/// The second field (resident pages) of a `statm` line.
fn parse_statm_resident(statm: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(statm).ok()?;
    s.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// The page size in KiB from `AT_PAGESZ` in `/proc/self/auxv` (native-endian words).
pub fn page_kib() -> Option<u64> {
    let aux = std::fs::read("/proc/self/auxv").ok()?;
    parse_auxv_pagesz(&aux, std::mem::size_of::<usize>()).map(|b| b / 1024).filter(|&k| k > 0)
}

fn parse_auxv_pagesz(aux: &[u8], word: usize) -> Option<u64> {
    const AT_PAGESZ: u64 = 6;
    let read = |c: &[u8]| -> u64 {
        let mut v = [0u8; 8];
        if cfg!(target_endian = "little") {
            v[..word].copy_from_slice(c);
            u64::from_le_bytes(v)
        } else {
            v[8 - word..].copy_from_slice(c);
            u64::from_be_bytes(v)
        }
    };
    aux.chunks_exact(2 * word).map(|p| (read(&p[..word]), read(&p[word..]))).find(|&(k, _)| k == AT_PAGESZ).map(|(_, v)| v)
}

/// Everything a soak run measured.
#[derive(Clone, Debug, Default)]
struct Report {
    runs: u64,
    images: usize,
    secs: f64,
    first_pass_correct: usize,
    first_pass_count: usize,
    rss_samples: usize,
    rss_min: u64,
    rss_baseline: u64,
    rss_max_after: u64,
    rss_max: u64,
}

/// Feed the images of model run `step` (a partial last batch repeats its last image).
fn feed_step(
    s: &mut Session<'_, '_>,
    ds: &Dataset,
    map: &ImageMap,
    feed: Feed,
    step: usize,
    u8buf: &mut [u8],
    f32buf: &mut [f32],
) -> Result<(), String> {
    let il = map.per_image;
    let start = step * map.batch;
    let real = (ds.len() - start).min(map.batch);
    for j in 0..map.batch {
        let i = start + j.min(real - 1);
        match (feed, &ds.images) {
            (Feed::Pixels, Pixels::U8(v)) => eval::place(&v[i * il..(i + 1) * il], map, &mut u8buf[j * il..(j + 1) * il], |p| p),
            (Feed::Unit, Pixels::U8(v)) => {
                eval::place(&v[i * il..(i + 1) * il], map, &mut f32buf[j * il..(j + 1) * il], |p| p as f32 / 255.0)
            }
            (_, Pixels::F32(v)) => eval::place(&v[i * il..(i + 1) * il], map, &mut f32buf[j * il..(j + 1) * il], |p| p),
            (Feed::Float, Pixels::U8(_)) => return Err("internal: f32 feed for u8 data".into()),
        }
    }
    let r = if feed == Feed::Pixels { s.set_input_u8(0, u8buf) } else { s.set_input_f32_saturating(0, f32buf) };
    r.map_err(|e| e.to_string())
}

/// Options of one soak run.
struct Plan {
    count: u64,
    rss_every: u64,
    warmup: u64,
    slack_kib: u64,
    page_kib: u64,
    /// Print progress lines on stderr (a terminal, no `--quiet`).
    progress: bool,
}

/// `soak --json`.
#[derive(Debug, Serialize)]
struct SoakJson<'a> {
    model: &'a str,
    data: &'a str,
    images: usize,
    runs: u64,
    seconds: f64,
    runs_per_s: f64,
    kernels: &'static str,
    /// Top-1 accuracy of the first pass, in percent.
    first_pass_accuracy: f64,
    first_pass_correct: usize,
    first_pass_count: usize,
    /// Outputs that differed from the first pass (always 0: a difference fails the command).
    mismatches: u64,
    rss_kib: RssJson,
}

/// Resident memory samples of `soak --json`, in KiB.
#[derive(Debug, Serialize)]
struct RssJson {
    samples: usize,
    min: u64,
    baseline: u64,
    /// The run after which the baseline was taken.
    baseline_after_run: u64,
    max_after_warmup: u64,
    max: u64,
}

fn soak(
    model: &Model<'_>,
    kernels: &'static temper_kernels::dispatch::Kernels,
    ds: &Dataset,
    map: &ImageMap,
    feed: Feed,
    plan: &Plan,
) -> CliResult<Report> {
    let fail = |m: String| CliError::failed(m);
    let steps = ds.len().div_ceil(map.batch);
    let outs: Vec<(usize, usize)> = {
        let mut v = Vec::new();
        let mut at = 0;
        for &id in model.graph_outputs() {
            let n = model.tensor(id).numel();
            v.push((at, n));
            at += n;
        }
        v
    };
    let out_len: usize = outs.iter().map(|o| o.1).sum();
    let warm_end = steps as u64 + plan.warmup;
    if plan.count <= warm_end {
        return Err(CliError::usage(
            "soak",
            format!("--count {} leaves nothing to check after the first pass ({steps} runs) and --warmup {}", plan.count, plan.warmup),
        ));
    }
    // Everything the loop needs is allocated before the first run.
    let mut reference = vec![0i8; steps * out_len];
    let mut arena = Arena::new(model.arena_size());
    let mut s = Session::with_kernels(model, arena.bytes(), kernels).map_err(|e| fail(e.to_string()))?;
    let il = map.per_image;
    let mut u8buf = vec![0u8; if feed == Feed::Pixels { map.batch * il } else { 0 }];
    let mut f32buf = vec![0f32; if feed == Feed::Pixels { 0 } else { map.batch * il }];
    let mut rep = Report { images: ds.len(), rss_min: u64::MAX, ..Report::default() };
    let report_every = (plan.count / 10).max(1);
    let mut over: Option<(u64, u64)> = None;
    let mut last = 0;
    let t0 = Instant::now();
    for k in 0..plan.count {
        let step = (k % steps as u64) as usize;
        feed_step(&mut s, ds, map, feed, step, &mut u8buf, &mut f32buf).map_err(|e| fail(format!("run {k}: {e}")))?;
        s.run().map_err(|e| fail(format!("run {k}: {e}")))?;
        let want = &mut reference[step * out_len..(step + 1) * out_len];
        for (o, &(at, n)) in outs.iter().enumerate() {
            let got = s.output_i8(o).map_err(|e| fail(format!("run {k}: {e}")))?;
            if k < steps as u64 {
                want[at..at + n].copy_from_slice(got);
                if o == 0 {
                    let real = (ds.len() - step * map.batch).min(map.batch);
                    for (j, row) in got.chunks(map.classes).take(real).enumerate() {
                        rep.first_pass_count += 1;
                        rep.first_pass_correct += (common::argmax(row) == Some(ds.labels[step * map.batch + j] as usize)) as usize;
                    }
                }
            } else if let Some(j) = (0..n).find(|&j| got[j] != want[at + j]) {
                return Err(fail(format!(
                    "run {k} (pass {}, image {}): output {o} byte {j} is {}, the first pass gave {}",
                    k / steps as u64 + 1,
                    step * map.batch,
                    got[j],
                    want[at + j]
                )));
            }
        }
        let done = k + 1;
        if done % plan.rss_every == 0 || done == warm_end || done == plan.count {
            let Some(r) = rss_kib(plan.page_kib) else { return Err(fail("cannot read /proc/self/statm".to_string())) };
            rep.rss_samples += 1;
            last = r;
            rep.rss_min = rep.rss_min.min(r);
            rep.rss_max = rep.rss_max.max(r);
            if done == warm_end {
                rep.rss_baseline = r;
            } else if done > warm_end {
                if r > rep.rss_max_after {
                    rep.rss_max_after = r;
                }
                if r > rep.rss_baseline + plan.slack_kib && over.is_none() {
                    over = Some((done, r));
                }
            }
        }
        if plan.progress && done % report_every == 0 {
            let secs = t0.elapsed().as_secs_f64();
            eprintln!(
                "soak: {done} runs, {secs:.1} s, {:.0} runs/s, RSS {last} KiB (max {} KiB)",
                done as f64 / secs.max(1e-9),
                rep.rss_max
            );
        }
    }
    rep.secs = t0.elapsed().as_secs_f64();
    rep.runs = plan.count;
    if let Some((at, r)) = over {
        return Err(fail(format!(
            "resident memory grew after warm-up: {r} KiB after run {at}, baseline {} KiB after run {warm_end} (slack {} KiB); min {} max {} KiB",
            rep.rss_baseline, plan.slack_kib, rep.rss_min, rep.rss_max
        )));
    }
    Ok(rep)
}

/// Entry point of `soak`.
pub fn main(argv: &[String]) -> CliResult {
    const OPTS: &[Opt] = &[
        Opt::flag("allow-nonfinite"),
        Opt::flag("mmap"),
        Opt::value("images"),
        Opt::value("labels"),
        Opt::value("data"),
        Opt::value("limit"),
        Opt::value("count"),
        Opt::value("rss-every"),
        Opt::value("warmup"),
        Opt::value("rss-slack"),
        Opt::value("layout"),
        Opt::value("kernels"),
        Opt::flag("json"),
        Opt::flag("progress"),
    ];
    let p = args::parse("soak", argv, OPTS)?;
    if p.help {
        print!("{HELP}");
        return Ok(());
    }
    let path = p.model_path()?;
    let limit: Option<usize> = match p.get("limit") {
        None => None,
        Some(_) => Some(p.number("limit", 1, 1)?),
    };
    let count: u64 = p.number("count", 1_000_000, 1)?;
    let rss_every: u64 = p.number("rss-every", 10_000, 1)?;
    let warmup: u64 = p.number("warmup", 10_000, 0)?;
    let slack_kib: u64 = p.number("rss-slack", 0, 0)?;
    let json = p.flag("json");
    if p.quiet && p.flag("progress") {
        return Err(CliError::usage("soak", "--quiet and --progress contradict each other"));
    }
    let progress = common::show_progress(p.quiet, p.flag("progress"));
    let kernels = common::select_kernels("soak", p.get("kernels"))?;
    let page_kib = page_kib().ok_or_else(|| CliError::failed("cannot read the page size from /proc/self/auxv (soak needs Linux /proc)"))?;
    let file = common::open_model(path, p.flag("mmap"))?;
    let model = common::view(&file, path)?;
    let mut ds = eval::load("soak", &p)?;
    if let Some(n) = limit {
        ds = ds.take(n).map_err(|e| CliError::failed(e.to_string()))?;
    }
    if ds.is_empty() {
        return Err(CliError::failed(format!("{}: the dataset has no images", ds.source)));
    }
    let map = eval::image_map(&model, &ds)?;
    let feed = match ds.images {
        Pixels::U8(_) if common::accepts_pixels(&model, model.graph_inputs()[0]) => Feed::Pixels,
        Pixels::U8(_) => Feed::Unit,
        Pixels::F32(_) => Feed::Float,
    };
    let plan = Plan { count, rss_every, warmup, slack_kib, page_kib, progress };
    let rep = soak(&model, kernels, &ds, &map, feed, &plan).map_err(|e| match e {
        CliError::Failed(m) => CliError::failed(format!("{path}: soak failed: {m}")),
        other => other,
    })?;
    let acc = percent(rep.first_pass_correct, rep.first_pass_count);
    let per_s = rep.runs as f64 / rep.secs.max(1e-9);
    let baseline_after = rep.images.div_ceil(map.batch) as u64 + warmup;
    if json {
        return common::print_json(&SoakJson {
            model: path,
            data: &ds.source,
            images: rep.images,
            runs: rep.runs,
            seconds: rep.secs,
            runs_per_s: per_s,
            kernels: kernels.level.name(),
            first_pass_accuracy: acc,
            first_pass_correct: rep.first_pass_correct,
            first_pass_count: rep.first_pass_count,
            mismatches: 0,
            rss_kib: RssJson {
                samples: rep.rss_samples,
                min: rep.rss_min,
                baseline: rep.rss_baseline,
                baseline_after_run: baseline_after,
                max_after_warmup: rep.rss_max_after,
                max: rep.rss_max,
            },
        });
    }
    println!("model       {} ({path}), kernels {}", if model.name().is_empty() { "(unnamed)" } else { model.name() }, kernels.level);
    println!("data        {}: {} images, fed as {}", ds.source, rep.images, feed.describe());
    println!("runs        {} in {:.1} s ({per_s:.0} runs/s); every output identical to the first pass", rep.runs, rep.secs);
    println!("first pass  top-1 accuracy {} ({}/{})", fmt_percent(acc), rep.first_pass_correct, rep.first_pass_count);
    println!(
        "RSS         {} samples: min {} KiB, baseline {} KiB (after run {baseline_after}), max after warm-up {} KiB, max {} KiB",
        rep.rss_samples, rep.rss_min, rep.rss_baseline, rep.rss_max_after, rep.rss_max
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_statm_and_auxv() {
        assert_eq!(parse_statm_resident(b"5120 1234 300 10 0 900 0\n"), Some(1234));
        assert_eq!(parse_statm_resident(b"5120"), None);
        let mut aux = Vec::new();
        for (k, v) in [(3u64, 0x40u64), (6, 4096), (0, 0)] {
            aux.extend_from_slice(&k.to_ne_bytes());
            aux.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(parse_auxv_pagesz(&aux, 8), Some(4096));
        let mut aux32 = Vec::new();
        for (k, v) in [(6u32, 65536u32), (0, 0)] {
            aux32.extend_from_slice(&k.to_ne_bytes());
            aux32.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(parse_auxv_pagesz(&aux32, 4), Some(65536));
        assert_eq!(parse_auxv_pagesz(&aux32[..4], 4), None);
    }

    #[test]
    fn reads_this_process() {
        let page = page_kib().expect("page size");
        assert!(page >= 4, "{page}");
        assert!(rss_kib(page).expect("statm") > 0);
    }
}
