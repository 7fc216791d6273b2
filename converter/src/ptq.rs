//! The `quantize` flow: import, FP32 evaluation, calibration, observer choice, INT8 evaluation
//! through the runtime, per-layer error, the accuracy gate, and atomic emission.

use crate::eval::{fp32_accuracy, int8_run, nchw_to_nhwc};
use crate::fp32;
use crate::ir::Graph;
use crate::quant::{lower, Calibration, LowerOptions, Observer, PixelNorm};
use crate::report::{LayerError, Report};
use std::path::Path;
use temper_data::{Dataset, Normalize};

/// Settings of one quantization run.
#[derive(Clone, Debug)]
pub struct PtqConfig {
    /// Observers to try; the best on the validation set is kept.
    pub observers: Vec<Observer>,
    /// Calibration images used.
    pub calib_size: usize,
    /// Bias correction on/off.
    pub bias_correction: bool,
    /// Input normalization (also folded into the file for raw u8 input).
    pub norm: Normalize,
    /// Maximum allowed top-1 drop in percentage points (INT8 vs FP32 on validation).
    pub max_drop: Option<f64>,
    /// Minimum INT8 top-1 accuracy in percent.
    pub min_accuracy: Option<f64>,
    /// Threads for evaluation.
    pub threads: usize,
    /// Images used for the per-layer error analysis.
    pub layer_samples: usize,
    /// Validation images used for the sensitivity ranking (0 = off).
    pub sensitivity_samples: usize,
    /// Metadata to store in the file.
    pub metadata: Vec<(String, String)>,
}

/// The outcome: the chosen file bytes (when the gate passes) and the report.
pub struct PtqOutcome {
    /// `.tmf` bytes of the chosen observer.
    pub bytes: Vec<u8>,
    /// The report (also when the gate fails).
    pub report: Report,
    /// Whether the gate passed.
    pub passed: bool,
}

fn progress(label: &str, done: usize, total: usize) {
    use std::io::Write;
    let width = 30;
    let filled = (done * width).checked_div(total).unwrap_or(width).min(width);
    eprint!("\r{label:<28} [{}{}] {done}/{total}", "#".repeat(filled), ".".repeat(width - filled));
    if done >= total {
        eprintln!();
    }
    let _ = std::io::stderr().flush();
}

/// Check, before any work, that `ds` (the `role` set: calibration, validation, test) fits `g`:
/// it has samples, each sample has the model input's shape (see [`crate::feed::check_fit`]; no
/// resizing is done) and, when `labels` is set, every label is one of the model's output
/// classes. The error names the dataset's source file(s) and the problem.
pub fn check_dataset(g: &Graph, ds: &Dataset, role: &str, labels: bool) -> Result<(), String> {
    if ds.is_empty() {
        return Err(format!("{}: the {role} set has no images", ds.source));
    }
    crate::feed::check_fit(g, ds, role)?;
    if labels {
        if let Some(&out) = g.outputs.first() {
            let classes = g.tensors[out].shape.last().copied().unwrap_or(0);
            if let Some((i, &l)) = ds.labels.iter().enumerate().find(|&(_, &l)| l as usize >= classes) {
                return Err(format!(
                    "{}: {role} label {l} at index {i} is not one of the model's {classes} classes (output '{}')",
                    ds.source, g.tensors[out].name
                ));
            }
        }
    }
    Ok(())
}

