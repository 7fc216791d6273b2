//! ONNX importer on hand-encoded models: error messages, hostile bytes, dynamic shapes, shape
//! arithmetic folding, opset-dependent attribute forms and numerics of individual ops.

use temper_converter::fp32::{self, Tensor};
use temper_converter::ir::{Graph, Op};
use temper_converter::onnx::{self, OnnxError};
use temper_converter::passes;
mod onnx_builder;
use onnx_builder::*;

enum D {
    V(i64),
    P(&'static str),
}

fn value_info(name: &str, dims: &[D]) -> M {
    let mut shape = M::default();
    for d in dims {
        let dm = match d {
            D::V(v) => M::default().int(1, *v),
            D::P(p) => M::default().str(2, p),
        };
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

fn import(bytes: &[u8], shape: Option<&[usize]>) -> Result<Graph, OnnxError> {
    onnx::import_bytes(bytes, None, shape, "hand.onnx")
}

fn run1(g: &Graph, shape: Vec<usize>, data: Vec<f32>) -> Tensor {
    fp32::run(g, &[Tensor::new(shape, data).unwrap()]).unwrap().remove(0)
}

/// A small but complete CNN: Conv(+bias) → Relu → MaxPool → shape-computed Reshape → Gemm →
/// Softmax.
fn small_cnn(opset: i64) -> Vec<u8> {
    let w: Vec<f32> = (0..18).map(|i| (i as f32 - 8.0) * 0.1).collect();
    let fw: Vec<f32> = (0..3 * 8).map(|i| ((i * 7) % 5) as f32 * 0.2 - 0.4).collect();
    let nodes = vec![
        node("Conv", "conv", &["x", "w", "b"], &["c"], vec![attr_ints("kernel_shape", &[3, 3]), attr_ints("pads", &[1, 1, 1, 1])]),
        node("Relu", "relu", &["c"], &["r"], vec![]),
        node("MaxPool", "pool", &["r"], &["p"], vec![attr_ints("kernel_shape", &[2, 2]), attr_ints("strides", &[2, 2])]),
        node("Shape", "shape", &["p"], &["s"], vec![]),
        node("Gather", "gather", &["s", "zero"], &["n"], vec![attr_i("axis", 0)]),
        node("Unsqueeze", "unsq", &["n", "axes0"], &["n1"], vec![]),
        node("Constant", "m1", &[], &["minus1"], vec![attr_t("value", tensor_i64("", &[1], &[-1]))]),
        node("Concat", "cat", &["n1", "minus1"], &["shp"], vec![attr_i("axis", 0)]),
        node("Reshape", "flat", &["p", "shp"], &["f"], vec![]),
        node("Gemm", "fc", &["f", "fw", "fb"], &["y"], vec![attr_i("transB", 1), attr_f("alpha", 0.5)]),
        node("Softmax", "sm", &["y"], &["prob"], vec![attr_i("axis", 1)]),
    ];
    let inits = vec![
        tensor_f32("w", &[2, 1, 3, 3], &w),
        tensor_f32("b", &[2], &[0.1, -0.1]),
        tensor_i64("zero", &[], &[0]),
        tensor_i64("axes0", &[1], &[0]),
        tensor_f32("fw", &[3, 8], &fw),
        tensor_f32("fb", &[3], &[0.0, 1.0, -1.0]),
    ];
    model(
        nodes,
        inits,
        vec![value_info("x", &[D::P("N"), D::V(1), D::V(4), D::V(4)])],
        vec![value_info("prob", &[D::P("N"), D::V(3)])],
        opset,
    )
}

/// [`small_cnn`] computed directly in f64 from its definition (same weights): 3×3 convolution
/// with zero padding 1 and bias, ReLU, 2×2 max-pool with stride 2, flatten, `0.5 · f · fwᵀ + fb`,
/// softmax. Input `[n, 1, 4, 4]`, output `[n, 3]` row-major.
fn small_cnn_reference(x: &[f32], n: usize) -> Vec<f64> {
    let w: Vec<f64> = (0..18).map(|i| (i as f64 - 8.0) * 0.1).collect();
    let b = [0.1, -0.1];
    let fw: Vec<f64> = (0..3 * 8).map(|i| ((i * 7) % 5) as f64 * 0.2 - 0.4).collect();
    let fb = [0.0, 1.0, -1.0];
    let mut out = Vec::new();
    for img in x.chunks(16).take(n) {
        let px = |r: i64, c: i64| if (0..4).contains(&r) && (0..4).contains(&c) { f64::from(img[(r * 4 + c) as usize]) } else { 0.0 };
        let mut conv = [[[0.0f64; 4]; 4]; 2];
        for (o, plane) in conv.iter_mut().enumerate() {
            for (r, row) in plane.iter_mut().enumerate() {
                for (c, v) in row.iter_mut().enumerate() {
                    let mut acc = b[o];
                    for kr in 0..3 {
                        for kc in 0..3 {
                            acc += w[o * 9 + kr * 3 + kc] * px(r as i64 + kr as i64 - 1, c as i64 + kc as i64 - 1);
                        }
                    }
                    *v = acc.max(0.0);
                }
            }
        }
        // flatten order: channel, row, column of the 2×2 pooled map
        let mut f = Vec::with_capacity(8);
        for plane in &conv {
            for pr in 0..2 {
                for pc in 0..2 {
                    let m = [plane[2 * pr][2 * pc], plane[2 * pr][2 * pc + 1], plane[2 * pr + 1][2 * pc], plane[2 * pr + 1][2 * pc + 1]];
                    f.push(m.into_iter().fold(f64::NEG_INFINITY, f64::max));
                }
            }
        }
        let logits: Vec<f64> = (0..3).map(|k| 0.5 * (0..8).map(|j| f[j] * fw[k * 8 + j]).sum::<f64>() + fb[k]).collect();
        let top = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = logits.iter().map(|l| (l - top).exp()).collect();
        let sum: f64 = e.iter().sum();
        out.extend(e.iter().map(|v| v / sum));
    }
    out
}

#[test]
fn small_cnn_imports_folds_and_runs_batched() {
    let bytes = small_cnn(13);
    let mut g = import(&bytes, None).unwrap();
    assert_eq!(g.tensors[g.inputs[0]].shape, vec![1, 1, 4, 4]);
    // Shape/Gather/Unsqueeze/Concat were folded at import
    assert!(g.nodes.iter().all(|n| !n.name.starts_with("shape") && !n.name.starts_with("gather")));
    passes::optimize(&mut g).unwrap();
    let ops: Vec<&str> = g.nodes.iter().map(|n| n.op.name()).collect();
    assert_eq!(ops, ["Conv", "MaxPool", "Reshape", "Dense", "Softmax"], "{g}");
    let x: Vec<f32> = (0..3 * 16).map(|i| (i % 11) as f32 * 0.1 - 0.4).collect();
    let y = run1(&g, vec![3, 1, 4, 4], x.clone());
    assert_eq!(y.shape, vec![3, 3]);
    // Every value against the model's math written out by hand in f64.
    let want = small_cnn_reference(&x, 3);
    for (i, (&got, &w)) in y.data.iter().zip(&want).enumerate() {
        assert!((f64::from(got) - w).abs() < 1e-6, "image {} class {}: {got} vs reference {w:.7}", i / 3, i % 3);
    }
    let y0 = run1(&g, vec![1, 1, 4, 4], x[..16].to_vec());
    assert_eq!(&y.data[..3], &y0.data[..]);
}

#[test]
fn truncated_hand_model_is_always_an_error() {
    let bytes = small_cnn(13);
    assert!(import(&bytes, None).is_ok());
    for len in 0..bytes.len() {
        assert!(import(&bytes[..len], None).is_err(), "prefix {len} accepted");
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    let bytes = small_cnn(13);
    for pos in 0..bytes.len() {
        for v in [0x00u8, 0xff, 0x80, 0x7f, bytes[pos] ^ 1, bytes[pos] ^ 0x40] {
            let mut b = bytes.clone();
            b[pos] = v;
            if let Ok(mut g) = import(&b, None) {
                if passes::optimize(&mut g).is_ok() {
                    let s = g.tensors[g.inputs[0]].shape.clone();
                    let n = s.iter().product::<usize>();
                    if n < 1 << 20 {
                        let _ = fp32::run(&g, &[Tensor::new(s, vec![0.5; n]).unwrap()]);
                    }
                }
            }
        }
    }
    // garbage and adversarial lengths
    for b in [&[0xffu8; 16][..], &[0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f], &[0x0a, 0x80], &[0x08], b"\x0a\x02\x0a"] {
        assert!(import(b, None).is_err());
    }
}

#[test]
fn decode_error_names_file_and_offset() {
    let mut bytes = small_cnn(13);
    bytes.truncate(bytes.len() - 3);
    let e = import(&bytes, None).unwrap_err();
    let OnnxError::Decode { offset, .. } = &e else { panic!("{e:?}") };
    let s = e.to_string();
    assert!(s.contains("hand.onnx") && s.contains(&format!("byte offset {offset}")), "{s}");
}

#[test]
fn unsupported_op_names_op_node_and_opset() {
    let bytes = model(
        vec![node("Relu", "r0", &["x"], &["a"], vec![]), node("FancyOp", "my_fancy_node", &["a"], &["y"], vec![])],
        vec![],
        vec![value_info("x", &[D::V(1), D::V(4)])],
        vec![value_info("y", &[D::V(1), D::V(4)])],
        17,
    );
    let e = import(&bytes, None).unwrap_err();
    assert!(matches!(e, OnnxError::UnsupportedOp { .. }), "{e:?}");
    let s = e.to_string();
    for want in ["FancyOp", "my_fancy_node", "opset 17", "hand.onnx"] {
        assert!(s.contains(want), "'{s}' lacks '{want}'");
    }
}

#[test]
fn unsupported_attribute_names_the_attribute() {
    let bytes = model(
        vec![node("Pad", "pad_reflect", &["x", "pads"], &["y"], vec![attr_s("mode", "reflect")])],
        vec![tensor_i64("pads", &[4], &[0, 1, 0, 1])],
        vec![value_info("x", &[D::V(1), D::V(4)])],
        vec![value_info("y", &[D::V(1), D::V(6)])],
        13,
    );
    let e = import(&bytes, None).unwrap_err();
    let s = e.to_string();
    for want in ["Pad", "pad_reflect", "opset 13", "'mode'", "reflect"] {
        assert!(s.contains(want), "'{s}' lacks '{want}'");
    }
    // MatMul with a computed second input
    let bytes = model(
        vec![node("MatMul", "mm", &["x", "x"], &["y"], vec![])],
        vec![],
        vec![value_info("x", &[D::V(4), D::V(4)])],
        vec![value_info("y", &[D::V(4), D::V(4)])],
        13,
    );
    let s = import(&bytes, None).unwrap_err().to_string();
    assert!(s.contains("mm") && s.contains("'B'"), "{s}");
}

#[test]
fn dynamic_dims_need_input_shape() {
    let mk = |dims: Vec<D>| {
        model(vec![node("Relu", "r", &["x"], &["y"], vec![])], vec![], vec![value_info("x", &dims)], vec![value_info("y", &[])], 13)
    };
    let b = mk(vec![D::P("N"), D::V(3), D::P("H"), D::V(-1)]);
    let e = import(&b, None).unwrap_err();
    assert!(matches!(e, OnnxError::DynamicShape { .. }));
    let s = e.to_string();
    assert!(s.contains("--input-shape") && s.contains("'x'") && s.contains("'H'"), "{s}");
    let g = import(&b, Some(&[2, 3, 8, 9])).unwrap();
    assert_eq!(g.tensors[g.inputs[0]].shape, vec![2, 3, 8, 9]);
    // given shape must agree with fixed dims and rank
    assert!(import(&b, Some(&[2, 4, 8, 9])).is_err());
    assert!(import(&b, Some(&[2, 3, 8])).is_err());
    // only the batch dynamic → batch 1 (paddle writes -1)
    let g = import(&mk(vec![D::V(-1), D::V(3)]), None).unwrap();
    assert_eq!(g.tensors[g.inputs[0]].shape, vec![1, 3]);
}

#[test]
fn gemm_attributes_numerics() {
    // y = 0.5 · x·Bᵀ... with transA=0, transB=0: y = alpha·x·B + beta·C
    let bmat = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // [K=2, N=3]
    let bytes = model(
        vec![node("Gemm", "g", &["x", "B", "C"], &["y"], vec![attr_f("alpha", 0.5), attr_f("beta", 2.0)])],
        vec![tensor_f32("B", &[2, 3], &bmat), tensor_f32("C", &[1, 3], &[1.0, 0.0, -1.0])],
        vec![value_info("x", &[D::P("N"), D::V(2)])],
        vec![value_info("y", &[D::P("N"), D::V(3)])],
        13,
    );
    let mut g = import(&bytes, None).unwrap();
    passes::optimize(&mut g).unwrap();
    let y = run1(&g, vec![2, 2], vec![1.0, 1.0, 2.0, -1.0]);
    let want = [
        0.5 * (1.0 + 4.0) + 2.0,
        0.5 * (2.0 + 5.0),
        0.5 * (3.0 + 6.0) - 2.0,
        0.5 * (2.0 - 4.0) + 2.0,
        0.5 * (4.0 - 5.0),
        0.5 * (6.0 - 6.0) - 2.0,
    ];
    for (a, b) in y.data.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{:?}", y.data);
    }
}

#[test]
fn softmax_opset11_coerces_to_2d() {
    let mk = |opset| {
        model(
            vec![node("Softmax", "sm", &["x"], &["y"], vec![attr_i("axis", 1)])],
            vec![],
            vec![value_info("x", &[D::V(1), D::V(2), D::V(3)])],
            vec![value_info("y", &[])],
            opset,
        )
    };
    let x: Vec<f32> = (0..6).map(|i| i as f32 * 0.3).collect();
    let g11 = import(&mk(11), None).unwrap();
    let y = run1(&g11, vec![1, 2, 3], x.clone());
    assert!((y.data.iter().sum::<f32>() - 1.0).abs() < 1e-5, "opset 11: all 6 values form one distribution");
    let g13 = import(&mk(13), None).unwrap();
    let y = run1(&g13, vec![1, 2, 3], x);
    for i in 0..3 {
        assert!((y.data[i] + y.data[i + 3] - 1.0).abs() < 1e-5, "opset 13: softmax over axis 1 only");
    }
}

#[test]
fn clip_forms_and_activations() {
    // opset 6: attributes; opset 13: inputs (max omitted)
    let old = model(
        vec![node("Clip", "c", &["x"], &["y"], vec![attr_f("min", -1.0), attr_f("max", 2.0)])],
        vec![],
        vec![value_info("x", &[D::V(1), D::V(4)])],
        vec![value_info("y", &[])],
        7,
    );
    let g = import(&old, None).unwrap();
    assert_eq!(run1(&g, vec![1, 4], vec![-3.0, 0.5, 1.5, 9.0]).data, vec![-1.0, 0.5, 1.5, 2.0]);
    let new = model(
        vec![node("Clip", "c", &["x", "lo"], &["y"], vec![])],
        vec![tensor_f32("lo", &[], &[0.0])],
        vec![value_info("x", &[D::V(1), D::V(4)])],
        vec![value_info("y", &[])],
        13,
    );
    let g = import(&new, None).unwrap();
    assert!(matches!(g.nodes[0].op, Op::Act(temper_converter::ir::Activation::Relu)));
    assert_eq!(run1(&g, vec![1, 4], vec![-3.0, 0.5, 1.5, 9.0]).data, vec![0.0, 0.5, 1.5, 9.0]);
}

#[test]
fn conv_auto_pad_same_upper_matches_explicit_pads() {
    let w: Vec<f32> = (0..3 * 2 * 3 * 3).map(|i| ((i * 13) % 7) as f32 * 0.1 - 0.3).collect();
    let mk = |attrs: Vec<M>| {
        model(
            vec![node("Conv", "conv", &["x", "w"], &["y"], attrs)],
            vec![tensor_f32("w", &[3, 2, 3, 3], &w)],
            vec![value_info("x", &[D::V(1), D::V(2), D::V(7), D::V(6)])],
            vec![value_info("y", &[])],
            13,
        )
    };
    let a = import(&mk(vec![attr_s("auto_pad", "SAME_UPPER"), attr_ints("strides", &[2, 2])]), None).unwrap();
    let b = import(&mk(vec![attr_ints("pads", &[1, 0, 1, 1]), attr_ints("strides", &[2, 2])]), None).unwrap();
    let x: Vec<f32> = (0..2 * 7 * 6).map(|i| (i % 9) as f32 * 0.2 - 0.5).collect();
    let ya = run1(&a, vec![1, 2, 7, 6], x.clone());
    let yb = run1(&b, vec![1, 2, 7, 6], x);
    assert_eq!(ya.shape, vec![1, 3, 4, 3]);
    assert_eq!(ya, yb);
}

#[test]
fn resize_and_slice_and_transpose() {
    let bytes = model(
        vec![
            node(
                "Resize",
                "up",
                &["x", "", "scales"],
                &["u"],
                vec![attr_s("mode", "nearest"), attr_s("coordinate_transformation_mode", "asymmetric"), attr_s("nearest_mode", "floor")],
            ),
            node("Slice", "sl", &["u", "st", "en", "ax", "sp"], &["s"], vec![]),
            node("Transpose", "tr", &["s"], &["y"], vec![attr_ints("perm", &[0, 1, 3, 2])]),
        ],
        vec![
            tensor_f32("scales", &[4], &[1.0, 1.0, 2.0, 2.0]),
            tensor_i64("st", &[2], &[1, -3]),
            tensor_i64("en", &[2], &[i64::MAX, 100]),
            tensor_i64("ax", &[2], &[2, 3]),
            tensor_i64("sp", &[2], &[2, 1]),
        ],
        vec![value_info("x", &[D::V(1), D::V(1), D::V(2), D::V(2)])],
        vec![value_info("y", &[])],
        13,
    );
    let g = import(&bytes, None).unwrap();
    // u = [[1,1,2,2],[1,1,2,2],[3,3,4,4],[3,3,4,4]]; rows 1,3; cols 1..4 → [[1,2,2],[3,4,4]]; transposed
    let y = run1(&g, vec![1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(y.shape, vec![1, 1, 3, 2]);
    assert_eq!(y.data, vec![1.0, 3.0, 2.0, 4.0, 2.0, 4.0]);
}

#[test]
fn initializer_types_and_raw_size_check() {
    // FLOAT16 and DOUBLE constants are converted to f32
    let h: Vec<u8> = [0x3c00u16, 0xc000].iter().flat_map(|v| v.to_le_bytes()).collect();
    let half = M::default().packed(1, &[2]).int(2, 10).str(8, "h").bytes(9, &h);
    let dbl = M::default()
        .packed(1, &[2])
        .int(2, 11)
        .str(8, "d")
        .bytes(10, &[0.5f64, 0.25].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
    let bytes = model(
        vec![node("Add", "a", &["x", "h"], &["t"], vec![]), node("Mul", "m", &["t", "d"], &["y"], vec![])],
        vec![half, dbl],
        vec![value_info("x", &[D::V(1), D::V(2)])],
        vec![value_info("y", &[])],
        13,
    );
    let g = import(&bytes, None).unwrap();
    assert_eq!(run1(&g, vec![1, 2], vec![1.0, 1.0]).data, vec![1.0, -0.25]);
    // raw_data with the wrong length
    let bad = M::default().packed(1, &[3]).int(2, 1).str(8, "badw").bytes(9, &[0u8; 8]);
    let bytes = model(
        vec![node("Add", "a", &["x", "badw"], &["y"], vec![])],
        vec![bad],
        vec![value_info("x", &[D::V(1), D::V(3)])],
        vec![value_info("y", &[])],
        13,
    );
    let s = import(&bytes, None).unwrap_err().to_string();
    assert!(s.contains("badw") && s.contains("8 bytes"), "{s}");
}

#[test]
fn external_data_must_stay_inside_the_model_directory() {
    let dir = std::env::temp_dir().join(format!("temper_ext_{}", std::process::id()));
    let sub = dir.join("model");
    std::fs::create_dir_all(&sub).unwrap();
    let w: Vec<u8> = [1.0f32, 2.0, 3.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut blob = vec![0u8; 4];
    blob.extend_from_slice(&w);
    std::fs::write(sub.join("weights.bin"), &blob).unwrap();
    std::fs::write(dir.join("secret.bin"), &w).unwrap();
    let ext = |loc: &str, offset: &str| {
        let kv = |k: &str, v: &str| M::default().str(1, k).str(2, v);
        M::default()
            .packed(1, &[3])
            .int(2, 1)
            .str(8, "w")
            .msg(13, kv("location", loc))
            .msg(13, kv("offset", offset))
            .msg(13, kv("length", "12"))
            .int(14, 1)
    };
    let mk = |t: M| {
        model(
            vec![node("Add", "a", &["x", "w"], &["y"], vec![])],
            vec![t],
            vec![value_info("x", &[D::V(1), D::V(3)])],
            vec![value_info("y", &[])],
            13,
        )
    };
    std::fs::write(sub.join("ok.onnx"), mk(ext("weights.bin", "4"))).unwrap();
    let g = onnx::load_onnx(&sub.join("ok.onnx"), None).unwrap();
    assert_eq!(run1(&g, vec![1, 3], vec![0.0; 3]).data, vec![1.0, 2.0, 3.0]);
    std::fs::write(sub.join("evil.onnx"), mk(ext("../secret.bin", "0"))).unwrap();
    let s = onnx::load_onnx(&sub.join("evil.onnx"), None).unwrap_err().to_string();
    assert!(s.contains("outside the model directory"), "{s}");
    std::fs::write(sub.join("abs.onnx"), mk(ext(&dir.join("secret.bin").display().to_string(), "0"))).unwrap();
    assert!(onnx::load_onnx(&sub.join("abs.onnx"), None).is_err());
    std::fs::write(sub.join("range.onnx"), mk(ext("weights.bin", "8"))).unwrap();
    assert!(onnx::load_onnx(&sub.join("range.onnx"), None).unwrap_err().to_string().contains("beyond the end"));
    // bytes without a directory cannot use external data
    assert!(import(&mk(ext("weights.bin", "4")), None).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_file_is_an_io_error() {
    let e = onnx::load_onnx(std::path::Path::new("/nonexistent/model.onnx"), None).unwrap_err();
    assert!(matches!(e, OnnxError::Io { .. }) && e.to_string().contains("/nonexistent/model.onnx"));
}
