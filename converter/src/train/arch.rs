//! Built-in architectures, built directly as IR graphs with seeded initialization.

use super::data::Rng;
use crate::ir::{Activation, ConstData, Graph, Node, Op, TensorId, Window};

/// Names accepted by [`build`].
pub const ARCHS: &[&str] = &["small-cnn"];

/// Build a named architecture for inputs `[1, c, h, w]` and `classes` outputs.
pub fn build(name: &str, c: usize, h: usize, w: usize, classes: usize, seed: u64) -> Result<Graph, String> {
    match name {
        "small-cnn" => Ok(small_cnn(c, h, w, classes, seed)),
        o => Err(format!("unknown architecture '{o}' (known: {})", ARCHS.join(", "))),
    }
}

struct Builder {
    g: Graph,
    rng: Rng,
    last: TensorId,
    shape: Vec<usize>,
}

impl Builder {
    fn constant(&mut self, name: String, shape: Vec<usize>, data: Vec<f32>) -> TensorId {
        self.g.add_tensor(name, shape, Some(ConstData::F32(data)))
    }

    /// He-uniform weights (bound `sqrt(6 / fan_in)`, or `1/sqrt(fan_in)` for the last layer).
    fn init(&mut self, n: usize, fan_in: usize, relu: bool) -> Vec<f32> {
        let bound = if relu { (6.0 / fan_in as f32).sqrt() } else { 1.0 / (fan_in as f32).sqrt() };
        (0..n).map(|_| (self.rng.next_f32() * 2.0 - 1.0) * bound).collect()
    }

    fn node(&mut self, name: &str, op: Op, mut inputs: Vec<TensorId>, out_shape: Vec<usize>) {
        inputs.insert(0, self.last);
        let out = self.g.add_tensor(format!("{name}.out"), out_shape.clone(), None);
        self.g.nodes.push(Node { name: name.to_string(), op, inputs, outputs: vec![out] });
        self.last = out;
        self.shape = out_shape;
    }

    fn conv_bn_relu(&mut self, name: &str, o: usize) {
        let c = self.shape[1];
        let w = self.init(o * c * 9, c * 9, true);
        let wid = self.constant(format!("{name}.w"), vec![o, c, 3, 3], w);
        let bid = self.constant(format!("{name}.b"), vec![o], vec![0.0; o]);
        let win = Window { kernel: [3, 3], stride: [1, 1], pads: [1, 1, 1, 1], dilation: [1, 1] };
        let s = vec![1, o, self.shape[2], self.shape[3]];
        self.node(name, Op::Conv { window: win, group: 1, act: Activation::None }, vec![wid, bid], s.clone());
        let ids: Vec<TensorId> = [("scale", 1.0), ("shift", 0.0), ("mean", 0.0), ("var", 1.0)]
            .iter()
            .map(|&(p, v)| self.constant(format!("{name}.bn.{p}"), vec![o], vec![v; o]))
            .collect();
        self.node(&format!("{name}.bn"), Op::BatchNorm { eps: 1e-5 }, ids, s.clone());
        self.node(&format!("{name}.relu"), Op::Act(Activation::Relu), vec![], s);
    }

    fn maxpool2(&mut self, name: &str) {
        let win = Window { kernel: [2, 2], stride: [2, 2], pads: [0; 4], dilation: [1, 1] };
        let s = vec![1, self.shape[1], self.shape[2] / 2, self.shape[3] / 2];
        self.node(name, Op::MaxPool { window: win, ceil_mode: false }, vec![], s);
    }

    fn dense(&mut self, name: &str, n: usize, relu: bool) {
        let k = self.shape[1];
        let w = self.init(n * k, k, relu);
        let wid = self.constant(format!("{name}.w"), vec![n, k], w);
        let bid = self.constant(format!("{name}.b"), vec![n], vec![0.0; n]);
        let act = if relu { Activation::Relu } else { Activation::None };
        self.node(name, Op::Dense { act }, vec![wid, bid], vec![1, n]);
    }
}

/// The Fashion-MNIST student: Conv3x3(c→16)+BN+ReLU, MaxPool2, Conv3x3(16→32)+BN+ReLU,
/// MaxPool2, Flatten, FC(32·h/4·w/4 → 64)+ReLU, FC(64 → classes).
pub fn small_cnn(c: usize, h: usize, w: usize, classes: usize, seed: u64) -> Graph {
    let mut g = Graph { name: "small-cnn".into(), ..Default::default() };
    let x = g.add_tensor("x", vec![1, c, h, w], None);
    g.inputs = vec![x];
    let mut b = Builder { g, rng: Rng::new(seed, 0x5eed), last: x, shape: vec![1, c, h, w] };
    b.conv_bn_relu("conv0", 16);
    b.maxpool2("pool0");
    b.conv_bn_relu("conv1", 32);
    b.maxpool2("pool1");
    let flat = b.shape[1] * b.shape[2] * b.shape[3];
    b.node("flatten", Op::Reshape, vec![], vec![1, flat]);
    b.dense("fc0", 64, true);
    b.dense("fc1", classes, false);
    b.g.outputs = vec![b.last];
    b.g
}
