//! A trainable network over the IR: parameters, a forward pass that records what the backward
//! pass needs (a [`Tape`]), and reverse-mode differentiation node by node.

use super::kernels::{self, BnStats, ConvShape, PoolShape};
use super::TrainError;
use crate::fp32::ops::View;
use crate::fp32::{self, Tensor};
use crate::ir::{ConstData, Graph, Node, Op, TensorId};
use crate::passes;

/// Forward mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Training: BatchNorm normalizes with batch statistics (and the running estimates can be
    /// updated from the tape with [`Net::update_running_stats`]).
    Train,
    /// Inference: BatchNorm uses its running statistics.
    Eval,
}

/// The role of a constant tensor of the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// Conv / Dense / ConvTranspose weight.
    Weight,
    /// Conv / Dense / ConvTranspose bias.
    Bias,
    /// BatchNorm scale (γ).
    BnScale,
    /// BatchNorm shift (β).
    BnShift,
    /// BatchNorm running mean (a buffer, not trained).
    BnMean,
    /// BatchNorm running variance (a buffer, not trained).
    BnVar,
}

impl ParamKind {
    /// Whether gradients flow to this kind of tensor.
    pub fn trainable(self) -> bool {
        matches!(self, ParamKind::Weight | ParamKind::Bias | ParamKind::BnScale | ParamKind::BnShift)
    }
    /// Whether weight decay applies (weights only; biases and BatchNorm parameters are exempt).
    pub fn decays(self) -> bool {
        self == ParamKind::Weight
    }
}

/// One parameter or buffer of the network.
#[derive(Clone, Debug)]
pub struct Param {
    /// Tensor name in the graph.
    pub name: String,
    /// Tensor id in the graph.
    pub tensor: TensorId,
    /// Shape.
    pub shape: Vec<usize>,
    /// Current value.
    pub value: Vec<f32>,
    /// Accumulated gradient (same length as `value`; zero for buffers).
    pub grad: Vec<f32>,
    /// Role.
    pub kind: ParamKind,
    /// Name of the (first) node using it, for messages.
    pub layer: String,
    /// Excluded from training (gradients are not computed).
    pub frozen: bool,
}

impl Param {
    /// Whether this parameter receives gradients.
    pub fn trainable(&self) -> bool {
        self.kind.trainable() && !self.frozen
    }
}

/// What a node's forward pass leaves for its backward pass besides its output.
#[derive(Clone, Debug)]
enum Aux {
    None,
    Bn(BnStats),
    Arg(Vec<u32>),
}

/// The recorded forward pass of one batch.
#[derive(Clone, Debug)]
pub struct Tape {
    /// Mode the forward ran in.
    pub mode: Mode,
    values: Vec<Option<Tensor>>,
    aux: Vec<Aux>,
}

impl Tape {
    /// Value of an activation tensor (graph inputs and node outputs).
    pub fn value(&self, id: TensorId) -> Option<&Tensor> {
        self.values.get(id)?.as_ref()
    }
}

/// Prepare an imported graph for training: like [`passes::optimize`] but **without**
/// BatchNorm folding (Identity removal, constant folding, folding of constant per-channel
/// Add/Mul into Conv/Dense bias and weights, HardSwish fusion, Relu/Clip fusion into producers,
/// dead-node removal, compaction, shape check). Fold BatchNorm afterwards with
/// [`passes::optimize`] (see [`Net::export_graph`]).
pub fn prepare_for_training(g: &mut Graph) -> Result<(), TrainError> {
    let e = |e: passes::PassError| TrainError::Graph(e.to_string());
    passes::check_shapes(g).map_err(e)?;
    for _ in 0..8 {
        let mut changed = passes::remove_identities(g).map_err(e)?;
        changed |= passes::fold_constants(g).map_err(e)?;
        changed |= passes::fold_affine(g).map_err(e)?;
        changed |= passes::fuse_hardswish(g).map_err(e)?;
        changed |= passes::fuse_activations(g).map_err(e)?;
        changed |= passes::remove_dead_nodes(g).map_err(e)?;
        if !changed {
            break;
        }
    }
    passes::compact(g);
    passes::check_shapes(g).map_err(e)
}

