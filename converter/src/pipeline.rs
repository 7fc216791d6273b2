//! `temper pipeline`: the staged pipeline, the product's main command.
//!
//! For each *attempt* (the base settings, then every fallback the user listed, in order):
//!
//! 1. **distill**: train the student (ONNX architecture + initial weights, or a built-in
//!    architecture) from the teacher with logit distillation ([`crate::train`]);
//! 2. **PTQ**: calibrate, quantize, pick the observer on the validation split and evaluate the
//!    emitted bytes through `temper-runtime` ([`crate::ptq::quantize`]), then apply the gate;
//! 3. **QAT** (when the PTQ gate fails and QAT is on): quantization-aware fine-tuning of the
//!    distilled student ([`crate::train::qat`](mod@crate::train::qat)), then the gate again on the file QAT emits.
//!
//! The first file that passes the gate is written (with the reports, as one commit under a lock
//! on the output: [`temper_data::commit`]) and the remaining fallbacks are skipped. When no attempt passes, nothing is written but the report
//! and [`run`] reports `passed == false` (the command exits with status 1).
//!
//! The gate compares the INT8 top-1 of the emitted file on the validation split with the FP32
//! top-1 of the *distilled student* (`max-drop`), and/or with an absolute floor
//! (`min-accuracy`). The test split, when given, is only reported, never used for a choice.
//!
//! A fallback overrides some keys of the base settings (each fallback starts again from the
//! base settings; overrides do not accumulate). Work whose inputs did not change is reused: a
//! fallback that only changes QAT keys reuses the distilled student and its PTQ result.
//!
//! Settings come from defaults ([`PipelineConfig::default`]), then a config file
//! ([`PipelineConfig::apply_file`]: `key = value` lines, `#` comments, `[fallback]` sections),
//! then command-line flags (`--key value`). Paths are relative to the working directory.
//!
//! Reports (beside the output, `OUT.report.{md,json,svg}`): every attempt and stage with FP32 and
//! INT8 accuracy (validation, and test when given), the gate's verdict, file sizes, per-layer
//! SQNR of each PTQ run, the training curves (loss and validation accuracy per epoch, SVG) and
//! the time of each stage.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::eval::{fp32_accuracy, int8_run};
use crate::ir::Graph;
use crate::ptq::{quantize, PtqConfig};
use crate::quant::Observer;
use crate::report::{LayerError, Report};
use crate::train::qat::{qat, QatConfig, QatProgress};
use crate::train::{
    arch, evaluate, export, prepare_for_training, train, AlphaSchedule, Augment, Distiller, EpochReport, KdConfig, MimicSpec, Net,
    OptimizerKind, Schedule, ScheduleKind, Teacher, TrainConfig,
};
use crate::{fp32, onnx, passes};
use temper_data::{load_dataset, Dataset, Normalize};

// ───────────────────────────── configuration ─────────────────────────────

/// Where the student comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum StudentSource {
    /// An ONNX file: architecture and initial weights (BatchNorm is trained unfused).
    Onnx(PathBuf),
    /// A built-in architecture ([`arch::ARCHS`]), initialized from the seed.
    Arch(String),
}

impl StudentSource {
    /// Short label for tables.
    pub fn label(&self) -> String {
        match self {
            StudentSource::Onnx(p) => file_label(p),
            StudentSource::Arch(a) => format!("{a} (built-in)"),
        }
    }
}

/// Everything the distillation stage depends on (two attempts with equal settings share the
/// distilled student).
#[derive(Clone, Debug, PartialEq)]
pub struct DistillSettings {
    /// Teacher ONNX files (several: their soft targets are mixed by `teacher_weights`).
    pub teachers: Vec<PathBuf>,
    /// Mixture weights of the teachers (one per teacher; empty: equal), or `None` for weights
    /// proportional to each teacher's validation accuracy (`teacher-weights = val`).
    pub teacher_weights: Option<Vec<f32>>,
    /// Feature-mimicking pairs (student tensor, tensor of the first teacher).
    pub mimic: Vec<MimicSpec>,
    /// Weight of each mimicking L2 term.
    pub mimic_weight: f32,
    /// Student.
    pub student: StudentSource,
    /// Epochs.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch: usize,
    /// Peak learning rate (cosine schedule).
    pub lr: f32,
    /// Final learning rate of the cosine schedule.
    pub min_lr: f32,
    /// Linear warm-up in epochs (fractional allowed).
    pub warmup: f32,
    /// Optimizer.
    pub optimizer: OptimizerKind,
    /// Weight decay of conv/dense weights.
    pub weight_decay: f32,
    /// Augmentation (off keeps the teacher's soft targets cached).
    pub augment: Augment,
    /// Seed of shuffling, augmentation and built-in initialization.
    pub seed: u64,
    /// Distillation temperature T.
    pub temperature: f32,
    /// α, the weight of `T²·KL`; `1 − α` weighs the labels.
    pub alpha: f32,
    /// α schedule name: `constant`, `decay` or `warmup`.
    pub alpha_schedule: String,
    /// α at the end of the `decay` schedule.
    pub alpha_end: f32,
}

impl DistillSettings {
    fn schedule(&self) -> AlphaSchedule {
        AlphaSchedule::parse(&self.alpha_schedule, self.alpha_end).unwrap_or(AlphaSchedule::Constant)
    }

    /// One line for tables.
    pub fn summary(&self) -> String {
        let mut teacher = if self.teachers.is_empty() {
            "?".to_string()
        } else {
            self.teachers.iter().map(|t| file_label(t)).collect::<Vec<_>>().join(" + ")
        };
        match &self.teacher_weights {
            None => teacher += " (weights by validation accuracy)",
            Some(w) if !w.is_empty() => teacher += &format!(" (weights {w:?})"),
            _ => {}
        }
        for m in &self.mimic {
            teacher += &format!(", mimic {}={} ×{}", m.student, m.teacher, self.mimic_weight);
        }
        let lr =
            if self.warmup > 0.0 { format!("lr {} cosine, warm-up {} ep", self.lr, self.warmup) } else { format!("lr {} cosine", self.lr) };
        let aug = if self.augment.enabled() { format!(", augment {}", augment_name(self.augment)) } else { String::new() };
        let sched = match self.alpha_schedule.as_str() {
            "decay" => format!("decay→{}", self.alpha_end),
            s => s.to_string(),
        };
        format!(
            "{} ← {teacher}: {} epochs, batch {}, {} {lr}, T {}, α {} {sched}{aug}, seed {}",
            self.student.label(),
            self.epochs,
            self.batch,
            self.optimizer.name(),
            self.temperature,
            self.alpha,
            self.seed
        )
    }
}

/// Everything PTQ depends on besides the distilled student.
#[derive(Clone, Debug, PartialEq)]
pub struct PtqSettings {
    /// Observers tried (the best on validation is kept).
    pub observers: Vec<Observer>,
    /// Calibration data spec (`None`: the training data).
    pub calib: Option<String>,
    /// Calibration images.
    pub calib_size: usize,
    /// Bias correction.
    pub bias_correction: bool,
    /// Validation images of the one-layer-at-a-time sensitivity ranking (0 = off).
    pub sensitivity_samples: usize,
}

/// QAT settings (the rest of [`QatConfig`] keeps its defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct QatSettings {
    /// Run QAT when the PTQ gate fails.
    pub enabled: bool,
    /// Epochs.
    pub epochs: usize,
    /// Peak learning rate.
    pub lr: f32,
    /// Mini-batch size.
    pub batch: usize,
    /// Weight of self-distillation from the FP32 student during QAT (0 = labels only).
    pub distill_alpha: f32,
}

/// A fallback: keys overriding the base settings for one more attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct Fallback {
    /// `(key, value)` pairs, applied in order on top of the base settings.
    pub settings: Vec<(String, String)>,
    /// Where it was given (`FILE:LINE` or `--fallback`).
    pub origin: String,
}

impl Fallback {
    /// `key=value key=value` as written.
    pub fn describe(&self) -> String {
        self.settings.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    }
}

/// The pipeline's settings. [`PipelineConfig::default`] holds every default in one place.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Distillation.
    pub distill: DistillSettings,
    /// Post-training quantization.
    pub ptq: PtqSettings,
    /// Quantization-aware training.
    pub qat: QatSettings,
    /// Output `.tmf`.
    pub out: Option<PathBuf>,
    /// Report path stem (default: the output path; `.report.md/.json/.svg` are appended).
    pub report: Option<PathBuf>,
    /// Training data spec.
    pub train: String,
    /// Validation data spec (per-epoch curves, observer choice, gate).
    pub val: String,
    /// Test data spec (reported only).
    pub test: Option<String>,
    /// Input normalization mean per channel.
    pub mean: Vec<f32>,
    /// Input normalization std per channel.
    pub std: Vec<f32>,
    /// Pixel scale before mean/std.
    pub pixel_scale: f32,
    /// Gate: maximum INT8 top-1 drop below the distilled FP32 student, in points.
    pub max_drop: Option<f64>,
    /// Gate: minimum INT8 top-1 in percent.
    pub min_accuracy: Option<f64>,
    /// Worker threads.
    pub threads: usize,
    /// Stop every training epoch (distillation and QAT) after this many steps.
    pub max_steps: Option<usize>,
    /// Progress lines on stderr.
    pub progress: bool,
    /// Class names stored in the file (default: the dataset's).
    pub labels: Option<String>,
    /// File keeping the teacher's logits on the training data between runs (`None`: a
    /// temporary file removed at the end, so that fallback attempts still share them).
    pub teacher_cache: Option<PathBuf>,
    /// Directory of distillation checkpoints (`None`: none): each attempt's distillation
    /// saves one per epoch under a name derived from its settings and data, and a later run
    /// with the same settings resumes from it — after the last epoch, it skips training.
    pub checkpoint_dir: Option<PathBuf>,
    /// Fallbacks, tried in order after the base settings fail.
    pub fallbacks: Vec<Fallback>,
}

impl Default for PipelineConfig {
    /// The defaults of `temper pipeline`. The distillation ones (8 epochs of Adam with a cosine
    /// schedule, batch 64, T = 4, α = 0.7 constant, no augmentation so the teacher's soft targets
    /// are computed once) are sized so that the whole pipeline on Fashion-MNIST finishes in
    /// under 10 minutes on a 2-core machine. QAT defaults are [`QatConfig::default`]'s.
    fn default() -> Self {
        let q = QatConfig::default();
        PipelineConfig {
            distill: DistillSettings {
                teachers: Vec::new(),
                teacher_weights: Some(Vec::new()),
                mimic: Vec::new(),
                mimic_weight: 1.0,
                student: StudentSource::Arch("small-cnn".into()),
                epochs: 8,
                batch: 64,
                lr: 1e-3,
                min_lr: 0.0,
                warmup: 0.0,
                optimizer: OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 },
                weight_decay: 0.0,
                augment: Augment::default(),
                seed: 1,
                temperature: 4.0,
                alpha: 0.7,
                alpha_schedule: "decay".into(),
                alpha_end: 0.0,
            },
            ptq: PtqSettings {
                observers: Observer::ALL.to_vec(),
                calib: None,
                calib_size: 2000,
                bias_correction: true,
                sensitivity_samples: 1000,
            },
            qat: QatSettings { enabled: true, epochs: q.epochs, lr: q.lr, batch: q.batch, distill_alpha: q.distill_alpha },
            out: None,
            report: None,
            train: "fashion-mnist:train".into(),
            val: "fashion-mnist:val".into(),
            test: Some("fashion-mnist:test".into()),
            mean: Vec::new(),
            std: Vec::new(),
            pixel_scale: 1.0 / 255.0,
            max_drop: Some(0.5),
            min_accuracy: None,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_steps: None,
            progress: true,
            labels: None,
            teacher_cache: None,
            checkpoint_dir: None,
            fallbacks: Vec::new(),
        }
    }
}

