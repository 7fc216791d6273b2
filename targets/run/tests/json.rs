//! `--json` on every `temper-run` command: the output parses (serde_json) and carries the same
//! numbers as the text output; accuracies are percentages in both; `--quiet` and progress only
//! on a terminal (or with `--progress`).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use temper_kernels::QParams;
use temper_runtime::writer::{AlignedBuf, Builder, QWeights};
use temper_runtime::{Model, Session};
use temper_testkit::Need;

mod common;

const IN_Q: QParams = QParams { scale: 1.0 / 32.0, zero_point: 0 };
const OUT_Q: QParams = QParams { scale: 0.05, zero_point: 0 };
const LABELS: [&str; 3] = ["cat", "dog", "eel"];

/// `[1, 4]` → fully connected → `[1, 3]`, with class labels.
fn model() -> Vec<u8> {
    let mut b = Builder::new("json-net");
    let x = b.activation("x", &[1, 4], IN_Q);
    b.input(x);
    let y = b.activation("y", &[1, 3], OUT_Q);
    let data: Vec<i8> = (0..12).map(|i: i32| (i * 29 % 23 - 11) as i8).collect();
    let w = QWeights { data: &data, scales: &[0.01, 0.02, 0.03], bias: &[0, 10, -10] };
    b.fully_connected("fc", x, y, w, (-128, 127)).unwrap();
    b.output(y);
    b.meta("labels", &LABELS.join(","));
    b.finish().unwrap()
}

/// Dequantized logits of one `[4]` input, straight from the runtime.
fn logits(bytes: &[u8], x: &[f32]) -> Vec<f32> {
    let buf = AlignedBuf::from_bytes(bytes);
    let model = Model::from_bytes(buf.as_bytes()).unwrap();
    let mut arena = vec![0u8; model.arena_size()];
    let mut s = Session::new(&model, &mut arena).unwrap();
    s.set_input_f32(0, x).unwrap();
    s.run().unwrap();
    let mut y = vec![0f32; 3];
    s.output_f32(0, &mut y).unwrap();
    y
}

