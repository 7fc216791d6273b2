//! The training loop: seeded epochs of shuffled (optionally augmented) mini-batches, loss with
//! optional distillation, backward, optimizer step, BatchNorm running statistics, finite checks,
//! validation, per-epoch checkpoints and a progress line.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use super::checkpoint::{self, Progress};
use super::data::{Augment, Rng};
use super::distill::{batch_input, evaluate, Distiller};
use super::loss::distill_loss;
use super::net::{Mode, Net, Tape};
use super::optim::{Optimizer, OptimizerKind, Schedule};
use super::TrainError;
use temper_data::{Dataset, Normalize};

/// Training settings.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Epochs.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch: usize,
    /// Optimizer.
    pub optimizer: OptimizerKind,
    /// Weight decay (conv/dense weights only).
    pub weight_decay: f32,
    /// Learning-rate schedule (`warmup_steps` is derived from `warmup_epochs` if that is > 0).
    pub schedule: Schedule,
    /// Warm-up length in epochs (may be fractional).
    pub warmup_epochs: f32,
    /// Seed of shuffling, augmentation and (for built-in architectures) initialization.
    pub seed: u64,
    /// Augmentation.
    pub augment: Augment,
    /// Input normalization.
    pub norm: Normalize,
    /// Worker threads.
    pub threads: usize,
    /// BatchNorm momentum for the running statistics.
    pub bn_momentum: f32,
    /// Checkpoint written after every epoch.
    pub checkpoint: Option<PathBuf>,
    /// Checkpoint to resume from.
    pub resume: Option<PathBuf>,
    /// Stop each epoch after this many steps (tests, benchmarks).
    pub max_steps_per_epoch: Option<usize>,
    /// Draw a progress line on stderr.
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 8,
            batch: 128,
            optimizer: OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 },
            weight_decay: 0.0,
            schedule: Schedule { base_lr: 1e-3, kind: super::optim::ScheduleKind::Cosine { min_lr: 0.0 }, warmup_steps: 0 },
            warmup_epochs: 0.0,
            seed: 1,
            augment: Augment::default(),
            norm: Normalize::new(vec![0.2860], vec![0.3530], 1.0 / 255.0),
            threads: 2,
            bn_momentum: 0.1,
            checkpoint: None,
            resume: None,
            max_steps_per_epoch: None,
            progress: false,
        }
    }
}

/// What one epoch did.
#[derive(Clone, Debug, Default)]
pub struct EpochReport {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean total loss over the epoch's batches.
    pub loss: f64,
    /// Mean cross-entropy.
    pub ce: f64,
    /// Mean `T²·KL` (0 without a teacher).
    pub kd: f64,
    /// Mean feature-mimicking loss.
    pub mimic: f64,
    /// Training top-1 (on the batches as trained, in train mode), percent.
    pub train_acc: f64,
    /// Validation top-1, percent.
    pub val_acc: Option<f64>,
    /// Validation cross-entropy.
    pub val_loss: Option<f64>,
    /// Learning rate at the end of the epoch.
    pub lr: f32,
    /// α at the end of the epoch.
    pub alpha: f32,
    /// Wall seconds of the training steps.
    pub seconds: f64,
    /// Images per second of the training steps (forward + backward + update).
    pub images_per_sec: f64,
    /// Images trained on.
    pub images: usize,
}

impl EpochReport {
    /// One summary line.
    pub fn line(&self, epochs: usize) -> String {
        let val = match (self.val_acc, self.val_loss) {
            (Some(a), Some(l)) => format!("  val acc {a:6.2}%  val loss {l:.4}"),
            _ => String::new(),
        };
        let kd = if self.kd > 0.0 { format!(" (ce {:.4}, kd {:.4}, α {:.2})", self.ce, self.kd, self.alpha) } else { String::new() };
        let mimic = if self.mimic > 0.0 { format!(" mimic {:.4}", self.mimic) } else { String::new() };
        format!(
            "epoch {:>2}/{epochs}  loss {:.4}{kd}{mimic}  train acc {:6.2}%{val}  lr {:.2e}  {:.1} s  {:.0} img/s",
            self.epoch, self.loss, self.train_acc, self.lr, self.seconds, self.images_per_sec
        )
    }
}

