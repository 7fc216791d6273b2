//! Elementwise ops with constant operands: folded exactly into a Conv/Gemm producer's weights
//! and bias (FP32 before and after the pass), or rewritten into a per-channel int8
//! `ChannelAffine` where no producer can absorb them (after HardSwish, on a graph input), lowered
//! through `temper-runtime` and compared with FP32. Models are written as ONNX here.

use temper_converter::fp32::{self, Tensor};
use temper_converter::ir::Graph;
use temper_converter::onnx;
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

fn conv(name: &str, x: &str, w: &str, b: &str, y: &str, k: i64) -> M {
    let p = k / 2;
    node("Conv", name, &[x, w, b], &[y], vec![attr_ints("kernel_shape", &[k, k]), attr_ints("pads", &[p, p, p, p])])
}

/// Per-channel constant `[1, C, 1, 1]` with mixed signs and magnitudes.
fn per_channel(c: usize, seed: u32) -> Vec<f32> {
    weights(c, seed, 1.5).iter().enumerate().map(|(i, v)| if i % 3 == 0 { -0.4 - v.abs() } else { 0.3 + v.abs() }).collect()
}

fn import_raw(bytes: &[u8]) -> Graph {
    onnx::import_bytes(bytes, None, None, "affine.onnx").unwrap()
}

fn ops(g: &Graph) -> Vec<&'static str> {
    g.nodes.iter().map(|n| n.op.name()).collect()
}

fn run1(g: &Graph, shape: &[usize], x: &[f32]) -> Tensor {
    fp32::run(g, &[Tensor::new(shape.to_vec(), x.to_vec()).unwrap()]).unwrap().remove(0)
}

/// Conv → Mul(const [1,C,1,1]) → Add(const [C,1,1]) → Div(const [1,C,1,1]) → Sub(const scalar),
/// and Gemm → Mul(const [C]) → Sub(const [C]).
#[test]
fn constant_affine_after_conv_and_gemm_folds_exactly() {
    let c = 6;
    let conv_model = model(
        vec![
            conv("c1", "x", "w1", "b1", "c1", 3),
            node("Mul", "m", &["c1", "s"], &["m"], vec![]),
            node("Add", "a", &["t", "m"], &["a"], vec![]),
            node("Div", "d", &["a", "dv"], &["d"], vec![]),
            node("Sub", "sub", &["d", "half"], &["y"], vec![]),
        ],
        vec![
            tensor_f32("w1", &[c as i64, 3, 3, 3], &weights(c * 27, 1, 0.4)),
            tensor_f32("b1", &[c as i64], &weights(c, 2, 0.1)),
            tensor_f32("s", &[1, c as i64, 1, 1], &per_channel(c, 3)),
            tensor_f32("t", &[c as i64, 1, 1], &weights(c, 4, 0.7)),
            tensor_f32("dv", &[1, c as i64, 1, 1], &per_channel(c, 5)),
            tensor_f32("half", &[], &[0.5]),
        ],
        vec![value_info("x", &[D(2), D(3), D(8), D(8)])],
        vec![value_info("y", &[])],
        14,
    );
    let g0 = import_raw(&conv_model);
    assert_eq!(ops(&g0).len(), 5, "{g0}");
    let mut g = g0.clone();
    passes::optimize(&mut g).unwrap();
    assert_eq!(ops(&g), ["Conv"], "{g}");
    let shape = [2usize, 3, 8, 8];
    let mut worst = 0f32;
    for k in 0..4 {
        let x = image(shape, k);
        let (want, got) = (run1(&g0, &shape, &x), run1(&g, &shape, &x));
        assert_eq!(want.shape, got.shape);
        for (a, b) in want.data.iter().zip(&got.data) {
            worst = worst.max((a - b).abs() / a.abs().max(1.0));
        }
    }
    println!("Conv → Mul → Add → Div → Sub folded into the Conv: max deviation {worst:e}");
    assert!(worst < 1e-5, "{worst}");

    let gemm_model = model(
        vec![
            node("Gemm", "fc", &["x", "w", "b"], &["f"], vec![attr_i("transB", 1)]),
            node("Mul", "m", &["s", "f"], &["m"], vec![]),
            node("Sub", "sub", &["m", "t"], &["y"], vec![]),
        ],
        vec![
            tensor_f32("w", &[c as i64, 10], &weights(c * 10, 7, 0.4)),
            tensor_f32("b", &[c as i64], &weights(c, 8, 0.2)),
            tensor_f32("s", &[c as i64], &per_channel(c, 9)),
            tensor_f32("t", &[c as i64], &weights(c, 10, 0.5)),
        ],
        vec![value_info("x", &[D(3), D(10)])],
        vec![value_info("y", &[])],
        14,
    );
    let g0 = import_raw(&gemm_model);
    let mut g = g0.clone();
    passes::optimize(&mut g).unwrap();
    assert_eq!(ops(&g), ["Dense"], "{g}");
    let x = weights(30, 11, 2.0);
    let (want, got) = (run1(&g0, &[3, 10], &x), run1(&g, &[3, 10], &x));
    for (a, b) in want.data.iter().zip(&got.data) {
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{a} vs {b}");
    }
}

