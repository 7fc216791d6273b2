//! Outlier channel splitting (Zhao et al., 2019): duplicate the input channel that holds a
//! layer's extreme weights and halve both copies, so the weight range shrinks without changing
//! the function.
//!
//! For a consumer layer `L` (dense convolution or fully connected), input channel `c` is
//! duplicated by duplicating output channel `c` of the producer `P` that computes it (its weights
//! row and bias); between `P` and `L` only channel-wise, positively homogeneous ops may stand
//! (ReLU/clip fused into `P`, max/avg pooling, identity) and a final flatten into a dense `L`.
//! `L` then sees channel `c` twice, with weights `w[:, c] / 2` on both copies:
//! `w·x = (w/2)·x + (w/2)·x`. With per-channel weight quantization the scale of every output
//! row that had its maximum in channel `c` shrinks, so its other weights get finer steps.

use crate::ir::{ConstData, Graph, Op, TensorId};

/// A split that was made.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// Consumer layer.
    pub layer: String,
    /// Input channel duplicated.
    pub channel: usize,
}

fn f32_mut(g: &mut Graph, t: TensorId) -> Option<&mut Vec<f32>> {
    match g.tensors[t].data.as_mut()? {
        ConstData::F32(v) => Some(v),
        ConstData::I64(_) => None,
    }
}

/// The chain from the producer of `L`'s input back to a splittable producer: returns the
/// producer node index and the activation tensors in between (producer output first), and
/// whether the last step into `L` is a flatten.
fn chain(g: &Graph, l: usize) -> Option<(usize, Vec<TensorId>, bool)> {
    let mut t = g.nodes[l].inputs[0];
    let mut tensors = vec![t];
    let mut flatten = false;
    loop {
        if g.outputs.contains(&t) || g.consumers(t).len() != 1 {
            return None;
        }
        let p = g.producer(t)?;
        let node = &g.nodes[p];
        match &node.op {
            Op::Conv { group: 1, .. } | Op::Dense { .. } => {
                g.const_f32(node.inputs[1])?;
                tensors.reverse();
                return Some((p, tensors, flatten));
            }
            Op::MaxPool { .. } | Op::AvgPool { .. } | Op::Act(_) | Op::Identity => {}
            Op::Reshape if !flatten && tensors.len() == 1 => {
                let is = &g.tensors[node.inputs[0]].shape;
                let os = &g.tensors[t].shape;
                if is.len() != 4 || os.len() != 2 || !matches!(g.nodes[l].op, Op::Dense { .. }) {
                    return None;
                }
                flatten = true;
            }
            _ => return None,
        }
        t = node.inputs[0];
        tensors.push(t);
    }
}