/// A whole run.
#[derive(Clone, Debug, Default)]
pub struct TrainReport {
    /// Per-epoch reports (of this run; a resumed run starts after the checkpoint).
    pub epochs: Vec<EpochReport>,
    /// Global optimizer steps at the end.
    pub steps: usize,
    /// Seconds spent computing cached teacher outputs (0 if not cached).
    pub teacher_cache_seconds: f64,
}

/// Locate the first non-finite activation of a tape, for error messages.
fn first_non_finite(net: &Net, tape: &Tape) -> String {
    let g = net.graph();
    for &i in &g.inputs {
        if tape.value(i).is_some_and(|t| t.data.iter().any(|v| !v.is_finite())) {
            return format!("the input batch '{}' already contains NaN/Inf", g.tensors[i].name);
        }
    }
    for n in &g.nodes {
        if let Some(t) = tape.value(n.outputs[0]) {
            if let Some(j) = t.data.iter().position(|v| !v.is_finite()) {
                return format!("first non-finite activation: output of layer '{}' ({}), element {j} = {}", n.name, n.op.name(), t.data[j]);
            }
        }
    }
    "all activations are finite (the loss itself overflowed)".into()
}

fn check_params(net: &Net, what: &str, step: usize, epoch: usize) -> Result<(), TrainError> {
    for p in &net.params {
        let v = if what == "gradient" { &p.grad } else { &p.value };
        if let Some(j) = v.iter().position(|x| !x.is_finite()) {
            return Err(TrainError::NonFinite(format!(
                "step {step} (epoch {epoch}): {what} of '{}' in layer '{}' is {} at element {j}",
                p.name, p.layer, v[j]
            )));
        }
    }
    Ok(())
}

fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

#[allow(clippy::too_many_arguments)]
fn progress_line(epoch: usize, epochs: usize, done: usize, total: usize, loss: f64, acc: f64, ips: f64, eta: f64) {
    let width = 24;
    let filled = (done * width).checked_div(total).unwrap_or(width).min(width);
    eprint!(
        "\repoch {epoch}/{epochs} [{}{}] {done}/{total}  loss {loss:.4}  acc {acc:5.1}%  {ips:.0} img/s  ETA {}   ",
        "#".repeat(filled),
        ".".repeat(width - filled),
        fmt_secs(eta)
    );
    let _ = std::io::stderr().flush();
}

