//! Output-shape rules of every IR op, used by the importer, the shape-check pass and the engine
//! (which re-derives shapes when it runs a graph at a batch size other than the graph's own).

use crate::ir::{Op, Window};

/// Numpy-style broadcast of two shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
        let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(format!("shapes {a:?} and {b:?} do not broadcast"));
        };
    }
    Ok(out)
}

/// Output size of a convolution/pool along one spatial axis (`ceil_mode` as in ONNX/PyTorch:
/// a window may not start in the trailing padding).
pub fn window_out_dim(
    input: usize,
    kernel: usize,
    stride: usize,
    pad_begin: usize,
    pad_end: usize,
    dilation: usize,
    ceil_mode: bool,
) -> Result<usize, String> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return Err(format!("kernel {kernel}, stride {stride} and dilation {dilation} must be ≥ 1"));
    }
    let span = dilation.checked_mul(kernel - 1).and_then(|v| v.checked_add(1)).ok_or("window span overflows")?;
    let padded = input.checked_add(pad_begin).and_then(|v| v.checked_add(pad_end)).ok_or("padded size overflows")?;
    if padded < span {
        return Err(format!(
            "window of span {span} does not fit the padded input size {padded} (input {input}, pads {pad_begin}+{pad_end})"
        ));
    }
    let num = padded - span;
    let mut out = if ceil_mode { num.div_ceil(stride) + 1 } else { num / stride + 1 };
    if ceil_mode && (out - 1) * stride >= input + pad_begin {
        out -= 1;
    }
    Ok(out)
}

fn spatial_out(x: &[usize], w: &Window, ceil_mode: bool) -> Result<[usize; 2], String> {
    if x.len() != 4 {
        return Err(format!("expects an NCHW input, got shape {x:?}"));
    }
    Ok([
        window_out_dim(x[2], w.kernel[0], w.stride[0], w.pads[0], w.pads[2], w.dilation[0], ceil_mode)?,
        window_out_dim(x[3], w.kernel[1], w.stride[1], w.pads[1], w.pads[3], w.dilation[1], ceil_mode)?,
    ])
}

fn need(inputs: &[&[usize]], min: usize, max: usize) -> Result<(), String> {
    if inputs.len() < min || inputs.len() > max {
        return Err(format!("expects {min}..={max} inputs, got {}", inputs.len()));
    }
    Ok(())
}

