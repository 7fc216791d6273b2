//! The `temper train` and `temper distill` commands.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::data::Augment;
use super::distill::{evaluate, AlphaSchedule, Distiller, KdConfig, MimicSpec, Teacher};
use super::net::{prepare_for_training, Net};
use super::optim::{OptimizerKind, Schedule, ScheduleKind};
use super::trainer::{benchmark, train, TrainConfig};
use super::{arch, export};
use crate::fp32::{self, Tensor};
use crate::{onnx, passes};
use temper_data::{load_dataset, Dataset, Normalize};

/// Usage text of both commands.
pub const USAGE: &str = "temper train / temper distill — train or distill an FP32 model on CPU

USAGE:
  temper train   (--model S.onnx | --arch small-cnn) --out OUT.onnx [options]
  temper distill --teacher T.onnx [--teacher T2.onnx ..] (--student S.onnx | --student-arch small-cnn)
                 --out OUT.onnx [options]

training options:
  --train SPEC          training data (default fashion-mnist:train)
  --val SPEC            validation data, evaluated after every epoch (default fashion-mnist:val; none = off)
  --test SPEC           data to report the final accuracy on (optional)
  --epochs E            epochs (default 8)
  --batch B             mini-batch size (default 64)
  --lr LR               peak learning rate (default 1e-3 for adam/adamw, 0.05 for sgd)
  --optimizer O         adam | adamw | sgd (default adam)
  --momentum M          SGD momentum (default 0.9); --nesterov for Nesterov momentum
  --wd W                weight decay of conv/dense weights (L2 for sgd/adam, decoupled for adamw; default 0)
  --schedule S          cosine | step | constant (default cosine)
  --min-lr LR           final rate of the cosine schedule (default 0)
  --step-every E        epochs between step decays (default 3); --step-gamma G (default 0.1)
  --warmup E            linear warm-up length in epochs (fractional allowed; default 0)
  --augment A           none | crop[:P] | flip | crop,flip (default none)
  --seed S              seed of shuffling, augmentation and built-in initialization (default 1)
  --threads T           worker threads (default 2)
  --bn-momentum M       BatchNorm running-statistics momentum (default 0.1)
  --max-steps N         stop every epoch after N steps (quick runs)
  --checkpoint PATH     checkpoint written after every epoch (default OUT with .ckpt.npz); --no-checkpoint
  --resume PATH         continue from a checkpoint
  --mean M / --std S / --pixel-scale X   normalization of u8 data (default 0 / 1 / 1/255; Fashion-MNIST's
                        0.2860 / 0.3530 for fashion-mnist:* data); f32 data is taken as given
  --tmf PATH            also quantize the trained model to INT8 in-process (temper quantize defaults)
  --bench N             only measure training throughput (forward+backward+update with --optimizer,
                        default adam) over N steps on one fixed batch and exit
  --no-progress         no progress line

distillation options:
  --T T                 temperature (default 4)
  --alpha A             weight of T²·KL(teacher ‖ student) (default 0.7; 1 − A weighs the labels)
  --alpha-schedule S    constant | decay | warmup (default decay): decay = α·(1−p) + α_end·p,
                        warmup = α·min(1, p/0.3), p = training progress (measurements of all
                        three: bench/results/kd.md)
  --alpha-end A         α at the end of the decay schedule (default 0)
  --teacher-weights W   comma-separated mixture weights, or val (proportional to validation accuracy);
                        default equal
  --mimic S=T           L2 between student tensor S and teacher tensor T (1×1 adapter when channels
                        differ, average pooling when sizes differ); repeatable
  --mimic-weight W      weight of each mimicking term (default 1)
  --teacher-cache PATH  keep the teachers' logits on the training set in PATH (NPZ) and reuse them
                        in later runs with the same teachers, data and views (no augmentation or
                        flip only; with crop the teachers run on every batch)

The model is trained with BatchNorm unfused (training mode, batch statistics); the written ONNX
(opset 13) has BatchNorm folded and re-imports with temper's importer to identical logits.";

