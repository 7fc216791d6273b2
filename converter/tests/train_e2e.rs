//! The training engine end to end on a Fashion-MNIST subset: training the untrained student
//! lowers the loss and lifts validation accuracy well above chance; a distillation step with
//! α = 1 has loss T²·KL computed independently (teacher through the FP32 engine); resuming from a
//! checkpoint reproduces an uninterrupted run; a NaN weight stops training naming step and layer;
//! the trained model exports to ONNX that re-imports to identical logits and quantizes in-process.
//!
//! Uses `../shared/models/{student_init,teacher}.onnx` and the `dataset-fashion-mnist` package;
//! when either is missing the tests print `SKIPPED` and return, or fail when coverage is
//! required (`CI` or `TEMPER_REQUIRE=data`, see `temper-testkit`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use temper_converter::fp32::{self, Tensor};
use temper_converter::train::data::batch_tensor;
use temper_converter::train::export::to_onnx;
use temper_converter::train::loss::softmax_t;
use temper_converter::train::*;
use temper_converter::{onnx, passes};
use temper_data::{load_dataset, Dataset, Normalize};
use temper_testkit::{fmnist_dir, models_dir};

struct Data {
    train: Dataset,
    val: Dataset,
}

fn data() -> Option<(&'static Data, PathBuf)> {
    let models = models_dir(&["student_init.onnx", "teacher.onnx"])?;
    fmnist_dir()?;
    static DATA: OnceLock<Data> = OnceLock::new();
    let d = DATA.get_or_init(|| Data {
        train: load_dataset("fashion-mnist:train:2000").expect("train subset"),
        val: load_dataset("fashion-mnist:val:1000").expect("val subset"),
    });
    Some((d, models))
}

fn norm() -> Normalize {
    Normalize::new(vec![0.2860], vec![0.3530], 1.0 / 255.0)
}

fn student(models: &Path) -> Net {
    let mut g = onnx::load_onnx(&models.join("student_init.onnx"), None).unwrap();
    prepare_for_training(&mut g).unwrap();
    assert!(g.nodes.iter().any(|n| n.op.name() == "BatchNorm"), "BatchNorm must stay unfused for training");
    Net::new(g, 2).unwrap()
}

fn teacher_graph(models: &Path) -> temper_converter::ir::Graph {
    let mut g = onnx::load_onnx(&models.join("teacher.onnx"), None).unwrap();
    passes::optimize(&mut g).unwrap();
    g
}

fn cfg(epochs: usize, batch: usize, lr: f32) -> TrainConfig {
    TrainConfig {
        epochs,
        batch,
        schedule: Schedule { base_lr: lr, kind: ScheduleKind::Constant, warmup_steps: 0 },
        threads: 2,
        seed: 3,
        ..TrainConfig::default()
    }
}

