//! Accuracy of the FP32 graph and of emitted `.tmf` files (run through `temper-runtime`).

use crate::fp32;
use crate::ir::Graph;
use temper_data::{Dataset, Normalize};
use temper_runtime::writer::AlignedBuf;
use temper_runtime::{Model, Session};

/// Top-1 accuracy in percent and the predicted classes.
#[derive(Clone, Debug, PartialEq)]
pub struct Accuracy {
    /// Correct / total · 100.
    pub top1: f64,
    /// Predicted class per image.
    pub predictions: Vec<u32>,
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Accuracy of the FP32 graph on `ds` (batches of 256).
pub fn fp32_accuracy(g: &Graph, ds: &Dataset, norm: &Normalize) -> Result<Accuracy, fp32::Fp32Error> {
    let mut preds = Vec::with_capacity(ds.len());
    for batch in ds.batches(256, norm) {
        let out = fp32::run(g, &[crate::feed::batch_tensor(g, batch.labels.len(), batch.pixels)?])?;
        let classes = out[0].data.len() / batch.labels.len().max(1);
        for row in out[0].data.chunks(classes.max(1)) {
            preds.push(argmax(row));
        }
    }
    Ok(Accuracy { top1: top1(&preds, &ds.labels), predictions: preds })
}

fn top1(preds: &[u32], labels: &[u32]) -> f64 {
    let ok = preds.iter().zip(labels).filter(|(p, l)| p == l).count();
    100.0 * ok as f64 / labels.len().max(1) as f64
}

/// An error evaluating a `.tmf`.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalError(pub String);

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EvalError {}

/// Run a `.tmf` (batch-1 input) on every sample of `ds` through the runtime with `threads`
/// threads; u8 images go in as raw pixels when the model folds the normalization, else
/// normalized with `norm` (f32 data as it is). 4-D inputs are fed NHWC, others in the data's
/// own order (see [`crate::feed`]). Returns accuracy and, for each image, the dequantized outputs of
/// graph output 0.
pub fn int8_run(bytes: &[u8], ds: &Dataset, norm: &Normalize, threads: usize) -> Result<(Accuracy, Vec<Vec<f32>>), EvalError> {
    let buf = AlignedBuf::from_bytes(bytes);
    let model = Model::from_bytes(buf.as_bytes()).map_err(|e| EvalError(e.to_string()))?;
    let n = ds.len();
    let threads = threads.clamp(1, 64).min(n.max(1));
    let chunk = n.div_ceil(threads);
    let results: Vec<Result<Vec<Vec<f32>>, EvalError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let model = &model;
                s.spawn(move || -> Result<Vec<Vec<f32>>, EvalError> {
                    let mut arena = vec![0u8; model.arena_size()];
                    let mut sess = Session::new(model, &mut arena).map_err(|e| EvalError(e.to_string()))?;
                    let in_id = model.graph_inputs()[0];
                    let raw_ok = model.input_record(in_id).is_some_and(|r| r.kind == 1);
                    let out_len = model.tensor(model.graph_outputs()[0]).numel();
                    let il = ds.image_len();
                    let lay = crate::feed::DeviceInput::of(model);
                    let mut nhwc_u8 = vec![0u8; il];
                    let mut f = vec![0f32; il];
                    let mut nhwc_f = vec![0f32; il];
                    let mut outs = Vec::new();
                    for i in t * chunk..((t + 1) * chunk).min(n) {
                        match (raw_ok, ds.image_u8(i)) {
                            (true, Some(px)) => {
                                lay.arrange(px, &mut nhwc_u8);
                                sess.set_input_u8(0, &nhwc_u8).map_err(|e| EvalError(e.to_string()))?;
                            }
                            _ => {
                                ds.image_f32_into(i, norm, &mut f);
                                lay.arrange(&f, &mut nhwc_f);
                                sess.set_input_f32(0, &nhwc_f).map_err(|e| EvalError(e.to_string()))?;
                            }
                        }
                        sess.run().map_err(|e| EvalError(e.to_string()))?;
                        let mut o = vec![0f32; out_len];
                        sess.output_f32(0, &mut o).map_err(|e| EvalError(e.to_string()))?;
                        outs.push(o);
                    }
                    Ok(outs)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(EvalError("evaluation thread panicked".into())))).collect()
    });
    let mut all = Vec::with_capacity(n);
    for r in results {
        all.extend(r?);
    }
    let preds: Vec<u32> = all.iter().map(|o| argmax(o)).collect();
    Ok((Accuracy { top1: top1(&preds, &ds.labels), predictions: preds }, all))
}

/// Copy an NCHW image (one item) into NHWC order.
pub fn nchw_to_nhwc<T: Copy>(src: &[T], dst: &mut [T], c: usize, h: usize, w: usize) {
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                dst[(y * w + x) * c + ch] = src[(ch * h + y) * w + x];
            }
        }
    }
}
