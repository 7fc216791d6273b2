//! Built-in architectures, built directly as IR graphs with seeded initialization.
//!
//! * `small-cnn`: the Fashion-MNIST student (two Conv+BN+ReLU+MaxPool stages, two dense layers).
//! * `mobilenet-v2[:WIDTH]`: MobileNetV2 (inverted residuals with linear bottlenecks, ReLU6,
//!   depthwise 3×3 convolutions).
//! * `mobilenet-v3-small[:WIDTH]`: MobileNetV3-small (inverted residuals with 3×3/5×5
//!   depthwise convolutions, squeeze-and-excitation with a hard sigmoid gate, HardSwish).
//!
//! `WIDTH` (default 1.0) multiplies every channel count (rounded to a multiple of 8, as in the
//! papers). The networks take the input size of the data: the down-sampling stride of the
//! ImageNet configuration (32) is reduced for small inputs (the largest power of two ≤ side/4,
//! e.g. 4 for 28×28, 8 for 32×32, 32 for 224×224) by running the stem, then the latest strided
//! blocks, with stride 1, so the last feature map keeps at least 4×4 pixels. Every op they use is
//! supported by the training engine, the ONNX export, the INT8 lowering and the runtime.

use super::data::Rng;
use crate::ir::{Activation, ConstData, Graph, Node, Op, TensorId, Window};

/// Names accepted by [`build`].
pub const ARCHS: &[&str] = &["small-cnn", "mobilenet-v2[:WIDTH]", "mobilenet-v3-small[:WIDTH]"];

/// Build a named architecture for inputs `[1, c, h, w]` and `classes` outputs. Names are
/// `small-cnn`, `mobilenet-v2[:WIDTH]` and `mobilenet-v3-small[:WIDTH]` (width multiplier,
/// default 1.0, in `(0, 4]`).
pub fn build(name: &str, c: usize, h: usize, w: usize, classes: usize, seed: u64) -> Result<Graph, String> {
    let (base, width) = match name.split_once(':') {
        Some((b, wm)) => {
            let v: f32 = wm.parse().map_err(|_| format!("architecture '{name}': width multiplier '{wm}' is not a number"))?;
            if !(v > 0.0 && v <= 4.0) {
                return Err(format!("architecture '{name}': width multiplier must be in (0, 4]"));
            }
            (b, Some(v))
        }
        None => (name, None),
    };
    if c == 0 || h == 0 || w == 0 || classes == 0 {
        return Err(format!("architecture '{name}': input [{c}, {h}, {w}] with {classes} classes is empty"));
    }
    match base {
        "small-cnn" if width.is_none() => {
            if h < 4 || w < 4 {
                return Err(format!("small-cnn needs inputs of at least 4×4 (got {h}×{w})"));
            }
            Ok(small_cnn(c, h, w, classes, seed))
        }
        "mobilenet-v2" => Ok(mobilenet_v2(c, h, w, classes, width.unwrap_or(1.0), seed)),
        "mobilenet-v3-small" => Ok(mobilenet_v3_small(c, h, w, classes, width.unwrap_or(1.0), seed)),
        "small-cnn" => Err("small-cnn takes no width multiplier".into()),
        o => Err(format!("unknown architecture '{o}' (known: {})", ARCHS.join(", "))),
    }
}

/// Round `c · width` to a multiple of 8, not below 8 and not more than 10% below `c · width`
/// (the `make_divisible` rule of the MobileNet papers).
pub fn scaled_channels(c: usize, width: f32) -> usize {
    let v = c as f32 * width;
    let mut r = (((v + 4.0) / 8.0).floor() as usize * 8).max(8);
    if (r as f32) < 0.9 * v {
        r += 8;
    }
    r
}

/// Which of the `n` strided layers (stem first) keep stride 2 for an input of `h × w`: the
/// total stride becomes the largest power of two ≤ min(h, w)/4 (at most 2ⁿ). The stem is the
/// first to lose its stride (small images keep full resolution in the cheap first layer), then
/// the latest strided blocks (the expensive expanded layers still run at reduced resolution).
fn kept_strides(h: usize, w: usize, n: usize) -> Vec<bool> {
    let side = h.min(w) / 4;
    let mut keep = 0;
    while keep < n && (1usize << (keep + 1)) <= side {
        keep += 1;
    }
    let mut kept = vec![false; n];
    if keep == n {
        kept.fill(true);
    } else {
        // Blocks 1..=keep keep their stride; the stem and the later blocks run with stride 1.
        kept[1..=keep.min(n - 1)].fill(true);
    }
    kept
}