#[test]
fn training_the_untrained_student_learns_and_exports() {
    let Some((d, models)) = data() else { return };
    let mut net = student(&models);
    let (acc0, loss0) = evaluate(&net, &d.val, &norm(), 500).unwrap();
    let mut c = cfg(2, 32, 2e-3);
    c.schedule.kind = ScheduleKind::Cosine { min_lr: 0.0 };
    let t0 = std::time::Instant::now();
    let rep = train(&mut net, &d.train, Some(&d.val), &c, None, &mut |r| eprintln!("{}", r.line(2))).unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let last = rep.epochs.last().unwrap();
    let (acc1, loss1) = (last.val_acc.unwrap(), last.val_loss.unwrap());
    eprintln!("val before: {acc0:.1}% loss {loss0:.3}; after {} steps: {acc1:.1}% loss {loss1:.3} ({secs:.1} s)", rep.steps);
    assert_eq!(rep.steps, 2 * 2000usize.div_ceil(32));
    // Measured: 82.4 % on these 1000 validation images (82.3 % with TEMPER_NO_AVX2=1; 7 %
    // before); a point and a half of slack for floating-point differences between machines.
    assert!(acc1 >= 81.0, "validation accuracy {acc1:.1}% after training (measured 82.4 %)");
    assert!(loss1 < 0.5 * loss0, "validation loss {loss0:.3} → {loss1:.3}");
    assert!(rep.epochs[1].loss < rep.epochs[0].loss);

    // Export: BatchNorm folded, ONNX round trip gives identical logits.
    let g = net.export_graph().unwrap();
    assert!(g.nodes.iter().all(|n| n.op.name() != "BatchNorm"));
    let idx: Vec<usize> = (0..100).collect();
    let x = batch_tensor(&d.val, &idx, &norm());
    // the folded graph computes what the trained network computes in eval mode
    let tape = net.forward(std::slice::from_ref(&x), Mode::Eval).unwrap();
    let direct = net.outputs(&tape)[0].clone();
    let folded = fp32::run(&g, std::slice::from_ref(&x)).unwrap();
    let max_diff = direct.data.iter().zip(&folded[0].data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max_diff < 1e-3, "BN folding changed the logits by {max_diff}");
    let bytes = to_onnx(&g).unwrap();
    let mut back = onnx::import_bytes(&bytes, None, None, "trained.onnx").unwrap();
    passes::optimize(&mut back).unwrap();
    let again = fp32::run(&back, std::slice::from_ref(&x)).unwrap();
    assert_eq!(folded[0].data, again[0].data, "re-imported ONNX gives different logits");

    // In-process PTQ of the trained graph.
    let calib = d.train.take(200).unwrap();
    let val = d.val.take(500).unwrap();
    let pcfg = temper_converter::ptq::PtqConfig {
        observers: vec![temper_converter::quant::Observer::MinMax],
        calib_size: 200,
        bias_correction: true,
        norm: norm(),
        // measured drop 0.4 points (FP32 82.4 %, INT8 82.0 % on 500 images)
        max_drop: Some(1.5),
        min_accuracy: None,
        threads: 2,
        layer_samples: 8,
        sensitivity_samples: 0,
        metadata: vec![],
    };
    let q = temper_converter::ptq::quantize(&g, &calib, &val, &pcfg).unwrap();
    eprintln!("PTQ of the trained model: FP32 {:.2}% INT8 {:.2}%", q.report.fp32_accuracy, q.report.int8_accuracy);
    assert!(q.passed, "{:?}", q.report.gate_failures);
}

/// Independent `T²·KL(softmax(t/T) ‖ softmax(s/T))`, batch mean, in f64.
fn t2_kl(teacher: &[f32], student: &[f32], classes: usize, t: f64) -> f64 {
    let lsm = |row: &[f32]| -> Vec<f64> {
        let z: Vec<f64> = row.iter().map(|&v| v as f64 / t).collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        z.iter().map(|v| v - lse).collect()
    };
    let rows = teacher.len() / classes;
    let mut sum = 0.0;
    for r in 0..rows {
        let lt = lsm(&teacher[r * classes..(r + 1) * classes]);
        let ls = lsm(&student[r * classes..(r + 1) * classes]);
        sum += lt.iter().zip(&ls).map(|(a, b)| a.exp() * (a - b)).sum::<f64>();
    }
    t * t * sum / rows as f64
}

