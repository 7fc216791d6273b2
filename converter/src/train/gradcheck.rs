//! Gradient checks: every differentiable op against central finite differences.
//!
//! Each check builds a one-node graph, takes the loss `L = Σ r·y` (random `r`, accumulated in
//! f64), and compares the analytic gradient of every input element and every trainable
//! parameter element with `(L(x+h) − L(x−h)) / 2h`.
//!
//! **Kinks.** The central difference is the rule everywhere except where the perturbation
//! crosses a kink, which is detected explicitly, not inferred from the numbers: every forward
//! pass records a regime signature ([`regimes`]) — for each element of every piecewise op
//! (fused or standalone ReLU and Clip, LeakyRelu, HardSigmoid, HardSwish) which linear piece it
//! is on, and for every max-pool output which input element is the maximum. When `x ± h` is in
//! the same regime as `x` the function is smooth on `[x−h, x+h]` and the central difference must
//! match. When one side changes regime, the analytic value must match the one-sided difference
//! of the side that stays in `x`'s regime (that is the derivative the backward pass computes at
//! `x`). Only when both sides change regime (two kinks within `h`) either one-sided difference
//! is accepted. The share of elements checked one-sided is bounded by each check.
use super::net::{Mode, Net, Tape};
use crate::fp32::shape::infer_output_shape;
use crate::fp32::Tensor;
use crate::ir::{Activation, ConstData, Graph, Node, Op, ResizeMode, Window};

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// Distinct values spread over `[-scale, scale]` (spacing `2·scale/n`, none within `scale/n` of 0).
fn distinct(n: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut r = Lcg(seed);
    for i in (1..n).rev() {
        let j = ((r.next() + 1.0) * 0.5 * (i + 1) as f32) as usize % (i + 1);
        idx.swap(i, j);
    }
    idx.iter().map(|&k| ((k as f32 + 0.5) / n as f32 * 2.0 - 1.0) * scale).collect()
}

enum Spec {
    Input(Vec<usize>, Vec<f32>),
    Const(Vec<usize>, Vec<f32>),
}

fn input(shape: &[usize], scale: f32, seed: u64) -> Spec {
    Spec::Input(shape.to_vec(), distinct(shape.iter().product(), scale, seed))
}

fn constant(shape: &[usize], scale: f32, seed: u64) -> Spec {
    Spec::Const(shape.to_vec(), distinct(shape.iter().product(), scale, seed))
}

fn build(op: Op, specs: &[Spec], declared_out: Option<Vec<usize>>) -> (Graph, Vec<Tensor>) {
    let mut g = Graph { name: "gradcheck".into(), ..Default::default() };
    let mut ids = Vec::new();
    let mut inputs = Vec::new();
    for (k, s) in specs.iter().enumerate() {
        match s {
            Spec::Input(shape, data) => {
                let id = g.add_tensor(format!("in{k}"), shape.clone(), None);
                g.inputs.push(id);
                inputs.push(Tensor::new(shape.clone(), data.clone()).unwrap());
                ids.push(id);
            }
            Spec::Const(shape, data) => ids.push(g.add_tensor(format!("c{k}"), shape.clone(), Some(ConstData::F32(data.clone())))),
        }
    }
    let shapes: Vec<&[usize]> = ids.iter().map(|&i| g.tensors[i].shape.as_slice()).collect();
    let out_shape = match declared_out {
        Some(s) => s,
        None => infer_output_shape(&op, &shapes, None).unwrap(),
    };
    let out = g.add_tensor("y", out_shape, None);
    g.nodes.push(Node { name: format!("{}_node", op.name()), op, inputs: ids, outputs: vec![out] });
    g.outputs = vec![out];
    (g, inputs)
}

/// Which piece of `[.., lo] (lo, hi) [hi, ..]` `v` lies on.
fn piece(v: f32, lo: f32, hi: f32) -> u32 {
    if v <= lo {
        0
    } else if v >= hi {
        2
    } else {
        1
    }
}

