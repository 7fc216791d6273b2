//! A PicoDet-shaped detector built by hand for the detection tests, and the synthetic detection
//! data it is fitted on.
//!
//! Data: 160×120 RGB images, a low-frequency grey texture with noise, 1–3 non-overlapping
//! rectangles of 3 classes (red, green, blue dominant), written as PNG with a COCO JSON.
//!
//! Model (input `[1, 3, 128, 128]`, letterboxed): a 1×1 conv + Clip gives a per-class indicator;
//! five 2×2 stride-2 depthwise convs make the stride 2…32 maps (C3 at stride 8, C4 at 16, C5 at
//! 32); an FPN upsamples with `Resize` and joins with `Concat` (P4 = [C4, up(C5)], P3 = [C3,
//! up(P4)]); a GFL head per level: a cls conv (3 outputs, Sigmoid) and a reg conv (4·(7+1)
//! outputs), each `Reshape`d to `[1, C, H·W]` and `Transpose`d to `[1, H·W, C]` as PicoDet
//! exports do. The head convs are fitted by ridge least squares on the FP32 features of a training
//! set (objects assigned to a level by size; class targets 0/1 mapped to logits `10·(p − ½)`;
//! DFL logits `2·j·d − j²` from the fitted distance `d` in strides, a discretized Gaussian whose
//! softmax mean is about `d`).

#![allow(dead_code)]

pub use crate::onnx_builder::*;
use std::path::{Path, PathBuf};
use temper_converter::fp32::{self, Tensor};
use temper_converter::{onnx, passes};
use temper_data::detect::{DetLoadOptions, Geometry};
use temper_data::load_detection;

fn value_info(name: &str, dims: &[i64]) -> M {
    let mut shape = M::default();
    for &d in dims {
        shape = shape.msg(1, M::default().int(1, d));
    }
    let tt = M::default().int(1, 1).msg(2, shape);
    M::default().str(1, name).msg(2, M::default().msg(1, tt))
}
fn model(nodes: Vec<M>, inits: Vec<M>, inputs: Vec<M>, outputs: Vec<M>) -> Vec<u8> {
    let mut g = M::default().str(2, "picodet_like");
    for n in nodes {
        g = g.msg(1, n);
    }
    for t in inits {
        g = g.msg(5, t);
    }
    for i in inputs {
        g = g.msg(11, i);
    }
    for o in outputs {
        g = g.msg(12, o);
    }
    M::default().int(1, 8).msg(7, g).msg(8, M::default().str(1, "").int(2, 13)).0
}

/// Classes of the synthetic data.
pub const CLASSES: [&str; 3] = ["red", "green", "blue"];
/// Model input side.
pub const SIDE: usize = 128;
/// Strides of the levels.
pub const STRIDES: [usize; 3] = [8, 16, 32];
/// `reg_max`.
pub const REG_MAX: usize = 7;
/// Head kernel per level.
const KERNELS: [usize; 3] = [5, 7, 5];
/// Feature channels per level (P3, P4, P5).
const CHANNELS: [usize; 3] = [21, 6, 3];

/// A deterministic generator (xorshift64*).
pub struct Rng(u64);
impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1)
    }
    /// Uniform in [0, 1).
    pub fn f(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545F4914F6CDD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f()
    }
}

fn write_png(path: &Path, w: usize, h: usize, rgb: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    let mut e = png::Encoder::new(std::io::BufWriter::new(f), w as u32, h as u32);
    e.set_color(png::ColorType::Rgb);
    e.set_depth(png::BitDepth::Eight);
    e.write_header().unwrap().write_image_data(rgb).unwrap();
}

