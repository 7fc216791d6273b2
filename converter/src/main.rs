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
  temper inspect MODEL.onnx [--input-shape [NAME=]DIMS ...]
  temper train (--model S.onnx | --arch small-cnn) --out OUT.onnx [options]     (temper train --help)
  temper distill --teacher T.onnx --student S.onnx --out OUT.onnx [options]     (temper distill --help)
  temper pipeline --teacher T.onnx --student S.onnx -o OUT.tmf [options]        (temper pipeline --help)
  temper qat --model S.onnx -o OUT.tmf [options]                                 (temper qat --help)

quantize options:
  --calib SPEC          calibration data (default: the --val data; with neither, the
                        Fashion-MNIST demo: fashion-mnist:train)
  --val SPEC            validation data for the gate and observer choice (default: the --calib
                        data, said on stderr; with neither, fashion-mnist:val)
  --test SPEC           extra data to report accuracy on (optional; never used for choices)
  --calib-size N        calibration images (default 2000)
  --observer LIST       minmax | ema | percentile[:P] | mse | kl | all, comma-separated (default all);
                        the observer with the best validation accuracy is kept
  --no-bias-correction  disable bias correction
  --ocs RATIO           outlier channel splitting: duplicate up to RATIO of each layer's input
                        channels whose weights dominate a row (e.g. 0.05; default 0 = off)
  --ocs-threshold X     a channel dominates a row when its max |w| is X times any other's (default 2)
  --mean M[,M..]        normalization mean per channel of u8 image data (default 0; 0.2860 for
                        fashion-mnist:* data). f32 data (NPY/NPZ) is taken as given: no flag
                        changes it
  --std S[,S..]         normalization std per channel of u8 image data (default 1; 0.3530 for
                        fashion-mnist:* data)
  --pixel-scale X       u8 pixel scale before mean/std (default 1/255)
  --input-shape [NAME=]DIMS  fix the shape of a graph input with dynamic dims, e.g.
                        input=1,3,48,192 (repeat per input; without NAME= the first input);
                        checked against the dims the model declares (batch 1 is used on device)
  --max-drop P          fail if INT8 top-1 is more than P points below FP32 (default 1.0)
  --min-accuracy A      fail if INT8 top-1 is below A percent
  --threads T           evaluation threads (default: all cores)
  --labels NAMES        comma-separated class names stored in the file
  --sensitivity-samples N  validation images for the one-layer-at-a-time ranking (default 1000; 0 = off)
  --report PATH         JSON report path (default OUT.report.json; an SVG chart goes beside it)
  --task classify|detect  detect: a GFL/DFL detector gated on mAP (temper quantize --task detect --help)

Data SPECs: fashion-mnist:{train,val,test}, idx:IMAGES,LABELS, npy:IMAGES.npy,LABELS.npy,
npz:FILE, or an image folder (one sub-folder per class); append :N to take the first N.
NPY/NPZ/IDX data may have any shape [N, ...]: one sample must have the model input's shape
after its batch dimension (axes of size 1 aside), e.g. [N, 64] for a [1, 64] input or
[N, 3, 128] for a [1, 3, 128] input; otherwise the error names both shapes.

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
    if cmd == "quantize" {
        if let Some(t) = args.windows(2).find(|w| w[0] == "--task").map(|w| w[1].as_str()) {
            match t {
                "detect" => {
                    let ok = temper_converter::detect::cli::run(&args[1..])?;
                    return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) });
                }
                "classify" => {}
                other => return Err(format!("--task {other}: expected classify or detect")),
            }
        }
    }
    if cmd == "qat" {
        let ok = temper_converter::train::qat::run_cli(&args[1..])?;
        return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    let mut positional = Vec::new();
    let mut opts = std::collections::HashMap::new();
    let mut flags = std::collections::HashSet::new();
    let mut shape_args: Vec<String> = Vec::new();
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
            if k == "input-shape" {
                shape_args.push(v.clone());
            }
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
        "task",
        "o",
        "output",
    ];
    if let Some(k) = opts.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!("unknown option --{k} (see temper --help)"));
    }
    let input_shapes = onnx::InputShapes::parse(&shape_args)?;
    let model_path = PathBuf::from(positional.first().ok_or("missing MODEL.onnx")?);
    let mut g = onnx::load_onnx_with(&model_path, &input_shapes).map_err(|e| e.to_string())?;
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
            // The Fashion-MNIST demo runs with no data flags; given one set, the other defaults to it.
            let (calib_spec, val_spec) = match (opts.get("calib"), opts.get("val")) {
                (None, None) => ("fashion-mnist:train".to_string(), "fashion-mnist:val".to_string()),
                (Some(c), Some(v)) => (c.clone(), v.clone()),
                (Some(c), None) => {
                    eprintln!("note: no --val given: the gate and the observer choice use the calibration data {c}");
                    (c.clone(), c.clone())
                }
                (None, Some(v)) => {
                    eprintln!("note: no --calib given: calibrating on the validation data {v}");
                    (v.clone(), v.clone())
                }
            };
            let dflt = Normalize::default_for(&calib_spec);
            let mean = opts.get("mean").map(|s| floats(s, "--mean")).transpose()?.unwrap_or(dflt.mean);
            let std = opts.get("std").map(|s| floats(s, "--std")).transpose()?.unwrap_or(dflt.std);
            let pixel_scale = opts.get("pixel-scale").map(|s| floats(s, "--pixel-scale")).transpose()?.map_or(dflt.scale, |v| v[0]);
            let num = |k: &str| -> Result<Option<f64>, String> {
                opts.get(k).map(|v| v.parse::<f64>().map_err(|_| format!("--{k}: '{v}' is not a number"))).transpose()
            };
            let calib = load_dataset(&calib_spec).map_err(|e| e.to_string())?;
            let val = if val_spec == calib_spec { calib.clone() } else { load_dataset(&val_spec).map_err(|e| e.to_string())? };
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
                temper_converter::ptq::check_dataset(&g, &test, "test", true)?;
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