/// Output shape of `op` for the given input shapes.
///
/// `declared` is `(declared first-input shape, declared output shape)` from the graph; it is
/// needed by ops whose output is not a function of the inputs alone (Reshape, Resize, Slice).
/// When the actual first input differs from the declared one only in its leading (batch)
/// dimension, the declared output is re-batched accordingly.
pub fn infer_output_shape(op: &Op, inputs: &[&[usize]], declared: Option<(&[usize], &[usize])>) -> Result<Vec<usize>, String> {
    match op {
        Op::Conv { window, group, .. } => {
            need(inputs, 2, 3)?;
            let (x, w) = (inputs[0], inputs[1]);
            if w.len() != 4 || x.len() != 4 {
                return Err(format!("Conv expects 4-D input and weight, got {x:?} and {w:?}"));
            }
            let g = *group;
            if g == 0 || w[1].checked_mul(g) != Some(x[1]) || w[0] % g != 0 {
                return Err(format!("Conv: input {x:?}, weight {w:?} and group {g} are inconsistent"));
            }
            if [w[2], w[3]] != window.kernel {
                return Err(format!("Conv: weight {w:?} does not match kernel {:?}", window.kernel));
            }
            if inputs.len() == 3 && inputs[2].iter().product::<usize>() != w[0] {
                return Err(format!("Conv: bias {:?} does not have {} elements", inputs[2], w[0]));
            }
            let [oh, ow] = spatial_out(x, window, false)?;
            Ok(vec![x[0], w[0], oh, ow])
        }
        Op::Dense { .. } => {
            need(inputs, 2, 3)?;
            let (x, w) = (inputs[0], inputs[1]);
            if x.len() != 2 || w.len() != 2 || x[1] != w[1] {
                return Err(format!("Dense: input {x:?} and weight {w:?} are inconsistent (need [M,K] and [N,K])"));
            }
            if inputs.len() == 3 && inputs[2].iter().product::<usize>() != w[0] {
                return Err(format!("Dense: bias {:?} does not have {} elements", inputs[2], w[0]));
            }
            Ok(vec![x[0], w[0]])
        }
        Op::Add { .. } | Op::Sub | Op::Mul { .. } | Op::Div => {
            need(inputs, 2, 2)?;
            broadcast_shapes(inputs[0], inputs[1])
        }
        Op::Act(_) | Op::LeakyRelu { .. } | Op::HardSwish | Op::HardSigmoid { .. } | Op::Sigmoid | Op::Tanh | Op::Identity => {
            need(inputs, 1, 1)?;
            Ok(inputs[0].to_vec())
        }
        Op::Softmax { axis } => {
            need(inputs, 1, 1)?;
            if *axis >= inputs[0].len() {
                return Err(format!("Softmax axis {axis} out of range for {:?}", inputs[0]));
            }
            Ok(inputs[0].to_vec())
        }
        Op::BatchNorm { .. } => {
            need(inputs, 5, 5)?;
            let x = inputs[0];
            if x.len() < 2 {
                return Err(format!("BatchNorm input {x:?} has no channel axis"));
            }
            for p in &inputs[1..] {
                if p.iter().product::<usize>() != x[1] {
                    return Err(format!("BatchNorm parameter {p:?} does not have {} elements", x[1]));
                }
            }
            Ok(x.to_vec())
        }
        Op::MaxPool { window, ceil_mode } | Op::AvgPool { window, ceil_mode, .. } => {
            need(inputs, 1, 1)?;
            let x = inputs[0];
            let [oh, ow] = spatial_out(x, window, *ceil_mode)?;
            Ok(vec![x[0], x[1], oh, ow])
        }
        Op::GlobalAvgPool => {
            need(inputs, 1, 1)?;
            let x = inputs[0];
            if x.len() < 3 {
                return Err(format!("GlobalAvgPool expects [N,C,spatial…], got {x:?}"));
            }
            let mut o = x.to_vec();
            o[2..].iter_mut().for_each(|d| *d = 1);
            Ok(o)
        }
        Op::ReduceMean { axes, keepdims } => {
            need(inputs, 1, 1)?;
            let x = inputs[0];
            if let Some(a) = axes.iter().find(|&&a| a >= x.len()) {
                return Err(format!("ReduceMean axis {a} out of range for {x:?}"));
            }
            let mut o = Vec::new();
            for (i, &d) in x.iter().enumerate() {
                if axes.contains(&i) {
                    if *keepdims {
                        o.push(1);
                    }
                } else {
                    o.push(d);
                }
            }
            Ok(o)
        }
        Op::Reshape => {
            need(inputs, 1, 1)?;
            let (din, dout) = declared.ok_or("Reshape needs the declared output shape")?;
            let x = inputs[0];
            let n_in: usize = x.iter().product();
            if x == din {
                if dout.iter().product::<usize>() != n_in {
                    return Err(format!("Reshape from {x:?} to {dout:?} changes the element count"));
                }
                return Ok(dout.to_vec());
            }
            rebatch(x, din, dout, "Reshape").and_then(|o| {
                if o.iter().product::<usize>() != n_in {
                    Err(format!("Reshape from {x:?} to {o:?} changes the element count"))
                } else {
                    Ok(o)
                }
            })
        }
        Op::Ext(e) => e.def().output_shape(inputs, declared),
        Op::Slice { starts, steps } => {
            need(inputs, 1, 1)?;
            let (din, dout) = declared.ok_or("Slice needs the declared output shape")?;
            let x = inputs[0];
            if starts.len() != x.len() || steps.len() != x.len() || din.len() != x.len() || dout.len() != x.len() {
                return Err(format!("Slice parameters do not match input rank of {x:?}"));
            }
            let mut o = Vec::with_capacity(x.len());
            for a in 0..x.len() {
                let full = starts[a] == 0 && steps[a] == 1 && din[a] == dout[a];
                let d = if full { x[a] } else { dout[a] };
                if steps[a] == 0 {
                    return Err("Slice step 0".into());
                }
                let last = (d.max(1) - 1).checked_mul(steps[a]).and_then(|v| v.checked_add(starts[a]));
                if d > 0 && last.is_none_or(|l| l >= x[a]) {
                    return Err(format!("Slice of {x:?} to {dout:?} reads past axis {a}"));
                }
                o.push(d);
            }
            Ok(o)
        }
        Op::Transpose { perm } => {
            need(inputs, 1, 1)?;
            let x = inputs[0];
            let mut seen = vec![false; x.len()];
            if perm.len() != x.len() || perm.iter().any(|&p| p >= x.len() || std::mem::replace(&mut seen[p], true)) {
                return Err(format!("Transpose perm {perm:?} is not a permutation of the axes of {x:?}"));
            }
            Ok(perm.iter().map(|&p| x[p]).collect())
        }
    }
}

