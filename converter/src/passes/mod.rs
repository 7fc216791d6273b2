//! Graph passes: folding, fusion, shape inference.
//!
//! [`optimize`] runs, in order: Identity/Dropout removal, constant folding (with the FP32
//! engine), folding of constant per-channel Add/Sub/Mul/Div into the preceding Conv /
//! ConvTranspose / Dense (bias and weight scale), BatchNorm folding, HardSwish pattern fusion,
//! Relu/Clip fusion into producers, dead-node removal (with the reshapes of 1-D ops merged and
//! moved past elementwise ops first, [`sink_reshapes`]); then the constant per-channel
//! Mul/Add/Sub/Div and BatchNorm left become `ChannelAffine` ([`affine_to_channel`]); tensor
//! compaction and a full shape check.
//! Every pass is also public on its own; each keeps the graph's outputs numerically equal (to
//! float rounding) and returns whether it changed anything.

use std::fmt;

use crate::fp32::{self, Tensor};
use crate::ir::{Activation, ConstData, Graph, Node, Op, TensorId};

mod affine;
mod reshape;
pub use affine::affine_to_channel;
pub use reshape::sink_reshapes;

/// A pass failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassError {
    /// Pass that failed.
    pub pass: &'static str,
    /// What was wrong (names the node/tensor).
    pub message: String,
}

impl fmt::Display for PassError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pass {}: {}", self.pass, self.message)
    }
}

impl std::error::Error for PassError {}

fn err(pass: &'static str, message: impl Into<String>) -> PassError {
    PassError { pass, message: message.into() }
}

/// Run every pass (see the module docs) and check shapes.
pub fn optimize(g: &mut Graph) -> Result<(), PassError> {
    check_shapes(g)?;
    for _ in 0..8 {
        let mut changed = remove_identities(g)?;
        changed |= fold_constants(g)?;
        changed |= sink_reshapes(g)?;
        changed |= remove_dead_nodes(g)?;
        changed |= fold_affine(g)?;
        changed |= fold_batchnorm(g)?;
        changed |= fuse_hardswish(g)?;
        changed |= fuse_activations(g)?;
        changed |= remove_dead_nodes(g)?;
        if !changed {
            break;
        }
    }
    affine_to_channel(g)?;
    compact(g);
    check_shapes(g)
}

/// Number of uses of every tensor (node inputs, with multiplicity, plus graph outputs).
fn use_counts(g: &Graph) -> Vec<usize> {
    let mut u = vec![0usize; g.tensors.len()];
    for n in &g.nodes {
        for &t in &n.inputs {
            if let Some(c) = u.get_mut(t) {
                *c += 1;
            }
        }
    }
    for &t in &g.outputs {
        if let Some(c) = u.get_mut(t) {
            *c += 1;
        }
    }
    u
}

/// Producer node index of every tensor.
fn producers(g: &Graph) -> Vec<Option<usize>> {
    let mut p = vec![None; g.tensors.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        for &o in &n.outputs {
            if let Some(s) = p.get_mut(o) {
                *s = Some(i);
            }
        }
    }
    p
}

fn replace_uses(g: &mut Graph, old: TensorId, new: TensorId) {
    for n in &mut g.nodes {
        for t in &mut n.inputs {
            if *t == old {
                *t = new;
            }
        }
    }
    for t in &mut g.outputs {
        if *t == old {
            *t = new;
        }
    }
}

fn retain_nodes(g: &mut Graph, keep: &[bool]) {
    let mut i = 0;
    g.nodes.retain(|_| {
        let k = keep[i];
        i += 1;
        k
    });
}

/// Whether a constant's data length matches its shape.
fn constant_shape_ok(shape: &[usize], len: usize) -> bool {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) == Some(len)
}

fn const_tensor(g: &Graph, id: TensorId) -> Option<Tensor> {
    let t = g.tensors.get(id)?;
    let data = match t.data.as_ref()? {
        ConstData::F32(v) => v.clone(),
        ConstData::I64(v) => v.iter().map(|&x| x as f32).collect(),
    };
    (data.len() == t.numel()).then(|| Tensor { shape: t.shape.clone(), data })
}