/// The regime signature of a forward pass (see the module docs): for every element of every
/// piecewise-linear op, the piece it is on; for every max-pool output, the index (within its
/// plane) of the input element that is the maximum. Equal signatures at `x` and `x ± h` mean
/// no kink lies between them.
fn regimes(g: &Graph, tape: &Tape) -> Vec<u32> {
    let mut sig = Vec::new();
    for n in &g.nodes {
        let out = || &tape.value(n.outputs[0]).expect("node output on the tape").data;
        let act = match &n.op {
            Op::Conv { act, .. } | Op::Dense { act } | Op::Add { act } | Op::Mul { act } | Op::Act(act) => *act,
            // alpha > 0: the output has the input's sign; kink at 0.
            Op::LeakyRelu { .. } => {
                sig.extend(out().iter().map(|&v| u32::from(v > 0.0)));
                continue;
            }
            // clamp(αx + β, 0, 1): kinks where the output reaches 0 and 1.
            Op::HardSigmoid { .. } => {
                sig.extend(out().iter().map(|&v| piece(v, 0.0, 1.0)));
                continue;
            }
            // x · clamp(x + 3, 0, 6) / 6: kinks at x = ±3 (read from the input).
            Op::HardSwish => {
                let x = &tape.value(n.inputs[0]).expect("input on the tape").data;
                sig.extend(x.iter().map(|&v| piece(v, -3.0, 3.0)));
                continue;
            }
            // The maximum of each window: the input element (in the same N·C plane) whose value
            // the output is. Found by value, independently of the pooling code.
            Op::MaxPool { .. } => {
                let x = tape.value(n.inputs[0]).expect("input on the tape");
                let y = tape.value(n.outputs[0]).expect("output on the tape");
                let (xp, yp) = (x.shape[2] * x.shape[3], y.shape[2] * y.shape[3]);
                for (plane, ys) in y.data.chunks(yp).enumerate() {
                    let xs = &x.data[plane * xp..(plane + 1) * xp];
                    sig.extend(ys.iter().map(|&v| xs.iter().position(|&u| u == v).map_or(u32::MAX, |i| i as u32)));
                }
                continue;
            }
            _ => continue,
        };
        match act {
            Activation::None => {}
            Activation::Relu => sig.extend(out().iter().map(|&v| u32::from(v > 0.0))),
            Activation::Clip { min, max } => sig.extend(out().iter().map(|&v| piece(v, min, max))),
        }
    }
    sig
}

/// The loss `Σ r·y` (in f64) and the regime signature of the forward pass.
fn loss(net: &Net, inputs: &[Tensor], r: &[f32], mode: Mode) -> (f64, Vec<u32>) {
    let tape = net.forward(inputs, mode).unwrap();
    let y = net.outputs(&tape)[0];
    (y.data.iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum(), regimes(net.graph(), &tape))
}

fn close(a: f64, n: f64) -> bool {
    (a - n).abs() <= 2e-2 * a.abs().max(n.abs()) + 2e-3
}

/// How a derivative was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Checked {
    /// Against the central difference (no kink within `h`).
    Central,
    /// Against the one-sided difference of the side without a kink.
    OneSided,
}

/// Compare one analytic derivative with finite differences of `f` (loss and regime signature)
/// around `x0`: central where no kink lies within `h`, else one-sided (see the module docs).
fn agree(analytic: f64, f: &mut dyn FnMut(f32) -> (f64, Vec<u32>), x0: f32, h: f32) -> Result<Checked, String> {
    let ((fp, sp), (fm, sm), (f0, s0)) = (f(x0 + h), f(x0 - h), f(x0));
    let central = (fp - fm) / (2.0 * h as f64);
    let (right, left) = ((fp - f0) / h as f64, (f0 - fm) / h as f64);
    let (smooth_right, smooth_left) = (sp == s0, sm == s0);
    let (ok, what) = match (smooth_left, smooth_right) {
        (true, true) => (close(analytic, central), "central (no kink within h)"),
        (false, true) => (close(analytic, right), "right (kink within h on the left)"),
        (true, false) => (close(analytic, left), "left (kink within h on the right)"),
        (false, false) => (close(analytic, right) || close(analytic, left), "left or right (kinks within h on both sides)"),
    };
    if ok {
        Ok(if smooth_left && smooth_right { Checked::Central } else { Checked::OneSided })
    } else {
        Err(format!("analytic {analytic:.6} vs {what}: central {central:.6}, left {left:.6}, right {right:.6}"))
    }
}

