//! `temper quantize --task detect` end to end on a PicoDet-shaped detector (conv backbone at
//! strides 8/16/32, FPN with Resize + Concat, GFL head with `[1, H·W, C]` outputs after
//! Reshape + Transpose) fitted on synthetic COCO data generated here (see `detect_support`):
//! FP32 vs INT8 mAP (the `.tmf` through temper-runtime with the device post-process), the gate,
//! hostile head configs and datasets.

mod detect_support;
mod onnx_builder;

use detect_support::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use temper_runtime::ops::detect_postprocess::detections;
use temper_runtime::writer::AlignedBuf;
use temper_runtime::{Model, Session};

struct Fixture {
    dir: PathBuf,
    model: PathBuf,
    head: PathBuf,
    train: PathBuf,
    val: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // TEMPER_DETECT_DIR keeps the model and data for bench/detect_ort.sh.
        let dir = match std::env::var_os("TEMPER_DETECT_DIR") {
            Some(d) => PathBuf::from(d),
            // Under target/tmp, replaced by each run (13 MB).
            None => Path::new(env!("CARGO_TARGET_TMPDIR")).join("detect_quantize"),
        };
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let train = write_coco_set(&dir.join("train"), 128, 1);
        let val = write_coco_set(&dir.join("val"), 160, 2);
        let hw = fit_head(&dir, &train);
        let model = dir.join("picodet_like.onnx");
        std::fs::write(&model, detector_onnx(Some(&hw), OutLayout::Exported)).unwrap();
        std::fs::write(dir.join("picodet_like_nchw.onnx"), detector_onnx(Some(&hw), OutLayout::Nchw)).unwrap();
        std::fs::write(dir.join("picodet_like_wrong_order.onnx"), detector_onnx(Some(&hw), OutLayout::ReshapeOnly)).unwrap();
        let head = dir.join("head.json");
        std::fs::write(&head, head_json()).unwrap();
        // The letterboxed images (u8 NCHW) and their box transforms, for other tools.
        let geo = temper_data::Geometry::parse("letterbox:128x128").unwrap();
        for (name, json) in [("train", &train), ("val", &val)] {
            let ds = temper_data::load_detection(&spec(json), &temper_data::DetLoadOptions { geometry: Some(geo), ..Default::default() })
                .unwrap();
            let px = ds.pixels.as_ref().unwrap();
            temper_data::write_npy_u8(&dir.join(format!("{name}_pixels.npy")), &[ds.len(), 3, SIDE, SIDE], &px.data).unwrap();
            let t: Vec<f32> = px.transforms.iter().flat_map(|t| [t.sx as f32, t.sy as f32, t.dx as f32, t.dy as f32]).collect();
            temper_data::write_npy_f32(&dir.join(format!("{name}_transforms.npy")), &[ds.len(), 4], &t).unwrap();
        }
        Fixture { dir, model, head, train, val }
    })
}

fn temper(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_temper")).args(args).output().expect("run temper");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn spec(p: &Path) -> String {
    format!("coco:{}", p.display())
}

/// Runs quantize on `model` with `head`, writing into `out_dir`; extra args appended.
fn quantize(model: &Path, head: &Path, calib: &Path, val: &Path, out: &Path, extra: &[&str]) -> (i32, String, String) {
    let (m, h, c, v, o) = (model.display().to_string(), head.display().to_string(), spec(calib), spec(val), out.display().to_string());
    let mut args = vec!["quantize", "--task", "detect", &m, "--head", &h, "--calib", &c, "--val", &v, "-o", &o, "--threads", "2"];
    args.extend_from_slice(extra);
    temper(&args)
}

