//! Lowering of the FP32 IR (NCHW) to an int8 `.tmf` (NHWC) through the runtime's writer.

use super::observer::{qparams_for_range, quantize_weights_per_channel, Observer};
use super::Calibration;
use crate::ir::{Activation, Graph, Op, TensorId};
use std::fmt;
use temper_kernels::QParams;
use temper_runtime::writer::{clamp_range, Builder, QWeights, Window};

/// Raw-pixel normalization folded into the input quantization.
#[derive(Clone, Debug, PartialEq)]
pub struct PixelNorm {
    /// Usually 1/255.
    pub pixel_scale: f32,
    /// Per-channel mean.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation.
    pub std: Vec<f32>,
}

/// Options of the lowering.
#[derive(Clone, Debug)]
pub struct LowerOptions {
    /// Observer choosing activation ranges.
    pub observer: Observer,
    /// Correct the expected output shift caused by weight rounding (needs channel means).
    pub bias_correction: bool,
    /// Input normalization to fold (enables raw u8 input on the device).
    pub pixel_norm: Option<PixelNorm>,
    /// Metadata to store.
    pub metadata: Vec<(String, String)>,
    /// Also expose every intermediate activation as a graph output (per-layer error analysis).
    pub expose_all: bool,
}

impl Default for LowerOptions {
    fn default() -> Self {
        LowerOptions { observer: Observer::MinMax, bias_correction: true, pixel_norm: None, metadata: Vec::new(), expose_all: false }
    }
}

/// A graph that cannot be quantized or lowered.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantError {
    /// Node name (or tensor name) at fault.
    pub node: String,
    /// Op type.
    pub op: String,
    /// What is wrong.
    pub msg: String,
}

impl fmt::Display for QuantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot quantize node '{}' ({}): {}", self.node, self.op, self.msg)
    }
}

impl std::error::Error for QuantError {}

/// How an IR activation is laid out in the runtime.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Lay {
    /// IR 4-D NCHW stored as NHWC.
    Nhwc,
    /// Same element order as the IR.
    Plain,
    /// IR `[N, C·H·W]` stored in `H, W, C` order (a flattened NHWC tensor).
    FlatHwc { c: usize, h: usize, w: usize },
}

/// One lowered activation: its runtime id, layout, and the IR tensor it represents.
#[derive(Clone, Copy, Debug)]
struct Act {
    id: u32,
    lay: Lay,
}

/// `(c, h, w)` sizes of a tensor stored in `H, W, C` order.
pub type Chw = (usize, usize, usize);

/// The mapping from the output of the lowering to IR tensors (for per-layer analysis).
#[derive(Clone, Debug, Default)]
pub struct Lowered {
    /// The `.tmf` bytes.
    pub bytes: Vec<u8>,
    /// For each exposed graph output of the file after the real outputs, in order: the IR tensor
    /// and, when the runtime stores it in `H, W, C` order instead of the IR's `C, H, W`, the
    /// `(c, h, w)` sizes — empty unless `expose_all`.
    pub exposed: Vec<(TensorId, Option<Chw>)>,
}

/// The lowered output of an op module (see [`crate::ops::OpDef::lower`]): its runtime id and
/// layout.
pub(crate) enum LowerOut {
    /// A 4-D IR tensor stored NHWC.
    Nhwc(u32),
    /// A tensor stored in the IR's element order.
    Plain(u32),
}

/// What an op module's lowering may use: the writer, the node's name, its lowered inputs and
/// its output's name and IR shape.
pub(crate) struct LowerCx<'a> {
    /// The runtime writer.
    pub b: &'a mut Builder,
    /// Node name.
    pub name: &'a str,
    inputs: Vec<Option<Act>>,
    out_name: &'a str,
    out_shape: &'a [usize],
    out_q: QParams,
    consts: Vec<Option<(&'a [usize], &'a [f32])>>,
    means: Option<&'a [f64]>,
}