struct Args {
    opts: HashMap<String, String>,
    multi: HashMap<String, Vec<String>>,
    flags: Vec<String>,
}

const FLAGS: &[&str] = &["nesterov", "no-progress", "no-checkpoint"];
const MULTI: &[&str] = &["teacher", "mimic"];
const KNOWN: &[&str] = &[
    "model",
    "arch",
    "student",
    "student-arch",
    "out",
    "o",
    "train",
    "val",
    "test",
    "epochs",
    "batch",
    "lr",
    "optimizer",
    "momentum",
    "wd",
    "schedule",
    "min-lr",
    "step-every",
    "step-gamma",
    "warmup",
    "augment",
    "seed",
    "threads",
    "bn-momentum",
    "max-steps",
    "checkpoint",
    "resume",
    "mean",
    "std",
    "pixel-scale",
    "tmf",
    "bench",
    "T",
    "alpha",
    "alpha-schedule",
    "alpha-end",
    "teacher-weights",
    "mimic-weight",
    "teacher-cache",
];

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args { opts: HashMap::new(), multi: HashMap::new(), flags: Vec::new() };
    let mut i = 0;
    while i < args.len() {
        let s = &args[i];
        let key = match s.strip_prefix("--") {
            Some(k) => k,
            None if s == "-o" => "o",
            None => return Err(format!("unexpected argument '{s}' (see temper train --help)")),
        };
        if FLAGS.contains(&key) {
            a.flags.push(key.to_string());
            i += 1;
            continue;
        }
        let v = args.get(i + 1).ok_or_else(|| format!("option --{key} needs a value"))?.clone();
        if MULTI.contains(&key) {
            a.multi.entry(key.to_string()).or_default().push(v);
        } else if KNOWN.contains(&key) {
            a.opts.insert(key.to_string(), v);
        } else {
            return Err(format!("unknown option --{key} (see temper train --help)"));
        }
        i += 2;
    }
    Ok(a)
}

impl Args {
    fn get(&self, k: &str) -> Option<&str> {
        self.opts.get(k).map(|s| s.as_str())
    }
    fn num<T: std::str::FromStr>(&self, k: &str, default: T) -> Result<T, String> {
        match self.get(k) {
            Some(v) => v.parse().map_err(|_| format!("--{k}: '{v}' is not a valid number")),
            None => Ok(default),
        }
    }
    fn flag(&self, k: &str) -> bool {
        self.flags.iter().any(|f| f == k)
    }
}

fn floats(s: &str, what: &str) -> Result<Vec<f32>, String> {
    s.split(',').map(|v| v.trim().parse::<f32>().map_err(|_| format!("{what}: '{v}' is not a number"))).collect()
}

fn load_student(a: &Args, distill: bool, ds: &Dataset, seed: u64) -> Result<(String, crate::ir::Graph), String> {
    let (path_key, arch_key) = if distill { ("student", "student-arch") } else { ("model", "arch") };
    let path = a.get(path_key).or(a.get("model")).or(a.get("student"));
    let archn = a.get(arch_key).or(a.get("arch")).or(a.get("student-arch"));
    match (path, archn) {
        (Some(p), None) => {
            let mut g = onnx::load_onnx(Path::new(p), None).map_err(|e| e.to_string())?;
            prepare_for_training(&mut g).map_err(|e| format!("{p}: {e}"))?;
            Ok((p.to_string(), g))
        }
        (None, Some(name)) => {
            let [_, c, h, w] = ds.shape;
            Ok((name.to_string(), arch::build(name, c, h, w, ds.num_classes, seed)?))
        }
        (Some(_), Some(_)) => Err(format!("give either --{path_key} or --{arch_key}, not both")),
        (None, None) => Err(format!("missing --{path_key} MODEL.onnx or --{arch_key} NAME")),
    }
}