/// Fails unless every derivative agreed and at most a quarter were checked one-sided (a kink
/// within `h` is rare for the spread-out test values; a regime signature that changed for
/// every probe would otherwise excuse everything from the central check).
fn assert_checked(what: &str, results: &[Checked], failures: &[String]) {
    let one_sided = results.iter().filter(|&&c| c == Checked::OneSided).count();
    let n = results.len() + failures.len();
    assert!(n > 0, "{what}: nothing checked");
    eprintln!("{what}: {n} derivatives, {one_sided} checked one-sided (kink within h)");
    assert!(failures.is_empty(), "{what}: {} of {n} derivatives disagree:\n{}", failures.len(), failures.join("\n"));
    assert!(one_sided * 4 <= n, "{what}: {one_sided} of {n} derivatives had a kink within h (checked one-sided)");
}

fn check_mode(what: &str, op: Op, specs: Vec<Spec>, declared_out: Option<Vec<usize>>, mode: Mode) {
    let (g, inputs) = build(op, &specs, declared_out);
    let in_ids = g.inputs.clone();
    let out_id = g.outputs[0];
    for threads in [1, 3] {
        let mut net = Net::new(g.clone(), threads).unwrap();
        let tape = net.forward(&inputs, mode).unwrap();
        let ny = net.outputs(&tape)[0].data.len();
        let mut rng = Lcg(99);
        let r: Vec<f32> = (0..ny).map(|_| rng.next()).collect();
        net.zero_grad();
        let grads = net.backward(&tape, vec![(out_id, r.clone())], &in_ids).unwrap();
        let h = 1e-3f32;
        let mut checked = Vec::new();
        let mut failures = Vec::new();
        for (k, gk) in grads.iter().enumerate() {
            let gk = gk.as_ref().unwrap_or_else(|| panic!("{what}: no gradient for input {k}"));
            assert_eq!(gk.len(), inputs[k].data.len(), "{what}: gradient length of input {k}");
            let step = (gk.len() / 80).max(1);
            for j in (0..gk.len()).step_by(step) {
                let mut f = |v: f32| {
                    let mut ins = inputs.clone();
                    ins[k].data[j] = v;
                    loss(&net, &ins, &r, mode)
                };
                match agree(gk[j] as f64, &mut f, inputs[k].data[j], h) {
                    Ok(c) => checked.push(c),
                    Err(e) => failures.push(format!("input {k}[{j}]: {e}")),
                }
            }
        }
        for p in 0..net.params.len() {
            if !net.params[p].trainable() {
                continue;
            }
            let grad = net.params[p].grad.clone();
            let step = (grad.len() / 60).max(1);
            for j in (0..grad.len()).step_by(step) {
                let x0 = net.params[p].value[j];
                let mut probe = net.clone();
                let mut f = |v: f32| {
                    probe.params[p].value[j] = v;
                    loss(&probe, &inputs, &r, mode)
                };
                match agree(grad[j] as f64, &mut f, x0, h) {
                    Ok(c) => checked.push(c),
                    Err(e) => failures.push(format!("param {}[{j}]: {e}", net.params[p].name)),
                }
            }
        }
        assert_checked(&format!("{what} (threads {threads})"), &checked, &failures);
    }
}

fn check(what: &str, op: Op, specs: Vec<Spec>) {
    check_mode(what, op, specs, None, Mode::Train)
}

