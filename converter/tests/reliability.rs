//! Reliability of the `temper` CLI (issue #16): special files as inputs are refused without
//! reading, and no output may destroy an input or another output of the same run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_temper");

/// Runs temper; a hang guard (not a speed check) kills it after 120 s and fails the test.
fn temper(args: &[&str]) -> Output {
    let mut child = Command::new(BIN).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("temper {args:?} hung (killed after 120 s)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn fails_with(args: &[&str], needles: &[&str]) {
    let o = temper(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "temper {args:?} succeeded");
    assert!(o.status.code().is_some() && !err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "temper {args:?}: expected {n:?} in: {err}");
    }
}

fn tmpdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("temper-rel-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn special_files_are_refused() {
    fails_with(&["inspect", "/dev/zero"], &["/dev/zero", "character device", "not a regular file"]);
    let d = tmpdir("special");
    let fifo = d.join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    fails_with(&["inspect", s(&fifo)], &["FIFO"]);
    let sparse = d.join("sparse.onnx");
    std::fs::File::create(&sparse).unwrap().set_len(2 << 30).unwrap();
    fails_with(&["inspect", s(&sparse)], &["not an ONNX (protobuf) file"]);
    let Some(models) = temper_testkit::models_dir(&["student_kd.onnx"]) else { return };
    let m = models.join("student_kd.onnx");
    let out = d.join("q.tmf");
    fails_with(&["quantize", s(&m), "-o", s(&out), "--calib", "npy:/dev/zero,/dev/zero"], &["/dev/zero", "character device"]);
    assert!(!out.exists());
}

/// The model bytes of `p`, to check that a refused command left it alone.
fn same_bytes(p: &Path, want: &[u8]) {
    assert_eq!(std::fs::read(p).unwrap(), want, "{} was modified", p.display());
}

#[test]
fn outputs_never_replace_inputs() {
    let Some(models) = temper_testkit::models_dir(&["student_kd.onnx", "teacher.onnx"]) else { return };
    let d = tmpdir("outputs");
    let m = d.join("m.onnx");
    std::fs::copy(models.join("student_kd.onnx"), &m).unwrap();
    let t = d.join("t.onnx");
    std::fs::copy(models.join("teacher.onnx"), &t).unwrap();
    let (mb, tb) = (std::fs::read(&m).unwrap(), std::fs::read(&t).unwrap());
    // quantize -o equal to the model, --report equal to the model, a hard link of the model.
    fails_with(&["quantize", s(&m), "-o", s(&m)], &["same file as the input", "m.onnx"]);
    fails_with(&["quantize", s(&m), "-o", s(&d.join("q.tmf")), "--report", s(&m)], &["same file as the input"]);
    let hard = d.join("hard.tmf");
    std::fs::hard_link(&m, &hard).unwrap();
    fails_with(&["quantize", s(&m), "-o", s(&hard)], &["same file as the input"]);
    // -o and --report the same file.
    let q = d.join("q.tmf");
    fails_with(&["quantize", s(&m), "-o", s(&q), "--report", s(&q)], &["same run"]);
    // An existing device or FIFO as output.
    fails_with(&["quantize", s(&m), "-o", "/dev/null"], &["character device", "nothing written"]);
    let fifo = d.join("out.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    fails_with(&["quantize", s(&m), "-o", s(&fifo)], &["FIFO"]);
    // pipeline: the student is the derived OUT.fp32.onnx; -o is the teacher.
    let student = d.join("p.fp32.onnx");
    std::fs::copy(&m, &student).unwrap();
    fails_with(
        &["pipeline", "--teacher", s(&t), "--student", s(&student), "-o", s(&d.join("p.tmf"))],
        &["same file as the input", "p.fp32.onnx"],
    );
    fails_with(&["pipeline", "--teacher", s(&t), "--student", s(&m), "-o", s(&t)], &["same file as the input", "t.onnx"]);
    // distill --out the teacher; qat -o the model.
    fails_with(&["distill", "--teacher", s(&t), "--student", s(&m), "--out", s(&t)], &["same file as the input"]);
    fails_with(&["qat", "--model", s(&m), "-o", s(&m)], &["same file as the input"]);
    same_bytes(&m, &mb);
    same_bytes(&t, &tb);
    same_bytes(&student, &mb);
}