/// Remove Identity nodes (Identity/Dropout import as these): consumers read the input directly.
/// An Identity producing a graph output renames its producer's output instead, when possible.
pub fn remove_identities(g: &mut Graph) -> Result<bool, PassError> {
    let mut changed = false;
    let mut i = 0;
    while i < g.nodes.len() {
        if g.nodes[i].op != Op::Identity || g.nodes[i].inputs.len() != 1 || g.nodes[i].outputs.len() != 1 {
            i += 1;
            continue;
        }
        let (x, y) = (g.nodes[i].inputs[0], g.nodes[i].outputs[0]);
        let y_is_out = g.outputs.contains(&y);
        if !y_is_out {
            replace_uses(g, y, x);
            g.nodes.remove(i);
            changed = true;
            continue;
        }
        let x_fixed = g.outputs.contains(&x) || g.inputs.contains(&x) || g.tensors.get(x).is_none_or(|t| t.data.is_some());
        let prod = g.nodes[..i].iter().position(|n| n.outputs.contains(&x));
        match prod {
            Some(_) if !x_fixed => {
                // The producer writes `y` directly; everything that read `x` reads `y`.
                for n in &mut g.nodes {
                    for t in n.inputs.iter_mut().chain(n.outputs.iter_mut()) {
                        if *t == x {
                            *t = y;
                        }
                    }
                }
                g.nodes.remove(i);
                changed = true;
            }
            _ => i += 1,
        }
    }
    Ok(changed)
}

/// Evaluate every node whose inputs are all constants and replace it by a constant.
pub fn fold_constants(g: &mut Graph) -> Result<bool, PassError> {
    let mut keep = vec![true; g.nodes.len()];
    let mut changed = false;
    for (i, k) in keep.iter_mut().enumerate() {
        let node = &g.nodes[i];
        if node.inputs.is_empty() || node.outputs.len() != 1 {
            continue;
        }
        let ins: Option<Vec<Tensor>> = node.inputs.iter().map(|&t| const_tensor(g, t)).collect();
        let Some(ins) = ins else { continue };
        let refs: Vec<&Tensor> = ins.iter().collect();
        let out = fp32::eval_node(g, node, &refs).map_err(|e| err("fold_constants", e.to_string()))?;
        let oid = node.outputs[0];
        let t = &mut g.tensors[oid];
        t.shape = out.shape;
        t.data = Some(ConstData::F32(out.data));
        *k = false;
        changed = true;
    }
    retain_nodes(g, &keep);
    Ok(changed)
}

/// For a per-output-channel constant `c` broadcast against the output of `p`, the channel values
/// (length `channels`), or `None` if `c` is not of that form.
fn per_channel(g: &Graph, c: TensorId, out: &[usize]) -> Option<Vec<f32>> {
    let t = g.tensors.get(c)?;
    let v = const_tensor(g, c)?.data;
    if out.len() < 2 || t.shape.len() > out.len() {
        return None;
    }
    let channels = out[1];
    let pad = out.len() - t.shape.len();
    let dims: Vec<usize> = std::iter::repeat_n(1, pad).chain(t.shape.iter().copied()).collect();
    let ok = dims.iter().enumerate().all(|(i, &d)| d == 1 || (i == 1 && d == channels));
    if !ok {
        return None;
    }
    Some(if v.len() == 1 { vec![v[0]; channels] } else { v })
}

fn is_linear(op: &Op) -> bool {
    match op {
        Op::Conv { act: Activation::None, .. } | Op::Dense { act: Activation::None } => true,
        Op::Ext(e) => e.def().is_linear() && e.def().act() == Some(Activation::None),
        _ => false,
    }
}

fn set_act(op: &mut Op, a: Activation) {
    match op {
        Op::Conv { act, .. } | Op::Dense { act } | Op::Add { act } | Op::Mul { act } => *act = a,
        Op::Ext(e) => {
            if let Some(n) = e.def().with_act(a) {
                *op = n;
            }
        }
        _ => {}
    }
}

fn get_act(op: &Op) -> Option<Activation> {
    match op {
        Op::Conv { act, .. } | Op::Dense { act } | Op::Add { act } | Op::Mul { act } => Some(*act),
        Op::Ext(e) => e.def().act(),
        _ => None,
    }
}

