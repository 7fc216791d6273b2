//! Graph rewrites for detection heads before quantization.
//!
//! PicoDet / GFL exports often compute a level's class scores and box distributions with one
//! convolution and split its channels (`Split` → channel `Slice`s). The int8 lowering has no
//! channel slice, and one quantization grid for both halves would be shared by logits and
//! distributions of very different ranges; [`split_sliced_convs`] replaces each channel slice of
//! a convolution output by a convolution with the sliced weights and bias (same result in FP32,
//! its own grid in int8).

use crate::ir::{ConstData, Graph, Node, Op};

/// Replaces every `Slice` that takes a contiguous run of channels (axis 1, step 1, every other
/// axis whole) of an ungrouped `Conv` output, when all users of that output are such slices and
/// it is not a graph output, by a `Conv` with the sliced weights and bias. Returns how many
/// slices were rewritten; the original convolution is left without users.
pub fn split_sliced_convs(g: &mut Graph) -> usize {
    let mut done = 0;
    for i in 0..g.nodes.len() {
        let Op::Slice { starts, steps } = g.nodes[i].op.clone() else { continue };
        let x = g.nodes[i].inputs[0];
        let y = g.nodes[i].outputs[0];
        let Some(p) = g.producer(x) else { continue };
        let Op::Conv { window, group: 1, act } = g.nodes[p].op.clone() else { continue };
        let (xs, ys) = (g.tensors[x].shape.clone(), g.tensors[y].shape.clone());
        let channel_run =
            xs.len() == 4 && ys.len() == 4 && steps.iter().all(|&s| s == 1) && (0..4).all(|a| a == 1 || (starts[a] == 0 && xs[a] == ys[a]));
        let only_slices = g.consumers(x).iter().all(|&c| matches!(g.nodes[c].op, Op::Slice { .. }));
        if !channel_run || !only_slices || g.outputs.contains(&x) {
            continue;
        }
        let (c0, n) = (starts[1], ys[1]);
        let Some(w) = g.const_f32(g.nodes[p].inputs[1]).map(<[f32]>::to_vec) else { continue };
        let ws = g.tensors[g.nodes[p].inputs[1]].shape.clone();
        let per = ws[1..].iter().product::<usize>();
        let bias = g.nodes[p].inputs.get(2).and_then(|&b| g.const_f32(b)).map(<[f32]>::to_vec);
        let name = g.nodes[i].name.clone();
        let wt = g.add_tensor(
            format!("{name}.weight"),
            vec![n, ws[1], ws[2], ws[3]],
            Some(ConstData::F32(w[c0 * per..(c0 + n) * per].to_vec())),
        );
        let mut inputs = vec![g.nodes[p].inputs[0], wt];
        if let Some(b) = bias {
            inputs.push(g.add_tensor(format!("{name}.bias"), vec![n], Some(ConstData::F32(b[c0..c0 + n].to_vec()))));
        }
        g.nodes[i] = Node { name, op: Op::Conv { window, group: 1, act }, inputs, outputs: vec![y] };
        done += 1;
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fp32::{run, Tensor};
    use crate::ir::{Activation, Window};

    /// x `[1, 2, 4, 4]` → 3×3 Conv with 5 outputs (ReLU) → channel slices `0..2` and `2..5`.
    fn sliced(extra_user: bool) -> Graph {
        let mut g = Graph { name: "split".into(), ..Default::default() };
        let x = g.add_tensor("x", vec![1, 2, 4, 4], None);
        let w: Vec<f32> = (0..5 * 2 * 9).map(|i| ((i * 37 % 23) as f32 - 11.0) / 10.0).collect();
        let w = g.add_tensor("w", vec![5, 2, 3, 3], Some(ConstData::F32(w)));
        let b = g.add_tensor("b", vec![5], Some(ConstData::F32(vec![0.1, -0.2, 0.3, -0.4, 0.5])));
        let y = g.add_tensor("y", vec![1, 5, 4, 4], None);
        let (a, c) = (g.add_tensor("cls", vec![1, 2, 4, 4], None), g.add_tensor("reg", vec![1, 3, 4, 4], None));
        let window = Window { kernel: [3, 3], stride: [1, 1], pads: [1; 4], dilation: [1, 1] };
        g.nodes.push(Node {
            name: "head".into(),
            op: Op::Conv { window, group: 1, act: Activation::Relu },
            inputs: vec![x, w, b],
            outputs: vec![y],
        });
        for (name, t, s0) in [("s0", a, 0), ("s1", c, 2)] {
            g.nodes.push(Node {
                name: name.into(),
                op: Op::Slice { starts: vec![0, s0, 0, 0], steps: vec![1; 4] },
                inputs: vec![y],
                outputs: vec![t],
            });
        }
        g.inputs = vec![x];
        g.outputs = vec![a, c];
        if extra_user {
            g.outputs.push(y);
        }
        g
    }

    #[test]
    fn channel_slices_of_a_conv_become_convs_with_the_same_values() {
        let g = sliced(false);
        let x = Tensor::new(vec![1, 2, 4, 4], (0..32).map(|i| (i as f32 * 0.7).sin()).collect()).unwrap();
        let before = run(&g, std::slice::from_ref(&x)).unwrap();
        let mut r = g.clone();
        assert_eq!(split_sliced_convs(&mut r), 2);
        assert!(r.nodes.iter().all(|n| !matches!(n.op, Op::Slice { .. })), "no slice left");
        let after = run(&r, &[x]).unwrap();
        for (p, q) in before.iter().zip(&after) {
            assert_eq!(p.shape, q.shape);
            assert!(p.data.iter().zip(&q.data).all(|(a, b)| (a - b).abs() < 1e-6));
        }
    }

    #[test]
    fn a_conv_output_used_elsewhere_is_left_alone() {
        let mut g = sliced(true);
        assert_eq!(split_sliced_convs(&mut g), 0);
    }
}
