//! Resize end to end: ONNX import of the forms exporters emit (PyTorch, Paddle, opset 10 and
//! `Upsample`), the FP32 engine against the ONNX definition computed independently here, the
//! refusals of forms the runtime cannot run, and an FPN-like Conv → Resize → Add/Concat/Pad graph lowered
//! to int8 and run through `temper-runtime` against FP32.

use temper_converter::fp32::{self, Tensor};
use temper_converter::ir::Graph;
use temper_converter::onnx::{self, OnnxError};
use temper_converter::passes;
use temper_converter::quant::lower::{lower, LowerOptions};
use temper_converter::quant::Calibration;
use temper_runtime::writer::AlignedBuf;
use temper_runtime::{Model, Session};
mod onnx_builder;
use onnx_builder::*;

/// A fixed dimension of a value info.
struct D(i64);

fn value_info(name: &str, dims: &[D]) -> M {
    let mut shape = M::default();
    for d in dims {
        let dm = M::default().int(1, d.0);
        shape = shape.msg(1, dm);
    }
    let tt = M::default().int(1, 1).msg(2, shape);
    M::default().str(1, name).msg(2, M::default().msg(1, tt))
}

fn model(nodes: Vec<M>, inits: Vec<M>, inputs: Vec<M>, outputs: Vec<M>, opset: i64) -> Vec<u8> {
    let mut g = M::default().str(2, "hand");
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
    M::default().int(1, 8).msg(7, g).msg(8, M::default().str(1, "").int(2, opset)).0
}

fn import(bytes: &[u8]) -> Result<Graph, OnnxError> {
    let mut g = onnx::import_bytes(bytes, None, None, "resize.onnx")?;
    passes::optimize(&mut g).unwrap();
    Ok(g)
}

/// The ONNX `Resize` definition (opset 11+), written from the specification independently of
/// the converter: source coordinate per `coordinate_transformation_mode` with the given scale,
/// then nearest rounding or linear interpolation with edge clamping.
fn onnx_resize(x: &[f32], [n, c, h, w]: [usize; 4], [oh, ow]: [usize; 2], scale: [f64; 2], mode: &str, ctm: &str, nm: &str) -> Vec<f32> {
    let coord = |d: usize, inn: usize, out: usize, s: f64| -> f64 {
        let d = d as f64;
        match ctm {
            "asymmetric" => d / s,
            "half_pixel" => (d + 0.5) / s - 0.5,
            "pytorch_half_pixel" => {
                if out > 1 {
                    (d + 0.5) / s - 0.5
                } else {
                    0.0
                }
            }
            "align_corners" => {
                if out > 1 {
                    d * (inn - 1) as f64 / (out - 1) as f64
                } else {
                    0.0
                }
            }
            other => panic!("{other}"),
        }
    };
    let near = |v: f64, inn: usize| -> usize {
        let r = match nm {
            "floor" => v.floor(),
            "ceil" => v.ceil(),
            "round_prefer_floor" => {
                if v - v.floor() == 0.5 {
                    v.floor()
                } else {
                    v.round()
                }
            }
            "round_prefer_ceil" => {
                if v - v.floor() == 0.5 {
                    v.ceil()
                } else {
                    v.round()
                }
            }
            other => panic!("{other}"),
        };
        r.clamp(0.0, (inn - 1) as f64) as usize
    };
    let mut y = Vec::with_capacity(n * c * oh * ow);
    for p in 0..n * c {
        let img = &x[p * h * w..(p + 1) * h * w];
        for oy in 0..oh {
            let sy = coord(oy, h, oh, scale[0]);
            for ox in 0..ow {
                let sx = coord(ox, w, ow, scale[1]);
                if mode == "nearest" {
                    y.push(img[near(sy, h) * w + near(sx, w)]);
                } else {
                    let (sy, sx) = (sy.clamp(0.0, (h - 1) as f64), sx.clamp(0.0, (w - 1) as f64));
                    let (y0, x0) = (sy.floor() as usize, sx.floor() as usize);
                    let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
                    let (fy, fx) = (sy - y0 as f64, sx - x0 as f64);
                    let v = |yy: usize, xx: usize| img[yy * w + xx] as f64;
                    let top = v(y0, x0) * (1.0 - fx) + v(y0, x1) * fx;
                    let bot = v(y1, x0) * (1.0 - fx) + v(y1, x1) * fx;
                    y.push((top * (1.0 - fy) + bot * fy) as f32);
                }
            }
        }
    }
    y
}