/// Output channel of every weight element of a linear node (Conv `[O,…]`, Dense `[N,K]`,
/// ConvTranspose `[C, O/g, …]`).
fn weight_channel(op: &Op, wshape: &[usize], idx: usize) -> usize {
    let inner: usize = wshape[1..].iter().product();
    match op {
        Op::Ext(e) => e.def().weight_channel(wshape, idx),
        _ => idx / inner.max(1),
    }
}

/// Replace node `p`'s weight by `w·scale[ch]` and its bias by `bias·scale[ch] + shift[ch]`
/// (new constant tensors, so shared weights stay intact).
fn rescale_linear(g: &mut Graph, p: usize, scale: Option<&[f32]>, shift: &[f32]) -> Result<(), PassError> {
    let node = g.nodes[p].clone();
    let channels = shift.len();
    let wid = node.inputs[1];
    let mut w = const_tensor(g, wid).ok_or_else(|| err("fold", format!("node '{}': weight is not constant", node.name)))?;
    let old_bias = match node.inputs.get(2) {
        Some(&b) => Some(const_tensor(g, b).ok_or_else(|| err("fold", format!("node '{}': bias is not constant", node.name)))?.data),
        None => None,
    };
    if let Some(s) = scale {
        for (i, v) in w.data.iter_mut().enumerate() {
            *v *= s[weight_channel(&node.op, &w.shape, i)];
        }
    }
    let mut bias = old_bias.unwrap_or_else(|| vec![0.0; channels]);
    if bias.len() != channels {
        return Err(err("fold", format!("node '{}': bias has {} values for {channels} channels", node.name, bias.len())));
    }
    for c in 0..channels {
        bias[c] = bias[c] * scale.map_or(1.0, |s| s[c]) + shift[c];
    }
    let wname = format!("{}__w", node.name);
    let bname = format!("{}__b", node.name);
    if scale.is_some() {
        let nw = g.add_tensor(wname, w.shape, Some(ConstData::F32(w.data)));
        g.nodes[p].inputs[1] = nw;
    }
    let nb = g.add_tensor(bname, vec![channels], Some(ConstData::F32(bias)));
    if g.nodes[p].inputs.len() > 2 {
        g.nodes[p].inputs[2] = nb;
    } else {
        g.nodes[p].inputs.push(nb);
    }
    Ok(())
}

fn linear_channels(g: &Graph, node: &Node) -> Option<usize> {
    let w = g.tensors.get(*node.inputs.get(1)?)?;
    if w.data.is_none() || node.inputs.get(2).is_some_and(|&b| g.tensors.get(b).is_none_or(|t| t.data.is_none())) {
        return None;
    }
    let out = g.tensors.get(node.outputs[0])?;
    out.shape.get(1).copied()
}

/// Fold a constant per-channel Add/Sub (→ bias) or Mul/Div (→ weight and bias scale) that
/// follows a Conv/ConvTranspose/Dense whose output has no other consumer.
pub fn fold_affine(g: &mut Graph) -> Result<bool, PassError> {
    let mut changed = false;
    loop {
        let uses = use_counts(g);
        let prod = producers(g);
        let mut found = None;
        for (i, n) in g.nodes.iter().enumerate() {
            let (is_add, is_sub, is_mul, is_div) =
                (matches!(n.op, Op::Add { .. }), n.op == Op::Sub, matches!(n.op, Op::Mul { .. }), n.op == Op::Div);
            if !(is_add || is_sub || is_mul || is_div) || n.inputs.len() != 2 {
                continue;
            }
            for side in 0..2 {
                if side == 1 && (is_sub || is_div) {
                    break; // c - x and c / x are not affine in x
                }
                let (t, c) = (n.inputs[side], n.inputs[1 - side]);
                let Some(p) = prod.get(t).copied().flatten() else { continue };
                if uses[t] != 1 || !is_linear(&g.nodes[p].op) || g.tensors[t].data.is_some() {
                    continue;
                }
                let Some(ch) = linear_channels(g, &g.nodes[p]) else { continue };
                let out_shape = g.tensors[t].shape.clone();
                if g.tensors[n.outputs[0]].shape != out_shape {
                    continue;
                }
                let Some(v) = per_channel(g, c, &out_shape) else { continue };
                if v.len() != ch {
                    continue;
                }
                if is_div && v.contains(&0.0) {
                    return Err(err("fold_affine", format!("node '{}' (Div) divides by a constant 0", n.name)));
                }
                found = Some((i, p, v, is_add, is_sub, is_mul));
                break;
            }
            if found.is_some() {
                break;
            }
        }
        let Some((i, p, v, is_add, is_sub, is_mul)) = found else { break };
        if is_add || is_sub {
            let shift: Vec<f32> = if is_sub { v.iter().map(|x| -x).collect() } else { v };
            rescale_linear(g, p, None, &shift)?;
        } else {
            let scale: Vec<f32> = if is_mul { v } else { v.iter().map(|x| 1.0 / x).collect() };
            let zeros = vec![0.0; scale.len()];
            rescale_linear(g, p, Some(&scale), &zeros)?;
        }
        let act = get_act(&g.nodes[i].op).unwrap_or_default();
        set_act(&mut g.nodes[p].op, act);
        g.nodes[p].outputs = g.nodes[i].outputs.clone();
        g.nodes.remove(i);
        changed = true;
    }
    Ok(changed)
}

