//! `temper quantize --task detect`: calibration on detection images, lowering with the device
//! post-process appended, FP32 mAP (FP32 engine + [`decode`](super::decode)) against INT8 mAP
//! (the `.tmf` through `temper-runtime`), the mAP gate, the report.

use super::decode::{decode, InputDet};
use super::head::{bind, BoundHead, HeadConfig};
use super::map::{evaluate, xyxy_to_xywh, CocoEval, Detection, GroundTruth};
use crate::eval::nchw_to_nhwc;
use crate::fp32;
use crate::ir::Graph;
use crate::quant::lower::lower_with;
use crate::quant::{Calibration, LowerOptions, Observer, PixelNorm};
use serde::Serialize;
use temper_data::detect::{DetectionDataset, Geometry};
use temper_data::Normalize;
use temper_runtime::ops::detect_postprocess::{detections, DetectConfig, DetectLevel};
use temper_runtime::writer::AlignedBuf;
use temper_runtime::{Model, Session};

/// Settings of one detection quantization run.
#[derive(Clone, Debug)]
pub struct DetectPtqConfig {
    /// Observers to try; the best INT8 mAP@0.5 on validation is kept.
    pub observers: Vec<Observer>,
    /// Calibration images used.
    pub calib_size: usize,
    /// Bias correction on/off.
    pub bias_correction: bool,
    /// Input normalization (folded into the file for raw u8 input).
    pub norm: Normalize,
    /// The resize the images went through (recorded in the file).
    pub geometry: Geometry,
    /// Most INT8 mAP@0.5 may lie below FP32, in points.
    pub max_drop: Option<f64>,
    /// Least INT8 mAP@0.5, in points.
    pub min_map: Option<f64>,
    /// Evaluation threads.
    pub threads: usize,
    /// Metadata to store.
    pub metadata: Vec<(String, String)>,
}

/// mAP figures of one model on the validation set, in points (0..100).
#[derive(Clone, Debug, Serialize)]
pub struct MapFigures {
    /// COCO mAP@0.5.
    pub map50: f64,
    /// COCO mAP@0.5:0.95.
    pub map: f64,
    /// Per class AP@0.5 (−1 when the class has no ground truth).
    pub per_class_ap50: Vec<f64>,
    /// Per class AP@0.5:0.95.
    pub per_class_ap: Vec<f64>,
    /// Detections made over the set.
    pub detections: usize,
}

/// The report of a detection quantization.
#[derive(Clone, Debug, Serialize)]
pub struct DetectReport {
    /// Model name.
    pub model: String,
    /// Task: `detect`.
    pub task: String,
    /// Class names.
    pub classes: Vec<String>,
    /// FP32 (converter engine + float reference post-process).
    pub fp32: MapFigures,
    /// INT8 (the emitted file through temper-runtime, post-process on device).
    pub int8: MapFigures,
    /// Chosen observer.
    pub observer: String,
    /// INT8 mAP@0.5 per observer tried.
    pub observers_tried: Vec<(String, f64)>,
    /// Calibration images.
    pub calib_samples: usize,
    /// Validation images.
    pub val_samples: usize,
    /// Input geometry (resize/letterbox) the device must apply.
    pub geometry: String,
    /// SQNR (dB) of each INT8 head output against FP32 on calibration images, named by the
    /// config's output (levels in config order).
    pub head_sqnr_db: Vec<(String, f64)>,
    /// File size.
    pub size_bytes: usize,
    /// Gate failures (empty: passed).
    pub gate_failures: Vec<String>,
    /// Wall time.
    pub seconds: f64,
}