/// Every key: name, whether a fallback may change it, help text (the `--help` listing).
pub const KEYS: &[(&str, bool, &str)] = &[
    ("teacher", true, "PATH[,PATH…]  teacher ONNX model(s) (required; several: soft targets mixed)"),
    ("teacher-weights", true, "W,W…|val  mixture weights of several teachers (default equal; val: by validation accuracy)"),
    ("mimic", true, "S=T[,S=T…]  feature mimicking: L2 between student tensor S and first-teacher tensor T (default none)"),
    ("mimic-weight", true, "W      weight of each mimicking term (default 1)"),
    ("student", true, "PATH   student ONNX model: architecture + initial weights"),
    ("student-arch", true, "NAME   built-in student instead (small-cnn, …; default small-cnn when no --student)"),
    ("out", false, "PATH   output .tmf (required; -o)"),
    ("report", false, "PATH   report stem (default OUT: OUT.report.md, .report.json, .report.svg)"),
    ("train", false, "SPEC   training data (default fashion-mnist:train)"),
    ("val", false, "SPEC   validation data: curves, observer choice, gate (default fashion-mnist:val)"),
    ("test", false, "SPEC   test data, reported only (default fashion-mnist:test; none = off)"),
    ("epochs", true, "N      distillation epochs (default 8)"),
    ("batch", true, "N      mini-batch (default 64)"),
    ("lr", true, "LR     peak learning rate, cosine schedule (default 0.001)"),
    ("min-lr", true, "LR     final learning rate (default 0)"),
    ("warmup", true, "E      linear warm-up in epochs (default 0)"),
    ("optimizer", true, "O      adam | adamw | sgd (default adam; sgd uses momentum 0.9)"),
    ("wd", true, "W      weight decay (default 0)"),
    ("augment", true, "A      none | crop[:P] | flip | crop,flip (default none: teacher outputs cached)"),
    ("seed", true, "S      seed (default 1)"),
    ("T", true, "T      distillation temperature (default 4)"),
    ("alpha", true, "A      weight of T²·KL, 1 − A weighs the labels (default 0.7)"),
    ("alpha-schedule", true, "S      constant | decay | warmup (default decay: α → alpha-end; measured best, bench/results/kd.md)"),
    ("alpha-end", true, "A      α at the end of the decay schedule (default 0)"),
    ("calib", true, "SPEC   calibration data (default: the training data)"),
    ("calib-size", true, "N      calibration images (default 2000)"),
    ("observer", true, "LIST   minmax | ema | percentile[:P] | mse | kl | all (default all)"),
    ("bias-correction", true, "BOOL   (default true)"),
    ("sensitivity-samples", true, "N      images of the per-layer sensitivity ranking (default 1000; 0 = off)"),
    ("qat", true, "BOOL   run QAT when the PTQ gate fails (default true; --no-qat)"),
    ("qat-epochs", true, "N      QAT epochs (default {qat-epochs})"),
    ("qat-lr", true, "LR     QAT peak learning rate (default {qat-lr})"),
    ("qat-batch", true, "N      QAT mini-batch (default {qat-batch})"),
    ("qat-distill-alpha", true, "A      QAT self-distillation from the FP32 student (default {qat-distill-alpha})"),
    ("max-drop", false, "P      gate: INT8 at most P points below the distilled FP32 student (default 0.5; none)"),
    ("min-accuracy", false, "A      gate: INT8 top-1 at least A percent (default none)"),
    ("mean", false, "M[,M]  normalization mean of u8 data (default 0; 0.2860 for fashion-mnist:*)"),
    ("std", false, "S[,S]  normalization std of u8 data (default 1; 0.3530 for fashion-mnist:*)"),
    ("pixel-scale", false, "X      pixel scale before mean/std (default 1/255)"),
    ("threads", false, "N      worker threads (default: all cores)"),
    ("max-steps", false, "N      stop every training epoch after N steps (quick runs; default none)"),
    ("progress", false, "BOOL   progress lines on stderr (default true; --no-progress)"),
    ("labels", false, "NAMES  comma-separated class names stored in the file (default: the dataset's)"),
    ("teacher-cache", false, "PATH   keep the teacher's logits on the training data in PATH across runs (default: a temporary file)"),
    ("checkpoint-dir", false, "DIR    save a distillation checkpoint every epoch in DIR and resume from it when run again (default none)"),
    ("fallback", false, "\"K=V K=V\"  one more attempt with these keys changed (repeatable, tried in order)"),
];

/// Why a key could not be set.
#[derive(Clone, Debug, PartialEq)]
pub enum SetError {
    /// No such key.
    UnknownKey,
    /// The value is not valid for the key (the message says why).
    BadValue(String),
}

fn count(v: &str, min: usize) -> Result<usize, SetError> {
    match v.parse::<usize>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(SetError::BadValue(format!("'{v}' is not a whole number ≥ {min}"))),
    }
}

fn real(v: &str, lo: f64, hi: f64) -> Result<f64, SetError> {
    match v.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= lo && x <= hi => Ok(x),
        _ if hi.is_infinite() => Err(SetError::BadValue(format!("'{v}' is not a number ≥ {lo}"))),
        _ => Err(SetError::BadValue(format!("'{v}' is not a number in [{lo}, {hi}]"))),
    }
}

fn positive(v: &str) -> Result<f32, SetError> {
    match v.parse::<f32>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(SetError::BadValue(format!("'{v}' is not a positive number"))),
    }
}

fn boolean(v: &str) -> Result<bool, SetError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(SetError::BadValue(format!("'{v}' is not true or false"))),
    }
}

fn reals32(v: &str) -> Result<Vec<f32>, SetError> {
    v.split(',')
        .map(|x| x.trim().parse::<f32>().ok().filter(|f| f.is_finite()).ok_or_else(|| SetError::BadValue(format!("'{x}' is not a number"))))
        .collect()
}

fn optional<T>(v: &str, f: impl Fn(&str) -> Result<T, SetError>) -> Result<Option<T>, SetError> {
    if v.eq_ignore_ascii_case("none") {
        Ok(None)
    } else {
        f(v).map(Some)
    }
}

fn nonempty(v: &str) -> Result<String, SetError> {
    if v.is_empty() {
        Err(SetError::BadValue("empty value".into()))
    } else {
        Ok(v.to_string())
    }
}

/// Parse the tokens of a fallback (`key=value`, separated by spaces or `;`).
fn fallback_tokens(v: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for tok in v.split(|c: char| c.is_whitespace() || c == ';').filter(|t| !t.is_empty()) {
        let (k, val) = tok.split_once('=').ok_or_else(|| format!("fallback: '{tok}' is not KEY=VALUE"))?;
        out.push((k.trim().to_string(), val.trim().to_string()));
    }
    if out.is_empty() {
        return Err("fallback: no KEY=VALUE given".into());
    }
    Ok(out)
}

/// Check that `key` may change in a fallback and that `value` is valid for it.
fn check_fallback_key(key: &str, value: &str) -> Result<(), String> {
    match KEYS.iter().find(|k| k.0 == canonical(key)) {
        None => Err(format!("fallback: unknown key '{key}' (known: {})", fallback_keys().join(", "))),
        Some((_, false, _)) => {
            Err(format!("fallback: key '{key}' cannot change between attempts (allowed: {})", fallback_keys().join(", ")))
        }
        Some(_) => match PipelineConfig::default().set(key, value) {
            Ok(()) => Ok(()),
            Err(SetError::BadValue(m)) => Err(format!("fallback: key '{key}': {m}")),
            Err(SetError::UnknownKey) => Err(format!("fallback: unknown key '{key}'")),
        },
    }
}

fn fallback_keys() -> Vec<&'static str> {
    KEYS.iter().filter(|k| k.1).map(|k| k.0).collect()
}

fn canonical(key: &str) -> &str {
    match key {
        "o" | "output" => "out",
        "temperature" => "T",
        k => k,
    }
}

