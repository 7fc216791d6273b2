//! `temper pipeline` end to end on small Fashion-MNIST subsets with step limits (seconds each):
//! a failed attempt is followed by the next fallback and the first passing model is emitted
//! (loadable `.tmf`, FP32 ONNX, Markdown/JSON/SVG report); an impossible gate exits with status
//! 1, lists every attempt, reuses identical stages and writes no model (an earlier file stays);
//! bad keys and values are named with file and line before any work starts.
//!
//! Uses `../shared/models/{student_init,teacher}.onnx` and the `dataset-fashion-mnist` package;
//! when either is missing the tests print `SKIPPED` and return, or fail when coverage is
//! required (`CI` or `TEMPER_REQUIRE=data`, see `temper-testkit`).

use std::path::{Path, PathBuf};
use std::process::Command;

use temper_converter::pipeline::{run, PipelineConfig, StageKind};
use temper_testkit::{fmnist_dir, models_dir};

/// The shared models folder, when it holds the two models and Fashion-MNIST is installed;
/// otherwise `temper-testkit` skips (or fails when coverage is required).
fn have_data() -> Option<PathBuf> {
    let models = models_dir(&["student_init.onnx", "teacher.onnx"])?;
    fmnist_dir()?;
    Some(models)
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("temper-pipeline-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Small, quick settings shared by the tests (as config-file text).
fn quick(models: &Path, out: &Path) -> String {
    format!(
        "teacher = {}\nstudent = {}\nout = {}\ntrain = fashion-mnist:train:640\nval = fashion-mnist:val:300\ntest = none\n\
         epochs = 2\nmax-steps = 10\nbatch = 64\nqat-epochs = 1\nqat-batch = 64\ncalib-size = 100\nobserver = minmax\n\
         sensitivity-samples = 0\nthreads = 2\nprogress = false\n",
        models.join("teacher.onnx").display(),
        models.join("student_init.onnx").display(),
        out.display()
    )
}

fn temper() -> Command {
    Command::new(env!("CARGO_BIN_EXE_temper"))
}

#[test]
fn failed_attempt_falls_back_and_the_first_passing_model_is_emitted() {
    let Some(models) = have_data() else { return };
    let dir = tmpdir("pass");
    let out = dir.join("student.tmf");
    // Attempt 1 barely trains (learning rates 1e-6 / 1e-7) and cannot reach 50 %; the first
    // fallback trains properly; the second fallback is not needed.
    let text = format!(
        "{}lr = 0.000001\nqat-lr = 0.0000001\nmax-drop = 5\nmin-accuracy = 50\n[fallback]\nlr = 0.003\n[fallback]\nalpha = 0.9\n",
        quick(&models, &out)
    );
    let mut cfg = PipelineConfig::default();
    cfg.apply_text(&text, "quick.toml").unwrap();
    let outcome = run(&cfg).unwrap();
    let r = &outcome.report;
    print!("{}", r.to_table());
    assert!(outcome.passed());
    assert_eq!(r.attempts.len(), 2, "attempts: {:#?}", r.attempts.iter().map(|a| a.outcome_line()).collect::<Vec<_>>());
    let a1 = &r.attempts[0];
    assert!(!a1.passed && a1.fallback.is_none());
    let kinds: Vec<StageKind> = a1.stages.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, [StageKind::Distill, StageKind::Ptq, StageKind::Qat], "QAT runs after the PTQ gate fails");
    assert!(a1.stages[1..].iter().all(|s| s.gate_failures.as_ref().is_some_and(|f| !f.is_empty())), "{:?}", a1.outcome_line());
    let a2 = &r.attempts[1];
    assert!(a2.passed);
    assert_eq!(a2.fallback.as_ref().unwrap().settings, vec![("lr".to_string(), "0.003".to_string())]);
    assert_eq!(a2.fallback.as_ref().unwrap().origin, "quick.toml:21");
    assert!(a2.stages.last().unwrap().passed());
    assert!(a2.stages.last().unwrap().int8_val.unwrap() >= 50.0);
    assert_eq!(a2.stages[0].curves.len(), 2, "one curve point per epoch");
    assert_eq!(r.skipped.len(), 1, "the unneeded fallback is reported as skipped");
    let note = a2.stages[0].notes.iter().find_map(|n| n.strip_prefix("teacher logits read from "));
    let tmp_cache = PathBuf::from(note.expect("attempt 2 reuses the teacher's logits"));
    assert!(tmp_cache.starts_with(temper_data::commit::cache_dir()), "in the per-user cache dir: {}", tmp_cache.display());
    assert!(!tmp_cache.exists(), "the temporary teacher cache is removed");

    // The emitted file loads and validates in the runtime; the FP32 ONNX re-imports.
    let bytes = std::fs::read(&out).expect("model written");
    assert_eq!(Some(bytes.len()), r.emitted_size);
    let buf = temper_runtime::writer::AlignedBuf::from_bytes(&bytes);
    let model = temper_runtime::Model::from_bytes(buf.as_bytes()).expect("emitted .tmf loads");
    assert_eq!(model.graph_inputs().len(), 1);
    temper_converter::onnx::load_onnx(&out.with_extension("fp32.onnx"), None).expect("FP32 student re-imports");
    // Reports: Markdown, JSON and SVG beside the output.
    let md = std::fs::read_to_string(dir.join("student.report.md")).unwrap();
    assert!(md.contains("**PASSED**") && md.contains("fallback 1: lr=0.003") && md.contains("| 2 | distill |"), "{md}");
    let json = std::fs::read_to_string(dir.join("student.report.json")).unwrap();
    assert!(json.contains("\"passed\": true") && json.contains("\"curves\"") && json.contains("\"sqnr_db\""));
    let svg = std::fs::read_to_string(dir.join("student.report.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<polyline") && svg.contains("per-layer SQNR"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_teachers_weighted_by_validation_accuracy_with_feature_mimicking() {
    let Some(models) = have_data() else { return };
    let dir = tmpdir("multi");
    let out = dir.join("student.tmf");
    // teacher.onnx and the distilled student_kd.onnx as a second teacher, mixed by validation
    // accuracy; the first teacher's first ReLU output mimicked by the student's.
    let text = format!(
        "{}teacher = {},{}\nteacher-weights = val\nmimic = p2o.pd_op.relu.1.0=p2o.pd_op.relu.1.0\nmimic-weight = 0.5\nmax-drop = none\n",
        quick(&models, &out),
        models.join("teacher.onnx").display(),
        models.join("student_kd.onnx").display()
    );
    let mut cfg = PipelineConfig::default();
    cfg.apply_text(&text, "multi.toml").unwrap();
    assert_eq!(cfg.distill.teachers.len(), 2);
    let outcome = run(&cfg).unwrap();
    let r = &outcome.report;
    print!("{}", r.to_table());
    assert!(outcome.passed());
    assert_eq!(r.teachers.len(), 2, "both teachers evaluated: {:?}", r.teachers);
    let d = &r.attempts[0].stages[0];
    assert_eq!(d.kind, StageKind::Distill);
    assert!(d.settings.contains("teacher.onnx + student_kd.onnx") && d.settings.contains("mimic"), "{}", d.settings);
    let weights = d.notes.iter().find(|n| n.starts_with("teacher weights by validation accuracy")).expect("weights noted");
    assert!(weights.contains("teacher.onnx") && weights.contains("student_kd.onnx"), "{weights}");
    assert!(d.curves.iter().all(|c| c.mimic_loss > 0.0), "mimic loss recorded: {:?}", d.curves);
    assert!(d.notes.iter().any(|n| n.contains("teacher run on every batch")), "mimicking needs teacher activations: {:?}", d.notes);
    let bytes = std::fs::read(&out).expect("model written");
    let buf = temper_runtime::writer::AlignedBuf::from_bytes(&bytes);
    temper_runtime::Model::from_bytes(buf.as_bytes()).expect("emitted .tmf loads");
    // Bad combinations are named before any work.
    let mut bad = PipelineConfig::default();
    bad.apply_text(&format!("{}teacher-weights = 1,2,3\n", quick(&models, &out)), "bad.toml").unwrap();
    let Err(e) = run(&bad) else { panic!("three weights for one teacher must fail") };
    assert!(e.contains("teacher-weights has 3 values for 1 teachers"), "{e}");
    let mut bad = PipelineConfig::default();
    assert!(bad.apply_text("mimic = nonsense\n", "bad.toml").unwrap_err().contains("STUDENT_TENSOR=TEACHER_TENSOR"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_run_resumes_from_the_distillation_checkpoint() {
    let Some(models) = have_data() else { return };
    let dir = tmpdir("resume");
    let out = dir.join("student.tmf");
    let ckpt = dir.join("ckpt");
    let text = format!("{}checkpoint-dir = {}\nmax-drop = none\nqat = false\n", quick(&models, &out), ckpt.display());
    let mut cfg = PipelineConfig::default();
    cfg.apply_text(&text, "resume.toml").unwrap();
    let first = run(&cfg).unwrap();
    assert!(first.passed());
    let saved: Vec<_> = std::fs::read_dir(&ckpt).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(saved.len() == 1 && saved[0].starts_with("distill-"), "{saved:?}");
    let d1 = &first.report.attempts[0].stages[0];
    assert_eq!(d1.curves.len(), 2);
    assert!(!d1.notes.iter().any(|n| n.starts_with("resumed")), "{:?}", d1.notes);
    // The same settings again: no epoch is trained; the restored student scores the same.
    let second = run(&cfg).unwrap();
    let d2 = &second.report.attempts[0].stages[0];
    assert!(d2.notes.iter().any(|n| n.starts_with("resumed from checkpoint")), "{:?}", d2.notes);
    assert!(d2.curves.is_empty(), "no epoch re-trained: {:?}", d2.curves);
    assert_eq!(d2.fp32_val, d1.fp32_val);
    assert_eq!(second.report.attempts[0].stages[1].int8_val, first.report.attempts[0].stages[1].int8_val);
    // Other settings: another checkpoint, trained from the start.
    let mut cfg3 = cfg.clone();
    cfg3.set("seed", "2").unwrap();
    let third = run(&cfg3).unwrap();
    assert_eq!(third.report.attempts[0].stages[0].curves.len(), 2);
    assert_eq!(std::fs::read_dir(&ckpt).unwrap().count(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn impossible_gate_exits_1_lists_every_attempt_and_writes_no_model() {
    let Some(models) = have_data() else { return };
    let dir = tmpdir("fail");
    let out = dir.join("student.tmf");
    std::fs::write(&out, b"an earlier model").unwrap();
    let cfg = dir.join("quick.toml");
    std::fs::write(&cfg, quick(&models, &out)).unwrap();
    let res = temper()
        .args(["pipeline", "--config"])
        .arg(&cfg)
        .args(["--min-accuracy", "99.9", "--fallback", "alpha=0.9", "--fallback", "qat-epochs=2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    let stdout = String::from_utf8_lossy(&res.stdout);
    eprintln!("{stdout}\n{stderr}");
    assert_eq!(res.status.code(), Some(1), "a failed gate exits with status 1");
    assert!(stderr.contains("no attempt met the gate"), "{stderr}");
    for a in ["attempt 1 (base settings)", "attempt 2 (fallback 1: alpha=0.9)", "attempt 3 (fallback 2: qat-epochs=2)"] {
        assert!(stderr.contains(a), "missing '{a}' in:\n{stderr}");
    }
    assert!(stderr.contains("below the required 99.9%"));
    assert!(stdout.contains("FAILED: no attempt met the gate"));
    assert_eq!(std::fs::read(&out).unwrap(), b"an earlier model", "an earlier model is never overwritten");
    assert!(!out.with_extension("fp32.onnx").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect();
    assert!(leftovers.iter().all(|n| !n.ends_with(".tmp")), "temporary files left: {leftovers:?}");
    let json = std::fs::read_to_string(dir.join("student.report.json")).unwrap();
    assert!(json.contains("\"passed\": false"));
    assert_eq!(json.matches("\"attempt\": ").count(), 3);
    // Attempt 3 only changes QAT: its distillation and PTQ are those of attempt 1.
    assert_eq!(json.matches("\"reused_from_attempt\": 1").count(), 2, "{json}");
    assert!(json.contains("teacher logits read from"), "attempt 2 reuses the teacher's logits");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_keys_and_values_are_named_before_any_work() {
    let dir = tmpdir("bad");
    let cfg = dir.join("bad.toml");
    let run_with = |text: &str, extra: &[&str]| {
        std::fs::write(&cfg, text).unwrap();
        let r = temper().args(["pipeline", "--config"]).arg(&cfg).args(extra).output().unwrap();
        (r.status.code(), String::from_utf8_lossy(&r.stderr).to_string())
    };
    let (code, err) = run_with("teacher = t.onnx\n# comment\nepochs = ten\n", &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains(&format!("{}:3: key 'epochs': 'ten' is not a whole number ≥ 1", cfg.display())), "{err}");
    let (code, err) = run_with("teacher = t.onnx\nepoch = 3\n", &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains(":2: unknown key 'epoch'"), "{err}");
    let (code, err) = run_with("[fallback]\nalpha = 1.5\n", &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains(":2: key 'alpha': '1.5' is not a number in [0, 1]"), "{err}");
    let (code, err) = run_with("", &["--alpha-schedule", "sideways"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--alpha-schedule: unknown alpha schedule 'sideways'"), "{err}");
    let (code, err) = run_with("", &["--max-drop", "-1"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--max-drop: '-1' is not a number in [0, 100]"), "{err}");
    // Missing files are reported before any training.
    let out = dir.join("m.tmf");
    let (code, err) = run_with(&format!("teacher = {}\nout = {}\n", dir.join("nope.onnx").display(), out.display()), &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("teacher") && err.contains("nope.onnx not found"), "{err}");
    // (the config file itself stands in for an existing teacher file)
    let (code, err) =
        run_with(&format!("teacher = {}\n", cfg.display()), &["--fallback", "student=missing.onnx", "-o", out.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("fallback 1 (--fallback): student missing.onnx not found"), "{err}");
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&dir);
}