/// Run post-training quantization of `g` (already optimized).
pub fn quantize(g: &Graph, calib: &Dataset, val: &Dataset, cfg: &PtqConfig) -> Result<PtqOutcome, String> {
    let t0 = std::time::Instant::now();
    if cfg.calib_size == 0 {
        return Err("the calibration size is 0: at least one calibration image is needed (--calib-size)".into());
    }
    check_dataset(g, calib, "calibration", false)?;
    check_dataset(g, val, "validation", true)?;
    progress("FP32 evaluation", 0, val.len());
    let fp = fp32_accuracy(g, val, &cfg.norm).map_err(|e| e.to_string())?;
    progress("FP32 evaluation", val.len(), val.len());
    let calib = calib.take(cfg.calib_size.min(calib.len())).map_err(|e| e.to_string())?;
    let batches: Vec<fp32::Tensor> = calib
        .batches(64, &cfg.norm)
        .map(|b| crate::feed::batch_tensor(g, b.labels.len(), b.pixels))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    progress("calibration", 0, calib.len());
    let cal = Calibration::collect(g, &batches).map_err(|e| e.to_string())?;
    progress("calibration", calib.len(), calib.len());
    let pixel_norm = pixel_norm_for(g, &calib, &cfg.norm)?;
    let mut tried = Vec::new();
    let mut best: Option<(f64, Observer, Vec<u8>)> = None;
    for &obs in &cfg.observers {
        let mut meta = cfg.metadata.clone();
        meta.push(("calibration.observer".into(), obs.to_string()));
        meta.push(("calibration.samples".into(), cal.samples.to_string()));
        meta.push(("calibration.bias_correction".into(), cfg.bias_correction.to_string()));
        meta.push(("accuracy.fp32".into(), format!("{:.2}", fp.top1)));
        let opts = LowerOptions {
            observer: obs,
            bias_correction: cfg.bias_correction,
            pixel_norm: pixel_norm.clone(),
            metadata: meta,
            expose_all: false,
        };
        let lowered = lower(g, &cal, &opts).map_err(|e| e.to_string())?;
        progress(&format!("INT8 eval ({obs})"), 0, val.len());
        let (acc, _) = int8_run(&lowered.bytes, val, &cfg.norm, cfg.threads).map_err(|e| e.to_string())?;
        progress(&format!("INT8 eval ({obs})"), val.len(), val.len());
        tried.push((obs.to_string(), acc.top1));
        if best.as_ref().is_none_or(|b| acc.top1 > b.0) {
            best = Some((acc.top1, obs, lowered.bytes));
        }
    }
    let (int8_acc, obs, _) = best.ok_or("no observer given")?;
    // Final file: the chosen observer, with the measured INT8 accuracy in its metadata.
    let mut meta = cfg.metadata.clone();
    meta.push(("calibration.observer".into(), obs.to_string()));
    meta.push(("calibration.samples".into(), cal.samples.to_string()));
    meta.push(("calibration.bias_correction".into(), cfg.bias_correction.to_string()));
    meta.push(("accuracy.fp32".into(), format!("{:.2}", fp.top1)));
    meta.push(("accuracy.int8".into(), format!("{int8_acc:.2}")));
    let layers = layer_errors(g, &cal, obs, cfg, &calib)?;
    let sensitivity = if cfg.sensitivity_samples > 0 {
        progress("sensitivity ranking", 0, 1);
        let s = crate::quant::sensitivity::rank(g, &cal, obs, val, &cfg.norm, cfg.sensitivity_samples)?;
        progress("sensitivity ranking", 1, 1);
        s
    } else {
        Vec::new()
    };
    for l in &layers {
        meta.push((format!("layer_sqnr.{}", l.name), format!("{:.2}", l.sqnr_db)));
    }
    let opts = LowerOptions { observer: obs, bias_correction: cfg.bias_correction, pixel_norm, metadata: meta, expose_all: false };
    let bytes = lower(g, &cal, &opts).map_err(|e| e.to_string())?.bytes;
    // The file that ships is the one measured: re-evaluate it.
    let (acc, _) = int8_run(&bytes, val, &cfg.norm, cfg.threads).map_err(|e| e.to_string())?;
    let agree = fp.predictions.iter().zip(&acc.predictions).filter(|(a, b)| a == b).count() as f64 * 100.0 / val.len().max(1) as f64;
    let failures = gate_failures(cfg.max_drop, cfg.min_accuracy, fp.top1, acc.top1);
    let report = Report {
        model: g.name.clone(),
        fp32_accuracy: fp.top1,
        int8_accuracy: acc.top1,
        agreement: agree,
        observer: obs.to_string(),
        observers_tried: tried,
        calib_samples: cal.samples,
        val_samples: val.len(),
        size_bytes: bytes.len(),
        layers,
        sensitivity,
        gate_failures: failures.clone(),
        seconds: t0.elapsed().as_secs_f64(),
    };
    Ok(PtqOutcome { bytes, report, passed: failures.is_empty() })
}

/// The normalization folded into the file's input (raw u8 pixels on the device): only for u8
/// calibration images feeding a 4-D input of 1 to 4 channels, with `norm`'s statistics given
/// per channel. f32 data is fed as it is, so nothing is folded for it.
fn pixel_norm_for(g: &Graph, calib: &Dataset, norm: &Normalize) -> Result<Option<PixelNorm>, String> {
    if calib.images.as_u8().is_none() {
        return Ok(None);
    }
    let channels = calib.channels();
    norm.validate(channels).map_err(|e| format!("{}: --mean/--std: {}", calib.source, e.kind))?;
    let input = g.inputs.first().map(|&i| g.tensors[i].shape.as_slice()).unwrap_or(&[]);
    if input.len() != 4 || input[1] != channels || !(1..=4).contains(&channels) {
        return Ok(None);
    }
    let per = |v: &[f32], d: f32| (0..channels).map(|c| v.get(c).or(v.first()).copied().unwrap_or(d)).collect();
    Ok(Some(PixelNorm { pixel_scale: norm.scale, mean: per(&norm.mean, 0.0), std: per(&norm.std, 1.0) }))
}

