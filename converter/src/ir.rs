//! The converter's FP32 graph IR.
//!
//! Tensors are addressed by [`TensorId`] (an index into [`Graph::tensors`]); nodes are kept in
//! topological order. Layout follows ONNX: activations are NCHW, convolution weights are
//! `[O, I/group, KH, KW]`, dense weights are `[N, K]` (`y = x · Wᵀ + b`).
//!
//! After import and folding (see `passes`), every tensor has a fixed, fully known shape and every
//! constant is f32; shape arithmetic (Shape, Gather, Cast, Range, …) has been folded away.

use std::fmt;

/// Index of a tensor in [`Graph::tensors`].
pub type TensorId = usize;

/// Constant payload of a tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum ConstData {
    /// Floating point constant (weights, biases, BN statistics, …).
    F32(Vec<f32>),
    /// Integer constant (shapes, axes, indices); only lives until shape folding.
    I64(Vec<i64>),
}

impl ConstData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            ConstData::F32(v) => v.len(),
            ConstData::I64(v) => v.len(),
        }
    }
    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The f32 payload, if this is an f32 constant.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            ConstData::F32(v) => Some(v),
            ConstData::I64(_) => None,
        }
    }
}

/// A tensor: a name, a shape and, for constants, its data.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// Name from the source model (unique within the graph).
    pub name: String,
    /// Fixed shape (empty for scalars).
    pub shape: Vec<usize>,
    /// `Some` for constants (initializers and folded values).
    pub data: Option<ConstData>,
}

impl TensorInfo {
    /// Number of elements of the shape.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Activation fused into a producer (Conv, Dense, Add, …).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Activation {
    /// Identity.
    #[default]
    None,
    /// max(x, 0).
    Relu,
    /// clamp(x, min, max) (Relu6 is `Clip { min: 0, max: 6 }`).
    Clip {
        /// Lower bound.
        min: f32,
        /// Upper bound.
        max: f32,
    },
}

impl Activation {
    /// Apply the activation to one value.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::Clip { min, max } => x.max(min).min(max),
        }
    }
}

/// 2-D window geometry shared by convolutions and pools.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    /// Kernel size `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Strides `[sh, sw]`.
    pub stride: [usize; 2],
    /// Padding `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    /// Dilations `[dh, dw]`.
    pub dilation: [usize; 2],
}

pub use crate::ops::resize::ResizeMode;

/// An operation of the IR. Inputs/outputs are listed in [`Node`]; the order is documented per op.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// 2-D convolution. Inputs: x `[N,C,H,W]`, w `[O, C/group, KH, KW]`, optional bias `[O]`.
    Conv {
        /// Window geometry.
        window: Window,
        /// Group count (C for depthwise).
        group: usize,
        /// Fused activation.
        act: Activation,
    },
    /// Fully connected: `y = x · Wᵀ + b`. Inputs: x `[M, K]`, w `[N, K]`, optional bias `[N]`.
    Dense {
        /// Fused activation.
        act: Activation,
    },
    /// Elementwise add with numpy broadcasting. Inputs: a, b.
    Add {
        /// Fused activation.
        act: Activation,
    },
    /// Elementwise subtract with broadcasting.
    Sub,
    /// Elementwise multiply with broadcasting.
    Mul {
        /// Fused activation.
        act: Activation,
    },
    /// Elementwise divide with broadcasting.
    Div,
    /// Standalone activation (Relu, Clip) not fused into a producer.
    Act(Activation),
    /// LeakyRelu.
    LeakyRelu {
        /// Negative slope.
        alpha: f32,
    },
    /// x · relu6(x + 3) / 6.
    HardSwish,
    /// clamp(alpha · x + beta, 0, 1).
    HardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// Logistic sigmoid.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// Inference BatchNorm. Inputs: x, scale, bias, mean, var.
    BatchNorm {
        /// Epsilon.
        eps: f32,
    },
    /// Max pooling.
    MaxPool {
        /// Window geometry.
        window: Window,
        /// ONNX ceil_mode.
        ceil_mode: bool,
    },
    /// Average pooling.
    AvgPool {
        /// Window geometry.
        window: Window,
        /// ONNX ceil_mode.
        ceil_mode: bool,
        /// Whether padded cells count in the divisor.
        count_include_pad: bool,
    },
    /// Global average pooling `[N,C,H,W] → [N,C,1,1]`.
    GlobalAvgPool,
    /// Mean over axes (resolved, non-negative).
    ReduceMean {
        /// Axes reduced.
        axes: Vec<usize>,
        /// Keep reduced dims as 1.
        keepdims: bool,
    },
    /// Reshape to the node output's shape (Flatten, Reshape, Squeeze, Unsqueeze all become this).
    Reshape,
    /// Permute axes.
    Transpose {
        /// Permutation.
        perm: Vec<usize>,
    },
    /// Strided slice with resolved, clamped parameters, one entry per axis of the input.
    Slice {
        /// Start per axis.
        starts: Vec<usize>,
        /// Step per axis (≥ 1).
        steps: Vec<usize>,
    },
    /// An op defined in one place in [`crate::ops`] (its import, shape rule, FP32 execution,
    /// lowering and export), e.g. Resize.
    Ext(crate::ops::ExtOp),
    /// Softmax along an axis.
    Softmax {
        /// Axis (non-negative).
        axis: usize,
    },
    /// Identity (Dropout, Identity); removed by passes.
    Identity,
}

