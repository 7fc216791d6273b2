//! FP32 reference engine over the IR (NCHW).
//!
//! [`run`] executes a graph on a batch of inputs. The graph's own shapes are fixed at import
//! (usually with batch 1); the engine accepts any leading (batch) dimension on the inputs and
//! re-derives every activation shape from it (see [`shape::infer_output_shape`]).
//!
//! Convolutions use im2col packed straight into panels plus a cache-blocked GEMM whose
//! micro-kernel LLVM auto-vectorizes; work is split over the batch (or, for a single image, over
//! output channels) on [`default_threads`] scoped threads.

mod gemm;
pub(crate) mod ops;
pub mod shape;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::ir::{ConstData, Graph, Node, Op, TensorId};
use ops::View;

/// A dense f32 tensor (row-major, NCHW for activations).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major data, `shape.iter().product()` elements.
    pub data: Vec<f32>,
}

impl Tensor {
    /// A tensor from a shape and matching data.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, Fp32Error> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Fp32Error::new("Tensor::new", format!("shape {shape:?} needs {n} elements, data has {}", data.len())));
        }
        Ok(Tensor { shape, data })
    }

    /// A zero-filled tensor.
    pub fn zeros(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Tensor { shape, data: vec![0.0; n] }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    fn view(&self) -> View<'_> {
        View { shape: &self.shape, data: &self.data }
    }
}

/// An engine failure: where (node or input) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fp32Error {
    /// Node name (with op) or other context.
    pub context: String,
    /// What was wrong.
    pub message: String,
}

impl Fp32Error {
    fn new(context: impl Into<String>, message: impl Into<String>) -> Self {
        Fp32Error { context: context.into(), message: message.into() }
    }
    fn node(n: &Node, message: impl Into<String>) -> Self {
        Fp32Error::new(format!("node '{}' ({})", n.name, n.op.name()), message)
    }
}

impl fmt::Display for Fp32Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fp32 engine: {}: {}", self.context, self.message)
    }
}

impl std::error::Error for Fp32Error {}

static DEFAULT_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Set the default worker-thread count of the engine (0 restores "all available cores").
pub fn set_default_threads(n: usize) {
    DEFAULT_THREADS.store(n, Ordering::Relaxed);
}

/// The default worker-thread count: the value given to [`set_default_threads`], else
/// `std::thread::available_parallelism`.
pub fn default_threads() -> usize {
    static AVAILABLE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    match DEFAULT_THREADS.load(Ordering::Relaxed) {
        0 => *AVAILABLE.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        n => n,
    }
}

/// Engine options.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Worker threads (≥ 1).
    pub threads: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { threads: default_threads() }
    }
}

/// Run the graph on `inputs` (one per graph input, any batch size) and return its outputs.
pub fn run(g: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, Fp32Error> {
    run_with(g, inputs, &RunOptions::default(), None)
}

/// Like [`run`], calling `observer(tensor_id, value)` for every node output as it is computed
/// (calibration hooks in here).
pub fn run_observed(g: &Graph, inputs: &[Tensor], observer: &mut dyn FnMut(TensorId, &Tensor)) -> Result<Vec<Tensor>, Fp32Error> {
    run_with(g, inputs, &RunOptions::default(), Some(observer))
}

/// Where a tensor's value lives during a run.
enum Slot<'g> {
    /// Not computed yet, or freed after its last use.
    Empty,
    /// Borrowed: a graph constant (integer ones converted up front) or a caller's input.
    Const(&'g [usize], &'g [f32]),
    /// Computed by a node.
    Owned(Tensor),
}

/// Callback receiving every node output: `(tensor id, value)`.
pub type Observer<'a> = &'a mut dyn FnMut(TensorId, &Tensor);