impl LowerCx<'_> {
    /// Runtime id of input `i` when it is a lowered 4-D tensor stored NHWC.
    pub(crate) fn input_nhwc(&self, i: usize) -> Option<u32> {
        self.inputs.get(i).copied().flatten().filter(|a| a.lay == Lay::Nhwc).map(|a| a.id)
    }
    /// Runtime id of input `i` when it is a lowered tensor stored in the IR's element order.
    pub(crate) fn input_plain(&self, i: usize) -> Option<u32> {
        self.inputs.get(i).copied().flatten().filter(|a| a.lay == Lay::Plain).map(|a| a.id)
    }
    /// Number of node inputs.
    pub(crate) fn num_inputs(&self) -> usize {
        self.inputs.len()
    }
    /// Rank of the node's output in the IR.
    pub(crate) fn out_rank(&self) -> usize {
        self.out_shape.len()
    }
    /// The output's quantization from calibration (for ops that requantize).
    pub(crate) fn out_qparams(&self) -> QParams {
        self.out_q
    }
    /// Input `i` when it is an f32 constant (weights, bias): its IR shape and values.
    pub(crate) fn const_input(&self, i: usize) -> Option<(&[usize], &[f32])> {
        self.consts.get(i).copied().flatten()
    }
    /// Calibration mean of every channel of input 0 when bias correction is on.
    pub(crate) fn input_means(&self) -> Option<&[f64]> {
        self.means
    }
    /// Quantization of a lowered tensor.
    pub(crate) fn qparams(&self, id: u32) -> QParams {
        self.b.qparams(id)
    }
    /// Declare the node's output as an NHWC activation quantized with `q`.
    pub(crate) fn new_nhwc(&mut self, q: QParams) -> u32 {
        self.b.activation(self.out_name, &nhwc_dims(self.out_shape), q)
    }
    /// Declare the node's output as an activation in the IR's element order, quantized with `q`.
    pub(crate) fn new_plain(&mut self, q: QParams) -> u32 {
        self.b.activation(self.out_name, self.out_shape, q)
    }
}

fn nhwc_dims(s: &[usize]) -> Vec<usize> {
    if s.len() == 4 {
        vec![s[0], s[2], s[3], s[1]]
    } else {
        s.to_vec()
    }
}

/// Lower a calibrated FP32 graph to a `.tmf`.
pub fn lower(g: &Graph, cal: &Calibration, opts: &LowerOptions) -> Result<Lowered, QuantError> {
    lower_with(g, cal, opts, None)
}

/// Ops appended after the graph by [`lower_with`]: given the writer and the runtime ids of the
/// graph outputs (in order), adds ops and returns the ids that become the file's outputs.
pub type Tail<'a> = &'a mut dyn FnMut(&mut Builder, &[u32]) -> Result<Vec<u32>, String>;