/// Run `temper train` (`distill == false`) or `temper distill` with the arguments after the
/// command name.
pub fn run(cmd: &str, args: &[String]) -> Result<(), String> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let distill = cmd == "distill";
    let a = parse_args(args)?;
    let seed: u64 = a.num("seed", 1)?;
    let threads: usize = a.num("threads", 2usize)?.max(1);
    let dflt = Normalize::default_for(a.get("train").unwrap_or("fashion-mnist:train"));
    let norm = Normalize::new(
        a.get("mean").map(|v| floats(v, "--mean")).transpose()?.unwrap_or(dflt.mean),
        a.get("std").map(|v| floats(v, "--std")).transpose()?.unwrap_or(dflt.std),
        a.get("pixel-scale").map(|v| floats(v, "--pixel-scale")).transpose()?.map_or(dflt.scale, |v| v[0]),
    );
    let train_ds = load_dataset(a.get("train").unwrap_or("fashion-mnist:train")).map_err(|e| e.to_string())?;
    norm.validate(train_ds.channels()).map_err(|e| e.to_string())?;
    let (label, graph) = load_student(&a, distill, &train_ds, seed)?;
    let mut net = Net::new(graph, threads).map_err(|e| format!("{label}: {e}"))?;
    eprintln!(
        "model {label}: {} nodes, {} trainable parameters ({} tensors); GEMM path {}; {threads} threads",
        net.graph().nodes.len(),
        net.num_trainable(),
        net.params.iter().filter(|p| p.trainable()).count(),
        super::simd_path()
    );
    if let Some(steps) = a.get("bench") {
        let steps: usize = steps.parse().map_err(|_| format!("--bench: '{steps}' is not a count"))?;
        let batch: usize = a.num("batch", 64usize)?;
        let optimizer = OptimizerKind::parse(a.get("optimizer").unwrap_or("adam"), a.num("momentum", 0.9f32)?, a.flag("nesterov"))?;
        let ips = benchmark(&mut net, &train_ds, &norm, batch, steps.max(1), optimizer).map_err(|e| e.to_string())?;
        println!("{label}: {ips:.0} images/s training (forward+backward+{} update, batch {batch}, {threads} threads)", optimizer.name());
        return Ok(());
    }
    let out = PathBuf::from(a.get("out").or(a.get("o")).ok_or("missing --out OUT.onnx")?);
    {
        // The output may be neither the student/model nor a teacher.
        let mut ins: Vec<&Path> = ["model", "student"].iter().filter_map(|k| a.get(k)).map(Path::new).collect();
        ins.extend(a.multi.get("teacher").into_iter().flatten().map(Path::new));
        temper_data::fsout::check_outputs(&ins, &[out.as_path()]).map_err(|e| e.to_string())?;
    }
    let val_ds = match a.get("val").unwrap_or("fashion-mnist:val") {
        "none" => None,
        s => Some(load_dataset(s).map_err(|e| e.to_string())?),
    };
    let opt_name = a.get("optimizer").unwrap_or("adam");
    let optimizer = OptimizerKind::parse(opt_name, a.num("momentum", 0.9f32)?, a.flag("nesterov"))?;
    let default_lr = if opt_name == "sgd" { 0.05 } else { 1e-3 };
    let kind = match a.get("schedule").unwrap_or("cosine") {
        "cosine" => ScheduleKind::Cosine { min_lr: a.num("min-lr", 0.0f32)? },
        "step" => ScheduleKind::Step { every: a.num("step-every", 3usize)?, gamma: a.num("step-gamma", 0.1f32)? },
        "constant" => ScheduleKind::Constant,
        o => return Err(format!("unknown schedule '{o}' (cosine, step, constant)")),
    };
    let checkpoint = if a.flag("no-checkpoint") {
        None
    } else {
        Some(a.get("checkpoint").map(PathBuf::from).unwrap_or_else(|| out.with_extension("ckpt.npz")))
    };
    let cfg = TrainConfig {
        epochs: a.num("epochs", 8usize)?,
        batch: a.num("batch", 64usize)?,
        optimizer,
        weight_decay: a.num("wd", 0.0f32)?,
        schedule: Schedule { base_lr: a.num("lr", default_lr)?, kind, warmup_steps: 0 },
        warmup_epochs: a.num("warmup", 0.0f32)?,
        seed,
        augment: Augment::parse(a.get("augment").unwrap_or("none"))?,
        norm: norm.clone(),
        threads,
        bn_momentum: a.num("bn-momentum", 0.1f32)?,
        checkpoint,
        resume: a.get("resume").map(PathBuf::from),
        max_steps_per_epoch: a.get("max-steps").map(|v| v.parse().map_err(|_| format!("--max-steps: '{v}' is not a count"))).transpose()?,
        progress: !a.flag("no-progress"),
    };
    let mut distiller = if distill {
        let paths = a.multi.get("teacher").filter(|v| !v.is_empty()).ok_or("distill needs --teacher T.onnx")?;
        let mut teachers = Vec::new();
        for p in paths {
            let mut g = onnx::load_onnx(Path::new(p), None).map_err(|e| e.to_string())?;
            passes::optimize(&mut g).map_err(|e| format!("{p}: {e}"))?;
            let tnet = Net::new(g, threads).map_err(|e| format!("{p}: {e}"))?;
            teachers.push(Teacher { name: p.clone(), net: tnet, weight: 1.0 });
        }
        let weights = a.get("teacher-weights");
        if let Some(w) = weights.filter(|w| *w != "val") {
            let w = floats(w, "--teacher-weights")?;
            if w.len() != teachers.len() {
                return Err(format!("--teacher-weights: {} weights for {} teachers", w.len(), teachers.len()));
            }
            teachers.iter_mut().zip(w).for_each(|(t, w)| t.weight = w);
        }
        let mimic = a
            .multi
            .get("mimic")
            .map(|v| v.iter().map(|s| MimicSpec::parse(s)).collect::<Result<Vec<_>, _>>())
            .transpose()?
            .unwrap_or_default();
        let kd = KdConfig {
            temperature: a.num("T", 4.0f32)?,
            alpha: a.num("alpha", 0.7f32)?,
            schedule: AlphaSchedule::parse(a.get("alpha-schedule").unwrap_or("decay"), a.num("alpha-end", 0.0f32)?)?,
            mimic,
            mimic_weight: a.num("mimic-weight", 1.0f32)?,
        };
        if kd.temperature.is_nan() || kd.temperature <= 0.0 || !(0.0..=1.0).contains(&kd.alpha) {
            return Err("--T must be > 0 and --alpha in [0, 1]".into());
        }
        let mut d = Distiller::new(teachers, kd).map_err(|e| e.to_string())?;
        if let Some(v) = &val_ds {
            if weights == Some("val") {
                d.weigh_by_accuracy(v, &norm).map_err(|e| e.to_string())?;
            }
            for t in &d.teachers {
                let (acc, _) = evaluate(&t.net, v, &norm, 500).map_err(|e| e.to_string())?;
                eprintln!("teacher {}: validation accuracy {acc:.2}%, weight {:.3}", t.name, t.weight);
            }
        } else if weights == Some("val") {
            return Err("--teacher-weights val needs validation data (--val)".into());
        }
        d.attach_mimic(&net, optimizer, seed).map_err(|e| e.to_string())?;
        d.cache_file = a.get("teacher-cache").map(PathBuf::from);
        Some(d)
    } else {
        None
    };
    let t0 = Instant::now();
    let epochs = cfg.epochs;
    let report = train(&mut net, &train_ds, val_ds.as_ref(), &cfg, distiller.as_mut(), &mut |r| println!("{}", r.line(epochs)))
        .map_err(|e| e.to_string())?;
    let total = t0.elapsed().as_secs_f64();
    if report.teacher_cache_seconds > 0.0 {
        let from = match distiller.as_ref() {
            Some(d) if d.cache_loaded => " (read from --teacher-cache)",
            _ => "",
        };
        println!("teacher outputs cached for {} images in {:.1} s{from}", train_ds.len(), report.teacher_cache_seconds);
    }
    let per_epoch: Vec<f64> = report.epochs.iter().map(|e| e.seconds).collect();
    if !per_epoch.is_empty() {
        let mean = per_epoch.iter().sum::<f64>() / per_epoch.len() as f64;
        let ips = report.epochs.iter().map(|e| e.images).sum::<usize>() as f64 / per_epoch.iter().sum::<f64>().max(1e-9);
        println!("training: {:.1} s/epoch (steps only), {ips:.0} images/s; {total:.1} s total", mean);
    }
    let g = net.export_graph().map_err(|e| e.to_string())?;
    let bytes = export::write_onnx(&g, &out).map_err(|e| e.to_string())?;
    println!("wrote {} ({bytes} bytes, BatchNorm folded, opset 13)", out.display());
    // Self-check: the written file re-imports to identical logits.
    let probe = val_ds.as_ref().unwrap_or(&train_ds);
    let idx: Vec<usize> = (0..probe.len().min(256)).collect();
    let x = super::data::batch_tensor(probe, &idx, &norm);
    let mut back = onnx::load_onnx(&out, None).map_err(|e| e.to_string())?;
    passes::optimize(&mut back).map_err(|e| e.to_string())?;
    let same = logits_equal(&g, &back, &x)?;
    println!("re-import check: {}", if same { "identical logits" } else { "LOGITS DIFFER" });
    if !same {
        return Err("the exported ONNX does not reproduce the trained model's logits".into());
    }
    if let Some(test) = a.get("test") {
        let test = load_dataset(test).map_err(|e| e.to_string())?;
        let acc = crate::eval::fp32_accuracy(&g, &test, &norm).map_err(|e| e.to_string())?;
        println!("test accuracy ({} images, exported FP32 model): {:.2}%", test.len(), acc.top1);
    }
    if let Some(tmf) = a.get("tmf") {
        quantize_trained(&g, &train_ds, val_ds.as_ref().unwrap_or(&train_ds), &norm, threads, Path::new(tmf))?;
    }
    Ok(())
}

