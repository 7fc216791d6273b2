//! Convert a text detector (DBNet, e.g. PP-OCRv4 det) to int8 and compare its probability map
//! with the converter's FP32 engine.
//!
//! ```sh
//! cargo run --release -p temper-converter --example ocr_det -- \
//!     MODEL.onnx CALIB.npy EVAL.npy OUT.tmf [--observer minmax|percentile:99.99|mse|...]
//! ```
//! `CALIB.npy` / `EVAL.npy`: preprocessed pages `[N, 3, H, W]` f32 (`scripts/corpus.sh` renders
//! them); the model's dynamic dims are fixed to `[1, 3, H, W]`. Prints, per evaluation page and
//! overall, the relative L2 distance of the int8 map (through `temper-runtime`) from the FP32
//! map and the IoU of the maps binarized at 0.3, then writes `OUT.tmf`
//! (`temper-run run OUT.tmf --input EVAL.npy --output MAPS.npy` gives the int8 maps).

use std::path::Path;
use temper_converter::fp32::{self, Tensor};
use temper_converter::quant::lower::{lower, LowerOptions};
use temper_converter::quant::observer::Observer;
use temper_converter::quant::Calibration;
use temper_converter::{onnx, passes};
use temper_runtime::writer::AlignedBuf;
use temper_runtime::{Model, Session};

fn pages(path: &str) -> Result<(Vec<usize>, Vec<Tensor>), String> {
    let a = temper_data::npy::read_npy(Path::new(path)).map_err(|e| e.to_string())?;
    if a.shape.len() != 4 || a.shape[1] != 3 {
        return Err(format!("{path}: expected [N, 3, H, W] pages, got {:?}", a.shape));
    }
    let one = [1, 3, a.shape[2], a.shape[3]];
    let n: usize = one.iter().product();
    let data = a.to_f32();
    let ts = data.chunks(n).map(|c| Tensor { shape: one.to_vec(), data: c.to_vec() }).collect();
    Ok((one.to_vec(), ts))
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

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        return Err("usage: ocr_det MODEL.onnx CALIB.npy EVAL.npy OUT.tmf [--observer NAME]".into());
    }
    let observer = match args.iter().position(|a| a == "--observer") {
        Some(i) => Observer::parse(args.get(i + 1).ok_or("--observer needs a value")?).ok_or("unknown observer")?,
        None => Observer::MinMax,
    };
    let (shape, calib) = pages(&args[1])?;
    let (_, eval) = pages(&args[2])?;
    let mut g = onnx::load_onnx(Path::new(&args[0]), Some(&shape)).map_err(|e| e.to_string())?;
    passes::optimize(&mut g).map_err(|e| e.to_string())?;
    let cal = Calibration::collect(&g, &calib).map_err(|e| e.to_string())?;
    let lowered = lower(&g, &cal, &LowerOptions { observer, ..LowerOptions::default() }).map_err(|e| e.to_string())?;
    if args.iter().any(|a| a == "--layers") {
        return layers(&g, &cal, observer, &eval[0]);
    }
    let buf = AlignedBuf::from_bytes(&lowered.bytes);
    let m = Model::from_bytes(buf.as_bytes()).map_err(|e| e.to_string())?;
    let mut arena = vec![0u8; m.arena_size()];
    let mut sess = Session::new(&m, &mut arena).map_err(|e| e.to_string())?;
    let (mut num, mut den, mut inter, mut union) = (0f64, 0f64, 0usize, 0usize);
    for (k, x) in eval.iter().enumerate() {
        let want = fp32::run(&g, std::slice::from_ref(x)).map_err(|e| e.to_string())?.remove(0);
        sess.set_input_f32(0, &nchw_to_nhwc(&x.data, 3)).map_err(|e| e.to_string())?;
        sess.run().map_err(|e| e.to_string())?;
        let mut got = vec![0f32; want.data.len()];
        sess.output_f32(0, &mut got).map_err(|e| e.to_string())?;
        let (mut n, mut d, mut i, mut u) = (0f64, 0f64, 0usize, 0usize);
        for (&a, &b) in got.iter().zip(&want.data) {
            n += ((a - b) as f64).powi(2);
            d += (b as f64).powi(2);
            i += usize::from(a > 0.3 && b > 0.3);
            u += usize::from(a > 0.3 || b > 0.3);
        }
        println!("page {k}: relative L2 {:.4}, IoU@0.3 {:.4}", (n / d).sqrt(), i as f64 / u.max(1) as f64);
        (num, den, inter, union) = (num + n, den + d, inter + i, union + u);
    }
    println!(
        "{} eval pages {shape:?}, observer {observer:?}: int8 vs FP32 engine relative L2 {:.4}, IoU@0.3 {:.4}; {} B",
        eval.len(),
        (num / den).sqrt(),
        inter as f64 / union.max(1) as f64,
        lowered.bytes.len()
    );
    std::fs::write(&args[3], &lowered.bytes).map_err(|e| format!("{}: {e}", args[3]))?;
    Ok(())
}

/// Per-layer relative L2 of every int8 activation against the FP32 engine on one page.
fn layers(g: &temper_converter::ir::Graph, cal: &Calibration, observer: Observer, x: &Tensor) -> Result<(), String> {
    let lowered = lower(g, cal, &LowerOptions { observer, expose_all: true, ..LowerOptions::default() }).map_err(|e| e.to_string())?;
    let buf = AlignedBuf::from_bytes(&lowered.bytes);
    let m = Model::from_bytes(buf.as_bytes()).map_err(|e| e.to_string())?;
    let mut arena = vec![0u8; m.arena_size()];
    let mut sess = Session::new(&m, &mut arena).map_err(|e| e.to_string())?;
    let mut vals: Vec<Option<Vec<f32>>> = vec![None; g.tensors.len()];
    fp32::run_observed(g, std::slice::from_ref(x), &mut |t, v| vals[t] = Some(v.data.clone())).map_err(|e| e.to_string())?;
    sess.set_input_f32(0, &nchw_to_nhwc(&x.data, 3)).map_err(|e| e.to_string())?;
    sess.run().map_err(|e| e.to_string())?;
    for (k, &(t, perm)) in lowered.exposed.iter().enumerate() {
        let Some(want) = &vals[t] else { continue };
        let mut got = vec![0f32; want.len()];
        sess.output_f32(k + g.outputs.len(), &mut got).map_err(|e| e.to_string())?;
        let want = match perm {
            Some((c, _, _)) => nchw_to_nhwc(want, c),
            None => want.clone(),
        };
        let n: f64 = got.iter().zip(&want).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
        let d: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
        let node = g.nodes.iter().find(|n| n.outputs[0] == t).map_or("?", |n| n.op.name());
        let (lo, hi) = want.iter().fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
        println!("{k:4} {:40} {node:14} rel {:.4}  range [{lo:.2}, {hi:.2}]", g.tensors[t].name, (n / d.max(1e-30)).sqrt());
    }
    Ok(())
}
