//! `temper quantize --task detect`: the command line of [`super::flow::quantize_detect`].

use super::flow::{quantize_detect, DetectPtqConfig};
use super::head::HeadConfig;
use crate::onnx;
use crate::passes;
use crate::ptq::write_atomic;
use crate::quant::Observer;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use temper_data::detect::{DetFormat, DetLoadOptions, Geometry};
use temper_data::{load_detection, ColorMode, Normalize};

/// Usage of `temper quantize --task detect`.
pub const USAGE: &str = "temper quantize --task detect MODEL.onnx --head HEAD.json -o OUT.tmf --calib SPEC --val SPEC [options]

Quantizes an anchor-free GFL/DFL detector (PicoDet, PP-YOLOE, YOLOv8 style): the head outputs
named by HEAD.json feed a DetectPostprocess op appended to the .tmf (score threshold on int8
scores, DFL decode, NMS on the device); the file's output is the detections record.

  --head PATH           head config (JSON): num_classes, reg_max, score (logits|probabilities),
                        levels [{stride, scores, boxes}], score_threshold, iou_threshold, top_k,
                        max_det, class_aware
  --calib SPEC          calibration images: coco:ANN.json[:IMAGES] | yolo:IMAGES:LABELS:CLASSES.txt |
                        voc:ANNOTATIONS:IMAGES[:CLASSES.txt]
  --val SPEC            validation images with boxes (the gate and observer choice)
  --geometry G          letterbox:HxW[:pad=N] (default, pad 114) or resize:HxW; must be the model
                        input size; recorded in the file (detect.geometry)
  --calib-size N        calibration images (default 500)
  --observer LIST       minmax | ema | percentile[:P] | mse | kl | all (default minmax,percentile)
  --mean M[,M..] --std S[,S..] --pixel-scale X   input normalization (default 0 / 1 / 1/255)
  --input-shape DIMS    fix a dynamic input shape, e.g. 1,3,320,320
  --max-drop P          fail if INT8 mAP@0.5 is more than P points below FP32 (default 1.0)
  --min-map M           fail if INT8 mAP@0.5 is below M points
  --threads T           evaluation threads
  --no-bias-correction  disable bias correction
  --report PATH         JSON report (default OUT.report.json)

A failed gate writes the report but no model; a bad config or dataset writes nothing.";

fn floats(s: &str, what: &str) -> Result<Vec<f32>, String> {
    s.split(',').map(|v| v.trim().parse::<f32>().map_err(|_| format!("{what}: '{v}' is not a number"))).collect()
}

/// The files a detection spec names (for the output checks).
fn spec_files(spec: &str) -> Vec<PathBuf> {
    match DetFormat::parse(spec) {
        Ok(DetFormat::Coco { json, .. }) => vec![json],
        Ok(DetFormat::Yolo { classes, .. }) => vec![classes],
        Ok(DetFormat::Voc { classes, .. }) => classes.into_iter().collect(),
        Err(_) => Vec::new(),
    }
}

