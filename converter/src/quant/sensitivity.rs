//! Sensitivity ranking: quantize one layer at a time (its int8 weights, its input and output
//! activations, simulated in FP32) and measure the top-1 accuracy lost on validation data.
//! The layers whose lone quantization costs most are the ones to keep an eye on (or to leave in
//! higher precision, or to train with QAT).

use super::observer::{qparams_for_range, quantize_weights_per_channel, Observer};
use super::Calibration;
use crate::fp32::{self, Tensor};
use crate::ir::{ConstData, Graph, Op};
use temper_data::{Dataset, Normalize};

/// One layer's sensitivity.
#[derive(Clone, Debug, PartialEq)]
pub struct Sensitivity {
    /// Node name.
    pub name: String,
    /// Op type.
    pub op: String,
    /// Top-1 accuracy (%) with only this layer quantized.
    pub accuracy: f64,
    /// Points lost against FP32 on the same images.
    pub drop: f64,
}

fn fake_quant(data: &mut [f32], lo: f32, hi: f32) {
    let q = qparams_for_range(lo, hi);
    for v in data.iter_mut() {
        let x = ((*v / q.scale).round() + q.zero_point as f32).clamp(-128.0, 127.0);
        *v = (x - q.zero_point as f32) * q.scale;
    }
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |b, (i, &x)| if x > v[b] { i } else { b })
}

/// Forward pass with node `target` (if any) quantized; returns predicted classes.
fn forward(g: &Graph, x: &Tensor, target: Option<usize>, cal: &Calibration, obs: Observer) -> Result<Vec<usize>, fp32::Fp32Error> {
    let mut vals: Vec<Option<Tensor>> = vec![None; g.tensors.len()];
    for (i, t) in g.tensors.iter().enumerate() {
        if let Some(ConstData::F32(d)) = &t.data {
            vals[i] = Some(Tensor { shape: t.shape.clone(), data: d.clone() });
        }
    }
    vals[g.inputs[0]] = Some(x.clone());
    for (ni, node) in g.nodes.iter().enumerate() {
        let quantized = target == Some(ni);
        let mut inputs: Vec<Tensor> =
            node.inputs.iter().map(|&t| vals[t].clone().unwrap_or_else(|| Tensor::zeros(g.tensors[t].shape.clone()))).collect();
        if quantized {
            let (lo, hi) = cal.stats[node.inputs[0]].range(obs);
            fake_quant(&mut inputs[0].data, lo, hi);
            let w = &mut inputs[1];
            let o = w.shape[0];
            let (q, s) = quantize_weights_per_channel(&w.data, o);
            let k = w.data.len() / o;
            for (j, v) in w.data.iter_mut().enumerate() {
                *v = q[j] as f32 * s[j / k];
            }
        }
        let refs: Vec<&Tensor> = inputs.iter().collect();
        let mut out = fp32::eval_node(g, node, &refs)?;
        if quantized {
            let (lo, hi) = cal.stats[node.outputs[0]].range(obs);
            fake_quant(&mut out.data, lo, hi);
        }
        vals[node.outputs[0]] = Some(out);
    }
    let y = vals[g.outputs[0]].take().unwrap_or_else(|| Tensor::zeros(vec![1]));
    let n = x.shape[0];
    let classes = y.data.len() / n.max(1);
    Ok(y.data.chunks(classes.max(1)).map(argmax).collect())
}

/// Rank the Conv/Dense layers of `g` by the accuracy lost when only they are quantized, on the
/// first `limit` images of `ds`. Worst first.
pub fn rank(g: &Graph, cal: &Calibration, obs: Observer, ds: &Dataset, norm: &Normalize, limit: usize) -> Result<Vec<Sensitivity>, String> {
    let ds = ds.take(limit.min(ds.len())).map_err(|e| e.to_string())?;
    let batches: Vec<(Tensor, Vec<u32>)> = ds
        .batches(250, norm)
        .map(|b| Ok((crate::feed::batch_tensor(g, b.labels.len(), b.pixels).map_err(|e| e.to_string())?, b.labels.to_vec())))
        .collect::<Result<_, String>>()?;
    // A copy of the graph whose shapes follow each batch size (eval_node uses declared shapes).
    let shaped = |n: usize| -> Result<Graph, String> {
        let mut s = g.input_shape_for(n);
        let shapes = fp32::infer_shapes(g, &[std::mem::take(&mut s)]).map_err(|e| e.to_string())?;
        let mut h = g.clone();
        for (t, sh) in h.tensors.iter_mut().zip(shapes) {
            t.shape = sh;
        }
        Ok(h)
    };
    let accuracy = |target: Option<usize>| -> Result<f64, String> {
        let (mut ok, mut total) = (0usize, 0usize);
        for (x, labels) in &batches {
            let h = shaped(x.shape[0])?;
            let preds = forward(&h, x, target, cal, obs).map_err(|e| e.to_string())?;
            ok += preds.iter().zip(labels).filter(|(p, l)| **p == **l as usize).count();
            total += labels.len();
        }
        Ok(100.0 * ok as f64 / total.max(1) as f64)
    };
    let base = accuracy(None)?;
    let mut out = Vec::new();
    for (ni, node) in g.nodes.iter().enumerate() {
        if !matches!(node.op, Op::Conv { .. } | Op::Dense { .. }) || g.const_f32(node.inputs[1]).is_none() {
            continue;
        }
        let acc = accuracy(Some(ni))?;
        out.push(Sensitivity { name: node.name.clone(), op: node.op.name().to_string(), accuracy: acc, drop: base - acc });
    }
    out.sort_by(|a, b| b.drop.total_cmp(&a.drop));
    Ok(out)
}