impl PipelineConfig {
    /// Set one key (the names of [`KEYS`]; `o`/`output` = `out`, `temperature` = `T`). A
    /// `fallback` value is `KEY=VALUE KEY=VALUE …` and is appended to the fallbacks.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SetError> {
        self.set_from(key, value, "--fallback")
    }

    fn set_from(&mut self, key: &str, value: &str, origin: &str) -> Result<(), SetError> {
        let v = value.trim();
        let d = &mut self.distill;
        match canonical(key) {
            "teacher" => d.teachers = v.split(',').map(|t| nonempty(t).map(PathBuf::from)).collect::<Result<_, _>>()?,
            "teacher-weights" => {
                d.teacher_weights = if v == "val" {
                    None
                } else {
                    Some(v.split(',').map(|w| real(w, 0.0, f64::INFINITY).map(|x| x as f32)).collect::<Result<_, _>>()?)
                }
            }
            "mimic" => {
                d.mimic = if v.is_empty() || v == "none" {
                    Vec::new()
                } else {
                    v.split(',').map(|m| MimicSpec::parse(m.trim()).map_err(SetError::BadValue)).collect::<Result<_, _>>()?
                }
            }
            "mimic-weight" => d.mimic_weight = real(v, 0.0, f64::INFINITY)? as f32,
            "student" => d.student = StudentSource::Onnx(PathBuf::from(nonempty(v)?)),
            "student-arch" => {
                if !arch::ARCHS.contains(&v) {
                    return Err(SetError::BadValue(format!("unknown architecture '{v}' (known: {})", arch::ARCHS.join(", "))));
                }
                d.student = StudentSource::Arch(v.to_string());
            }
            "out" => self.out = Some(PathBuf::from(nonempty(v)?)),
            "report" => self.report = Some(PathBuf::from(nonempty(v)?)),
            "train" => self.train = nonempty(v)?,
            "val" => self.val = nonempty(v)?,
            "test" => self.test = optional(v, nonempty)?,
            "epochs" => d.epochs = count(v, 1)?,
            "batch" => d.batch = count(v, 1)?,
            "lr" => d.lr = positive(v)?,
            "min-lr" => d.min_lr = real(v, 0.0, f64::INFINITY)? as f32,
            "warmup" => d.warmup = real(v, 0.0, f64::INFINITY)? as f32,
            "optimizer" => d.optimizer = OptimizerKind::parse(v, 0.9, false).map_err(SetError::BadValue)?,
            "wd" => d.weight_decay = real(v, 0.0, f64::INFINITY)? as f32,
            "augment" => d.augment = Augment::parse(v).map_err(SetError::BadValue)?,
            "seed" => d.seed = v.parse().map_err(|_| SetError::BadValue(format!("'{v}' is not a whole number")))?,
            "T" => d.temperature = positive(v)?,
            "alpha" => d.alpha = real(v, 0.0, 1.0)? as f32,
            "alpha-schedule" => {
                AlphaSchedule::parse(v, 0.0).map_err(SetError::BadValue)?;
                d.alpha_schedule = v.to_string();
            }
            "alpha-end" => d.alpha_end = real(v, 0.0, 1.0)? as f32,
            "calib" => self.ptq.calib = Some(nonempty(v)?),
            "calib-size" => self.ptq.calib_size = count(v, 1)?,
            "observer" => {
                self.ptq.observers = if v == "all" {
                    Observer::ALL.to_vec()
                } else {
                    v.split(',')
                        .map(|o| {
                            Observer::parse(o).ok_or_else(|| {
                                SetError::BadValue(format!("unknown observer '{o}' (minmax, ema, percentile[:P], mse, kl, all)"))
                            })
                        })
                        .collect::<Result<_, _>>()?
                }
            }
            "bias-correction" => self.ptq.bias_correction = boolean(v)?,
            "sensitivity-samples" => self.ptq.sensitivity_samples = count(v, 0)?,
            "qat" => self.qat.enabled = boolean(v)?,
            "qat-epochs" => self.qat.epochs = count(v, 1)?,
            "qat-lr" => self.qat.lr = positive(v)?,
            "qat-batch" => self.qat.batch = count(v, 1)?,
            "qat-distill-alpha" => self.qat.distill_alpha = real(v, 0.0, 1.0)? as f32,
            "max-drop" => self.max_drop = optional(v, |x| real(x, 0.0, 100.0))?,
            "min-accuracy" => self.min_accuracy = optional(v, |x| real(x, 0.0, 100.0))?,
            "mean" => self.mean = reals32(v)?,
            "std" => {
                let s = reals32(v)?;
                if s.iter().any(|&x| x <= 0.0) {
                    return Err(SetError::BadValue(format!("'{v}': every std must be positive")));
                }
                self.std = s;
            }
            "pixel-scale" => self.pixel_scale = positive(v)?,
            "threads" => self.threads = count(v, 1)?,
            "max-steps" => self.max_steps = optional(v, |x| count(x, 1))?,
            "progress" => self.progress = boolean(v)?,
            "labels" => self.labels = Some(nonempty(v)?),
            "teacher-cache" => self.teacher_cache = Some(PathBuf::from(nonempty(v)?)),
            "checkpoint-dir" => self.checkpoint_dir = Some(PathBuf::from(nonempty(v)?)),
            "fallback" => {
                let settings = fallback_tokens(v).map_err(SetError::BadValue)?;
                for (k, val) in &settings {
                    check_fallback_key(k, val).map_err(SetError::BadValue)?;
                }
                self.fallbacks.push(Fallback { settings, origin: origin.to_string() });
            }
            _ => return Err(SetError::UnknownKey),
        }
        Ok(())
    }

    /// Apply a config file's text: `key = value` lines (values may be double-quoted), `#`
    /// comments, blank lines; a `[fallback]` line starts a fallback whose keys follow (until
    /// the next section); `[pipeline]` returns to the base settings. Errors name
    /// `ORIGIN:LINE` and the key.
    pub fn apply_text(&mut self, text: &str, origin: &str) -> Result<(), String> {
        let mut section: Option<usize> = None; // index into self.fallbacks
        for (n, raw) in text.lines().enumerate() {
            let at = format!("{origin}:{}", n + 1);
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                match name.trim() {
                    "fallback" | "[fallback]" => {
                        self.fallbacks.push(Fallback { settings: Vec::new(), origin: at });
                        section = Some(self.fallbacks.len() - 1);
                    }
                    "pipeline" => section = None,
                    other => return Err(format!("{at}: unknown section '[{other}]' (use [fallback] or [pipeline])")),
                }
                continue;
            }
            let (k, v) = line.split_once('=').ok_or_else(|| format!("{at}: expected 'key = value', found '{line}'"))?;
            let (k, v) = (k.trim(), unquote(v.trim()));
            if k.is_empty() {
                return Err(format!("{at}: missing key before '='"));
            }
            match section {
                Some(i) => {
                    check_fallback_key(k, v).map_err(|e| format!("{at}: {}", e.trim_start_matches("fallback: ")))?;
                    self.fallbacks[i].settings.push((k.to_string(), v.to_string()));
                }
                None => match self.set_from(k, v, &at) {
                    Ok(()) => {}
                    Err(SetError::UnknownKey) => {
                        return Err(format!("{at}: unknown key '{k}' (known: {})", KEYS.iter().map(|k| k.0).collect::<Vec<_>>().join(", ")))
                    }
                    Err(SetError::BadValue(m)) => return Err(format!("{at}: key '{k}': {m}")),
                },
            }
        }
        if let Some(f) = self.fallbacks.iter().find(|f| f.settings.is_empty()) {
            return Err(format!("{}: [fallback] section without any key", f.origin));
        }
        Ok(())
    }

    /// Read and apply a config file (see [`PipelineConfig::apply_text`]).
    pub fn apply_file(&mut self, path: &Path) -> Result<(), String> {
        let bytes = temper_data::fsread::read_input(path, 1 << 20, "a pipeline config may have").map_err(|e| format!("config file {e}"))?;
        let text = String::from_utf8(bytes).map_err(|e| format!("config file {}: not UTF-8 text: {e}", path.display()))?;
        self.apply_text(&text, &path.display().to_string())
    }

    /// Parse the command line of `temper pipeline` (after the command name): `--config FILE`
    /// first, then `--key value` flags in order; `--no-qat`, `--no-progress`,
    /// `--no-bias-correction` are flags without a value.
    pub fn from_args(args: &[String]) -> Result<PipelineConfig, String> {
        let mut cfg = PipelineConfig::default();
        // The config file is applied first whatever its position, so flags override it.
        let mut i = 0;
        while i < args.len() {
            if args[i] == "--config" {
                let p = args.get(i + 1).ok_or("option --config needs a value")?;
                cfg.apply_file(Path::new(p))?;
                i += 1;
            }
            i += 1;
        }
        let mut i = 0;
        while i < args.len() {
            let a = &args[i];
            let key = match a.strip_prefix("--") {
                Some(k) => k,
                None if a == "-o" => "out",
                None => return Err(format!("unexpected argument '{a}' (see temper pipeline --help)")),
            };
            match key {
                "no-qat" => cfg.qat.enabled = false,
                "no-progress" => cfg.progress = false,
                "no-bias-correction" => cfg.ptq.bias_correction = false,
                _ => {
                    let v = args.get(i + 1).ok_or_else(|| format!("option --{key} needs a value"))?;
                    i += 1;
                    if key != "config" {
                        match cfg.set_from(key, v, "--fallback") {
                            Ok(()) => {}
                            Err(SetError::UnknownKey) => return Err(format!("unknown option --{key} (see temper pipeline --help)")),
                            Err(SetError::BadValue(m)) => return Err(format!("--{key}: {m}")),
                        }
                    }
                }
            }
            i += 1;
        }
        Ok(cfg)
    }

    /// The settings of every attempt: the base settings, then each fallback applied to them.
    pub fn attempts(&self) -> Result<Vec<PipelineConfig>, String> {
        let mut base = self.clone();
        base.fallbacks.clear();
        let mut out = vec![base.clone()];
        for f in &self.fallbacks {
            let mut c = base.clone();
            for (k, v) in &f.settings {
                c.set(k, v).map_err(|e| match e {
                    SetError::UnknownKey => format!("{}: unknown key '{k}'", f.origin),
                    SetError::BadValue(m) => format!("{}: key '{k}': {m}", f.origin),
                })?;
            }
            out.push(c);
        }
        Ok(out)
    }

    /// The input normalization: `mean` / `std`, each defaulting (when empty) to the training
    /// data's (see [`Normalize::default_for`]: Fashion-MNIST's for the demo, none otherwise).
    pub fn norm(&self) -> Normalize {
        let d = Normalize::default_for(&self.train);
        let pick = |v: &Vec<f32>, dv: Vec<f32>| if v.is_empty() { dv } else { v.clone() };
        Normalize::new(pick(&self.mean, d.mean), pick(&self.std, d.std), self.pixel_scale)
    }

    /// Report stem: `report` or the output path (the extension is replaced).
    pub fn report_paths(&self) -> Option<[PathBuf; 3]> {
        let stem = self.report.clone().or_else(|| self.out.as_ref().map(|o| o.with_extension("report")))?;
        let s = stem.to_string_lossy().to_string();
        let base = s.strip_suffix(".json").or_else(|| s.strip_suffix(".md")).or_else(|| s.strip_suffix(".svg")).unwrap_or(&s).to_string();
        Some([format!("{base}.md"), format!("{base}.json"), format!("{base}.svg")].map(PathBuf::from))
    }

    fn gate_text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = self.max_drop {
            parts.push(format!("INT8 ≥ distilled FP32 − {m} points"));
        }
        if let Some(m) = self.min_accuracy {
            parts.push(format!("INT8 ≥ {m}%"));
        }
        if parts.is_empty() {
            "none (every model passes)".into()
        } else {
            format!("{} (top-1 on the validation data)", parts.join(" and "))
        }
    }

    /// Check what can be checked before any training: required keys, that input files exist,
    /// that the output directory exists.
    pub fn check(&self) -> Result<(), String> {
        let out = self.out.as_ref().ok_or("missing -o OUT.tmf (or out = … in the config file)")?;
        let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return Err(format!("output directory {} does not exist", dir.display()));
        }
        for (i, a) in self.attempts()?.iter().enumerate() {
            let which = if i == 0 { "settings".to_string() } else { format!("fallback {i} ({})", self.fallbacks[i - 1].origin) };
            if a.distill.teachers.is_empty() {
                return Err("missing --teacher T.onnx (the model to distill from)".into());
            }
            for t in &a.distill.teachers {
                if !t.is_file() {
                    return Err(format!("{which}: teacher {} not found", t.display()));
                }
            }
            if let Some(w) = &a.distill.teacher_weights {
                if !w.is_empty() && w.len() != a.distill.teachers.len() {
                    return Err(format!("{which}: teacher-weights has {} values for {} teachers", w.len(), a.distill.teachers.len()));
                }
                if !w.is_empty() && w.iter().sum::<f32>() <= 0.0 {
                    return Err(format!("{which}: teacher-weights must not all be 0"));
                }
            }
            if let StudentSource::Onnx(p) = &a.distill.student {
                if !p.is_file() {
                    return Err(format!("{which}: student {} not found", p.display()));
                }
            }
            let n = self.norm();
            if n.mean.len() != n.std.len() {
                return Err(format!("mean has {} values but std has {}", n.mean.len(), n.std.len()));
            }
        }
        Ok(())
    }
}

fn strip_comment(line: &str) -> &str {
    let mut in_quotes = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            '#' if !in_quotes => return &line[..i],
            _ => {}
        }
    }
    line
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"').and_then(|x| x.strip_suffix('"')).unwrap_or(v)
}

fn file_label(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| p.display().to_string())
}

fn augment_name(a: Augment) -> String {
    let mut v = Vec::new();
    if a.crop_pad > 0 {
        v.push(format!("crop:{}", a.crop_pad));
    }
    if a.flip {
        v.push("flip".into());
    }
    if v.is_empty() {
        "none".into()
    } else {
        v.join(",")
    }
}

// ───────────────────────────── report ─────────────────────────────

/// A pipeline stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageKind {
    /// Distillation of the student from the teacher.
    Distill,
    /// Post-training quantization and its evaluation.
    Ptq,
    /// Quantization-aware training and its evaluation.
    Qat,
}

impl StageKind {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            StageKind::Distill => "distill",
            StageKind::Ptq => "ptq",
            StageKind::Qat => "qat",
        }
    }
}

/// One epoch of a training stage.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CurvePoint {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss.
    pub loss: f64,
    /// Training top-1 (percent).
    pub train_acc: f64,
    /// Validation top-1 (percent; fake-quant for QAT).
    pub val_acc: Option<f64>,
    /// Validation cross-entropy (distillation only).
    pub val_loss: Option<f64>,
    /// Learning rate at the end of the epoch.
    pub lr: f32,
    /// Seconds of the training steps.
    pub seconds: f64,
    /// Training images per second.
    pub images_per_sec: f64,
    /// Mean feature-mimicking loss (distillation with `mimic`; 0 otherwise).
    pub mimic_loss: f64,
}

impl From<&EpochReport> for CurvePoint {
    fn from(r: &EpochReport) -> Self {
        CurvePoint {
            epoch: r.epoch,
            loss: r.loss,
            train_acc: r.train_acc,
            val_acc: r.val_acc,
            val_loss: r.val_loss,
            lr: r.lr,
            seconds: r.seconds,
            images_per_sec: r.images_per_sec,
            mimic_loss: r.mimic,
        }
    }
}

/// What one stage of one attempt did.
#[derive(Clone, Debug, PartialEq)]
pub struct StageRecord {
    /// Which stage.
    pub kind: StageKind,
    /// Its settings, one line.
    pub settings: String,
    /// The attempt (1-based) whose identical result was reused instead of running it again.
    pub reused_from: Option<usize>,
    /// Wall seconds of the stage (0 when reused), test-set evaluation excluded.
    pub seconds: f64,
    /// Wall seconds of the test-set evaluation.
    pub eval_seconds: f64,
    /// Distillation: seconds spent computing the teacher's soft targets (part of `seconds`).
    pub teacher_seconds: f64,
    /// FP32 top-1 of the distilled student on the validation data.
    pub fp32_val: Option<f64>,
    /// INT8 top-1 of the emitted bytes on the validation data (through `temper-runtime`).
    pub int8_val: Option<f64>,
    /// FP32 top-1 on the test data.
    pub fp32_test: Option<f64>,
    /// INT8 top-1 on the test data.
    pub int8_test: Option<f64>,
    /// Size in bytes (FP32 ONNX of the distilled student; `.tmf` for PTQ/QAT).
    pub size_bytes: Option<usize>,
    /// Per-epoch curves (training stages).
    pub curves: Vec<CurvePoint>,
    /// Per-layer SQNR (PTQ).
    pub layers: Vec<LayerError>,
    /// Chosen observer and every observer tried (PTQ).
    pub observers: Vec<(String, f64)>,
    /// Chosen observer (PTQ).
    pub observer: Option<String>,
    /// The gate's verdict: `None` = no gate at this stage, `Some(empty)` = passed, else the
    /// reasons it failed.
    pub gate_failures: Option<Vec<String>>,
    /// Extra facts (agreement of QAT file and fake-quant model, …).
    pub notes: Vec<String>,
    /// The error that stopped the stage.
    pub error: Option<String>,
}

impl StageRecord {
    fn new(kind: StageKind, settings: String) -> StageRecord {
        StageRecord {
            kind,
            settings,
            reused_from: None,
            seconds: 0.0,
            eval_seconds: 0.0,
            teacher_seconds: 0.0,
            fp32_val: None,
            int8_val: None,
            fp32_test: None,
            int8_test: None,
            size_bytes: None,
            curves: Vec::new(),
            layers: Vec::new(),
            observers: Vec::new(),
            observer: None,
            gate_failures: None,
            notes: Vec::new(),
            error: None,
        }
    }