fn report(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn detector_keeps_its_map_in_int8_and_runs_on_the_device() {
    let f = fixture();
    let out = f.dir.join("det.tmf");
    let (code, stdout, stderr) = quantize(&f.model, &f.head, &f.train, &f.val, &out, &["--max-drop", "1.0", "--min-map", "40"]);
    println!("{stdout}\n{stderr}");
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let r = report(&out.with_extension("report.json"));
    let (fp, q) = (r["fp32"]["map50"].as_f64().unwrap(), r["int8"]["map50"].as_f64().unwrap());
    assert!(fp > 40.0, "the fitted detector detects: FP32 mAP@0.5 {fp}");
    assert!((fp - q).abs() <= 1.0, "FP32 {fp} vs INT8 {q}");
    let (fpm, qm) = (r["fp32"]["map"].as_f64().unwrap(), r["int8"]["map"].as_f64().unwrap());
    assert!(fpm > 0.0 && qm > 0.0 && fpm <= fp && qm <= q, "mAP@0.5:0.95 {fpm} / {qm}");
    assert_eq!(r["int8"]["per_class_ap50"].as_array().unwrap().len(), 3);
    assert_eq!(r["geometry"], "letterbox:128x128:pad=114");
    let sqnr = r["head_sqnr_db"].as_array().unwrap();
    assert_eq!(sqnr.len(), 6, "{sqnr:?}");
    assert!(sqnr.iter().all(|e| e[1].as_f64().unwrap() > 20.0), "head outputs keep > 20 dB in INT8: {sqnr:?}");
    // The file: one output (the detections record), the geometry in its metadata, and it detects.
    let bytes = std::fs::read(&out).unwrap();
    let buf = AlignedBuf::from_bytes(&bytes);
    let m = Model::from_bytes(buf.as_bytes()).unwrap();
    assert_eq!(m.graph_outputs().len(), 1);
    assert_eq!(m.meta("detect.geometry"), Some("letterbox:128x128:pad=114"));
    let geo = temper_data::Geometry::parse("letterbox:128x128").unwrap();
    let ds =
        temper_data::load_detection(&spec(&f.val), &temper_data::DetLoadOptions { geometry: Some(geo), ..Default::default() }).unwrap();
    let px = ds.pixels.as_ref().unwrap();
    let mut arena = vec![0u8; m.arena_size()];
    let mut sess = Session::new(&m, &mut arena).unwrap();
    let mut hits = 0;
    for i in 0..8 {
        let chw = px.image(i).unwrap();
        let mut hwc = vec![0u8; chw.len()];
        temper_converter::eval::nchw_to_nhwc(chw, &mut hwc, 3, SIDE, SIDE);
        sess.set_input_u8(0, &hwc).unwrap();
        sess.run().unwrap();
        let dets: Vec<_> = detections(sess.output_i8(0).unwrap()).collect();
        for gt in ds.input_boxes(i).unwrap() {
            let iou = |d: &temper_runtime::ops::detect_postprocess::Detection| {
                let b = gt.xyxy;
                let inter = (d.x2.min(b[2]) - d.x1.max(b[0])).max(0.0) * (d.y2.min(b[3]) - d.y1.max(b[1])).max(0.0);
                inter / ((d.x2 - d.x1) * (d.y2 - d.y1) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
            };
            if dets.iter().any(|d| d.class == gt.class as i32 && d.score > 0.3 && iou(d) > 0.5) {
                hits += 1;
            }
        }
    }
    let total: usize = (0..8).map(|i| ds.samples[i].boxes.len()).sum();
    assert!(hits * 2 > total, "the device finds most objects: {hits} of {total}");
}

#[test]
fn a_head_left_nchw_converts_too() {
    let f = fixture();
    let out = f.dir.join("det_nchw.tmf");
    let (code, stdout, stderr) =
        quantize(&f.dir.join("picodet_like_nchw.onnx"), &f.head, &f.train, &f.val, &out, &["--observer", "minmax"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(out.exists());
}

#[test]
fn a_head_output_in_the_wrong_element_order_is_refused() {
    let f = fixture();
    let out = f.dir.join("det_wrong.tmf");
    let (code, stdout, stderr) = quantize(&f.dir.join("picodet_like_wrong_order.onnx"), &f.head, &f.train, &f.val, &out, &[]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("scores output 'cls32' is [1, 16, 3] from the 4-D tensor 'cs32' [1, 3, 4, 4]")
            && stderr.contains("[1, H*W, C] (cells row-major"),
        "{stderr}"
    );
    assert!(!out.exists() && !out.with_extension("report.json").exists());
}

#[test]
fn a_failed_map_gate_writes_the_report_but_no_model() {
    let f = fixture();
    let out = f.dir.join("gate.tmf");
    let (code, stdout, stderr) = quantize(&f.model, &f.head, &f.train, &f.val, &out, &["--observer", "minmax", "--min-map", "101"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(!out.exists(), "no model on a failed gate");
    assert!(stderr.contains("mAP gate failed"), "{stderr}");
    let r = report(&out.with_extension("report.json"));
    let fails = r["gate_failures"].as_array().unwrap();
    assert_eq!(fails.len(), 1, "{fails:?}");
    assert!(fails[0].as_str().unwrap().contains("below the required 101"), "{fails:?}");
}

#[test]
fn hostile_head_configs_are_refused_and_write_nothing() {
    let f = fixture();
    let good = head_json();
    let cases = [
        (good.replace("\"cls16\"", "\"cls_missing\""), "'cls_missing', which is not a graph output"),
        (good.replace("\"num_classes\":3", "\"num_classes\":4"), "needs [1, 4, 16, 16]"),
        (good.replace("\"reg_max\":7", "\"reg_max\":15"), "4*(reg_max+1) = 64"),
        (good.replace("\"stride\":32", "\"stride\":64"), "stride 64 on a 128x128 input gives 2x2 cells"),
        (good.replace("\"stride\":32", "\"stride\":0"), "levels[2].stride is 0"),
        (good.replace("\"score\":\"probabilities\"", "\"score\":\"odds\""), "unknown variant"),
        (good.replace("\"max_det\":50", "\"max_det\":0"), "max_det is 0, must be 1..=1024"),
        (good.replace("\"top_k\":500", "\"top_k\":-1"), "invalid value: integer `-1`"),
        (good.replace(",{\"stride\":32,\"scores\":\"cls32\",\"boxes\":\"reg32\"}", ""), "graph output 'cls32' is not named"),
        (good.replace("\"boxes\":\"reg8\"", "\"boxes\":\"cls16\""), "named more than once"),
        (good[..good.len() / 2].to_string(), "EOF"),
    ];
    for (i, (cfg, want)) in cases.iter().enumerate() {
        let head = f.dir.join(format!("bad_head{i}.json"));
        std::fs::write(&head, cfg).unwrap();
        let out = f.dir.join(format!("bad_head{i}.tmf"));
        let (code, stdout, stderr) = quantize(&f.model, &head, &f.train, &f.val, &out, &[]);
        assert_eq!(code, 2, "case {i}: {stdout}\n{stderr}");
        assert!(stderr.contains(want), "case {i}: expected '{want}' in: {stderr}");
        assert!(!out.exists() && !out.with_extension("report.json").exists(), "case {i} wrote something");
    }
}

/// The COCO text with the first box's x moved to 150 (its right edge past the 160-pixel image).
fn out_of_range_box(text: &str) -> String {
    let at = text.find(r#""bbox":["#).unwrap() + 8;
    let end = at + text[at..].find(',').unwrap();
    format!("{}150{}", &text[..at], &text[end..])
}

#[test]
fn hostile_datasets_are_refused_and_write_nothing() {
    let f = fixture();
    let text = std::fs::read_to_string(&f.val).unwrap();
    let cases = [
        (text.replace(r#"{"id":3,"name":"blue"}"#, r#"{"id":3,"name":"blue"},{"id":4,"name":"yellow"}"#), "4 classes"),
        (text.replacen(r#""category_id":1,"#, r#""category_id":9,"#, 1), "9"),
        (out_of_range_box(&text), "outside"),
        (text.replacen(r#""images":["#, r#""images":[{"id":999,"file_name":"missing.png","width":160,"height":120},"#, 1), "missing.png"),
        (text[..text.len() - 10].to_string(), "EOF while parsing"),
    ];
    for (i, (json, want)) in cases.iter().enumerate() {
        let ann = f.dir.join("val").join(format!("bad{i}.json"));
        std::fs::write(&ann, json).unwrap();
        let out = f.dir.join(format!("bad_data{i}.tmf"));
        let (code, stdout, stderr) = quantize(&f.model, &f.head, &f.train, &ann, &out, &[]);
        assert_eq!(code, 2, "case {i}: {stdout}\n{stderr}");
        assert!(stderr.contains(want), "case {i}: expected '{want}' in: {stderr}");
        assert!(!out.exists() && !out.with_extension("report.json").exists(), "case {i} wrote something");
    }
}

/// The converter's float reference post-process (`detect::decode`) and the device op agree on the
/// same int8 head outputs: the detections of the `.tmf` equal `decode` applied to its dequantized
/// head tensors (same boxes within 1/64 pixel, same scores, classes and order).
#[test]
fn the_float_reference_decode_matches_the_device_post_process() {
    use temper_converter::detect::{decode::decode, flow, head};
    use temper_converter::quant::{lower, Calibration, LowerOptions, Observer};
    let f = fixture();
    let mut g = temper_converter::onnx::load_onnx(&f.model, None).unwrap();
    temper_converter::passes::optimize(&mut g).unwrap();
    let cfg = head::HeadConfig::parse(&head_json(), "head").unwrap();
    let bh = head::bind(&mut g, &cfg).unwrap();
    let geo = temper_data::Geometry::parse("letterbox:128x128").unwrap();
    let ds =
        temper_data::load_detection(&spec(&f.val), &temper_data::DetLoadOptions { geometry: Some(geo), ..Default::default() }).unwrap();
    let px = ds.pixels.as_ref().unwrap();
    let n = 24;
    let x: Vec<f32> = (0..n).flat_map(|i| px.image(i).unwrap().iter().map(|&v| v as f32 / 255.0)).collect();
    let cal = Calibration::collect(&g, &[temper_converter::fp32::Tensor::new(vec![n, 3, SIDE, SIDE], x).unwrap()]).unwrap();
    let opts = LowerOptions { observer: Observer::MinMax, pixel_norm: None, ..Default::default() };
    let heads = lower(&g, &cal, &opts).unwrap().bytes;
    let full = flow::lower_detector(&g, &bh, &cal, &opts).unwrap();
    let (hb, fb) = (AlignedBuf::from_bytes(&heads), AlignedBuf::from_bytes(&full));
    let (hm, fm) = (Model::from_bytes(hb.as_bytes()).unwrap(), Model::from_bytes(fb.as_bytes()).unwrap());
    let (mut ha, mut fa) = (vec![0u8; hm.arena_size()], vec![0u8; fm.arena_size()]);
    let (mut hs, mut fs) = (Session::new(&hm, &mut ha).unwrap(), Session::new(&fm, &mut fa).unwrap());
    let mut compared = 0;
    for i in 0..n {
        let chw: Vec<f32> = px.image(i).unwrap().iter().map(|&v| v as f32 / 255.0).collect();
        let mut hwc = vec![0f32; chw.len()];
        temper_converter::eval::nchw_to_nhwc(&chw, &mut hwc, 3, SIDE, SIDE);
        hs.set_input_f32(0, &hwc).unwrap();
        fs.set_input_f32(0, &hwc).unwrap();
        hs.run().unwrap();
        fs.run().unwrap();
        // Dequantized head outputs, NHWC → NCHW.
        let mut outs = Vec::new();
        for (j, &t) in g.outputs.iter().enumerate() {
            let s = &g.tensors[t].shape;
            let (c, h, w) = (s[1], s[2], s[3]);
            let mut nhwc = vec![0f32; c * h * w];
            hs.output_f32(j, &mut nhwc).unwrap();
            let mut nchw = vec![0f32; c * h * w];
            for p in 0..h * w {
                for ch in 0..c {
                    nchw[ch * h * w + p] = nhwc[p * c + ch];
                }
            }
            outs.push(nchw);
        }
        let refs: Vec<&[f32]> = outs.iter().map(Vec::as_slice).collect();
        let want = decode(&bh, &refs);
        let got: Vec<_> = detections(fs.output_i8(0).unwrap()).collect();
        assert_eq!(got.len(), want.len(), "image {i}");
        for (a, b) in got.iter().zip(&want) {
            assert_eq!((a.class as usize, a.score), (b.class, b.score), "image {i}");
            let d = [a.x1, a.y1, a.x2, a.y2].iter().zip(&b.xyxy).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
            assert!(d <= 1.0 / 64.0, "image {i}: box {a:?} vs {b:?}");
        }
        compared += got.len();
    }
    assert!(compared > n, "enough detections compared: {compared}");
}