impl DetectReport {
    /// JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// A text table: summary and per-class AP FP32 vs INT8.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        s += &format!("model {}  task detect  input {}  observer {}\n", self.model, self.geometry, self.observer);
        s += &format!("calibration {} images, validation {} images\n", self.calib_samples, self.val_samples);
        s += "                 FP32      INT8     drop\n";
        s += &format!("mAP@0.5       {:7.2}   {:7.2}   {:6.2}\n", self.fp32.map50, self.int8.map50, self.fp32.map50 - self.int8.map50);
        s += &format!("mAP@0.5:0.95  {:7.2}   {:7.2}   {:6.2}\n", self.fp32.map, self.int8.map, self.fp32.map - self.int8.map);
        s += "class            AP50 FP32  AP50 INT8  AP FP32  AP INT8\n";
        for (k, name) in self.classes.iter().enumerate() {
            let g = |v: &[f64]| v.get(k).copied().unwrap_or(-1.0);
            s += &format!(
                "{name:<16} {:9.2}  {:9.2}  {:7.2}  {:7.2}\n",
                g(&self.fp32.per_class_ap50),
                g(&self.int8.per_class_ap50),
                g(&self.fp32.per_class_ap),
                g(&self.int8.per_class_ap)
            );
        }
        for (n, db) in &self.head_sqnr_db {
            s += &format!("head output {n:<20} SQNR {db:6.2} dB\n");
        }
        for (o, m) in &self.observers_tried {
            s += &format!("observer {o:<16} INT8 mAP@0.5 {m:.2}\n");
        }
        if self.gate_failures.is_empty() {
            s += "gate: passed\n";
        }
        for f in &self.gate_failures {
            s += &format!("gate FAILED: {f}\n");
        }
        s
    }
}

/// The outcome: the file (when the gate passes, else the measured one anyway) and the report.
pub struct DetectOutcome {
    /// `.tmf` bytes.
    pub bytes: Vec<u8>,
    /// The report.
    pub report: DetectReport,
    /// Whether the gate passed.
    pub passed: bool,
}

/// The mAP gate: reasons INT8 mAP@0.5 `int8` fails against FP32 `fp32` (points), empty when it
/// passes. A NaN figure fails.
pub fn map_gate_failures(max_drop: Option<f64>, min_map: Option<f64>, fp32: f64, int8: f64) -> Vec<String> {
    let mut f = Vec::new();
    let drop = fp32 - int8;
    if let Some(m) = max_drop {
        if drop.is_nan() || drop > m {
            f.push(format!("INT8 mAP@0.5 {int8:.2} is {drop:.2} points below FP32 {fp32:.2} (allowed {m})"));
        }
    }
    if let Some(m) = min_map {
        if int8.is_nan() || int8 < m {
            f.push(format!("INT8 mAP@0.5 {int8:.2} below the required {m}"));
        }
    }
    f
}

/// Checks a dataset against the head and model: pixels loaded at the model size, channels and
/// classes agree. `role` names the set.
pub fn check_dataset(head: &BoundHead, channels: usize, ds: &DetectionDataset, role: &str) -> Result<(), String> {
    let src = ds.samples.first().map(|s| s.path.display().to_string()).unwrap_or_default();
    let px = ds.pixels.as_ref().ok_or_else(|| format!("the {role} set has no decoded images"))?;
    if (px.geometry.height, px.geometry.width) != (head.image_h, head.image_w) || px.channels != channels {
        return Err(format!(
            "{src}: {role} images are {}x{}x{} (CxHxW) after {} but the model input is {channels}x{}x{}",
            px.channels,
            px.geometry.height,
            px.geometry.width,
            px.geometry.spec(),
            head.image_h,
            head.image_w
        ));
    }
    if ds.classes.len() != head.cfg.num_classes {
        return Err(format!(
            "the {role} set has {} classes ({}) but the head config says num_classes {}",
            ds.classes.len(),
            ds.classes.join(", "),
            head.cfg.num_classes
        ));
    }
    Ok(())
}

fn normalized(ds: &DetectionDataset, i: usize, norm: &Normalize) -> Vec<f32> {
    let px = ds.pixels.as_ref().expect("checked");
    let hw = px.geometry.height * px.geometry.width;
    let img = px.image(i).unwrap_or(&[]);
    img.iter()
        .enumerate()
        .map(|(j, &v)| {
            (v as f32 * norm.scale - norm.mean.get(j / hw).copied().unwrap_or(0.0)) / norm.std.get(j / hw).copied().unwrap_or(1.0)
        })
        .collect()
}

/// Runs `f` on images `0..n` on `threads` threads (each with its own state from `init`).
fn par_map<S, T: Send>(
    n: usize,
    threads: usize,
    init: &(dyn Fn() -> Result<S, String> + Sync),
    f: &(dyn Fn(&mut S, usize) -> Result<T, String> + Sync),
) -> Result<Vec<T>, String> {
    let threads = threads.clamp(1, 64).min(n.max(1));
    let chunk = n.div_ceil(threads);
    let parts: Vec<Result<Vec<T>, String>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut st = init()?;
                    (t * chunk..((t + 1) * chunk).min(n)).map(|i| f(&mut st, i)).collect()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("evaluation thread panicked".into()))).collect()
    });
    let mut all = Vec::with_capacity(n);
    for p in parts {
        all.extend(p?);
    }
    Ok(all)
}