/// Fold an inference BatchNorm into the preceding Conv/ConvTranspose/Dense when the latter's
/// output has no other consumer.
pub fn fold_batchnorm(g: &mut Graph) -> Result<bool, PassError> {
    let mut changed = false;
    loop {
        let uses = use_counts(g);
        let prod = producers(g);
        let mut found = None;
        for (i, n) in g.nodes.iter().enumerate() {
            let Op::BatchNorm { eps } = n.op else { continue };
            let t = n.inputs[0];
            let Some(p) = prod.get(t).copied().flatten() else { continue };
            if uses[t] != 1 || !is_linear(&g.nodes[p].op) {
                continue;
            }
            let Some(ch) = linear_channels(g, &g.nodes[p]) else { continue };
            let params: Option<Vec<Vec<f32>>> = n.inputs[1..].iter().map(|&id| const_tensor(g, id).map(|t| t.data)).collect();
            let Some(params) = params else { continue };
            if params.len() != 4 || params.iter().any(|v| v.len() != ch) {
                continue;
            }
            found = Some((i, p, eps, params));
            break;
        }
        let Some((i, p, eps, params)) = found else { break };
        let (scale, beta, mean, var) = (&params[0], &params[1], &params[2], &params[3]);
        let s: Vec<f32> = (0..scale.len()).map(|c| scale[c] / (var[c] + eps).sqrt()).collect();
        let shift: Vec<f32> = (0..s.len()).map(|c| beta[c] - mean[c] * s[c]).collect();
        rescale_linear(g, p, Some(&s), &shift)?;
        g.nodes[p].outputs = g.nodes[i].outputs.clone();
        g.nodes.remove(i);
        changed = true;
    }
    Ok(changed)
}

/// Fuse standalone Relu/Clip into a Conv/ConvTranspose/Dense/Add/Mul producer without another
/// consumer and without an activation of its own.
pub fn fuse_activations(g: &mut Graph) -> Result<bool, PassError> {
    let mut changed = false;
    loop {
        let uses = use_counts(g);
        let prod = producers(g);
        let mut found = None;
        for (i, n) in g.nodes.iter().enumerate() {
            let Op::Act(a) = n.op else { continue };
            let t = n.inputs[0];
            let Some(p) = prod.get(t).copied().flatten() else { continue };
            if uses[t] != 1 || get_act(&g.nodes[p].op) != Some(Activation::None) {
                continue;
            }
            found = Some((i, p, a));
            break;
        }
        let Some((i, p, a)) = found else { break };
        set_act(&mut g.nodes[p].op, a);
        g.nodes[p].outputs = g.nodes[i].outputs.clone();
        g.nodes.remove(i);
        changed = true;
    }
    Ok(changed)
}

fn scalar_const(g: &Graph, id: TensorId) -> Option<f32> {
    let t = const_tensor(g, id)?;
    (t.data.len() == 1).then(|| t.data[0])
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

struct Matcher<'g> {
    g: &'g Graph,
    prod: Vec<Option<usize>>,
    uses: Vec<usize>,
}