/// Split up to `ratio · C` input channels of every eligible layer whose weight rows are
/// dominated by one channel (row max ≥ `threshold` × the row's largest weight in any other
/// channel). Returns the splits made; the graph's shapes are updated.
pub fn split_outlier_channels(g: &mut Graph, ratio: f32, threshold: f32) -> Vec<Split> {
    let mut made = Vec::new();
    for l in 0..g.nodes.len() {
        let is_layer = matches!(g.nodes[l].op, Op::Conv { group: 1, .. } | Op::Dense { .. });
        if !is_layer || g.const_f32(g.nodes[l].inputs[1]).is_none() {
            continue;
        }
        let Some((p, tensors, flatten)) = chain(g, l) else { continue };
        let wl_id = g.nodes[l].inputs[1];
        let ws = g.tensors[wl_id].shape.clone();
        let o = ws[0];
        // input channels of L and the weights per (row, channel)
        let (cin, per) = if flatten {
            let s = &g.tensors[*tensors.last().unwrap_or(&0)].shape; // not used
            let _ = s;
            let pre = &g.tensors[g.nodes[g.producer(g.nodes[l].inputs[0]).unwrap_or(0)].inputs[0]].shape;
            (pre[1], pre[2] * pre[3])
        } else if ws.len() == 4 {
            (ws[1], ws[2] * ws[3])
        } else {
            (ws[1], 1)
        };
        let budget = ((cin as f32 * ratio).ceil() as usize).min(cin);
        for _ in 0..budget {
            let w = g.const_f32(wl_id).unwrap_or(&[]).to_vec();
            let c_now = w.len() / o / per;
            // row with the most dominant single channel
            let mut best: Option<(f32, usize)> = None;
            for row in 0..o {
                let mut ch_max = vec![0f32; c_now];
                for c in 0..c_now {
                    for k in 0..per {
                        ch_max[c] = ch_max[c].max(w[(row * c_now + c) * per + k].abs());
                    }
                }
                let (c1, m1) = ch_max.iter().enumerate().fold((0, 0f32), |b, (c, &m)| if m > b.1 { (c, m) } else { b });
                let m2 = ch_max.iter().enumerate().filter(|(c, _)| *c != c1).fold(0f32, |b, (_, &m)| b.max(m));
                let r = if m2 > 0.0 { m1 / m2 } else { 0.0 };
                if r >= threshold && best.is_none_or(|b| r > b.0) {
                    best = Some((r, c1));
                }
            }
            let Some((_, c)) = best else { break };
            // L: append channel (w[:, c] / 2), halve the original
            let mut nw = Vec::with_capacity(w.len() + o * per);
            for row in 0..o {
                let base = row * c_now * per;
                let mut r: Vec<f32> = w[base..base + c_now * per].to_vec();
                for k in 0..per {
                    r[c * per + k] *= 0.5;
                }
                let dup: Vec<f32> = r[c * per..(c + 1) * per].to_vec();
                nw.extend(r);
                nw.extend(dup);
            }
            if let Some(v) = f32_mut(g, wl_id) {
                *v = nw;
            }
            let mut s = g.tensors[wl_id].shape.clone();
            if flatten {
                s[1] += per;
            } else {
                s[1] += 1;
            }
            g.tensors[wl_id].shape = s;
            // P: duplicate output channel c (weights row and bias)
            let (wp, bp) = (g.nodes[p].inputs[1], g.nodes[p].inputs.get(2).copied());
            let prow: usize = g.tensors[wp].shape[1..].iter().product();
            if let Some(v) = f32_mut(g, wp) {
                let row: Vec<f32> = v[c * prow..(c + 1) * prow].to_vec();
                v.extend(row);
            }
            g.tensors[wp].shape[0] += 1;
            if let Some(b) = bp {
                if let Some(v) = f32_mut(g, b) {
                    let x = v[c];
                    v.push(x);
                }
                g.tensors[b].shape[0] += 1;
            }
            // the activations in between gain a channel (or a channel's worth of features)
            for &t in &tensors {
                let sh = &mut g.tensors[t].shape;
                if sh.len() == 2 && flatten && t == g.nodes[l].inputs[0] {
                    sh[1] += per;
                } else {
                    sh[1] += 1;
                }
            }
            // after a flatten, channel c's features are the new last block (CHW order)
            made.push(Split { layer: g.nodes[l].name.clone(), channel: c });
        }
    }
    made
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fp32::{run, Tensor};
    use crate::ir::{Activation, Node, Window};

    fn conv(g: &mut Graph, name: &str, x: TensorId, cin: usize, cout: usize, hw: usize, w: Vec<f32>) -> TensorId {
        let wid = g.add_tensor(format!("{name}.w"), vec![cout, cin, 3, 3], Some(ConstData::F32(w)));
        let bid = g.add_tensor(format!("{name}.b"), vec![cout], Some(ConstData::F32((0..cout).map(|i| 0.1 * i as f32 - 0.2).collect())));
        let y = g.add_tensor(format!("{name}.y"), vec![1, cout, hw, hw], None);
        let window = Window { kernel: [3, 3], stride: [1, 1], pads: [1; 4], dilation: [1, 1] };
        g.nodes.push(Node {
            name: name.into(),
            op: Op::Conv { window, group: 1, act: Activation::Relu },
            inputs: vec![x, wid, bid],
            outputs: vec![y],
        });
        y
    }

    #[test]
    fn splitting_preserves_the_function_and_shrinks_row_ranges() {
        let mut g = Graph { name: "ocs".into(), ..Default::default() };
        let x = g.add_tensor("x", vec![1, 2, 6, 6], None);
        g.inputs.push(x);
        let w1: Vec<f32> = (0..4 * 2 * 9).map(|i| ((i * 37 % 17) as f32 - 8.0) / 10.0).collect();
        let a = conv(&mut g, "c1", x, 2, 4, 6, w1);
        let pooled = g.add_tensor("p", vec![1, 4, 3, 3], None);
        let window = Window { kernel: [2, 2], stride: [2, 2], pads: [0; 4], dilation: [1, 1] };
        g.nodes.push(Node { name: "pool".into(), op: Op::MaxPool { window, ceil_mode: false }, inputs: vec![a], outputs: vec![pooled] });
        let mut w2: Vec<f32> = (0..3 * 4 * 9).map(|i| ((i * 29 % 13) as f32 - 6.0) / 20.0).collect();
        w2[5] = 9.0; // an outlier in row 0, channel 0
        w2[4 * 9 + 2 * 9 + 1] = -7.0; // row 1, channel 2
        let y = conv(&mut g, "c2", pooled, 4, 3, 3, w2);
        let flat = g.add_tensor("f", vec![1, 27], None);
        g.nodes.push(Node { name: "flatten".into(), op: Op::Reshape, inputs: vec![y], outputs: vec![flat] });
        let wd: Vec<f32> = (0..2 * 27).map(|i| ((i * 13 % 11) as f32 - 5.0) / 10.0).collect();
        let mut wd = wd;
        wd[4] = 12.0;
        let wdi = g.add_tensor("d.w", vec![2, 27], Some(ConstData::F32(wd)));
        let out = g.add_tensor("out", vec![1, 2], None);
        g.nodes.push(Node { name: "dense".into(), op: Op::Dense { act: Activation::None }, inputs: vec![flat, wdi], outputs: vec![out] });
        g.outputs.push(out);
        let input = Tensor::new(vec![1, 2, 6, 6], (0..72).map(|i| ((i * 7 % 23) as f32 - 11.0) / 7.0).collect()).unwrap();
        let before = run(&g, std::slice::from_ref(&input)).unwrap();
        let row_max = |g: &Graph, id: TensorId, row: usize| {
            let s = &g.tensors[id].shape;
            let k: usize = s[1..].iter().product();
            g.const_f32(id).unwrap()[row * k..(row + 1) * k].iter().fold(0f32, |m, v| m.max(v.abs()))
        };
        let w2id = g.nodes[2].inputs[1];
        let (r0, r1) = (row_max(&g, w2id, 0), row_max(&g, w2id, 1));
        let splits = split_outlier_channels(&mut g, 0.5, 2.0);
        assert!(splits.iter().any(|s| s.layer == "c2"), "{splits:?}");
        assert!(splits.iter().any(|s| s.layer == "dense"), "{splits:?}");
        crate::passes::check_shapes(&g).expect("shapes consistent after splitting");
        let after = run(&g, std::slice::from_ref(&input)).unwrap();
        for (a, b) in before[0].data.iter().zip(&after[0].data) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
        assert!(row_max(&g, w2id, 0) < r0 && row_max(&g, w2id, 1) < r1);
    }
}