/// A trainable network: the graph structure plus its parameters.
#[derive(Clone, Debug)]
pub struct Net {
    graph: Graph,
    /// Parameters and buffers (Conv/Dense weights and biases, BatchNorm γ, β, mean, var).
    pub params: Vec<Param>,
    slot: Vec<Option<usize>>,
    /// Worker threads for the heavy kernels.
    pub threads: usize,
    /// BatchNorm running-statistics momentum: `running = (1 − m)·running + m·batch`.
    pub bn_momentum: f32,
}

fn shape_numel(s: &[usize]) -> usize {
    s.iter().product()
}

impl Net {
    /// Build a network from a graph (run [`prepare_for_training`] on imported models first).
    /// Constant inputs of Conv/Dense/ConvTranspose (weight, bias) and BatchNorm (γ, β, mean,
    /// var) become parameters; other constants stay fixed.
    pub fn new(mut graph: Graph, threads: usize) -> Result<Net, TrainError> {
        passes::check_shapes(&graph).map_err(|e| TrainError::Graph(e.to_string()))?;
        for t in &mut graph.tensors {
            if let Some(ConstData::I64(v)) = &t.data {
                t.data = Some(ConstData::F32(v.iter().map(|&x| x as f32).collect()));
            }
        }
        let mut slot: Vec<Option<usize>> = vec![None; graph.tensors.len()];
        let mut params: Vec<Param> = Vec::new();
        for node in &graph.nodes {
            let roles: &[(usize, ParamKind)] = match node.op {
                Op::Conv { .. } | Op::Dense { .. } => &[(1, ParamKind::Weight), (2, ParamKind::Bias)],
                Op::BatchNorm { .. } => &[(1, ParamKind::BnScale), (2, ParamKind::BnShift), (3, ParamKind::BnMean), (4, ParamKind::BnVar)],
                _ => &[],
            };
            for &(i, kind) in roles {
                let Some(&t) = node.inputs.get(i) else { continue };
                if slot[t].is_some() {
                    continue;
                }
                let info = &graph.tensors[t];
                let Some(v) = info.data.as_ref().and_then(|d| d.as_f32()) else {
                    if kind == ParamKind::Weight {
                        continue; // a computed weight: gradients flow to its producer
                    }
                    return Err(TrainError::Graph(format!("node '{}': input {i} ('{}') must be a constant", node.name, info.name)));
                };
                slot[t] = Some(params.len());
                params.push(Param {
                    name: info.name.clone(),
                    tensor: t,
                    shape: info.shape.clone(),
                    value: v.to_vec(),
                    grad: vec![0.0; v.len()],
                    kind,
                    layer: node.name.clone(),
                    frozen: false,
                });
            }
        }
        Ok(Net { graph, params, slot, threads: threads.max(1), bn_momentum: 0.1 })
    }

    /// The graph structure (constants of parameters hold their values at construction).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Number of trainable scalars.
    pub fn num_trainable(&self) -> usize {
        self.params.iter().filter(|p| p.trainable()).map(|p| p.value.len()).sum()
    }

    /// Freeze every parameter (for teachers).
    pub fn freeze(&mut self) {
        self.params.iter_mut().for_each(|p| p.frozen = true);
    }