impl Matcher<'_> {
    /// Producer of `t` if `t` is an intermediate with exactly one use.
    fn private(&self, t: TensorId) -> Option<&Node> {
        if self.uses.get(t) != Some(&1) || self.g.outputs.contains(&t) {
            return None;
        }
        self.g.nodes.get(self.prod.get(t).copied().flatten()?)
    }

    /// `t = clip(x + 3, 0, 6)` → x.
    fn relu6_plus3(&self, t: TensorId) -> Option<TensorId> {
        let n = self.private(t)?;
        let relu6 = Activation::Clip { min: 0.0, max: 6.0 };
        match n.op {
            Op::Act(a) if a == relu6 => {
                let add = self.private(n.inputs[0])?;
                if add.op != (Op::Add { act: Activation::None }) {
                    return None;
                }
                self.plus(add, 3.0)
            }
            Op::Add { act } if act == relu6 => self.plus(n, 3.0),
            _ => None,
        }
    }

    /// For an Add node `x + c` with scalar constant `c == v`, return x.
    fn plus(&self, add: &Node, v: f32) -> Option<TensorId> {
        for side in 0..2 {
            if scalar_const(self.g, add.inputs[1 - side]).is_some_and(|c| close(c, v)) && self.g.tensors[add.inputs[side]].data.is_none() {
                return Some(add.inputs[side]);
            }
        }
        None
    }

    /// `t = hard_sigmoid(x)` as `clip(x+3,0,6)/6`, `clip(x+3,0,6)·(1/6)` or HardSigmoid(1/6, 0.5).
    fn hsig(&self, t: TensorId) -> Option<TensorId> {
        let n = self.private(t)?;
        match n.op {
            Op::HardSigmoid { alpha, beta } if close(alpha, 1.0 / 6.0) && close(beta, 0.5) => Some(n.inputs[0]),
            Op::Div if scalar_const(self.g, n.inputs[1]).is_some_and(|c| close(c, 6.0)) => self.relu6_plus3(n.inputs[0]),
            Op::Mul { act: Activation::None } => (0..2).find_map(|s| {
                scalar_const(self.g, n.inputs[1 - s]).is_some_and(|c| close(c, 1.0 / 6.0)).then(|| self.relu6_plus3(n.inputs[s])).flatten()
            }),
            _ => None,
        }
    }

    /// Whether node `n` computes hardswish; returns its x.
    fn hardswish(&self, n: &Node) -> Option<TensorId> {
        match n.op {
            // x · hsig(x)
            Op::Mul { act: Activation::None } => {
                for s in 0..2 {
                    if let Some(x) = self.hsig(n.inputs[1 - s]) {
                        if x == n.inputs[s] {
                            return Some(x);
                        }
                    }
                }
                // (x · relu6(x+3)) · (1/6)
                for s in 0..2 {
                    if scalar_const(self.g, n.inputs[1 - s]).is_some_and(|c| close(c, 1.0 / 6.0)) {
                        if let Some(x) = self.x_times_relu6(n.inputs[s]) {
                            return Some(x);
                        }
                    }
                }
                None
            }
            // (x · relu6(x+3)) / 6
            Op::Div if scalar_const(self.g, n.inputs[1]).is_some_and(|c| close(c, 6.0)) => self.x_times_relu6(n.inputs[0]),
            _ => None,
        }
    }

    fn x_times_relu6(&self, t: TensorId) -> Option<TensorId> {
        let m = self.private(t)?;
        if m.op != (Op::Mul { act: Activation::None }) {
            return None;
        }
        (0..2).find_map(|s| self.relu6_plus3(m.inputs[1 - s]).filter(|&x| x == m.inputs[s]))
    }
}

/// Replace decomposed hard-swish patterns (`x·clip(x+3,0,6)/6` in its usual arrangements and
/// `x·HardSigmoid(x)` with alpha 1/6, beta 0.5) by [`Op::HardSwish`]. Intermediate nodes are
/// left for dead-node removal.
pub fn fuse_hardswish(g: &mut Graph) -> Result<bool, PassError> {
    let mut changed = false;
    loop {
        let m = Matcher { g, prod: producers(g), uses: use_counts(g) };
        let hit = g.nodes.iter().enumerate().find_map(|(i, n)| m.hardswish(n).map(|x| (i, x)));
        let Some((i, x)) = hit else { break };
        g.nodes[i].op = Op::HardSwish;
        g.nodes[i].inputs = vec![x];
        changed = true;
        remove_dead_nodes(g)?;
    }
    Ok(changed)
}