/// [`lower`], with `tail` (when given) appending ops after the graph (e.g. a detection
/// post-process over the head outputs) and choosing the file's outputs.
pub fn lower_with(g: &Graph, cal: &Calibration, opts: &LowerOptions, tail: Option<Tail<'_>>) -> Result<Lowered, QuantError> {
    let mut b = Builder::new(&g.name);
    let mut acts: Vec<Option<Act>> = vec![None; g.tensors.len()];
    let mut exposed = Vec::new();
    let qp = |t: TensorId| -> QParams {
        let (lo, hi) = cal.stats.get(t).map(|s| s.range(opts.observer)).unwrap_or((0.0, 0.0));
        qparams_for_range(lo, hi)
    };
    for &i in &g.inputs {
        let t = &g.tensors[i];
        let lay = if t.shape.len() == 4 { Lay::Nhwc } else { Lay::Plain };
        let id = b.activation(&t.name, &nhwc_dims(&t.shape), qp(i));
        match (&opts.pixel_norm, lay) {
            (Some(pn), Lay::Nhwc) => b.pixel_input(id, pn.pixel_scale, &pn.mean, &pn.std),
            _ => b.input(id),
        }
        acts[i] = Some(Act { id, lay });
    }
    for node in &g.nodes {
        let e = |msg: String| QuantError { node: node.name.clone(), op: node.op.name().to_string(), msg };
        let get = |acts: &[Option<Act>], t: TensorId| -> Result<Act, QuantError> {
            acts[t].ok_or_else(|| {
                e(format!(
                    "input '{}' is a constant or was not lowered (constant operands are not supported by this op in int8)",
                    g.tensors[t].name
                ))
            })
        };
        let out = node.outputs[0];
        let oshape = g.tensors[out].shape.clone();
        let x = get(&acts, node.inputs[0])?;
        let xq = b.qparams(x.id);
        let name = node.name.as_str();
        let clamp_for = |act: Activation, q: QParams| match act {
            Activation::None => (-128, 127),
            Activation::Relu => clamp_range(Some(0.0), None, q),
            Activation::Clip { min, max } => clamp_range(Some(min), Some(max), q),
        };
        let new_act = |b: &mut Builder, q: QParams| b.activation(&g.tensors[out].name, &nhwc_dims(&oshape), q);
        let result: Act = match &node.op {
            Op::Conv { window, group, act } => {
                if x.lay != Lay::Nhwc {
                    return Err(e("convolution input must be 4-D".into()));
                }
                let w = g.const_f32(node.inputs[1]).ok_or_else(|| e("weights must be constant".into()))?;
                let ws = &g.tensors[node.inputs[1]].shape;
                let (o, cg, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
                // [O][Cg][KH][KW] → [O][KH][KW][Cg]
                let mut wt = vec![0f32; w.len()];
                for oc in 0..o {
                    for c in 0..cg {
                        for y in 0..kh {
                            for xx in 0..kw {
                                wt[((oc * kh + y) * kw + xx) * cg + c] = w[((oc * cg + c) * kh + y) * kw + xx];
                            }
                        }
                    }
                }
                let (q, scales) = quantize_weights_per_channel(&wt, o);
                let mut bias_f: Vec<f64> = match node.inputs.get(2).and_then(|&t| g.const_f32(t)) {
                    Some(bv) => bv.iter().map(|&v| v as f64).collect(),
                    None => vec![0.0; o],
                };
                if opts.bias_correction {
                    if let Some(means) = cal.channel_means.get(node.inputs[0]).filter(|m| m.len() == cg * group) {
                        let k = kh * kw * cg;
                        for oc in 0..o {
                            let grp = oc / (o / group);
                            let mut d = 0.0;
                            for t in 0..kh * kw {
                                for c in 0..cg {
                                    let idx = oc * k + t * cg + c;
                                    d += (wt[idx] as f64 - q[idx] as f64 * scales[oc] as f64) * means[grp * cg + c];
                                }
                            }
                            bias_f[oc] += d;
                        }
                    }
                }
                let bias: Vec<i32> = bias_f
                    .iter()
                    .enumerate()
                    .map(|(c, &v)| (v / (xq.scale as f64 * scales[c] as f64)).round().clamp(-2e9, 2e9) as i32)
                    .collect();
                let yq = qp(out);
                let y = new_act(&mut b, yq);
                let win = Window { kernel: window.kernel, stride: window.stride, dilation: window.dilation, pads: window.pads };
                b.conv2d(name, x.id, y, win, *group, QWeights { data: &q, scales: &scales, bias: &bias }, clamp_for(*act, yq))
                    .map_err(|er| e(er.0))?;
                Act { id: y, lay: Lay::Nhwc }
            }
            Op::Dense { act } => {
                let w = g.const_f32(node.inputs[1]).ok_or_else(|| e("weights must be constant".into()))?;
                let ws = &g.tensors[node.inputs[1]].shape;
                let (n, k) = (ws[0], ws[1]);
                let mut wt = w.to_vec();
                let mut means: Option<Vec<f64>> = cal.channel_means.get(node.inputs[0]).filter(|m| m.len() == k).cloned();
                match x.lay {
                    Lay::FlatHwc { c, h, w: ww } => {
                        // Columns in (c, h, w) order → (h, w, c) order of the runtime tensor.
                        for r in 0..n {
                            for cc in 0..c {
                                for hh in 0..h {
                                    for xx in 0..ww {
                                        wt[r * k + (hh * ww + xx) * c + cc] = w[r * k + (cc * h + hh) * ww + xx];
                                    }
                                }
                            }
                        }
                        if let Some(m) = means.as_mut() {
                            let old = m.clone();
                            for cc in 0..c {
                                for hh in 0..h {
                                    for xx in 0..ww {
                                        m[(hh * ww + xx) * c + cc] = old[(cc * h + hh) * ww + xx];
                                    }
                                }
                            }
                        }
                    }
                    Lay::Plain => {}
                    Lay::Nhwc => return Err(e("dense input must be 2-D (flatten first)".into())),
                }
                let (q, scales) = quantize_weights_per_channel(&wt, n);
                let mut bias_f: Vec<f64> = match node.inputs.get(2).and_then(|&t| g.const_f32(t)) {
                    Some(bv) => bv.iter().map(|&v| v as f64).collect(),
                    None => vec![0.0; n],
                };
                if opts.bias_correction {
                    if let Some(m) = &means {
                        for r in 0..n {
                            let d: f64 = (0..k).map(|j| (wt[r * k + j] as f64 - q[r * k + j] as f64 * scales[r] as f64) * m[j]).sum();
                            bias_f[r] += d;
                        }
                    }
                }
                let bias: Vec<i32> = bias_f
                    .iter()
                    .enumerate()
                    .map(|(c, &v)| (v / (xq.scale as f64 * scales[c] as f64)).round().clamp(-2e9, 2e9) as i32)
                    .collect();
                let yq = qp(out);
                let y = b.activation(&g.tensors[out].name, &oshape, yq);
                b.fully_connected(name, x.id, y, QWeights { data: &q, scales: &scales, bias: &bias }, clamp_for(*act, yq))
                    .map_err(|er| e(er.0))?;
                Act { id: y, lay: Lay::Plain }
            }
            Op::MaxPool { window, .. } => {
                if x.lay != Lay::Nhwc {
                    return Err(e("pooling input must be 4-D".into()));
                }
                let y = new_act(&mut b, xq);
                b.max_pool(
                    name,
                    x.id,
                    y,
                    Window { kernel: window.kernel, stride: window.stride, dilation: [1, 1], pads: window.pads },
                    (-128, 127),
                );
                Act { id: y, lay: Lay::Nhwc }
            }
            Op::AvgPool { window, count_include_pad, .. } => {
                if x.lay != Lay::Nhwc {
                    return Err(e("pooling input must be 4-D".into()));
                }
                let yq = qp(out);
                let y = new_act(&mut b, yq);
                let win = Window { kernel: window.kernel, stride: window.stride, dilation: [1, 1], pads: window.pads };
                b.avg_pool(name, x.id, y, win, *count_include_pad, (-128, 127)).map_err(|er| e(er.0))?;
                Act { id: y, lay: Lay::Nhwc }
            }
            Op::GlobalAvgPool => {
                if x.lay != Lay::Nhwc {
                    return Err(e("pooling input must be 4-D".into()));
                }
                let is = &g.tensors[node.inputs[0]].shape;
                let yq = qp(out);
                let y = new_act(&mut b, yq);
                b.avg_pool(
                    name,
                    x.id,
                    y,
                    Window { kernel: [is[2], is[3]], stride: [1, 1], dilation: [1, 1], pads: [0; 4] },
                    true,
                    (-128, 127),
                )
                .map_err(|er| e(er.0))?;
                Act { id: y, lay: Lay::Nhwc }
            }
            Op::Reshape => {
                let is = g.tensors[node.inputs[0]].shape.clone();
                match x.lay {
                    Lay::Nhwc if oshape.len() == 2 && is[2] * is[3] == 1 => {
                        let y = b.activation(&g.tensors[out].name, &oshape, xq);
                        b.reshape(name, x.id, y);
                        Act { id: y, lay: Lay::Plain }
                    }
                    Lay::Nhwc if oshape.len() == 2 && oshape[0] == is[0] => {
                        let all_dense =
                            g.consumers(out).iter().all(|&c| matches!(g.nodes[c].op, Op::Dense { .. }) && g.nodes[c].inputs[0] == out);
                        if all_dense && !g.outputs.contains(&out) {
                            let y = b.activation(&g.tensors[out].name, &oshape, xq);
                            b.reshape(name, x.id, y);
                            Act { id: y, lay: Lay::FlatHwc { c: is[1], h: is[2], w: is[3] } }
                        } else {
                            let t = b.activation(&format!("{}.nchw", g.tensors[out].name), &[is[0], is[1], is[2], is[3]], xq);
                            b.transpose(&format!("{name}.to_nchw"), x.id, t, [0, 3, 1, 2]);
                            let y = b.activation(&g.tensors[out].name, &oshape, xq);
                            b.reshape(name, t, y);
                            Act { id: y, lay: Lay::Plain }
                        }
                    }
                    Lay::Nhwc if oshape.len() != 4 => {
                        // e.g. [N, C, 1, L] → [N, C, L] after a 1-D op: NHWC and NCHW hold the
                        // same order when C = 1 or H·W = 1, else go through NCHW.
                        let src = if is[1] == 1 || is[2] * is[3] == 1 {
                            x.id
                        } else {
                            let t = b.activation(&format!("{}.nchw", g.tensors[out].name), &is, xq);
                            b.transpose(&format!("{name}.to_nchw"), x.id, t, [0, 3, 1, 2]);
                            t
                        };
                        let y = b.activation(&g.tensors[out].name, &oshape, xq);
                        b.reshape(name, src, y);
                        Act { id: y, lay: Lay::Plain }
                    }
                    Lay::Plain | Lay::FlatHwc { .. } if oshape.len() != 4 => {
                        if let Lay::FlatHwc { .. } = x.lay {
                            if oshape != is {
                                return Err(e("reshaping a flattened NHWC tensor again is not supported".into()));
                            }
                        }
                        let y = b.activation(&g.tensors[out].name, &oshape, xq);
                        b.reshape(name, x.id, y);
                        Act { id: y, lay: x.lay }
                    }
                    Lay::Plain if oshape.len() == 4 => {
                        let t = b.activation(&format!("{}.nchw", g.tensors[out].name), &oshape, xq);
                        b.reshape(&format!("{name}.as_nchw"), x.id, t);
                        let y = b.activation(&g.tensors[out].name, &nhwc_dims(&oshape), xq);
                        b.transpose(name, t, y, [0, 2, 3, 1]);
                        Act { id: y, lay: Lay::Nhwc }
                    }
                    _ => return Err(e(format!("reshape {is:?} → {oshape:?} is not supported in int8"))),
                }
            }
            Op::Add { act } | Op::Mul { act } => {
                let x2 = get(&acts, node.inputs[1])?;
                if x.lay == Lay::Plain && x2.lay == Lay::Plain || x.lay == Lay::Nhwc && x2.lay == Lay::Nhwc {
                    let yq = qp(out);
                    let y = new_act(&mut b, yq);
                    let cl = clamp_for(*act, yq);
                    if matches!(node.op, Op::Add { .. }) {
                        b.add(name, x.id, x2.id, y, cl).map_err(|er| e(er.0))?;
                    } else {
                        b.mul(name, x.id, x2.id, y, cl).map_err(|er| e(er.0))?;
                    }
                    Act { id: y, lay: x.lay }
                } else {
                    return Err(e("operands have different layouts".into()));
                }
            }
            Op::Act(_) | Op::LeakyRelu { .. } | Op::HardSwish | Op::HardSigmoid { .. } | Op::Sigmoid | Op::Tanh => {
                let f: Box<dyn Fn(f32) -> f32> = match node.op.clone() {
                    Op::Act(a) => Box::new(move |v| a.apply(v)),
                    Op::LeakyRelu { alpha } => Box::new(move |v| if v < 0.0 { alpha * v } else { v }),
                    Op::HardSwish => Box::new(|v| v * (v + 3.0).clamp(0.0, 6.0) / 6.0),
                    Op::HardSigmoid { alpha, beta } => Box::new(move |v| (alpha * v + beta).clamp(0.0, 1.0)),
                    Op::Sigmoid => Box::new(|v| 1.0 / (1.0 + (-v).exp())),
                    _ => Box::new(|v: f32| v.tanh()),
                };
                let yq = qp(out);
                let mut table = [0i8; 256];
                for (i, t) in table.iter_mut().enumerate() {
                    let real = xq.scale * (i as i32 - 128 - xq.zero_point) as f32;
                    *t = temper_kernels::requant::quantize_f32(f(real), yq.scale, yq.zero_point);
                }
                let y = b.activation(&g.tensors[out].name, &nhwc_dims(&oshape), yq);
                b.lut(name, x.id, y, &table);
                Act { id: y, lay: x.lay }
            }
            Op::Softmax { axis } => {
                if *axis + 1 != oshape.len() || x.lay == Lay::Nhwc {
                    return Err(e("softmax is supported over the last axis of a 2-D tensor".into()));
                }
                let yq = QParams { scale: 1.0 / 256.0, zero_point: -128 };
                let mut table = [0u32; 256];
                for (d, t) in table.iter_mut().enumerate() {
                    *t = ((-(d as f64) * xq.scale as f64).exp() * 65536.0).round() as u32;
                }
                let y = b.activation(&g.tensors[out].name, &oshape, yq);
                b.softmax(name, x.id, y, &table);
                Act { id: y, lay: Lay::Plain }
            }
            Op::Identity => {
                acts[out] = Some(x);
                continue;
            }
            Op::Ext(op) => {
                let inputs = node.inputs.iter().map(|&t| acts[t]).collect();
                let consts = node.inputs.iter().map(|&t| g.const_f32(t).map(|d| (g.tensors[t].shape.as_slice(), d))).collect();
                let means = cal.channel_means.get(node.inputs[0]).filter(|_| opts.bias_correction).map(Vec::as_slice);
                let (out_name, out_q) = (&g.tensors[out].name, qp(out));
                let mut cx = LowerCx { b: &mut b, name, inputs, out_name, out_shape: &oshape, out_q, consts, means };
                match op.def().lower(&mut cx).map_err(e)? {
                    LowerOut::Nhwc(id) => Act { id, lay: Lay::Nhwc },
                    LowerOut::Plain(id) => Act { id, lay: Lay::Plain },
                }
            }
            other => {
                return Err(e(format!(
                    "{} has no int8 lowering yet (supported: Conv, Dense, pools, Reshape/Flatten, Add, Mul, activations, Softmax, Resize, Concat, Pad, ChannelAffine)",
                    other.name()
                )))
            }
        };
        acts[out] = Some(result);
        if opts.expose_all && !g.outputs.contains(&out) {
            let perm = match result.lay {
                Lay::Nhwc => Some((oshape[1], oshape[2], oshape[3])),
                Lay::FlatHwc { c, h, w } => Some((c, h, w)),
                Lay::Plain => None,
            };
            exposed.push((out, perm));
        }
    }
    let mut outs = Vec::with_capacity(g.outputs.len());
    for &o in &g.outputs {
        let a = acts[o].ok_or_else(|| QuantError {
            node: g.tensors[o].name.clone(),
            op: "output".into(),
            msg: "graph output was not produced".into(),
        })?;
        outs.push(a.id);
    }
    if let Some(tail) = tail {
        outs = tail(&mut b, &outs).map_err(|msg| QuantError { node: g.name.clone(), op: "tail".into(), msg })?;
    }
    for id in outs {
        b.output(id);
    }
    if opts.expose_all {
        for &(t, _) in &exposed {
            if let Some(a) = acts[t] {
                b.output(a.id);
            }
        }
    }
    for (k, v) in &opts.metadata {
        b.meta(k, v);
    }
    let bytes = b.finish().map_err(|er| QuantError { node: g.name.clone(), op: "model".into(), msg: er.0 })?;
    Ok(Lowered { bytes, exposed })
}
