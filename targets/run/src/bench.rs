//! `temper-run bench`: load time, latency distribution, throughput and peak memory.

use crate::args::{self, Opt};
use crate::common::{self, Arena, XorShift};
use crate::{CliError, CliResult};
use serde::Serialize;
use std::time::Instant;
use temper_kernels::Features;
use temper_runtime::Session;

const HELP: &str = "\
temper-run bench: measure a model

Usage: temper-run bench MODEL.tmf [OPTIONS]

Options:
  --runs N          timed runs (default 100)
  --warmup W        untimed warm-up runs first (default 10)
  --kernels LEVEL   force a kernel path (scalar, avx2, avxvnni, avx512vnni, neon, dotprod, i8mm);
                    default: the best for this CPU, capped by TEMPER_KERNELS
  --json            print the result as one JSON object (with --per-op: every op's time too)
  --per-op          also time every op alone (median µs over the runs, share of the sum)
  --threads T       threads per inference (Session::with_threads; default 1): large layers are
                    split into bands of output rows; outputs are identical for every T
  --split-min M     with --threads: split layers only into parts of at least M multiply-
                    accumulates (default: the runtime's MIN_WORK_PER_PART); tune per machine
  --mmap            map the model (zero copy) instead of reading a private copy; only for
                    files nobody modifies meanwhile (truncating a mapped file gives SIGBUS)
  -h, --help        this help

Reports the model load time (map + full validation including checksums), the latency of
Session::run over N runs on a deterministic pseudo-random int8 input (median, p90, min, mean,
max, in µs), the throughput (inferences/s and items/s for the input's batch size), the peak
resident memory of the process (VmHWM from /proc/self/status) and the kernel path.
";

/// Latency statistics in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stats {
    /// Median.
    pub median: f64,
    /// 90th percentile (nearest rank).
    pub p90: f64,
    /// Fastest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Slowest.
    pub max: f64,
}

/// Statistics of samples (`None` when empty).
pub fn stats(samples: &[f64]) -> Option<Stats> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    let rank = (0.9 * n as f64).ceil() as usize;
    let p90 = v[rank.clamp(1, n) - 1];
    Some(Stats { median, p90, min: v[0], mean: v.iter().sum::<f64>() / n as f64, max: v[n - 1] })
}

/// Peak resident set size of this process in KiB (`VmHWM`), where `/proc` exists.
pub fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vmhwm(&s)
}

fn parse_vmhwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line["VmHWM:".len()..].split_whitespace().next()?.parse().ok()
}

/// `bench --json`.
#[derive(Debug, Serialize)]
struct BenchJson<'a> {
    model: &'a str,
    name: &'a str,
    file_bytes: usize,
    arena_bytes: usize,
    load_us: f64,
    warmup: usize,
    runs: usize,
    latency_us: Stats,
    inferences_per_s: f64,
    items_per_s: f64,
    peak_rss_kib: Option<u64>,
    kernels: &'static str,
    features: String,
    threads: usize,
    /// With `--per-op`: every op's median time (empty otherwise).
    per_op: Vec<OpTime>,
}

/// One op's time in `bench --per-op`.
#[derive(Debug, Serialize)]
struct OpTime {
    index: usize,
    op: String,
    name: String,
    input_shape: Vec<u32>,
    output_shape: Vec<u32>,
    median_us: f64,
    share_percent: f64,
}

