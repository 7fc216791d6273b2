//! Models over vectors `[N, K]` and sequences `[N, C, L]` (not images) end to end: built here as
//! ONNX files with designed weights (an MLP over a feature vector, a 1-D CNN over 3-axis sensor
//! windows), converted by `temper quantize` with default flags plus their NPY data, and the
//! emitted `.tmf` run through `temper-runtime` with inputs of the model's real rank against the
//! FP32 graph. Also: `--input-shape NAME=…` for dynamic dims, the error naming both shapes when
//! the data does not fit, and a 3-channel image model with f32 and u8 NPY data and default flags.

use std::path::{Path, PathBuf};
use std::process::Command;
use temper_converter::fp32::{self, Tensor};
use temper_converter::onnx::{self, InputShapes};
use temper_runtime::writer::AlignedBuf;
use temper_runtime::{Model, Session};
mod onnx_builder;
use onnx_builder::*;

// ----- a tiny ONNX encoder ---------------------------------------------------------------------

/// A dimension of a value info: fixed or symbolic (`batch`, `time`).
enum D {
    V(i64),
    S(&'static str),
}

fn value_info(name: &str, dims: &[D]) -> M {
    let mut shape = M::default();
    for d in dims {
        let dm = match d {
            D::V(v) => M::default().int(1, *v),
            D::S(s) => M::default().str(2, s),
        };
        shape = shape.msg(1, dm);
    }
    let tt = M::default().int(1, 1).msg(2, shape);
    M::default().str(1, name).msg(2, M::default().msg(1, tt))
}

fn model(nodes: Vec<M>, inits: Vec<M>, input: M, output: M) -> Vec<u8> {
    let mut g = M::default().str(2, "hand");
    for n in nodes {
        g = g.msg(1, n);
    }
    for t in inits {
        g = g.msg(5, t);
    }
    g = g.msg(11, input).msg(12, output);
    M::default().int(1, 8).msg(7, g).msg(8, M::default().str(1, "").int(2, 17)).0
}

// ----- deterministic data ----------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn u(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }
    fn uniform(&mut self, a: f32, b: f32) -> f32 {
        a + (b - a) * self.u()
    }
    fn normal(&mut self) -> f32 {
        let (u1, u2) = (self.u(), self.u());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    }
    fn below(&mut self, n: usize) -> usize {
        ((self.u() * n as f32) as usize).min(n - 1)
    }
}

const CLASSES: usize = 8;

/// MLP over 64 features: Gemm(64→32, transB) + Relu, MatMul(32→16) + Add + Relu, Gemm(16→8).
/// Rows 0..8 of the first layer are the class prototypes, rows 8..16 their negatives, so the
/// logits are the projections on the prototypes; the other units are random.
fn mlp(protos: &[Vec<f32>], rng: &mut Rng) -> Vec<u8> {
    let mut w1 = Vec::new();
    for k in 0..16 {
        let sign = if k < CLASSES { 1.0 } else { -1.0 };
        w1.extend(protos[k % CLASSES].iter().map(|v| sign * v));
    }
    for _ in 16..32 {
        w1.extend((0..64).map(|_| rng.normal() / 8.0));
    }
    let b1: Vec<f32> = (0..32).map(|_| rng.uniform(-0.02, 0.02)).collect();
    let mut w2 = vec![0f32; 32 * 16]; // MatMul B: [32, 16]
    for (j, v) in w2.iter_mut().enumerate() {
        let (r, c) = (j / 16, j % 16);
        *v = if r == c { 1.0 } else { rng.uniform(-0.02, 0.02) };
    }
    let b2: Vec<f32> = (0..16).map(|_| rng.uniform(-0.01, 0.01)).collect();
    let mut w3 = vec![0f32; 16 * CLASSES]; // Gemm B (no transB): [16, 8]
    for k in 0..CLASSES {
        w3[k * CLASSES + k] = 1.0;
        w3[(CLASSES + k) * CLASSES + k] = -1.0;
    }
    let b3 = vec![0f32; CLASSES];
    model(
        vec![
            node("Gemm", "fc1", &["features", "w1", "b1"], &["h1"], vec![attr_i("transB", 1)]),
            node("Relu", "relu1", &["h1"], &["a1"], vec![]),
            node("MatMul", "fc2", &["a1", "w2"], &["h2"], vec![]),
            node("Add", "fc2_bias", &["h2", "b2"], &["h2b"], vec![]),
            node("Relu", "relu2", &["h2b"], &["a2"], vec![]),
            node("Gemm", "fc3", &["a2", "w3", "b3"], &["logits"], vec![]),
        ],
        vec![
            tensor_f32("w1", &[32, 64], &w1),
            tensor_f32("b1", &[32], &b1),
            tensor_f32("w2", &[32, 16], &w2),
            tensor_f32("b2", &[16], &b2),
            tensor_f32("w3", &[16, CLASSES as i64], &w3),
            tensor_f32("b3", &[CLASSES as i64], &b3),
        ],
        value_info("features", &[D::S("batch"), D::V(64)]),
        value_info("logits", &[D::S("batch"), D::V(CLASSES as i64)]),
    )
}

