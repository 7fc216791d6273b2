//! Reshape clean-up for 1-D networks: the importer maps a 1-D op on `[N, C, L]` to its 2-D form
//! on `[N, C, 1, L]` between two reshapes (see `onnx::import::oned`). This pass merges chains of
//! reshapes (dropping those that restore their input's shape) and moves a reshape that only
//! drops the `H = 1` axis past the elementwise ops after it (activations, BatchNorm, and
//! Add/Sub/Mul/Div of two such tensors or with a constant), so consecutive 1-D ops meet in 2-D
//! and the usual folding and fusion passes see them as a 2-D network. A mean over the axes after
//! the channels becomes a global average pool first.

use super::{constant_shape_ok, err, producers, PassError};
use crate::ir::{ConstData, Graph, Node, Op, TensorId};

/// `[N, C, L]` → `[N, C, 1, L]`.
fn lift(s: &[usize]) -> Option<Vec<usize>> {
    match *s {
        [n, c, l] => Some(vec![n, c, 1, l]),
        _ => None,
    }
}

fn elementwise(op: &Op) -> bool {
    matches!(
        op,
        Op::Act(_)
            | Op::LeakyRelu { .. }
            | Op::HardSwish
            | Op::HardSigmoid { .. }
            | Op::Sigmoid
            | Op::Tanh
            | Op::BatchNorm { .. }
            | Op::Add { .. }
            | Op::Sub
            | Op::Mul { .. }
            | Op::Div
    )
}

/// Point every Reshape whose input comes from another Reshape at the first one's input; a
/// Reshape that then restores its input's shape becomes an Identity.
fn merge_chains(g: &mut Graph) -> bool {
    let prod = producers(g);
    let mut changed = false;
    for i in 0..g.nodes.len() {
        if g.nodes[i].op != Op::Reshape {
            continue;
        }
        let x = g.nodes[i].inputs[0];
        let Some(p) = prod.get(x).copied().flatten() else { continue };
        if g.nodes[p].op != Op::Reshape {
            continue;
        }
        let src = g.nodes[p].inputs[0];
        g.nodes[i].inputs[0] = src;
        if g.tensors[src].shape == g.tensors[g.nodes[i].outputs[0]].shape {
            g.nodes[i].op = Op::Identity;
        }
        changed = true;
    }
    changed
}

/// The 2-D form of operand `t` of an elementwise node whose output is `[N, C, L]`: the input
/// of the Reshape that made it, or a lifted constant; `None` when it has neither.
fn lifted_operand(g: &mut Graph, prod: &[Option<usize>], t: TensorId, out4: &[usize]) -> Option<TensorId> {
    if let Some(p) = prod.get(t).copied().flatten() {
        let n = &g.nodes[p];
        if n.op == Op::Reshape && g.tensors[n.inputs[0]].shape.as_slice() == out4 && lift(&g.tensors[t].shape).as_deref() == Some(out4) {
            return Some(n.inputs[0]);
        }
        return None;
    }
    let info = &g.tensors[t];
    let ConstData::F32(v) = info.data.as_ref()? else { return None };
    if info.shape.len() > 3 || !constant_shape_ok(&info.shape, v.len()) {
        return None;
    }
    let mut s = vec![1; 3 - info.shape.len()];
    s.extend_from_slice(&info.shape);
    let s4 = lift(&s)?;
    let (name, data) = (format!("{}__2d", info.name), v.clone());
    Some(g.add_tensor(name, s4, Some(ConstData::F32(data))))
}

/// Move one H-dropping Reshape past the elementwise node after it; `true` when it did.
fn sink_one(g: &mut Graph) -> bool {
    let prod = producers(g);
    for i in 0..g.nodes.len() {
        let node = &g.nodes[i];
        if !elementwise(&node.op) {
            continue;
        }
        let out = node.outputs[0];
        let Some(out4) = lift(&g.tensors[out].shape) else { continue };
        // The data input(s): input 0, and input 1 of a binary op; BatchNorm's others are per channel.
        let data_inputs = if matches!(node.op, Op::BatchNorm { .. }) { 1 } else { node.inputs.len() };
        let from_reshape = |t: TensorId| prod.get(t).copied().flatten().is_some_and(|p| g.nodes[p].op == Op::Reshape);
        if !node.inputs[..data_inputs].iter().any(|&t| from_reshape(t)) {
            continue;
        }
        let old = node.clone();
        let mut ins = old.inputs.clone();
        let mut ok = true;
        for slot in ins.iter_mut().take(data_inputs) {
            match lifted_operand(g, &prod, *slot, &out4) {
                Some(t) => *slot = t,
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            continue;
        }
        let name = format!("{}__2d", g.tensors[out].name);
        let y4 = g.add_tensor(name, out4, None);
        let lifted = Node { name: format!("{}/2d", old.name), op: old.op.clone(), inputs: ins, outputs: vec![y4] };
        g.nodes[i] = Node { name: old.name, op: Op::Reshape, inputs: vec![y4], outputs: old.outputs };
        g.nodes.insert(i, lifted);
        return true;
    }
    false
}

/// `ReduceMean` over every axis after the channels of `[N, C, L]` or `[N, C, H, W]` (PyTorch's
/// `x.mean(-1)`, `x.mean((2, 3))`) becomes a global average pool (on the `[N, C, 1, L]` view
/// for sequences) and a reshape to the shape it had.
fn spatial_mean_to_pool(g: &mut Graph) -> bool {
    let Some(i) = g.nodes.iter().position(|n| match &n.op {
        Op::ReduceMean { axes, .. } => {
            let r = g.tensors[n.inputs[0]].shape.len();
            matches!(r, 3 | 4) && *axes == (2..r).collect::<Vec<_>>()
        }
        _ => false,
    }) else {
        return false;
    };
    let node = g.nodes[i].clone();
    let (x, y) = (node.inputs[0], node.outputs[0]);
    let s = g.tensors[x].shape.clone();
    let mut new = Vec::new();
    let x4 = match lift(&s) {
        Some(s4) => {
            let t = g.add_tensor(format!("{}__2d", g.tensors[x].name), s4, None);
            new.push(Node { name: format!("{}/as_2d", node.name), op: Op::Reshape, inputs: vec![x], outputs: vec![t] });
            t
        }
        None => x,
    };
    let gap = g.add_tensor(format!("{}__gap", g.tensors[y].name), vec![s[0], s[1], 1, 1], None);
    new.push(Node { name: format!("{}/gap", node.name), op: Op::GlobalAvgPool, inputs: vec![x4], outputs: vec![gap] });
    let op = if g.tensors[y].shape == g.tensors[gap].shape { Op::Identity } else { Op::Reshape };
    new.push(Node { name: node.name, op, inputs: vec![gap], outputs: vec![y] });
    g.nodes.splice(i..=i, new);
    true
}

/// Merge reshape chains and sink H-dropping reshapes past elementwise ops (see the module
/// docs); dead reshapes are left to `remove_dead_nodes`.
pub fn sink_reshapes(g: &mut Graph) -> Result<bool, PassError> {
    let mut changed = false;
    while spatial_mean_to_pool(g) {
        changed = true;
    }
    changed |= merge_chains(g);
    let limit = 4 * g.nodes.len() + 16;
    for _ in 0..limit {
        if !sink_one(g) {
            return Ok(changed | merge_chains(g));
        }
        changed = true;
        merge_chains(g);
    }
    Err(err("sink_reshapes", "did not settle (a cycle of reshapes?)"))
}
