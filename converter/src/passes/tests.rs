//! Each pass on small hand-built graphs: outputs before/after must agree to 1e-5.

use super::*;
use crate::fp32::Tensor;
use crate::ir::Window;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

struct B {
    g: Graph,
    rng: Rng,
}

impl B {
    fn new(shape: Vec<usize>) -> (B, TensorId) {
        let mut g = Graph { name: "test".into(), ..Default::default() };
        let x = g.add_tensor("x", shape, None);
        g.inputs.push(x);
        (B { g, rng: Rng(42) }, x)
    }
    fn c(&mut self, shape: Vec<usize>) -> TensorId {
        let n = shape.iter().product();
        let d = self.rng.vec(n);
        self.cd(shape, d)
    }
    fn cd(&mut self, shape: Vec<usize>, d: Vec<f32>) -> TensorId {
        let name = format!("c{}", self.g.tensors.len());
        self.g.add_tensor(name, shape, Some(ConstData::F32(d)))
    }
    fn pos(&mut self, shape: Vec<usize>) -> TensorId {
        let n = shape.iter().product();
        let d = self.rng.vec(n).iter().map(|v| v.abs() + 0.5).collect();
        self.cd(shape, d)
    }
    fn op(&mut self, op: Op, inputs: Vec<TensorId>) -> TensorId {
        let shapes: Vec<&[usize]> = inputs.iter().map(|&i| self.g.tensors[i].shape.as_slice()).collect();
        let s = crate::fp32::shape::infer_output_shape(&op, &shapes, None).unwrap();
        self.op_shaped(op, inputs, s)
    }
    fn op_shaped(&mut self, op: Op, inputs: Vec<TensorId>, shape: Vec<usize>) -> TensorId {
        let name = format!("t{}", self.g.tensors.len());
        let o = self.g.add_tensor(name.clone(), shape, None);
        self.g.nodes.push(Node { name: format!("n_{name}"), op, inputs, outputs: vec![o] });
        o
    }
    fn finish(mut self, outs: Vec<TensorId>) -> Graph {
        self.g.outputs = outs;
        self.g
    }
}

fn win3() -> Window {
    Window { kernel: [3, 3], stride: [1, 1], pads: [1, 1, 1, 1], dilation: [1, 1] }
}

fn inputs(g: &Graph, batch: usize) -> Vec<Tensor> {
    let mut r = Rng(7);
    g.inputs
        .iter()
        .map(|&i| {
            let mut s = g.tensors[i].shape.clone();
            s[0] = batch;
            let n = s.iter().product();
            Tensor::new(s, r.vec(n).iter().map(|v| v * 4.0).collect()).unwrap()
        })
        .collect()
}

/// Run `pass` on a copy of `g`; outputs must agree; returns the transformed graph.
fn same_outputs(g: &Graph, pass: impl Fn(&mut Graph) -> Result<bool, PassError>) -> Graph {
    let mut h = g.clone();
    assert!(pass(&mut h).unwrap(), "pass made no change");
    check_shapes(&h).unwrap();
    for batch in [1, 3] {
        let ins = inputs(g, batch);
        let a = fp32::run(g, &ins).unwrap();
        let b = fp32::run(&h, &ins).unwrap();
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.shape, y.shape);
            for (p, q) in x.data.iter().zip(&y.data) {
                assert!((p - q).abs() <= 1e-5 * p.abs().max(1.0), "{p} vs {q}");
            }
        }
    }
    h
}

fn count(g: &Graph, f: impl Fn(&Op) -> bool) -> usize {
    g.nodes.iter().filter(|n| f(&n.op)).count()
}

fn bn_params(b: &mut B, c: usize) -> Vec<TensorId> {
    vec![b.c(vec![c]), b.c(vec![c]), b.c(vec![c]), b.pos(vec![c])]
}

#[test]
fn batchnorm_into_conv_dense_convtranspose() {
    let (mut b, x) = B::new(vec![1, 3, 6, 6]);
    let w = b.c(vec![4, 3, 3, 3]);
    let cv = b.op(Op::Conv { window: win3(), group: 1, act: Activation::None }, vec![x, w]);
    let mut ins = vec![cv];
    ins.extend(bn_params(&mut b, 4));
    let bn = b.op(Op::BatchNorm { eps: 1e-5 }, ins);
    // grouped transposed conv with bias, then BN
    let wt = b.c(vec![4, 3, 2, 2]);
    let bt = b.c(vec![6]);
    let tw = Window { kernel: [2, 2], stride: [2, 2], pads: [0, 0, 0, 0], dilation: [1, 1] };
    let ct = b.op(crate::ops::conv_transpose::op(tw, [0, 0], 2, Activation::None), vec![bn, wt, bt]);
    let mut ins = vec![ct];
    ins.extend(bn_params(&mut b, 6));
    let bn2 = b.op(Op::BatchNorm { eps: 1e-3 }, ins);
    let f = b.op_shaped(Op::Reshape, vec![bn2], vec![1, 6 * 12 * 12]);
    let dw = b.c(vec![5, 864]);
    let d = b.op(Op::Dense { act: Activation::None }, vec![f, dw]);
    let mut ins = vec![d];
    ins.extend(bn_params(&mut b, 5));
    let bn3 = b.op(Op::BatchNorm { eps: 1e-5 }, ins);
    let g = b.finish(vec![bn3]);
    let h = same_outputs(&g, fold_batchnorm);
    assert_eq!(count(&h, |o| matches!(o, Op::BatchNorm { .. })), 0);
}