/// Activation after a BatchNorm in the MobileNet builders.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nl {
    None,
    Relu,
    Relu6,
    HardSwish,
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

    /// `k×k` convolution (padding `k/2`, `group` groups) + BatchNorm + `nl`.
    fn conv_bn(&mut self, name: &str, o: usize, k: usize, stride: usize, group: usize, nl: Nl) {
        let c = self.shape[1];
        let fan_in = c / group * k * k;
        let w = self.init(o * fan_in, fan_in, nl != Nl::None);
        let wid = self.constant(format!("{name}.w"), vec![o, c / group, k, k], w);
        let bid = self.constant(format!("{name}.b"), vec![o], vec![0.0; o]);
        let p = k / 2;
        let win = Window { kernel: [k, k], stride: [stride, stride], pads: [p, p, p, p], dilation: [1, 1] };
        let oh = (self.shape[2] + 2 * p - k) / stride + 1;
        let ow = (self.shape[3] + 2 * p - k) / stride + 1;
        let s = vec![1, o, oh, ow];
        self.node(name, Op::Conv { window: win, group, act: Activation::None }, vec![wid, bid], s.clone());
        let ids: Vec<TensorId> = [("scale", 1.0), ("shift", 0.0), ("mean", 0.0), ("var", 1.0)]
            .iter()
            .map(|&(p, v)| self.constant(format!("{name}.bn.{p}"), vec![o], vec![v; o]))
            .collect();
        self.node(&format!("{name}.bn"), Op::BatchNorm { eps: 1e-5 }, ids, s.clone());
        self.nl(&format!("{name}.act"), nl);
    }

    fn nl(&mut self, name: &str, nl: Nl) {
        let s = self.shape.clone();
        match nl {
            Nl::None => {}
            Nl::Relu => self.node(name, Op::Act(Activation::Relu), vec![], s),
            Nl::Relu6 => self.node(name, Op::Act(Activation::Clip { min: 0.0, max: 6.0 }), vec![], s),
            Nl::HardSwish => self.node(name, Op::HardSwish, vec![], s),
        }
    }

    /// 1×1 convolution with bias and no BatchNorm (squeeze-and-excitation layers).
    fn conv1x1(&mut self, name: &str, o: usize, relu: bool) {
        let c = self.shape[1];
        let w = self.init(o * c, c, relu);
        let wid = self.constant(format!("{name}.w"), vec![o, c, 1, 1], w);
        let bid = self.constant(format!("{name}.b"), vec![o], vec![0.0; o]);
        let win = Window { kernel: [1, 1], stride: [1, 1], pads: [0; 4], dilation: [1, 1] };
        let act = if relu { Activation::Relu } else { Activation::None };
        let s = vec![1, o, self.shape[2], self.shape[3]];
        self.node(name, Op::Conv { window: win, group: 1, act }, vec![wid, bid], s);
    }

    /// Squeeze-and-excitation: `x · hardsigmoid(W₂·relu(W₁·gap(x)))`.
    fn se(&mut self, name: &str, squeeze: usize) {
        let (x, xs) = (self.last, self.shape.clone());
        let c = xs[1];
        self.node(&format!("{name}.pool"), Op::GlobalAvgPool, vec![], vec![1, c, 1, 1]);
        self.conv1x1(&format!("{name}.fc1"), squeeze, true);
        self.conv1x1(&format!("{name}.fc2"), c, false);
        self.node(&format!("{name}.gate"), Op::HardSigmoid { alpha: 1.0 / 6.0, beta: 0.5 }, vec![], vec![1, c, 1, 1]);
        let gate = self.last;
        self.last = x;
        self.node(&format!("{name}.scale"), Op::Mul { act: Activation::None }, vec![gate], xs);
    }

    /// Inverted residual: 1×1 expansion (skipped when `exp == c`), `k×k` depthwise, optional
    /// squeeze-and-excitation, linear 1×1 projection; identity shortcut when shapes agree.
    #[allow(clippy::too_many_arguments)]
    fn inverted_residual(&mut self, name: &str, exp: usize, out: usize, k: usize, stride: usize, se: Option<usize>, nl: Nl) {
        let (x, xs) = (self.last, self.shape.clone());
        if exp != xs[1] {
            self.conv_bn(&format!("{name}.expand"), exp, 1, 1, 1, nl);
        }
        self.conv_bn(&format!("{name}.dw"), exp, k, stride, exp, nl);
        if let Some(sq) = se {
            self.se(&format!("{name}.se"), sq);
        }
        self.conv_bn(&format!("{name}.project"), out, 1, 1, 1, Nl::None);
        if stride == 1 && xs[1] == out {
            let s = self.shape.clone();
            self.node(&format!("{name}.add"), Op::Add { act: Activation::None }, vec![x], s);
        }
    }

    fn flatten(&mut self) {
        let flat = self.shape[1] * self.shape[2] * self.shape[3];
        self.node("flatten", Op::Reshape, vec![], vec![1, flat]);
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

fn start(name: &str, c: usize, h: usize, w: usize, seed: u64) -> Builder {
    let mut g = Graph { name: name.into(), ..Default::default() };
    let x = g.add_tensor("x", vec![1, c, h, w], None);
    g.inputs = vec![x];
    Builder { g, rng: Rng::new(seed, 0x5eed), last: x, shape: vec![1, c, h, w] }
}

/// MobileNetV2 (Sandler et al. 2018) with width multiplier `width`: stem Conv3×3(32)+BN+ReLU6,
/// 17 inverted residual blocks (expansion t, channels c, repeats n, first stride s:
/// 1/16/1/1, 6/24/2/2, 6/32/3/2, 6/64/4/2, 6/96/3/1, 6/160/3/2, 6/320/1/1), Conv1×1(1280)+BN+
/// ReLU6, global average pooling, FC(classes). Strides adapt to the input size (see the
/// module documentation).
pub fn mobilenet_v2(c: usize, h: usize, w: usize, classes: usize, width: f32, seed: u64) -> Graph {
    const CFG: [(usize, usize, usize, usize); 7] =
        [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];
    let kept = kept_strides(h, w, 5);
    let mut next = 0;
    let mut stride = |s: usize| {
        if s == 2 {
            next += 1;
            if kept[next - 1] {
                2
            } else {
                1
            }
        } else {
            s
        }
    };
    let mut b = start(&format!("mobilenet-v2-{width}"), c, h, w, seed);
    let s0 = stride(2);
    b.conv_bn("stem", scaled_channels(32, width), 3, s0, 1, Nl::Relu6);
    for (i, &(t, ch, n, s)) in CFG.iter().enumerate() {
        let out = scaled_channels(ch, width);
        for r in 0..n {
            let st = if r == 0 { stride(s) } else { 1 };
            let exp = b.shape[1] * t;
            b.inverted_residual(&format!("block{i}.{r}"), exp, out, 3, st, None, Nl::Relu6);
        }
    }
    let last = if width > 1.0 { scaled_channels(1280, width) } else { 1280 };
    b.conv_bn("head", last, 1, 1, 1, Nl::Relu6);
    b.node("pool", Op::GlobalAvgPool, vec![], vec![1, last, 1, 1]);
    b.flatten();
    b.dense("classifier", classes, false);
    b.g.outputs = vec![b.last];
    b.g
}

/// MobileNetV3-small (Howard et al. 2019) with width multiplier `width`: stem Conv3×3(16)+BN+
/// HardSwish, 11 inverted residual blocks (kernel, expansion, output, SE, non-linearity,
/// stride as in table 2 of the paper), Conv1×1(576)+BN+HardSwish, global average pooling,
/// FC(1024)+HardSwish, FC(classes). SE squeezes to a quarter of the expanded channels (rounded
/// to 8) with a ReLU and gates with a hard sigmoid. Strides adapt to the input size (see the
/// module documentation).
pub fn mobilenet_v3_small(c: usize, h: usize, w: usize, classes: usize, width: f32, seed: u64) -> Graph {
    // (kernel, expansion, out, se, hardswish, stride)
    const CFG: [(usize, usize, usize, bool, bool, usize); 11] = [
        (3, 16, 16, true, false, 2),
        (3, 72, 24, false, false, 2),
        (3, 88, 24, false, false, 1),
        (5, 96, 40, true, true, 2),
        (5, 240, 40, true, true, 1),
        (5, 240, 40, true, true, 1),
        (5, 120, 48, true, true, 1),
        (5, 144, 48, true, true, 1),
        (5, 288, 96, true, true, 2),
        (5, 576, 96, true, true, 1),
        (5, 576, 96, true, true, 1),
    ];
    let kept = kept_strides(h, w, 5);
    let mut next = 0;
    let mut stride = |s: usize| {
        if s == 2 {
            next += 1;
            if kept[next - 1] {
                2
            } else {
                1
            }
        } else {
            s
        }
    };
    let mut b = start(&format!("mobilenet-v3-small-{width}"), c, h, w, seed);
    let s0 = stride(2);
    b.conv_bn("stem", scaled_channels(16, width), 3, s0, 1, Nl::HardSwish);
    for (i, &(k, e, o, se, hs, s)) in CFG.iter().enumerate() {
        let exp = scaled_channels(e, width);
        let out = scaled_channels(o, width);
        let st = stride(s);
        let nl = if hs { Nl::HardSwish } else { Nl::Relu };
        b.inverted_residual(&format!("block{i}"), exp, out, k, st, se.then(|| scaled_channels(exp / 4, 1.0)), nl);
    }
    let last = scaled_channels(576, width);
    b.conv_bn("head", last, 1, 1, 1, Nl::HardSwish);
    b.node("pool", Op::GlobalAvgPool, vec![], vec![1, last, 1, 1]);
    b.flatten();
    let hidden = scaled_channels(1024, width);
    b.dense("fc", hidden, false);
    b.node("fc.act", Op::HardSwish, vec![], vec![1, hidden]);
    b.dense("classifier", classes, false);
    b.g.outputs = vec![b.last];
    b.g
}