    /// Whether the gate passed at this stage.
    pub fn passed(&self) -> bool {
        self.gate_failures.as_ref().is_some_and(|f| f.is_empty())
    }

    fn verdict(&self) -> String {
        if let Some(e) = &self.error {
            return format!("ERROR: {e}");
        }
        match &self.gate_failures {
            None => "–".into(),
            Some(f) if f.is_empty() => "PASS".into(),
            Some(f) => format!("FAIL: {}", f.join("; ")),
        }
    }
}

/// One attempt: the base settings or a fallback.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptRecord {
    /// 1-based.
    pub index: usize,
    /// `None` for the base settings, else the fallback.
    pub fallback: Option<Fallback>,
    /// The stages run, in order.
    pub stages: Vec<StageRecord>,
    /// Whether this attempt produced the emitted model.
    pub passed: bool,
}

impl AttemptRecord {
    /// "base settings" or the fallback's overrides.
    pub fn label(&self) -> String {
        match &self.fallback {
            None => "base settings".into(),
            Some(f) => format!("fallback {}: {}", self.index - 1, f.describe()),
        }
    }

    /// One line: what the attempt reached.
    pub fn outcome_line(&self) -> String {
        let parts: Vec<String> = self
            .stages
            .iter()
            .map(|s| {
                let acc = match (s.fp32_val, s.int8_val) {
                    (_, Some(q)) => format!(" INT8 {q:.2}%"),
                    (Some(f), None) => format!(" FP32 {f:.2}%"),
                    _ => String::new(),
                };
                let v = s.verdict();
                let v = if v == "–" { String::new() } else { format!(" → {v}") };
                format!("{}{acc}{v}", s.kind.name())
            })
            .collect();
        format!("attempt {} ({}): {}", self.index, self.label(), parts.join(", "))
    }
}

/// The report of a pipeline run.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineReport {
    /// Every attempt made, in order.
    pub attempts: Vec<AttemptRecord>,
    /// Attempts listed but not needed (an earlier one passed).
    pub skipped: Vec<Fallback>,
    /// The emitted model (`None` when every attempt failed).
    pub emitted: Option<PathBuf>,
    /// The emitted model's size.
    pub emitted_size: Option<usize>,
    /// The distilled FP32 student written beside it (ONNX).
    pub emitted_fp32: Option<PathBuf>,
    /// The gate, as text.
    pub gate: String,
    /// Teacher file and its FP32 top-1 on the validation data (and test data).
    pub teachers: Vec<(String, f64, Option<f64>)>,
    /// Data specs and sizes: train, val, test.
    pub data: Vec<(String, String, usize)>,
    /// Source size of the student ONNX (base settings), for the size ratio.
    pub student_onnx_size: Option<u64>,
    /// Total wall seconds.
    pub seconds: f64,
    /// Wall seconds loading data and teachers.
    pub setup_seconds: f64,
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |x| format!("{x:.2}%"))
}

fn bytes_str(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{out} B")
}

fn drop_str(s: &StageRecord, fp32: Option<f64>) -> String {
    match (fp32, s.int8_val) {
        (Some(f), Some(q)) => format!("{:+.2}", q - f),
        _ => "–".into(),
    }
}

impl PipelineReport {
    /// Whether a model was emitted.
    pub fn passed(&self) -> bool {
        self.emitted.is_some()
    }

    fn fp32_of(a: &AttemptRecord) -> Option<f64> {
        a.stages.iter().find(|s| s.kind == StageKind::Distill).and_then(|s| s.fp32_val)
    }

    /// The final table for the terminal.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "\n══ temper pipeline ══");
        for (spec, what, n) in &self.data {
            let _ = writeln!(s, "{what:<6} {spec} ({n} images)");
        }
        for (t, v, te) in &self.teachers {
            let _ = writeln!(s, "teacher {t}: FP32 {v:.2}% validation{}", te.map_or(String::new(), |x| format!(", {x:.2}% test")));
        }
        let _ = writeln!(s, "gate   {}", self.gate);
        for a in &self.attempts {
            let _ = writeln!(s, "\nattempt {} — {}", a.index, a.label());
            let fp = Self::fp32_of(a);
            let _ = writeln!(
                s,
                "  {:<8} {:>9} {:>9} {:>6} {:>9} {:>9} {:>12} {:>8}  gate",
                "stage", "FP32 val", "INT8 val", "Δ", "FP32 test", "INT8 test", "size", "time"
            );
            for st in &a.stages {
                let time = match st.reused_from {
                    Some(i) => format!("=att.{i}"),
                    None => format!("{:.1} s", st.seconds + st.eval_seconds),
                };
                let _ = writeln!(
                    s,
                    "  {:<8} {:>9} {:>9} {:>6} {:>9} {:>9} {:>12} {:>8}  {}",
                    st.kind.name(),
                    pct(st.fp32_val),
                    pct(st.int8_val),
                    drop_str(st, fp),
                    pct(st.fp32_test),
                    pct(st.int8_test),
                    st.size_bytes.map_or("–".into(), bytes_str),
                    time,
                    st.verdict()
                );
                let _ = writeln!(s, "           {}", st.settings);
            }
        }
        for f in &self.skipped {
            let _ = writeln!(s, "\nnot needed: fallback {} ({})", f.describe(), f.origin);
        }
        let _ = writeln!(s);
        match (&self.emitted, self.emitted_size) {
            (Some(p), Some(n)) => {
                let ratio = self.student_onnx_size.map_or(String::new(), |o| {
                    format!(" ({:.1} % of the FP32 ONNX student, {})", 100.0 * n as f64 / o as f64, bytes_str(o as usize))
                });
                let _ = writeln!(s, "PASSED: wrote {} — {}{ratio}", p.display(), bytes_str(n));
            }
            _ => {
                let _ = writeln!(s, "FAILED: no attempt met the gate; no model written");
            }
        }
        let _ = writeln!(s, "total time {:.1} s ({:.0}:{:02.0})", self.seconds, (self.seconds / 60.0).floor(), self.seconds % 60.0);
        s
    }

    /// Markdown report.
    pub fn to_markdown(&self) -> String {
        let mut s = String::from("# temper pipeline report\n\n");
        match (&self.emitted, self.emitted_size) {
            (Some(p), Some(n)) => {
                let _ = writeln!(s, "**PASSED** — emitted `{}` ({}).", p.display(), bytes_str(n));
            }
            _ => {
                let _ = writeln!(s, "**FAILED** — no attempt met the gate; no model was written.");
            }
        }
        if let Some(p) = &self.emitted_fp32 {
            let _ = writeln!(s, "The distilled FP32 student is beside it: `{}`.", p.display());
        }
        let _ = writeln!(s, "\n- gate: {}", self.gate);
        for (spec, what, n) in &self.data {
            let _ = writeln!(s, "- {what}: `{spec}` ({n} images)");
        }
        for (t, v, te) in &self.teachers {
            let _ = writeln!(s, "- teacher `{t}`: FP32 {v:.2}% validation{}", te.map_or(String::new(), |x| format!(", {x:.2}% test")));
        }
        if let Some(o) = self.student_onnx_size {
            let _ = writeln!(s, "- student FP32 ONNX source: {}", bytes_str(o as usize));
        }
        let _ = writeln!(s, "- total time: {:.1} s (data and teacher loading {:.1} s)", self.seconds, self.setup_seconds);
        let _ = writeln!(s, "\n## Attempts\n");
        let _ = writeln!(s, "| attempt | stage | FP32 val | INT8 val | Δ INT8−FP32 | FP32 test | INT8 test | size | time (s) | gate |");
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
        for a in &self.attempts {
            let fp = Self::fp32_of(a);
            for st in &a.stages {
                let time = match st.reused_from {
                    Some(i) => format!("reused from attempt {i}"),
                    None => format!("{:.1}", st.seconds + st.eval_seconds),
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {time} | {} |",
                    a.index,
                    st.kind.name(),
                    pct(st.fp32_val),
                    pct(st.int8_val),
                    drop_str(st, fp),
                    pct(st.fp32_test),
                    pct(st.int8_test),
                    st.size_bytes.map_or("–".into(), bytes_str),
                    st.verdict().replace('|', "\\|")
                );
            }
        }
        for f in &self.skipped {
            let _ = writeln!(s, "\nNot needed (an earlier attempt passed): fallback `{}` ({}).", f.describe(), f.origin);
        }
        for a in &self.attempts {
            let origin = a.fallback.as_ref().map_or(String::new(), |f| format!(" (given at {})", f.origin));
            let _ = writeln!(s, "\n## Attempt {}: {}{origin}\n", a.index, a.label());
            for st in &a.stages {
                let _ = writeln!(s, "### {} — {}\n", st.kind.name(), st.settings);
                if let Some(i) = st.reused_from {
                    let _ = writeln!(s, "Same settings as attempt {i}: its result is reused.\n");
                    continue;
                }
                let mut t = format!("time {:.1} s", st.seconds);
                if st.teacher_seconds > 0.0 {
                    let _ = write!(t, " (teacher soft targets {:.1} s)", st.teacher_seconds);
                }
                if st.eval_seconds > 0.0 {
                    let _ = write!(t, ", test-set evaluation {:.1} s", st.eval_seconds);
                }
                let _ = writeln!(s, "{t}.\n");
                if let Some(e) = &st.error {
                    let _ = writeln!(s, "**Error:** {e}\n");
                }
                for n in &st.notes {
                    let _ = writeln!(s, "- {n}");
                }
                if !st.notes.is_empty() {
                    s.push('\n');
                }
                if !st.curves.is_empty() {
                    let _ = writeln!(
                        s,
                        "| epoch | loss | train acc | val acc | val loss | lr | s | img/s |\n|---:|---:|---:|---:|---:|---:|---:|---:|"
                    );
                    for c in &st.curves {
                        let _ = writeln!(
                            s,
                            "| {} | {:.4} | {:.2}% | {} | {} | {:.2e} | {:.1} | {:.0} |",
                            c.epoch,
                            c.loss,
                            c.train_acc,
                            pct(c.val_acc),
                            c.val_loss.map_or("–".into(), |l| format!("{l:.4}")),
                            c.lr,
                            c.seconds,
                            c.images_per_sec
                        );
                    }
                    s.push('\n');
                }
                if !st.observers.is_empty() {
                    let tried: Vec<String> = st.observers.iter().map(|(o, a)| format!("{o} {a:.2}%")).collect();
                    let _ = writeln!(
                        s,
                        "Observers (INT8 validation top-1): {}; chosen: {}.\n",
                        tried.join(", "),
                        st.observer.as_deref().unwrap_or("?")
                    );
                }
                if !st.layers.is_empty() {
                    let _ = writeln!(s, "| layer | op | SQNR (dB) |\n|---|---|---:|");
                    for l in &st.layers {
                        let _ = writeln!(s, "| {} | {} | {:.1} |", l.name, l.op, l.sqnr_db);
                    }
                    s.push('\n');
                }
            }
        }
        s
    }

    /// JSON report.
    pub fn to_json(&self) -> String {
        let stage = |st: &StageRecord| {
            J::Obj(vec![
                ("stage", J::s(st.kind.name())),
                ("settings", J::s(&st.settings)),
                ("reused_from_attempt", st.reused_from.map_or(J::Null, |i| J::N(i as f64))),
                ("seconds", J::N(st.seconds)),
                ("test_eval_seconds", J::N(st.eval_seconds)),
                ("teacher_soft_target_seconds", J::N(st.teacher_seconds)),
                ("fp32_val", J::opt(st.fp32_val)),
                ("int8_val", J::opt(st.int8_val)),
                ("fp32_test", J::opt(st.fp32_test)),
                ("int8_test", J::opt(st.int8_test)),
                ("size_bytes", st.size_bytes.map_or(J::Null, |n| J::N(n as f64))),
                ("observer", st.observer.as_deref().map_or(J::Null, J::s)),
                (
                    "observers_tried",
                    J::Arr(st.observers.iter().map(|(o, a)| J::Obj(vec![("observer", J::s(o)), ("int8_val", J::N(*a))])).collect()),
                ),
                (
                    "gate",
                    match &st.gate_failures {
                        None => J::Null,
                        Some(f) => J::Obj(vec![("passed", J::B(f.is_empty())), ("failures", J::Arr(f.iter().map(|x| J::s(x)).collect()))]),
                    },
                ),
                (
                    "curves",
                    J::Arr(
                        st.curves
                            .iter()
                            .map(|c| {
                                J::Obj(vec![
                                    ("epoch", J::N(c.epoch as f64)),
                                    ("loss", J::N(c.loss)),
                                    ("train_acc", J::N(c.train_acc)),
                                    ("val_acc", J::opt(c.val_acc)),
                                    ("val_loss", J::opt(c.val_loss)),
                                    ("lr", J::N(c.lr as f64)),
                                    ("seconds", J::N(c.seconds)),
                                    ("images_per_sec", J::N(c.images_per_sec)),
                                    ("mimic_loss", J::N(c.mimic_loss)),
                                ])
                            })
                            .collect(),
                    ),
                ),
                (
                    "layers",
                    J::Arr(
                        st.layers
                            .iter()
                            .map(|l| J::Obj(vec![("name", J::s(&l.name)), ("op", J::s(&l.op)), ("sqnr_db", J::N(l.sqnr_db))]))
                            .collect(),
                    ),
                ),
                ("notes", J::Arr(st.notes.iter().map(|x| J::s(x)).collect())),
                ("error", st.error.as_deref().map_or(J::Null, J::s)),
            ])
        };
        let attempts = self
            .attempts
            .iter()
            .map(|a| {
                J::Obj(vec![
                    ("attempt", J::N(a.index as f64)),
                    ("fallback", a.fallback.as_ref().map_or(J::Null, |f| J::s(&f.describe()))),
                    ("origin", a.fallback.as_ref().map_or(J::Null, |f| J::s(&f.origin))),
                    ("passed", J::B(a.passed)),
                    ("stages", J::Arr(a.stages.iter().map(stage).collect())),
                ])
            })
            .collect();
        let root = J::Obj(vec![
            ("passed", J::B(self.passed())),
            ("emitted", self.emitted.as_ref().map_or(J::Null, |p| J::s(&p.display().to_string()))),
            ("emitted_size_bytes", self.emitted_size.map_or(J::Null, |n| J::N(n as f64))),
            ("emitted_fp32_onnx", self.emitted_fp32.as_ref().map_or(J::Null, |p| J::s(&p.display().to_string()))),
            ("student_onnx_size_bytes", self.student_onnx_size.map_or(J::Null, |n| J::N(n as f64))),
            ("gate", J::s(&self.gate)),
            (
                "teachers",
                J::Arr(
                    self.teachers
                        .iter()
                        .map(|(t, v, te)| J::Obj(vec![("model", J::s(t)), ("fp32_val", J::N(*v)), ("fp32_test", J::opt(*te))]))
                        .collect(),
                ),
            ),
            (
                "data",
                J::Arr(
                    self.data
                        .iter()
                        .map(|(spec, w, n)| J::Obj(vec![("split", J::s(w)), ("spec", J::s(spec)), ("images", J::N(*n as f64))]))
                        .collect(),
                ),
            ),
            ("attempts", J::Arr(attempts)),
            ("skipped_fallbacks", J::Arr(self.skipped.iter().map(|f| J::s(&f.describe())).collect())),
            ("setup_seconds", J::N(self.setup_seconds)),
            ("seconds", J::N(self.seconds)),
        ]);
        let mut out = String::new();
        root.write(&mut out, 0);
        out.push('\n');
        out
    }

    /// SVG: for every training stage, loss and accuracy per epoch; then per-layer SQNR of every
    /// PTQ run.
    pub fn to_svg(&self) -> String {
        let (w, ph) = (900.0, 230.0);
        let mut body = String::new();
        let mut y = 40.0;
        for a in &self.attempts {
            for st in a.stages.iter().filter(|s| !s.curves.is_empty() && s.reused_from.is_none()) {
                let _ = writeln!(
                    body,
                    "<text x=\"10\" y=\"{}\" font-weight=\"bold\">attempt {} · {} — {}</text>",
                    y + 14.0,
                    a.index,
                    st.kind.name(),
                    xml(&trim(&st.settings, 120))
                );
                let ep: Vec<f64> = st.curves.iter().map(|c| c.epoch as f64).collect();
                let mut loss =
                    vec![("train loss (total)", "#1f77b4", ep.iter().zip(&st.curves).map(|(e, c)| (*e, c.loss)).collect::<Vec<_>>())];
                let vl: Vec<(f64, f64)> = ep.iter().zip(&st.curves).filter_map(|(e, c)| c.val_loss.map(|v| (*e, v))).collect();
                if !vl.is_empty() {
                    loss.push(("val loss (CE)", "#ff7f0e", vl));
                }
                let mut acc =
                    vec![("train acc %", "#2ca02c", ep.iter().zip(&st.curves).map(|(e, c)| (*e, c.train_acc)).collect::<Vec<_>>())];
                let va: Vec<(f64, f64)> = ep.iter().zip(&st.curves).filter_map(|(e, c)| c.val_acc.map(|v| (*e, v))).collect();
                if !va.is_empty() {
                    acc.push((if st.kind == StageKind::Qat { "val acc % (fake-quant)" } else { "val acc %" }, "#d62728", va));
                }
                line_chart(&mut body, 10.0, y + 24.0, w / 2.0 - 20.0, ph - 40.0, "loss", &loss);
                line_chart(&mut body, w / 2.0 + 10.0, y + 24.0, w / 2.0 - 20.0, ph - 40.0, "accuracy (%)", &acc);
                y += ph + 10.0;
            }
        }
        for a in &self.attempts {
            for st in a.stages.iter().filter(|s| !s.layers.is_empty() && s.reused_from.is_none()) {
                let _ = writeln!(body, "<text x=\"10\" y=\"{}\" font-weight=\"bold\">attempt {} · per-layer SQNR (dB, INT8 runtime vs FP32), observer {}</text>", y + 14.0, a.index, xml(st.observer.as_deref().unwrap_or("?")));
                y += 24.0;
                let max = st.layers.iter().map(|l| l.sqnr_db).filter(|v| v.is_finite()).fold(10.0f64, f64::max);
                for l in &st.layers {
                    let bw = (l.sqnr_db.max(0.0).min(max) / max) * 500.0;
                    let color = if l.sqnr_db < 20.0 {
                        "#d62728"
                    } else if l.sqnr_db < 30.0 {
                        "#ff7f0e"
                    } else {
                        "#2ca02c"
                    };
                    let _ = writeln!(
                        body,
                        "<text x=\"10\" y=\"{}\">{}</text><rect x=\"260\" y=\"{y}\" width=\"{bw:.1}\" height=\"16\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{}\">{:.1}</text>",
                        y + 12.0,
                        xml(&trim(&l.name, 36)),
                        265.0 + bw,
                        y + 12.0,
                        l.sqnr_db
                    );
                    y += 20.0;
                }
                y += 10.0;
            }
        }
        // Time per stage (reused stages take no time and are not drawn).
        let times: Vec<(String, f64)> = std::iter::once(("setup (data, teachers)".to_string(), self.setup_seconds))
            .chain(self.attempts.iter().flat_map(|a| {
                a.stages
                    .iter()
                    .filter(|s| s.reused_from.is_none())
                    .map(move |s| (format!("attempt {} · {}", a.index, s.kind.name()), s.seconds + s.eval_seconds))
            }))
            .collect();
        let tmax = times.iter().map(|t| t.1).fold(1.0f64, f64::max);
        let _ =
            writeln!(body, "<text x=\"10\" y=\"{}\" font-weight=\"bold\">time per stage (s), total {:.1} s</text>", y + 14.0, self.seconds);
        y += 24.0;
        for (name, secs) in &times {
            let bw = secs / tmax * 500.0;
            let _ = writeln!(
                body,
                "<text x=\"10\" y=\"{}\">{}</text><rect x=\"260\" y=\"{y}\" width=\"{bw:.1}\" height=\"16\" fill=\"#9467bd\"/><text x=\"{:.1}\" y=\"{}\">{secs:.1}</text>",
                y + 12.0,
                xml(name),
                265.0 + bw,
                y + 12.0
            );
            y += 20.0;
        }
        let title = if self.passed() { "temper pipeline — PASSED" } else { "temper pipeline — FAILED (no model written)" };
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{title}</text>\n{body}</svg>\n",
            y + 10.0
        )
    }
}