/// Quantize `g` (calibrated on `cal` images), run it through the runtime and return the relative
/// L2 error against FP32 on fresh images.
fn int8_vs_fp32(g: &Graph, shape: [usize; 4], out: [usize; 4]) -> f64 {
    let cal: Vec<Tensor> = (0..16).map(|k| Tensor::new(shape.to_vec(), image(shape, 100 + k)).unwrap()).collect();
    let calib = Calibration::collect(g, &cal).unwrap();
    let lowered = lower(g, &calib, &LowerOptions::default()).unwrap();
    let buf = AlignedBuf::from_bytes(&lowered.bytes);
    let m = Model::from_bytes(buf.as_bytes()).unwrap();
    let mut arena = vec![0u8; m.arena_size()];
    let mut sess = Session::new(&m, &mut arena).unwrap();
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for k in 0..8 {
        let x = image(shape, 500 + k);
        let want = run1(g, &shape, &x);
        assert_eq!(want.shape, out.to_vec());
        sess.set_input_f32(0, &nchw_to_nhwc(&x, shape)).unwrap();
        sess.run().unwrap();
        let mut got = vec![0f32; want.data.len()];
        sess.output_f32(0, &mut got).unwrap();
        for (a, b) in got.iter().zip(&nchw_to_nhwc(&want.data, out)) {
            num += ((a - b) as f64).powi(2);
            den += (*b as f64).powi(2);
        }
    }
    (num / den).sqrt()
}

/// PP-LCNet's learnable affine block: Conv → HardSwish → Mul(const per channel, some negative)
/// → Add(const per channel) → Conv. The Mul/Add cannot fold (HardSwish is between) and become
/// one ChannelAffine; int8 through the runtime matches FP32.
#[test]
fn affine_after_hardswish_lowers_to_int8_and_matches_fp32() {
    let c = 8;
    let m = model(
        vec![
            conv("c1", "x", "w1", "b1", "c1", 3),
            node("HardSwish", "hs", &["c1"], &["h"], vec![]),
            node("Mul", "p2o.Mul.4", &["h", "whswish_w"], &["m"], vec![]),
            node("Add", "p2o.Add.5", &["m", "whswish_b"], &["a"], vec![]),
            conv("c2", "a", "w2", "b2", "y", 3),
        ],
        vec![
            tensor_f32("w1", &[c as i64, 3, 3, 3], &weights(c * 27, 1, 0.5)),
            tensor_f32("b1", &[c as i64], &weights(c, 2, 0.2)),
            tensor_f32("whswish_w", &[1, c as i64, 1, 1], &per_channel(c, 3)),
            tensor_f32("whswish_b", &[1, c as i64, 1, 1], &weights(c, 4, 0.6)),
            tensor_f32("w2", &[4, c as i64, 3, 3], &weights(4 * c * 9, 5, 0.25)),
            tensor_f32("b2", &[4], &weights(4, 6, 0.1)),
        ],
        vec![value_info("x", &[D(1), D(3), D(12), D(12)])],
        vec![value_info("y", &[])],
        14,
    );
    let g0 = import_raw(&m);
    let mut g = g0.clone();
    passes::optimize(&mut g).unwrap();
    assert_eq!(ops(&g), ["Conv", "HardSwish", "ChannelAffine", "Conv"], "{g}");
    let shape = [1usize, 3, 12, 12];
    for k in 0..2 {
        let x = image(shape, 40 + k);
        let (want, got) = (run1(&g0, &shape, &x), run1(&g, &shape, &x));
        for (a, b) in want.data.iter().zip(&got.data) {
            assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "FP32 rewrite: {a} vs {b}");
        }
    }
    let rel = int8_vs_fp32(&g, shape, [1, 4, 12, 12]);
    println!("Conv → HardSwish → Mul(per-channel, negatives) → Add → Conv: int8 vs FP32 relative L2 {rel:.4}");
    assert!(rel < 0.05, "relative L2 {rel}");
}