/// Full-control entry point: options and optional observer.
pub fn run_with(g: &Graph, inputs: &[Tensor], opts: &RunOptions, mut observer: Option<Observer<'_>>) -> Result<Vec<Tensor>, Fp32Error> {
    let threads = opts.threads.max(1);
    if inputs.len() != g.inputs.len() {
        return Err(Fp32Error::new("inputs", format!("graph '{}' has {} inputs, {} given", g.name, g.inputs.len(), inputs.len())));
    }
    let nt = g.tensors.len();
    let mut converted: HashMap<TensorId, Vec<f32>> = HashMap::new();
    for t in g.nodes.iter().flat_map(|n| n.inputs.iter()).chain(g.outputs.iter()) {
        let info = g.tensors.get(*t).ok_or_else(|| Fp32Error::new("graph", format!("tensor id {t} out of range")))?;
        if let Some(d) = &info.data {
            if d.len() != info.numel() {
                return Err(Fp32Error::new(
                    format!("constant '{}'", info.name),
                    format!("shape {:?} but {} elements", info.shape, d.len()),
                ));
            }
            if let ConstData::I64(v) = d {
                converted.entry(*t).or_insert_with(|| v.iter().map(|&x| x as f32).collect());
            }
        }
    }
    let mut slots: Vec<Slot<'_>> = Vec::with_capacity(nt);
    for (i, t) in g.tensors.iter().enumerate() {
        slots.push(match &t.data {
            Some(ConstData::F32(v)) => Slot::Const(&t.shape, v),
            Some(ConstData::I64(_)) => match converted.get(&i) {
                Some(v) => Slot::Const(&t.shape, v),
                None => Slot::Empty,
            },
            None => Slot::Empty,
        });
    }
    for (k, (&id, x)) in g.inputs.iter().zip(inputs).enumerate() {
        let decl = &g.tensors[id].shape;
        let name = &g.tensors[id].name;
        if x.data.len() != x.shape.iter().product::<usize>() {
            return Err(Fp32Error::new(format!("input {k} '{name}'"), "data length does not match its shape"));
        }
        if x.shape.len() != decl.len() || x.shape.get(1..) != decl.get(1..) || x.shape.is_empty() {
            return Err(Fp32Error::new(
                format!("input {k} '{name}'"),
                format!("shape {:?} does not match the graph's {decl:?} (only the batch dimension may differ)", x.shape),
            ));
        }
        slots[id] = Slot::Const(&x.shape, &x.data);
    }
    // last use of every tensor, to free activations early
    let mut last_use = vec![usize::MAX; nt];
    for (i, n) in g.nodes.iter().enumerate() {
        for &t in &n.inputs {
            last_use[t] = i;
        }
    }
    for &t in &g.outputs {
        last_use[t] = usize::MAX;
    }
    for (i, node) in g.nodes.iter().enumerate() {
        let out_id = *node.outputs.first().ok_or_else(|| Fp32Error::node(node, "has no output"))?;
        if out_id >= nt || node.inputs.iter().any(|&t| t >= nt) {
            return Err(Fp32Error::node(node, "tensor id out of range"));
        }
        let result = {
            let mut views = Vec::with_capacity(node.inputs.len());
            for &t in &node.inputs {
                views.push(match &slots[t] {
                    Slot::Empty => {
                        return Err(Fp32Error::node(
                            node,
                            format!("input '{}' has not been computed (graph not in topological order?)", g.tensors[t].name),
                        ))
                    }
                    Slot::Const(s, d) => View { shape: s, data: d },
                    Slot::Owned(t) => t.view(),
                });
            }
            exec(g, node, &views, threads)?
        };
        if let Some(obs) = observer.as_mut() {
            obs(out_id, &result);
        }
        slots[out_id] = Slot::Owned(result);
        for &t in &node.inputs {
            if last_use[t] == i && matches!(slots[t], Slot::Owned(_)) {
                slots[t] = Slot::Empty;
            }
        }
    }
    let mut outs = Vec::with_capacity(g.outputs.len());
    for &o in &g.outputs {
        outs.push(match slots.get(o) {
            Some(Slot::Owned(t)) => t.clone(),
            Some(Slot::Const(s, d)) => Tensor { shape: s.to_vec(), data: d.to_vec() },
            _ => return Err(Fp32Error::new("outputs", format!("output tensor {o} was never computed"))),
        });
    }
    Ok(outs)
}

/// Evaluate one node on explicit inputs (used by constant folding).
pub fn eval_node(g: &Graph, node: &Node, inputs: &[&Tensor]) -> Result<Tensor, Fp32Error> {
    let views: Vec<View<'_>> = inputs.iter().map(|t| t.view()).collect();
    for v in &views {
        if v.data.len() != v.shape.iter().product::<usize>() {
            return Err(Fp32Error::node(node, "input data length does not match its shape"));
        }
    }
    exec(g, node, &views, 1)
}