fn trim(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// A line chart with a frame, 4 horizontal grid lines with labels, epoch ticks and a legend.
fn line_chart(s: &mut String, x0: f64, y0: f64, w: f64, h: f64, title: &str, series: &[Series]) {
    let pts = series.iter().flat_map(|x| x.2.iter()).filter(|p| p.1.is_finite());
    let (mut lo, mut hi, mut emax) = (f64::INFINITY, f64::NEG_INFINITY, 1.0f64);
    for &(e, v) in pts {
        lo = lo.min(v);
        hi = hi.max(v);
        emax = emax.max(e);
    }
    if !lo.is_finite() {
        return;
    }
    let pad = ((hi - lo) * 0.08).max(1e-3);
    let (lo, hi) = (lo - pad, hi + pad);
    let (l, r, t, b) = (x0 + 50.0, x0 + w - 10.0, y0 + 18.0, y0 + h - 22.0);
    let xs = |e: f64| if emax > 1.0 { l + (e - 1.0) / (emax - 1.0) * (r - l) } else { (l + r) / 2.0 };
    let ys = |v: f64| b - (v - lo) / (hi - lo) * (b - t);
    let _ = writeln!(s, "<text x=\"{l}\" y=\"{}\">{}</text>", y0 + 12.0, xml(title));
    let _ = writeln!(s, "<rect x=\"{l}\" y=\"{t}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>", r - l, b - t);
    for i in 0..=4 {
        let v = lo + (hi - lo) * i as f64 / 4.0;
        let yy = ys(v);
        let _ = writeln!(
            s,
            "<line x1=\"{l}\" y1=\"{yy:.1}\" x2=\"{r}\" y2=\"{yy:.1}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"10\">{}</text>",
            l - 4.0,
            yy + 3.0,
            if hi - lo > 10.0 {
                format!("{v:.1}")
            } else if hi - lo > 1.0 {
                format!("{v:.2}")
            } else {
                format!("{v:.3}")
            }
        );
    }
    let step = (emax / 10.0).ceil().max(1.0) as usize;
    for e in (1..=emax as usize).step_by(step) {
        let xx = xs(e as f64);
        let _ = writeln!(s, "<text x=\"{xx:.1}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\">{e}</text>", b + 13.0);
    }
    let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"10\">epoch</text>", r, b + 22.0);
    for (k, (name, color, p)) in series.iter().enumerate() {
        let poly: Vec<String> = p.iter().filter(|q| q.1.is_finite()).map(|&(e, v)| format!("{:.1},{:.1}", xs(e), ys(v))).collect();
        let _ = writeln!(s, "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>", poly.join(" "));
        for &(e, v) in p.iter().filter(|q| q.1.is_finite()) {
            let _ = writeln!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"><title>{name} epoch {e}: {v:.4}</title></circle>",
                xs(e),
                ys(v)
            );
        }
        let lx = l + 8.0 + k as f64 * 170.0;
        let _ = writeln!(
            s,
            "<rect x=\"{lx}\" y=\"{}\" width=\"10\" height=\"3\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\" font-size=\"10\">{}</text>",
            t + 8.0,
            lx + 14.0,
            t + 12.0,
            xml(name)
        );
    }
}

