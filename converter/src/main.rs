//! `temper`: the converter command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use temper_converter::ptq::{quantize, PtqConfig};
use temper_converter::quant::Observer;
use temper_converter::{onnx, passes};
use temper_data::{load_dataset, Normalize};

const USAGE: &str = "temper — compress FP32 ONNX models into validated INT8 .tmf files

USAGE:
  temper quantize MODEL.onnx -o OUT.tmf [options]
  temper inspect MODEL.onnx [--input-shape N,C,H,W]
  temper train (--model S.onnx | --arch small-cnn) --out OUT.onnx [options]     (temper train --help)
  temper distill --teacher T.onnx --student S.onnx --out OUT.onnx [options]     (temper distill --help)
  temper pipeline --teacher T.onnx --student S.onnx -o OUT.tmf [options]        (temper pipeline --help)
  temper qat --model S.onnx -o OUT.tmf [options]                                 (temper qat --help)

quantize options:
  --calib SPEC          calibration data (default fashion-mnist:train)
  --val SPEC            validation data for the gate and observer choice (default fashion-mnist:val)
  --test SPEC           extra data to report accuracy on (optional; never used for choices)
  --calib-size N        calibration images (default 2000)
  --observer LIST       minmax | ema | percentile[:P] | mse | kl | all, comma-separated (default all);
                        the observer with the best validation accuracy is kept
  --no-bias-correction  disable bias correction
  --ocs RATIO           outlier channel splitting: duplicate up to RATIO of each layer's input
                        channels whose weights dominate a row (e.g. 0.05; default 0 = off)
  --ocs-threshold X     a channel dominates a row when its max |w| is X times any other's (default 2)
  --mean M[,M..]        input normalization mean per channel (default 0.2860, Fashion-MNIST)
  --std S[,S..]         input normalization std per channel (default 0.3530)
  --pixel-scale X       pixel scale before mean/std (default 1/255)
  --input-shape DIMS    fix a dynamic input shape, e.g. 1,3,48,192 (batch 1 is used on device)
  --max-drop P          fail if INT8 top-1 is more than P points below FP32 (default 1.0)
  --min-accuracy A      fail if INT8 top-1 is below A percent
  --threads T           evaluation threads (default: all cores)
  --labels NAMES        comma-separated class names stored in the file
  --sensitivity-samples N  validation images for the one-layer-at-a-time ranking (default 1000; 0 = off)
  --report PATH         JSON report path (default OUT.report.json; an SVG chart goes beside it)

Data SPECs: fashion-mnist:{train,val,test}, idx:IMAGES,LABELS, npy:IMAGES.npy,LABELS.npy,
npz:FILE, or an image folder (one sub-folder per class); append :N to take the first N.