/// Shapes of every tensor when the graph runs on inputs of the given shapes (constants keep
/// their own shape; tensors not reached keep the graph's declared shape).
pub fn infer_shapes(g: &Graph, input_shapes: &[Vec<usize>]) -> Result<Vec<Vec<usize>>, Fp32Error> {
    let mut shapes: Vec<Vec<usize>> = g.tensors.iter().map(|t| t.shape.clone()).collect();
    if input_shapes.len() != g.inputs.len() {
        return Err(Fp32Error::new("inputs", format!("{} input shapes for {} inputs", input_shapes.len(), g.inputs.len())));
    }
    for (&id, s) in g.inputs.iter().zip(input_shapes) {
        *shapes.get_mut(id).ok_or_else(|| Fp32Error::new("inputs", "input id out of range"))? = s.clone();
    }
    for node in &g.nodes {
        let out_id = *node.outputs.first().ok_or_else(|| Fp32Error::node(node, "has no output"))?;
        if out_id >= shapes.len() || node.inputs.iter().any(|&t| t >= shapes.len()) {
            return Err(Fp32Error::node(node, "tensor id out of range"));
        }
        let ins: Vec<&[usize]> = node.inputs.iter().map(|&t| shapes[t].as_slice()).collect();
        let decl = declared(g, node);
        let s = shape::infer_output_shape(&node.op, &ins, decl).map_err(|m| Fp32Error::node(node, m))?;
        shapes[out_id] = s;
    }
    Ok(shapes)
}

fn declared<'g>(g: &'g Graph, node: &Node) -> Option<(&'g [usize], &'g [usize])> {
    let i = g.tensors.get(*node.inputs.first()?)?;
    let o = g.tensors.get(*node.outputs.first()?)?;
    Some((&i.shape, &o.shape))
}