/// Train `net` on `train` (validating on `val` after each epoch), distilling from `kd` when
/// given. `on_epoch` sees every epoch's report as soon as it is done.
pub fn train(
    net: &mut Net,
    train: &Dataset,
    val: Option<&Dataset>,
    cfg: &TrainConfig,
    mut kd: Option<&mut Distiller>,
    on_epoch: &mut dyn FnMut(&EpochReport),
) -> Result<TrainReport, TrainError> {
    if cfg.batch == 0 || cfg.epochs == 0 {
        return Err(TrainError::Config("batch size and epochs must be ≥ 1".into()));
    }
    net.threads = cfg.threads.max(1);
    net.bn_momentum = cfg.bn_momentum;
    let n = train.len();
    let steps_per_epoch = {
        let s = n.div_ceil(cfg.batch);
        cfg.max_steps_per_epoch.map_or(s, |m| s.min(m.max(1)))
    };
    let total_steps = steps_per_epoch * cfg.epochs;
    let mut schedule = cfg.schedule;
    if cfg.warmup_epochs > 0.0 {
        schedule.warmup_steps = (cfg.warmup_epochs * steps_per_epoch as f32).round() as usize;
    }
    let mut opt = Optimizer::new(cfg.optimizer, cfg.weight_decay, net.params.len());
    let mut report = TrainReport::default();
    if let Some(d) = kd.as_deref_mut() {
        for t in &mut d.teachers {
            t.net.threads = net.threads;
        }
        for h in &mut d.heads {
            h.adapter.threads = net.threads;
        }
        report.teacher_cache_seconds = d.prepare(train, &cfg.norm, cfg.augment, 500)?;
    }
    let mut start_epoch = 0;
    let mut global_step = 0;
    if let Some(path) = &cfg.resume {
        let mut heads: Vec<(&mut Net, &mut Optimizer)> = match kd.as_deref_mut() {
            Some(d) => d.heads.iter_mut().map(|h| (&mut h.adapter, &mut h.opt)).collect(),
            None => Vec::new(),
        };
        let p = checkpoint::load(path, net, &mut opt, &mut heads)?;
        if p.seed != cfg.seed {
            eprintln!("warning: checkpoint was trained with seed {}, continuing with seed {}", p.seed, cfg.seed);
        }
        start_epoch = p.epochs_done;
        global_step = p.global_step;
        if cfg.progress {
            eprintln!("resumed from {} after epoch {start_epoch} (step {global_step})", path.display());
        }
    }
    check_params(net, "value", global_step, start_epoch + 1)?;
    let out_id = net.graph().outputs[0];
    let mut buf = Vec::new();
    for epoch in start_epoch..cfg.epochs {
        let mut order: Vec<usize> = (0..n).collect();
        Rng::new(cfg.seed, 1 + epoch as u64).shuffle(&mut order);
        let mut aug_rng = Rng::new(cfg.seed, 0x1000 + epoch as u64);
        let t0 = Instant::now();
        let mut last_draw = t0;
        let (mut sum_loss, mut sum_ce, mut sum_kd, mut sum_mimic) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        let (mut correct, mut seen, mut batches) = (0usize, 0usize, 0usize);
        let (mut lr, mut alpha) = (schedule.base_lr, 0.0f32);
        for (b, idx) in order.chunks(cfg.batch).take(steps_per_epoch).enumerate() {
            let x = batch_input(train, idx, &cfg.norm, cfg.augment, &mut aug_rng, &mut buf);
            let labels: Vec<u32> = idx.iter().map(|&i| train.labels[i]).collect();
            let p = global_step as f32 / total_steps.max(1) as f32;
            lr = schedule.lr(global_step, total_steps, steps_per_epoch);
            let (soft, teacher_tape) = match kd.as_deref() {
                Some(d) => {
                    alpha = d.cfg.schedule.alpha(d.cfg.alpha, p);
                    let (s, t) = d.soft_targets(idx, &x)?;
                    (Some(s), t)
                }
                None => (None, None),
            };
            let tape = net.forward(std::slice::from_ref(&x), Mode::Train)?;
            buf = x.data;
            let logits = net.outputs(&tape)[0];
            let classes = logits.shape[1];
            let temperature = kd.as_deref().map_or(1.0, |d| d.cfg.temperature);
            let out = distill_loss(&logits.data, classes, &labels, soft.as_deref(), alpha, temperature);
            if !out.total.is_finite() {
                return Err(TrainError::NonFinite(format!(
                    "step {global_step} (epoch {}, batch {b}): loss is {}; {}",
                    epoch + 1,
                    out.total,
                    first_non_finite(net, &tape)
                )));
            }
            let mut seeds = vec![(out_id, out.grad)];
            let mut mimic = 0.0;
            if let (Some(d), Some(tt)) = (kd.as_deref_mut(), teacher_tape.as_ref()) {
                let (l, s) = d.mimic_losses(&tape, tt)?;
                mimic = l;
                seeds.extend(s);
            }
            net.zero_grad();
            net.backward(&tape, seeds, &[])?;
            if let Err(TrainError::NonFinite(m)) = check_params(net, "gradient", global_step, epoch + 1) {
                return Err(TrainError::NonFinite(format!("{m}; {}", first_non_finite(net, &tape))));
            }
            net.update_running_stats(&tape);
            opt.step(&mut net.params, lr);
            if let Some(d) = kd.as_deref_mut() {
                d.step_adapters(lr);
            }
            check_params(net, "value", global_step, epoch + 1)?;
            global_step += 1;
            batches += 1;
            sum_loss += out.total + mimic;
            sum_ce += out.ce;
            sum_kd += out.kd;
            sum_mimic += mimic;
            correct += out.correct;
            seen += idx.len();
            if cfg.progress && (last_draw.elapsed().as_secs_f64() > 0.25 || b + 1 == steps_per_epoch) {
                last_draw = Instant::now();
                let el = t0.elapsed().as_secs_f64();
                let ips = seen as f64 / el.max(1e-9);
                let left = (steps_per_epoch - b - 1) as f64 * el / (b + 1) as f64;
                progress_line(
                    epoch + 1,
                    cfg.epochs,
                    b + 1,
                    steps_per_epoch,
                    sum_loss / batches as f64,
                    correct as f64 * 100.0 / seen as f64,
                    ips,
                    left,
                );
            }
        }
        let seconds = t0.elapsed().as_secs_f64();
        if cfg.progress {
            eprint!("\r{:100}\r", "");
        }
        let (val_acc, val_loss) = match val {
            Some(v) => {
                let (a, l) = evaluate(net, v, &cfg.norm, 500)?;
                (Some(a), Some(l))
            }
            None => (None, None),
        };
        let bd = batches.max(1) as f64;
        let rep = EpochReport {
            epoch: epoch + 1,
            loss: sum_loss / bd,
            ce: sum_ce / bd,
            kd: sum_kd / bd,
            mimic: sum_mimic / bd,
            train_acc: correct as f64 * 100.0 / seen.max(1) as f64,
            val_acc,
            val_loss,
            lr,
            alpha,
            seconds,
            images_per_sec: seen as f64 / seconds.max(1e-9),
            images: seen,
        };
        on_epoch(&rep);
        report.epochs.push(rep);
        if let Some(path) = &cfg.checkpoint {
            let heads: Vec<(&Net, &Optimizer)> = match kd.as_deref() {
                Some(d) => d.heads.iter().map(|h| (&h.adapter, &h.opt)).collect(),
                None => Vec::new(),
            };
            checkpoint::save(path, net, &opt, &heads, Progress { epochs_done: epoch + 1, global_step, seed: cfg.seed })?;
        }
    }
    report.steps = global_step;
    Ok(report)
}