/// FP32 detections per image on the model input.
pub fn fp32_detections(
    g: &Graph,
    head: &BoundHead,
    ds: &DetectionDataset,
    norm: &Normalize,
    threads: usize,
) -> Result<Vec<Vec<InputDet>>, String> {
    let shape = g.input_shape_for(1);
    par_map(ds.len(), threads, &|| Ok(()), &|_, i| {
        let x = fp32::Tensor::new(shape.clone(), normalized(ds, i, norm)).map_err(|e| e.to_string())?;
        let outs = fp32::run(g, &[x]).map_err(|e| e.to_string())?;
        let refs: Vec<&[f32]> = outs.iter().map(|t| t.data.as_slice()).collect();
        Ok(decode(head, &refs))
    })
}

/// INT8 detections per image: the `.tmf` through temper-runtime (raw u8 pixels when the file
/// folds the normalization, as on the device).
pub fn int8_detections(bytes: &[u8], ds: &DetectionDataset, norm: &Normalize, threads: usize) -> Result<Vec<Vec<InputDet>>, String> {
    let buf = AlignedBuf::from_bytes(bytes);
    let model = Model::from_bytes(buf.as_bytes()).map_err(|e| e.to_string())?;
    let px = ds.pixels.as_ref().ok_or("no decoded images")?;
    let (c, h, w) = (px.channels, px.geometry.height, px.geometry.width);
    let raw = model.input_record(model.graph_inputs()[0]).is_some_and(|r| r.kind == 1);
    let model = &model;
    par_map(ds.len(), threads, &|| Ok(vec![0u8; model.arena_size()]), &|arena, i| {
        let mut sess = Session::new(model, arena).map_err(|e| e.to_string())?;
        if raw {
            let mut v = vec![0u8; c * h * w];
            nchw_to_nhwc(px.image(i).unwrap_or(&[]), &mut v, c, h, w);
            sess.set_input_u8(0, &v).map_err(|e| e.to_string())?;
        } else {
            let mut v = vec![0f32; c * h * w];
            nchw_to_nhwc(&normalized(ds, i, norm), &mut v, c, h, w);
            sess.set_input_f32(0, &v).map_err(|e| e.to_string())?;
        }
        sess.run().map_err(|e| e.to_string())?;
        let out = sess.output_i8(0).map_err(|e| e.to_string())?;
        Ok(detections(out).map(|d| InputDet { xyxy: [d.x1, d.y1, d.x2, d.y2], score: d.score, class: d.class.max(0) as usize }).collect())
    })
}

/// COCO evaluation of per-image detections on the model input, mapped back to the source images.
pub fn evaluate_on(ds: &DetectionDataset, dets: &[Vec<InputDet>]) -> Result<CocoEval, String> {
    let px = ds.pixels.as_ref().ok_or("no decoded images")?;
    let mut gts = Vec::new();
    for (i, s) in ds.samples.iter().enumerate() {
        for b in &s.boxes {
            let bb = b.xyxy.map(|v| v as f64);
            gts.push(GroundTruth { image: i, class: b.class as usize, bbox: xyxy_to_xywh(bb), area: b.area as f64, iscrowd: b.iscrowd });
        }
    }
    let mut dts = Vec::new();
    for (i, d) in dets.iter().enumerate() {
        let t = px.transforms[i];
        for x in d {
            let b = t.invert(x.xyxy).map(|v| v as f64);
            dts.push(Detection { image: i, class: x.class, bbox: xyxy_to_xywh(b), score: x.score as f64 });
        }
    }
    evaluate(ds.len(), ds.classes.len(), &gts, &dts).map_err(|e| e.to_string())
}

fn figures(e: &CocoEval, n: usize) -> MapFigures {
    let pts = |v: f64| if v < 0.0 { v } else { v * 100.0 };
    MapFigures {
        map50: pts(e.map50()),
        map: pts(e.map()),
        per_class_ap50: e.per_class_ap50().into_iter().map(pts).collect(),
        per_class_ap: e.per_class_ap().into_iter().map(pts).collect(),
        detections: n,
    }
}