/// Re-batch a declared output shape: the actual input differs from the declared one in the
/// leading dimension only; the declared output's leading dimension scales by the same factor.
fn rebatch(x: &[usize], din: &[usize], dout: &[usize], what: &str) -> Result<Vec<usize>, String> {
    let err = || format!("{what}: cannot run the graph's {din:?} → {dout:?} at input shape {x:?} (only the batch dimension may change)");
    if x.len() != din.len() || x.is_empty() || x[1..] != din[1..] || din[0] == 0 || dout.is_empty() {
        return Err(err());
    }
    if !dout[0].is_multiple_of(din[0]) {
        return Err(err());
    }
    let mut o = dout.to_vec();
    o[0] = dout[0] / din[0] * x[0];
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_dims() {
        assert_eq!(window_out_dim(7, 2, 2, 0, 0, 1, false).unwrap(), 3);
        assert_eq!(window_out_dim(7, 2, 2, 0, 0, 1, true).unwrap(), 4);
        // ceil mode window starting in trailing padding is dropped
        assert_eq!(window_out_dim(4, 2, 2, 1, 1, 1, true).unwrap(), 3);
        assert_eq!(window_out_dim(28, 3, 1, 1, 1, 1, false).unwrap(), 28);
        assert!(window_out_dim(2, 5, 1, 0, 0, 1, false).is_err());
    }

    #[test]
    fn broadcast() {
        assert_eq!(broadcast_shapes(&[2, 3, 4, 5], &[3, 1, 1]).unwrap(), vec![2, 3, 4, 5]);
        assert_eq!(broadcast_shapes(&[1], &[4, 1]).unwrap(), vec![4, 1]);
        assert!(broadcast_shapes(&[2, 3], &[4]).is_err());
    }

    #[test]
    fn reshape_rebatch() {
        let s = infer_output_shape(&Op::Reshape, &[&[8, 16, 7, 7]], Some((&[1, 16, 7, 7], &[1, 784]))).unwrap();
        assert_eq!(s, vec![8, 784]);
        let s = infer_output_shape(&Op::Reshape, &[&[8, 16, 7, 7]], Some((&[1, 16, 7, 7], &[16, 49]))).unwrap();
        assert_eq!(s, vec![128, 49]);
        assert!(infer_output_shape(&Op::Reshape, &[&[8, 16, 7, 8]], Some((&[1, 16, 7, 7], &[1, 784]))).is_err());
    }
}
