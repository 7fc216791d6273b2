//! One commit for a run's outputs (issue #16): `kill -9` of a real `temper quantize` /
//! `temper pipeline` at each step of the commit leaves the previous set or, once the next run
//! on the same output has recovered the journal, the new set — never a mix; the next run
//! removes the stale temporary files; a second run on the same `-o` fails at once.
//!
//! The kill points come from the `TEMPER_TEST_COMMIT_PAUSE` hook (`temper_data::commit`): the
//! process announces the step on stderr and sleeps there until the test kills it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use temper_data::commit::PAUSE_ENV;
use temper_runtime::writer::AlignedBuf;
use temper_runtime::Model;
use temper_testkit::{fmnist_dir, models_dir};

const BIN: &str = env!("CARGO_BIN_EXE_temper");

fn tmpdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("temper-commit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn temper(args: &[String], cache: &Path) -> Output {
    Command::new(BIN).args(args).env("XDG_CACHE_HOME", cache).env_remove(PAUSE_ENV).stdin(Stdio::null()).output().unwrap()
}

/// Starts temper paused at commit step `step`; returns once it announced the pause.
fn paused(args: &[String], cache: &Path, step: &str) -> Child {
    let mut child = Command::new(BIN)
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .env(PAUSE_ENV, step)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.contains(&format!("paused at commit step {step}")) {
            return child;
        }
        seen.push_str(&line);
        seen.push('\n');
    }
    panic!("temper exited before commit step {step}: {:?}\n{seen}", child.wait().unwrap());
}

/// `kill -9`.
fn kill9(mut child: Child) {
    child.kill().unwrap();
    let st = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(9), "{st:?}");
}

type Set = BTreeMap<PathBuf, Vec<u8>>;

fn read_set(files: &[PathBuf]) -> Set {
    files.iter().map(|f| (f.clone(), std::fs::read(f).unwrap_or_default())).collect()
}

fn write_set(set: &Set) {
    for (p, b) in set {
        std::fs::write(p, b).unwrap();
    }
}

/// Names in `dir` of temporary files and journals (`.txn-`, `.tmp`).
fn temps(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".txn-") || n.contains(".tmp"))
        .collect();
    v.sort();
    v
}

/// The new set of a killed run: its journal's staged files where they are still staged, the
/// targets already renamed otherwise. Also returns whether the journal was committed.
fn new_set(dir: &Path, files: &[PathBuf]) -> (Set, bool) {
    let j = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "pending" || e == "commit"))
        .unwrap_or_else(|| panic!("no journal in {}: {:?}", dir.display(), temps(dir)));
    let committed = j.extension().unwrap() == "commit";
    let mut set = Set::new();
    for line in std::fs::read_to_string(&j).unwrap().lines() {
        let (staged, target) = line.split_once('\t').unwrap();
        let target = PathBuf::from(target);
        let bytes = std::fs::read(staged).unwrap_or_else(|_| std::fs::read(&target).unwrap());
        let name = target.file_name().unwrap();
        set.insert(files.iter().find(|f| f.file_name().unwrap() == name).unwrap().clone(), bytes);
    }
    assert_eq!(set.len(), files.len(), "{set:?}");
    (set, committed)
}

/// 40 deterministic pseudo-random 28x28 images and labels as NPY files.
fn npy_data(dir: &Path) -> (PathBuf, PathBuf) {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let images: Vec<u8> = (0..40 * 28 * 28).map(|_| next() as u8).collect();
    let labels: Vec<i64> = (0..40).map(|_| (next() % 10) as i64).collect();
    let (xi, yi) = (dir.join("x.npy"), dir.join("y.npy"));
    temper_data::npy::write_npy_u8(&xi, &[40, 1, 28, 28], &images).unwrap();
    temper_data::npy::write_npy_i64(&yi, &[40], &labels).unwrap();
    (xi, yi)
}

/// The model and its reports agree: the report's size and calibration count are the model's.
fn quantize_set_consistent(set: &Set, files: &[PathBuf]) {
    let (m, json) = (&set[&files[0]], String::from_utf8_lossy(&set[&files[1]]));
    let model = AlignedBuf::from_bytes(m);
    let model = Model::from_bytes(model.as_bytes()).expect("the model validates");
    let samples = model.meta("calibration.samples").unwrap();
    assert!(json.contains(&format!("\"size_bytes\": {},", m.len())), "report of another model: {json}");
    assert!(json.contains(&format!("\"calibration_samples\": {samples},")), "report of another model: {json}");
}

