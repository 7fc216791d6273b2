//! Hostile converter inputs, end to end through the `temper quantize` binary: broken ONNX files
//! (truncated, wrong raw_data length, absurd dims, external data escaping the model directory by
//! `..`, absolute path or symlink, cycles, missing initializers, unsupported ops) and broken data
//! (wrong magic, truncated, shape mismatch with the model, labels out of range, empty sets).
//!
//! Every case must exit non-zero with one error that names the file and the problem, must not
//! panic, and must write nothing: a model file already at the output path stays byte-identical and
//! no other file appears. A control run with the same model and valid data passes, so each failure
//! is the hostile part's doing. Self-contained: the model is hand-encoded and the data generated.

use std::path::{Path, PathBuf};
use std::process::Command;
mod onnx_builder;
use onnx_builder::*;

// ---- ONNX models (the shared builder: tests/onnx_builder) ----------------------------------------

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn value_info(name: &str, dims: &[i64]) -> M {
    let mut shape = M::default();
    for &d in dims {
        shape = shape.msg(1, M::default().int(1, d));
    }
    let tt = M::default().int(1, 1).msg(2, shape);
    M::default().str(1, name).msg(2, M::default().msg(1, tt))
}

fn model(nodes: Vec<M>, inits: Vec<M>, input: &[i64]) -> Vec<u8> {
    let mut g = M::default().str(2, "hostile");
    for n in nodes {
        g = g.msg(1, n);
    }
    for t in inits {
        g = g.msg(5, t);
    }
    g = g.msg(11, value_info("x", input)).msg(12, value_info("y", &[1, 3]));
    M::default().int(1, 8).msg(7, g).msg(8, M::default().str(1, "").int(2, 13)).0
}

/// Conv 3×3 (2 channels, pad 1) → Relu → Flatten → Gemm to 3 classes, input `[1, 1, 4, 4]`.
/// `conv_w` replaces the conv weight initializer; `drop_fc_w` leaves the FC weights out.
fn classifier(conv_w: Option<M>, drop_fc_w: bool) -> Vec<u8> {
    let w: Vec<f32> = (0..18).map(|i| ((i * 7) % 9) as f32 * 0.1 - 0.4).collect();
    let fw: Vec<f32> = (0..3 * 32).map(|i| ((i * 5) % 11) as f32 * 0.05 - 0.25).collect();
    let nodes = vec![
        node(
            "Conv",
            "conv",
            &["x", "w", "b"],
            &["c"],
            vec![attr_ints_packed("kernel_shape", &[3, 3]), attr_ints_packed("pads", &[1, 1, 1, 1])],
        ),
        node("Relu", "relu", &["c"], &["r"], vec![]),
        node("Flatten", "flat", &["r"], &["f"], vec![attr_i("axis", 1)]),
        node("Gemm", "fc", &["f", "fw", "fb"], &["y"], vec![attr_i("transB", 1)]),
    ];
    let mut inits = vec![conv_w.unwrap_or_else(|| tensor_f32("w", &[2, 1, 3, 3], &w)), tensor_f32("b", &[2], &[0.1, -0.1])];
    if !drop_fc_w {
        inits.push(tensor_f32("fw", &[3, 32], &fw));
    }
    inits.push(tensor_f32("fb", &[3], &[0.0, 0.2, -0.2]));
    model(nodes, inits, &[1, 1, 4, 4])
}