/// Lowers the bound graph with the device post-process appended (its output is the file's only
/// output).
pub fn lower_detector(g: &Graph, head: &BoundHead, cal: &Calibration, opts: &LowerOptions) -> Result<Vec<u8>, String> {
    let cfg = &head.cfg;
    let dc = DetectConfig {
        classes: cfg.num_classes,
        reg_max: cfg.reg_max,
        image_w: head.image_w,
        image_h: head.image_h,
        score_threshold: cfg.score_threshold,
        iou_threshold: cfg.iou_threshold,
        class_aware: cfg.class_aware,
        top_k: cfg.top_k,
        max_det: cfg.max_det,
        logits: cfg.score == super::head::ScoreKind::Logits,
    };
    let mut tail = |b: &mut temper_runtime::writer::Builder, outs: &[u32]| -> Result<Vec<u32>, String> {
        let levels: Vec<DetectLevel> = head
            .levels
            .iter()
            .enumerate()
            .map(|(i, l)| DetectLevel { scores: outs[2 * i], boxes: outs[2 * i + 1], stride: l.stride })
            .collect();
        let y = b.detect_postprocess("detect_postprocess", &levels, &dc).map_err(|e| e.0)?;
        Ok(vec![y])
    };
    Ok(lower_with(g, cal, opts, Some(&mut tail)).map_err(|e| e.to_string())?.bytes)
}