/// Feature vectors: a prototype scaled by 0.8..1.5, plus noise.
fn mlp_data(protos: &[Vec<f32>], n: usize, rng: &mut Rng) -> (Vec<f32>, Vec<i64>) {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let k = rng.below(CLASSES);
        let a = rng.uniform(0.8, 1.5);
        x.extend(protos[k].iter().map(|&p| a * p + 0.08 * rng.normal()));
        y.push(k as i64);
    }
    (x, y)
}

const L: usize = 128;
const K1: usize = 63;

fn freq(k: usize) -> f32 {
    (4 + 6 * k) as f32
}

/// 1-D CNN over `[N, 3, 128]` windows: Conv(3→16, k 63, pad 31) + Relu, MaxPool(2), Conv(16→16,
/// k 3, pad 1) + BatchNorm + Relu, AveragePool(2), GlobalAveragePool, Flatten, Gemm(16→8). The
/// first convolution's filters are Hann-windowed cosine and sine templates of the 8 class
/// frequencies, so the pooled features are the energy at each; the rest are near identities.
fn cnn1d(rng: &mut Rng) -> Vec<u8> {
    let mut w1 = vec![0f32; 16 * 3 * K1];
    for o in 0..16 {
        let f = freq(o / 2);
        for c in 0..3 {
            for j in 0..K1 {
                let t = j as f32 - (K1 / 2) as f32;
                let hann = 0.5 - 0.5 * (2.0 * std::f32::consts::PI * j as f32 / (K1 - 1) as f32).cos();
                let ph = 2.0 * std::f32::consts::PI * f * t / L as f32;
                let v = if o % 2 == 0 { ph.cos() } else { ph.sin() };
                w1[(o * 3 + c) * K1 + j] = v * hann / (K1 as f32 / 4.0);
            }
        }
    }
    let b1: Vec<f32> = (0..16).map(|_| rng.uniform(-0.01, 0.01)).collect();
    let mut w2 = vec![0f32; 16 * 16 * 3];
    for o in 0..16 {
        for i in 0..16 {
            for j in 0..3 {
                w2[(o * 16 + i) * 3 + j] = if o == i && j == 1 { 1.0 } else { rng.uniform(-0.02, 0.02) };
            }
        }
    }
    let gamma: Vec<f32> = (0..16).map(|_| rng.uniform(0.9, 1.1)).collect();
    let beta: Vec<f32> = (0..16).map(|_| rng.uniform(-0.01, 0.01)).collect();
    let mean: Vec<f32> = (0..16).map(|_| rng.uniform(-0.01, 0.01)).collect();
    let var: Vec<f32> = (0..16).map(|_| rng.uniform(0.9, 1.1)).collect();
    let mut w3 = vec![0f32; CLASSES * 16]; // transB: [8, 16]
    for k in 0..CLASSES {
        w3[k * 16 + 2 * k] = 1.0;
        w3[k * 16 + 2 * k + 1] = 1.0;
    }
    model(
        vec![
            node(
                "Conv",
                "conv1",
                &["window", "w1", "b1"],
                &["c1"],
                vec![attr_ints_packed("kernel_shape", &[K1 as i64]), attr_ints_packed("pads", &[31, 31])],
            ),
            node("Relu", "relu1", &["c1"], &["r1"], vec![]),
            node("MaxPool", "pool1", &["r1"], &["p1"], vec![attr_ints_packed("kernel_shape", &[2]), attr_ints_packed("strides", &[2])]),
            node("Conv", "conv2", &["p1", "w2"], &["c2"], vec![attr_ints_packed("kernel_shape", &[3]), attr_ints_packed("pads", &[1, 1])]),
            node("BatchNormalization", "bn2", &["c2", "gamma", "beta", "mean", "var"], &["n2"], vec![]),
            node("Relu", "relu2", &["n2"], &["r2"], vec![]),
            node("AveragePool", "pool2", &["r2"], &["p2"], vec![attr_ints_packed("kernel_shape", &[2]), attr_ints_packed("strides", &[2])]),
            node("GlobalAveragePool", "gap", &["p2"], &["g"], vec![]),
            node("Flatten", "flat", &["g"], &["f"], vec![]),
            node("Gemm", "fc", &["f", "w3"], &["logits"], vec![attr_i("transB", 1)]),
        ],
        vec![
            tensor_f32("w1", &[16, 3, K1 as i64], &w1),
            tensor_f32("b1", &[16], &b1),
            tensor_f32("w2", &[16, 16, 3], &w2),
            tensor_f32("gamma", &[16], &gamma),
            tensor_f32("beta", &[16], &beta),
            tensor_f32("mean", &[16], &mean),
            tensor_f32("var", &[16], &var),
            tensor_f32("w3", &[CLASSES as i64, 16], &w3),
        ],
        value_info("window", &[D::S("batch"), D::V(3), D::S("time")]),
        value_info("logits", &[D::S("batch"), D::V(CLASSES as i64)]),
    )
}