/// A smooth, image-like test input (sum of low-frequency waves), seeded by `k`.
fn image(shape: [usize; 4], k: usize) -> Vec<f32> {
    let [n, c, h, w] = shape;
    let mut v = Vec::with_capacity(n * c * h * w);
    for b in 0..n {
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let t = (k * 7 + b * 3 + ch) as f32;
                    v.push(
                        (0.37 * x as f32 + 0.8 * t).sin() * (0.23 * y as f32 - 0.3 * t).cos() + 0.2 * ((x + 2 * y) as f32 * 0.11 + t).sin(),
                    );
                }
            }
        }
    }
    v
}

struct Case {
    opset: i64,
    op: &'static str,
    mode: &'static str,
    ctm: &'static str,
    nm: &'static str,
    inp: [usize; 4],
    /// Scales input (`Some`) or sizes (`None`: `out` is given as sizes).
    scales: Option<[f32; 2]>,
    out: [usize; 2],
}

fn case_model(c: &Case) -> Vec<u8> {
    let [n, ch, h, w] = c.inp;
    let dims = [n as i64, ch as i64, h as i64, w as i64];
    let mut attrs = vec![attr_s("mode", c.mode)];
    let mut inits = Vec::new();
    let ins: Vec<&str> = if c.op == "Upsample" || c.opset < 11 {
        let s = c.scales.unwrap();
        inits.push(tensor_f32("scales", &[4], &[1.0, 1.0, s[0], s[1]]));
        vec!["x", "scales"]
    } else {
        attrs.push(attr_s("coordinate_transformation_mode", c.ctm));
        attrs.push(attr_s("nearest_mode", c.nm));
        match c.scales {
            Some(s) => {
                inits.push(tensor_f32("scales", &[4], &[1.0, 1.0, s[0], s[1]]));
                vec!["x", "", "scales"]
            }
            None => {
                inits.push(tensor_i64("sizes", &[4], &[dims[0], dims[1], c.out[0] as i64, c.out[1] as i64]));
                vec!["x", "", "", "sizes"]
            }
        }
    };
    model(
        vec![node(c.op, "rs", &ins, &["y"], attrs)],
        inits,
        vec![value_info("x", &dims.iter().map(|&d| D(d)).collect::<Vec<_>>())],
        vec![value_info("y", &[])],
        c.opset,
    )
}

fn case(
    opset: i64,
    mode: &'static str,
    ctm: &'static str,
    nm: &'static str,
    inp: [usize; 4],
    scales: Option<[f32; 2]>,
    out: [usize; 2],
) -> Case {
    Case { opset, op: "Resize", mode, ctm, nm, inp, scales, out }
}