#[test]
fn batchnorm_kept_when_conv_output_shared() {
    let (mut b, x) = B::new(vec![1, 2, 4, 4]);
    let w = b.c(vec![2, 2, 3, 3]);
    let cv = b.op(Op::Conv { window: win3(), group: 1, act: Activation::None }, vec![x, w]);
    let mut ins = vec![cv];
    ins.extend(bn_params(&mut b, 2));
    let bn = b.op(Op::BatchNorm { eps: 1e-5 }, ins);
    let s = b.op(Op::Add { act: Activation::None }, vec![bn, cv]);
    let mut g = b.finish(vec![s]);
    assert!(!fold_batchnorm(&mut g).unwrap());
}

#[test]
fn bias_and_scale_folding() {
    let (mut b, x) = B::new(vec![1, 3, 5, 5]);
    let w = b.c(vec![4, 3, 3, 3]);
    let cv = b.op(Op::Conv { window: win3(), group: 1, act: Activation::None }, vec![x, w]);
    let bias = b.c(vec![1, 4, 1, 1]);
    let a = b.op(Op::Add { act: Activation::Relu }, vec![bias, cv]);
    let w2 = b.c(vec![4, 1, 3, 3]);
    let dwc = b.op(Op::Conv { window: win3(), group: 4, act: Activation::None }, vec![a, w2]);
    let sc = b.pos(vec![4, 1, 1]);
    let m = b.op(Op::Mul { act: Activation::None }, vec![dwc, sc]);
    let sub = b.c(vec![1]);
    let s = b.op(Op::Sub, vec![m, sub]);
    let f = b.op_shaped(Op::Reshape, vec![s], vec![1, 100]);
    let dw = b.c(vec![7, 100]);
    let d = b.op(Op::Dense { act: Activation::None }, vec![f, dw]);
    let dv = b.pos(vec![7]);
    let q = b.op(Op::Div, vec![d, dv]);
    let g = b.finish(vec![q]);
    let h = same_outputs(&g, fold_affine);
    assert_eq!(h.nodes.len(), 4, "{h}");
    assert_eq!(h.nodes[0].op, Op::Conv { window: win3(), group: 1, act: Activation::Relu });
}

#[test]
fn activation_fusion() {
    let (mut b, x) = B::new(vec![1, 2, 4, 4]);
    let w = b.c(vec![3, 2, 3, 3]);
    let cv = b.op(Op::Conv { window: win3(), group: 1, act: Activation::None }, vec![x, w]);
    let r = b.op(Op::Act(Activation::Relu), vec![cv]);
    let k = b.c(vec![1, 3, 1, 1]);
    let a = b.op(Op::Add { act: Activation::None }, vec![r, k]);
    let c6 = b.op(Op::Act(Activation::Clip { min: -0.5, max: 0.5 }), vec![a]);
    // a Relu after a tensor with two consumers stays
    let m = b.op(Op::Mul { act: Activation::None }, vec![c6, c6]);
    let s = b.op(Op::Sub, vec![m, c6]);
    let r2 = b.op(Op::Act(Activation::Relu), vec![s]);
    let g = b.finish(vec![r2]);
    let h = same_outputs(&g, fuse_activations);
    assert_eq!(count(&h, |o| matches!(o, Op::Act(_))), 1);
}

#[test]
fn hardswish_patterns() {
    for variant in 0..4 {
        let (mut b, x) = B::new(vec![1, 2, 3, 3]);
        let w = b.c(vec![2, 2, 3, 3]);
        let y = b.op(Op::Conv { window: win3(), group: 1, act: Activation::None }, vec![x, w]);
        let three = b.cd(vec![1], vec![3.0]);
        let six = b.cd(vec![], vec![6.0]);
        let sixth = b.cd(vec![1], vec![1.0 / 6.0]);
        let relu6 = Activation::Clip { min: 0.0, max: 6.0 };
        let out = match variant {
            0 => {
                let a = b.op(Op::Add { act: Activation::None }, vec![y, three]);
                let c = b.op(Op::Act(relu6), vec![a]);
                let m = b.op(Op::Mul { act: Activation::None }, vec![y, c]);
                b.op(Op::Div, vec![m, six])
            }
            1 => {
                let a = b.op(Op::Add { act: relu6 }, vec![three, y]);
                let d = b.op(Op::Div, vec![a, six]);
                b.op(Op::Mul { act: Activation::None }, vec![d, y])
            }
            2 => {
                let a = b.op(Op::Add { act: Activation::None }, vec![y, three]);
                let c = b.op(Op::Act(relu6), vec![a]);
                let m = b.op(Op::Mul { act: Activation::None }, vec![c, y]);
                b.op(Op::Mul { act: Activation::None }, vec![sixth, m])
            }
            _ => {
                let h = b.op(Op::HardSigmoid { alpha: 1.0 / 6.0, beta: 0.5 }, vec![y]);
                b.op(Op::Mul { act: Activation::None }, vec![y, h])
            }
        };
        let g = b.finish(vec![out]);
        let h = same_outputs(&g, fuse_hardswish);
        assert_eq!(h.nodes.len(), 2, "variant {variant}: {h}");
        assert_eq!(h.nodes[1].op, Op::HardSwish);
    }
}