/// Quantizes the detector `g` (optimized, head outputs as the config names them) with the head
/// `cfg`, calibrating on `calib` and gating on `val` (both decoded at the model size).
pub fn quantize_detect(
    g: &Graph,
    cfg: &HeadConfig,
    calib: &DetectionDataset,
    val: &DetectionDataset,
    pc: &DetectPtqConfig,
) -> Result<DetectOutcome, String> {
    let t0 = std::time::Instant::now();
    let mut g = g.clone();
    let head = bind(&mut g, cfg)?;
    let channels = g.input_shape_for(1)[1];
    check_dataset(&head, channels, calib, "calibration")?;
    check_dataset(&head, channels, val, "validation")?;
    if pc.calib_size == 0 {
        return Err("the calibration size is 0: at least one calibration image is needed (--calib-size)".into());
    }
    let fp_dets = fp32_detections(&g, &head, val, &pc.norm, pc.threads)?;
    let fp = figures(&evaluate_on(val, &fp_dets)?, fp_dets.iter().map(Vec::len).sum());
    let n_cal = pc.calib_size.min(calib.len());
    let shape = g.input_shape_for(1);
    let mut batches = Vec::new();
    for chunk in (0..n_cal).collect::<Vec<_>>().chunks(16) {
        let mut s = shape.clone();
        s[0] = chunk.len();
        let data: Vec<f32> = chunk.iter().flat_map(|&i| normalized(calib, i, &pc.norm)).collect();
        batches.push(fp32::Tensor::new(s, data).map_err(|e| e.to_string())?);
    }
    let cal = Calibration::collect(&g, &batches).map_err(|e| e.to_string())?;
    let pixel_norm = Some(PixelNorm { pixel_scale: pc.norm.scale, mean: pc.norm.mean.clone(), std: pc.norm.std.clone() });
    let base_meta = |obs: Observer| {
        let mut m = pc.metadata.clone();
        m.push(("task".into(), "detect".into()));
        m.push(("detect.geometry".into(), pc.geometry.spec()));
        m.push(("detect.head".into(), serde_json::to_string(cfg).unwrap_or_default()));
        m.push(("detect.classes".into(), val.classes.join(",")));
        m.push(("detect.category_ids".into(), val.category_ids.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")));
        m.push(("calibration.observer".into(), obs.to_string()));
        m.push(("calibration.samples".into(), cal.samples.to_string()));
        m.push(("map50.fp32".into(), format!("{:.2}", fp.map50)));
        m
    };
    let mut tried = Vec::new();
    let mut best: Option<(f64, Observer)> = None;
    for &obs in &pc.observers {
        let opts = LowerOptions {
            observer: obs,
            bias_correction: pc.bias_correction,
            pixel_norm: pixel_norm.clone(),
            metadata: base_meta(obs),
            expose_all: false,
        };
        let bytes = lower_detector(&g, &head, &cal, &opts)?;
        let d = int8_detections(&bytes, val, &pc.norm, pc.threads)?;
        let m = evaluate_on(val, &d)?.map50() * 100.0;
        tried.push((obs.to_string(), m));
        if best.is_none_or(|b| m > b.0) {
            best = Some((m, obs));
        }
    }
    let (m50, obs) = best.ok_or("no observer given")?;
    let mut meta = base_meta(obs);
    meta.push(("map50.int8".into(), format!("{m50:.2}")));
    let opts = LowerOptions { observer: obs, bias_correction: pc.bias_correction, pixel_norm, metadata: meta, expose_all: false };
    let bytes = lower_detector(&g, &head, &cal, &opts)?;
    // The file that ships is the one measured.
    let q_dets = int8_detections(&bytes, val, &pc.norm, pc.threads)?;
    let q = figures(&evaluate_on(val, &q_dets)?, q_dets.iter().map(Vec::len).sum());
    let failures = map_gate_failures(pc.max_drop, pc.min_map, fp.map50, q.map50);
    let head_sqnr_db = head_sqnr(&g, &head, &cal, obs, pc, calib, n_cal.min(32))?;
    let report = DetectReport {
        model: g.name.clone(),
        task: "detect".into(),
        classes: val.classes.clone(),
        fp32: fp,
        int8: q,
        observer: obs.to_string(),
        observers_tried: tried,
        calib_samples: cal.samples,
        val_samples: val.len(),
        geometry: pc.geometry.spec(),
        head_sqnr_db,
        size_bytes: bytes.len(),
        gate_failures: failures.clone(),
        seconds: t0.elapsed().as_secs_f64(),
    };
    Ok(DetectOutcome { bytes, report, passed: failures.is_empty() })
}

/// SQNR of the INT8 head outputs (the graph lowered without the post-process) against FP32 on
/// the first `k` images of `ds`.
fn head_sqnr(
    g: &Graph,
    head: &BoundHead,
    cal: &Calibration,
    obs: Observer,
    pc: &DetectPtqConfig,
    ds: &DetectionDataset,
    k: usize,
) -> Result<Vec<(String, f64)>, String> {
    let opts = LowerOptions { observer: obs, bias_correction: pc.bias_correction, pixel_norm: None, metadata: vec![], expose_all: false };
    let bytes = crate::quant::lower(g, cal, &opts).map_err(|e| e.to_string())?.bytes;
    let buf = AlignedBuf::from_bytes(&bytes);
    let model = Model::from_bytes(buf.as_bytes()).map_err(|e| e.to_string())?;
    let mut arena = vec![0u8; model.arena_size()];
    let mut sess = Session::new(&model, &mut arena).map_err(|e| e.to_string())?;
    let shape = g.input_shape_for(1);
    let (c, h, w) = (shape[1], shape[2], shape[3]);
    let n_out = g.outputs.len();
    let (mut sig, mut noise) = (vec![0f64; n_out], vec![0f64; n_out]);
    for i in 0..k {
        let x = normalized(ds, i, &pc.norm);
        let refs = fp32::run(g, &[fp32::Tensor::new(shape.clone(), x.clone()).map_err(|e| e.to_string())?]).map_err(|e| e.to_string())?;
        let mut v = vec![0f32; c * h * w];
        nchw_to_nhwc(&x, &mut v, c, h, w);
        sess.set_input_f32(0, &v).map_err(|e| e.to_string())?;
        sess.run().map_err(|e| e.to_string())?;
        for (j, r) in refs.iter().enumerate() {
            let s = &r.shape;
            let mut want = vec![0f32; r.data.len()];
            nchw_to_nhwc(&r.data, &mut want, s[1], s[2], s[3]);
            let mut got = vec![0f32; r.data.len()];
            sess.output_f32(j, &mut got).map_err(|e| e.to_string())?;
            for (a, b) in want.iter().zip(&got) {
                sig[j] += (*a as f64).powi(2);
                noise[j] += (*a as f64 - *b as f64).powi(2);
            }
        }
    }
    let names = head.cfg.levels.iter().flat_map(|l| [l.scores.clone(), l.boxes.clone()]);
    Ok(names.enumerate().map(|(j, n)| (n, 10.0 * (sig[j] / noise[j].max(1e-30)).log10())).collect())
}

#[cfg(test)]
mod tests {
    use super::map_gate_failures;

    #[test]
    fn the_map_gate_allows_up_to_the_limit() {
        assert!(map_gate_failures(Some(1.0), None, 80.0, 79.0).is_empty());
        assert_eq!(map_gate_failures(Some(1.0), None, 80.0, 78.9).len(), 1);
        let f = map_gate_failures(Some(1.0), Some(85.0), 80.0, 70.0);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f[1].contains("below the required 85"), "{f:?}");
        assert_eq!(map_gate_failures(Some(1.0), Some(1.0), f64::NAN, f64::NAN).len(), 2);
    }
}
