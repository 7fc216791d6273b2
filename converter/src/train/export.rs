//! ONNX export: a minimal protobuf encoder for `ModelProto` / `GraphProto` / `NodeProto` /
//! `TensorProto` / `ValueInfoProto` / `AttributeProto` (field numbers of onnx/onnx
//! `onnx.proto`), writing opset 13 of the default domain.
//!
//! Each IR node becomes one ONNX node, plus a Relu/Clip node for a fused activation; Dense is
//! written as `Gemm(transB = 1)`, HardSwish (opset 14) as `x · HardSigmoid(x; 1/6, ½)`, a Reshape
//! that flattens everything but the batch as `Flatten`. The batch dimension of the graph input
//! and output is symbolic (`N`). Initializers are raw little-endian f32. The result re-imports
//! with [`onnx::import_bytes`](crate::onnx::import_bytes) into the same graph (after
//! [`passes::optimize`](crate::passes::optimize)), giving identical outputs.

use std::collections::HashSet;
use std::path::Path;

use super::TrainError;
use crate::ir::{Activation, ConstData, Graph, Op, TensorId, Window};
use crate::ops::{OnnxAttr, OnnxIn};

/// Protobuf message builder (wire format).
#[derive(Default)]
struct Pb(Vec<u8>);

impl Pb {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn tag(&mut self, field: u32, wire: u8) {
        self.varint(((field as u64) << 3) | wire as u64);
    }
    fn int(&mut self, field: u32, v: i64) {
        self.tag(field, 0);
        self.varint(v as u64);
    }
    fn float(&mut self, field: u32, v: f32) {
        self.tag(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.tag(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn string(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }
    fn msg(&mut self, field: u32, m: Pb) {
        self.bytes(field, &m.0);
    }
    fn packed_ints(&mut self, field: u32, vs: &[i64]) {
        let mut p = Pb::default();
        for &v in vs {
            p.varint(v as u64);
        }
        self.bytes(field, &p.0);
    }
}

// AttributeProto.AttributeType
const ATTR_FLOAT: i64 = 1;
const ATTR_INT: i64 = 2;
const ATTR_STRING: i64 = 3;
const ATTR_INTS: i64 = 7;
// TensorProto.DataType
const FLOAT: i64 = 1;
const INT64: i64 = 7;

enum Attr {
    F(f32),
    I(i64),
    S(String),
    Is(Vec<i64>),
}

fn attribute(name: &str, a: &Attr) -> Pb {
    let mut p = Pb::default();
    p.string(1, name);
    match a {
        Attr::F(v) => {
            p.float(2, *v);
            p.int(20, ATTR_FLOAT);
        }
        Attr::I(v) => {
            p.int(3, *v);
            p.int(20, ATTR_INT);
        }
        Attr::S(s) => {
            p.string(4, s);
            p.int(20, ATTR_STRING);
        }
        Attr::Is(v) => {
            p.packed_ints(8, v);
            p.int(20, ATTR_INTS);
        }
    }
    p
}

fn tensor_proto(name: &str, dims: &[usize], data: &ConstData) -> Pb {
    let mut p = Pb::default();
    p.packed_ints(1, &dims.iter().map(|&d| d as i64).collect::<Vec<_>>());
    let raw: Vec<u8> = match data {
        ConstData::F32(v) => {
            p.int(2, FLOAT);
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        }
        ConstData::I64(v) => {
            p.int(2, INT64);
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        }
    };
    p.string(8, name);
    p.bytes(9, &raw);
    p
}

fn value_info(name: &str, shape: &[usize]) -> Pb {
    let mut dims = Pb::default();
    for (i, &d) in shape.iter().enumerate() {
        let mut dim = Pb::default();
        if i == 0 {
            dim.string(2, "N");
        } else {
            dim.int(1, d as i64);
        }
        dims.msg(1, dim);
    }
    let mut tt = Pb::default();
    tt.int(1, FLOAT);
    tt.msg(2, dims);
    let mut ty = Pb::default();
    ty.msg(1, tt);
    let mut v = Pb::default();
    v.string(1, name);
    v.msg(2, ty);
    v
}

struct Writer<'g> {
    g: &'g Graph,
    nodes: Vec<Pb>,
    inits: Vec<Pb>,
    names: Vec<String>,
    used: HashSet<String>,
    init_done: HashSet<TensorId>,
}

impl Writer<'_> {
    fn fresh(&mut self, base: &str) -> String {
        let mut n = base.to_string();
        let mut k = 1;
        while self.used.contains(&n) {
            n = format!("{base}_{k}");
            k += 1;
        }
        self.used.insert(n.clone());
        n
    }

    fn name(&self, t: TensorId) -> String {
        self.names[t].clone()
    }

    /// Reference tensor `t` as a node input, emitting it as an initializer if it is a constant.
    fn input(&mut self, t: TensorId) -> String {
        let info = &self.g.tensors[t];
        if let Some(d) = &info.data {
            if self.init_done.insert(t) {
                self.inits.push(tensor_proto(&self.names[t], &info.shape, d));
            }
        }
        self.name(t)
    }

    fn const_i64(&mut self, base: &str, v: Vec<i64>) -> String {
        let n = self.fresh(base);
        self.inits.push(tensor_proto(&n, &[v.len()], &ConstData::I64(v)));
        n
    }

    fn const_f32(&mut self, base: &str, shape: &[usize], v: Vec<f32>) -> String {
        let n = self.fresh(base);
        self.inits.push(tensor_proto(&n, shape, &ConstData::F32(v)));
        n
    }

    fn node(&mut self, name: &str, op: &str, inputs: &[String], outputs: &[String], attrs: &[(&str, Attr)]) {
        let mut p = Pb::default();
        for i in inputs {
            p.string(1, i);
        }
        for o in outputs {
            p.string(2, o);
        }
        p.string(3, name);
        p.string(4, op);
        for (k, a) in attrs {
            p.msg(5, attribute(k, a));
        }
        self.nodes.push(p);
    }

    /// Emit `op` writing `out`, followed by the fused activation `act` if any.
    fn with_act(&mut self, name: &str, op: &str, inputs: &[String], out: &str, attrs: &[(&str, Attr)], act: Activation) {
        if act == Activation::None {
            self.node(name, op, inputs, &[out.to_string()], attrs);
            return;
        }
        let pre = self.fresh(&format!("{out}__preact"));
        self.node(name, op, inputs, std::slice::from_ref(&pre), attrs);
        self.act(&format!("{name}__act"), pre, out, act);
    }

    fn act(&mut self, name: &str, x: String, out: &str, act: Activation) {
        match act {
            Activation::None => self.node(name, "Identity", &[x], &[out.to_string()], &[]),
            Activation::Relu => self.node(name, "Relu", &[x], &[out.to_string()], &[]),
            Activation::Clip { min, max } => {
                let lo = self.const_f32(&format!("{name}__min"), &[], vec![min]);
                let hi = self.const_f32(&format!("{name}__max"), &[], vec![max]);
                self.node(name, "Clip", &[x, lo, hi], &[out.to_string()], &[]);
            }
        }
    }
}

fn window_attrs(w: &Window, with_dilation: bool) -> Vec<(&'static str, Attr)> {
    let mut a = vec![
        ("kernel_shape", Attr::Is(w.kernel.iter().map(|&v| v as i64).collect())),
        ("strides", Attr::Is(w.stride.iter().map(|&v| v as i64).collect())),
        ("pads", Attr::Is(w.pads.iter().map(|&v| v as i64).collect())),
    ];
    if with_dilation {
        a.push(("dilations", Attr::Is(w.dilation.iter().map(|&v| v as i64).collect())));
    }
    a
}

fn unsupported(node: &str, what: impl Into<String>) -> TrainError {
    TrainError::Graph(format!("ONNX export: node '{node}': {}", what.into()))
}

/// Encode `g` as an ONNX `ModelProto` (opset 13).
pub fn to_onnx(g: &Graph) -> Result<Vec<u8>, TrainError> {
    // Stable, unique tensor names; a Dense weight imported from Gemm/MatMul keeps its original
    // initializer name so a re-import reproduces the same names.
    let mut used = HashSet::new();
    let mut names = Vec::with_capacity(g.tensors.len());
    for t in &g.tensors {
        let base = t.name.strip_suffix("__dense_w").filter(|b| !b.is_empty()).unwrap_or(&t.name);
        let base = if base.is_empty() { "t" } else { base };
        let mut n = base.to_string();
        let mut k = 1;
        while used.contains(&n) || g.tensors.iter().any(|o| o.name == n && !std::ptr::eq(o, t) && base != t.name) {
            n = format!("{base}_{k}");
            k += 1;
        }
        used.insert(n.clone());
        names.push(n);
    }
    let mut w = Writer { g, nodes: Vec::new(), inits: Vec::new(), names, used, init_done: HashSet::new() };
    for node in &g.nodes {
        let name = node.name.as_str();
        let out = w.name(node.outputs[0]);
        let ins: Vec<String> = node.inputs.iter().map(|&t| w.input(t)).collect();
        let in_shape = &g.tensors[node.inputs[0]].shape;
        let out_shape = &g.tensors[node.outputs[0]].shape;
        match &node.op {
            Op::Conv { window, group, act } => {
                let mut a = window_attrs(window, true);
                a.push(("group", Attr::I(*group as i64)));
                w.with_act(name, "Conv", &ins, &out, &a, *act);
            }
            Op::Dense { act } => w.with_act(name, "Gemm", &ins, &out, &[("transB", Attr::I(1))], *act),
            Op::Add { act } => w.with_act(name, "Add", &ins, &out, &[], *act),
            Op::Mul { act } => w.with_act(name, "Mul", &ins, &out, &[], *act),
            Op::Sub => w.node(name, "Sub", &ins, &[out], &[]),
            Op::Div => w.node(name, "Div", &ins, &[out], &[]),
            Op::Act(a) => w.act(name, ins[0].clone(), &out, *a),
            Op::LeakyRelu { alpha } => w.node(name, "LeakyRelu", &ins, &[out], &[("alpha", Attr::F(*alpha))]),
            Op::HardSwish => {
                let hs = w.fresh(&format!("{out}__hsig"));
                w.node(
                    &format!("{name}__hsig"),
                    "HardSigmoid",
                    &ins,
                    std::slice::from_ref(&hs),
                    &[("alpha", Attr::F(1.0 / 6.0)), ("beta", Attr::F(0.5))],
                );
                w.node(name, "Mul", &[ins[0].clone(), hs], &[out], &[]);
            }
            Op::HardSigmoid { alpha, beta } => {
                w.node(name, "HardSigmoid", &ins, &[out], &[("alpha", Attr::F(*alpha)), ("beta", Attr::F(*beta))])
            }
            Op::Sigmoid => w.node(name, "Sigmoid", &ins, &[out], &[]),
            Op::Tanh => w.node(name, "Tanh", &ins, &[out], &[]),
            Op::BatchNorm { eps } => w.node(name, "BatchNormalization", &ins, &[out], &[("epsilon", Attr::F(*eps))]),
            Op::MaxPool { window, ceil_mode } => {
                let mut a = window_attrs(window, true);
                a.push(("ceil_mode", Attr::I(*ceil_mode as i64)));
                w.node(name, "MaxPool", &ins, &[out], &a);
            }
            Op::AvgPool { window, ceil_mode, count_include_pad } => {
                if window.dilation != [1, 1] {
                    return Err(unsupported(name, "dilated AveragePool needs opset 19"));
                }
                let mut a = window_attrs(window, false);
                a.push(("ceil_mode", Attr::I(*ceil_mode as i64)));
                a.push(("count_include_pad", Attr::I(*count_include_pad as i64)));
                w.node(name, "AveragePool", &ins, &[out], &a);
            }
            Op::GlobalAvgPool => w.node(name, "GlobalAveragePool", &ins, &[out], &[]),
            Op::ReduceMean { axes, keepdims } => w.node(
                name,
                "ReduceMean",
                &ins,
                &[out],
                &[("axes", Attr::Is(axes.iter().map(|&a| a as i64).collect())), ("keepdims", Attr::I(*keepdims as i64))],
            ),
            Op::Reshape => {
                let same_batch = !in_shape.is_empty() && !out_shape.is_empty() && in_shape[0] == out_shape[0];
                if same_batch && out_shape.len() == 2 {
                    w.node(name, "Flatten", &ins, &[out], &[("axis", Attr::I(1))]);
                } else {
                    let mut s: Vec<i64> = out_shape.iter().map(|&d| d as i64).collect();
                    if same_batch {
                        s[0] = 0;
                    }
                    let sh = w.const_i64(&format!("{name}__shape"), s);
                    w.node(name, "Reshape", &[ins[0].clone(), sh], &[out], &[]);
                }
            }
            Op::Transpose { perm } => {
                w.node(name, "Transpose", &ins, &[out], &[("perm", Attr::Is(perm.iter().map(|&p| p as i64).collect()))])
            }
            Op::Slice { starts, steps } => {
                let (mut st, mut en, mut ax, mut sp) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for a in 0..in_shape.len() {
                    let full = starts[a] == 0 && steps[a] == 1 && in_shape[a] == out_shape[a];
                    if full {
                        continue;
                    }
                    st.push(starts[a] as i64);
                    en.push((starts[a] + (out_shape[a].max(1) - 1) * steps[a] + 1) as i64);
                    ax.push(a as i64);
                    sp.push(steps[a] as i64);
                }
                let s = w.const_i64(&format!("{name}__starts"), st);
                let e = w.const_i64(&format!("{name}__ends"), en);
                let a = w.const_i64(&format!("{name}__axes"), ax);
                let p = w.const_i64(&format!("{name}__steps"), sp);
                w.node(name, "Slice", &[ins[0].clone(), s, e, a, p], &[out], &[]);
            }
            Op::Ext(e) => {
                let in_shapes: Vec<&[usize]> = node.inputs.iter().map(|&t| g.tensors[t].shape.as_slice()).collect();
                let spec = e.def().to_onnx(&in_shapes, out_shape);
                let mut inputs = Vec::with_capacity(spec.inputs.len());
                for i in spec.inputs {
                    inputs.push(match i {
                        OnnxIn::Input(k) => ins[k].clone(),
                        OnnxIn::F32(suffix, shape, v) => w.const_f32(&format!("{name}__{suffix}"), &shape, v),
                        OnnxIn::I64(suffix, v) => w.const_i64(&format!("{name}__{suffix}"), v),
                    });
                }
                let attrs: Vec<(&str, Attr)> = spec
                    .attrs
                    .into_iter()
                    .map(|(k, a)| {
                        (
                            k,
                            match a {
                                OnnxAttr::I(v) => Attr::I(v),
                                OnnxAttr::S(v) => Attr::S(v),
                                OnnxAttr::F(v) => Attr::F(v),
                                OnnxAttr::Is(v) => Attr::Is(v),
                            },
                        )
                    })
                    .collect();
                w.with_act(name, spec.op_type, &inputs, &out, &attrs, e.def().act().unwrap_or_default());
            }
            Op::Softmax { axis } => w.node(name, "Softmax", &ins, &[out], &[("axis", Attr::I(*axis as i64))]),
            Op::Identity => w.node(name, "Identity", &ins, &[out], &[]),
        }
    }
    let mut graph = Pb::default();
    for n in std::mem::take(&mut w.nodes) {
        graph.msg(1, n);
    }
    graph.string(2, if g.name.is_empty() { "temper" } else { &g.name });
    for i in std::mem::take(&mut w.inits) {
        graph.msg(5, i);
    }
    for &i in &g.inputs {
        graph.msg(11, value_info(&w.names[i], &g.tensors[i].shape));
    }
    for &o in &g.outputs {
        graph.msg(12, value_info(&w.names[o], &g.tensors[o].shape));
    }
    let mut opset = Pb::default();
    opset.string(1, "");
    opset.int(2, 13);
    let mut model = Pb::default();
    model.int(1, 7); // IR version 7 (ONNX 1.8, opset 13)
    model.string(2, "temper");
    model.string(3, env!("CARGO_PKG_VERSION"));
    model.msg(7, graph);
    model.msg(8, opset);
    Ok(model.0)
}

/// Write `g` as ONNX to `path` (via a temporary file renamed into place).
pub fn write_onnx(g: &Graph, path: &Path) -> Result<usize, TrainError> {
    let bytes = to_onnx(g)?;
    let tmp = path.with_extension("onnx.tmp");
    std::fs::write(&tmp, &bytes).map_err(|e| TrainError::Io(format!("{}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::Io(format!("{}: {e}", path.display())))?;
    Ok(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fp32::{self, shape::infer_output_shape, Tensor};
    use crate::ir::Node;

    struct B {
        g: Graph,
        k: usize,
    }

    impl B {
        fn c(&mut self, shape: &[usize]) -> TensorId {
            self.k += 1;
            let n: usize = shape.iter().product();
            let data = (0..n).map(|i| (((i * 37 + self.k * 11) % 23) as f32 - 11.0) * 0.05).collect();
            self.g.add_tensor(format!("c{}", self.k), shape.to_vec(), Some(ConstData::F32(data)))
        }
        fn op(&mut self, op: Op, inputs: Vec<TensorId>, declared: Option<Vec<usize>>) -> TensorId {
            self.k += 1;
            let shapes: Vec<&[usize]> = inputs.iter().map(|&i| self.g.tensors[i].shape.as_slice()).collect();
            let s = declared.unwrap_or_else(|| infer_output_shape(&op, &shapes, None).unwrap());
            let out = self.g.add_tensor(format!("t{}", self.k), s, None);
            self.g.nodes.push(Node { name: format!("n{}_{}", self.k, op.name()), op, inputs, outputs: vec![out] });
            out
        }
    }

    fn win(k: usize, s: usize, p: usize) -> Window {
        Window { kernel: [k, k], stride: [s, s], pads: [p; 4], dilation: [1, 1] }
    }

    #[test]
    fn round_trip_of_many_ops_gives_identical_outputs() {
        let mut b = B { g: Graph { name: "rt".into(), ..Default::default() }, k: 0 };
        let x = b.g.add_tensor("x", vec![1, 3, 8, 8], None);
        b.g.inputs = vec![x];
        let (w1, b1) = (b.c(&[4, 3, 3, 3]), b.c(&[4]));
        let c1 = b.op(Op::Conv { window: win(3, 1, 1), group: 1, act: Activation::Relu }, vec![x, w1, b1], None);
        let bn: Vec<TensorId> = vec![b.c(&[4]), b.c(&[4]), b.c(&[4])];
        let var = b.g.add_tensor("var", vec![4], Some(ConstData::F32(vec![1.0, 0.5, 2.0, 1.5])));
        let n1 = b.op(Op::BatchNorm { eps: 1e-5 }, vec![c1, bn[0], bn[1], bn[2], var], None);
        let h1 = b.op(Op::HardSwish, vec![n1], None);
        let w2 = b.c(&[4, 1, 3, 3]);
        let c2 = b.op(Op::Conv { window: win(3, 2, 1), group: 4, act: Activation::Clip { min: 0.0, max: 6.0 } }, vec![h1, w2], None);
        let k1 = b.c(&[4, 1, 1]);
        let m1 = b.op(Op::Mul { act: Activation::None }, vec![c2, k1], None);
        let a1 = b.op(Op::Add { act: Activation::Relu }, vec![m1, c2], None);
        let p1 = b.op(Op::MaxPool { window: win(2, 2, 0), ceil_mode: false }, vec![a1], None);
        let p2 = b.op(Op::AvgPool { window: win(3, 1, 1), ceil_mode: false, count_include_pad: false }, vec![p1], None);
        let cat = b.op(crate::ops::concat::op(1), vec![p1, p2], None);
        let tr = b.op(Op::Transpose { perm: vec![0, 1, 3, 2] }, vec![cat], None);
        let pd = b.op(crate::ops::pad::op(vec![0, 0, 1, 1, 0, 0, 0, 1], 0.25), vec![tr], None);
        let sl = b.op(Op::Slice { starts: vec![0, 0, 0, 1], steps: vec![1, 2, 1, 1] }, vec![pd], Some(vec![1, 4, 3, 3]));
        let sg = b.op(Op::Sigmoid, vec![sl], None);
        let two = b.g.add_tensor("two", vec![1], Some(ConstData::F32(vec![2.0])));
        let dv = b.op(Op::Div, vec![sg, two], None);
        let k2 = b.c(&[4, 1, 1]);
        let sb = b.op(Op::Sub, vec![dv, k2], None);
        let lr = b.op(Op::LeakyRelu { alpha: 0.1 }, vec![sb], None);
        let th = b.op(Op::Tanh, vec![lr], None);
        let gp = b.op(Op::GlobalAvgPool, vec![th], None);
        let rm = b.op(Op::ReduceMean { axes: vec![2, 3], keepdims: true }, vec![th], None);
        let s2 = b.op(Op::Add { act: Activation::None }, vec![gp, rm], None);
        let hs = b.op(Op::HardSigmoid { alpha: 0.2, beta: 0.5 }, vec![s2], None);
        let f = b.op(Op::Reshape, vec![hs], Some(vec![1, 4]));
        let fl = b.op(Op::Reshape, vec![th], Some(vec![1, 36]));
        let cc = b.op(crate::ops::concat::op(1), vec![f, fl], None);
        let (wd, bd) = (b.c(&[5, 40]), b.c(&[5]));
        let d = b.op(Op::Dense { act: Activation::None }, vec![cc, wd, bd], None);
        let r3 = b.op(Op::Reshape, vec![d], Some(vec![1, 5, 1]));
        let r4 = b.op(Op::Reshape, vec![r3], Some(vec![1, 5, 1, 1]));
        let up = b.op(crate::ops::resize::op(crate::ir::ResizeMode::Nearest), vec![r4], Some(vec![1, 5, 2, 2]));
        let fl2 = b.op(Op::Reshape, vec![up], Some(vec![1, 20]));
        let sm = b.op(Op::Softmax { axis: 1 }, vec![fl2], None);
        b.g.outputs = vec![sm];
        let mut g = b.g;
        crate::passes::optimize(&mut g).unwrap();
        let bytes = to_onnx(&g).unwrap();
        let mut back = crate::onnx::import_bytes(&bytes, None, None, "roundtrip.onnx").unwrap();
        crate::passes::optimize(&mut back).unwrap();
        let xin = Tensor::new(vec![2, 3, 8, 8], (0..384).map(|i| ((i * 13 % 29) as f32 - 14.0) * 0.1).collect()).unwrap();
        let a = fp32::run(&g, std::slice::from_ref(&xin)).unwrap();
        let r = fp32::run(&back, std::slice::from_ref(&xin)).unwrap();
        assert_eq!(a[0].shape, r[0].shape);
        assert_eq!(a[0].data, r[0].data, "outputs differ after the ONNX round trip");
        let ops = |g: &Graph| g.nodes.iter().map(|n| n.op.name()).collect::<Vec<_>>();
        assert_eq!(ops(&g), ops(&back));
    }
}
