//! Constant per-tensor / per-channel elementwise ops that no producer absorbed become one
//! [`ChannelAffine`](crate::ops::channel_affine) each; chains of them merge into one.

use std::collections::HashMap;

use super::{const_tensor, err, per_channel, use_counts, PassError};
use crate::ir::{Activation, Graph, Node, Op, TensorId};
use crate::ops::channel_affine;

/// `(x, a, b)`: the activation input and the per-channel scale and offset.
type Affine = (TensorId, Vec<f32>, Vec<f32>);

/// `(x, a, b)` with `node(x) = a[c]·x + b[c]`, if `node` is a constant
/// per-tensor or per-channel Mul/Add/Sub/Div (any side for Mul/Add/Sub, `x / c` for Div) or an
/// inference BatchNorm with constant parameters. Div by a constant containing 0 is an error.
fn affine_form(g: &Graph, n: &Node) -> Result<Option<Affine>, PassError> {
    if let Op::BatchNorm { eps } = n.op {
        let x = n.inputs[0];
        let Some(&ch) = g.tensors[x].shape.get(1) else { return Ok(None) };
        let p: Option<Vec<Vec<f32>>> = n.inputs[1..].iter().map(|&id| const_tensor(g, id).map(|t| t.data)).collect();
        let Some(p) = p.filter(|p| p.len() == 4 && p.iter().all(|v| v.len() == ch)) else { return Ok(None) };
        let a: Vec<f32> = (0..ch).map(|c| p[0][c] / (p[3][c] + eps).sqrt()).collect();
        let b: Vec<f32> = (0..ch).map(|c| p[1][c] - p[2][c] * a[c]).collect();
        return Ok(Some((x, a, b)));
    }
    let kind = match n.op {
        Op::Add { .. } => '+',
        Op::Sub => '-',
        Op::Mul { .. } => '*',
        Op::Div => '/',
        _ => return Ok(None),
    };
    if n.inputs.len() != 2 {
        return Ok(None);
    }
    for side in 0..2 {
        let (x, c) = (n.inputs[side], n.inputs[1 - side]);
        if g.tensors[x].data.is_some() || g.tensors[c].data.is_none() {
            continue;
        }
        let xs = &g.tensors[x].shape;
        if g.tensors[n.outputs[0]].shape != *xs {
            continue; // the constant broadcasts the activation up: not a map of x alone
        }
        let Some(v) = per_channel(g, c, xs) else { continue };
        let ones = vec![1.0; v.len()];
        let zeros = vec![0.0; v.len()];
        return Ok(match (kind, side) {
            ('+', _) => Some((x, ones, v)),
            ('*', _) => Some((x, v, zeros)),
            ('-', 0) => Some((x, ones, v.iter().map(|c| -c).collect())),
            ('-', _) => Some((x, vec![-1.0; v.len()], v)),
            ('/', 0) => {
                if let Some(k) = v.iter().position(|&d| d == 0.0) {
                    let what = if v.len() == 1 { String::new() } else { format!(" in channel {k}") };
                    return Err(err("affine_to_channel", format!("node '{}' (Div) divides by a constant 0{what}", n.name)));
                }
                Some((x, v.iter().map(|d| 1.0 / d).collect(), zeros))
            }
            _ => None, // c / x is not affine in x
        });
    }
    Ok(None)
}

/// Rewrite every constant per-tensor / per-channel Mul/Add/Sub/Div and inference BatchNorm left
/// in the graph (the ones [`super::fold_affine`] / [`super::fold_batchnorm`] could not fold into a
/// Conv/ConvTranspose/Dense: after an activation, a pool, an Add, a graph input…) into a
/// `ChannelAffine` (a fused Relu/Clip becomes a separate activation after it), then merge each
/// `ChannelAffine` whose input is a private `ChannelAffine` into it. Exact in FP32 up to float
/// rounding.
pub fn affine_to_channel(g: &mut Graph) -> Result<bool, PassError> {
    let mut changed = false;
    // (a, b) of every ChannelAffine written so far, by output tensor
    let mut made: HashMap<TensorId, (Vec<f32>, Vec<f32>)> = HashMap::new();
    let mut i = 0;
    while i < g.nodes.len() {
        let Some((x, a, b)) = affine_form(g, &g.nodes[i])? else {
            i += 1;
            continue;
        };
        let act = match g.nodes[i].op {
            Op::Add { act } | Op::Mul { act } => act,
            _ => Activation::None,
        };
        changed = true;
        let private = use_counts(g)[x] == 1 && !g.outputs.contains(&x);
        if let (true, Some((a1, b1))) = (private, made.get(&x)) {
            // merge into the producer: a2·(a1·x' + b1) + b2
            let a2: Vec<f32> = a.iter().zip(a1).map(|(a2, a1)| a2 * a1).collect();
            let b2: Vec<f32> = (0..a.len()).map(|c| a[c] * b1[c] + b[c]).collect();
            let p = g.nodes[..i].iter().position(|n| n.outputs == [x]).expect("recorded producer");
            let y = g.nodes[i].outputs[0];
            g.nodes[p].op = channel_affine::op(a2.clone(), b2.clone());
            g.nodes.remove(i);
            made.remove(&x);
            i = p;
            finish(g, &mut made, i, y, act, a2, b2);
        } else {
            g.nodes[i].op = channel_affine::op(a.clone(), b.clone());
            g.nodes[i].inputs = vec![x];
            let y = g.nodes[i].outputs[0];
            finish(g, &mut made, i, y, act, a, b);
        }
        i += 1;
    }
    Ok(changed)
}

/// Node `i` (now a ChannelAffine) writes `y`, through a separate activation node when `act`
/// is not None; record its `(a, b)` when it writes `y` directly.
fn finish(
    g: &mut Graph,
    made: &mut HashMap<TensorId, (Vec<f32>, Vec<f32>)>,
    i: usize,
    y: TensorId,
    act: Activation,
    a: Vec<f32>,
    b: Vec<f32>,
) {
    if act == Activation::None {
        g.nodes[i].outputs = vec![y];
        made.insert(y, (a, b));
        return;
    }
    let mid = g.add_tensor(format!("{}__affine", g.tensors[y].name), g.tensors[y].shape.clone(), None);
    g.nodes[i].outputs = vec![mid];
    let name = format!("{}__act", g.nodes[i].name);
    g.nodes.insert(i + 1, Node { name, op: Op::Act(act), inputs: vec![mid], outputs: vec![y] });
}