#[test]
fn squeeze_excite_is_not_hardswish() {
    let (mut b, x) = B::new(vec![1, 2, 3, 3]);
    let p = b.op(Op::GlobalAvgPool, vec![x]);
    let h = b.op(Op::HardSigmoid { alpha: 1.0 / 6.0, beta: 0.5 }, vec![p]);
    let m = b.op(Op::Mul { act: Activation::None }, vec![x, h]);
    let mut g = b.finish(vec![m]);
    assert!(!fuse_hardswish(&mut g).unwrap());
}

#[test]
fn identities_constants_dead_nodes() {
    let (mut b, x) = B::new(vec![1, 4]);
    let i1 = b.op(Op::Identity, vec![x]);
    // constant subgraph: reshape(c) + c2
    let c = b.c(vec![4]);
    let r = b.op_shaped(Op::Reshape, vec![c], vec![1, 4]);
    let c2 = b.c(vec![1, 4]);
    let s = b.op(Op::Add { act: Activation::None }, vec![r, c2]);
    let a = b.op(Op::Add { act: Activation::None }, vec![i1, s]);
    let _dead = b.op(Op::Sigmoid, vec![a]);
    let out = b.op(Op::Identity, vec![a]);
    let g = b.finish(vec![out]);
    let h = same_outputs(&g, remove_identities);
    assert_eq!(count(&h, |o| *o == Op::Identity), 0);
    assert_eq!(h.tensors[h.outputs[0]].name, g.tensors[g.outputs[0]].name, "output name kept");
    let h = same_outputs(&h, fold_constants);
    assert_eq!(h.nodes.len(), 2);
    let h = same_outputs(&h, remove_dead_nodes);
    assert_eq!(h.nodes.len(), 1);
}

#[test]
fn optimize_full_and_shape_check() {
    let (mut b, x) = B::new(vec![1, 3, 8, 8]);
    let w = b.c(vec![8, 3, 3, 3]);
    let cv = b.op(Op::Conv { window: win3(), group: 1, act: Activation::None }, vec![x, w]);
    let bias = b.c(vec![1, 8, 1, 1]);
    let a = b.op(Op::Add { act: Activation::None }, vec![cv, bias]);
    let i = b.op(Op::Identity, vec![a]);
    let mut ins = vec![i];
    ins.extend(bn_params(&mut b, 8));
    let bn = b.op(Op::BatchNorm { eps: 1e-5 }, ins);
    let r = b.op(Op::Act(Activation::Relu), vec![bn]);
    let mp =
        b.op(Op::MaxPool { window: Window { kernel: [2, 2], stride: [2, 2], pads: [0; 4], dilation: [1, 1] }, ceil_mode: false }, vec![r]);
    let f = b.op_shaped(Op::Reshape, vec![mp], vec![1, 128]);
    let dw = b.c(vec![10, 128]);
    let d = b.op(Op::Dense { act: Activation::None }, vec![f, dw]);
    let db = b.c(vec![10]);
    let o = b.op(Op::Add { act: Activation::None }, vec![d, db]);
    let g = b.finish(vec![o]);
    let h = same_outputs(&g, |g| optimize(g).map(|_| true));
    let ops: Vec<&str> = h.nodes.iter().map(|n| n.op.name()).collect();
    assert_eq!(ops, ["Conv", "MaxPool", "Reshape", "Dense"]);
    assert!(matches!(h.nodes[0].op, Op::Conv { act: Activation::Relu, .. }));
    // compaction dropped the dead constants
    assert!(h.tensors.len() < g.tensors.len());

    // a wrong declared shape is caught
    let mut bad = g.clone();
    let t = bad.nodes[0].outputs[0];
    bad.tensors[t].shape = vec![1, 8, 7, 8];
    let e = check_shapes(&bad).unwrap_err().to_string();
    assert!(e.contains("declared [1, 8, 7, 8]"), "{e}");
    // reading before computing is caught
    let mut bad = g.clone();
    bad.nodes.swap(0, 1);
    assert!(check_shapes(&bad).is_err());
}