fn win(k: [usize; 2], s: [usize; 2], p: [usize; 4], d: [usize; 2]) -> Window {
    Window { kernel: k, stride: s, pads: p, dilation: d }
}

#[test]
fn conv_grouped_strided_padded_dilated_with_bias_and_relu() {
    check(
        "conv g2",
        Op::Conv { window: win([3, 3], [2, 1], [1, 0, 2, 1], [1, 2]), group: 2, act: Activation::Relu },
        vec![input(&[2, 4, 7, 6], 1.0, 1), constant(&[6, 2, 3, 3], 0.5, 2), constant(&[6], 0.2, 3)],
    );
}

#[test]
fn depthwise_forward_matches_the_fp32_engine() {
    for (win, c, hw, bias) in [
        (win([3, 3], [1, 1], [1, 1, 1, 1], [1, 1]), 6, [9, 9], true),
        (win([5, 5], [2, 3], [2, 1, 1, 2], [1, 2]), 4, [9, 10], false),
        (win([3, 3], [2, 2], [0, 1, 1, 0], [2, 1]), 3, [8, 7], true),
    ] {
        let mut specs = vec![input(&[3, c, hw[0], hw[1]], 1.0, 21), constant(&[c, 1, win.kernel[0], win.kernel[1]], 0.5, 22)];
        if bias {
            specs.push(constant(&[c], 0.2, 23));
        }
        let (g, inputs) = build(Op::Conv { window: win, group: c, act: Activation::Clip { min: -0.5, max: 0.7 } }, &specs, None);
        let reference = crate::fp32::run(&g, &inputs).unwrap();
        for threads in [1, 2] {
            let net = Net::new(g.clone(), threads).unwrap();
            let tape = net.forward(&inputs, Mode::Eval).unwrap();
            let y = net.outputs(&tape)[0];
            assert_eq!(y.shape, reference[0].shape);
            let d = y.data.iter().zip(&reference[0].data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(d < 1e-5, "depthwise {win:?}: max difference {d} from the FP32 engine");
        }
    }
}

#[test]
fn conv_depthwise_clip_and_pointwise() {
    check(
        "conv depthwise",
        Op::Conv { window: win([3, 3], [1, 1], [1, 1, 1, 1], [1, 1]), group: 3, act: Activation::Clip { min: -0.4, max: 0.5 } },
        vec![input(&[2, 3, 5, 5], 1.0, 4), constant(&[3, 1, 3, 3], 0.5, 5), constant(&[3], 0.1, 6)],
    );
    check(
        "conv 1x1",
        Op::Conv { window: win([1, 1], [1, 1], [0; 4], [1, 1]), group: 1, act: Activation::None },
        vec![input(&[3, 2, 6, 6], 1.0, 7), constant(&[4, 2, 1, 1], 0.5, 8)],
    );
    // direct depthwise kernel: 5×5, strides 2/3, asymmetric pads, dilation, no bias
    check(
        "conv depthwise strided dilated",
        Op::Conv { window: win([5, 5], [2, 3], [2, 1, 1, 2], [1, 2]), group: 4, act: Activation::Relu },
        vec![input(&[3, 4, 9, 10], 1.0, 12), constant(&[4, 1, 5, 5], 0.4, 13)],
    );
    check(
        "conv depthwise 3x3 s2",
        Op::Conv { window: win([3, 3], [2, 2], [1, 1, 1, 1], [1, 1]), group: 5, act: Activation::None },
        vec![input(&[2, 5, 8, 7], 1.0, 14), constant(&[5, 1, 3, 3], 0.5, 15), constant(&[5], 0.1, 16)],
    );
    // many images per GEMM (small spatial size)
    check(
        "conv 3x3 small maps",
        Op::Conv { window: win([3, 3], [1, 1], [1, 1, 1, 1], [1, 1]), group: 1, act: Activation::Relu },
        vec![input(&[7, 3, 3, 3], 1.0, 9), constant(&[5, 3, 3, 3], 0.4, 10), constant(&[5], 0.1, 11)],
    );
}

#[test]
fn dense_with_and_without_bias() {
    check(
        "dense relu",
        Op::Dense { act: Activation::Relu },
        vec![input(&[5, 7], 1.0, 12), constant(&[4, 7], 0.5, 13), constant(&[4], 0.2, 14)],
    );
    check("dense", Op::Dense { act: Activation::None }, vec![input(&[3, 9], 1.0, 15), constant(&[6, 9], 0.5, 16)]);
}

#[test]
fn broadcasting_binary_ops() {
    check("add relu bcast", Op::Add { act: Activation::Relu }, vec![input(&[2, 3, 4], 1.0, 17), input(&[3, 1], 0.5, 18)]);
    check("add same", Op::Add { act: Activation::None }, vec![input(&[2, 3], 1.0, 19), input(&[2, 3], 1.0, 20)]);
    check("sub bcast", Op::Sub, vec![input(&[2, 3, 4], 1.0, 21), input(&[4], 1.0, 22)]);
    check("mul both bcast", Op::Mul { act: Activation::None }, vec![input(&[2, 3, 1], 1.0, 23), input(&[1, 3, 4], 1.0, 24)]);
    check("mul clip", Op::Mul { act: Activation::Clip { min: -0.3, max: 0.3 } }, vec![input(&[2, 5], 1.0, 25), input(&[5], 1.0, 26)]);
    let b: Vec<f32> = distinct(3, 0.5, 27).iter().map(|v| v + 1.0).collect();
    check("div bcast", Op::Div, vec![input(&[2, 3], 1.0, 28), Spec::Input(vec![3], b)]);
}

#[test]
fn activations() {
    let x = || input(&[2, 3, 5], 4.0, 29);
    check("relu", Op::Act(Activation::Relu), vec![x()]);
    check("clip", Op::Act(Activation::Clip { min: -1.0, max: 2.0 }), vec![x()]);
    check("leaky relu", Op::LeakyRelu { alpha: 0.1 }, vec![x()]);
    check("hardswish", Op::HardSwish, vec![x()]);
    check("hardsigmoid", Op::HardSigmoid { alpha: 0.2, beta: 0.5 }, vec![x()]);
    check("sigmoid", Op::Sigmoid, vec![x()]);
    check("tanh", Op::Tanh, vec![input(&[2, 3, 5], 2.0, 30)]);
}

#[test]
fn pools() {
    check(
        "maxpool 3x3 s2 p1",
        Op::MaxPool { window: win([3, 3], [2, 2], [1, 1, 1, 1], [1, 1]), ceil_mode: false },
        vec![input(&[2, 3, 7, 7], 1.0, 31)],
    );
    check(
        "maxpool 2x2 interior",
        Op::MaxPool { window: win([2, 2], [2, 2], [0; 4], [1, 1]), ceil_mode: false },
        vec![input(&[2, 3, 6, 6], 1.0, 53)],
    );
    check(
        "maxpool 3x3 dilated interior",
        Op::MaxPool { window: win([3, 2], [1, 2], [0; 4], [2, 1]), ceil_mode: false },
        vec![input(&[1, 2, 7, 7], 1.0, 54)],
    );
    check(
        "maxpool 2x2 ceil",
        Op::MaxPool { window: win([2, 2], [2, 2], [0; 4], [1, 1]), ceil_mode: true },
        vec![input(&[2, 2, 5, 5], 1.0, 32)],
    );
    check(
        "avgpool incl pad",
        Op::AvgPool { window: win([3, 3], [2, 2], [1, 1, 1, 1], [1, 1]), ceil_mode: false, count_include_pad: true },
        vec![input(&[2, 2, 5, 5], 1.0, 33)],
    );
    check(
        "avgpool excl pad ceil",
        Op::AvgPool { window: win([3, 2], [2, 2], [1, 0, 1, 0], [1, 1]), ceil_mode: true, count_include_pad: false },
        vec![input(&[2, 2, 6, 5], 1.0, 34)],
    );
    check("global avgpool", Op::GlobalAvgPool, vec![input(&[2, 3, 4, 5], 1.0, 35)]);
}

#[test]
fn reductions_reshapes_concat_softmax() {
    check("reducemean", Op::ReduceMean { axes: vec![1], keepdims: false }, vec![input(&[2, 3, 4], 1.0, 36)]);
    check("reducemean keep", Op::ReduceMean { axes: vec![0, 2], keepdims: true }, vec![input(&[2, 3, 4], 1.0, 37)]);
    check_mode("reshape", Op::Reshape, vec![input(&[2, 3, 4], 1.0, 38)], Some(vec![2, 12]), Mode::Train);
    check("concat", crate::ops::concat::op(1), vec![input(&[2, 3, 4], 1.0, 39), input(&[2, 2, 4], 1.0, 40)]);
    for (k, mode) in [ResizeMode::Nearest, ResizeMode::BilinearHalfPixel, ResizeMode::BilinearAlignCorners].into_iter().enumerate() {
        let op = crate::ops::resize::op(mode);
        check_mode("resize", op, vec![input(&[2, 2, 3, 4], 1.0, 60 + k as u64)], Some(vec![2, 2, 7, 6]), Mode::Train);
    }
    check("softmax last", Op::Softmax { axis: 1 }, vec![input(&[3, 5], 2.0, 41)]);
    check("softmax mid", Op::Softmax { axis: 1 }, vec![input(&[2, 3, 4], 2.0, 42)]);
    check("transpose", Op::Transpose { perm: vec![2, 0, 1] }, vec![input(&[2, 3, 4], 1.0, 43)]);
    check_mode("slice", Op::Slice { starts: vec![1, 0], steps: vec![2, 2] }, vec![input(&[4, 6], 1.0, 44)], Some(vec![2, 3]), Mode::Train);
    check("pad", crate::ops::pad::op(vec![0, 1, 1, 2], 0.5), vec![input(&[2, 3], 1.0, 45)]);
}

#[test]
fn batchnorm_train_and_eval() {
    let var: Vec<f32> = distinct(3, 0.5, 46).iter().map(|v| v + 1.0).collect();
    let specs = || {
        vec![
            input(&[4, 3, 3, 3], 2.0, 47),
            constant(&[3], 1.0, 48),
            constant(&[3], 0.5, 49),
            constant(&[3], 0.3, 50),
            Spec::Const(vec![3], var.clone()),
        ]
    };
    check_mode("batchnorm train", Op::BatchNorm { eps: 1e-5 }, specs(), None, Mode::Train);
    check_mode("batchnorm eval", Op::BatchNorm { eps: 1e-5 }, specs(), None, Mode::Eval);
    check_mode(
        "batchnorm train 2d",
        Op::BatchNorm { eps: 1e-3 },
        {
            let mut s = specs();
            s[0] = input(&[6, 3], 2.0, 51);
            s
        },
        None,
        Mode::Train,
    );
}

#[test]
fn batchnorm_train_matches_definition_and_updates_running_stats() {
    let x = distinct(2 * 2 * 4, 3.0, 52);
    let specs = vec![
        Spec::Input(vec![2, 2, 2, 2], x.clone()),
        Spec::Const(vec![2], vec![1.5, 0.5]),
        Spec::Const(vec![2], vec![0.1, -0.2]),
        Spec::Const(vec![2], vec![0.0, 0.0]),
        Spec::Const(vec![2], vec![1.0, 1.0]),
    ];
    let (g, inputs) = build(Op::BatchNorm { eps: 1e-5 }, &specs, None);
    let mut net = Net::new(g, 1).unwrap();
    let tape = net.forward(&inputs, Mode::Train).unwrap();
    let y = net.outputs(&tape)[0].data.clone();
    net.update_running_stats(&tape);
    let mean = net.params.iter().find(|p| p.kind == super::ParamKind::BnMean).unwrap().value.clone();
    let var = net.params.iter().find(|p| p.kind == super::ParamKind::BnVar).unwrap().value.clone();
    for ch in 0..2 {
        let vals: Vec<f64> = (0..2).flat_map(|n| (0..4).map(move |i| (n, i))).map(|(n, i)| x[(n * 2 + ch) * 4 + i] as f64).collect();
        let m = vals.iter().sum::<f64>() / 8.0;
        let v = vals.iter().map(|a| (a - m).powi(2)).sum::<f64>() / 8.0;
        let (gamma, beta) = ([1.5, 0.5][ch], [0.1, -0.2][ch]);
        for n in 0..2 {
            for i in 0..4 {
                let want = gamma * (x[(n * 2 + ch) * 4 + i] as f64 - m) / (v + 1e-5).sqrt() + beta;
                assert!((y[(n * 2 + ch) * 4 + i] as f64 - want).abs() < 1e-4);
            }
        }
        // running = 0.9·old + 0.1·batch (unbiased variance)
        assert!((mean[ch] as f64 - 0.1 * m).abs() < 1e-5);
        assert!((var[ch] as f64 - (0.9 + 0.1 * v * 8.0 / 7.0)).abs() < 1e-5);
    }
}

/// The whole built-in student (conv, BatchNorm in training mode, ReLU, max-pool, flatten,
/// dense) on a tiny input: sampled parameter and input derivatives against finite differences,
/// and the same gradients with 1 and 2 threads.
#[test]
fn whole_network_gradients() {
    let g = super::arch::small_cnn(2, 8, 8, 3, 5);
    let x = Tensor::new(vec![3, 2, 8, 8], distinct(3 * 2 * 64, 1.5, 60)).unwrap();
    let in_id = g.inputs[0];
    let out_id = g.outputs[0];
    let mut grads_by_threads = Vec::new();
    for threads in [1, 2] {
        let mut net = Net::new(g.clone(), threads).unwrap();
        let tape = net.forward(std::slice::from_ref(&x), Mode::Train).unwrap();
        let mut rng = Lcg(3);
        let r: Vec<f32> = (0..9).map(|_| rng.next()).collect();
        net.zero_grad();
        let gx = net.backward(&tape, vec![(out_id, r.clone())], &[in_id]).unwrap().remove(0).unwrap();
        let (mut checked, mut failures) = (Vec::new(), Vec::new());
        for j in (0..gx.len()).step_by(17) {
            let mut f = |v: f32| {
                let mut xi = x.clone();
                xi.data[j] = v;
                loss(&net, &[xi], &r, Mode::Train)
            };
            match agree(gx[j] as f64, &mut f, x.data[j], 1e-3) {
                Ok(c) => checked.push(c),
                Err(e) => failures.push(format!("x[{j}]: {e}")),
            }
        }
        for p in 0..net.params.len() {
            if !net.params[p].trainable() {
                continue;
            }
            let grad = net.params[p].grad.clone();
            for j in (0..grad.len()).step_by((grad.len() / 7).max(1)) {
                let x0 = net.params[p].value[j];
                let mut probe = net.clone();
                let mut f = |v: f32| {
                    probe.params[p].value[j] = v;
                    loss(&probe, std::slice::from_ref(&x), &r, Mode::Train)
                };
                match agree(grad[j] as f64, &mut f, x0, 1e-3) {
                    Ok(c) => checked.push(c),
                    Err(e) => failures.push(format!("{}[{j}]: {e}", net.params[p].name)),
                }
            }
        }
        assert_checked(&format!("whole network (threads {threads})"), &checked, &failures);
        grads_by_threads.push(net.params.iter().map(|p| p.grad.clone()).collect::<Vec<_>>());
    }
    for (a, b) in grads_by_threads[0].iter().flatten().zip(grads_by_threads[1].iter().flatten()) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "1 vs 2 threads: {a} vs {b}");
    }
}