impl Op {
    /// Short op name for messages and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv { .. } => "Conv",
            Op::Dense { .. } => "Dense",
            Op::Add { .. } => "Add",
            Op::Sub => "Sub",
            Op::Mul { .. } => "Mul",
            Op::Div => "Div",
            Op::Act(_) => "Activation",
            Op::LeakyRelu { .. } => "LeakyRelu",
            Op::HardSwish => "HardSwish",
            Op::HardSigmoid { .. } => "HardSigmoid",
            Op::Sigmoid => "Sigmoid",
            Op::Tanh => "Tanh",
            Op::BatchNorm { .. } => "BatchNorm",
            Op::MaxPool { .. } => "MaxPool",
            Op::AvgPool { .. } => "AvgPool",
            Op::GlobalAvgPool => "GlobalAvgPool",
            Op::ReduceMean { .. } => "ReduceMean",
            Op::Reshape => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Slice { .. } => "Slice",
            Op::Ext(e) => e.name(),
            Op::Softmax { .. } => "Softmax",
            Op::Identity => "Identity",
        }
    }
}

/// A node: an op applied to input tensors, producing output tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Node name from the source model (or generated), used in messages.
    pub name: String,
    /// The operation.
    pub op: Op,
    /// Input tensor ids (order documented on [`Op`]).
    pub inputs: Vec<TensorId>,
    /// Output tensor ids.
    pub outputs: Vec<TensorId>,
}

/// A whole model graph.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    /// Model name.
    pub name: String,
    /// All tensors (activations and constants).
    pub tensors: Vec<TensorInfo>,
    /// Nodes in topological order.
    pub nodes: Vec<Node>,
    /// Graph inputs (non-constant).
    pub inputs: Vec<TensorId>,
    /// Graph outputs.
    pub outputs: Vec<TensorId>,
}

impl Graph {
    /// Add a tensor and return its id.
    pub fn add_tensor(&mut self, name: impl Into<String>, shape: Vec<usize>, data: Option<ConstData>) -> TensorId {
        self.tensors.push(TensorInfo { name: name.into(), shape, data });
        self.tensors.len() - 1
    }
    /// The f32 data of a constant tensor, if it is one.
    pub fn const_f32(&self, id: TensorId) -> Option<&[f32]> {
        self.tensors.get(id)?.data.as_ref()?.as_f32()
    }
    /// The shape of graph input 0 with batch `n`.
    pub fn input_shape_for(&self, n: usize) -> Vec<usize> {
        let mut s = self.inputs.first().map(|&i| self.tensors[i].shape.clone()).unwrap_or_default();
        if let Some(b) = s.first_mut() {
            *b = n;
        }
        s
    }
    /// Index of the node producing `id`, if any.
    pub fn producer(&self, id: TensorId) -> Option<usize> {
        self.nodes.iter().position(|n| n.outputs.contains(&id))
    }
    /// Indices of the nodes consuming `id`.
    pub fn consumers(&self, id: TensorId) -> Vec<usize> {
        self.nodes.iter().enumerate().filter(|(_, n)| n.inputs.contains(&id)).map(|(i, _)| i).collect()
    }
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "graph {} ({} nodes, {} tensors)", self.name, self.nodes.len(), self.tensors.len())?;
        for n in &self.nodes {
            let ins: Vec<String> = n.inputs.iter().map(|&i| format!("{}{:?}", self.tensors[i].name, self.tensors[i].shape)).collect();
            let outs: Vec<String> = n.outputs.iter().map(|&i| format!("{}{:?}", self.tensors[i].name, self.tensors[i].shape)).collect();
            writeln!(f, "  {} [{}] ({}) -> ({})", n.name, n.op.name(), ins.join(", "), outs.join(", "))?;
        }
        Ok(())
    }
}