#[test]
fn fp32_resize_matches_the_onnx_definition() {
    let cases = [
        // PyTorch F.interpolate(scale_factor=2, mode='nearest'), opset 11+
        case(13, "nearest", "asymmetric", "floor", [1, 2, 5, 7], Some([2.0, 2.0]), [10, 14]),
        // Paddle nearest upsampling, ONNX Runtime's defaults
        case(11, "nearest", "asymmetric", "round_prefer_floor", [2, 3, 4, 4], Some([2.0, 2.0]), [8, 8]),
        case(13, "nearest", "half_pixel", "round_prefer_floor", [1, 2, 3, 5], Some([2.0, 2.0]), [6, 10]),
        case(13, "nearest", "half_pixel", "round_prefer_ceil", [1, 1, 4, 6], Some([3.0, 3.0]), [12, 18]),
        case(13, "nearest", "asymmetric", "floor", [1, 2, 3, 5], None, [7, 12]),
        case(13, "nearest", "asymmetric", "floor", [1, 2, 8, 6], Some([0.5, 0.5]), [4, 3]),
        // PyTorch bilinear align_corners=False (pytorch_half_pixel), Paddle align_mode=0 (half_pixel)
        case(13, "linear", "pytorch_half_pixel", "round_prefer_floor", [1, 3, 5, 6], Some([2.0, 2.0]), [10, 12]),
        case(11, "linear", "half_pixel", "round_prefer_floor", [1, 2, 4, 4], Some([2.0, 3.0]), [8, 12]),
        case(13, "linear", "half_pixel", "round_prefer_floor", [1, 2, 5, 7], None, [9, 4]),
        // PyTorch / Paddle align_corners=True
        case(13, "linear", "align_corners", "round_prefer_floor", [1, 2, 3, 5], None, [7, 9]),
        case(13, "linear", "align_corners", "round_prefer_floor", [1, 2, 4, 4], Some([2.0, 2.0]), [8, 8]),
        // opset 10 Resize and Upsample: asymmetric, nearest rounds down when upscaling
        case(10, "nearest", "asymmetric", "floor", [1, 2, 3, 4], Some([2.0, 2.0]), [6, 8]),
        Case { op: "Upsample", ..case(9, "nearest", "asymmetric", "floor", [1, 2, 3, 4], Some([2.0, 3.0]), [6, 12]) },
    ];
    for (i, c) in cases.iter().enumerate() {
        let g = import(&case_model(c)).unwrap_or_else(|e| panic!("case {i}: {e}"));
        assert!(g.nodes.iter().any(|n| n.op.name() == "Resize"), "case {i}: no Resize node in {g}");
        let x = image(c.inp, i);
        let y = fp32::run(&g, &[Tensor::new(c.inp.to_vec(), x.clone()).unwrap()]).unwrap().remove(0);
        assert_eq!(y.shape, vec![c.inp[0], c.inp[1], c.out[0], c.out[1]], "case {i}");
        let scale = match c.scales {
            Some(s) => [s[0] as f64, s[1] as f64],
            None => [c.out[0] as f64 / c.inp[2] as f64, c.out[1] as f64 / c.inp[3] as f64],
        };
        let want = onnx_resize(&x, c.inp, c.out, scale, c.mode, c.ctm, c.nm);
        let err = y.data.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(err < 1e-5, "case {i} ({} {} {}): max error {err}", c.mode, c.ctm, c.nm);
    }
}

#[test]
fn forms_the_runtime_cannot_run_are_refused_naming_the_attribute() {
    let refused = [
        // linear asymmetric upscaling (Paddle align_mode=1): no such runtime kernel
        (case(13, "linear", "asymmetric", "floor", [1, 1, 4, 4], Some([2.0, 2.0]), [8, 8]), "coordinate_transformation_mode"),
        // nearest asymmetric with round_prefer_ceil picks other pixels than floor
        (case(13, "nearest", "asymmetric", "round_prefer_ceil", [1, 1, 4, 4], Some([2.0, 2.0]), [8, 8]), "coordinate_transformation_mode"),
        (case(13, "cubic", "half_pixel", "floor", [1, 1, 4, 4], Some([2.0, 2.0]), [8, 8]), "mode"),
    ];
    for (c, attr) in refused {
        match import(&case_model(&c)) {
            Err(OnnxError::UnsupportedAttribute(f)) => {
                assert_eq!(f.attribute, attr, "{f:?}");
                assert_eq!(f.node, "rs");
                assert_eq!(f.opset, c.opset);
            }
            other => panic!("{} {}: expected an unsupported-attribute error, got {other:?}", c.mode, c.ctm),
        }
    }
}

/// Deterministic pseudo-random weights in [-a, a].
fn weights(n: usize, seed: u32, a: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32 * 2.0 - 1.0) * a
        })
        .collect()
}