/// Per-layer SQNR of the runtime's INT8 activations against FP32 on calibration images.
fn layer_errors(g: &Graph, cal: &Calibration, obs: Observer, cfg: &PtqConfig, calib: &Dataset) -> Result<Vec<LayerError>, String> {
    let opts = LowerOptions { observer: obs, bias_correction: cfg.bias_correction, pixel_norm: None, metadata: vec![], expose_all: true };
    let lowered = lower(g, &cal.clone(), &opts).map_err(|e| e.to_string())?;
    let buf = temper_runtime::writer::AlignedBuf::from_bytes(&lowered.bytes);
    let model = temper_runtime::Model::from_bytes(buf.as_bytes()).map_err(|e| e.to_string())?;
    let mut arena = vec![0u8; model.arena_size()];
    let mut sess = temper_runtime::Session::new(&model, &mut arena).map_err(|e| e.to_string())?;
    let n_real = g.outputs.len();
    let k = cfg.layer_samples.min(calib.len()).max(1);
    let mut sig = vec![0f64; lowered.exposed.len()];
    let mut noise = vec![0f64; lowered.exposed.len()];
    let il = calib.image_len();
    let lay = crate::feed::DeviceInput::of(&model);
    let mut img = vec![0f32; il];
    let mut nhwc = vec![0f32; il];
    for i in 0..k {
        calib.image_f32_into(i, &cfg.norm, &mut img);
        let mut refs: Vec<Option<fp32::Tensor>> = vec![None; g.tensors.len()];
        fp32::run_observed(g, &[crate::feed::batch_tensor(g, 1, img.clone()).map_err(|e| e.to_string())?], &mut |id, t| {
            refs[id] = Some(t.clone())
        })
        .map_err(|e| e.to_string())?;
        lay.arrange(&img, &mut nhwc);
        sess.set_input_f32(0, &nhwc).map_err(|e| e.to_string())?;
        sess.run().map_err(|e| e.to_string())?;
        for (j, &(t, perm)) in lowered.exposed.iter().enumerate() {
            let Some(r) = &refs[t] else { continue };
            let mut q = vec![0f32; r.data.len()];
            sess.output_f32(n_real + j, &mut q).map_err(|e| e.to_string())?;
            let reference: Vec<f32> = match perm {
                Some((cc, hh, ww)) => {
                    let mut v = vec![0f32; r.data.len()];
                    nchw_to_nhwc(&r.data, &mut v, cc, hh, ww);
                    v
                }
                None => r.data.clone(),
            };
            for (a, b) in reference.iter().zip(&q) {
                sig[j] += (*a as f64).powi(2);
                noise[j] += (*a as f64 - *b as f64).powi(2);
            }
        }
    }
    Ok(lowered
        .exposed
        .iter()
        .enumerate()
        .map(|(j, &(t, _))| {
            let node = g.producer(t).map(|p| g.nodes[p].name.clone()).unwrap_or_default();
            let op = g.producer(t).map(|p| g.nodes[p].op.name().to_string()).unwrap_or_default();
            LayerError { name: node, op, sqnr_db: 10.0 * (sig[j] / noise[j].max(1e-30)).log10() }
        })
        .collect())
}

/// Write `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename.
/// An existing file at `path` is replaced only when everything succeeded.
///
/// A symlink is written through to its final target; an existing target that is not a
/// regular file (device, FIFO, directory) is refused and nothing is written.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let target =
        temper_data::fsout::resolve_output(path).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let path = target.as_path();
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// The accuracy gate shared by `temper quantize` and every stage of `temper pipeline`: the
/// reasons INT8 top-1 `int8` fails against FP32 top-1 `fp32` (percent), empty when it passes.
/// `max_drop`: the most INT8 may lie below FP32, in points; `min_accuracy`: the least INT8 may
/// reach. A NaN accuracy (a stage that measured nothing) fails both.
pub fn gate_failures(max_drop: Option<f64>, min_accuracy: Option<f64>, fp32: f64, int8: f64) -> Vec<String> {
    let mut failures = Vec::new();
    let drop = fp32 - int8;
    if let Some(m) = max_drop {
        if drop.is_nan() || drop > m {
            failures.push(format!("INT8 top-1 {int8:.2}% is {drop:.2} points below FP32 {fp32:.2}% (allowed {m})"));
        }
    }
    if let Some(m) = min_accuracy {
        if int8.is_nan() || int8 < m {
            failures.push(format!("INT8 top-1 {int8:.2}% below the required {m}%"));
        }
    }
    failures
}

#[cfg(test)]
mod gate_tests {
    use super::gate_failures;

    #[test]
    fn max_drop_allows_up_to_the_limit_and_no_more() {
        assert!(gate_failures(Some(0.5), None, 91.0, 90.5).is_empty(), "a drop equal to the limit passes");
        assert!(gate_failures(Some(0.5), None, 91.0, 92.0).is_empty(), "a gain passes");
        let f = gate_failures(Some(0.5), None, 91.0, 90.4);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].contains("0.60 points below FP32 91.00%"), "{f:?}");
        assert!(gate_failures(None, None, 91.0, 10.0).is_empty(), "no gate, no failure");
    }

    #[test]
    fn min_accuracy_and_both_limits() {
        assert!(gate_failures(None, Some(90.0), 95.0, 90.0).is_empty());
        let f = gate_failures(Some(1.0), Some(90.0), 95.0, 89.0);
        assert_eq!(f.len(), 2, "both limits fail: {f:?}");
        assert!(f[1].contains("below the required 90%"), "{f:?}");
    }

    #[test]
    fn an_unmeasured_accuracy_fails() {
        assert_eq!(gate_failures(Some(0.5), Some(50.0), f64::NAN, f64::NAN).len(), 2);
        assert_eq!(gate_failures(Some(0.5), None, 91.0, f64::NAN).len(), 1);
    }
}