/// Runs the command (`args` after `quantize`); `Ok(true)` when the gate passed and the model
/// was written, `Ok(false)` when the gate failed.
pub fn run(args: &[String]) -> Result<bool, String> {
    let mut positional = Vec::new();
    let mut opts = HashMap::new();
    let mut no_bias = false;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--help" || a == "-h" {
            println!("{USAGE}");
            return Ok(true);
        }
        if a == "--no-bias-correction" {
            no_bias = true;
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
        "task",
        "head",
        "calib",
        "val",
        "geometry",
        "calib-size",
        "observer",
        "mean",
        "std",
        "pixel-scale",
        "input-shape",
        "max-drop",
        "min-map",
        "threads",
        "report",
        "o",
        "output",
    ];
    if let Some(k) = opts.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!("unknown option --{k} for --task detect (see temper quantize --task detect --help)"));
    }
    let get = |k: &str| opts.get(k).map(String::as_str);
    let need = |k: &str| get(k).ok_or_else(|| format!("--task detect needs --{k}"));
    let model_path = PathBuf::from(positional.first().ok_or("missing MODEL.onnx")?);
    let out = PathBuf::from(get("o").or(get("output")).ok_or("missing -o OUT.tmf")?);
    let head_path = PathBuf::from(need("head")?);
    let (calib_spec, val_spec) = (need("calib")?, need("val")?);
    let report_path = get("report").map(PathBuf::from).unwrap_or_else(|| out.with_extension("report.json"));
    let mut inputs: Vec<PathBuf> = vec![model_path.clone(), head_path.clone()];
    inputs.extend(spec_files(calib_spec));
    inputs.extend(spec_files(val_spec));
    let in_refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    temper_data::fsout::check_outputs(&in_refs, &[out.as_path(), report_path.as_path()]).map_err(|e| e.to_string())?;
    let head = HeadConfig::load(&head_path)?;
    let input_shape: Option<Vec<usize>> = get("input-shape")
        .map(|s| s.split(',').map(|v| v.trim().parse::<usize>().map_err(|_| format!("--input-shape: '{v}' is not a size"))).collect())
        .transpose()?;
    let mut g = onnx::load_onnx(&model_path, input_shape.as_deref()).map_err(|e| e.to_string())?;
    passes::optimize(&mut g).map_err(|e| format!("{}: {e}", model_path.display()))?;
    let ishape = g.input_shape_for(1);
    if ishape.len() != 4 {
        return Err(format!("{}: the model input is {ishape:?}, a detector takes [1, C, H, W]", model_path.display()));
    }
    let geometry = match get("geometry") {
        Some(s) => Geometry::parse(s).map_err(|e| e.to_string())?,
        None => Geometry::parse(&format!("letterbox:{}x{}", ishape[2], ishape[3])).map_err(|e| e.to_string())?,
    };
    if (geometry.height, geometry.width) != (ishape[2], ishape[3]) {
        return Err(format!("--geometry {} does not give the model input size {}x{}", geometry.spec(), ishape[2], ishape[3]));
    }
    let color = if ishape[1] == 1 { ColorMode::Gray } else { ColorMode::Rgb };
    let lo = DetLoadOptions { geometry: Some(geometry), color };
    let calib = load_detection(calib_spec, &lo).map_err(|e| e.to_string())?;
    let val = load_detection(val_spec, &lo).map_err(|e| e.to_string())?;
    let c = ishape[1];
    let mean = floats(get("mean").unwrap_or(&vec!["0"; c].join(",")), "--mean")?;
    let std = floats(get("std").unwrap_or(&vec!["1"; c].join(",")), "--std")?;
    let pixel_scale = floats(get("pixel-scale").unwrap_or("0.00392156862745098"), "--pixel-scale")?[0];
    if mean.len() != c || std.len() != c || std.iter().any(|&s| s == 0.0 || !s.is_finite()) {
        return Err(format!("--mean and --std need {c} numbers each (std non-zero)"));
    }
    let num = |k: &str| -> Result<Option<f64>, String> {
        get(k).map(|v| v.parse::<f64>().map_err(|_| format!("--{k}: '{v}' is not a number"))).transpose()
    };
    let observers: Vec<Observer> = match get("observer").unwrap_or("minmax,percentile") {
        "all" => Observer::ALL.to_vec(),
        list => list.split(',').map(|o| Observer::parse(o).ok_or_else(|| format!("unknown observer '{o}'"))).collect::<Result<_, _>>()?,
    };
    let threads = num("threads")?.map(|v| v as usize).unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let metadata = vec![
        ("name".to_string(), g.name.clone()),
        ("converter.version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        ("source.model".to_string(), model_path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()),
        ("labels".to_string(), val.classes.join(",")),
    ];
    let pc = DetectPtqConfig {
        observers,
        calib_size: num("calib-size")?.map(|v| v as usize).unwrap_or(500),
        bias_correction: !no_bias,
        norm: Normalize::new(mean, std, pixel_scale),
        geometry,
        max_drop: Some(num("max-drop")?.unwrap_or(1.0)),
        min_map: num("min-map")?,
        threads,
        metadata,
    };
    let outcome = quantize_detect(&g, &head, &calib, &val, &pc)?;
    print!("{}", outcome.report.to_table());
    write_atomic(&report_path, outcome.report.to_json().as_bytes()).map_err(|e| format!("{}: {e}", report_path.display()))?;
    if !outcome.passed {
        eprintln!("mAP gate failed: {} not written (report: {})", out.display(), report_path.display());
        return Ok(false);
    }
    write_atomic(&out, &outcome.bytes).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("wrote {} ({} bytes), report {}", out.display(), outcome.bytes.len(), report_path.display());
    Ok(true)
}