/// A tiny JSON value (no dependency).
enum J {
    Null,
    B(bool),
    N(f64),
    S(String),
    Arr(Vec<J>),
    Obj(Vec<(&'static str, J)>),
}

impl J {
    fn s(v: &str) -> J {
        J::S(v.to_string())
    }
    fn opt(v: Option<f64>) -> J {
        v.map_or(J::Null, J::N)
    }
    fn write(&self, out: &mut String, ind: usize) {
        match self {
            J::Null => out.push_str("null"),
            J::B(b) => out.push_str(if *b { "true" } else { "false" }),
            J::N(v) if !v.is_finite() => out.push_str("null"),
            J::N(v) if v.fract() == 0.0 && v.abs() < 1e15 => {
                let _ = write!(out, "{}", *v as i64);
            }
            J::N(v) => {
                let _ = write!(out, "{v:.4}");
            }
            J::S(s) => {
                out.push('"');
                out.push_str(&crate::report::esc(s));
                out.push('"');
            }
            J::Arr(v) if v.is_empty() => out.push_str("[]"),
            J::Arr(v) => {
                out.push('[');
                for (i, x) in v.iter().enumerate() {
                    out.push_str(if i == 0 { "\n" } else { ",\n" });
                    out.push_str(&"  ".repeat(ind + 1));
                    x.write(out, ind + 1);
                }
                out.push('\n');
                out.push_str(&"  ".repeat(ind));
                out.push(']');
            }
            J::Obj(v) => {
                out.push('{');
                for (i, (k, x)) in v.iter().enumerate() {
                    out.push_str(if i == 0 { "\n" } else { ",\n" });
                    out.push_str(&"  ".repeat(ind + 1));
                    let _ = write!(out, "\"{k}\": ");
                    x.write(out, ind + 1);
                }
                out.push('\n');
                out.push_str(&"  ".repeat(ind));
                out.push('}');
            }
        }
    }
}

// ───────────────────────────── the run ─────────────────────────────

/// What [`run`] produced.
#[derive(Clone, Debug)]
pub struct PipelineOutcome {
    /// The report (also written to [`PipelineOutcome::report_files`]).
    pub report: PipelineReport,
    /// The report files written (Markdown, JSON, SVG).
    pub report_files: Vec<PathBuf>,
}

impl PipelineOutcome {
    /// Whether a model passed the gate and was written.
    pub fn passed(&self) -> bool {
        self.report.passed()
    }
}

struct Distilled {
    settings: DistillSettings,
    attempt: usize,
    /// Trained graph, BatchNorm unfused (what QAT takes).
    unfused: Graph,
    /// BatchNorm folded, activations fused (what PTQ and export take).
    folded: Graph,
    fp32_val: f64,
    fp32_test: Option<f64>,
    onnx_size: Option<usize>,
}

struct PtqDone {
    distill: DistillSettings,
    ptq: PtqSettings,
    attempt: usize,
    bytes: Vec<u8>,
    record: StageRecord,
}

struct Candidate {
    bytes: Vec<u8>,
    folded: Graph,
}

struct Ctx<'a> {
    train: &'a Dataset,
    val: &'a Dataset,
    test: Option<&'a Dataset>,
    norm: Normalize,
    threads: usize,
    progress: bool,
    max_steps: Option<usize>,
    teachers: Vec<(PathBuf, Net)>,
    calib: Vec<(String, Dataset)>,
    distilled: Vec<Distilled>,
    ptq_done: Vec<PtqDone>,
    metadata: Vec<(String, String)>,
    teacher_cache: PathBuf,
}

fn say(progress: bool, msg: &str) {
    if progress {
        eprintln!("{msg}");
    }
}

fn gate(cfg: &PipelineConfig, fp32: f64, int8: f64) -> Vec<String> {
    crate::ptq::gate_failures(cfg.max_drop, cfg.min_accuracy, fp32, int8)
}

fn load_teacher(path: &Path, threads: usize) -> Result<Net, String> {
    let mut g = onnx::load_onnx(path, None).map_err(|e| format!("teacher {}: {e}", path.display()))?;
    passes::optimize(&mut g).map_err(|e| format!("teacher {}: {e}", path.display()))?;
    Net::new(g, threads).map_err(|e| format!("teacher {}: {e}", path.display()))
}

fn load_student(src: &StudentSource, ds: &Dataset, seed: u64) -> Result<Graph, String> {
    match src {
        StudentSource::Onnx(p) => {
            let mut g = onnx::load_onnx(p, None).map_err(|e| format!("student {}: {e}", p.display()))?;
            prepare_for_training(&mut g).map_err(|e| format!("student {}: {e}", p.display()))?;
            Ok(g)
        }
        StudentSource::Arch(name) => {
            let [_, c, h, w] = ds.shape;
            arch::build(name, c, h, w, ds.num_classes, seed)
        }
    }
}

fn distill_stage(cx: &mut Ctx, cfg: &PipelineConfig, attempt: usize, rec: &mut StageRecord) -> Result<usize, String> {
    let d = &cfg.distill;
    if let Some(i) = cx.distilled.iter().position(|x| x.settings == *d) {
        let x = &cx.distilled[i];
        rec.reused_from = Some(x.attempt);
        rec.fp32_val = Some(x.fp32_val);
        rec.fp32_test = x.fp32_test;
        rec.size_bytes = x.onnx_size;
        say(cx.progress, &format!("  same distillation settings as attempt {}: reusing its student", x.attempt));
        return Ok(i);
    }
    let t0 = Instant::now();
    let ckpt = match &cfg.checkpoint_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("checkpoint-dir {}: {e}", dir.display()))?;
            Some(dir.join(format!("distill-{:016x}.npz", distill_fingerprint(cfg))))
        }
        None => None,
    };
    let mut teachers = Vec::new();
    for (i, tpath) in d.teachers.iter().enumerate() {
        let net = match cx.teachers.iter().find(|t| t.0 == *tpath) {
            Some(t) => t.1.clone(),
            None => load_teacher(tpath, cx.threads)?,
        };
        let weight = d.teacher_weights.as_ref().and_then(|w| w.get(i).copied()).unwrap_or(1.0);
        teachers.push(Teacher { name: file_label(tpath), net, weight });
    }
    if teachers.is_empty() {
        return Err("missing teacher".into());
    }
    let graph = load_student(&d.student, cx.train, d.seed)?;
    let mut net = Net::new(graph, cx.threads).map_err(|e| format!("student {}: {e}", d.student.label()))?;
    say(
        cx.progress,
        &format!(
            "  student {}: {} trainable parameters; teacher{} {}",
            d.student.label(),
            net.num_trainable(),
            if teachers.len() > 1 { "s" } else { "" },
            teachers.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
    );
    let kd = KdConfig {
        temperature: d.temperature,
        alpha: d.alpha,
        schedule: d.schedule(),
        mimic: d.mimic.clone(),
        mimic_weight: d.mimic_weight,
    };
    let mut distiller = Distiller::new(teachers, kd).map_err(|e| e.to_string())?;
    if d.teacher_weights.is_none() {
        let accs = distiller.weigh_by_accuracy(cx.val, &cx.norm).map_err(|e| e.to_string())?;
        let w: Vec<String> = distiller.teachers.iter().zip(&accs).map(|(t, a)| format!("{} {a:.2}% → {:.3}", t.name, t.weight)).collect();
        rec.notes.push(format!("teacher weights by validation accuracy: {}", w.join(", ")));
    }
    distiller.attach_mimic(&net, d.optimizer, d.seed).map_err(|e| e.to_string())?;
    distiller.cache_file = Some(cx.teacher_cache.clone());
    let tc = TrainConfig {
        epochs: d.epochs,
        batch: d.batch,
        optimizer: d.optimizer,
        weight_decay: d.weight_decay,
        schedule: Schedule { base_lr: d.lr, kind: ScheduleKind::Cosine { min_lr: d.min_lr }, warmup_steps: 0 },
        warmup_epochs: d.warmup,
        seed: d.seed,
        augment: d.augment,
        norm: cx.norm.clone(),
        threads: cx.threads,
        bn_momentum: 0.1,
        checkpoint: ckpt.clone(),
        resume: ckpt.clone().filter(|p| p.is_file()),
        max_steps_per_epoch: cx.max_steps,
        progress: cx.progress,
    };
    if cx.progress && d.augment.crop_pad == 0 {
        eprintln!("  teacher soft targets for {} training images: computed once, or read from the teacher cache …", cx.train.len());
    }
    if let Some(p) = &tc.resume {
        rec.notes.push(format!("resumed from checkpoint {}", p.display()));
    }
    let epochs = d.epochs;
    let progress = cx.progress;
    let result = train(&mut net, cx.train, Some(cx.val), &tc, Some(&mut distiller), &mut |r| {
        rec.curves.push(CurvePoint::from(r));
        if progress {
            eprintln!("  {}", r.line(epochs));
        }
    });
    let tr = match result {
        Ok(r) => r,
        Err(e) => {
            rec.seconds = t0.elapsed().as_secs_f64();
            return Err(e.to_string());
        }
    };
    rec.teacher_seconds = tr.teacher_cache_seconds;
    if distiller.cache_loaded {
        rec.notes.push(format!("teacher logits read from {}", cx.teacher_cache.display()));
    } else if !distiller.cached() {
        let why = if d.mimic.is_empty() { "augmentation with crops" } else { "feature mimicking needs teacher activations" };
        rec.notes.push(format!("teacher run on every batch ({why}: soft targets cannot be cached)"));
    }
    let unfused = net.to_graph();
    let folded = net.export_graph().map_err(|e| e.to_string())?;
    let onnx_size = export::to_onnx(&folded).ok().map(|b| b.len());
    let fp32_val = match tr.epochs.last().and_then(|e| e.val_acc) {
        Some(a) => a,
        // resumed after the last epoch: no epoch ran, evaluate the restored student
        None => evaluate(&net, cx.val, &cx.norm, 500).map_err(|e| format!("FP32 validation: {e}"))?.0,
    };
    rec.seconds = t0.elapsed().as_secs_f64();
    rec.fp32_val = Some(fp32_val);
    rec.size_bytes = onnx_size;
    if let Some(test) = cx.test {
        let t1 = Instant::now();
        let acc = fp32_accuracy(&folded, test, &cx.norm).map_err(|e| format!("FP32 test evaluation: {e}"))?;
        rec.fp32_test = Some(acc.top1);
        rec.eval_seconds = t1.elapsed().as_secs_f64();
    }
    for (tpath, t) in d.teachers.iter().zip(distiller.teachers.drain(..)) {
        if !cx.teachers.iter().any(|c| c.0 == *tpath) {
            cx.teachers.push((tpath.clone(), t.net));
        }
    }
    cx.distilled.push(Distilled { settings: d.clone(), attempt, unfused, folded, fp32_val, fp32_test: rec.fp32_test, onnx_size });
    Ok(cx.distilled.len() - 1)
}