/// 3-axis vibration windows: the class tone (amplitude 0.8..1.2, per-axis gain 0.5..1, random
/// phase), a weaker tone of another class, a slow drift, and noise.
fn sensor_data(n: usize, rng: &mut Rng) -> (Vec<f32>, Vec<i64>) {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let tau = 2.0 * std::f32::consts::PI;
    for _ in 0..n {
        let k = rng.below(CLASSES);
        let other = (k + 1 + rng.below(CLASSES - 1)) % CLASSES;
        let (a, a2) = (rng.uniform(0.8, 1.2), rng.uniform(0.1, 0.3));
        let (ph, ph2) = (rng.uniform(0.0, tau), rng.uniform(0.0, tau));
        for _ in 0..3 {
            let (g, drift, dph) = (rng.uniform(0.5, 1.0), rng.uniform(-0.3, 0.3), rng.uniform(0.0, tau));
            for t in 0..L {
                let s = t as f32 / L as f32;
                let v = a * g * (tau * freq(k) * s + ph).sin()
                    + a2 * g * (tau * freq(other) * s + ph2).sin()
                    + drift * (tau * s + dph).sin()
                    + 0.15 * rng.normal();
                x.push(v);
            }
        }
        y.push(k as i64);
    }
    (x, y)
}

// ----- helpers ---------------------------------------------------------------------------------

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("temper-anyrank-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn temper(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_temper")).args(args).output().expect("run temper");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Write samples `[n, dims…]` and labels as `NAME.x.npy` / `NAME.y.npy`; the `npy:` spec.
fn write_set(dir: &Path, name: &str, dims: &[usize], x: &[f32], y: &[i64]) -> String {
    let (xp, yp) = (dir.join(format!("{name}.x.npy")), dir.join(format!("{name}.y.npy")));
    let mut shape = vec![y.len()];
    shape.extend_from_slice(dims);
    temper_data::write_npy_f32(&xp, &shape, x).unwrap();
    temper_data::npy::write_npy_i64(&yp, &[y.len()], y).unwrap();
    format!("npy:{},{}", s(&xp), s(&yp))
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

/// Figures of the emitted file against FP32 on `n` samples of `sample` elements.
struct Agreement {
    top1: f64,
    rel_l2: f64,
    fp32_acc: f64,
    class_counts: Vec<usize>,
}

/// Run the emitted file through `temper-runtime` on every sample, with the input of the real
/// rank `dims` (checked against the file), and compare with the FP32 graph imported from
/// `onnx_bytes` with `shapes`.
fn agreement(tmf: &Path, onnx_bytes: &[u8], shapes: &InputShapes, dims: &[usize], x: &[f32], y: &[i64]) -> Agreement {
    let g = onnx::import_bytes_with(onnx_bytes, None, shapes, "model.onnx").unwrap();
    let n = y.len();
    let mut batch_shape = vec![n];
    batch_shape.extend_from_slice(dims);
    let fp = fp32::run(&g, &[Tensor::new(batch_shape, x.to_vec()).unwrap()]).unwrap().remove(0);
    let bytes = std::fs::read(tmf).unwrap();
    let buf = AlignedBuf::from_bytes(&bytes);
    let model = Model::from_bytes(buf.as_bytes()).unwrap();
    let input = model.tensor(model.graph_inputs()[0]);
    let mut want = vec![1u32];
    want.extend(dims.iter().map(|&d| d as u32));
    assert_eq!(input.dims, want.as_slice(), "the file's input has the model's real rank");
    assert!(model.input_record(input.id).is_none_or(|r| r.kind == 0), "f32 data: no pixel input");
    let mut arena = vec![0u8; model.arena_size()];
    let mut sess = Session::new(&model, &mut arena).unwrap();
    let per: usize = dims.iter().product();
    let classes = fp.data.len() / n;
    let mut out = vec![0f32; classes];
    let (mut agree, mut correct, mut num, mut den) = (0, 0, 0f64, 0f64);
    let mut class_counts = vec![0; classes];
    for i in 0..n {
        sess.set_input_f32(0, &x[i * per..(i + 1) * per]).unwrap();
        sess.run().unwrap();
        sess.output_f32(0, &mut out).unwrap();
        let r = &fp.data[i * classes..(i + 1) * classes];
        agree += usize::from(argmax(&out) == argmax(r));
        correct += usize::from(argmax(r) as i64 == y[i]);
        class_counts[argmax(r)] += 1;
        for (a, b) in r.iter().zip(&out) {
            num += f64::from(a - b).powi(2);
            den += f64::from(*a).powi(2);
        }
    }
    Agreement {
        top1: 100.0 * agree as f64 / n as f64,
        rel_l2: (num / den).sqrt(),
        fp32_acc: 100.0 * correct as f64 / n as f64,
        class_counts,
    }
}

fn check(name: &str, a: &Agreement, n: usize) {
    println!(
        "{name}: INT8 vs FP32 top-1 agreement {:.2}% on {n} held-out inputs, relative L2 {:.4}; FP32 accuracy {:.2}%; FP32 classes {:?}",
        a.top1, a.rel_l2, a.fp32_acc, a.class_counts
    );
    assert!(a.class_counts.iter().all(|&c| c * 20 >= n), "{name}: every class is predicted (a real task): {:?}", a.class_counts);
    assert!(a.fp32_acc >= 90.0, "{name}: the FP32 model solves its task: {:.2}%", a.fp32_acc);
    assert!(a.top1 >= 99.0, "{name}: INT8 top-1 agreement {:.2}% < 99%", a.top1);
    assert!(a.rel_l2 <= 0.05, "{name}: relative L2 {:.4} > 0.05", a.rel_l2);
}

// ----- tests -----------------------------------------------------------------------------------

#[test]
fn mlp_over_a_feature_vector_converts_with_default_flags_and_matches_fp32() {
    let dir = tmpdir("mlp");
    let mut rng = Rng(11);
    let protos: Vec<Vec<f32>> = (0..CLASSES).map(|_| (0..64).map(|_| if rng.u() < 0.5 { -0.125 } else { 0.125 }).collect()).collect();
    let bytes = mlp(&protos, &mut rng);
    let onnx_path = dir.join("mlp.onnx");
    std::fs::write(&onnx_path, &bytes).unwrap();
    let (cx, cy) = mlp_data(&protos, 512, &mut rng);
    let (vx, vy) = mlp_data(&protos, 400, &mut rng);
    let (tx, ty) = mlp_data(&protos, 400, &mut rng);
    let calib = write_set(&dir, "calib", &[64], &cx, &cy);
    let val = write_set(&dir, "val", &[64], &vx, &vy);
    let out = dir.join("mlp.tmf");
    let (code, stdout, stderr) = temper(&["quantize", s(&onnx_path), "-o", s(&out), "--calib", &calib, "--val", &val]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let a = agreement(&out, &bytes, &InputShapes::default(), &[64], &tx, &ty);
    check("MLP [N, 64]", &a, ty.len());
    // Only --calib: validation uses the calibration data, and says so.
    let out2 = dir.join("mlp2.tmf");
    let (code, stdout, stderr) = temper(&["quantize", s(&onnx_path), "-o", s(&out2), "--calib", &calib]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("no --val given"), "{stderr}");
    assert!(!stderr.contains("fashion-mnist") && !stdout.contains("fashion-mnist"), "{stdout}\n{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cnn_1d_over_sensor_windows_converts_and_matches_fp32() {
    let dir = tmpdir("cnn1d");
    let mut rng = Rng(5);
    let bytes = cnn1d(&mut rng);
    let onnx_path = dir.join("cnn1d.onnx");
    std::fs::write(&onnx_path, &bytes).unwrap();
    let (cx, cy) = sensor_data(512, &mut rng);
    let (vx, vy) = sensor_data(300, &mut rng);
    let (tx, ty) = sensor_data(400, &mut rng);
    let calib = write_set(&dir, "calib", &[3, L], &cx, &cy);
    let val = write_set(&dir, "val", &[3, L], &vx, &vy);
    let out = dir.join("cnn1d.tmf");
    let shape = format!("window=1,3,{L}");

    // The window length is dynamic: without --input-shape the error names the input and the flag.
    let (code, _, stderr) = temper(&["quantize", s(&onnx_path), "-o", s(&out), "--calib", &calib, "--val", &val]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("input 'window'") && stderr.contains("'time'") && stderr.contains("--input-shape window="), "{stderr}");
    // A name the graph does not have, and a shape against a fixed dimension, are refused.
    let (code, _, stderr) = temper(&["quantize", s(&onnx_path), "-o", s(&out), "--calib", &calib, "--input-shape", "wndow=1,3,128"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no input named 'wndow'") && stderr.contains("window"), "{stderr}");
    let (code, _, stderr) = temper(&["quantize", s(&onnx_path), "-o", s(&out), "--calib", &calib, "--input-shape", "window=1,4,128"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("differs from the declared") && stderr.contains("dim 1"), "{stderr}");
    assert!(!out.exists());

    let (code, stdout, stderr) =
        temper(&["quantize", s(&onnx_path), "-o", s(&out), "--calib", &calib, "--val", &val, "--input-shape", &shape]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let shapes = InputShapes::parse(&[shape.as_str()]).unwrap();
    // After the passes the 1-D network is a 2-D one: one reshape in, activations fused, no
    // reshape pairs left between the ops.
    let mut g = onnx::import_bytes_with(&bytes, None, &shapes, "cnn1d.onnx").unwrap();
    temper_converter::passes::optimize(&mut g).unwrap();
    let ops: Vec<String> = g.nodes.iter().map(|n| format!("{:?}", n.op).split([' ', '{', '(']).next().unwrap().to_string()).collect();
    assert_eq!(ops, ["Reshape", "Conv", "MaxPool", "Conv", "AvgPool", "GlobalAvgPool", "Reshape", "Dense"], "{g}");
    assert!(g.nodes.iter().all(|n| !matches!(n.op, temper_converter::ir::Op::Act(_))), "Relu fused: {g}");
    let a = agreement(&out, &bytes, &shapes, &[3, L], &tx, &ty);
    check("1-D CNN [N, 3, 128]", &a, ty.len());

    // Data that does not fit the model: the error names the file and both shapes.
    let (sx, sy) = (vec![0.5f32; 20 * 3 * 100], vec![0i64; 20]);
    let short = write_set(&dir, "short", &[3, 100], &sx, &sy);
    let (code, _, stderr) = temper(&["quantize", s(&onnx_path), "-o", s(&out), "--calib", &short, "--val", &val, "--input-shape", &shape]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("short.x.npy"), "names the file: {stderr}");
    assert!(stderr.contains("[20, 3, 100]") && stderr.contains("[1, 3, 128]"), "names both shapes: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A 3-channel image classifier (dominant tint: red, green, blue or none): Conv(3→8, 3×3) +
/// Relu, GlobalAveragePool, Flatten, Gemm(8→4).
fn tint_model(rng: &mut Rng) -> Vec<u8> {
    let mut w1 = vec![0f32; 8 * 3 * 9];
    for o in 0..8 {
        for c in 0..3 {
            for j in 0..9 {
                w1[(o * 3 + c) * 9 + j] = match (o < 3, j == 4) {
                    (true, true) => {
                        if c == o {
                            1.0
                        } else {
                            -0.5
                        }
                    }
                    (true, false) => rng.uniform(-0.01, 0.01),
                    (false, _) => rng.uniform(-0.2, 0.2),
                };
            }
        }
    }
    let mut w2 = vec![0f32; 4 * 8]; // transB: [4, 8]
    for k in 0..3 {
        w2[k * 8 + k] = 1.0;
        w2[3 * 8 + k] = -1.0;
    }
    let b2 = [0.0, 0.0, 0.0, 0.1];
    model(
        vec![
            node(
                "Conv",
                "conv",
                &["image", "w1"],
                &["c"],
                vec![attr_ints_packed("kernel_shape", &[3, 3]), attr_ints_packed("pads", &[1, 1, 1, 1])],
            ),
            node("Relu", "relu", &["c"], &["r"], vec![]),
            node("GlobalAveragePool", "gap", &["r"], &["g"], vec![]),
            node("Flatten", "flat", &["g"], &["f"], vec![]),
            node("Gemm", "fc", &["f", "w2", "b2"], &["logits"], vec![attr_i("transB", 1)]),
        ],
        vec![tensor_f32("w1", &[8, 3, 3, 3], &w1), tensor_f32("w2", &[4, 8], &w2), tensor_f32("b2", &[4], &b2)],
        value_info("image", &[D::S("batch"), D::V(3), D::V(16), D::V(16)]),
        value_info("logits", &[D::S("batch"), D::V(4)]),
    )
}

/// 16×16 RGB images in 0..1, NHWC: a gray gradient, a tinted blob for classes 0..2, noise.
fn tint_data(n: usize, rng: &mut Rng) -> (Vec<f32>, Vec<i64>) {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let k = rng.below(4);
        let (base, slope, cx, cy) = (rng.uniform(0.2, 0.6), rng.uniform(-0.2, 0.2), rng.uniform(4.0, 12.0), rng.uniform(4.0, 12.0));
        for i in 0..16 {
            for j in 0..16 {
                let d2 = (i as f32 - cy).powi(2) + (j as f32 - cx).powi(2);
                let blob = 0.35 * (-d2 / 40.0).exp();
                for c in 0..3 {
                    let tint = if c == k { blob } else { 0.0 };
                    x.push((base + slope * i as f32 / 16.0 + tint + 0.02 * rng.normal()).clamp(0.0, 1.0));
                }
            }
        }
        y.push(k as i64);
    }
    (x, y)
}

#[test]
fn three_channel_images_convert_with_default_flags_from_f32_and_u8_npy() {
    let dir = tmpdir("rgb");
    let mut rng = Rng(3);
    let bytes = tint_model(&mut rng);
    let onnx_path = dir.join("tint.onnx");
    std::fs::write(&onnx_path, &bytes).unwrap();
    let (x, y) = tint_data(400, &mut rng);
    // f32 NPY, NHWC (read as such and transposed), taken as given: no normalization, no pixel input.
    let f32_spec = write_set(&dir, "f32", &[16, 16, 3], &x, &y);
    let out = dir.join("f32.tmf");
    let (code, stdout, stderr) = temper(&["quantize", s(&onnx_path), "-o", s(&out), "--calib", &f32_spec]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let bytes_f32 = std::fs::read(&out).unwrap();
    let buf = AlignedBuf::from_bytes(&bytes_f32);
    let m = Model::from_bytes(buf.as_bytes()).unwrap();
    let input = m.tensor(m.graph_inputs()[0]);
    assert_eq!(input.dims, &[1, 16, 16, 3]);
    assert!(m.input_record(input.id).is_none_or(|r| r.kind == 0), "f32 data folds no pixel normalization");
    // u8 NPY with default flags: x/255 folded into a 3-channel pixel input.
    let (xp, yp) = (dir.join("u8.x.npy"), dir.join("u8.y.npy"));
    let px: Vec<u8> = x.iter().map(|v| (v * 255.0).round() as u8).collect();
    temper_data::write_npy_u8(&xp, &[400, 16, 16, 3], &px).unwrap();
    temper_data::npy::write_npy_i64(&yp, &[400], &y).unwrap();
    let out = dir.join("u8.tmf");
    let spec = format!("npy:{},{}", s(&xp), s(&yp));
    let (code, stdout, stderr) = temper(&["quantize", s(&onnx_path), "-o", s(&out), "--calib", &spec]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("accuracy gate: PASSED"), "{stdout}");
    let bytes_u8 = std::fs::read(&out).unwrap();
    let buf = AlignedBuf::from_bytes(&bytes_u8);
    let m = Model::from_bytes(buf.as_bytes()).unwrap();
    let r = m.input_record(m.graph_inputs()[0]).expect("pixel input record");
    assert_eq!((r.kind, r.channels, r.mean, r.std), (1, 3, [0.0; 4], [1.0, 1.0, 1.0, 0.0]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn input_shape_values_parse_by_name_and_refuse_ambiguity() {
    let p = InputShapes::parse(&["x=1,3,128", "mask = 1,128", "2,5"]).unwrap();
    assert_eq!(p.entries, vec![(Some("x".into()), vec![1, 3, 128]), (Some("mask".into()), vec![1, 128]), (None, vec![2, 5])]);
    for (bad, why) in [
        (&["x=1,0"][..], "not a dimension ≥ 1"),
        (&["x=1,a"][..], "'a' is not a dimension"),
        (&["=1,2"][..], "input name before '=' is empty"),
        (&["x=1", "x=2"][..], "input 'x' is given twice"),
        (&["1", "2"][..], "more than one shape without an input name"),
    ] {
        let e = InputShapes::parse(bad).unwrap_err();
        assert!(e.contains(why), "{bad:?}: {e}");
    }
}

/// `x.mean(-1)` / `x.mean((2, 3))` as PyTorch exports them (ReduceMean over the axes after the
/// channels) become global average pools: the model lowers to int8 and matches FP32.
#[test]
fn reduce_mean_over_the_sequence_or_image_lowers_as_a_global_pool() {
    use temper_converter::quant::{lower, Calibration, LowerOptions};
    let mut rng = Rng(9);
    let seq = (vec![2i64, 4, 32], vec![3i64], vec![1i64, 1], vec![-1i64]);
    let img = (vec![2i64, 4, 8, 8], vec![3i64, 3], vec![1i64, 1, 1, 1], vec![2i64, 3]);
    for ((dims, kernel, pads, axes), keep) in [(seq.clone(), 0), (seq, 1), (img.clone(), 0), (img, 1)] {
        let rank = dims.len();
        let mut wdims = vec![6i64, 4];
        wdims.extend(&kernel);
        let w: Vec<f32> = (0..wdims.iter().product::<i64>()).map(|_| rng.uniform(-0.3, 0.3)).collect();
        let fc: Vec<f32> = (0..5 * 6).map(|_| rng.uniform(-0.5, 0.5)).collect();
        let in_dims: Vec<D> = std::iter::once(D::S("batch")).chain(dims[1..].iter().map(|&d| D::V(d))).collect();
        let bytes = model(
            vec![
                node("Conv", "conv", &["x", "w"], &["c"], vec![attr_ints_packed("kernel_shape", &kernel), attr_ints_packed("pads", &pads)]),
                node("Relu", "relu", &["c"], &["r"], vec![]),
                node("ReduceMean", "mean", &["r"], &["m"], vec![attr_ints_packed("axes", &axes), attr_i("keepdims", keep)]),
                node("Flatten", "flat", &["m"], &["mf"], vec![]),
                node("Gemm", "fc", &["mf", "fc"], &["y"], vec![attr_i("transB", 1)]),
            ],
            vec![tensor_f32("w", &wdims, &w), tensor_f32("fc", &[5, 6], &fc)],
            value_info("x", &in_dims),
            value_info("y", &[D::S("batch"), D::V(5)]),
        );
        let mut g = onnx::import_bytes(&bytes, None, None, "mean.onnx").unwrap();
        temper_converter::passes::optimize(&mut g).unwrap();
        assert!(g.nodes.iter().any(|n| n.op.name() == "GlobalAvgPool"), "rank {rank}, keepdims {keep}: {g}");
        assert!(g.nodes.iter().all(|n| n.op.name() != "ReduceMean"), "rank {rank}, keepdims {keep}: {g}");
        let per: usize = dims[1..].iter().map(|&d| d as usize).product();
        let x: Vec<f32> = (0..64 * per).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let mut shape = vec![64];
        shape.extend(dims[1..].iter().map(|&d| d as usize));
        let batch = Tensor::new(shape, x.clone()).unwrap();
        let cal = Calibration::collect(&g, std::slice::from_ref(&batch)).unwrap();
        let lowered = lower(&g, &cal, &LowerOptions::default()).unwrap();
        let fp = fp32::run(&g, &[batch]).unwrap().remove(0);
        let buf = AlignedBuf::from_bytes(&lowered.bytes);
        let m = Model::from_bytes(buf.as_bytes()).unwrap();
        let mut arena = vec![0u8; m.arena_size()];
        let mut sess = Session::new(&m, &mut arena).unwrap();
        let (mut num, mut den) = (0f64, 0f64);
        let mut out = vec![0f32; 5];
        for i in 0..64 {
            // 4-D inputs are NHWC on the device.
            let sample = &x[i * per..(i + 1) * per];
            let fed: Vec<f32> = if rank == 4 {
                let (c, hw) = (4, per / 4);
                (0..per).map(|j| sample[(j % c) * hw + j / c]).collect()
            } else {
                sample.to_vec()
            };
            sess.set_input_f32(0, &fed).unwrap();
            sess.run().unwrap();
            sess.output_f32(0, &mut out).unwrap();
            for (a, b) in fp.data[i * 5..(i + 1) * 5].iter().zip(&out) {
                num += f64::from(a - b).powi(2);
                den += f64::from(*a).powi(2);
            }
        }
        let rel = (num / den).sqrt();
        assert!(rel <= 0.05, "rank {rank}, keepdims {keep}: relative L2 {rel:.4}");
    }
}