/// Entry point of `bench`.
pub fn main(argv: &[String]) -> CliResult {
    const OPTS: &[Opt] = &[
        Opt::flag("mmap"),
        Opt::value("runs"),
        Opt::value("warmup"),
        Opt::value("kernels"),
        Opt::flag("json"),
        Opt::flag("per-op"),
        Opt::value("threads"),
        Opt::value("split-min"),
    ];
    let p = args::parse("bench", argv, OPTS)?;
    if p.help {
        print!("{HELP}");
        return Ok(());
    }
    let path = p.model_path()?;
    let runs: usize = p.number("runs", 100, 1)?;
    let warmup: usize = p.number("warmup", 10, 0)?;
    let json = p.flag("json");
    let kernels = common::select_kernels("bench", p.get("kernels"))?;
    let threads: usize = p.number("threads", 1, 1)?;
    let split_min: usize = p.number("split-min", temper_runtime::threads::MIN_WORK_PER_PART, 1)?;

    let t0 = Instant::now();
    let file = common::open_model(path, p.flag("mmap"))?;
    let model = common::view(&file, path)?;
    let load_us = t0.elapsed().as_secs_f64() * 1e6;

    let mut arena = Arena::new(model.arena_size());
    let mut s = Session::with_kernels(&model, arena.bytes(), kernels)
        .and_then(|s| s.with_threads(threads))
        .map_err(|e| CliError::failed(format!("{path}: {e}")))?;
    s.set_min_work_per_part(split_min);
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for (i, &id) in model.graph_inputs().iter().enumerate() {
        let data: Vec<i8> = (0..model.tensor(id).numel()).map(|_| (rng.next_u64() >> 56) as u8 as i8).collect();
        s.set_input_i8(i, &data).map_err(|e| CliError::failed(format!("{path}: {e}")))?;
    }
    let fail = |e: temper_runtime::RunError| CliError::failed(format!("{path}: {e}"));
    for _ in 0..warmup {
        s.run().map_err(fail)?;
    }
    let mut lat = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        s.run().map_err(fail)?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let st = stats(&lat).ok_or_else(|| CliError::failed("no runs"))?;
    let mut per_op = Vec::new();
    if p.flag("per-op") {
        let n_ops = model.op_count();
        let mut per = vec![Vec::with_capacity(runs); n_ops];
        for _ in 0..runs {
            for (i, v) in per.iter_mut().enumerate() {
                let t = Instant::now();
                s.run_single(i);
                v.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        let med: Vec<f64> = per.iter().map(|v| stats(v).map_or(0.0, |s| s.median)).collect();
        let total: f64 = med.iter().sum();
        per_op = med
            .iter()
            .enumerate()
            .map(|(i, &m)| {
                let op = model.op(i);
                OpTime {
                    index: i,
                    op: format!("{:?}", op.code),
                    name: op.name.to_string(),
                    input_shape: model.tensor(op.inputs[0]).dims.to_vec(),
                    output_shape: model.tensor(op.outputs[0]).dims.to_vec(),
                    median_us: m,
                    share_percent: 100.0 * m / total.max(1e-9),
                }
            })
            .collect();
        if !json {
            println!("per op (median µs, {runs} runs; sum {total:.1} µs)");
            for t in &per_op {
                println!(
                    "  {:3} {:<15} {:<24} {:>22} -> {:<22} {:9.2} {:5.1} %",
                    t.index,
                    t.op,
                    t.name,
                    format!("{:?}", t.input_shape),
                    format!("{:?}", t.output_shape),
                    t.median_us,
                    t.share_percent
                );
            }
        }
    }
    let batch = model.graph_inputs().first().and_then(|&id| model.tensor(id).dims.first().copied()).unwrap_or(1).max(1) as f64;
    let per_s = if st.mean > 0.0 { 1e6 / st.mean } else { f64::INFINITY };
    let rss = peak_rss_kib();
    let name = if model.name().is_empty() { "(unnamed)" } else { model.name() };
    if json {
        return common::print_json(&BenchJson {
            model: path,
            name: model.name(),
            file_bytes: model.bytes().len(),
            arena_bytes: model.arena_size(),
            load_us,
            warmup,
            runs,
            latency_us: st,
            inferences_per_s: per_s,
            items_per_s: per_s * batch,
            peak_rss_kib: rss,
            kernels: kernels.level.name(),
            features: Features::cpu().to_string(),
            threads,
            per_op,
        });
    }
    println!("model       {name} ({path}, {} bytes, arena {} bytes)", model.bytes().len(), model.arena_size());
    println!("kernels     {} (CPU features: {}), {threads} thread{}", kernels.level, Features::cpu(), if threads == 1 { "" } else { "s" });
    println!("load        {load_us:.1} µs (map + validate + checksums)");
    println!("runs        {runs} timed after {warmup} warm-up");
    println!("latency     median {:.1} µs, p90 {:.1} µs (min {:.1}, mean {:.1}, max {:.1})", st.median, st.p90, st.min, st.mean, st.max);
    println!("throughput  {per_s:.1} inferences/s ({:.1} items/s at batch {batch})", per_s * batch);
    match rss {
        Some(k) => println!("peak RSS    {k} KiB"),
        None => println!("peak RSS    n/a (no /proc/self/status)"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_nearest_rank() {
        let s = stats(&[5.0, 1.0, 3.0, 2.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0]).unwrap();
        assert_eq!(s.median, 5.5);
        assert_eq!(s.p90, 9.0);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 10.0);
        assert_eq!(stats(&[3.0]).unwrap().p90, 3.0);
        assert!(stats(&[]).is_none());
    }

    #[test]
    fn parses_vmhwm() {
        assert_eq!(parse_vmhwm("Name:\tx\nVmHWM:\t    1234 kB\nVmRSS: 1 kB\n"), Some(1234));
        assert_eq!(parse_vmhwm("Name: x\n"), None);
    }
}
