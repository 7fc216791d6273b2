//! The `temper quantize` command end to end on a Fashion-MNIST subset: a passing run emits a
//! valid `.tmf` whose accuracy (through the runtime) matches the report; a failing gate writes no
//! model and leaves an earlier one untouched; bad inputs fail with a clear error and write nothing.
//!
//! Uses `../shared/models/student_kd.onnx` and the `dataset-fashion-mnist` package; when either is
//! missing the tests print `SKIPPED` and return, or fail when coverage is required (`CI` or
//! `TEMPER_REQUIRE=data`, see `temper-testkit`).

use std::path::{Path, PathBuf};
use std::process::Command;
use temper_runtime::writer::AlignedBuf;
use temper_runtime::Model;
use temper_testkit::{fmnist_dir, models_dir};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("temper-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn temper(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_temper")).args(args).output().expect("run temper");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn json_number(json: &str, key: &str) -> f64 {
    let at = json.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("{key} in report"));
    let rest = &json[at + key.len() + 3..];
    rest.trim_start().split([',', '\n']).next().unwrap().trim().parse().unwrap()
}

/// The shared student and a fresh folder, when the model and Fashion-MNIST are present;
/// otherwise `temper-testkit` skips (or fails when coverage is required).
fn setup(name: &str) -> Option<(PathBuf, PathBuf)> {
    let models = models_dir(&["student_kd.onnx"])?;
    fmnist_dir()?;
    Some((models.join("student_kd.onnx"), tmpdir(name)))
}

#[test]
fn quantize_passes_gate_and_emits_a_file_that_matches_its_report() {
    let Some((model, dir)) = setup("pass") else { return };
    let out = dir.join("m.tmf");
    let (code, stdout, stderr) = temper(&[
        "quantize",
        model.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--calib",
        "fashion-mnist:train:256",
        "--val",
        "fashion-mnist:test:1000",
        "--observer",
        "minmax,percentile",
        "--max-drop",
        "1.0",
    ]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("accuracy gate: PASSED"), "{stdout}");
    let bytes = std::fs::read(&out).unwrap();
    let onnx_len = std::fs::metadata(&model).unwrap().len() as usize;
    assert!(bytes.len() * 10 <= onnx_len * 3, "tmf {} bytes is over 30% of the ONNX {onnx_len}", bytes.len());
    let buf = AlignedBuf::from_bytes(&bytes);
    let m = Model::from_bytes(buf.as_bytes()).expect("emitted file validates");
    assert_eq!(m.meta("source.model"), Some("student_kd.onnx"));
    assert!(m.meta("calibration.observer").is_some());
    assert!(m.metadata().any(|(k, _)| k.starts_with("layer_sqnr.")));
    let report = std::fs::read_to_string(dir.join("m.report.json")).unwrap();
    assert!(std::fs::read_to_string(dir.join("m.report.svg")).unwrap().starts_with("<svg"));
    let (fp, q) = (json_number(&report, "fp32_accuracy"), json_number(&report, "int8_accuracy"));
    assert!(fp > 85.0 && (fp - q).abs() <= 1.0, "fp32 {fp} int8 {q}");
    // The reported INT8 accuracy is the emitted file's, through the runtime.
    let val = temper_data::load_dataset("fashion-mnist:test:1000").unwrap();
    let norm = temper_data::Normalize::new(vec![0.2860], vec![0.3530], 1.0 / 255.0);
    let (acc, _) = temper_converter::eval::int8_run(&bytes, &val, &norm, 2).unwrap();
    assert!((acc.top1 - q).abs() < 1e-9, "runtime {} vs report {q}", acc.top1);
    assert_eq!(m.meta("accuracy.int8"), Some(format!("{q:.2}").as_str()));
}

#[test]
fn failed_gate_writes_no_model_and_keeps_the_old_one() {
    let Some((model, dir)) = setup("gate") else { return };
    let out = dir.join("m.tmf");
    std::fs::write(&out, b"an earlier good model").unwrap();
    let (code, stdout, stderr) = temper(&[
        "quantize",
        model.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--calib",
        "fashion-mnist:train:128",
        "--val",
        "fashion-mnist:test:300",
        "--observer",
        "minmax",
        "--min-accuracy",
        "99.9",
    ]);
    assert_eq!(code, 1, "gate must fail: {stdout}\n{stderr}");
    assert!(stdout.contains("accuracy gate: FAILED") && stdout.contains("layers that hurt most"), "{stdout}");
    assert!(stderr.contains("not written"), "{stderr}");
    assert_eq!(std::fs::read(&out).unwrap(), b"an earlier good model");
    let report = std::fs::read_to_string(dir.join("m.report.json")).unwrap();
    assert!(report.contains("\"gate_passed\": false"));
    let leftovers: Vec<_> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n.to_string_lossy().ends_with(".tmp")).collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn bad_inputs_fail_clearly_and_write_nothing() {
    let dir = tmpdir("bad");
    let out = dir.join("m.tmf");
    let o = out.to_str().unwrap();
    // missing model
    let (code, _, err) = temper(&["quantize", "/nonexistent/model.onnx", "-o", o]);
    assert_ne!(code, 0);
    assert!(err.contains("/nonexistent/model.onnx"), "{err}");
    // not an ONNX file
    let junk = dir.join("junk.onnx");
    std::fs::write(&junk, [0xffu8; 64]).unwrap();
    let (code, _, err) = temper(&["quantize", junk.to_str().unwrap(), "-o", o]);
    assert_ne!(code, 0);
    assert!(err.contains("junk.onnx"), "{err}");
    // unknown option and bad observer
    let (code, _, err) = temper(&["quantize", junk.to_str().unwrap(), "-o", o, "--bogus", "1"]);
    assert_eq!(code, 2);
    assert!(err.contains("--bogus"), "{err}");
    // The model-dependent half (models_dir skips it, or fails when coverage is required).
    if let Some(models) = models_dir(&["student_kd.onnx"]) {
        let m = models.join("student_kd.onnx");
        let (code, _, err) = temper(&["quantize", m.to_str().unwrap(), "-o", o, "--observer", "nope"]);
        assert_eq!(code, 2);
        assert!(err.contains("nope"), "{err}");
        // labels out of range / missing data files are named
        let (code, _, err) = temper(&["quantize", m.to_str().unwrap(), "-o", o, "--calib", "idx:/nonexistent/i.gz,/nonexistent/l.gz"]);
        assert_ne!(code, 0);
        assert!(err.contains("/nonexistent/i.gz"), "{err}");
    }
    assert!(!out.exists(), "nothing may be written on error");
    assert!(Path::new(&dir).read_dir().unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".tmp")));
}