fn argmax(v: &[f32]) -> usize {
    (1..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

fn tmpdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("temper-run-json-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn run(args: &[&str]) -> Output {
    common::command().args(args).output().expect("run temper-run")
}

/// Stdout of a command that must succeed.
fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(o.status.success(), "temper-run {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// The single JSON object a `--json` command prints.
fn json(args: &[&str]) -> Value {
    let out = ok(args);
    assert_eq!(out.lines().count(), 1, "--json prints one line: {out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("temper-run {args:?} printed invalid JSON ({e}): {out}"))
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A model file and an NPY data set of `n` items with labels: right for 2 of every 3 items.
struct Fixture {
    dir: PathBuf,
    bytes: Vec<u8>,
    model: String,
    x: Vec<f32>,
    images: String,
    labels: String,
    preds: Vec<usize>,
    truth: Vec<i64>,
}

fn fixture(name: &str, n: usize) -> Fixture {
    let dir = tmpdir(name);
    let bytes = model();
    let m = dir.join("m.tmf");
    std::fs::write(&m, &bytes).unwrap();
    let x: Vec<f32> = (0..n * 4).map(|i| ((i * 37 % 29) as f32 - 14.0) / 8.0).collect();
    let preds: Vec<usize> = (0..n).map(|i| argmax(&logits(&bytes, &x[i * 4..i * 4 + 4]))).collect();
    assert!(n < 3 || preds.iter().any(|&p| p != preds[0]), "the test net predicts one class only");
    let truth: Vec<i64> = preds.iter().enumerate().map(|(i, &p)| if i % 3 == 0 { (p as i64 + 1) % 3 } else { p as i64 }).collect();
    let (images, labels) = (dir.join("x.npy"), dir.join("y.npy"));
    temper_data::write_npy_f32(&images, &[n, 4], &x).unwrap();
    temper_data::npy::write_npy_i64(&labels, &[n], &truth).unwrap();
    Fixture { model: s(&m), images: s(&images), labels: s(&labels), dir, bytes, x, preds, truth }
}

#[test]
fn info_json_matches_the_text_and_the_file() {
    let f = fixture("info", 3);
    let j = json(&["info", &f.model, "--json"]);
    let text = ok(&["info", &f.model]);
    let buf = AlignedBuf::from_bytes(&f.bytes);
    let model = Model::from_bytes(buf.as_bytes()).unwrap();
    assert_eq!(j["name"], "json-net");
    assert_eq!(num(&j["file_bytes"]), f.bytes.len() as f64);
    assert_eq!(num(&j["arena_bytes"]), model.arena_size() as f64);
    assert_eq!(j["format_version"], "1.0");
    assert!(text.contains(&format!("({} bytes)", f.bytes.len())) && text.contains(&format!("arena      {} bytes", model.arena_size())));
    assert_eq!(j["labels"], serde_json::json!(LABELS));
    assert!(j["metadata"].as_array().unwrap().iter().any(|m| m["key"] == "labels" && m["value"] == "cat,dog,eel"), "{j}");
    let ops = j["ops"].as_array().unwrap();
    assert_eq!(ops.len(), model.op_count());
    assert_eq!(ops[0]["op"], "FullyConnected");
    assert_eq!(ops[0]["output_shape"], serde_json::json!([1, 3]));
    assert_eq!(num(&ops[0]["out_scale"]) as f32, OUT_Q.scale);
    let (input, output) = (&j["inputs"][0], &j["outputs"][0]);
    assert_eq!(input["dims"], serde_json::json!([1, 4]));
    assert_eq!(input["accepts_u8_pixels"], false);
    assert_eq!(num(&input["scale"]) as f32, IN_Q.scale);
    assert!(output.get("accepts_u8_pixels").is_none(), "{output}");
    assert_eq!(num(&j["tensors"]["weight_tensors"]) + num(&j["tensors"]["activation_tensors"]), num(&j["tensors"]["count"]));
    assert!(
        text.contains(&format!("weights      {} constant tensors, {} bytes", j["tensors"]["weight_tensors"], j["tensors"]["weight_bytes"]))
    );
    // Every memory-plan row of the JSON is a row of the text table, with the same numbers.
    let plan = j["memory_plan"].as_array().unwrap();
    assert!(!plan.is_empty());
    for r in plan {
        let (off, size, end) = (num(&r["offset"]), num(&r["size"]), num(&r["end"]));
        assert_eq!(off + size, end, "{r}");
        let row = text.lines().find(|l| l.contains(r["what"].as_str().unwrap())).unwrap_or_else(|| panic!("{r} not in {text}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[..3], [off.to_string(), size.to_string(), end.to_string()], "{row}");
    }
    let kp = j["cpu"]["kernel_path"].as_str().unwrap();
    assert!(text.lines().any(|l| l.trim_start().starts_with("kernel path") && l.split_whitespace().nth(2) == Some(kp)), "{kp}: {text}");
}

#[test]
fn run_json_matches_the_text_and_the_runtime() {
    let n = 5;
    let f = fixture("run", n);
    let y = f.dir.join("out.npy");
    let j = json(&["run", &f.model, "--input", &f.images, "--output", &s(&y), "--json"]);
    let text = ok(&["run", &f.model, "--input", &f.images]);
    assert_eq!(num(&j["items"]), n as f64);
    assert_eq!(j["inputs"][0]["shape"], serde_json::json!([n, 4]));
    assert_eq!(j["inputs"][0]["dtype"], "f32");
    let rows = j["output0"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), n);
    for (k, row) in rows.iter().enumerate() {
        let want = logits(&f.bytes, &f.x[k * 4..k * 4 + 4]);
        let got: Vec<f32> = row["scores"].as_array().unwrap().iter().map(|v| num(v) as f32).collect();
        assert_eq!(got, want, "item {k}: JSON scores differ from the runtime");
        let top = f.preds[k];
        assert_eq!(num(&row["top1"]), top as f64);
        assert_eq!(row["label"], LABELS[top]);
        assert_eq!(num(&row["score"]) as f32, want[top]);
        assert!(text.contains(&format!("item {k}: top-1 {top} ({}) score {:.4}", LABELS[top], want[top])), "item {k}: {text}");
    }
    let w = &j["written"][0];
    assert_eq!((w["path"].as_str(), w["dtype"].as_str()), (Some(s(&y).as_str()), Some("f32")));
    assert_eq!(w["shape"], serde_json::json!([n, 3]));
    assert_eq!(temper_data::read_npy(&y).unwrap().shape, vec![n, 3]);
}

#[test]
fn eval_json_matches_the_text_in_percent() {
    let n = 30;
    let f = fixture("eval", n);
    let args = ["eval", f.model.as_str(), "--images", &f.images, "--labels", &f.labels];
    let j = json(&[&args[..], &["--json"]].concat());
    let text = ok(&args);
    let correct = (0..n).filter(|&i| f.preds[i] as i64 == f.truth[i]).count();
    assert_eq!((num(&j["count"]), num(&j["correct"])), (n as f64, correct as f64));
    let acc = num(&j["accuracy"]);
    assert_eq!(acc, 100.0 * correct as f64 / n as f64, "accuracy is a percentage");
    assert!(text.contains(&format!("top-1 accuracy: {acc:.2}% ({correct}/{n})")), "{text}");
    for c in j["per_class"].as_array().unwrap() {
        let (count, ok_c) = (num(&c["count"]), num(&c["correct"]));
        assert!(count > 0.0, "every class has items here: {c}");
        let a = num(&c["accuracy"]);
        assert_eq!(a, 100.0 * ok_c / count, "{c}");
        let name = c["name"].as_str().unwrap();
        assert!(
            text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
                == [c["class"].to_string().as_str(), name, &count.to_string(), &ok_c.to_string(), &format!("{a:.2}%")]),
            "{c}: {text}"
        );
    }
    assert_eq!(num(&j["unreachable_labels"]), 0.0);
}

#[test]
fn bench_json_with_per_op_matches_the_text() {
    let f = fixture("bench", 1);
    let j = json(&["bench", &f.model, "--runs", "4", "--warmup", "1", "--per-op", "--json"]);
    let text = ok(&["bench", &f.model, "--runs", "4", "--warmup", "1", "--per-op"]);
    assert_eq!((num(&j["runs"]), num(&j["warmup"]), num(&j["threads"])), (4.0, 1.0, 1.0));
    assert_eq!(num(&j["file_bytes"]), f.bytes.len() as f64);
    let l = &j["latency_us"];
    assert!(num(&l["min"]) <= num(&l["median"]) && num(&l["median"]) <= num(&l["max"]), "{l}");
    assert_eq!(num(&j["inferences_per_s"]), 1e6 / num(&l["mean"]));
    let per_op = j["per_op"].as_array().unwrap();
    assert_eq!(per_op.len(), 1);
    assert_eq!((per_op[0]["op"].as_str(), per_op[0]["name"].as_str()), (Some("FullyConnected"), Some("fc")));
    assert!((num(&per_op[0]["share_percent"]) - 100.0).abs() < 1e-9, "{per_op:?}");
    let k = j["kernels"].as_str().unwrap();
    assert!(text.contains(&format!("kernels     {k} ")) && text.contains("runs        4 timed after 1 warm-up"), "{text}");
    assert!(text.lines().any(|l| l.contains("FullyConnected") && l.contains(" fc ")), "{text}");
    // Without --per-op the list is empty, not absent.
    assert_eq!(json(&["bench", &f.model, "--runs", "2", "--json"])["per_op"], serde_json::json!([]));
}

#[test]
fn soak_json_matches_eval_and_progress_only_when_asked() {
    let n = 12;
    let f = fixture("soak", n);
    let base =
        ["soak", f.model.as_str(), "--images", &f.images, "--labels", &f.labels, "--count", "60", "--warmup", "12", "--rss-slack", "4096"];
    let j = json(&[&base[..], &["--json"]].concat());
    let ev = json(&["eval", &f.model, "--images", &f.images, "--labels", &f.labels, "--json"]);
    assert_eq!(num(&j["first_pass_accuracy"]), num(&ev["accuracy"]), "soak and eval disagree");
    assert_eq!((num(&j["first_pass_correct"]), num(&j["first_pass_count"])), (num(&ev["correct"]), n as f64));
    assert_eq!((num(&j["runs"]), num(&j["mismatches"]), num(&j["rss_kib"]["baseline_after_run"])), (60.0, 0.0, 24.0));
    // stderr is a pipe here: the result only, no progress lines, unless --progress.
    let o = run(&base);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(&format!("first pass  top-1 accuracy {:.2}% (", num(&j["first_pass_accuracy"]))), "{text}");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "", "no progress into a redirected log");
    let o = run(&[&base[..], &["--progress"]].concat());
    assert_eq!(String::from_utf8_lossy(&o.stderr).lines().filter(|l| l.starts_with("soak: ")).count(), 10);
    for quiet in [&["-q"][..], &["--quiet"][..]] {
        let o = run(&[quiet, &base[..], &["--progress"]].concat());
        assert_eq!(o.status.code(), Some(2), "--quiet with --progress: {}", String::from_utf8_lossy(&o.stderr));
    }
}

#[test]
fn soak_progress_on_a_terminal_and_quiet_silences_it() {
    // `script` runs the command on a pseudo-terminal (util-linux).
    if Command::new("script").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        temper_testkit::skip(Need::Tools, "`script` (util-linux) to give temper-run a terminal");
        return;
    }
    let f = fixture("tty", 12);
    let cmd = common::command();
    let mut words: Vec<String> =
        std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(|a| a.to_str().unwrap().to_string()).collect();
    words.extend(
        ["soak", &f.model, "--images", &f.images, "--labels", &f.labels, "--count", "60", "--warmup", "12", "--rss-slack", "4096"]
            .map(String::from),
    );
    let line = words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" ");
    let on_tty = |extra: &str| {
        let o = Command::new("script")
            .args(["-q", "-e", "-c", &format!("{line} {extra}"), "/dev/null"])
            .env_remove("TEMPER_LOG")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let out = on_tty("");
    assert_eq!(out.lines().filter(|l| l.starts_with("soak: ")).count(), 10, "progress on a terminal: {out}");
    let out = on_tty("--quiet");
    assert!(out.contains("first pass") && !out.contains("soak: "), "--quiet on a terminal: {out}");
}

#[test]
fn eval_warning_and_quiet() {
    let f = fixture("quiet", 6);
    // A label the 3-class model can never predict: a warning, silenced by -q / --quiet.
    let labels = f.dir.join("y5.npy");
    temper_data::npy::write_npy_i64(&labels, &[6], &[0, 1, 2, 5, 0, 1]).unwrap();
    let args = ["eval", f.model.as_str(), "--images", &f.images, "--labels", labels.to_str().unwrap(), "--json"];
    let loud = run(&args);
    assert!(loud.status.success() && String::from_utf8_lossy(&loud.stderr).contains("can never be predicted"));
    let j: Value = serde_json::from_slice(&loud.stdout).unwrap();
    for quiet in [&["-q"][..], &["--quiet"][..]] {
        let before = run(&[quiet, &args[..]].concat());
        let after = run(&[&args[..], quiet].concat());
        for o in [before, after] {
            assert!(o.status.success() && o.stderr.is_empty(), "{}", String::from_utf8_lossy(&o.stderr));
            let q: Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!((&q["correct"], &q["per_class"]), (&j["correct"], &j["per_class"]), "--quiet changes only stderr");
        }
    }
    assert_eq!(num(&j["unreachable_labels"]), 1.0);
}