#[test]
fn kd_step_with_alpha_one_is_t2_kl() {
    let Some((d, models)) = data() else { return };
    let sub = d.train.take(64).unwrap();
    let tg = teacher_graph(&models);
    let temp = 4.0f32;
    // independent reference: teacher through the FP32 inference engine, student in train mode
    let idx: Vec<usize> = (0..64).collect();
    let x = batch_tensor(&sub, &idx, &norm());
    let tlogits = fp32::run(&tg, std::slice::from_ref(&x)).unwrap().remove(0);
    let s = student(&models);
    let tape = s.forward(std::slice::from_ref(&x), Mode::Train).unwrap();
    let slogits = s.outputs(&tape)[0].clone();
    let want = t2_kl(&tlogits.data, &slogits.data, 10, temp as f64);
    // the library's loss on the same logits
    let soft = softmax_t(&tlogits.data, 10, temp);
    let out = loss::distill_loss(&slogits.data, 10, &sub.labels, Some(&soft), 1.0, temp);
    assert!((out.total - want).abs() < 1e-5 * want.max(1.0), "{} vs {want}", out.total);
    assert!((out.kd - want).abs() < 1e-5 * want.max(1.0));
    // one training step through the distiller (cached teacher outputs, whole subset as one batch)
    let teacher = Teacher { name: "teacher".into(), net: Net::new(tg, 2).unwrap(), weight: 1.0 };
    let kd = KdConfig { temperature: temp, alpha: 1.0, schedule: AlphaSchedule::Constant, mimic: vec![], mimic_weight: 1.0 };
    let mut dist = Distiller::new(vec![teacher], kd).unwrap();
    let mut net = student(&models);
    let mut c = cfg(1, 64, 1e-3);
    c.max_steps_per_epoch = Some(1);
    let rep = train(&mut net, &sub, None, &c, Some(&mut dist), &mut |_| {}).unwrap();
    assert!(dist.cached(), "teacher outputs should be cached without augmentation");
    let e = &rep.epochs[0];
    eprintln!("KD step: loss {:.6}, T²·KL reference {want:.6}, ce {:.4}", e.loss, e.ce);
    assert!((e.loss - want).abs() < 1e-4 * want.max(1.0), "step loss {} vs T²·KL {want}", e.loss);
    assert!((e.kd - want).abs() < 1e-4 * want.max(1.0));
    assert!(e.ce > 0.0);
    // the step moved the student towards the teacher
    let tape = net.forward(std::slice::from_ref(&x), Mode::Train).unwrap();
    let after = t2_kl(&tlogits.data, &net.outputs(&tape)[0].data, 10, temp as f64);
    assert!(after < want, "KL did not decrease: {want} → {after}");
}

#[test]
fn distillation_with_two_teachers_decay_schedule_and_feature_mimicking_runs() {
    let Some((d, models)) = data() else { return };
    let sub = d.train.take(256).unwrap();
    let tg = teacher_graph(&models);
    let mut g2 = onnx::load_onnx(&models.join("student_init.onnx"), None).unwrap();
    passes::optimize(&mut g2).unwrap();
    let teachers = vec![
        Teacher { name: "t".into(), net: Net::new(tg, 2).unwrap(), weight: 3.0 },
        Teacher { name: "s".into(), net: Net::new(g2, 2).unwrap(), weight: 1.0 },
    ];
    let kd = KdConfig {
        temperature: 2.0,
        alpha: 0.9,
        schedule: AlphaSchedule::Decay { end: 0.1 },
        mimic: vec![MimicSpec { student: "p2o.pd_op.relu.1.0".into(), teacher: "p2o.pd_op.relu.1.0".into() }],
        mimic_weight: 0.5,
    };
    let mut dist = Distiller::new(teachers, kd).unwrap();
    assert!((dist.teachers[0].weight - 0.75).abs() < 1e-6);
    let mut net = student(&models);
    dist.attach_mimic(&net, OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, 1).unwrap();
    assert_eq!(dist.heads[0].adapter.params.len(), 2, "32 → 64 channels needs a 1×1 adapter");
    let adapter_before = dist.heads[0].adapter.params[0].value.clone();
    let mut c = cfg(2, 64, 1e-3);
    c.augment = Augment { crop_pad: 2, flip: true };
    let rep = train(&mut net, &sub, None, &c, Some(&mut dist), &mut |r| eprintln!("{}", r.line(2))).unwrap();
    assert!(!dist.cached());
    let (e0, e1) = (&rep.epochs[0], &rep.epochs[1]);
    assert!(e0.mimic > 0.0 && e1.mimic < e0.mimic, "mimic loss {} → {}", e0.mimic, e1.mimic);
    assert!(e1.alpha < e0.alpha && e0.alpha < 0.9);
    assert_ne!(dist.heads[0].adapter.params[0].value, adapter_before);
}