/// Throughput of training steps (forward + backward + `optimizer` update) of `net` on batches
/// of `batch` images from `ds`: images per second over `steps` timed steps after one warm-up.
pub fn benchmark(
    net: &mut Net,
    ds: &Dataset,
    norm: &Normalize,
    batch: usize,
    steps: usize,
    optimizer: OptimizerKind,
) -> Result<f64, TrainError> {
    let mut opt = Optimizer::new(optimizer, 0.0, net.params.len());
    let out_id = net.graph().outputs[0];
    let idx: Vec<usize> = (0..batch.min(ds.len())).collect();
    let x = super::data::batch_tensor(ds, &idx, norm);
    let labels: Vec<u32> = idx.iter().map(|&i| ds.labels[i]).collect();
    let mut t0 = Instant::now();
    for s in 0..=steps {
        if s == 1 {
            t0 = Instant::now();
        }
        let tape = net.forward(std::slice::from_ref(&x), Mode::Train)?;
        let logits = net.outputs(&tape)[0];
        let out = distill_loss(&logits.data, logits.shape[1], &labels, None, 0.0, 1.0);
        net.zero_grad();
        net.backward(&tape, vec![(out_id, out.grad)], &[])?;
        net.update_running_stats(&tape);
        opt.step(&mut net.params, 1e-4);
    }
    Ok((steps * idx.len()) as f64 / t0.elapsed().as_secs_f64().max(1e-9))
}