#[test]
fn quantize_killed_at_each_commit_step_leaves_one_set() {
    let Some(models) = models_dir(&["student_kd.onnx"]) else { return };
    let d = tmpdir("quantize");
    let cache = d.join("cache");
    let (xi, yi) = npy_data(&d);
    let data = format!("npy:{},{}", s(&xi), s(&yi));
    let out = d.join("q.tmf");
    let files = vec![out.clone(), d.join("q.report.json"), d.join("q.report.svg")];
    let args = |calib: &str| -> Vec<String> {
        let m = models.join("student_kd.onnx");
        [
            "quantize",
            s(&m),
            "-o",
            s(&out),
            "--calib",
            &data,
            "--val",
            &data,
            "--observer",
            "minmax",
            "--max-drop",
            "100",
            "--sensitivity-samples",
            "8",
            "--calib-size",
            calib,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    // The previous set: 24 calibration samples; every killed run uses 16.
    let o = temper(&args("24"), &cache);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let old = read_set(&files);
    quantize_set_consistent(&old, &files);
    // The next run that takes the lock recovers; this one then fails on its calibration data.
    let mut recover = args("16");
    recover[5] = "npy:/nonexistent/x.npy,/nonexistent/y.npy".into();
    let dead = u32::MAX - 1;
    for (k, step) in ["staged", "committed", "renamed-1", "renamed-2", "renamed-3"].iter().enumerate() {
        write_set(&old);
        let child = paused(&args("16"), &cache, step);
        // While it holds the lock, a second run on the same -o fails at once, writing nothing.
        let o = temper(&args("16"), &cache);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("is writing this output") && err.contains(".q.tmf.lock"), "{err}");
        kill9(child);
        let (new, committed) = new_set(&d, &files);
        assert_eq!(committed, k > 0, "{step}");
        quantize_set_consistent(&new, &files);
        assert!(new.iter().all(|(p, b)| old[p] != *b), "the sets must differ in every file");
        let now = read_set(&files);
        let renamed = now.iter().filter(|(p, b)| new[*p] == **b).count();
        assert_eq!(renamed, k.saturating_sub(1), "{step}: files already replaced");
        // A stale temp file of a dead process beside the output.
        std::fs::write(d.join(format!(".q.tmf.{dead}.tmp")), b"x").unwrap();
        let o = temper(&recover, &cache);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        let note = if committed { "completed an interrupted commit" } else { "rolled back an interrupted write" };
        assert!(err.contains(note) && err.contains("removed a stale temporary file"), "{step}: {err}");
        assert_eq!(read_set(&files), if committed { new } else { old.clone() }, "{step}: not one complete set");
        assert!(temps(&d).is_empty(), "{step}: left {:?}", temps(&d));
        assert!(!d.join(".q.tmf.lock").exists(), "{step}: the lock file of the killed run is removed");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn pipeline_killed_between_renames_is_completed_and_serialized() {
    let Some(models) = models_dir(&["teacher.onnx", "student_init.onnx"]) else { return };
    if fmnist_dir().is_none() {
        return;
    }
    let d = tmpdir("pipeline");
    let cache = d.join("cache");
    let out = d.join("p.tmf");
    let files: Vec<PathBuf> = ["p.tmf", "p.fp32.onnx", "p.report.md", "p.report.json", "p.report.svg"].iter().map(|n| d.join(n)).collect();
    let args: Vec<String> = [
        "pipeline",
        "--teacher",
        s(&models.join("teacher.onnx")),
        "--student",
        s(&models.join("student_init.onnx")),
        "-o",
        s(&out),
        "--train",
        "fashion-mnist:train:256",
        "--val",
        "fashion-mnist:val:128",
        "--test",
        "none",
        "--epochs",
        "1",
        "--max-steps",
        "4",
        "--batch",
        "64",
        "--no-qat",
        "--calib-size",
        "64",
        "--observer",
        "minmax",
        "--sensitivity-samples",
        "0",
        "--max-drop",
        "100",
        "--no-progress",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    for (i, f) in files.iter().enumerate() {
        std::fs::write(f, format!("old {i}")).unwrap();
    }
    let old = read_set(&files);
    // A teacher cache of a dead process in the per-user cache dir.
    std::fs::create_dir_all(cache.join("temper")).unwrap();
    let stale = cache.join("temper").join(format!("temper-pipeline-teacher-{}-0.npz", u32::MAX - 1));
    std::fs::write(&stale, b"stale").unwrap();
    let child = paused(&args, &cache, "renamed-2");
    assert!(!stale.exists(), "the dead process's teacher cache was removed");
    let o = temper(&args, &cache);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("is writing this output"), "{err}");
    kill9(child);
    let (new, committed) = new_set(&d, &files);
    assert!(committed);
    let now = read_set(&files);
    assert_eq!(now.iter().filter(|(p, b)| new[*p] == **b).count(), 2, "model and FP32 ONNX renamed, reports not");
    assert_eq!(now.iter().filter(|(p, b)| old[*p] == **b).count(), 3);
    let mut recover = args.clone();
    let i = recover.iter().position(|a| a == "fashion-mnist:train:256").unwrap();
    recover[i] = "npy:/nonexistent/x.npy,/nonexistent/y.npy".into();
    let o = temper(&recover, &cache);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("completed an interrupted commit"), "{err}");
    let now = read_set(&files);
    assert_eq!(now, new, "the new set, complete");
    let json = String::from_utf8_lossy(&now[&files[3]]);
    assert!(json.contains(&format!("\"emitted_size_bytes\": {},", now[&files[0]].len())), "{json}");
    assert!(temps(&d).is_empty(), "left {:?}", temps(&d));
    let caches: Vec<_> = std::fs::read_dir(cache.join("temper")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(caches.is_empty(), "caches left: {caches:?}");
    let _ = std::fs::remove_dir_all(&d);
}