/// FPN/PAN-like neck: two stride-2 convolutions, the coarse map upsampled ×2 (nearest, as
/// PyTorch exports it), added to the fine one and concatenated with it along channels, an
/// explicit zero Pad and a 3×3 head, and a bilinear ×2 (pytorch_half_pixel) upsampling.
fn fpn_model() -> Vec<u8> {
    let conv = |name: &str, x: &str, w: &str, b: &str, y: &str, k: i64, s: i64, p: i64| {
        node(
            "Conv",
            name,
            &[x, w, b],
            &[y],
            vec![attr_ints("kernel_shape", &[k, k]), attr_ints("strides", &[s, s]), attr_ints("pads", &[p, p, p, p])],
        )
    };
    model(
        vec![
            conv("c1", "x", "w1", "b1", "c1", 3, 2, 1),
            node("Relu", "r1", &["c1"], &["r1"], vec![]),
            conv("c2", "r1", "w2", "b2", "c2", 3, 2, 1),
            node("Relu", "r2", &["c2"], &["r2"], vec![]),
            node(
                "Resize",
                "up_nearest",
                &["r2", "", "s2"],
                &["u"],
                vec![attr_s("mode", "nearest"), attr_s("coordinate_transformation_mode", "asymmetric"), attr_s("nearest_mode", "floor")],
            ),
            node("Add", "sum", &["r1", "u"], &["a"], vec![]),
            node("Concat", "cat", &["a", "u"], &["cat"], vec![attr_i("axis", 1)]),
            node("Pad", "pad", &["cat", "pads"], &["padded"], vec![]),
            conv("head", "padded", "w3", "b3", "h", 3, 1, 0),
            node(
                "Resize",
                "up_linear",
                &["h", "", "s2"],
                &["y"],
                vec![attr_s("mode", "linear"), attr_s("coordinate_transformation_mode", "pytorch_half_pixel")],
            ),
        ],
        vec![
            tensor_f32("w1", &[8, 3, 3, 3], &weights(8 * 27, 1, 0.4)),
            tensor_f32("b1", &[8], &weights(8, 2, 0.1)),
            tensor_f32("w2", &[8, 8, 3, 3], &weights(8 * 72, 3, 0.2)),
            tensor_f32("b2", &[8], &weights(8, 4, 0.1)),
            tensor_f32("w3", &[4, 16, 3, 3], &weights(4 * 144, 5, 0.15)),
            tensor_i64("pads", &[8], &[0, 0, 1, 1, 0, 0, 1, 1]),
            tensor_f32("b3", &[4], &weights(4, 6, 0.1)),
            tensor_f32("s2", &[4], &[1.0, 1.0, 2.0, 2.0]),
        ],
        vec![value_info("x", &[D(1), D(3), D(16), D(16)])],
        vec![value_info("y", &[])],
        13,
    )
}

fn nchw_to_nhwc(x: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    for b in 0..n {
        for ch in 0..c {
            for p in 0..h * w {
                y[(b * h * w + p) * c + ch] = x[(b * c + ch) * h * w + p];
            }
        }
    }
    y
}

#[test]
fn fpn_with_resize_lowers_to_int8_and_matches_fp32() {
    let g = import(&fpn_model()).unwrap();
    assert_eq!(g.nodes.iter().filter(|n| n.op.name() == "Resize").count(), 2, "{g}");
    assert_eq!(g.nodes.iter().filter(|n| n.op.name() == "Concat").count(), 1, "{g}");
    assert_eq!(g.nodes.iter().filter(|n| n.op.name() == "Pad").count(), 1, "{g}");
    let shape = [1usize, 3, 16, 16];
    let cal: Vec<Tensor> = (0..16).map(|k| Tensor::new(shape.to_vec(), image(shape, 100 + k)).unwrap()).collect();
    let calib = Calibration::collect(&g, &cal).unwrap();
    let lowered = lower(&g, &calib, &LowerOptions::default()).unwrap();
    let buf = AlignedBuf::from_bytes(&lowered.bytes);
    let m = Model::from_bytes(buf.as_bytes()).unwrap();
    let mut arena = vec![0u8; m.arena_size()];
    let mut sess = Session::new(&m, &mut arena).unwrap();
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for k in 0..8 {
        let x = image(shape, 500 + k);
        let want = fp32::run(&g, &[Tensor::new(shape.to_vec(), x.clone()).unwrap()]).unwrap().remove(0);
        assert_eq!(want.shape, vec![1, 4, 16, 16]);
        sess.set_input_f32(0, &nchw_to_nhwc(&x, shape)).unwrap();
        sess.run().unwrap();
        let mut got = vec![0f32; want.data.len()];
        sess.output_f32(0, &mut got).unwrap();
        let want_nhwc = nchw_to_nhwc(&want.data, [1, 4, 16, 16]);
        for (a, b) in got.iter().zip(&want_nhwc) {
            num += ((a - b) as f64).powi(2);
            den += (*b as f64).powi(2);
        }
    }
    let rel = (num / den).sqrt();
    println!("FPN Conv → Resize(nearest ×2) → Add, Concat → Pad → Conv → Resize(bilinear ×2): int8 vs FP32 relative L2 {rel:.4}");
    assert!(rel < 0.05, "relative L2 {rel}");
}
