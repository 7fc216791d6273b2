//! Reliability of `temper-run` against hostile files (issue #16): special files as model or
//! input, oversized sparse files, a model file rewritten while `soak` runs, NaN inputs and
//! outputs that would destroy inputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use temper_kernels::QParams;
use temper_runtime::writer::{Builder, QWeights};

mod common;

const IN_Q: QParams = QParams { scale: 1.0 / 32.0, zero_point: 0 };
const OUT_Q: QParams = QParams { scale: 0.05, zero_point: 0 };

/// A tiny model: `[1, 4]` → fully connected → `[1, 3]`; `seed` varies the weights.
fn model(seed: i8) -> Vec<u8> {
    let mut b = Builder::new("rel");
    let x = b.activation("x", &[1, 4], IN_Q);
    b.input(x);
    let y = b.activation("y", &[1, 3], OUT_Q);
    let data: Vec<i8> = (0..12).map(|i| (i as i8).wrapping_mul(7).wrapping_add(seed)).collect();
    let w = QWeights { data: &data, scales: &[0.01, 0.02, 0.03], bias: &[0, 10, -10] };
    b.fully_connected("fc", x, y, w, (-128, 127)).unwrap();
    b.output(y);
    b.finish().unwrap()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("temper-run-rel-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// Runs temper-run; a hang guard (not a speed check) kills it after 60 s and fails the test.
fn run(args: &[&str]) -> Output {
    let mut child = common::command()
        .args(args)
        .env_remove("TEMPER_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn temper-run");
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("temper-run {args:?} hung (killed after 60 s)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a command that must fail with status 1 and an error containing every `needle`.
fn fails_with(args: &[&str], needles: &[&str]) {
    let o = run(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "temper-run {args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "temper-run {args:?}: expected {n:?} in: {err}");
    }
}

fn mkfifo(p: &Path) {
    let st = Command::new("mkfifo").arg(p).status().expect("mkfifo");
    assert!(st.success());
}

#[test]
fn special_files_are_refused_without_reading() {
    let d = tmpdir("special");
    let m = d.join("m.tmf");
    std::fs::write(&m, model(1)).unwrap();
    let m = s(&m);
    let fifo = d.join("fifo");
    mkfifo(&fifo);
    let fifo = s(&fifo);
    // /dev/zero as input, images and labels, and through a dataset spec.
    fails_with(&["run", &m, "--input", "/dev/zero"], &["/dev/zero", "character device", "not a regular file"]);
    fails_with(&["eval", &m, "--images", "/dev/zero", "--labels", "/dev/zero"], &["/dev/zero", "character device"]);
    fails_with(&["eval", &m, "--data", "npy:/dev/zero,/dev/zero"], &["/dev/zero", "character device"]);
    fails_with(&["info", "/dev/zero"], &["/dev/zero", "character device"]);
    // A FIFO with no writer as model, input or images: refused, not blocking.
    fails_with(&["info", &fifo], &["FIFO", "not a regular file"]);
    fails_with(&["run", &fifo, "--input", "x.npy"], &["FIFO"]);
    fails_with(&["run", &m, "--input", &fifo], &["FIFO"]);
    fails_with(&["eval", &m, "--images", &fifo, "--labels", &fifo], &["FIFO"]);
    fails_with(&["soak", &m, "--images", &fifo, "--labels", &fifo, "--count", "1"], &["FIFO"]);
    // A directory.
    fails_with(&["run", &m, "--input", &s(&d)], &["directory"]);
}

#[test]
fn large_sparse_files_are_rejected_from_their_header() {
    let d = tmpdir("sparse");
    let m = d.join("m.tmf");
    std::fs::write(&m, model(1)).unwrap();
    let m = s(&m);
    // 2 GiB of zeros (sparse: no disk space used): not a model, not an NPY, not an IDX.
    let big = d.join("big.bin");
    std::fs::File::create(&big).unwrap().set_len(2 << 30).unwrap();
    let big = s(&big);
    fails_with(&["info", &big], &["bad magic"]);
    fails_with(&["run", &m, "--input", &big], &["wrong magic"]);
    fails_with(&["eval", &m, "--images", &big, "--labels", &big], &["IDX type code 0x00"]);
    // A valid NPY header for 4 floats, followed by 2 GiB: refused from the size.
    let npy = d.join("x.npy");
    temper_data::write_npy_f32(&npy, &[1, 4], &[0.0; 4]).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&npy).unwrap();
    f.set_len(2 << 30).unwrap();
    fails_with(&["run", &m, "--input", &s(&npy)], &["more than the", "header declares"]);
    // A valid model header followed by 2 GiB: the header's file_len disagrees with the size.
    let padded = d.join("padded.tmf");
    std::fs::write(&padded, model(1)).unwrap();
    std::fs::OpenOptions::new().write(true).open(&padded).unwrap().set_len(2 << 30).unwrap();
    fails_with(&["info", &s(&padded)], &["its header says", "truncated or padded"]);
}

#[test]
fn model_rewritten_in_place_during_soak_never_crashes() {
    let d = tmpdir("soak");
    let m = d.join("m.tmf");
    std::fs::write(&m, model(1)).unwrap();
    let other = model(9);
    let imgs = d.join("x.npy");
    let labels = d.join("y.npy");
    let n = 64;
    let x: Vec<f32> = (0..n * 4).map(|i| ((i * 37 % 29) as f32 - 14.0) / 8.0).collect();
    temper_data::write_npy_f32(&imgs, &[n, 4], &x).unwrap();
    temper_data::npy::write_npy_i64(&labels, &[n], &(0..n as i64).map(|i| i % 3).collect::<Vec<_>>()).unwrap();
    let mut child = common::command()
        .args([
            "soak",
            &s(&m),
            "--images",
            &s(&imgs),
            "--labels",
            &s(&labels),
            "--count",
            "3000000",
            "--warmup",
            "0",
            "--rss-slack",
            "100000",
            // stderr is a pipe here: progress lines only on request.
            "--progress",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the soak has loaded the model and is running (its first progress line on
    // stderr), so the rewrites below happen mid-run, also under a slow emulator.
    let stderr = child.stderr.take().unwrap();
    let (started_tx, started) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut text = String::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("soak: ") {
                let _ = started_tx.send(());
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let t0 = Instant::now();
    while started.try_recv().is_err() {
        assert!(child.try_wait().unwrap().is_none(), "soak ended before its first progress line");
        assert!(t0.elapsed() < Duration::from_secs(300), "soak never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Truncate and rewrite the file in place (what `cp new.tmf m.tmf` does) while it runs.
    let mut rewrites = 0;
    while child.try_wait().unwrap().is_none() {
        std::fs::OpenOptions::new().write(true).truncate(true).open(&m).unwrap();
        std::fs::write(&m, if rewrites % 2 == 0 { &other } else { &other[..100] }).unwrap();
        rewrites += 1;
        assert!(t0.elapsed() < Duration::from_secs(600), "soak hung");
        std::thread::sleep(Duration::from_millis(5));
    }
    let o = child.wait_with_output().unwrap();
    let err = reader.join().unwrap();
    assert!(rewrites > 0);
    // Never a signal (SIGBUS): the run finishes on its private copy of the old model.
    assert!(o.status.code().is_some(), "soak killed by a signal after {rewrites} rewrites: {:?} {err}", o.status);
    assert!(o.status.success(), "soak failed: {err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("3000000"), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn run_outputs_never_replace_inputs() {
    let d = tmpdir("outputs");
    let m = d.join("m.tmf");
    let mb = model(1);
    std::fs::write(&m, &mb).unwrap();
    let x = d.join("x.npy");
    temper_data::write_npy_f32(&x, &[1, 4], &[0.5, -0.25, 1.0, 0.0]).unwrap();
    let xb = std::fs::read(&x).unwrap();
    let (ms, xs) = (s(&m), s(&x));
    fails_with(&["run", &ms, "--input", &xs, "--output", &ms], &["same file as the input", "m.tmf", "nothing written"]);
    fails_with(&["run", &ms, "--input", &xs, "--output", &xs], &["same file as the input", "x.npy"]);
    fails_with(&["run", &ms, "--input", &xs, "--output", "/dev/null"], &["character device"]);
    let fifo = d.join("o.fifo");
    mkfifo(&fifo);
    fails_with(&["run", &ms, "--input", &xs, "--output", &s(&fifo)], &["FIFO"]);
    assert_eq!(std::fs::read(&m).unwrap(), mb);
    assert_eq!(std::fs::read(&x).unwrap(), xb);
    // A symlink as output is written through: the link stays, its target gets the array.
    let target = d.join("y.npy");
    let link = d.join("link.npy");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let o = run(&["run", &ms, "--input", &xs, "--output", &s(&link)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(temper_data::read_npy(&target).unwrap().shape, vec![1, 3]);
}

#[test]
fn nonfinite_inputs_are_rejected_unless_allowed() {
    let d = tmpdir("nan");
    let m = d.join("m.tmf");
    let mb = model(1);
    std::fs::write(&m, &mb).unwrap();
    let ms = s(&m);
    let x = d.join("x.npy");
    temper_data::write_npy_f32(&x, &[2, 4], &[0.5, 0.0, 1.0, 0.0, 0.25, f32::NAN, f32::INFINITY, 0.0]).unwrap();
    fails_with(&["run", &ms, "--input", &s(&x)], &["x.npy", "element 5 is NaN", "--allow-nonfinite"]);
    let o = run(&["run", &ms, "--input", &s(&x), "--allow-nonfinite"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let labels = d.join("y.npy");
    temper_data::npy::write_npy_i64(&labels, &[2], &[0, 1]).unwrap();
    fails_with(&["eval", &ms, "--images", &s(&x), "--labels", &s(&labels)], &["image 1 element 1 is NaN"]);
    let o = run(&["eval", &ms, "--images", &s(&x), "--labels", &s(&labels), "--allow-nonfinite"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The Rust API: set_input_f32 rejects, naming the first bad element; nothing is set.
    let aligned = temper_runtime::writer::AlignedBuf::from_bytes(&mb);
    let model = temper_runtime::Model::from_bytes(aligned.as_bytes()).unwrap();
    let mut arena = vec![0u8; model.arena_size() + 64];
    let off = arena.as_ptr().align_offset(64);
    let mut sess = temper_runtime::Session::new(&model, &mut arena[off..]).unwrap();
    let e = sess.set_input_f32(0, &[0.0, f32::NEG_INFINITY, f32::NAN, 1.0]).unwrap_err();
    assert_eq!(e, temper_runtime::RunError::NonFinite { index: 0, element: 1 });
    assert_eq!(sess.run().unwrap_err(), temper_runtime::RunError::InputNotSet { index: 0 });
    sess.set_input_f32_saturating(0, &[0.0, f32::NEG_INFINITY, f32::NAN, 1.0]).unwrap();
    sess.run().unwrap();
}