/// Remove nodes none of whose outputs reach a graph output.
pub fn remove_dead_nodes(g: &mut Graph) -> Result<bool, PassError> {
    let mut live = vec![false; g.tensors.len()];
    for &o in &g.outputs {
        if let Some(l) = live.get_mut(o) {
            *l = true;
        }
    }
    let mut keep = vec![false; g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate().rev() {
        if n.outputs.iter().any(|&o| live.get(o) == Some(&true)) {
            keep[i] = true;
            for &t in &n.inputs {
                if let Some(l) = live.get_mut(t) {
                    *l = true;
                }
            }
        }
    }
    let changed = keep.iter().any(|k| !k);
    retain_nodes(g, &keep);
    Ok(changed)
}

/// Drop tensors no node, input or output refers to, renumber the rest, and turn integer
/// constants still in use into f32.
pub fn compact(g: &mut Graph) {
    let mut used = vec![false; g.tensors.len()];
    for &t in g.inputs.iter().chain(&g.outputs).chain(g.nodes.iter().flat_map(|n| n.inputs.iter().chain(&n.outputs))) {
        if let Some(u) = used.get_mut(t) {
            *u = true;
        }
    }
    let mut map = vec![usize::MAX; g.tensors.len()];
    let mut tensors = Vec::new();
    for (i, t) in std::mem::take(&mut g.tensors).into_iter().enumerate() {
        if used[i] {
            map[i] = tensors.len();
            let mut t = t;
            if let Some(ConstData::I64(v)) = &t.data {
                t.data = Some(ConstData::F32(v.iter().map(|&x| x as f32).collect()));
            }
            tensors.push(t);
        }
    }
    g.tensors = tensors;
    let remap = |t: &mut TensorId| {
        if let Some(&m) = map.get(*t) {
            *t = m;
        }
    };
    g.inputs.iter_mut().for_each(remap);
    g.outputs.iter_mut().for_each(remap);
    for n in &mut g.nodes {
        n.inputs.iter_mut().for_each(remap);
        n.outputs.iter_mut().for_each(remap);
    }
}

/// Check the graph is well formed: ids in range, topological order, one producer per tensor,
/// constants consistent with their shapes, and every node output shape equal to the shape
/// inferred from its inputs.
pub fn check_shapes(g: &Graph) -> Result<(), PassError> {
    const P: &str = "check_shapes";
    let nt = g.tensors.len();
    let mut defined = vec![false; nt];
    for (i, t) in g.tensors.iter().enumerate() {
        if let Some(d) = &t.data {
            if d.len() != t.numel() {
                return Err(err(P, format!("constant '{}' has shape {:?} but {} values", t.name, t.shape, d.len())));
            }
            defined[i] = true;
        }
    }
    for &i in &g.inputs {
        *defined.get_mut(i).ok_or_else(|| err(P, format!("input id {i} out of range")))? = true;
    }
    for n in &g.nodes {
        if n.outputs.len() != 1 {
            return Err(err(P, format!("node '{}' ({}) must have exactly one output", n.name, n.op.name())));
        }
        for &t in &n.inputs {
            if !*defined.get(t).ok_or_else(|| err(P, format!("node '{}': input id {t} out of range", n.name)))? {
                return Err(err(P, format!("node '{}' reads '{}' before it is computed", n.name, g.tensors[t].name)));
            }
        }
        let o = n.outputs[0];
        let d = defined.get_mut(o).ok_or_else(|| err(P, format!("node '{}': output id {o} out of range", n.name)))?;
        if *d {
            return Err(err(P, format!("node '{}' writes '{}' which is already defined", n.name, g.tensors[o].name)));
        }
        *d = true;
    }
    for &o in &g.outputs {
        if !defined.get(o).copied().unwrap_or(false) {
            return Err(err(P, format!("graph output id {o} is never computed")));
        }
    }
    let ins: Vec<Vec<usize>> = g.inputs.iter().map(|&i| g.tensors[i].shape.clone()).collect();
    let shapes = fp32::infer_shapes(g, &ins).map_err(|e| err(P, e.to_string()))?;
    for n in &g.nodes {
        let o = n.outputs[0];
        if shapes[o] != g.tensors[o].shape {
            return Err(err(
                P,
                format!(
                    "node '{}' ({}): output '{}' is declared {:?} but inferred {:?}",
                    n.name,
                    n.op.name(),
                    g.tensors[o].name,
                    g.tensors[o].shape,
                    shapes[o]
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