/// What a distillation checkpoint depends on: the distillation settings, the data and its
/// normalization, and the step limit (FNV-1a of their debug text).
fn distill_fingerprint(cfg: &PipelineConfig) -> u64 {
    let norm = cfg.norm();
    let text =
        format!("{:?}|{}|{}|{:?}|{:?}|{}|{:?}", cfg.distill, cfg.train, cfg.val, norm.mean, norm.std, cfg.pixel_scale, cfg.max_steps);
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Load the calibration data of `spec` once (`None` = the training data); returns its index in
/// `cx.calib`, `None` for the training data.
fn calib_index(cx: &mut Ctx, spec: &Option<String>) -> Result<Option<usize>, String> {
    let Some(spec) = spec else { return Ok(None) };
    if let Some(i) = cx.calib.iter().position(|c| c.0 == *spec) {
        return Ok(Some(i));
    }
    let ds = load_dataset(spec).map_err(|e| format!("calib {spec}: {e}"))?;
    cx.calib.push((spec.clone(), ds));
    Ok(Some(cx.calib.len() - 1))
}

fn ptq_stage(cx: &mut Ctx, cfg: &PipelineConfig, attempt: usize, di: usize, rec: &mut StageRecord) -> Result<Option<Vec<u8>>, String> {
    if let Some(p) = cx.ptq_done.iter().find(|p| p.distill == cfg.distill && p.ptq == cfg.ptq) {
        let mut r = p.record.clone();
        r.reused_from = Some(p.attempt);
        r.gate_failures = Some(gate(cfg, r.fp32_val.unwrap_or(f64::NAN), r.int8_val.unwrap_or(f64::NAN)));
        *rec = r;
        say(cx.progress, &format!("  same PTQ settings as attempt {}: reusing its result", p.attempt));
        return Ok(rec.passed().then(|| p.bytes.clone()));
    }
    let t0 = Instant::now();
    let mut metadata = cx.metadata.clone();
    metadata.push(("pipeline.attempt".into(), attempt.to_string()));
    metadata.push(("pipeline.stage".into(), "ptq".into()));
    metadata.push(("pipeline.distill".into(), cfg.distill.summary()));
    let pc = PtqConfig {
        observers: cfg.ptq.observers.clone(),
        calib_size: cfg.ptq.calib_size,
        bias_correction: cfg.ptq.bias_correction,
        norm: cx.norm.clone(),
        max_drop: cfg.max_drop,
        min_accuracy: cfg.min_accuracy,
        threads: cx.threads,
        layer_samples: 64,
        sensitivity_samples: cfg.ptq.sensitivity_samples,
        metadata,
    };
    let calib = match calib_index(cx, &cfg.ptq.calib)? {
        Some(i) => &cx.calib[i].1,
        None => cx.train,
    };
    let out = quantize(&cx.distilled[di].folded, calib, cx.val, &pc)?;
    let r: &Report = &out.report;
    rec.seconds = t0.elapsed().as_secs_f64();
    rec.fp32_val = Some(r.fp32_accuracy);
    rec.int8_val = Some(r.int8_accuracy);
    rec.fp32_test = cx.distilled[di].fp32_test;
    rec.size_bytes = Some(out.bytes.len());
    rec.layers = r.layers.clone();
    rec.observers = r.observers_tried.clone();
    rec.observer = Some(r.observer.clone());
    rec.gate_failures = Some(r.gate_failures.clone());
    rec.notes.push(format!("top-1 agreement FP32/INT8 on validation: {:.2}%", r.agreement));
    if !r.sensitivity.is_empty() {
        let worst: Vec<String> = r.sensitivity.iter().take(3).map(|l| format!("{} ({:+.2})", l.name, -l.drop)).collect();
        rec.notes.push(format!("most sensitive layers (only that layer quantized, points): {}", worst.join(", ")));
    }
    if let Some(test) = cx.test {
        let t1 = Instant::now();
        let (acc, _) = int8_run(&out.bytes, test, &cx.norm, cx.threads).map_err(|e| format!("INT8 test evaluation: {e}"))?;
        rec.int8_test = Some(acc.top1);
        rec.eval_seconds = t1.elapsed().as_secs_f64();
    }
    cx.ptq_done.push(PtqDone {
        distill: cfg.distill.clone(),
        ptq: cfg.ptq.clone(),
        attempt,
        bytes: out.bytes.clone(),
        record: rec.clone(),
    });
    Ok(out.passed.then_some(out.bytes))
}

fn qat_progress_line(epoch: usize, epochs: usize, step: usize, steps: usize, loss: f64, ips: f64, eta: f64) {
    let width = 24;
    let filled = (step * width).checked_div(steps).unwrap_or(width).min(width);
    let eta = eta.max(0.0) as u64;
    eprint!(
        "\r  qat epoch {epoch}/{epochs} [{}{}] {step}/{steps}  loss {loss:.4}  {ips:.0} img/s  ETA {}:{:02}   ",
        "#".repeat(filled),
        ".".repeat(width - filled),
        eta / 60,
        eta % 60
    );
    let _ = std::io::stderr().flush();
}

fn qat_stage(
    cx: &mut Ctx,
    cfg: &PipelineConfig,
    attempt: usize,
    di: usize,
    fp32_val: f64,
    rec: &mut StageRecord,
) -> Result<Option<Vec<u8>>, String> {
    let t0 = Instant::now();
    let mut metadata = cx.metadata.clone();
    metadata.push(("pipeline.attempt".into(), attempt.to_string()));
    metadata.push(("pipeline.stage".into(), "qat".into()));
    metadata.push(("pipeline.distill".into(), cfg.distill.summary()));
    let qc = QatConfig {
        epochs: cfg.qat.epochs,
        batch: cfg.qat.batch,
        lr: cfg.qat.lr,
        distill_alpha: cfg.qat.distill_alpha,
        seed: cfg.distill.seed,
        threads: cx.threads,
        max_steps_per_epoch: cx.max_steps,
        metadata,
        ..QatConfig::default()
    };
    let progress = cx.progress;
    let mut last = Instant::now();
    let mut cb = |p: &QatProgress| match p {
        QatProgress::Stage(s) if progress => eprintln!("  qat: {s}"),
        QatProgress::Step { epoch, epochs, step, steps, loss, images_per_sec, eta_seconds }
            if progress && (last.elapsed().as_secs_f64() > 0.25 || step == steps) =>
        {
            last = Instant::now();
            qat_progress_line(*epoch, *epochs, *step, *steps, *loss, *images_per_sec, *eta_seconds);
        }
        QatProgress::Epoch(e) => {
            rec.curves.push(CurvePoint {
                epoch: e.epoch,
                loss: e.loss,
                train_acc: e.train_acc,
                val_acc: Some(e.val_acc),
                val_loss: None,
                lr: e.lr,
                seconds: e.seconds,
                images_per_sec: e.images_per_sec,
                mimic_loss: 0.0,
            });
            if progress {
                eprintln!(
                    "\r{:100}\r  qat epoch {:>2}/{}  loss {:.4}  train acc {:6.2}%  fake-quant val acc {:6.2}%  lr {:.2e}  {:.1} s  {:.0} img/s{}{}",
                    "",
                    e.epoch,
                    cfg.qat.epochs,
                    e.loss,
                    e.train_acc,
                    e.val_acc,
                    e.lr,
                    e.seconds,
                    e.images_per_sec,
                    if e.bn_frozen { "  BN frozen" } else { "" },
                    if e.ranges_frozen { "  ranges frozen" } else { "" }
                );
            }
        }
        _ => {}
    };
    let result = qat(&cx.distilled[di].unfused, cx.train, cx.val, &cx.norm, &qc, &mut cb);
    rec.seconds = t0.elapsed().as_secs_f64();
    let out = result.map_err(|e| e.to_string())?;
    rec.fp32_val = Some(fp32_val);
    rec.int8_val = Some(out.int8_accuracy);
    rec.fp32_test = cx.distilled[di].fp32_test;
    rec.size_bytes = Some(out.bytes.len());
    rec.notes.push(format!(
        "fake-quant top-1 {:.2}%, emitted file {:.2}% (validation); same prediction {:.2}%, logits within one step {:.2}% (max {:.1} steps)",
        out.fake_quant_accuracy, out.int8_accuracy, out.agreement.same_prediction, out.agreement.logits_within_one_step, out.agreement.max_steps
    ));
    let failures = gate(cfg, fp32_val, out.int8_accuracy);
    rec.gate_failures = Some(failures.clone());
    if let Some(test) = cx.test {
        let t1 = Instant::now();
        let (acc, _) = int8_run(&out.bytes, test, &cx.norm, cx.threads).map_err(|e| format!("INT8 test evaluation: {e}"))?;
        rec.int8_test = Some(acc.top1);
        rec.eval_seconds = t1.elapsed().as_secs_f64();
    }
    Ok(failures.is_empty().then_some(out.bytes))
}

/// Run one attempt: stages are pushed to `att` as they finish; a stage error ends the attempt
/// (recorded in that stage) without ending the pipeline.
fn run_attempt(cx: &mut Ctx, cfg: &PipelineConfig, att: &mut AttemptRecord, total: usize) -> Option<Candidate> {
    let n = att.index;
    say(cx.progress, &format!("\n── attempt {n}/{total}: {} ──", att.label()));
    say(cx.progress, &format!("── [{n}] distill: {}", cfg.distill.summary()));
    let mut rec = StageRecord::new(StageKind::Distill, cfg.distill.summary());
    let di = match distill_stage(cx, cfg, n, &mut rec) {
        Ok(i) => i,
        Err(e) => {
            say(cx.progress, &format!("  distillation failed: {e}"));
            rec.error = Some(e);
            att.stages.push(rec);
            return None;
        }
    };
    let fp32_val = cx.distilled[di].fp32_val;
    say(
        cx.progress,
        &format!(
            "  distilled student: FP32 {:.2}% validation{}",
            fp32_val,
            rec.fp32_test.map_or(String::new(), |t| format!(", {t:.2}% test"))
        ),
    );
    att.stages.push(rec);

    let obs: Vec<String> = cfg.ptq.observers.iter().map(|o| o.to_string()).collect();
    let psum = format!(
        "observers {}, {} calibration images{}, bias correction {}",
        obs.join("/"),
        cfg.ptq.calib_size,
        cfg.ptq.calib.as_ref().map_or(String::new(), |c| format!(" from {c}")),
        if cfg.ptq.bias_correction { "on" } else { "off" }
    );
    say(cx.progress, &format!("── [{n}] PTQ: {psum}"));
    let mut rec = StageRecord::new(StageKind::Ptq, psum);
    match ptq_stage(cx, cfg, n, di, &mut rec) {
        Ok(passed) => {
            say(cx.progress, &format!("  PTQ: INT8 {} (validation) — gate {}", pct(rec.int8_val), rec.verdict()));
            att.stages.push(rec);
            if let Some(bytes) = passed {
                return Some(Candidate { bytes, folded: cx.distilled[di].folded.clone() });
            }
        }
        Err(e) => {
            say(cx.progress, &format!("  PTQ failed: {e}"));
            rec.error = Some(e);
            att.stages.push(rec);
            return None;
        }
    }
    if !cfg.qat.enabled {
        return None;
    }
    let qsum = format!(
        "{} epochs, batch {}, lr {} cosine{}",
        cfg.qat.epochs,
        cfg.qat.batch,
        cfg.qat.lr,
        if cfg.qat.distill_alpha > 0.0 { format!(", self-distillation α {}", cfg.qat.distill_alpha) } else { String::new() }
    );
    say(cx.progress, &format!("── [{n}] QAT: {qsum}"));
    let mut rec = StageRecord::new(StageKind::Qat, qsum);
    let r = qat_stage(cx, cfg, n, di, fp32_val, &mut rec);
    let res = match r {
        Ok(passed) => {
            say(cx.progress, &format!("  QAT: INT8 {} (validation) — gate {}", pct(rec.int8_val), rec.verdict()));
            passed.map(|bytes| Candidate { bytes, folded: cx.distilled[di].folded.clone() })
        }
        Err(e) => {
            say(cx.progress, &format!("  QAT failed: {e}"));
            rec.error = Some(e);
            None
        }
    };
    att.stages.push(rec);
    res
}

/// Refuses outputs (`OUT.tmf`, `OUT.fp32.onnx`, the reports) that are the same file as an
/// input (teachers, the student, dataset files) or as each other, before anything runs.
fn check_output_paths(cfg: &PipelineConfig, out: &Path, reports: &[PathBuf]) -> Result<(), String> {
    let mut inputs: Vec<PathBuf> = cfg.distill.teachers.clone();
    if let StudentSource::Onnx(p) = &cfg.distill.student {
        inputs.push(p.clone());
    }
    for spec in [Some(&cfg.train), Some(&cfg.val), cfg.test.as_ref(), cfg.ptq.calib.as_ref()].into_iter().flatten() {
        if let Some(("npy" | "idx" | "npz" | "dir", rest)) = spec.split_once(':') {
            inputs.extend(rest.split(',').map(|p| PathBuf::from(p.trim())));
        }
    }
    let fp32 = out.with_extension("fp32.onnx");
    let mut outputs: Vec<&Path> = vec![out, fp32.as_path()];
    outputs.extend(reports.iter().map(PathBuf::as_path));
    let ins: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    temper_data::fsout::check_outputs(&ins, &outputs).map_err(|e| e.to_string())
}

/// Run the pipeline: every attempt until one passes the gate; when one passed, write the `.tmf`
/// and the distilled FP32 student (`OUT` with extension `fp32.onnx`); then the report files
/// (always). Every file is written by atomic rename. Errors are for what prevents running at
/// all (bad settings, unreadable data, unwritable output); failed attempts are in the report.
pub fn run(cfg: &PipelineConfig) -> Result<PipelineOutcome, String> {
    let t_start = Instant::now();
    cfg.check()?;
    let attempts = cfg.attempts()?;
    let out = cfg.out.clone().ok_or("missing -o OUT.tmf")?;
    let report_files = cfg.report_paths().ok_or("missing -o OUT.tmf")?;
    check_output_paths(cfg, &out, &report_files)?;
    // Held until the outputs are committed; a concurrent run on the same -o fails here.
    let lock = temper_data::commit::OutputLock::acquire(&out).map_err(|e| e.to_string())?;
    lock.notes().iter().for_each(|n| eprintln!("{n}"));
    let cache = temper_data::commit::cache_dir();
    // The system temp dir is shared: only the teacher caches earlier versions left there.
    let stale = [cache.clone()].into_iter().chain(cfg.checkpoint_dir.clone());
    let stale = stale.flat_map(|d| temper_data::commit::clean_stale(&d));
    let old_caches = temper_data::commit::clean_stale_teacher_caches(&std::env::temp_dir());
    for p in stale.chain(old_caches) {
        eprintln!("removed a stale temporary file of a dead process: {}", p.display());
    }
    fp32::set_default_threads(cfg.threads);
    let norm = cfg.norm();
    say(
        cfg.progress,
        &format!(
            "loading data: train {}, val {}{}",
            cfg.train,
            cfg.val,
            cfg.test.as_ref().map_or(String::new(), |t| format!(", test {t}"))
        ),
    );
    let train_ds = load_dataset(&cfg.train).map_err(|e| format!("train {}: {e}", cfg.train))?;
    let val_ds = load_dataset(&cfg.val).map_err(|e| format!("val {}: {e}", cfg.val))?;
    let test_ds = match &cfg.test {
        Some(t) => Some(load_dataset(t).map_err(|e| format!("test {t}: {e}"))?),
        None => None,
    };
    norm.validate(train_ds.channels()).map_err(|e| e.to_string())?;
    for (what, ds) in [("val", Some(&val_ds)), ("test", test_ds.as_ref())] {
        if let Some(ds) = ds {
            if ds.shape[1..] != train_ds.shape[1..] || ds.num_classes != train_ds.num_classes {
                return Err(format!(
                    "{what} data {} has images {:?} and {} classes, unlike the training data {:?} with {} classes",
                    ds.source,
                    &ds.shape[1..],
                    ds.num_classes,
                    &train_ds.shape[1..],
                    train_ds.num_classes
                ));
            }
        }
    }
    let mut metadata = vec![("converter.version".to_string(), env!("CARGO_PKG_VERSION").to_string())];
    let labels = cfg.labels.clone().or_else(|| (!val_ds.class_names.is_empty()).then(|| val_ds.class_names.join(",")));
    if let Some(l) = labels {
        metadata.push(("labels".into(), l));
    }
    let mut report = PipelineReport {
        attempts: Vec::new(),
        skipped: Vec::new(),
        emitted: None,
        emitted_size: None,
        emitted_fp32: None,
        gate: cfg.gate_text(),
        teachers: Vec::new(),
        data: vec![(cfg.train.clone(), "train".into(), train_ds.len()), (cfg.val.clone(), "val".into(), val_ds.len())],
        student_onnx_size: match &cfg.distill.student {
            StudentSource::Onnx(p) => std::fs::metadata(p).ok().map(|m| m.len()),
            StudentSource::Arch(_) => None,
        },
        seconds: 0.0,
        setup_seconds: 0.0,
    };
    if let (Some(t), Some(ds)) = (&cfg.test, &test_ds) {
        report.data.push((t.clone(), "test".into(), ds.len()));
    }
    let mut cx = Ctx {
        train: &train_ds,
        val: &val_ds,
        test: test_ds.as_ref(),
        norm,
        threads: cfg.threads,
        progress: cfg.progress,
        max_steps: cfg.max_steps,
        teachers: Vec::new(),
        calib: Vec::new(),
        distilled: Vec::new(),
        ptq_done: Vec::new(),
        metadata,
        teacher_cache: cfg.teacher_cache.clone().unwrap_or_else(|| {
            // unique per run, also for concurrent runs in one process
            static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            cache.join(format!("temper-pipeline-teacher-{}-{n}.npz", std::process::id()))
        }),
    };
    // Teachers: loaded and evaluated once.
    for a in &attempts {
        for tp in &a.distill.teachers {
            if cx.teachers.iter().any(|t| t.0 == *tp) {
                continue;
            }
            say(cfg.progress, &format!("teacher {}: evaluating on the validation data …", tp.display()));
            let net = load_teacher(tp, cfg.threads)?;
            let (acc, _) = evaluate(&net, &val_ds, &cx.norm, 500).map_err(|e| format!("teacher {}: {e}", tp.display()))?;
            say(cfg.progress, &format!("teacher {}: FP32 {acc:.2}% validation", file_label(tp)));
            report.teachers.push((file_label(tp), acc, None));
            cx.teachers.push((tp.clone(), net));
        }
    }
    report.setup_seconds = t_start.elapsed().as_secs_f64();
    let mut emitted = None;
    for (i, acfg) in attempts.iter().enumerate() {
        let mut att =
            AttemptRecord { index: i + 1, fallback: i.checked_sub(1).map(|j| cfg.fallbacks[j].clone()), stages: Vec::new(), passed: false };
        if let Some(c) = run_attempt(&mut cx, acfg, &mut att, attempts.len()) {
            att.passed = true;
            report.attempts.push(att);
            report.skipped = cfg.fallbacks[i..].to_vec();
            emitted = Some(c);
            break;
        }
        report.attempts.push(att);
    }
    if cfg.teacher_cache.is_none() {
        let _ = std::fs::remove_file(&cx.teacher_cache);
    }
    if let Some(c) = &emitted {
        report.emitted = Some(out.clone());
        report.emitted_size = Some(c.bytes.len());
        report.emitted_fp32 = Some(out.with_extension("fp32.onnx"));
    }
    report.seconds = t_start.elapsed().as_secs_f64();
    // One commit (temper_data::commit): the model, the distilled FP32 student beside it and
    // the reports all replace their targets, or none does (a kill after the commit point is
    // completed by the next run on this output).
    let onnx_path = out.with_extension("fp32.onnx");
    let model = match &emitted {
        Some(c) => Some((export::to_onnx(&c.folded).map_err(|e| format!("exporting the distilled student to ONNX: {e}"))?, &c.bytes)),
        None => None,
    };
    let [md, json, svg] = &report_files;
    let texts = [report.to_markdown(), report.to_json(), report.to_svg()];
    let mut files: Vec<(&Path, &[u8])> = Vec::new();
    if let Some((onnx, bytes)) = &model {
        files.push((&out, bytes));
        files.push((&onnx_path, onnx));
    }
    for (p, text) in [md, json, svg].into_iter().zip(&texts) {
        files.push((p, text.as_bytes()));
    }
    lock.commit(&files).map_err(|e| e.to_string())?;
    Ok(PipelineOutcome { report, report_files: report_files.to_vec() })
}

/// Usage of `temper pipeline`.
pub fn usage() -> String {
    let mut s = String::from(
        "temper pipeline — distill → PTQ → gate → QAT → gate → fallbacks → the first INT8 model that passes

USAGE:
  temper pipeline --teacher T.onnx (--student S.onnx | --student-arch NAME) -o OUT.tmf [options]
  temper pipeline --config FILE [options]          (flags override the file)

Every key below is a flag (--key VALUE) and a config-file line (key = value). Flags without a
value: --no-qat, --no-progress, --no-bias-correction.

keys (a fallback may change those marked *):
",
    );
    // QAT defaults are the QAT engine's (`QatConfig::default`): shown as they are now.
    let q = PipelineConfig::default().qat;
    for (k, fb, h) in KEYS {
        let h = h
            .replace("{qat-epochs}", &q.epochs.to_string())
            .replace("{qat-lr}", &q.lr.to_string())
            .replace("{qat-batch}", &q.batch.to_string())
            .replace("{qat-distill-alpha}", &q.distill_alpha.to_string());
        let _ = writeln!(s, "  {}{k:<20} {h}", if *fb { "*" } else { " " });
    }
    s.push_str(
        "
Config file: `key = value` lines, `#` comments; each `[fallback]` section lists the keys of one
more attempt (or one line `fallback = alpha=0.9 qat-epochs=4`). Example:

  teacher = ../shared/models/teacher.onnx
  student = ../shared/models/student_init.onnx
  out     = out/student.tmf
  max-drop = 0.3
  [fallback]          # a higher distillation weight
  alpha = 0.9
  [fallback]          # more QAT epochs (reuses the distilled student)
  qat-epochs = 4

Each fallback starts again from the base settings (overrides do not accumulate); identical
distillation / PTQ settings are not run twice. The gate is checked on the validation data;
the test data is only reported.

Writes OUT.report.md, OUT.report.json and OUT.report.svg (training curves, per-layer SQNR)
always; OUT.tmf and OUT.fp32.onnx (the distilled FP32 student) only when an attempt passes.
Exit status: 0 passed, 1 no attempt passed (report written, no model), 2 error.
",
    );
    s
}

/// `temper pipeline ARGS…`: returns whether a model passed and was written.
pub fn cli(args: &[String]) -> Result<bool, String> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", usage());
        return Ok(true);
    }
    let cfg = PipelineConfig::from_args(args)?;
    let outcome = run(&cfg)?;
    print!("{}", outcome.report.to_table());
    let files: Vec<String> = outcome.report_files.iter().map(|p| p.display().to_string()).collect();
    println!("report: {}", files.join(", "));
    if !outcome.passed() {
        eprintln!("error: no attempt met the gate ({}); no model written. Attempts:", outcome.report.gate);
        for a in &outcome.report.attempts {
            eprintln!("  {}", a.outcome_line());
        }
    }
    Ok(outcome.passed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_text_sets_keys_and_fallbacks() {
        let mut c = PipelineConfig::default();
        let text = "# comment\nteacher = t.onnx\nstudent = \"s.onnx\"  # trailing\nepochs = 3\nmax-drop = none\nmin-accuracy = 80\n\n[fallback]\nalpha = 0.9\nepochs = 5\n[fallback]\nqat-epochs = 4\n[pipeline]\nfallback = student-arch=small-cnn lr=0.002\n";
        c.apply_text(text, "p.toml").unwrap();
        assert_eq!(c.distill.teachers, [PathBuf::from("t.onnx")]);
        assert_eq!(c.distill.student, StudentSource::Onnx("s.onnx".into()));
        assert_eq!(c.distill.epochs, 3);
        assert_eq!(c.max_drop, None);
        assert_eq!(c.min_accuracy, Some(80.0));
        assert_eq!(c.fallbacks.len(), 3);
        assert_eq!(c.fallbacks[0].origin, "p.toml:8");
        let a = c.attempts().unwrap();
        assert_eq!(a.len(), 4);
        assert_eq!((a[1].distill.alpha, a[1].distill.epochs), (0.9, 5));
        // overrides do not accumulate
        assert_eq!((a[2].distill.alpha, a[2].distill.epochs, a[2].qat.epochs), (0.7, 3, 4));
        assert_eq!(a[2].distill, a[0].distill);
        assert_eq!(a[3].distill.student, StudentSource::Arch("small-cnn".into()));
        assert_eq!(a[3].distill.lr, 0.002);
    }

    #[test]
    fn config_errors_name_file_line_and_key() {
        let e = |t: &str| PipelineConfig::default().apply_text(t, "p.toml").unwrap_err();
        assert_eq!(e("epochs = 2\nepochs = many\n"), "p.toml:2: key 'epochs': 'many' is not a whole number ≥ 1");
        assert!(e("a = 1\n").starts_with("p.toml:1: unknown key 'a' (known: teacher"), "{}", e("a = 1\n"));
        assert_eq!(e("just words\n"), "p.toml:1: expected 'key = value', found 'just words'");
        assert!(e("[fallback]\nout = x.tmf\n").starts_with("p.toml:2: key 'out' cannot change between attempts"));
        assert_eq!(e("[fallback]\nalpha = 2\n"), "p.toml:2: key 'alpha': '2' is not a number in [0, 1]");
        assert_eq!(e("[fallback]\n"), "p.toml:1: [fallback] section without any key");
        assert!(e("[other]\n").contains("unknown section '[other]'"));
        assert!(e("student-arch = resnet\n").contains("key 'student-arch': unknown architecture 'resnet'"));
        assert!(e("fallback = alpha\n").contains("'alpha' is not KEY=VALUE"));
        let args = |v: &[&str]| PipelineConfig::from_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(args(&["--epochs", "0"]).unwrap_err(), "--epochs: '0' is not a whole number ≥ 1");
        assert_eq!(args(&["--bogus", "1"]).unwrap_err(), "unknown option --bogus (see temper pipeline --help)");
        assert_eq!(args(&["--lr"]).unwrap_err(), "option --lr needs a value");
        assert_eq!(
            args(&["--fallback", "max-drop=1"]).unwrap_err().split(" (").next().unwrap(),
            "--fallback: fallback: key 'max-drop' cannot change between attempts"
        );
        let c = args(&["--no-qat", "-o", "x.tmf", "--T", "2", "--fallback", "alpha=0.9; qat=true"]).unwrap();
        assert!(!c.qat.enabled && c.distill.temperature == 2.0 && c.out == Some("x.tmf".into()));
        assert_eq!(c.attempts().unwrap()[1].distill.alpha, 0.9);
        assert!(c.attempts().unwrap()[1].qat.enabled);
    }

    #[test]
    fn usage_lists_every_key_with_live_qat_defaults() {
        let u = usage();
        assert!(KEYS.iter().all(|k| u.contains(&format!("{:<20} ", k.0))));
        assert!(!u.contains("{qat"), "unfilled placeholder in:\n{u}");
    }

    #[test]
    fn report_paths_and_json_escape() {
        let mut c = PipelineConfig { out: Some("out/m.tmf".into()), ..Default::default() };
        assert_eq!(c.report_paths().unwrap()[1], PathBuf::from("out/m.report.json"));
        c.report = Some("r/x.json".into());
        assert_eq!(c.report_paths().unwrap()[0], PathBuf::from("r/x.md"));
        let mut s = String::new();
        J::Obj(vec![("a", J::s("q\"\\\n")), ("b", J::N(1.5)), ("c", J::N(f64::NAN)), ("d", J::Arr(vec![]))]).write(&mut s, 0);
        assert_eq!(s, "{\n  \"a\": \"q\\\"\\\\\\n\",\n  \"b\": 1.5000,\n  \"c\": null,\n  \"d\": []\n}");
    }
}