/// Writes `n` images and `annotations.json` (COCO) into `dir`; returns the JSON path.
pub fn write_coco_set(dir: &Path, n: usize, seed: u64) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let (w, h) = (160usize, 120usize);
    let mut rng = Rng::new(seed);
    let (mut images, mut anns) = (Vec::new(), Vec::new());
    for i in 0..n {
        let base = rng.range(0.3, 0.6);
        let (px, py) = (rng.range(0.0, 6.3), rng.range(0.0, 6.3));
        let mut img = vec![0f64; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let g = base + 0.08 * ((x as f64 / 7.0 + px).sin() * (y as f64 / 9.0 + py).cos());
                for c in 0..3 {
                    img[(y * w + x) * 3 + c] = g + rng.range(-0.03, 0.03);
                }
            }
        }
        let mut boxes: Vec<[usize; 4]> = Vec::new();
        let k = 1 + (rng.f() * 3.0) as usize;
        for _ in 0..50 {
            if boxes.len() == k {
                break;
            }
            let s = rng.range(14.0, 80.0);
            let a = rng.range(0.7, 1.4);
            let (bw, bh) = (((s * a) as usize).clamp(8, w - 4), ((s / a) as usize).clamp(8, h - 4));
            let x0 = (rng.f() * (w - bw) as f64) as usize;
            let y0 = (rng.f() * (h - bh) as f64) as usize;
            let b = [x0, y0, bw, bh];
            let m = 6;
            if boxes.iter().any(|o| x0 < o[0] + o[2] + m && o[0] < x0 + bw + m && y0 < o[1] + o[3] + m && o[1] < y0 + bh + m) {
                continue;
            }
            boxes.push(b);
        }
        for b in &boxes {
            let cls = (rng.f() * 3.0) as usize;
            let hi = rng.range(0.75, 0.95);
            for y in b[1]..b[1] + b[3] {
                for x in b[0]..b[0] + b[2] {
                    for c in 0..3 {
                        img[(y * w + x) * 3 + c] = if c == cls { hi } else { rng.range(0.05, 0.25) } + rng.range(-0.03, 0.03);
                    }
                }
            }
            anns.push(format!(
                r#"{{"id":{},"image_id":{},"category_id":{},"bbox":[{},{},{},{}],"area":{},"iscrowd":0}}"#,
                anns.len() + 1,
                i + 1,
                cls + 1,
                b[0],
                b[1],
                b[2],
                b[3],
                b[2] * b[3]
            ));
        }
        let bytes: Vec<u8> = img.iter().map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8).collect();
        let name = format!("img{i:04}.png");
        write_png(&dir.join(&name), w, h, &bytes);
        images.push(format!(r#"{{"id":{},"file_name":"{name}","width":{w},"height":{h}}}"#, i + 1));
    }
    let cats: Vec<String> = CLASSES.iter().enumerate().map(|(i, c)| format!(r#"{{"id":{},"name":"{c}"}}"#, i + 1)).collect();
    let json = format!(r#"{{"images":[{}],"annotations":[{}],"categories":[{}]}}"#, images.join(","), anns.join(","), cats.join(","));
    let p = dir.join("annotations.json");
    std::fs::write(&p, json).unwrap();
    p
}

/// One level's head convs: cls weights `[3, ch, K, K]`, bias, reg weights `[4·(R+1), ch, K, K]`, bias.
pub type LevelWeights = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

/// The fitted head.
#[derive(Clone, Debug)]
pub struct HeadWeights {
    /// Per level.
    pub levels: Vec<LevelWeights>,
}

/// How one level's head outputs leave the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutLayout {
    /// `[1, H·W, C]` after Reshape + Transpose (PicoDet exports).
    Exported,
    /// Left NCHW `[1, C, H, W]`.
    Nchw,
    /// Reshaped straight to `[1, H·W, C]` without the Transpose (a wrong element order).
    ReshapeOnly,
}

/// The ONNX model; `head = None` gives the backbone + FPN with outputs P3, P4, P5. Level 2's
/// outputs leave as `last` says, the others as exporters emit them.
pub fn detector_onnx(head: Option<&HeadWeights>, last: OutLayout) -> Vec<u8> {
    let conv = |name: &str, x: &str, w: &str, b: &str, y: &str, k: i64, s: i64, p: i64, group: i64| {
        node(
            "Conv",
            name,
            &[x, w, b],
            &[y],
            vec![
                attr_ints_packed("kernel_shape", &[k, k]),
                attr_ints_packed("strides", &[s, s]),
                attr_ints_packed("pads", &[p, p, p, p]),
                attr_i("group", group),
            ],
        )
    };
    let resize = |name: &str, x: &str, y: &str| {
        node(
            "Resize",
            name,
            &[x, "", "up2"],
            &[y],
            vec![attr_s("mode", "nearest"), attr_s("coordinate_transformation_mode", "asymmetric"), attr_s("nearest_mode", "floor")],
        )
    };
    let mut w_ind = vec![-2f32; 9];
    for c in 0..3 {
        w_ind[c * 3 + c] = 4.0;
    }
    let mut nodes = vec![
        conv("ind", "x", "w_ind", "b_ind", "ind_pre", 1, 1, 0, 1),
        node("Clip", "ind_clip", &["ind_pre", "zero", "one"], &["ind"], vec![]),
    ];
    let mut s2d = vec![0f32; 12 * 12];
    for c in 0..3 {
        for t in 0..4 {
            s2d[(c * 4 + t) * 12 + c * 4 + t] = 1.0;
        }
    }
    let mut prev = "ind".to_string();
    for (i, o) in ["s2", "s4", "c3", "c4", "c5"].iter().enumerate() {
        nodes.push(conv(&format!("down{i}"), &prev, "w_avg", "b_zero", o, 2, 2, 0, 3));
        prev = o.to_string();
    }
    nodes.push(resize("up5", "c5", "u5"));
    nodes.push(node("Concat", "fpn4", &["c4", "u5"], &["p4"], vec![attr_i("axis", 1)]));
    nodes.push(resize("up4", "p4", "u4"));
    // Detail for the stride-8 level: the stride-4 map's 2×2 blocks as 12 channels (a k2 s2 conv).
    nodes.push(conv("detail", "s4", "w_s2d", "b_zero12", "d3", 2, 2, 0, 1));
    nodes.push(node("Concat", "fpn3", &["c3", "d3", "u4"], &["p3"], vec![attr_i("axis", 1)]));
    let mut inits = vec![
        tensor_f32("w_ind", &[3, 3, 1, 1], &w_ind),
        tensor_f32("b_ind", &[3], &[-0.8; 3]),
        tensor_f32("zero", &[], &[0.0]),
        tensor_f32("one", &[], &[1.0]),
        tensor_f32("w_avg", &[3, 1, 2, 2], &[0.25; 12]),
        tensor_f32("b_zero", &[3], &[0.0; 3]),
        tensor_f32("up2", &[4], &[1.0, 1.0, 2.0, 2.0]),
        tensor_f32("w_s2d", &[12, 3, 2, 2], &s2d),
        tensor_f32("b_zero12", &[12], &[0.0; 12]),
    ];
    let feats = ["p3", "p4", "c5"];
    let mut outputs = Vec::new();
    match head {
        None => outputs.extend(feats.iter().map(|f| value_info(f, &[]))),
        Some(hw) => {
            let nb = 4 * (REG_MAX + 1);
            for (l, &s) in STRIDES.iter().enumerate() {
                let (k, ch) = (KERNELS[l], CHANNELS[l]);
                let (cw, cb, rw, rb) = &hw.levels[l];
                inits.push(tensor_f32(&format!("wc{s}"), &[3, ch as i64, k as i64, k as i64], cw));
                inits.push(tensor_f32(&format!("bc{s}"), &[3], cb));
                inits.push(tensor_f32(&format!("wr{s}"), &[nb as i64, ch as i64, k as i64, k as i64], rw));
                inits.push(tensor_f32(&format!("br{s}"), &[nb as i64], rb));
                let p = (k / 2) as i64;
                nodes.push(conv(
                    &format!("cls_conv{s}"),
                    feats[l],
                    &format!("wc{s}"),
                    &format!("bc{s}"),
                    &format!("cl{s}"),
                    k as i64,
                    1,
                    p,
                    1,
                ));
                nodes.push(node("Sigmoid", &format!("cls_sigmoid{s}"), &[&format!("cl{s}")], &[&format!("cs{s}")], vec![]));
                nodes.push(conv(
                    &format!("reg_conv{s}"),
                    feats[l],
                    &format!("wr{s}"),
                    &format!("br{s}"),
                    &format!("rg{s}"),
                    k as i64,
                    1,
                    p,
                    1,
                ));
                let layout = if l == 2 { last } else { OutLayout::Exported };
                if layout == OutLayout::Nchw {
                    nodes.push(node("Identity", &format!("cls_id{s}"), &[&format!("cs{s}")], &[&format!("cls{s}")], vec![]));
                    nodes.push(node("Identity", &format!("reg_id{s}"), &[&format!("rg{s}")], &[&format!("reg{s}")], vec![]));
                } else if layout == OutLayout::ReshapeOnly {
                    for (src, c, out) in [(format!("cs{s}"), 3, format!("cls{s}")), (format!("rg{s}"), nb, format!("reg{s}"))] {
                        let shp = format!("{out}_shape");
                        inits.push(tensor_i64(&shp, &[3], &[1, -1, c as i64]));
                        nodes.push(node("Reshape", &format!("{out}_flat"), &[&src, &shp], &[&out], vec![]));
                    }
                } else {
                    for (src, c, out) in [(format!("cs{s}"), 3, format!("cls{s}")), (format!("rg{s}"), nb, format!("reg{s}"))] {
                        let shp = format!("{out}_shape");
                        inits.push(tensor_i64(&shp, &[3], &[1, c as i64, -1]));
                        nodes.push(node("Reshape", &format!("{out}_flat"), &[&src, &shp], &[&format!("{out}_f")], vec![]));
                        nodes.push(node(
                            "Transpose",
                            &format!("{out}_t"),
                            &[&format!("{out}_f")],
                            &[&out],
                            vec![attr_ints_packed("perm", &[0, 2, 1])],
                        ));
                    }
                }
                outputs.push(value_info(&format!("cls{s}"), &[]));
                outputs.push(value_info(&format!("reg{s}"), &[]));
            }
        }
    }
    model(nodes, inits, vec![value_info("x", &[1, 3, SIDE as i64, SIDE as i64])], outputs)
}

/// Solves `(A + λ·diag) x = b` for symmetric positive `A` (`n × n`, row-major) by Cholesky.
fn solve(a: &[f64], b: &[Vec<f64>], n: usize) -> Vec<Vec<f64>> {
    let mut l = a.to_vec();
    let tr: f64 = (0..n).map(|i| a[i * n + i]).sum::<f64>() / n as f64;
    for i in 0..n {
        l[i * n + i] += 1e-3 * tr + 1e-9;
    }
    for j in 0..n {
        let mut d = l[j * n + j];
        for k in 0..j {
            d -= l[j * n + k] * l[j * n + k];
        }
        let d = d.max(1e-12).sqrt();
        l[j * n + j] = d;
        for i in j + 1..n {
            let mut s = l[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            l[i * n + j] = s / d;
        }
    }
    b.iter()
        .map(|rhs| {
            let mut y = rhs.clone();
            for i in 0..n {
                for k in 0..i {
                    y[i] -= l[i * n + k] * y[k];
                }
                y[i] /= l[i * n + i];
            }
            for i in (0..n).rev() {
                for k in i + 1..n {
                    y[i] -= l[k * n + i] * y[k];
                }
                y[i] /= l[i * n + i];
            }
            y
        })
        .collect()
}

/// The level an input box `[x1, y1, x2, y2]` is assigned to (by its longer side).
pub fn level_of(b: [f32; 4]) -> usize {
    let s = (b[2] - b[0]).max(b[3] - b[1]);
    if s < 24.0 {
        0
    } else if s < 48.0 {
        1
    } else {
        2
    }
}

/// Fits the head on the COCO set `json` (letterboxed to the model input) and returns it.
pub fn fit_head(dir: &Path, json: &Path) -> HeadWeights {
    let bb = dir.join("backbone.onnx");
    std::fs::write(&bb, detector_onnx(None, OutLayout::Exported)).unwrap();
    let mut g = onnx::load_onnx(&bb, None).unwrap();
    passes::optimize(&mut g).unwrap();
    let geo = Geometry::parse(&format!("letterbox:{SIDE}x{SIDE}")).unwrap();
    let ds = load_detection(&format!("coco:{}", json.display()), &DetLoadOptions { geometry: Some(geo), ..Default::default() }).unwrap();
    let px = ds.pixels.as_ref().unwrap();
    let nb = 4 * (REG_MAX + 1);
    let mut levels = Vec::new();
    let feats: Vec<Vec<Tensor>> = (0..ds.len())
        .map(|i| {
            let x: Vec<f32> = px.image(i).unwrap().iter().map(|&v| v as f32 / 255.0).collect();
            fp32::run(&g, &[Tensor::new(vec![1, 3, SIDE, SIDE], x).unwrap()]).unwrap()
        })
        .collect();
    for (l, &s) in STRIDES.iter().enumerate() {
        let (k, ch) = (KERNELS[l], CHANNELS[l]);
        let hw = SIDE / s;
        let n = ch * k * k + 1;
        let mut a_all = vec![0f64; n * n];
        let mut a_pos = vec![0f64; n * n];
        let mut b_cls = vec![vec![0f64; n]; 3];
        let mut b_d = vec![vec![0f64; n]; 4];
        let mut phi = vec![0f64; n];
        for (i, f) in feats.iter().enumerate() {
            let fm = &f[l].data;
            assert_eq!(fm.len(), ch * hw * hw);
            let boxes = ds.input_boxes(i).unwrap();
            for y in 0..hw {
                for x in 0..hw {
                    let mut j = 0;
                    for c in 0..ch {
                        for ky in 0..k {
                            for kx in 0..k {
                                let (yy, xx) = (y as i64 + ky as i64 - (k / 2) as i64, x as i64 + kx as i64 - (k / 2) as i64);
                                phi[j] = if yy < 0 || xx < 0 || yy >= hw as i64 || xx >= hw as i64 {
                                    0.0
                                } else {
                                    fm[(c * hw + yy as usize) * hw + xx as usize] as f64
                                };
                                j += 1;
                            }
                        }
                    }
                    phi[n - 1] = 1.0;
                    let (cx, cy) = ((x as f32 + 0.5) * s as f32, (y as f32 + 0.5) * s as f32);
                    let hit = boxes
                        .iter()
                        .find(|b| level_of(b.xyxy) == l && cx > b.xyxy[0] && cx < b.xyxy[2] && cy > b.xyxy[1] && cy < b.xyxy[3]);
                    for r in 0..n {
                        for c in 0..=r {
                            a_all[r * n + c] += phi[r] * phi[c];
                        }
                    }
                    if let Some(b) = hit {
                        b_cls[b.class as usize].iter_mut().zip(&phi).for_each(|(t, p)| *t += p);
                        let d = [cx - b.xyxy[0], cy - b.xyxy[1], b.xyxy[2] - cx, b.xyxy[3] - cy];
                        for r in 0..n {
                            for c in 0..=r {
                                a_pos[r * n + c] += phi[r] * phi[c];
                            }
                        }
                        for (side, t) in b_d.iter_mut().enumerate() {
                            let v = (d[side] / s as f32) as f64;
                            t.iter_mut().zip(&phi).for_each(|(t, p)| *t += p * v);
                        }
                    }
                }
            }
        }
        for m in [&mut a_all, &mut a_pos] {
            for r in 0..n {
                for c in r + 1..n {
                    m[r * n + c] = m[c * n + r];
                }
            }
        }
        let wc = solve(&a_all, &b_cls, n);
        let wd = solve(&a_pos, &b_d, n);
        let gain = 10.0;
        let cls_w: Vec<f32> = wc.iter().flat_map(|w| w[..n - 1].iter().map(move |v| (gain * v) as f32)).collect();
        let cls_b: Vec<f32> = wc.iter().map(|w| (gain * (w[n - 1] - 0.5)) as f32).collect();
        let (mut reg_w, mut reg_b) = (Vec::with_capacity(nb * (n - 1)), Vec::with_capacity(nb));
        for w in &wd {
            for j in 0..=REG_MAX {
                let jf = j as f64;
                reg_w.extend(w[..n - 1].iter().map(|v| (2.0 * jf * v) as f32));
                reg_b.push((2.0 * jf * w[n - 1] - jf * jf) as f32);
            }
        }
        levels.push((cls_w, cls_b, reg_w, reg_b));
    }
    HeadWeights { levels }
}

/// The head config of the synthetic detector.
pub fn head_json() -> String {
    let levels: Vec<String> = STRIDES.iter().map(|s| format!(r#"{{"stride":{s},"scores":"cls{s}","boxes":"reg{s}"}}"#)).collect();
    format!(
        r#"{{"num_classes":3,"reg_max":{REG_MAX},"score":"probabilities","levels":[{}],"score_threshold":0.05,"iou_threshold":0.5,"top_k":500,"max_det":50,"class_aware":true}}"#,
        levels.join(",")
    )
}