/// Scalar and reversed forms on a graph input and after HardSwish: `x·0.5` on the input, then
/// Conv → HardSwish → `1 − h` → `/ per-channel` → Relu(via Add) → Conv.
#[test]
fn scalar_and_reversed_constant_operands_lower_to_int8() {
    let c = 6;
    let m = model(
        vec![
            node("Mul", "half", &["x", "h05"], &["xs"], vec![]),
            conv("c1", "xs", "w1", "b1", "c1", 3),
            node("HardSwish", "hs", &["c1"], &["h"], vec![]),
            node("Sub", "one_minus", &["one", "h"], &["om"], vec![]),
            node("Div", "div", &["om", "dv"], &["d"], vec![]),
            node("Add", "shift", &["d", "t"], &["a"], vec![]),
            node("Relu", "relu", &["a"], &["r"], vec![]),
            conv("c2", "r", "w2", "b2", "y", 1),
        ],
        vec![
            tensor_f32("h05", &[], &[0.5]),
            tensor_f32("one", &[1], &[1.0]),
            tensor_f32("w1", &[c as i64, 3, 3, 3], &weights(c * 27, 1, 0.6)),
            tensor_f32("b1", &[c as i64], &weights(c, 2, 0.2)),
            tensor_f32("dv", &[c as i64, 1, 1], &per_channel(c, 7)),
            tensor_f32("t", &[1, c as i64, 1, 1], &weights(c, 8, 0.5)),
            tensor_f32("w2", &[4, c as i64, 1, 1], &weights(4 * c, 5, 0.4)),
            tensor_f32("b2", &[4], &weights(4, 6, 0.1)),
        ],
        vec![value_info("x", &[D(1), D(3), D(10), D(10)])],
        vec![value_info("y", &[])],
        14,
    );
    let g0 = import_raw(&m);
    let mut g = g0.clone();
    passes::optimize(&mut g).unwrap();
    assert_eq!(ops(&g), ["ChannelAffine", "Conv", "HardSwish", "ChannelAffine", "Activation", "Conv"], "{g}");
    let shape = [1usize, 3, 10, 10];
    let x = image(shape, 3);
    let (want, got) = (run1(&g0, &shape, &x), run1(&g, &shape, &x));
    for (a, b) in want.data.iter().zip(&got.data) {
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "FP32 rewrite: {a} vs {b}");
    }
    let rel = int8_vs_fp32(&g, shape, [1, 4, 10, 10]);
    println!("x·0.5 → Conv → HardSwish → 1−h → /c → +t → Relu → Conv: int8 vs FP32 relative L2 {rel:.4}");
    assert!(rel < 0.05, "relative L2 {rel}");
}

/// Division by a constant containing 0 is refused naming the node, whether it would fold into
/// the Conv or become a ChannelAffine.
#[test]
fn division_by_a_constant_zero_is_refused_naming_the_node() {
    for after_hardswish in [false, true] {
        let mut nodes = vec![conv("c1", "x", "w1", "b1", "c1", 1)];
        let src = if after_hardswish {
            nodes.push(node("HardSwish", "hs", &["c1"], &["h"], vec![]));
            "h"
        } else {
            "c1"
        };
        nodes.push(node("Div", "bad_div", &[src, "dv"], &["y"], vec![]));
        let m = model(
            nodes,
            vec![
                tensor_f32("w1", &[3, 3, 1, 1], &weights(9, 1, 0.5)),
                tensor_f32("b1", &[3], &weights(3, 2, 0.2)),
                tensor_f32("dv", &[1, 3, 1, 1], &[2.0, 0.0, 1.0]),
            ],
            vec![value_info("x", &[D(1), D(3), D(4), D(4)])],
            vec![value_info("y", &[])],
            14,
        );
        let mut g = import_raw(&m);
        let e = passes::optimize(&mut g).unwrap_err().to_string();
        assert!(e.contains("'bad_div'") && e.contains("divides by a constant 0"), "{e}");
    }
}
