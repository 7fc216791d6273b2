//! The real PP-OCRv4 text detector (DBNet, from the `rapidocr-onnxruntime` 1.4.4 wheel, fetched
//! and rendered by `scripts/corpus.sh`) converts to int8, runs bit-identically on every kernel
//! level this machine has, and its probability map stays within a bound of the FP32 engine's on
//! rendered text pages.
//!
//! The corpus lives in `$TEMPER_CORPUS` (default `~/.cache/temper/corpus`); without it the test
//! skips (`Need::Data`), which fails under CI / `TEMPER_REQUIRE`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use temper_converter::fp32::{self, Tensor};
use temper_converter::quant::lower::{lower, LowerOptions};
use temper_converter::quant::observer::Observer;
use temper_converter::quant::Calibration;
use temper_converter::{onnx, passes};
use temper_kernels::dispatch::{self, variants};
use temper_kernels::Features;
use temper_runtime::writer::AlignedBuf;
use temper_runtime::{Model, Session};
use temper_testkit::{cpu, skip, Need};

/// Side of the square crop of each page the test runs on (small, to keep the test quick).
const SIDE: usize = 160;

fn corpus() -> Option<PathBuf> {
    let dir = match std::env::var_os("TEMPER_CORPUS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/temper/corpus"),
    };
    let need = ["models/ch_PP-OCRv4_det_infer.onnx", "pages/det_calib.npy", "pages/det_eval.npy"];
    if need.iter().all(|f| dir.join(f).is_file()) {
        Some(dir)
    } else {
        skip(Need::Data, &format!("the PP-OCR corpus in {} (run scripts/corpus.sh)", dir.display()));
        None
    }
}

/// The top-left `SIDE`×`SIDE` crop of the first `n` pages of an `[N, 3, H, W]` NPY file.
fn pages(path: &Path, n: usize) -> Vec<Tensor> {
    let a = temper_data::npy::read_npy(path).unwrap();
    assert!(a.shape.len() == 4 && a.shape[1] == 3 && a.shape[2] >= SIDE && a.shape[3] >= SIDE && a.shape[0] >= n, "{:?}", a.shape);
    let (h, w) = (a.shape[2], a.shape[3]);
    let d = a.to_f32();
    (0..n)
        .map(|k| {
            let mut x = Vec::with_capacity(3 * SIDE * SIDE);
            for c in 0..3 {
                for y in 0..SIDE {
                    x.extend_from_slice(&d[((k * 3 + c) * h + y) * w..][..SIDE]);
                }
            }
            Tensor::new(vec![1, 3, SIDE, SIDE], x).unwrap()
        })
        .collect()
}

/// The feature names of a set, as the testkit's level cross-check takes them.
fn names(f: Features) -> BTreeSet<String> {
    if f.is_empty() {
        BTreeSet::new()
    } else {
        f.to_string().split(' ').map(str::to_string).collect()
    }
}

fn nchw_to_nhwc(x: &[f32], c: usize) -> Vec<f32> {
    let hw = x.len() / c;
    let mut y = vec![0.0; x.len()];
    for ch in 0..c {
        for p in 0..hw {
            y[p * c + ch] = x[ch * hw + p];
        }
    }
    y
}

#[test]
fn pp_ocr_v4_det_converts_and_its_int8_map_follows_fp32_on_every_kernel_level() {
    let Some(dir) = corpus() else { return };
    let mut g = onnx::load_onnx(&dir.join("models/ch_PP-OCRv4_det_infer.onnx"), Some(&[1, 3, SIDE, SIDE])).unwrap();
    passes::optimize(&mut g).unwrap();
    for op in ["ConvTranspose", "Resize", "Concat", "Sigmoid"] {
        assert!(g.nodes.iter().any(|n| n.op.name() == op), "the detector has a {op}");
    }
    let calib = pages(&dir.join("pages/det_calib.npy"), 6);
    let eval = pages(&dir.join("pages/det_eval.npy"), 3);
    let cal = Calibration::collect(&g, &calib).unwrap();
    let opts = LowerOptions { observer: Observer::Percentile(99.99), ..LowerOptions::default() };
    let bytes = lower(&g, &cal, &opts).unwrap().bytes;
    let buf = AlignedBuf::from_bytes(&bytes);
    let model = Model::from_bytes(buf.as_bytes()).unwrap();

    let run = |k: &'static temper_kernels::Kernels, input: &[f32]| -> (Vec<i8>, Vec<f32>) {
        let mut arena = vec![0u8; model.arena_size()];
        let mut s = Session::with_kernels(&model, &mut arena, k).unwrap();
        s.set_input_f32(0, input).unwrap();
        s.run().unwrap();
        let mut map = vec![0f32; SIDE * SIDE];
        s.output_f32(0, &mut map).unwrap();
        (s.output_i8(0).unwrap().to_vec(), map)
    };
    let (mut num, mut den, mut inter, mut union) = (0f64, 0f64, 0usize, 0usize);
    let mut compared = BTreeMap::new();
    let mut tables = Vec::new();
    for (i, x) in eval.iter().enumerate() {
        let want = fp32::run(&g, std::slice::from_ref(x)).unwrap().remove(0);
        assert_eq!(want.shape, vec![1, 1, SIDE, SIDE]);
        let input = nchw_to_nhwc(&x.data, 3);
        let (reference, got) = run(&dispatch::SCALAR, &input);
        for (&a, &b) in got.iter().zip(&want.data) {
            num += ((a - b) as f64).powi(2);
            den += (b as f64).powi(2);
            inter += usize::from(a > 0.3 && b > 0.3);
            union += usize::from(a > 0.3 || b > 0.3);
        }
        for v in variants().iter().filter(|v| v.name != "scalar") {
            if i == 0 {
                tables.push(cpu::Table { name: v.name, needs: names(v.required).into_iter().collect(), runnable: v.kernels().is_some() });
            }
            if let Some(k) = v.kernels() {
                assert!(run(k, &input).0 == reference, "kernel table {} differs from the scalar reference on page {i}", v.name);
                *compared.entry(v.name).or_insert(0) += 1;
            }
        }
    }
    let levels = match cpu::check_levels(
        &tables,
        &names(Features::cpu()),
        cpu::os_features().as_ref(),
        cpu::expected_levels().as_ref(),
        &compared,
    ) {
        Ok(line) => line,
        Err(e) => panic!("{e}"),
    };
    let rel = (num / den).sqrt();
    let iou = inter as f64 / union.max(1) as f64;
    println!(
        "PP-OCRv4 det [1, 3, {SIDE}, {SIDE}], {} calibration / {} evaluation pages, {} B: int8 vs FP32 relative L2 {rel:.4}, \
         IoU@0.3 {iou:.4}; bit-identical to scalar: {levels}",
        calib.len(),
        eval.len(),
        bytes.len()
    );
    // Per-tensor int8 activations of this backbone (PP-LCNetV3 with learnable affine blocks,
    // activation ranges of ±200) lose part of the map; ONNX Runtime's quantize_static on the
    // same pages is no closer (see the report). Measured 0.31 / 0.89 on these crops; the
    // bounds pin today's quality so that a regression fails. The 0.05 goal is not reached yet.
    assert!(rel < 0.4, "relative L2 {rel}");
    assert!(iou > 0.8, "IoU {iou}");
}