#[test]
fn resume_from_checkpoint_reproduces_an_uninterrupted_run() {
    let Some((d, models)) = data() else { return };
    let sub = d.train.take(256).unwrap();
    let dir = std::env::temp_dir().join(format!("temper-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = dir.join("ck.npz");
    let mut c = cfg(2, 64, 1e-3);
    c.augment = Augment { crop_pad: 1, flip: true };
    let mut full = student(&models);
    train(&mut full, &sub, None, &c, None, &mut |_| {}).unwrap();
    let mut first = student(&models);
    let mut c1 = c.clone();
    c1.epochs = 1;
    c1.checkpoint = Some(ck.clone());
    train(&mut first, &sub, None, &c1, None, &mut |_| {}).unwrap();
    let mut resumed = student(&models);
    let mut c2 = c.clone();
    c2.resume = Some(ck.clone());
    let rep = train(&mut resumed, &sub, None, &c2, None, &mut |_| {}).unwrap();
    assert_eq!(rep.epochs.len(), 1, "only the second epoch runs after resuming");
    for (a, b) in full.params.iter().zip(&resumed.params) {
        assert_eq!(a.value, b.value, "parameter {} differs after resuming", a.name);
    }
    // a checkpoint of another model is refused
    let mut other = Net::new(arch::small_cnn(1, 28, 28, 10, 1), 2).unwrap();
    let mut opt = Optimizer::new(c.optimizer, 0.0, other.params.len());
    assert!(checkpoint::load(&ck, &mut other, &mut opt, &mut []).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn non_finite_weights_stop_training_naming_step_and_layer() {
    let Some((d, models)) = data() else { return };
    let sub = d.train.take(128).unwrap();
    let mut net = student(&models);
    let conv1 = net.params.iter().position(|p| p.layer == "Conv.1").expect("Conv.1 weight");
    net.params[conv1].value[5] = f32::NAN;
    let err = train(&mut net, &sub, None, &cfg(1, 64, 1e-3), None, &mut |_| {}).unwrap_err().to_string();
    eprintln!("{err}");
    assert!(err.contains("step 0") && err.contains("'Conv.1'"), "{err}");
    // divergence through a huge learning rate is caught too
    let mut net = student(&models);
    let mut c = cfg(1, 64, 1e30);
    c.optimizer = OptimizerKind::Sgd { momentum: 0.0, nesterov: false };
    let err = train(&mut net, &sub, None, &c, None, &mut |_| {}).unwrap_err().to_string();
    eprintln!("{err}");
    assert!(err.contains("step") && err.contains("layer"), "{err}");
}

#[test]
fn built_in_architecture_matches_the_paddle_student() {
    let Some((_, models)) = data() else { return };
    let ours = Net::new(arch::small_cnn(1, 28, 28, 10, 7), 1).unwrap();
    let paddle = student(&models);
    let count = |n: &Net| n.params.iter().map(|p| p.value.len()).sum::<usize>();
    assert_eq!(count(&ours), 106_058);
    assert_eq!(count(&ours), count(&paddle));
    let x = Tensor::new(vec![2, 1, 28, 28], vec![0.5; 1568]).unwrap();
    let t = ours.forward(std::slice::from_ref(&x), Mode::Eval).unwrap();
    assert_eq!(ours.outputs(&t)[0].shape, vec![2, 10]);
}

#[test]
fn cli_distill_then_resume_with_train() {
    let Some((_, models)) = data() else { return };
    let dir = std::env::temp_dir().join(format!("temper-train-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("s.onnx");
    let run = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_temper")).args(args).output().expect("run temper");
        let (so, se) = (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned());
        assert!(o.status.success(), "temper {args:?} failed:\n{so}\n{se}");
        so
    };
    let teacher = models.join("teacher.onnx");
    let common = ["--train", "fashion-mnist:train:512", "--val", "fashion-mnist:val:256", "--batch", "64", "--seed", "5", "--no-progress"];
    let mut args = vec!["distill", "--teacher", teacher.to_str().unwrap(), "--student-arch", "small-cnn", "--epochs", "2"];
    args.extend(["--alpha-schedule", "warmup", "--T", "3", "--out", out.to_str().unwrap()]);
    args.extend(common);
    let so = run(&args);
    eprintln!("{so}");
    assert!(so.contains("epoch  2/2") && so.contains("teacher outputs cached") && so.contains("identical logits"), "{so}");
    let ck = out.with_extension("ckpt.npz");
    assert!(out.exists() && ck.exists());
    let g = onnx::load_onnx(&out, None).unwrap();
    assert!(g.nodes.iter().all(|n| n.op.name() != "BatchNorm"));
    let mut args = vec!["train", "--arch", "small-cnn", "--epochs", "3", "--resume", ck.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend(common);
    let so = run(&args);
    assert!(so.contains("epoch  3/3") && !so.contains("epoch  1/3"), "{so}");
    let _ = std::fs::remove_dir_all(&dir);
}