fn exec(g: &Graph, node: &Node, ins: &[View<'_>], threads: usize) -> Result<Tensor, Fp32Error> {
    let shapes: Vec<&[usize]> = ins.iter().map(|v| v.shape).collect();
    let out_shape = shape::infer_output_shape(&node.op, &shapes, declared(g, node)).map_err(|m| Fp32Error::node(node, m))?;
    let numel = out_shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= crate::onnx::MAX_TENSOR_ELEMENTS)
        .ok_or_else(|| Fp32Error::node(node, format!("output shape {out_shape:?} is too large")))?;
    let x = ins[0];
    let bias = ins.get(2).map(|v| v.data);
    let data = match &node.op {
        Op::Conv { window, group, act } => ops::conv2d(x, ins[1], bias, window, *group, *act, &out_shape, threads),
        Op::Dense { act } => ops::dense(x, ins[1], bias, *act, threads),
        Op::Add { act } => {
            let mut v = ops::binary(x, ins[1], &out_shape, |a, b| a + b);
            ops::activate(&mut v, *act);
            v
        }
        Op::Sub => ops::binary(x, ins[1], &out_shape, |a, b| a - b),
        Op::Mul { act } => {
            let mut v = ops::binary(x, ins[1], &out_shape, |a, b| a * b);
            ops::activate(&mut v, *act);
            v
        }
        Op::Div => ops::binary(x, ins[1], &out_shape, |a, b| a / b),
        Op::Act(a) => {
            let mut v = x.data.to_vec();
            ops::activate(&mut v, *a);
            v
        }
        Op::LeakyRelu { alpha } => x.data.iter().map(|&v| if v < 0.0 { v * alpha } else { v }).collect(),
        Op::HardSwish => x.data.iter().map(|&v| v * ((v + 3.0).clamp(0.0, 6.0) / 6.0)).collect(),
        Op::HardSigmoid { alpha, beta } => x.data.iter().map(|&v| (alpha * v + beta).clamp(0.0, 1.0)).collect(),
        Op::Sigmoid => x.data.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect(),
        Op::Tanh => x.data.iter().map(|&v| v.tanh()).collect(),
        Op::BatchNorm { eps } => ops::batchnorm(x, [ins[1].data, ins[2].data, ins[3].data, ins[4].data], *eps),
        Op::MaxPool { window, .. } => ops::pool(x, window, &out_shape, None, threads),
        Op::AvgPool { window, count_include_pad, .. } => ops::pool(x, window, &out_shape, Some(*count_include_pad), threads),
        Op::GlobalAvgPool => {
            let axes: Vec<usize> = (2..x.shape.len()).collect();
            ops::reduce_mean(x, &axes, numel)
        }
        Op::ReduceMean { axes, .. } => ops::reduce_mean(x, axes, numel),
        Op::Reshape | Op::Identity => x.data.to_vec(),
        Op::Transpose { perm } => ops::transpose(x, perm, &out_shape),
        Op::Slice { starts, steps } => ops::slice(x, starts, steps, &out_shape),
        Op::Ext(e) => e.def().run_f32(ins, &out_shape).map_err(|m| Fp32Error::node(node, m))?,
        Op::Softmax { axis } => ops::softmax(x, *axis),
    };
    debug_assert_eq!(data.len(), numel);
    if data.len() != numel {
        return Err(Fp32Error::node(node, format!("internal: produced {} elements for shape {out_shape:?}", data.len())));
    }
    Ok(Tensor { shape: out_shape, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Activation, Window};

    fn small_graph() -> Graph {
        let mut g = Graph { name: "t".into(), ..Default::default() };
        let x = g.add_tensor("x", vec![1, 2, 4, 4], None);
        let w = g.add_tensor("w", vec![3, 2, 3, 3], Some(ConstData::F32((0..54).map(|i| (i as f32 - 27.0) * 0.01).collect())));
        let b = g.add_tensor("b", vec![3], Some(ConstData::F32(vec![0.1, -0.2, 0.3])));
        let c = g.add_tensor("c", vec![1, 3, 4, 4], None);
        let f = g.add_tensor("f", vec![1, 48], None);
        let dw = g.add_tensor("dw", vec![5, 48], Some(ConstData::F32((0..240).map(|i| ((i % 7) as f32 - 3.0) * 0.05).collect())));
        let y = g.add_tensor("y", vec![1, 5], None);
        let win = Window { kernel: [3, 3], stride: [1, 1], pads: [1, 1, 1, 1], dilation: [1, 1] };
        g.nodes.push(Node {
            name: "conv".into(),
            op: Op::Conv { window: win, group: 1, act: Activation::Relu },
            inputs: vec![x, w, b],
            outputs: vec![c],
        });
        g.nodes.push(Node { name: "flat".into(), op: Op::Reshape, inputs: vec![c], outputs: vec![f] });
        g.nodes.push(Node { name: "fc".into(), op: Op::Dense { act: Activation::None }, inputs: vec![f, dw], outputs: vec![y] });
        g.inputs = vec![x];
        g.outputs = vec![y];
        g
    }

    #[test]
    fn batch_equals_singles() {
        let g = small_graph();
        let imgs: Vec<Vec<f32>> = (0..5).map(|k| (0..32).map(|i| ((i * (k + 3)) % 11) as f32 * 0.1 - 0.5).collect()).collect();
        let singles: Vec<Vec<f32>> =
            imgs.iter().map(|im| run(&g, &[Tensor::new(vec![1, 2, 4, 4], im.clone()).unwrap()]).unwrap()[0].data.clone()).collect();
        let batch = Tensor::new(vec![5, 2, 4, 4], imgs.concat()).unwrap();
        for threads in [1, 2, 4] {
            let mut seen = 0;
            let out = run_with(&g, std::slice::from_ref(&batch), &RunOptions { threads }, Some(&mut |_, _| seen += 1)).unwrap();
            assert_eq!(seen, 3);
            assert_eq!(out[0].shape, vec![5, 5]);
            assert_eq!(out[0].data, singles.concat());
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let g = small_graph();
        assert!(run(&g, &[]).is_err());
        assert!(run(&g, &[Tensor::zeros(vec![1, 3, 4, 4])]).is_err());
        assert!(run(&g, &[Tensor { shape: vec![1, 2, 4, 4], data: vec![0.0; 3] }]).is_err());
    }
}