Outputs are written to a temporary file and renamed only when everything succeeded: a failed
gate writes no model (the report is still written) and never overwrites an earlier model.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn floats(s: &str, what: &str) -> Result<Vec<f32>, String> {
    s.split(',').map(|v| v.trim().parse::<f32>().map_err(|_| format!("{what}: '{v}' is not a number"))).collect()
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let Some(cmd) = args.first() else {
        println!("{USAGE}");
        return Ok(ExitCode::from(2));
    };
    if cmd == "--help" || cmd == "-h" || cmd == "help" {
        println!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    if cmd == "train" || cmd == "distill" {
        return train_command(cmd, &args[1..]);
    }
    if cmd == "pipeline" {
        let passed = temper_converter::pipeline::cli(&args[1..])?;
        return Ok(if passed { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    if cmd == "qat" {
        let ok = temper_converter::train::qat::run_cli(&args[1..])?;
        return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    let mut positional = Vec::new();
    let mut opts = std::collections::HashMap::new();
    let mut flags = std::collections::HashSet::new();
    let mut i = 1;
    while i < args.len() {
        let a = &args[i];
        if a == "--help" || a == "-h" {
            println!("{USAGE}");
            return Ok(ExitCode::SUCCESS);
        }
        if a == "--no-bias-correction" {
            flags.insert(a.clone());
        } else if let Some(k) = a.strip_prefix("--").or(if a == "-o" { Some("o") } else { None }) {
            let v = args.get(i + 1).ok_or_else(|| format!("option --{k} needs a value"))?;
            opts.insert(k.to_string(), v.clone());
            i += 1;
        } else {
            positional.push(a.clone());
        }
        i += 1;
    }
    let known = [
        "calib",
        "val",
        "test",
        "calib-size",
        "observer",
        "mean",
        "std",
        "pixel-scale",
        "input-shape",
        "max-drop",
        "min-accuracy",
        "threads",
        "labels",
        "sensitivity-samples",
        "ocs",
        "ocs-threshold",
        "report",
        "o",
        "output",
    ];
    if let Some(k) = opts.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!("unknown option --{k} (see temper --help)"));
    }
    let input_shape: Option<Vec<usize>> = match opts.get("input-shape") {
        Some(s) => Some(
            s.split(',')
                .map(|v| v.trim().parse::<usize>().map_err(|_| format!("--input-shape: '{v}' is not a size")))
                .collect::<Result<_, _>>()?,
        ),
        None => None,
    };
    let model_path = PathBuf::from(positional.first().ok_or("missing MODEL.onnx")?);
    let mut g = onnx::load_onnx(&model_path, input_shape.as_deref()).map_err(|e| e.to_string())?;
    passes::optimize(&mut g).map_err(|e| format!("{}: {e}", model_path.display()))?;
    let ocs: f32 = match opts.get("ocs") {
        Some(v) => {
            v.parse().ok().filter(|r: &f32| (0.0..=1.0).contains(r)).ok_or_else(|| format!("--ocs: '{v}' is not a ratio in [0, 1]"))?
        }
        None => 0.0,
    };
    if ocs > 0.0 {
        let th: f32 = opts
            .get("ocs-threshold")
            .map(|v| v.parse().map_err(|_| format!("--ocs-threshold: '{v}' is not a number")))
            .transpose()?
            .unwrap_or(2.0);
        let splits = temper_converter::quant::ocs::split_outlier_channels(&mut g, ocs, th);
        eprintln!("outlier channel splitting: {} channels split", splits.len());
        for s in &splits {
            eprintln!("  {}: input channel {}", s.layer, s.channel);
        }
    }
    match cmd.as_str() {
        "inspect" => {
            print!("{g}");
            Ok(ExitCode::SUCCESS)
        }
        "quantize" => {
            let out = PathBuf::from(opts.get("o").or(opts.get("output")).ok_or("missing -o OUT.tmf")?);
            let report_path = opts.get("report").map(PathBuf::from).unwrap_or_else(|| out.with_extension("report.json"));
            let svg = report_path.with_extension("svg");
            let mut inputs: Vec<&Path> = vec![model_path.as_path()];
            let spec_files: Vec<PathBuf> =
                ["calib", "val", "test"].iter().filter_map(|k| opts.get(*k)).flat_map(|s| spec_paths(s)).collect();
            inputs.extend(spec_files.iter().map(PathBuf::as_path));
            temper_data::fsout::check_outputs(&inputs, &[out.as_path(), report_path.as_path(), svg.as_path()])
                .map_err(|e| e.to_string())?;
            // Held until exit: a concurrent run on the same -o fails here (temper_data::commit).
            let lock = temper_data::commit::OutputLock::acquire(&out).map_err(|e| e.to_string())?;
            lock.notes().iter().for_each(|n| eprintln!("{n}"));
            let observers: Vec<Observer> = match opts.get("observer").map(|s| s.as_str()).unwrap_or("all") {
                "all" => Observer::ALL.to_vec(),
                list => list
                    .split(',')
                    .map(|o| Observer::parse(o).ok_or_else(|| format!("unknown observer '{o}'")))
                    .collect::<Result<_, _>>()?,
            };
            let mean = floats(opts.get("mean").map(|s| s.as_str()).unwrap_or("0.2860"), "--mean")?;
            let std = floats(opts.get("std").map(|s| s.as_str()).unwrap_or("0.3530"), "--std")?;
            let pixel_scale = floats(opts.get("pixel-scale").map(|s| s.as_str()).unwrap_or("0.00392156862745098"), "--pixel-scale")?[0];
            let num = |k: &str| -> Result<Option<f64>, String> {
                opts.get(k).map(|v| v.parse::<f64>().map_err(|_| format!("--{k}: '{v}' is not a number"))).transpose()
            };
            let calib = load_dataset(opts.get("calib").map(|s| s.as_str()).unwrap_or("fashion-mnist:train")).map_err(|e| e.to_string())?;
            let val = load_dataset(opts.get("val").map(|s| s.as_str()).unwrap_or("fashion-mnist:val")).map_err(|e| e.to_string())?;
            let threads =
                num("threads")?.map(|v| v as usize).unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
            let sha = sha_hint(&model_path);
            let mut metadata = vec![
                ("name".to_string(), g.name.clone()),
                ("converter.version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                ("source.model".to_string(), model_path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()),
                ("source.fnv64".to_string(), sha),
            ];
            let labels = opts.get("labels").cloned().or_else(|| (!val.class_names.is_empty()).then(|| val.class_names.join(",")));
            if let Some(l) = labels {
                metadata.push(("labels".into(), l));
            }
            let cfg = PtqConfig {
                observers,
                calib_size: num("calib-size")?.map(|v| v as usize).unwrap_or(2000),
                bias_correction: !flags.contains("--no-bias-correction"),
                norm: Normalize::new(mean, std, pixel_scale),
                max_drop: Some(num("max-drop")?.unwrap_or(1.0)),
                min_accuracy: num("min-accuracy")?,
                threads,
                layer_samples: 64,
                sensitivity_samples: num("sensitivity-samples")?.map(|v| v as usize).unwrap_or(1000),
                metadata,
            };
            let outcome = quantize(&g, &calib, &val, &cfg)?;
            let mut report = outcome.report;
            if let Some(test) = opts.get("test") {
                let test = load_dataset(test).map_err(|e| e.to_string())?;
                let fp = temper_converter::eval::fp32_accuracy(&g, &test, &cfg.norm).map_err(|e| e.to_string())?;
                let (q, _) = temper_converter::eval::int8_run(&outcome.bytes, &test, &cfg.norm, cfg.threads).map_err(|e| e.to_string())?;
                println!(
                    "test set ({} images): FP32 {:.2}%  INT8 {:.2}% (emitted file through temper-runtime)",
                    test.len(),
                    fp.top1,
                    q.top1
                );
            }
            report.seconds = report.seconds.max(0.0);
            print!("{}", report.to_table());
            // One commit for the model and its reports (the model only when the gate passed).
            let (json, svg_text) = (report.to_json(), report.to_svg());
            let mut files: Vec<(&Path, &[u8])> = vec![(report_path.as_path(), json.as_bytes()), (svg.as_path(), svg_text.as_bytes())];
            if outcome.passed {
                files.insert(0, (out.as_path(), &outcome.bytes));
            }
            lock.commit(&files).map_err(|e| e.to_string())?;
            if !outcome.passed {
                eprintln!("accuracy gate failed: {} not written (report: {})", out.display(), report_path.display());
                return Ok(ExitCode::from(1));
            }
            println!("wrote {} ({} bytes), report {}", out.display(), outcome.bytes.len(), report_path.display());
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("unknown command '{other}' (see temper --help)")),
    }
}

/// The files a dataset spec names (`npy:A,B`, `idx:A,B`, `npz:F`, `dir:D`), for the
/// output checks; other specs name none.
fn spec_paths(spec: &str) -> Vec<PathBuf> {
    match spec.split_once(':') {
        Some(("npy" | "idx" | "npz" | "dir", rest)) => rest.split(',').map(|p| PathBuf::from(p.trim())).collect(),
        _ => Vec::new(),
    }
}

/// A short content fingerprint (FNV-1a 64) of the source model, for provenance.
fn sha_hint(p: &Path) -> String {
    let bytes = temper_data::fsread::read_input(p, temper_converter::onnx::ONNX_FILE_MAX, "an ONNX model may have").unwrap_or_default();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// `temper train` / `temper distill`: the training engine's command line (see
/// `temper_converter::train::cli`).
fn train_command(cmd: &str, args: &[String]) -> Result<ExitCode, String> {
    temper_converter::train::cli::run(cmd, args)?;
    Ok(ExitCode::SUCCESS)
}
