//! ONNX import + passes + FP32 engine against the shared reference models:
//!
//! * teacher logits on the first 1000 Fashion-MNIST test images vs ONNX Runtime (≤ 1e-4),
//! * teacher and student accuracies on the full test set vs `reference.json`,
//! * hostile-input behaviour of the protobuf decoder on a real model.
//!
//! The shared files live in `../shared/models` (relative to the workspace root; override with
//! `TEMPER_MODELS_DIR`) and the dataset in `/usr/share/datasets/fashion-mnist` (override with
//! `TEMPER_FMNIST_DIR`). When they are absent the tests print `SKIPPED` and return, or fail
//! when coverage is required (`CI` or `TEMPER_REQUIRE=data`, see `temper-testkit`).

use std::path::Path;
use std::time::Instant;

use temper_converter::fp32::{self, Tensor};
use temper_converter::ir::Graph;
use temper_converter::{onnx, passes};
use temper_testkit::{fmnist_dir, models_dir};

const MEAN: f32 = 0.2860;
const STD: f32 = 0.3530;

/// Test images normalised as in reference.json, and labels.
fn test_set(dir: &Path) -> (Vec<f32>, Vec<u8>) {
    let imgs = temper_data::read_idx(&dir.join("t10k-images-idx3-ubyte.gz")).expect("read test images");
    let labels = temper_data::read_idx(&dir.join("t10k-labels-idx1-ubyte.gz")).expect("read test labels");
    assert_eq!(imgs.dims, vec![10000, 28, 28]);
    assert_eq!(labels.dims, vec![10000]);
    let x = imgs.data.iter().map(|&p| (p as f32 / 255.0 - MEAN) / STD).collect();
    (x, labels.data)
}

fn load(dir: &Path, name: &str) -> Graph {
    let mut g = onnx::load_onnx(&dir.join(name), None).unwrap_or_else(|e| panic!("import {name}: {e}"));
    passes::optimize(&mut g).unwrap_or_else(|e| panic!("optimize {name}: {e}"));
    g
}

/// Logits for the first `n` images, in batches.
fn logits(g: &Graph, x: &[f32], n: usize, batch: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * 10);
    let mut i = 0;
    while i < n {
        let b = batch.min(n - i);
        let t = Tensor::new(vec![b, 1, 28, 28], x[i * 784..(i + b) * 784].to_vec()).unwrap();
        let y = fp32::run(g, &[t]).unwrap();
        assert_eq!(y[0].shape, vec![b, 10]);
        out.extend_from_slice(&y[0].data);
        i += b;
    }
    out
}

fn accuracy(logits: &[f32], labels: &[u8]) -> f64 {
    let correct = logits
        .chunks(10)
        .zip(labels)
        .filter(|(l, &y)| {
            let arg = l.iter().enumerate().fold(0, |best, (i, &v)| if v > l[best] { i } else { best });
            arg == y as usize
        })
        .count();
    100.0 * correct as f64 / labels.len() as f64
}

/// `"key": {... "fp32_acc": value` from reference.json without a JSON crate.
fn reference_acc(json: &str, key: &str) -> Option<f64> {
    let start = json.find(&format!("\"{key}\""))?;
    let rest = &json[start..];
    let end = rest.find('}')?;
    let obj = &rest[..end];
    let p = obj.find("\"fp32_acc\"")?;
    let num: String = obj[p + 10..].chars().skip_while(|c| !c.is_ascii_digit()).take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    num.parse().ok()
}

#[test]
fn teacher_matches_onnxruntime_logits() {
    let Some(models) = models_dir(&["teacher.onnx", "teacher_logits_test1000.npy"]) else { return };
    let Some(data) = fmnist_dir() else { return };
    let g = load(&models, "teacher.onnx");
    println!("{g}");
    let reference = temper_data::read_npy(&models.join("teacher_logits_test1000.npy")).expect("read reference logits");
    assert_eq!(reference.shape, vec![1000, 10]);
    let temper_data::NpyData::F32(want) = reference.data else { panic!("reference logits are not float") };
    let (x, _) = test_set(&data);
    let got = logits(&g, &x, 1000, 128);
    let max_diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    println!("teacher parity: max |Δlogit| over 1000 images = {max_diff:e}");
    assert!(max_diff <= 1e-4, "max abs diff {max_diff} > 1e-4");
    // batch size must not change results
    let single = logits(&g, &x, 3, 1);
    assert_eq!(&single[..], &got[..30]);
}

#[test]
fn teacher_and_students_accuracy() {
    const MODELS: [&str; 6] =
        ["reference.json", "teacher.onnx", "student_scratch.onnx", "student_kd.onnx", "student_kd_warm.onnx", "student_init.onnx"];
    let Some(models) = models_dir(&MODELS) else { return };
    let Some(data) = fmnist_dir() else { return };
    let json = std::fs::read_to_string(models.join("reference.json")).expect("reference.json");
    let (x, labels) = test_set(&data);
    for name in ["teacher", "student_scratch", "student_kd", "student_kd_warm", "student_init"] {
        let g = load(&models, &format!("{name}.onnx"));
        let t = Instant::now();
        let l = logits(&g, &x, 10000, 256);
        let secs = t.elapsed().as_secs_f64();
        let acc = accuracy(&l, &labels);
        let want = reference_acc(&json, name);
        println!(
            "{name}: accuracy {acc:.2}% (reference {}) on 10000 images in {secs:.2} s ({} threads)",
            want.map_or("n/a".into(), |w| format!("{w:.2}%")),
            fp32::default_threads()
        );
        match want {
            Some(w) => assert!((acc - w).abs() <= 0.3, "{name}: accuracy {acc:.2} vs reference {w:.2}"),
            None => assert!(acc < 30.0, "{name}: untrained model at {acc:.2}%"),
        }
    }
}

#[test]
fn truncated_and_corrupted_real_model_never_panics() {
    let Some(models) = models_dir(&["student_kd.onnx"]) else { return };
    let bytes = std::fs::read(models.join("student_kd.onnx")).unwrap();
    assert!(onnx::import_bytes(&bytes, None, None, "student_kd.onnx").is_ok());
    for len in 0..bytes.len() {
        let r = onnx::import_bytes(&bytes[..len], None, None, "student_kd.onnx");
        assert!(r.is_err(), "prefix of {len} bytes imported");
    }
    // deterministic byte corruption: must return (Ok or Err) without panicking
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut errors = 0;
    for _ in 0..300 {
        let mut b = bytes.clone();
        for _ in 0..(rnd() % 4 + 1) {
            let p = (rnd() % b.len() as u64) as usize;
            b[p] = (rnd() & 0xff) as u8;
        }
        if let Ok(mut g) = onnx::import_bytes(&b, None, None, "corrupt.onnx") {
            if passes::optimize(&mut g).is_ok() {
                let _ = fp32::run(&g, &[Tensor::zeros(vec![2, 1, 28, 28])]);
            }
        } else {
            errors += 1;
        }
    }
    println!("{errors}/300 corrupted copies rejected");
}