// ---- files and the binary ------------------------------------------------------------------------

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("temper-hostile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn write(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    }
    fn listing(&self) -> Vec<String> {
        let mut v: Vec<String> = walk(&self.0).into_iter().map(|p| p.strip_prefix(&self.0).unwrap().display().to_string()).collect();
        v.sort();
        v
    }
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const PREVIOUS: &[u8] = b"TMF1 an earlier good model that must survive every failed run";

/// Quantize options that keep the run small: the hand model, tiny sets, one observer.
fn quantize_args<'a>(onnx: &'a str, out: &'a str, calib: &'a str, val: &'a str) -> Vec<&'a str> {
    vec![
        "quantize",
        onnx,
        "-o",
        out,
        "--calib",
        calib,
        "--val",
        val,
        "--observer",
        "minmax",
        "--mean",
        "0.5",
        "--std",
        "0.25",
        "--max-drop",
        "100",
        "--sensitivity-samples",
        "0",
        "--threads",
        "1",
    ]
}

fn temper(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_temper")).args(args).output().expect("run temper");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Runs `temper quantize` expecting a clean failure; checks that the output was left alone and no
/// file appeared; returns stderr.
fn must_fail(dir: &Dir, what: &str, args: &[&str], wants: &[&str]) -> String {
    let out = dir.path("m.tmf");
    std::fs::write(&out, PREVIOUS).unwrap();
    let before = dir.listing();
    let (code, stdout, stderr) = temper(args);
    // A non-zero exit status (not a signal).
    assert!(matches!(code, Some(c) if c != 0), "{what}: expected a failure, got {code:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stderr.contains("panicked") && !stdout.contains("panicked"), "{what}: panicked\n{stderr}");
    for w in wants {
        assert!(stderr.contains(w), "{what}: the error lacks '{w}':\n{stderr}");
    }
    assert_eq!(std::fs::read(&out).unwrap(), PREVIOUS, "{what}: the existing output was modified");
    assert_eq!(dir.listing(), before, "{what}: files were written");
    eprintln!("{what}: {}", stderr.trim_end());
    stderr
}

/// `n` 4×4 u8 images with labels in `0..3`, as IDX files `NAME-images`/`NAME-labels`.
fn idx_pair(dir: &Dir, name: &str, n: usize, hw: usize, labels: Option<Vec<u8>>) -> (String, String) {
    let px: Vec<u8> = (0..n * hw * hw).map(|i| ((i * 37 + i / 7) % 256) as u8).collect();
    let lab = labels.unwrap_or_else(|| (0..n).map(|i| (i % 3) as u8).collect());
    let i = dir.write(&format!("{name}-images"), &temper_data::idx::idx_u8_bytes(&[n, hw, hw], &px).unwrap());
    let l = dir.write(&format!("{name}-labels"), &temper_data::idx::idx_u8_bytes(&[lab.len()], &lab).unwrap());
    (i, l)
}

fn spec(kind: &str, a: &str, b: &str) -> String {
    format!("{kind}:{a},{b}")
}

#[test]
fn control_run_with_valid_inputs_replaces_the_output() {
    let dir = Dir::new("control");
    let onnx = dir.write("ok.onnx", &classifier(None, false));
    let (ci, cl) = idx_pair(&dir, "calib", 24, 4, None);
    let out = dir.path("m.tmf");
    std::fs::write(&out, PREVIOUS).unwrap();
    let calib = spec("idx", &ci, &cl);
    let (code, stdout, stderr) = temper(&quantize_args(&onnx, out.to_str().unwrap(), &calib, &calib));
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let bytes = std::fs::read(&out).unwrap();
    let buf = temper_runtime::writer::AlignedBuf::from_bytes(&bytes);
    temper_runtime::Model::from_bytes(buf.as_bytes()).expect("the control run emits a valid model");
}

#[test]
fn hostile_onnx_files_fail_clearly_and_write_nothing() {
    let dir = Dir::new("onnx");
    let (ci, cl) = idx_pair(&dir, "calib", 24, 4, None);
    let calib = spec("idx", &ci, &cl);
    let out = dir.path("m.tmf").to_str().unwrap().to_string();
    let run = |what: &str, file: &str, bytes: &[u8], wants: &[&str]| {
        let p = dir.write(file, bytes);
        let mut w = vec![file];
        w.extend_from_slice(wants);
        must_fail(&dir, what, &quantize_args(&p, &out, &calib, &calib), &w);
        std::fs::remove_file(&p).unwrap();
    };
    let good = classifier(None, false);

    // Truncated: at several lengths, including inside the weights.
    for len in [0, 1, 10, good.len() / 3, good.len() / 2, good.len() - 1] {
        run(&format!("truncated to {len} bytes"), "trunc.onnx", &good[..len], &[]);
    }
    run("not protobuf at all", "junk.onnx", b"\x89PNG\r\n\x1a\n not an onnx model", &["malformed"]);

    // raw_data whose length does not match dims × dtype.
    let bad_raw = M::default().packed(1, &[2, 1, 3, 3]).int(2, 1).str(8, "w").bytes(9, &[0u8; 20]);
    run("raw_data length", "raw.onnx", &classifier(Some(bad_raw), false), &["'w'", "20 bytes"]);

    // Absurd dims: huge, overflowing, negative, on an initializer (with tiny data) and the input.
    for (what, dims) in [
        ("huge initializer dims", vec![1i64 << 40, 1 << 40, 3, 3]),
        ("overflowing initializer dims", vec![i64::MAX, 4, 3, 3]),
        ("negative initializer dim", vec![2, -1, 3, 3]),
    ] {
        let t = M::default().packed(1, &dims).int(2, 1).str(8, "w").bytes(9, &[0u8; 72]);
        run(what, "dims.onnx", &classifier(Some(t), false), &["'w'"]);
    }
    run("absurd input dims", "input.onnx", &conv_relu(&[1, 1, 1 << 30, 1 << 30]), &["'x'", "too large"]);

    // A cycle: the Relu reads the Gemm's output, which depends on the Relu.
    let cyc = model(
        vec![
            node(
                "Conv",
                "conv",
                &["x", "w", "b"],
                &["c"],
                vec![attr_ints_packed("kernel_shape", &[3, 3]), attr_ints_packed("pads", &[1, 1, 1, 1])],
            ),
            node("Add", "loop_add", &["c", "back"], &["r"], vec![]),
            node("Flatten", "flat", &["r"], &["f"], vec![attr_i("axis", 1)]),
            node("Gemm", "fc", &["f", "fw", "fb"], &["y"], vec![attr_i("transB", 1)]),
            node("Relu", "loop_relu", &["r"], &["back"], vec![]),
        ],
        vec![
            tensor_f32("w", &[2, 1, 3, 3], &[0.1; 18]),
            tensor_f32("b", &[2], &[0.0; 2]),
            tensor_f32("fw", &[3, 32], &[0.1; 96]),
            tensor_f32("fb", &[3], &[0.0; 3]),
        ],
        &[1, 1, 4, 4],
    );
    run("cycle", "cycle.onnx", &cyc, &["loop_add", "'back'", "loop_relu", "cycle"]);

    // A node input that no initializer, graph input or node provides.
    run("missing initializer", "missing.onnx", &classifier(None, true), &["'fw'", "fc"]);

    // An operator temper does not implement: op type, node and opset are named.
    let unsup = model(
        vec![
            node(
                "Conv",
                "conv",
                &["x", "w", "b"],
                &["c"],
                vec![attr_ints_packed("kernel_shape", &[3, 3]), attr_ints_packed("pads", &[1, 1, 1, 1])],
            ),
            node("Einsum", "mystery_einsum", &["c"], &["r"], vec![]),
            node("Flatten", "flat", &["r"], &["f"], vec![attr_i("axis", 1)]),
            node("Gemm", "fc", &["f", "fw", "fb"], &["y"], vec![attr_i("transB", 1)]),
        ],
        vec![
            tensor_f32("w", &[2, 1, 3, 3], &[0.1; 18]),
            tensor_f32("b", &[2], &[0.0; 2]),
            tensor_f32("fw", &[3, 32], &[0.1; 96]),
            tensor_f32("fb", &[3], &[0.0; 3]),
        ],
        &[1, 1, 4, 4],
    );
    run("unsupported op", "unsup.onnx", &unsup, &["Einsum", "mystery_einsum", "opset 13"]);
}

/// Conv → Relu on an input `x` of `dims`.
fn conv_relu(dims: &[i64]) -> Vec<u8> {
    let w: Vec<f32> = (0..18).map(|i| ((i * 7) % 9) as f32 * 0.1 - 0.4).collect();
    model(
        vec![
            node(
                "Conv",
                "conv",
                &["x", "w", "b"],
                &["c"],
                vec![attr_ints_packed("kernel_shape", &[3, 3]), attr_ints_packed("pads", &[1, 1, 1, 1])],
            ),
            node("Relu", "relu", &["c"], &["y"], vec![]),
        ],
        vec![tensor_f32("w", &[2, 1, 3, 3], &w), tensor_f32("b", &[2], &[0.1, -0.1])],
        dims,
    )
}

#[test]
fn external_data_outside_the_model_directory_is_refused() {
    let dir = Dir::new("ext");
    let (ci, cl) = idx_pair(&dir, "calib", 24, 4, None);
    let calib = spec("idx", &ci, &cl);
    let out = dir.path("m.tmf").to_str().unwrap().to_string();
    let w: Vec<f32> = (0..18).map(|i| i as f32 * 0.05).collect();
    std::fs::create_dir_all(dir.path("model")).unwrap();
    std::fs::create_dir_all(dir.path("outside")).unwrap();
    dir.write("outside/secret.bin", &f32_bytes(&w));
    dir.write("model/weights.bin", &f32_bytes(&w));
    std::os::unix::fs::symlink(dir.path("outside/secret.bin"), dir.path("model/link.bin")).unwrap();
    std::os::unix::fs::symlink(dir.path("outside"), dir.path("model/linkdir")).unwrap();
    let ext = |loc: &str| {
        let kv = |k: &str, v: &str| M::default().str(1, k).str(2, v);
        M::default().packed(1, &[2, 1, 3, 3]).int(2, 1).str(8, "w").msg(13, kv("location", loc)).msg(13, kv("length", "72")).int(14, 1)
    };
    // Inside the directory it works (the same file layout as the hostile cases).
    let ok = dir.write("model/ok.onnx", &classifier(Some(ext("weights.bin")), false));
    let mut args = quantize_args(&ok, &out, &calib, &calib);
    let (code, _, stderr) = temper(&args);
    assert_eq!(code, Some(0), "{stderr}");
    std::fs::remove_file(dir.path("m.tmf")).unwrap();
    std::fs::remove_file(dir.path("m.report.json")).unwrap();
    std::fs::remove_file(dir.path("m.report.svg")).unwrap();
    let abs = dir.path("outside/secret.bin").to_str().unwrap().to_string();
    for (what, loc) in [
        ("external data ../", "../outside/secret.bin"),
        ("external data absolute path", abs.as_str()),
        ("external data symlink to a file outside", "link.bin"),
        ("external data through a symlinked directory", "linkdir/secret.bin"),
        ("external data missing", "nope.bin"),
    ] {
        let p = dir.write("model/evil.onnx", &classifier(Some(ext(loc)), false));
        args = quantize_args(&p, &out, &calib, &calib);
        let wants: &[&str] = match loc {
            "nope.bin" => &["evil.onnx", "'w'", "nope.bin", "No such file"],
            l if l.starts_with('/') => &["evil.onnx", "is absolute"],
            _ => &["evil.onnx", "outside the model directory"],
        };
        must_fail(&dir, what, &args, wants);
        std::fs::remove_file(&p).unwrap();
    }
}

#[test]
fn hostile_data_fails_clearly_and_writes_nothing() {
    let dir = Dir::new("data");
    let onnx = dir.write("ok.onnx", &classifier(None, false));
    let out = dir.path("m.tmf").to_str().unwrap().to_string();
    let (gi, gl) = idx_pair(&dir, "good", 24, 4, None);
    let good = spec("idx", &gi, &gl);
    let fail = |what: &str, calib: &str, val: &str, wants: &[&str]| {
        must_fail(&dir, what, &quantize_args(&onnx, &out, calib, val), wants);
    };

    // IDX: wrong magic, truncated payload, truncated header, image/label count mismatch.
    let mut bad = std::fs::read(&gi).unwrap();
    bad[0] = 0x50;
    let p = dir.write("m1-images", &bad);
    fail("IDX wrong magic", &spec("idx", &p, &gl), &good, &["m1-images", "magic"]);
    let mut bad = std::fs::read(&gi).unwrap();
    bad[2] = 0x42;
    let p = dir.write("t1-images", &bad);
    fail("IDX unknown type code", &spec("idx", &p, &gl), &good, &["t1-images", "0x42"]);
    let full = std::fs::read(&gi).unwrap();
    let p = dir.write("short-images", &full[..full.len() - 5]);
    fail("IDX truncated payload", &spec("idx", &p, &gl), &good, &["short-images", "truncated"]);
    let p = dir.write("head-images", &full[..6]);
    fail("IDX truncated header", &spec("idx", &p, &gl), &good, &["head-images"]);
    let (_, l10) = idx_pair(&dir, "ten", 10, 4, None);
    fail("IDX count mismatch", &spec("idx", &gi, &l10), &good, &["ten-labels"]);

    // NPY: wrong magic, truncated.
    let px: Vec<u8> = (0..24 * 16).map(|i| (i % 251) as u8).collect();
    let ni = dir.path("x.npy");
    temper_data::npy::write_npy_u8(&ni, &[24, 4, 4], &px).unwrap();
    let nl = dir.path("y.npy");
    temper_data::npy::write_npy_i64(&nl, &[24], &(0..24).map(|i| i % 3).collect::<Vec<_>>()).unwrap();
    let (ni, nl) = (ni.to_str().unwrap().to_string(), nl.to_str().unwrap().to_string());
    let mut b = std::fs::read(&ni).unwrap();
    b[1] = b'X';
    let p = dir.write("m2.npy", &b);
    fail("NPY wrong magic", &spec("npy", &p, &nl), &good, &["m2.npy", "magic"]);
    let b = std::fs::read(&ni).unwrap();
    let p = dir.write("short.npy", &b[..b.len() - 7]);
    fail("NPY truncated", &spec("npy", &p, &nl), &good, &["short.npy", "truncated"]);

    // Images of the wrong size for the model's [1, 1, 4, 4] input.
    let (si, sl) = idx_pair(&dir, "five", 24, 5, None);
    fail("shape mismatch (calibration)", &spec("idx", &si, &sl), &good, &["five-images", "[24, 5, 5]", "[1, 1, 4, 4]"]);
    fail("shape mismatch (validation)", &good, &spec("idx", &si, &sl), &["five-images", "[24, 5, 5]", "[1, 1, 4, 4]"]);

    // Labels the 3-class model can never produce.
    let (oi, ol) = idx_pair(&dir, "range", 24, 4, Some((0..24).map(|i| if i == 17 { 7 } else { (i % 3) as u8 }).collect()));
    fail("labels out of range", &good, &spec("idx", &oi, &ol), &["range-labels", "label 7 at index 17", "3 classes"]);

    // Empty sets: zero images, and --calib-size 0.
    let (ei, el) = idx_pair(&dir, "empty", 0, 4, None);
    fail("empty calibration set", &spec("idx", &ei, &el), &good, &["empty-images", "no images"]);
    fail("empty validation set", &good, &spec("idx", &ei, &el), &["empty-images", "no images"]);
    let mut args = quantize_args(&onnx, &out, &good, &good);
    args.extend(["--calib-size", "0"]);
    must_fail(&dir, "--calib-size 0", &args, &["calib"]);

    // Image folders: a corrupt PNG, and a folder with no images.
    std::fs::create_dir_all(dir.path("folder/0")).unwrap();
    std::fs::create_dir_all(dir.path("folder/1")).unwrap();
    dir.write("folder/0/a.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR broken");
    dir.write("folder/1/b.png", b"\x89PNG\r\n\x1a\n");
    fail("corrupt PNG in a folder", &format!("dir:{}", dir.path("folder").display()), &good, &["a.png"]);
    std::fs::create_dir_all(dir.path("nothing")).unwrap();
    fail("empty image folder", &format!("dir:{}", dir.path("nothing").display()), &good, &["nothing"]);
}