fn logits_equal(a: &crate::ir::Graph, b: &crate::ir::Graph, x: &Tensor) -> Result<bool, String> {
    let ra = fp32::run(a, std::slice::from_ref(x)).map_err(|e| e.to_string())?;
    let rb = fp32::run(b, std::slice::from_ref(x)).map_err(|e| e.to_string())?;
    Ok(ra[0].shape == rb[0].shape && ra[0].data == rb[0].data)
}

fn quantize_trained(
    g: &crate::ir::Graph,
    calib: &Dataset,
    val: &Dataset,
    norm: &Normalize,
    threads: usize,
    out: &Path,
) -> Result<(), String> {
    use crate::ptq::{quantize, write_atomic, PtqConfig};
    let cfg = PtqConfig {
        observers: crate::quant::Observer::ALL.to_vec(),
        calib_size: 2000,
        bias_correction: true,
        norm: norm.clone(),
        max_drop: Some(1.0),
        min_accuracy: None,
        threads,
        layer_samples: 64,
        sensitivity_samples: 0,
        metadata: vec![("name".into(), g.name.clone()), ("source.model".into(), "temper train".into())],
    };
    let outcome = quantize(g, calib, val, &cfg)?;
    println!(
        "INT8: FP32 {:.2}% → INT8 {:.2}% on validation (observer {}), {} bytes",
        outcome.report.fp32_accuracy,
        outcome.report.int8_accuracy,
        outcome.report.observer,
        outcome.bytes.len()
    );
    if !outcome.passed {
        return Err(format!("INT8 accuracy gate failed: {}", outcome.report.gate_failures.join("; ")));
    }
    write_atomic(out, &outcome.bytes).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}