    /// Zero all gradients.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.grad.iter_mut().for_each(|g| *g = 0.0);
        }
    }

    /// Id of the tensor named `name`.
    pub fn tensor_id(&self, name: &str) -> Option<TensorId> {
        self.graph.tensors.iter().position(|t| t.name == name)
    }

    /// The graph with the current parameter values (BatchNorm unfused).
    pub fn to_graph(&self) -> Graph {
        let mut g = self.graph.clone();
        for p in &self.params {
            g.tensors[p.tensor].data = Some(ConstData::F32(p.value.clone()));
        }
        g
    }

    /// The graph with the current parameters, BatchNorm folded and activations fused
    /// ([`passes::optimize`]): what PTQ and ONNX export take.
    pub fn export_graph(&self) -> Result<Graph, TrainError> {
        let mut g = self.to_graph();
        passes::optimize(&mut g).map_err(|e| TrainError::Graph(e.to_string()))?;
        Ok(g)
    }

    fn shape_of<'a>(&'a self, values: &'a [Option<Tensor>], t: TensorId) -> &'a [usize] {
        match &values[t] {
            Some(v) => &v.shape,
            None => &self.graph.tensors[t].shape,
        }
    }

    fn data_of<'a>(&'a self, values: &'a [Option<Tensor>], t: TensorId, node: &Node) -> Result<&'a [f32], TrainError> {
        if let Some(p) = self.slot[t] {
            return Ok(&self.params[p].value);
        }
        if let Some(v) = &values[t] {
            return Ok(&v.data);
        }
        self.graph
            .const_f32(t)
            .ok_or_else(|| TrainError::Graph(format!("node '{}': input '{}' has not been computed", node.name, self.graph.tensors[t].name)))
    }

    /// Run the network on `inputs` (one per graph input; any batch size).
    pub fn forward(&self, inputs: &[Tensor], mode: Mode) -> Result<Tape, TrainError> {
        self.forward_with(inputs, mode, &mut |_, _| Ok(()))
    }

    /// Like [`Net::forward`], calling `hook` on every node output right after it is computed;
    /// the hook may change the values in place (fake quantization in QAT), and the tape and
    /// later nodes see the changed values.
    pub fn forward_with(
        &self,
        inputs: &[Tensor],
        mode: Mode,
        hook: &mut dyn FnMut(TensorId, &mut Tensor) -> Result<(), TrainError>,
    ) -> Result<Tape, TrainError> {
        let g = &self.graph;
        if inputs.len() != g.inputs.len() {
            return Err(TrainError::Graph(format!("graph has {} inputs, {} given", g.inputs.len(), inputs.len())));
        }
        let shapes_in: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape.clone()).collect();
        let shapes = fp32::infer_shapes(g, &shapes_in).map_err(|e| TrainError::Graph(e.to_string()))?;
        let mut values: Vec<Option<Tensor>> = vec![None; g.tensors.len()];
        for (&id, x) in g.inputs.iter().zip(inputs) {
            if x.data.len() != shape_numel(&x.shape) {
                return Err(TrainError::Graph(format!("input '{}': data does not match shape {:?}", g.tensors[id].name, x.shape)));
            }
            values[id] = Some(x.clone());
        }
        let mut aux = Vec::with_capacity(g.nodes.len());
        for node in &g.nodes {
            let out = node.outputs[0];
            let (mut t, a) = self.exec(node, &values, shapes[out].clone(), mode)?;
            hook(out, &mut t)?;
            values[out] = Some(t);
            aux.push(a);
        }
        Ok(Tape { mode, values, aux })
    }

    /// The graph outputs of a tape.
    pub fn outputs<'t>(&self, tape: &'t Tape) -> Vec<&'t Tensor> {
        self.graph.outputs.iter().filter_map(|&o| tape.value(o)).collect()
    }

    fn exec(&self, node: &Node, values: &[Option<Tensor>], out_shape: Vec<usize>, mode: Mode) -> Result<(Tensor, Aux), TrainError> {
        let xi = node.inputs[0];
        let x = self.data_of(values, xi, node)?;
        let xs = self.shape_of(values, xi).to_vec();
        let threads = self.threads;
        let data = match &node.op {
            Op::Conv { window, group, act } => {
                let w = self.data_of(values, node.inputs[1], node)?;
                let ws = self.shape_of(values, node.inputs[1]);
                let b = match node.inputs.get(2) {
                    Some(&t) => Some(self.data_of(values, t, node)?),
                    None => None,
                };
                let s = conv_shape(&xs, ws, &out_shape, window, *group);
                kernels::conv_forward(x, w, b, &s, *act, threads)
            }
            Op::Dense { act } => {
                let w = self.data_of(values, node.inputs[1], node)?;
                let b = match node.inputs.get(2) {
                    Some(&t) => Some(self.data_of(values, t, node)?),
                    None => None,
                };
                kernels::dense_forward(x, w, b, xs[0], xs[1], out_shape[1], *act, threads)
            }
            Op::BatchNorm { eps } => {
                let p: Vec<&[f32]> = node.inputs[1..5].iter().map(|&t| self.data_of(values, t, node)).collect::<Result<_, _>>()?;
                let dims = (xs[0], xs[1], xs[2..].iter().product());
                let running = (mode == Mode::Eval).then_some((p[2], p[3]));
                let (y, st) = kernels::bn_forward(x, dims, p[0], p[1], *eps, running, threads);
                return Ok((Tensor { shape: out_shape, data: y }, Aux::Bn(st)));
            }
            Op::MaxPool { window, .. } => {
                let s = pool_shape(&xs, &out_shape, window);
                let (y, arg) = kernels::maxpool_forward(x, &s, threads);
                return Ok((Tensor { shape: out_shape, data: y }, Aux::Arg(arg)));
            }
            Op::Act(a) => {
                let a = *a;
                x.iter().map(|&v| a.apply(v)).collect()
            }
            Op::LeakyRelu { alpha } => x.iter().map(|&v| if v < 0.0 { v * alpha } else { v }).collect(),
            Op::HardSwish => x.iter().map(|&v| v * ((v + 3.0).clamp(0.0, 6.0) / 6.0)).collect(),
            Op::HardSigmoid { alpha, beta } => x.iter().map(|&v| (alpha * v + beta).clamp(0.0, 1.0)).collect(),
            Op::Sigmoid => x.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect(),
            Op::Tanh => x.iter().map(|&v| v.tanh()).collect(),
            Op::Reshape | Op::Identity => x.to_vec(),
            _ => {
                let ins: Vec<Tensor> = node
                    .inputs
                    .iter()
                    .map(|&t| Ok(Tensor { shape: self.shape_of(values, t).to_vec(), data: self.data_of(values, t, node)?.to_vec() }))
                    .collect::<Result<_, TrainError>>()?;
                let refs: Vec<&Tensor> = ins.iter().collect();
                let t = fp32::eval_node(&self.graph, node, &refs).map_err(|e| TrainError::Graph(e.to_string()))?;
                return Ok((t, Aux::None));
            }
        };
        Ok((Tensor { shape: out_shape, data }, Aux::None))
    }

    /// Update BatchNorm running statistics from a training-mode tape.
    pub fn update_running_stats(&mut self, tape: &Tape) {
        if tape.mode != Mode::Train {
            return;
        }
        let m = self.bn_momentum;
        for (i, node) in self.graph.nodes.iter().enumerate() {
            let (Op::BatchNorm { .. }, Aux::Bn(st)) = (&node.op, &tape.aux[i]) else { continue };
            for (k, src) in [(3, &st.mean), (4, &st.var_unbiased)] {
                if let Some(p) = self.slot[node.inputs[k]] {
                    for (r, &b) in self.params[p].value.iter_mut().zip(src.iter()) {
                        *r = (1.0 - m) * *r + m * b;
                    }
                }
            }
        }
    }

    /// Which tensors need a gradient: trainable parameters, the `wanted` tensors (e.g. graph
    /// inputs) and everything computed from them.
    fn needs_grad(&self, wanted: &[TensorId]) -> Vec<bool> {
        let mut need = vec![false; self.graph.tensors.len()];
        for p in &self.params {
            if p.trainable() {
                need[p.tensor] = true;
            }
        }
        for &t in wanted {
            need[t] = true;
        }
        for n in &self.graph.nodes {
            if n.inputs.iter().any(|&t| need[t]) {
                for &o in &n.outputs {
                    need[o] = true;
                }
            }
        }
        need
    }

    /// Backpropagate: `seeds` are gradients of the loss w.r.t. tensors of the tape (usually the
    /// output logits; intermediate tensors too, for feature losses). Parameter gradients are
    /// *added* to [`Param::grad`]; the gradients of the `wanted` tensors are returned (in order,
    /// `None` if the loss does not depend on them).
    pub fn backward(
        &mut self,
        tape: &Tape,
        seeds: Vec<(TensorId, Vec<f32>)>,
        wanted: &[TensorId],
    ) -> Result<Vec<Option<Vec<f32>>>, TrainError> {
        self.backward_with(tape, seeds, wanted, &mut |_, _| {})
    }

    /// Like [`Net::backward`], calling `hook` on the gradient of every node output before it
    /// is propagated into the node (the backward half of a [`Net::forward_with`] hook, e.g. the
    /// straight-through estimator's clipping mask).
    pub fn backward_with(
        &mut self,
        tape: &Tape,
        seeds: Vec<(TensorId, Vec<f32>)>,
        wanted: &[TensorId],
        hook: &mut dyn FnMut(TensorId, &mut [f32]),
    ) -> Result<Vec<Option<Vec<f32>>>, TrainError> {
        let need = self.needs_grad(wanted);
        let mut grads: Vec<Option<Vec<f32>>> = vec![None; self.graph.tensors.len()];
        for (t, g) in seeds {
            accumulate(&mut grads[t], g);
        }
        for (i, node) in self.graph.nodes.iter().enumerate().rev() {
            let out = node.outputs[0];
            let Some(mut dy) = grads[out].take() else { continue };
            if !node.inputs.iter().any(|&t| need[t]) {
                continue;
            }
            hook(out, &mut dy);
            let ig = self.node_backward(node, &tape.aux[i], tape, &dy, &need)?;
            for (k, g) in ig {
                let t = node.inputs[k];
                match self.slot[t] {
                    Some(p) => {
                        if self.params[p].trainable() {
                            for (a, b) in self.params[p].grad.iter_mut().zip(&g) {
                                *a += b;
                            }
                        }
                    }
                    None => accumulate(&mut grads[t], g),
                }
            }
            if wanted.contains(&out) {
                grads[out] = Some(dy);
            }
        }
        Ok(wanted.iter().map(|&t| grads[t].clone()).collect())
    }

    fn node_backward(&self, node: &Node, aux: &Aux, tape: &Tape, dy: &[f32], need: &[bool]) -> Result<Vec<(usize, Vec<f32>)>, TrainError> {
        let values = &tape.values;
        let ins = &node.inputs;
        let y = self.data_of(values, node.outputs[0], node)?;
        let ys = self.shape_of(values, node.outputs[0]).to_vec();
        let x = self.data_of(values, ins[0], node)?;
        let xs = self.shape_of(values, ins[0]).to_vec();
        let nd = |k: usize| ins.get(k).is_some_and(|&t| need[t]);
        let threads = self.threads;
        let mut out = Vec::new();
        match &node.op {
            Op::Conv { window, group, act } => {
                let w = self.data_of(values, ins[1], node)?;
                let s = conv_shape(&xs, self.shape_of(values, ins[1]), &ys, window, *group);
                let r = kernels::conv_backward(x, w, y, dy, &s, *act, (nd(0), nd(1), nd(2)), threads);
                push(&mut out, 0, r.dx);
                push(&mut out, 1, r.dw);
                push(&mut out, 2, r.db);
            }
            Op::Dense { act } => {
                let w = self.data_of(values, ins[1], node)?;
                let dims = (xs[0], xs[1], ys[1]);
                let (dx, dw, db) = kernels::dense_backward(x, w, y, dy, dims, *act, (nd(0), nd(1), nd(2)), threads);
                push(&mut out, 0, dx);
                push(&mut out, 1, dw);
                push(&mut out, 2, db);
            }
            Op::Add { act } | Op::Mul { act } => {
                let dz_owned = kernels::act_backward(dy, y, *act);
                let dz = dz_owned.as_deref().unwrap_or(dy);
                let bs = self.shape_of(values, ins[1]).to_vec();
                if matches!(node.op, Op::Add { .. }) {
                    for (k, s) in [(0, &xs), (1, &bs)] {
                        if nd(k) {
                            out.push((k, kernels::reduce_to(dz, &ys, s)));
                        }
                    }
                } else {
                    let b = self.data_of(values, ins[1], node)?;
                    let (sa, sb) = (kernels::bcast_strides(&xs, &ys), kernels::bcast_strides(&bs, &ys));
                    let (mut da, mut db) = (vec![0.0f32; x.len()], vec![0.0f32; b.len()]);
                    kernels::for_each_bcast(&ys, &sa, &sb, |o, ia, ib| {
                        da[ia] += dz[o] * b[ib];
                        db[ib] += dz[o] * x[ia];
                    });
                    if nd(0) {
                        out.push((0, da));
                    }
                    if nd(1) {
                        out.push((1, db));
                    }
                }
            }
            Op::Sub => {
                let bs = self.shape_of(values, ins[1]).to_vec();
                if nd(0) {
                    out.push((0, kernels::reduce_to(dy, &ys, &xs)));
                }
                if nd(1) {
                    out.push((1, kernels::reduce_to(dy, &ys, &bs).into_iter().map(|v| -v).collect()));
                }
            }
            Op::Div => {
                let b = self.data_of(values, ins[1], node)?;
                let bs = self.shape_of(values, ins[1]).to_vec();
                let (sa, sb) = (kernels::bcast_strides(&xs, &ys), kernels::bcast_strides(&bs, &ys));
                let (mut da, mut db) = (vec![0.0f32; x.len()], vec![0.0f32; b.len()]);
                kernels::for_each_bcast(&ys, &sa, &sb, |o, ia, ib| {
                    da[ia] += dy[o] / b[ib];
                    db[ib] -= dy[o] * y[o] / b[ib];
                });
                if nd(0) {
                    out.push((0, da));
                }
                if nd(1) {
                    out.push((1, db));
                }
            }
            Op::Act(a) => out.push((0, kernels::act_backward(dy, y, *a).unwrap_or_else(|| dy.to_vec()))),
            Op::LeakyRelu { alpha } => out.push((0, dy.iter().zip(x).map(|(&g, &v)| if v < 0.0 { g * alpha } else { g }).collect())),
            Op::HardSwish => out.push((
                0,
                dy.iter()
                    .zip(x)
                    .map(|(&g, &v)| {
                        if v <= -3.0 {
                            0.0
                        } else if v >= 3.0 {
                            g
                        } else {
                            g * (2.0 * v + 3.0) / 6.0
                        }
                    })
                    .collect(),
            )),
            Op::HardSigmoid { alpha, beta } => out.push((
                0,
                dy.iter()
                    .zip(x)
                    .map(|(&g, &v)| {
                        let t = alpha * v + beta;
                        if t > 0.0 && t < 1.0 {
                            g * alpha
                        } else {
                            0.0
                        }
                    })
                    .collect(),
            )),
            Op::Sigmoid => out.push((0, dy.iter().zip(y).map(|(&g, &s)| g * s * (1.0 - s)).collect())),
            Op::Tanh => out.push((0, dy.iter().zip(y).map(|(&g, &t)| g * (1.0 - t * t)).collect())),
            Op::BatchNorm { .. } => {
                let Aux::Bn(st) = aux else { return Err(internal(node, "missing BatchNorm statistics")) };
                let gamma = self.data_of(values, ins[1], node)?;
                let dims = (xs[0], xs[1], xs[2..].iter().product());
                let (dx, dg, db) = kernels::bn_backward(x, dy, dims, gamma, st, tape.mode == Mode::Train, nd(0), threads);
                push(&mut out, 0, dx);
                if nd(1) {
                    out.push((1, dg));
                }
                if nd(2) {
                    out.push((2, db));
                }
            }
            Op::MaxPool { window, .. } => {
                let Aux::Arg(arg) = aux else { return Err(internal(node, "missing MaxPool indices")) };
                out.push((0, kernels::maxpool_backward(dy, arg, &pool_shape(&xs, &ys, window), threads)));
            }
            Op::AvgPool { window, count_include_pad, .. } => {
                out.push((0, kernels::avgpool_backward(dy, &pool_shape(&xs, &ys, window), *count_include_pad, threads)));
            }
            Op::GlobalAvgPool => {
                let inner: usize = xs[2..].iter().product();
                let mut dx = vec![0.0f32; x.len()];
                if inner > 0 {
                    for (row, &g) in dx.chunks_mut(inner).zip(dy) {
                        row.fill(g / inner as f32);
                    }
                }
                out.push((0, dx));
            }
            Op::ReduceMean { axes, .. } => {
                let kept: Vec<usize> = xs.iter().enumerate().map(|(i, &d)| if axes.contains(&i) { 1 } else { d }).collect();
                let count: usize = axes.iter().map(|&a| xs[a]).product();
                let inv = 1.0 / count.max(1) as f32;
                let sk = kernels::bcast_strides(&kept, &xs);
                let zero = vec![0; xs.len()];
                let mut dx = vec![0.0f32; x.len()];
                kernels::for_each_bcast(&xs, &sk, &zero, |o, ik, _| dx[o] = dy[ik] * inv);
                out.push((0, dx));
            }
            Op::Reshape | Op::Identity => out.push((0, dy.to_vec())),
            Op::Softmax { axis } => {
                let d = ys[*axis];
                let inner: usize = ys[*axis + 1..].iter().product();
                let outer: usize = ys[..*axis].iter().product();
                let mut dx = vec![0.0f32; y.len()];
                for o in 0..outer {
                    for i in 0..inner {
                        let base = o * d * inner + i;
                        let dot: f32 = (0..d).map(|k| dy[base + k * inner] * y[base + k * inner]).sum();
                        for k in 0..d {
                            let j = base + k * inner;
                            dx[j] = y[j] * (dy[j] - dot);
                        }
                    }
                }
                out.push((0, dx));
            }
            Op::Transpose { perm } => {
                let st = kernels::contiguous_strides(&xs);
                let pst: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
                let zero = vec![0; ys.len()];
                let mut dx = vec![0.0f32; x.len()];
                kernels::for_each_bcast(&ys, &pst, &zero, |o, ix, _| dx[ix] = dy[o]);
                out.push((0, dx));
            }
            Op::Slice { starts, steps } => {
                let st = kernels::contiguous_strides(&xs);
                let base: usize = starts.iter().zip(&st).map(|(a, b)| a * b).sum();
                let sst: Vec<usize> = steps.iter().zip(&st).map(|(a, b)| a * b).collect();
                let zero = vec![0; ys.len()];
                let mut dx = vec![0.0f32; x.len()];
                kernels::for_each_bcast(&ys, &sst, &zero, |o, ix, _| dx[base + ix] += dy[o]);
                out.push((0, dx));
            }
            Op::Ext(e) => {
                let mut views = Vec::with_capacity(ins.len());
                for &t in ins {
                    views.push(View { shape: self.shape_of(values, t), data: self.data_of(values, t, node)? });
                }
                let need_k: Vec<bool> = (0..ins.len()).map(nd).collect();
                let grads = e
                    .def()
                    .backward(&views, View { shape: &ys, data: y }, dy, &need_k)
                    .map_err(|m| TrainError::Graph(format!("node '{}': {m}", node.name)))?;
                out.extend(grads);
            }
        }
        Ok(out)
    }
}

fn internal(node: &Node, m: &str) -> TrainError {
    TrainError::Graph(format!("node '{}' ({}): internal: {m}", node.name, node.op.name()))
}

fn push(out: &mut Vec<(usize, Vec<f32>)>, k: usize, g: Option<Vec<f32>>) {
    if let Some(g) = g {
        out.push((k, g));
    }
}

fn accumulate(slot: &mut Option<Vec<f32>>, g: Vec<f32>) {
    match slot {
        Some(a) => a.iter_mut().zip(&g).for_each(|(a, b)| *a += b),
        None => *slot = Some(g),
    }
}

fn conv_shape(xs: &[usize], ws: &[usize], ys: &[usize], window: &crate::ir::Window, group: usize) -> ConvShape {
    ConvShape { n: xs[0], c: xs[1], h: xs[2], w: xs[3], o: ws[0], group, kh: ws[2], kw: ws[3], oh: ys[2], ow: ys[3], win: *window }
}

fn pool_shape(xs: &[usize], ys: &[usize], window: &crate::ir::Window) -> PoolShape {
    PoolShape { planes: xs[0] * xs[1], h: xs[2], w: xs[3], oh: ys[2], ow: ys[3], win: *window }
}
