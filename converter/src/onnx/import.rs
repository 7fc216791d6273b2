//! ONNX graph → IR conversion: fixes input shapes, folds shape arithmetic, maps every node.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::constant::{self, Bin, Cv};
use super::proto::{AttributeProto, Dim, GraphProto, ModelProto, NodeProto, TensorProto, ValueInfo};
use super::tensor::{self, checked_numel, dtype_name, is_float_type};
use super::{AttributeFault, InputShapes, OnnxError, MAX_TENSOR_ELEMENTS};
use crate::fp32::shape::{broadcast_shapes, infer_output_shape};
use crate::fp32::{self, Tensor};
use crate::ir::{Activation, ConstData, Graph, Node, Op, TensorId, Window};

mod oned;

/// Per-node context: names the node in errors and reads attributes.
struct Ctx<'n, 'a> {
    node: &'n NodeProto<'a>,
    name: String,
    opset: i64,
    file: &'n str,
}

type R<T> = Result<T, OnnxError>;

/// Largest kernel/stride/pad/dilation value accepted from a model.
const MAX_WINDOW: i64 = 1 << 20;

impl<'n, 'a> Ctx<'n, 'a> {
    fn op(&self) -> &str {
        &self.node.op_type
    }

    fn unsupported(&self, attribute: &str, detail: impl Into<String>) -> OnnxError {
        OnnxError::UnsupportedAttribute(Box::new(AttributeFault {
            file: self.file.to_string(),
            op_type: self.node.op_type.clone(),
            node: self.name.clone(),
            opset: self.opset,
            attribute: attribute.to_string(),
            detail: detail.into(),
        }))
    }

    fn invalid(&self, message: impl Into<String>) -> OnnxError {
        OnnxError::Invalid {
            file: self.file.to_string(),
            context: format!(
                "node '{}' ({}, opset {}, NodeProto at byte offset {})",
                self.name, self.node.op_type, self.opset, self.node.offset
            ),
            message: message.into(),
        }
    }

    fn attr(&self, name: &str) -> Option<&'n AttributeProto<'a>> {
        self.node.attribute.iter().rev().find(|a| a.name == name)
    }

    fn check_type(&self, a: &AttributeProto<'_>, want: i32, what: &str) -> R<()> {
        if a.ref_attr_name.is_some() {
            return Err(self.unsupported(&a.name, "attribute references (functions) are not supported"));
        }
        if a.ty != 0 && a.ty != want {
            return Err(
                self.invalid(format!("attribute '{}' (at byte offset {}) has type {} but {what} is expected", a.name, a.offset, a.ty))
            );
        }
        Ok(())
    }

    fn int(&self, name: &str, default: i64) -> R<i64> {
        match self.attr(name) {
            None => Ok(default),
            Some(a) => {
                self.check_type(a, 2, "INT")?;
                Ok(a.i.unwrap_or(0))
            }
        }
    }

    fn float(&self, name: &str, default: f32) -> R<f32> {
        match self.attr(name) {
            None => Ok(default),
            Some(a) => {
                self.check_type(a, 1, "FLOAT")?;
                Ok(a.f.unwrap_or(0.0))
            }
        }
    }

    fn ints(&self, name: &str) -> R<Option<Vec<i64>>> {
        match self.attr(name) {
            None => Ok(None),
            Some(a) => {
                self.check_type(a, 7, "INTS")?;
                Ok(Some(a.ints.clone()))
            }
        }
    }

    fn floats(&self, name: &str) -> R<Option<Vec<f32>>> {
        match self.attr(name) {
            None => Ok(None),
            Some(a) => {
                self.check_type(a, 6, "FLOATS")?;
                Ok(Some(a.floats.clone()))
            }
        }
    }

    fn string(&self, name: &str, default: &str) -> R<String> {
        match self.attr(name) {
            None => Ok(default.to_string()),
            Some(a) => {
                self.check_type(a, 3, "STRING")?;
                let s = a.s.unwrap_or(&[]);
                String::from_utf8(s.to_vec()).map_err(|_| self.invalid(format!("attribute '{name}' is not UTF-8")))
            }
        }
    }

    /// Normalise a possibly negative axis against `rank`.
    fn axis(&self, attr: &str, a: i64, rank: usize) -> R<usize> {
        let r = rank as i64;
        let v = if a < 0 { a + r } else { a };
        if v < 0 || v >= r {
            return Err(self.invalid(format!("{attr} {a} is out of range for rank {rank}")));
        }
        Ok(v as usize)
    }
}

fn usize_dims(ctx: &Ctx<'_, '_>, what: &str, v: &[i64]) -> R<Vec<usize>> {
    v.iter().map(|&d| usize::try_from(d).map_err(|_| ctx.invalid(format!("{what} {v:?} has a negative value")))).collect()
}

struct Importer<'m, 'a> {
    file: &'m str,
    base_dir: Option<&'m Path>,
    opset: i64,
    opsets: HashMap<String, i64>,
    g: Graph,
    names: HashMap<String, TensorId>,
    inits: HashMap<&'m str, &'m TensorProto<'a>>,
    taken: HashSet<String>,
}

/// Import a decoded model.
pub(crate) fn import_model(m: &ModelProto<'_>, base_dir: Option<&Path>, input_shapes: &InputShapes, file: &str) -> R<Graph> {
    let invalid = |context: &str, message: String| OnnxError::Invalid { file: file.to_string(), context: context.to_string(), message };
    let Some(gp) = &m.graph else {
        return Err(invalid("ModelProto", "the model has no graph".into()));
    };
    let mut opsets = HashMap::new();
    for o in &m.opset_import {
        let d = if o.domain == "ai.onnx" { String::new() } else { o.domain.clone() };
        opsets.insert(d, o.version);
    }
    let opset = match opsets.get("") {
        Some(&v) => v,
        None if m.opset_import.is_empty() => {
            return Err(invalid("ModelProto", "no opset_import entries (cannot tell the operator set version)".into()))
        }
        None => return Err(invalid("ModelProto", "no opset_import entry for the default ONNX domain".into())),
    };
    if !(7..=23).contains(&opset) {
        return Err(invalid("ModelProto", format!("opset {opset} is not supported (temper reads opsets 7–23)")));
    }
    if !(11..=21).contains(&opset) {
        log::warn!("{file}: opset {opset} is outside the tested range 11–21");
    }
    if gp.has_sparse_initializer {
        return Err(invalid("GraphProto", "sparse initializers are not supported".into()));
    }
    let mut imp = Importer {
        file,
        base_dir,
        opset,
        opsets,
        g: Graph { name: gp.name.clone(), ..Default::default() },
        names: HashMap::new(),
        inits: HashMap::new(),
        taken: HashSet::new(),
    };
    for t in &gp.initializer {
        imp.inits.insert(t.name.as_str(), t);
    }
    imp.inputs(gp, input_shapes)?;
    for (i, n) in gp.node.iter().enumerate() {
        imp.node(n, i).map_err(|e| explain_order(e, &gp.node[i..]))?;
    }
    imp.outputs(gp)?;
    Ok(imp.g)
}

/// When a node reads a tensor that only a later node produces, say so: the nodes are out of
/// topological order or form a cycle.
fn explain_order(e: OnnxError, rest: &[NodeProto<'_>]) -> OnnxError {
    let OnnxError::Invalid { file, context, message } = e else { return e };
    let missing = message.strip_prefix("input '").and_then(|m| m.split_once("' is not produced by any earlier node")).map(|(n, _)| n);
    let later = missing.and_then(|name| rest.iter().find(|n| n.output.iter().any(|o| o == name)));
    let message = match later {
        Some(n) => {
            format!("{message}; node '{}' ({}) produces it later: the graph has a cycle or is not in topological order", n.name, n.op_type)
        }
        None => message,
    };
    OnnxError::Invalid { file, context, message }
}

impl<'m, 'a> Importer<'m, 'a> {
    fn unique(&mut self, base: &str) -> String {
        let mut name = if base.is_empty() { "t".to_string() } else { base.to_string() };
        let mut k = 1;
        while self.taken.contains(&name) {
            name = format!("{base}__{k}");
            k += 1;
        }
        self.taken.insert(name.clone());
        name
    }

    fn new_tensor(&mut self, name: &str, shape: Vec<usize>, data: Option<ConstData>) -> TensorId {
        let n = self.unique(name);
        self.g.add_tensor(n, shape, data)
    }

    fn bind(&mut self, ctx: &Ctx<'_, '_>, onnx_name: &str, id: TensorId) -> R<()> {
        if onnx_name.is_empty() {
            return Ok(());
        }
        if self.names.contains_key(onnx_name) || self.inits.contains_key(onnx_name) {
            return Err(ctx.invalid(format!("output '{onnx_name}' is already defined elsewhere in the graph")));
        }
        self.names.insert(onnx_name.to_string(), id);
        Ok(())
    }

    fn const_tensor(&mut self, name: &str, cv: Cv) -> TensorId {
        self.new_tensor(name, cv.shape, Some(cv.data))
    }

    fn inputs(&mut self, gp: &GraphProto<'_>, user: &InputShapes) -> R<()> {
        let names: Vec<&str> = gp.input.iter().map(|vi| vi.name.as_str()).filter(|n| !self.inits.contains_key(n)).collect();
        if let Some(n) = user.entries.iter().filter_map(|(n, _)| n.as_deref()).find(|n| !names.contains(n)) {
            return Err(OnnxError::Invalid {
                file: self.file.to_string(),
                context: format!("--input-shape {n}=…"),
                message: format!("the graph has no input named '{n}' (its inputs: {})", names.join(", ")),
            });
        }
        for vi in &gp.input {
            if self.inits.contains_key(vi.name.as_str()) {
                continue; // old exporters list initializers as inputs
            }
            if self.names.contains_key(&vi.name) {
                return Err(OnnxError::Invalid {
                    file: self.file.to_string(),
                    context: format!("graph input '{}'", vi.name),
                    message: "declared twice".into(),
                });
            }
            if vi.elem_type != 0 && !is_float_type(vi.elem_type) {
                return Err(OnnxError::Invalid {
                    file: self.file.to_string(),
                    context: format!("graph input '{}' (ValueInfoProto at byte offset {})", vi.name, vi.offset),
                    message: format!("element type {} is not supported (inputs must be float)", dtype_name(vi.elem_type)),
                });
            }
            let shape = self.resolve_input_shape(vi, user.get(&vi.name, self.g.inputs.len()))?;
            let id = self.new_tensor(&vi.name, shape, None);
            self.names.insert(vi.name.clone(), id);
            self.g.inputs.push(id);
        }
        if self.g.inputs.is_empty() {
            return Err(OnnxError::Invalid {
                file: self.file.to_string(),
                context: "GraphProto".into(),
                message: "the graph has no (non-initializer) inputs".into(),
            });
        }
        Ok(())
    }

    fn resolve_input_shape(&self, vi: &ValueInfo, user: Option<&[usize]>) -> R<Vec<usize>> {
        let dyn_err = |m: String| OnnxError::DynamicShape { file: self.file.to_string(), tensor: vi.name.clone(), message: m };
        let declared: Option<Vec<Option<usize>>> = vi.shape.as_ref().map(|dims| {
            dims.iter()
                .map(|d| match d {
                    Dim::Value(v) if *v > 0 => usize::try_from(*v).ok(),
                    _ => None,
                })
                .collect()
        });
        let show = |d: &[Dim]| -> String {
            let parts: Vec<String> = d
                .iter()
                .map(|x| match x {
                    Dim::Value(v) if *v > 0 => v.to_string(),
                    Dim::Value(v) => format!("{v} (dynamic)"),
                    Dim::Param(p) => format!("'{p}'"),
                    Dim::Unknown => "?".into(),
                })
                .collect();
            format!("[{}]", parts.join(", "))
        };
        if let Some(u) = user {
            if u.is_empty() || u.contains(&0) {
                return Err(dyn_err(format!("the given input shape {u:?} must be non-empty with all dims ≥ 1")));
            }
            if let (Some(d), Some(raw)) = (&declared, &vi.shape) {
                if d.len() != u.len() {
                    return Err(dyn_err(format!("the given input shape {u:?} has rank {} but the model declares {}", u.len(), show(raw))));
                }
                for (i, (dd, &uu)) in d.iter().zip(u).enumerate() {
                    if let Some(dd) = dd {
                        if *dd != uu {
                            return Err(dyn_err(format!("the given input shape {u:?} differs from the declared {} in dim {i}", show(raw))));
                        }
                    }
                }
            }
            if checked_numel(u).is_none() {
                return Err(dyn_err(format!("input shape {u:?} is too large")));
            }
            return Ok(u.to_vec());
        }
        let (Some(d), Some(raw)) = (declared, &vi.shape) else {
            return Err(dyn_err("the model declares no shape for it".into()));
        };
        let unknown: Vec<usize> = d.iter().enumerate().filter(|(_, x)| x.is_none()).map(|(i, _)| i).collect();
        if unknown.iter().any(|&i| i != 0) {
            return Err(dyn_err(format!("dimensions {unknown:?} of the declared shape {} are dynamic", show(raw))));
        }
        let s: Vec<usize> = d.iter().map(|x| x.unwrap_or(1)).collect();
        if s.is_empty() {
            return Err(dyn_err("scalar graph inputs are not supported".into()));
        }
        if checked_numel(&s).is_none() {
            return Err(dyn_err(format!("declared shape {} is too large", show(raw))));
        }
        Ok(s)
    }

    fn outputs(&mut self, gp: &GraphProto<'_>) -> R<()> {
        for vi in &gp.output {
            let Some(&id) = self.names.get(&vi.name) else {
                return Err(OnnxError::Invalid {
                    file: self.file.to_string(),
                    context: format!("graph output '{}'", vi.name),
                    message: "is not produced by any node, input or initializer".into(),
                });
            };
            if let Some(dims) = &vi.shape {
                let got = &self.g.tensors[id].shape;
                let mism = dims.len() != got.len()
                    || dims.iter().zip(got).enumerate().any(|(i, (d, &g))| match d {
                        Dim::Value(v) if *v > 0 && i > 0 => *v as usize != g,
                        _ => false,
                    });
                if mism {
                    log::warn!(
                        "{}: graph output '{}' computed shape {:?} differs from the declared one {:?}",
                        self.file,
                        vi.name,
                        got,
                        dims
                    );
                }
            }
            self.g.outputs.push(id);
        }
        if self.g.outputs.is_empty() {
            return Err(OnnxError::Invalid {
                file: self.file.to_string(),
                context: "GraphProto".into(),
                message: "the graph has no outputs".into(),
            });
        }
        Ok(())
    }

    // ----- value access -------------------------------------------------------------------

    fn lookup(&mut self, ctx: &Ctx<'_, '_>, name: &str) -> R<TensorId> {
        if let Some(&id) = self.names.get(name) {
            return Ok(id);
        }
        if let Some(t) = self.inits.get(name).copied() {
            let (shape, data) = tensor::tensor_to_const(t, self.file, self.base_dir)?;
            let id = self.new_tensor(name, shape, Some(data));
            self.names.insert(name.to_string(), id);
            return Ok(id);
        }
        Err(ctx.invalid(format!("input '{name}' is not produced by any earlier node, graph input or initializer")))
    }

    fn opt_input(&mut self, ctx: &Ctx<'_, '_>, i: usize) -> R<Option<TensorId>> {
        match ctx.node.input.get(i) {
            None => Ok(None),
            Some(n) if n.is_empty() => Ok(None),
            Some(n) => self.lookup(ctx, &n.clone()).map(Some),
        }
    }

    fn input(&mut self, ctx: &Ctx<'_, '_>, i: usize) -> R<TensorId> {
        self.opt_input(ctx, i)?.ok_or_else(|| ctx.invalid(format!("required input {i} is missing")))
    }

    fn shape(&self, id: TensorId) -> Vec<usize> {
        self.g.tensors[id].shape.clone()
    }

    fn cv(&self, id: TensorId) -> Option<Cv> {
        let t = &self.g.tensors[id];
        t.data.as_ref().map(|d| Cv { shape: t.shape.clone(), data: d.clone() })
    }

    fn const_input(&mut self, ctx: &Ctx<'_, '_>, i: usize, what: &str) -> R<Option<Cv>> {
        let Some(id) = self.opt_input(ctx, i)? else { return Ok(None) };
        match self.cv(id) {
            Some(c) => Ok(Some(c)),
            None => Err(ctx.unsupported(what, format!("input {i} ('{}') must be a constant", self.g.tensors[id].name))),
        }
    }

    fn output_name(&self, ctx: &Ctx<'_, '_>, i: usize) -> R<String> {
        match ctx.node.output.get(i) {
            Some(n) if !n.is_empty() => Ok(n.clone()),
            _ => Err(ctx.invalid(format!("output {i} is missing"))),
        }
    }

    /// Bind output 0 to a constant.
    fn out_const(&mut self, ctx: &Ctx<'_, '_>, cv: Cv) -> R<()> {
        if checked_numel(&cv.shape) != Some(cv.data.len()) {
            return Err(ctx.invalid(format!("constant result of shape {:?} is inconsistent or too large", cv.shape)));
        }
        let name = self.output_name(ctx, 0)?;
        let id = self.const_tensor(&name, cv);
        self.bind(ctx, &name, id)
    }

    /// Add an IR node; integer constants among the inputs become f32.
    fn emit_node(
        &mut self,
        ctx: &Ctx<'_, '_>,
        suffix: &str,
        op: Op,
        inputs: Vec<TensorId>,
        out_name: &str,
        shape: Option<Vec<usize>>,
    ) -> R<TensorId> {
        let mut ins = Vec::with_capacity(inputs.len());
        for id in inputs {
            let t = &self.g.tensors[id];
            if let Some(ConstData::I64(v)) = &t.data {
                let (name, shape) = (format!("{}__f32", t.name), t.shape.clone());
                let data = ConstData::F32(v.iter().map(|&x| x as f32).collect());
                ins.push(self.new_tensor(&name, shape, Some(data)));
            } else {
                ins.push(id);
            }
        }
        let shape = match shape {
            Some(s) => s,
            None => {
                let shapes: Vec<&[usize]> = ins.iter().map(|&i| self.g.tensors[i].shape.as_slice()).collect();
                infer_output_shape(&op, &shapes, None).map_err(|m| ctx.invalid(m))?
            }
        };
        if checked_numel(&shape).is_none() {
            return Err(ctx.invalid(format!("output shape {shape:?} is too large")));
        }
        let id = self.new_tensor(out_name, shape, None);
        let name = if suffix.is_empty() { ctx.name.clone() } else { format!("{}/{suffix}", ctx.name) };
        let node = Node { name, op, inputs: ins, outputs: vec![id] };
        // All inputs constant: evaluate now, so the value can feed shape-like inputs later.
        let consts: Option<Vec<Tensor>> = node
            .inputs
            .iter()
            .map(|&i| {
                let t = &self.g.tensors[i];
                t.data.as_ref().and_then(|d| d.as_f32()).map(|d| Tensor { shape: t.shape.clone(), data: d.to_vec() })
            })
            .collect();
        match consts {
            Some(c) if !c.is_empty() => {
                let refs: Vec<&Tensor> = c.iter().collect();
                let out = fp32::eval_node(&self.g, &node, &refs).map_err(|e| ctx.invalid(e.to_string()))?;
                let t = &mut self.g.tensors[id];
                t.shape = out.shape;
                t.data = Some(ConstData::F32(out.data));
            }
            _ => self.g.nodes.push(node),
        }
        Ok(id)
    }

    /// Emit the node's main op bound to output 0.
    fn emit(&mut self, ctx: &Ctx<'_, '_>, op: Op, inputs: Vec<TensorId>) -> R<()> {
        self.emit_shaped(ctx, op, inputs, None)
    }

    fn emit_shaped(&mut self, ctx: &Ctx<'_, '_>, op: Op, inputs: Vec<TensorId>, shape: Option<Vec<usize>>) -> R<()> {
        let name = self.output_name(ctx, 0)?;
        let id = self.emit_node(ctx, "", op, inputs, &name, shape)?;
        self.bind(ctx, &name, id)
    }

    /// Reshape-like op: fold on constants, else an IR Reshape.
    fn reshape_to(&mut self, ctx: &Ctx<'_, '_>, x: TensorId, shape: Vec<usize>) -> R<()> {
        let n_in = self.g.tensors[x].numel();
        if checked_numel(&shape) != Some(n_in) {
            return Err(ctx.invalid(format!("cannot reshape {:?} ({n_in} elements) to {shape:?}", self.g.tensors[x].shape)));
        }
        if let Some(c) = self.cv(x) {
            return self.out_const(ctx, Cv { shape, data: c.data });
        }
        self.emit_shaped(ctx, Op::Reshape, vec![x], Some(shape))
    }

    // ----- nodes ----------------------------------------------------------------------------

    fn node(&mut self, n: &NodeProto<'_>, index: usize) -> R<()> {
        let domain = if n.domain == "ai.onnx" { "" } else { n.domain.as_str() };
        let name = if n.name.is_empty() { format!("{}_{index}", n.op_type) } else { n.name.clone() };
        let opset = self.opsets.get(domain).copied().unwrap_or(0);
        let ctx = Ctx { node: n, name, opset, file: self.file };
        if !domain.is_empty() {
            return Err(OnnxError::UnsupportedOp {
                file: self.file.to_string(),
                op_type: n.op_type.clone(),
                domain: domain.to_string(),
                node: ctx.name.clone(),
                opset,
            });
        }
        if let Some(a) = n.attribute.iter().find(|a| a.has_graph) {
            return Err(ctx.unsupported(&a.name, "sub-graphs (control flow) are not supported"));
        }
        self.convert(&ctx)
    }

    fn convert(&mut self, ctx: &Ctx<'_, '_>) -> R<()> {
        if let Some(import) = crate::ops::importer(ctx.op()) {
            return import(&mut ImportCx { imp: self, ctx });
        }
        let opset = self.opset;
        match ctx.op() {
            "Constant" => self.constant(ctx),
            "Identity" => self.identity(ctx),
            "Dropout" => {
                if opset >= 12 {
                    if let Some(t) = self.const_input(ctx, 2, "training_mode")? {
                        if t.to_i64().first().copied().unwrap_or(0) != 0 {
                            return Err(ctx.unsupported("training_mode", "training-mode Dropout"));
                        }
                    }
                }
                self.identity(ctx)
            }
            "Cast" => self.cast(ctx),
            "Shape" => {
                let x = self.input(ctx, 0)?;
                let s = self.shape(x);
                let r = s.len() as i64;
                let clampi = |v: i64| -> usize { (if v < 0 { v + r } else { v }).clamp(0, r) as usize };
                let start = clampi(ctx.int("start", 0)?);
                let end = clampi(ctx.int("end", r)?);
                let dims: Vec<i64> = s[start..end.max(start)].iter().map(|&d| d as i64).collect();
                self.out_const(ctx, Cv::i64s(vec![dims.len()], dims))
            }
            "Size" => {
                let x = self.input(ctx, 0)?;
                let n = self.g.tensors[x].numel() as i64;
                self.out_const(ctx, Cv::i64s(vec![], vec![n]))
            }
            "Gather" => self.gather(ctx),
            "Unsqueeze" => self.unsqueeze(ctx),
            "Squeeze" => self.squeeze(ctx),
            "Flatten" => {
                let x = self.input(ctx, 0)?;
                let s = self.shape(x);
                let a = ctx.int("axis", 1)?;
                let axis = if a == s.len() as i64 { s.len() } else { ctx.axis("axis", a, s.len())? };
                let out = vec![s[..axis].iter().product(), s[axis..].iter().product()];
                self.reshape_to(ctx, x, out)
            }
            "Reshape" => self.reshape(ctx),
            "Split" => self.split(ctx),
            "Range" => self.range(ctx),
            "ConstantOfShape" => self.constant_of_shape(ctx),
            "Expand" => {
                let x = self.input(ctx, 0)?;
                let s = self.const_input(ctx, 1, "shape")?.ok_or_else(|| ctx.invalid("missing shape"))?;
                let target = usize_dims(ctx, "shape", &s.to_i64())?;
                let Some(c) = self.cv(x) else {
                    return Err(ctx.unsupported("input", "Expand is only supported on constants"));
                };
                let out = broadcast_shapes(&c.shape, &target).map_err(|m| ctx.invalid(m))?;
                checked_numel(&out).ok_or_else(|| ctx.invalid("result too large"))?;
                let r = constant::expand(&c, &out);
                self.out_const(ctx, r)
            }
            "Equal" | "Less" | "Greater" | "Min" | "Max" if ctx.node.input.len() == 2 => {
                let op = match ctx.op() {
                    "Equal" => Bin::Equal,
                    "Less" => Bin::Less,
                    "Greater" => Bin::Greater,
                    "Min" => Bin::Min,
                    _ => Bin::Max,
                };
                let (a, b) = (self.input(ctx, 0)?, self.input(ctx, 1)?);
                match (self.cv(a), self.cv(b)) {
                    (Some(a), Some(b)) => {
                        let r = constant::binary(&a, &b, op, MAX_TENSOR_ELEMENTS).map_err(|m| ctx.invalid(m))?;
                        self.out_const(ctx, r)
                    }
                    _ => Err(self.const_only(ctx)),
                }
            }
            "Not" | "Neg" | "Abs" | "Sqrt" | "Floor" | "Ceil" | "Reciprocal" => {
                let x = self.input(ctx, 0)?;
                let Some(c) = self.cv(x) else { return Err(self.const_only(ctx)) };
                let r = match (ctx.op(), &c.data) {
                    ("Not", _) => Cv::i64s(c.shape.clone(), c.to_i64().iter().map(|&v| i64::from(v == 0)).collect()),
                    ("Neg", ConstData::I64(v)) => Cv::i64s(c.shape.clone(), v.iter().map(|x| x.wrapping_neg()).collect()),
                    ("Abs", ConstData::I64(v)) => Cv::i64s(c.shape.clone(), v.iter().map(|x| x.wrapping_abs()).collect()),
                    ("Floor" | "Ceil", ConstData::I64(_)) => c.clone(),
                    (op, _) => {
                        let f: fn(f32) -> f32 = match op {
                            "Neg" => |v| -v,
                            "Abs" => f32::abs,
                            "Sqrt" => f32::sqrt,
                            "Floor" => f32::floor,
                            "Ceil" => f32::ceil,
                            _ => |v| 1.0 / v,
                        };
                        Cv { shape: c.shape.clone(), data: ConstData::F32(c.to_f32().into_iter().map(f).collect()) }
                    }
                };
                self.out_const(ctx, r)
            }
            "Where" => {
                let (c, x, y) = (self.input(ctx, 0)?, self.input(ctx, 1)?, self.input(ctx, 2)?);
                match (self.cv(c), self.cv(x), self.cv(y)) {
                    (Some(c), Some(x), Some(y)) => {
                        let r = constant::where_(&c, &x, &y, MAX_TENSOR_ELEMENTS).map_err(|m| ctx.invalid(m))?;
                        self.out_const(ctx, r)
                    }
                    _ => Err(self.const_only(ctx)),
                }
            }
            "Add" | "Sub" | "Mul" | "Div" => self.arith(ctx),
            "Relu" => {
                let x = self.input(ctx, 0)?;
                self.emit(ctx, Op::Act(Activation::Relu), vec![x])
            }
            "Clip" => self.clip(ctx),
            "LeakyRelu" => {
                let x = self.input(ctx, 0)?;
                let alpha = ctx.float("alpha", 0.01)?;
                self.emit(ctx, Op::LeakyRelu { alpha }, vec![x])
            }
            "HardSwish" => {
                let x = self.input(ctx, 0)?;
                self.emit(ctx, Op::HardSwish, vec![x])
            }
            "HardSigmoid" => {
                let x = self.input(ctx, 0)?;
                let (alpha, beta) = (ctx.float("alpha", 0.2)?, ctx.float("beta", 0.5)?);
                self.emit(ctx, Op::HardSigmoid { alpha, beta }, vec![x])
            }
            "Sigmoid" => {
                let x = self.input(ctx, 0)?;
                self.emit(ctx, Op::Sigmoid, vec![x])
            }
            "Tanh" => {
                let x = self.input(ctx, 0)?;
                self.emit(ctx, Op::Tanh, vec![x])
            }
            "BatchNormalization" => self.batchnorm(ctx),
            "Conv" => self.conv(ctx),
            "Gemm" => self.gemm(ctx),
            "MatMul" => self.matmul(ctx),
            "MaxPool" | "AveragePool" => self.pool(ctx),
            "GlobalAveragePool" | "GlobalMaxPool" if { self.input(ctx, 0).map(|x| self.shape(x).len()) }? == 3 => {
                let x = self.input(ctx, 0)?;
                self.global_pool_1d(ctx, x)
            }
            "GlobalAveragePool" => {
                let x = self.input(ctx, 0)?;
                if self.shape(x).len() != 4 {
                    return Err(ctx.unsupported("input", format!("only 4-D (NCHW) inputs, got {:?}", self.shape(x))));
                }
                self.emit(ctx, Op::GlobalAvgPool, vec![x])
            }
            "GlobalMaxPool" => {
                let x = self.input(ctx, 0)?;
                let s = self.shape(x);
                if s.len() != 4 {
                    return Err(ctx.unsupported("input", format!("only 4-D (NCHW) inputs, got {s:?}")));
                }
                let window = Window { kernel: [s[2], s[3]], stride: [1, 1], pads: [0; 4], dilation: [1, 1] };
                self.emit(ctx, Op::MaxPool { window, ceil_mode: false }, vec![x])
            }
            "ReduceMean" => self.reduce_mean(ctx),
            "Transpose" => {
                let x = self.input(ctx, 0)?;
                let s = self.shape(x);
                let perm = match ctx.ints("perm")? {
                    Some(p) => p.iter().map(|&a| ctx.axis("perm", a, s.len())).collect::<R<Vec<_>>>()?,
                    None => (0..s.len()).rev().collect(),
                };
                let op = Op::Transpose { perm: perm.clone() };
                let out = infer_output_shape(&op, &[&s], None).map_err(|m| ctx.invalid(m))?;
                if let Some(c) = self.cv(x) {
                    let st = constant::strides(&s);
                    let pst: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
                    let idx = constant::strided_indices(&out, 0, &pst);
                    return self.out_const(ctx, Cv { shape: out, data: constant::take(&c.data, &idx) });
                }
                self.emit(ctx, op, vec![x])
            }
            "Slice" => self.slice(ctx),
            "Softmax" => self.softmax(ctx),
            _ => Err(OnnxError::UnsupportedOp {
                file: self.file.to_string(),
                op_type: ctx.op().to_string(),
                domain: String::new(),
                node: ctx.name.clone(),
                opset: ctx.opset,
            }),
        }
    }

    fn const_only(&self, ctx: &Ctx<'_, '_>) -> OnnxError {
        ctx.unsupported("input", format!("{} is only supported on constant inputs (shape arithmetic)", ctx.op()))
    }

    fn constant(&mut self, ctx: &Ctx<'_, '_>) -> R<()> {
        let a = ctx.node.attribute.first().ok_or_else(|| ctx.invalid("Constant without a value attribute"))?;
        let cv = match a.name.as_str() {
            "value" => {
                ctx.check_type(a, 4, "TENSOR")?;
                let t = a.t.as_ref().ok_or_else(|| ctx.invalid("attribute 'value' has no tensor"))?;
                let (shape, data) = tensor::tensor_to_const(t, self.file, self.base_dir)?;
                Cv { shape, data }
            }
            "value_float" => Cv { shape: vec![], data: ConstData::F32(vec![ctx.float("value_float", 0.0)?]) },
            "value_floats" => {
                let v = ctx.floats("value_floats")?.unwrap_or_default();
                Cv { shape: vec![v.len()], data: ConstData::F32(v) }
            }
            "value_int" => Cv::i64s(vec![], vec![ctx.int("value_int", 0)?]),
            "value_ints" => {
                let v = ctx.ints("value_ints")?.unwrap_or_default();
                Cv::i64s(vec![v.len()], v)
            }
            other => return Err(ctx.unsupported(other, "Constant attribute kind not supported")),
        };
        self.out_const(ctx, cv)
    }

    fn identity(&mut self, ctx: &Ctx<'_, '_>) -> R<()> {
        let x = self.input(ctx, 0)?;
        if let Some(c) = self.cv(x) {
            return self.out_const(ctx, c);
        }
        self.emit(ctx, Op::Identity, vec![x])
    }

    fn cast(&mut self, ctx: &Ctx<'_, '_>) -> R<()> {
        let x = self.input(ctx, 0)?;
        let to = ctx.int("to", 0)? as i32;
        if let Some(c) = self.cv(x) {
            let data = if is_float_type(to) {
                ConstData::F32(c.to_f32())
            } else if to == tensor::dt::BOOL {
                ConstData::I64(c.to_f32().iter().map(|&v| i64::from(v != 0.0)).collect())
            } else if matches!(to, 2..=7 | 12 | 13) {
                ConstData::I64(c.to_i64())
            } else {
                return Err(ctx.unsupported("to", format!("cast to {}", dtype_name(to))));
            };
            return self.out_const(ctx, Cv { shape: c.shape, data });
        }
        if !is_float_type(to) {
            return Err(ctx.unsupported(
                "to",
                format!("cast of a computed (non-constant) tensor to {} (only float activations are supported)", dtype_name(to)),
            ));
        }
        self.emit(ctx, Op::Identity, vec![x])
    }

    fn axes_input_or_attr(&mut self, ctx: &Ctx<'_, '_>, since: i64, input: usize) -> R<Option<Vec<i64>>> {
        if self.opset >= since {
            Ok(self.const_input(ctx, input, "axes")?.map(|c| c.to_i64()))
        } else {
            ctx.ints("axes")
        }
    }

    fn unsqueeze(&mut self, ctx: &Ctx<'_, '_>) -> R<()> {
        let x = self.input(ctx, 0)?;
        let s = self.shape(x);
        let axes = self.axes_input_or_attr(ctx, 13, 1)?.ok_or_else(|| ctx.invalid("Unsqueeze without axes"))?;
        let r = s.len() + axes.len();
        let mut ax: Vec<usize> = axes.iter().map(|&a| ctx.axis("axes", a, r)).collect::<R<_>>()?;
        ax.sort_unstable();
        if ax.windows(2).any(|w| w[0] == w[1]) {
            return Err(ctx.invalid(format!("duplicate axes {axes:?}")));
        }
        let mut out = Vec::with_capacity(r);
        let mut it = s.iter();
        for i in 0..r {
            if ax.contains(&i) {
                out.push(1);
            } else {
                out.push(*it.next().ok_or_else(|| ctx.invalid("axes out of range"))?);
            }
        }
        self.reshape_to(ctx, x, out)
    }

    fn squeeze(&mut self, ctx: &Ctx<'_, '_>) -> R<()> {
        let x = self.input(ctx, 0)?;
        let s = self.shape(x);
        let axes = self.axes_input_or_attr(ctx, 13, 1)?;
        let out: Vec<usize> = match axes {
            None => s.iter().copied().filter(|&d| d != 1).collect(),
            Some(a) => {
                let ax: Vec<usize> = a.iter().map(|&v| ctx.axis("axes", v, s.len())).collect::<R<_>>()?;
                for &i in &ax {
                    if s[i] != 1 {
                        return Err(ctx.invalid(format!("cannot squeeze axis {i} of size {} in {s:?}", s[i])));
                    }
                }
                s.iter().enumerate().filter(|(i, _)| !ax.contains(i)).map(|(_, &d)| d).collect()
            }
        };
        self.reshape_to(ctx, x, out)
    }

    fn reshape(&mut self, ctx: &Ctx<'_, '_>) -> R<()> {
        let x = self.input(ctx, 0)?;
        let s = self.shape(x);
        let target = if self.opset >= 5 {
            self.const_input(ctx, 1, "shape")?.ok_or_else(|| ctx.invalid("Reshape without a shape input"))?.to_i64()
        } else {
            ctx.ints("shape")?.ok_or_else(|| ctx.invalid("Reshape without shape"))?
        };
        let allowzero = ctx.int("allowzero", 0)? != 0;
        let mut out = Vec::with_capacity(target.len());
        let mut infer = None;
        for (i, &d) in target.iter().enumerate() {
            match d {
                -1 => {
                    if infer.replace(i).is_some() {
                        return Err(ctx.invalid(format!("shape {target:?} has more than one -1")));
                    }
                    out.push(1);
                }
                0 if !allowzero => {
                    out.push(*s.get(i).ok_or_else(|| ctx.invalid(format!("shape {target:?}: 0 at dim {i} beyond input rank {}", s.len())))?)
                }
                d if d < 0 => return Err(ctx.invalid(format!("invalid shape {target:?}"))),
                d => out.push(usize::try_from(d).map_err(|_| ctx.invalid("dimension too large"))?),
            }
        }
        let n_in: usize = s.iter().product();
        if let Some(i) = infer {
            let rest = checked_numel(&out).ok_or_else(|| ctx.invalid(format!("shape {target:?} too large")))?;
            if rest == 0 || !n_in.is_multiple_of(rest) {
                return Err(ctx.invalid(format!("cannot reshape {s:?} to {target:?}")));
            }
            out[i] = n_in / rest;
        }
        self.reshape_to(ctx, x, out)
    }

    fn split(&mut self, ctx: &Ctx<'_, '_>) -> R<()> {
        let x = self.input(ctx, 0)?;
        let s = self.shape(x);
        let axis = ctx.axis("axis", ctx.int("axis", 0)?, s.len())?;
        let nout = ctx.node.output.len();
        let sizes: Vec<usize> =
            if let Some(v) = if self.opset >= 13 { self.const_input(ctx, 1, "split")?.map(|c| c.to_i64()) } else { ctx.ints("split")? } {
                usize_dims(ctx, "split", &v)?
            } else {
                let parts = if self.opset >= 18 { ctx.int("num_outputs", nout as i64)? } else { nout as i64 };
                if parts != nout as i64 || parts == 0 {
                    return Err(ctx.invalid(format!("Split into {parts} parts with {nout} outputs")));
                }
                let parts = nout;
                let chunk = s[axis].div_ceil(parts);
                (0..parts).map(|i| chunk.min(s[axis].saturating_sub(i * chunk))).collect()
            };
        if sizes.len() != nout || sizes.iter().sum::<usize>() != s[axis] {
            return Err(ctx.invalid(format!("split sizes {sizes:?} do not cover axis {axis} of {s:?} with {nout} outputs")));
        }
        let mut start = 0;
        for (k, &len) in sizes.iter().enumerate() {
            let name = ctx.node.output[k].clone();
            let mut starts = vec![0; s.len()];
            starts[axis] = start;
            let mut out = s.clone();
            out[axis] = len;
            start += len;
            if name.is_empty() {
                continue;
            }
            let id = if let Some(c) = self.cv(x) {
                let st = constant::strides(&s);
                let base = starts[axis] * st[axis];
                let idx = constant::strided_indices(&out, base, &st);
                self.const_tensor(&name, Cv { shape: out, data: constant::take(&c.data, &idx) })
            } else {
                let op = Op::Slice { starts, steps: vec![1; s.len()] };
                self.emit_node(ctx, &format!("{k}"), op, vec![x], &name, Some(out))?
            };
            self.bind(ctx, &name, id)?;
        }
        Ok(())
    }

    fn range(&mut self, ctx: &Ctx<'_, '_>) -> R<()> {
        let mut v = Vec::new();
        for i in 0..3 {
            let c = self.const_input(ctx, i, ["start", "limit", "delta"][i])?.ok_or_else(|| ctx.invalid("missing input"))?;
            if c.data.len() != 1 {
                return Err(ctx.invalid("Range inputs must be scalars"));
            }
            v.push(c);
        }
        if v.iter().any(|c| c.is_float()) {
            let f: Vec<f32> = v.iter().map(|c| c.to_f32()[0]).collect();
            if f[2] == 0.0 || !f.iter().all(|x| x.is_finite()) {
                return Err(ctx.invalid("Range with zero or non-finite delta/bounds"));
            }
            let n = ((f[1] - f[0]) / f[2]).ceil().max(0.0);
            if n > MAX_TENSOR_ELEMENTS as f32 {
                return Err(ctx.invalid("Range result too large"));
            }
            let n = n as usize;
            let data = (0..n).map(|i| f[0] + i as f32 * f[2]).collect();
            return self.out_const(ctx, Cv { shape: vec![n], data: ConstData::F32(data) });
        }
        let (s, l, d) = (v[0].to_i64()[0], v[1].to_i64()[0], v[2].to_i64()[0]);
        if d == 0 {
            return Err(ctx.invalid("Range with delta 0"));
        }
        let span = i128::from(l) - i128::from(s);
        let d128 = i128::from(d);
        let n = if (span > 0) == (d > 0) && span != 0 { (span + d128 - d128.signum()) / d128 } else { 0 };
        if n > MAX_TENSOR_ELEMENTS as i128 {
            return Err(ctx.invalid("Range result too large"));
        }
        let data: Vec<i64> = (0..n as i64).map(|i| s + i * d).collect();
        self.out_const(ctx, Cv::i64s(vec![data.len()], data))
    }

    fn constant_of_shape(&mut self, ctx: &Ctx<'_, '_>) -> R<()> {
        let s = self.const_input(ctx, 0, "input")?.ok_or_else(|| ctx.invalid("missing shape"))?;
        let shape = usize_dims(ctx, "shape", &s.to_i64())?;
        let n = checked_numel(&shape).ok_or_else(|| ctx.invalid(format!("shape {shape:?} too large")))?;
        let value = match ctx.attr("value") {
            Some(a) => {
                ctx.check_type(a, 4, "TENSOR")?;
                let t = a.t.as_ref().ok_or_else(|| ctx.invalid("attribute 'value' has no tensor"))?;
                let (_, d) = tensor::tensor_to_const(t, self.file, self.base_dir)?;
                if d.len() != 1 {
                    return Err(ctx.invalid("ConstantOfShape value must have one element"));
                }
                d
            }
            None => ConstData::F32(vec![0.0]),
        };
        let data = match value {
            ConstData::F32(v) => ConstData::F32(vec![v[0]; n]),
            ConstData::I64(v) => ConstData::I64(vec![v[0]; n]),
        };
        self.out_const(ctx, Cv { shape, data })
    }

    fn gather(&mut self, ctx: &Ctx<'_, '_>) -> R<()> {
        let x = self.input(ctx, 0)?;
        let s = self.shape(x);
        let axis = ctx.axis("axis", ctx.int("axis", 0)?, s.len())?;
        let ic = self.const_input(ctx, 1, "indices")?.ok_or_else(|| ctx.invalid("missing indices"))?;
        let dim = s[axis] as i64;
        let idx: Vec<usize> = ic
            .to_i64()
            .iter()
            .map(|&i| {
                let j = if i < 0 { i + dim } else { i };
                if j < 0 || j >= dim {
                    Err(ctx.invalid(format!("index {i} out of range for axis {axis} of size {dim}")))
                } else {
                    Ok(j as usize)
                }
            })
            .collect::<R<_>>()?;
        if let Some(c) = self.cv(x) {
            let mut shape = s[..axis].to_vec();
            shape.extend_from_slice(&ic.shape);
            shape.extend_from_slice(&s[axis + 1..]);
            checked_numel(&shape).ok_or_else(|| ctx.invalid("result too large"))?;
            return self.out_const(ctx, constant::gather(&c, axis, &idx, &ic.shape));
        }
        // Dynamic data: a contiguous run of indices becomes a Slice (+ Reshape for scalars).
        let contiguous = !idx.is_empty() && idx.windows(2).all(|w| w[1] == w[0] + 1);
        if !contiguous || ic.shape.len() > 1 {
            return Err(ctx.unsupported("indices", "Gather on a computed tensor needs scalar or contiguous 1-D constant indices"));
        }
        let mut starts = vec![0; s.len()];
        starts[axis] = idx[0];
        let mut sl = s.clone();
        sl[axis] = idx.len();
        let out_name = self.output_name(ctx, 0)?;
        let op = Op::Slice { starts, steps: vec![1; s.len()] };
        if ic.shape.is_empty() {
            let t = self.emit_node(ctx, "slice", op, vec![x], &format!("{out_name}__slice"), Some(sl))?;
            let mut rs = s.clone();
            rs.remove(axis);
            self.emit_shaped(ctx, Op::Reshape, vec![t], Some(rs))
        } else {
            self.emit_shaped(ctx, op, vec![x], Some(sl))
        }
    }

    fn arith(&mut self, ctx: &Ctx<'_, '_>) -> R<()> {
        let (a, b) = (self.input(ctx, 0)?, self.input(ctx, 1)?);
        let bin = match ctx.op() {
            "Add" => Bin::Add,
            "Sub" => Bin::Sub,
            "Mul" => Bin::Mul,
            _ => Bin::Div,
        };
        if let (Some(ca), Some(cb)) = (self.cv(a), self.cv(b)) {
            let r = constant::binary(&ca, &cb, bin, MAX_TENSOR_ELEMENTS).map_err(|m| ctx.invalid(m))?;
            return self.out_const(ctx, r);
        }
        let op = match bin {
            Bin::Add => Op::Add { act: Activation::None },
            Bin::Sub => Op::Sub,
            Bin::Mul => Op::Mul { act: Activation::None },
            _ => Op::Div,
        };
        self.emit(ctx, op, vec![a, b])
    }

    fn clip(&mut self, ctx: &Ctx<'_, '_>) -> R<()> {
        let x = self.input(ctx, 0)?;
        let (min, max) = if self.opset >= 11 {
            let scalar = |c: Option<Cv>, d: f32| -> R<f32> {
                match c {
                    None => Ok(d),
                    Some(c) if c.data.len() == 1 => Ok(c.to_f32()[0]),
                    Some(_) => Err(ctx.invalid("Clip bounds must be scalars")),
                }
            };
            let mn = self.const_input(ctx, 1, "min")?;
            let mx = self.const_input(ctx, 2, "max")?;
            (scalar(mn, f32::NEG_INFINITY)?, scalar(mx, f32::INFINITY)?)
        } else {
            (ctx.float("min", f32::NEG_INFINITY)?, ctx.float("max", f32::INFINITY)?)
        };
        let act = if min == 0.0 && max == f32::INFINITY { Activation::Relu } else { Activation::Clip { min, max } };
        self.emit(ctx, Op::Act(act), vec![x])
    }

    fn batchnorm(&mut self, ctx: &Ctx<'_, '_>) -> R<()> {
        if ctx.int("training_mode", 0)? != 0 {
            return Err(ctx.unsupported("training_mode", "training-mode BatchNormalization"));
        }
        let x = self.input(ctx, 0)?;
        let s = self.shape(x);
        if s.len() < 2 {
            return Err(ctx.invalid(format!("input {s:?} has no channel axis")));
        }
        let eps = ctx.float("epsilon", 1e-5)?;
        let mut ins = vec![x];
        for i in 1..5 {
            let id = self.input(ctx, i)?;
            if self.g.tensors[id].numel() != s[1] {
                return Err(ctx.invalid(format!("parameter {i} has shape {:?}, expected [{}]", self.shape(id), s[1])));
            }
            ins.push(id);
        }
        self.emit(ctx, Op::BatchNorm { eps }, ins)
    }

    /// Kernel/stride/pad/dilation attributes resolved against a 4-D input.
    fn window(&self, ctx: &Ctx<'_, '_>, x: &[usize], kernel: [usize; 2]) -> R<Window> {
        let two = |name: &str, default: usize| -> R<[usize; 2]> {
            match ctx.ints(name)? {
                None => Ok([default; 2]),
                Some(v) if v.len() == 2 && v.iter().all(|&d| (1..=MAX_WINDOW).contains(&d)) => Ok([v[0] as usize, v[1] as usize]),
                Some(v) => Err(ctx.unsupported(name, format!("{v:?}: only 2-D windows with values in 1..={MAX_WINDOW}"))),
            }
        };
        let stride = two("strides", 1)?;
        let dilation = two("dilations", 1)?;
        let auto_pad = ctx.string("auto_pad", "NOTSET")?;
        let pads = match auto_pad.as_str() {
            "NOTSET" | "" => match ctx.ints("pads")? {
                None => [0; 4],
                Some(p) if p.len() == 4 && p.iter().all(|&d| (0..=MAX_WINDOW).contains(&d)) => {
                    [p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize]
                }
                Some(p) => return Err(ctx.unsupported("pads", format!("{p:?}: need 4 values in 0..={MAX_WINDOW}"))),
            },
            "VALID" => [0; 4],
            "SAME_UPPER" | "SAME_LOWER" => {
                let mut p = [0; 4];
                for a in 0..2 {
                    let inp = x[2 + a];
                    let out = inp.div_ceil(stride[a]);
                    let span = dilation[a] * (kernel[a].max(1) - 1) + 1;
                    let total = ((out.max(1) - 1) * stride[a] + span).saturating_sub(inp);
                    let (small, big) = (total / 2, total - total / 2);
                    if auto_pad == "SAME_UPPER" {
                        p[a] = small;
                        p[a + 2] = big;
                    } else {
                        p[a] = big;
                        p[a + 2] = small;
                    }
                }
                p
            }
            other => return Err(ctx.unsupported("auto_pad", format!("unknown value '{other}'"))),
        };
        Ok(Window { kernel, stride, pads, dilation })
    }

    fn conv(&mut self, ctx: &Ctx<'_, '_>) -> R<()> {
        let x = self.input(ctx, 0)?;
        let w = self.input(ctx, 1)?;
        let b = self.opt_input(ctx, 2)?;
        let (xs, ws) = (self.shape(x), self.shape(w));
        if xs.len() == 3 && ws.len() == 3 {
            return self.conv_1d(ctx, x, w, b);
        }
        if xs.len() != 4 || ws.len() != 4 {
            return Err(ctx.unsupported("kernel_shape", format!("only 1-D and 2-D convolution (input {xs:?}, weight {ws:?})")));
        }
        let kernel = [ws[2], ws[3]];
        if let Some(k) = ctx.ints("kernel_shape")? {
            if k.len() != 2 || k[0] as usize != ws[2] || k[1] as usize != ws[3] {
                return Err(ctx.invalid(format!("kernel_shape {k:?} does not match weight {ws:?}")));
            }
        }
        let group = ctx.int("group", 1)?;
        if group < 1 {
            return Err(ctx.invalid(format!("group {group}")));
        }
        let window = self.window(ctx, &xs, kernel)?;
        let mut ins = vec![x, w];
        ins.extend(b);
        self.emit(ctx, Op::Conv { window, group: group as usize, act: Activation::None }, ins)
    }

    fn gemm(&mut self, ctx: &Ctx<'_, '_>) -> R<()> {
        let a = self.input(ctx, 0)?;
        let b = self.input(ctx, 1)?;
        let c = self.opt_input(ctx, 2)?;
        let alpha = ctx.float("alpha", 1.0)?;
        let beta = ctx.float("beta", 1.0)?;
        let trans_a = ctx.int("transA", 0)? != 0;
        let trans_b = ctx.int("transB", 0)? != 0;
        let (as_, bs) = (self.shape(a), self.shape(b));
        if as_.len() != 2 || bs.len() != 2 {
            return Err(ctx.invalid(format!("Gemm needs 2-D inputs, got {as_:?} and {bs:?}")));
        }
        let Some(bc) = self.cv(b) else {
            return Err(ctx.unsupported("B", "Gemm with a non-constant B input (only constant weights are supported)"));
        };
        let bv = bc.to_f32();
        // W = [N, K]
        let (n, k) = if trans_b { (bs[0], bs[1]) } else { (bs[1], bs[0]) };
        let mut wdat = vec![0.0f32; n * k];
        for j in 0..n {
            for kk in 0..k {
                let v = if trans_b { bv[j * k + kk] } else { bv[kk * n + j] };
                wdat[j * k + kk] = alpha * v;
            }
        }
        let bname = self.g.tensors[b].name.clone();
        let w = self.const_tensor(&format!("{bname}__dense_w"), Cv { shape: vec![n, k], data: ConstData::F32(wdat) });
        let out_name = self.output_name(ctx, 0)?;
        let mut xa = a;
        if trans_a {
            xa = self.emit_node(ctx, "transpose_a", Op::Transpose { perm: vec![1, 0] }, vec![a], &format!("{out_name}__a_t"), None)?;
        }
        let m = self.g.tensors[xa].shape[0];
        if self.g.tensors[xa].shape[1] != k {
            return Err(ctx.invalid(format!("Gemm inner dimensions differ: A {as_:?}, B {bs:?}")));
        }
        let mut ins = vec![xa, w];
        let mut add_after = None;
        if let Some(c) = c {
            match self.cv(c) {
                Some(cc) if beta != 0.0 => {
                    let cs = cc.shape.clone();
                    let per_col = cc.data.len() == n && (cs.len() == 1 || (cs.len() == 2 && cs[0] == 1));
                    let scalar = cc.data.len() == 1;
                    if per_col || scalar {
                        let v: Vec<f32> =
                            if scalar { vec![beta * cc.to_f32()[0]; n] } else { cc.to_f32().iter().map(|&x| beta * x).collect() };
                        let cname = self.g.tensors[c].name.clone();
                        ins.push(self.const_tensor(&format!("{cname}__bias"), Cv { shape: vec![n], data: ConstData::F32(v) }));
                    } else {
                        broadcast_shapes(&cs, &[m, n]).map_err(|e| ctx.invalid(e))?;
                        let v = cc.to_f32().iter().map(|&x| beta * x).collect();
                        let cname = self.g.tensors[c].name.clone();
                        add_after = Some(self.const_tensor(&format!("{cname}__c"), Cv { shape: cs, data: ConstData::F32(v) }));
                    }
                }
                Some(_) => {}
                None => {
                    if beta != 1.0 {
                        return Err(ctx.unsupported("beta", "beta ≠ 1 with a non-constant C input"));
                    }
                    add_after = Some(c);
                }
            }
        }
        match add_after {
            None => self.emit(ctx, Op::Dense { act: Activation::None }, ins),
            Some(cid) => {
                let t = self.emit_node(ctx, "dense", Op::Dense { act: Activation::None }, ins, &format!("{out_name}__mm"), None)?;
                self.emit(ctx, Op::Add { act: Activation::None }, vec![t, cid])
            }
        }
    }

    fn matmul(&mut self, ctx: &Ctx<'_, '_>) -> R<()> {
        let a = self.input(ctx, 0)?;
        let b = self.input(ctx, 1)?;
        let (as_, bs) = (self.shape(a), self.shape(b));
        let Some(bc) = self.cv(b) else {
            return Err(ctx.unsupported("B", "MatMul with a non-constant second input (only constant weights are supported)"));
        };
        if bs.len() != 2 {
            return Err(ctx.unsupported("B", format!("MatMul weight must be 2-D, got {bs:?}")));
        }
        if as_.len() < 2 {
            return Err(ctx.unsupported("A", format!("MatMul input must be at least 2-D, got {as_:?}")));
        }
        let (k, n) = (bs[0], bs[1]);
        if as_[as_.len() - 1] != k {
            return Err(ctx.invalid(format!("MatMul inner dimensions differ: {as_:?} × {bs:?}")));
        }
        let bv = bc.to_f32();
        let mut wdat = vec![0.0f32; n * k];
        for j in 0..n {
            for kk in 0..k {
                wdat[j * k + kk] = bv[kk * n + j];
            }
        }
        let bname = self.g.tensors[b].name.clone();
        let w = self.const_tensor(&format!("{bname}__dense_w"), Cv { shape: vec![n, k], data: ConstData::F32(wdat) });
        if as_.len() == 2 {
            return self.emit(ctx, Op::Dense { act: Activation::None }, vec![a, w]);
        }
        let out_name = self.output_name(ctx, 0)?;
        let m: usize = as_[..as_.len() - 1].iter().product();
        let flat = self.emit_node(ctx, "flatten", Op::Reshape, vec![a], &format!("{out_name}__2d"), Some(vec![m, k]))?;
        let mm = self.emit_node(ctx, "dense", Op::Dense { act: Activation::None }, vec![flat, w], &format!("{out_name}__mm"), None)?;
        let mut out = as_.clone();
        let last = out.len() - 1;
        out[last] = n;
        self.emit_shaped(ctx, Op::Reshape, vec![mm], Some(out))
    }

    fn pool(&mut self, ctx: &Ctx<'_, '_>) -> R<()> {
        let x = self.input(ctx, 0)?;
        let xs = self.shape(x);
        if ctx.node.output.get(1).is_some_and(|o| !o.is_empty()) {
            return Err(ctx.unsupported("Indices", "the Indices output of MaxPool is not supported"));
        }
        if xs.len() == 3 {
            return self.pool_1d(ctx, x);
        }
        if xs.len() != 4 {
            return Err(ctx.unsupported("kernel_shape", format!("only 1-D ([N,C,L]) and 2-D (NCHW) pooling, input {xs:?}")));
        }
        let k = ctx.ints("kernel_shape")?.ok_or_else(|| ctx.invalid("missing kernel_shape"))?;
        if k.len() != 2 || k.iter().any(|&d| !(1..=MAX_WINDOW).contains(&d)) {
            return Err(ctx.unsupported("kernel_shape", format!("{k:?}: only 2-D kernels")));
        }
        let window = self.window(ctx, &xs, [k[0] as usize, k[1] as usize])?;
        let ceil_mode = ctx.int("ceil_mode", 0)? != 0;
        let op = if ctx.op() == "MaxPool" {
            Op::MaxPool { window, ceil_mode }
        } else {
            Op::AvgPool { window, ceil_mode, count_include_pad: ctx.int("count_include_pad", 0)? != 0 }
        };
        self.emit(ctx, op, vec![x])
    }

    fn reduce_mean(&mut self, ctx: &Ctx<'_, '_>) -> R<()> {
        let x = self.input(ctx, 0)?;
        let s = self.shape(x);
        let keepdims = ctx.int("keepdims", 1)? != 0;
        let axes = self.axes_input_or_attr(ctx, 18, 1)?;
        let mut ax: Vec<usize> = match axes {
            Some(a) if !a.is_empty() => a.iter().map(|&v| ctx.axis("axes", v, s.len())).collect::<R<_>>()?,
            _ => {
                if ctx.int("noop_with_empty_axes", 0)? != 0 {
                    return self.identity(ctx);
                }
                (0..s.len()).collect()
            }
        };
        ax.sort_unstable();
        ax.dedup();
        self.emit(ctx, Op::ReduceMean { axes: ax, keepdims }, vec![x])
    }

    fn slice(&mut self, ctx: &Ctx<'_, '_>) -> R<()> {
        let x = self.input(ctx, 0)?;
        let s = self.shape(x);
        let r = s.len();
        let (starts, ends, axes, steps) = if self.opset >= 10 {
            let st = self.const_input(ctx, 1, "starts")?.ok_or_else(|| ctx.invalid("missing starts"))?.to_i64();
            let en = self.const_input(ctx, 2, "ends")?.ok_or_else(|| ctx.invalid("missing ends"))?.to_i64();
            let ax = self.const_input(ctx, 3, "axes")?.map(|c| c.to_i64());
            let sp = self.const_input(ctx, 4, "steps")?.map(|c| c.to_i64());
            (st, en, ax, sp)
        } else {
            let st = ctx.ints("starts")?.ok_or_else(|| ctx.invalid("missing starts"))?;
            let en = ctx.ints("ends")?.ok_or_else(|| ctx.invalid("missing ends"))?;
            (st, en, ctx.ints("axes")?, None)
        };
        let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
        if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            return Err(ctx.invalid("starts/ends/axes/steps lengths differ"));
        }
        let mut st = vec![0usize; r];
        let mut sp = vec![1usize; r];
        let mut out = s.clone();
        let mut seen = vec![false; r];
        for i in 0..starts.len() {
            let a = ctx.axis("axes", axes[i], r)?;
            if std::mem::replace(&mut seen[a], true) {
                return Err(ctx.invalid(format!("axis {a} repeated")));
            }
            let step = steps[i];
            if step <= 0 {
                return Err(ctx.unsupported("steps", format!("step {step}: only positive steps are supported")));
            }
            let d = s[a] as i64;
            let norm = |v: i64| -> i64 { (if v < 0 { v.saturating_add(d) } else { v }).clamp(0, d) };
            let (b, e) = (norm(starts[i]), norm(ends[i]));
            let n = if e > b { (e - b - 1) / step + 1 } else { 0 };
            st[a] = b.min(d.max(1) - 1).max(0) as usize;
            sp[a] = step as usize;
            out[a] = n as usize;
        }
        if let Some(c) = self.cv(x) {
            let strides = constant::strides(&s);
            let base: usize = st.iter().zip(&strides).map(|(a, b)| a * b).sum();
            let sst: Vec<usize> = sp.iter().zip(&strides).map(|(a, b)| a * b).collect();
            let idx = constant::strided_indices(&out, base, &sst);
            return self.out_const(ctx, Cv { shape: out, data: constant::take(&c.data, &idx) });
        }
        if out.contains(&0) {
            return Err(ctx.unsupported("starts", format!("empty slice {out:?} of a computed tensor")));
        }
        if out == s {
            return self.emit(ctx, Op::Identity, vec![x]);
        }
        self.emit_shaped(ctx, Op::Slice { starts: st, steps: sp }, vec![x], Some(out))
    }

    fn softmax(&mut self, ctx: &Ctx<'_, '_>) -> R<()> {
        let x = self.input(ctx, 0)?;
        let s = self.shape(x);
        let r = s.len();
        if r == 0 {
            return Err(ctx.invalid("Softmax of a scalar"));
        }
        if self.opset >= 13 {
            let axis = ctx.axis("axis", ctx.int("axis", -1)?, r)?;
            return self.emit(ctx, Op::Softmax { axis }, vec![x]);
        }
        let axis = ctx.axis("axis", ctx.int("axis", 1)?, r)?;
        if axis == r - 1 {
            return self.emit(ctx, Op::Softmax { axis }, vec![x]);
        }
        // Older semantics: coerce to 2-D [prod(:axis), prod(axis:)] and softmax the rows.
        let out_name = self.output_name(ctx, 0)?;
        let flat = vec![s[..axis].iter().product(), s[axis..].iter().product()];
        let t = self.emit_node(ctx, "flatten", Op::Reshape, vec![x], &format!("{out_name}__2d"), Some(flat))?;
        let sm = self.emit_node(ctx, "softmax", Op::Softmax { axis: 1 }, vec![t], &format!("{out_name}__sm"), None)?;
        self.emit_shaped(ctx, Op::Reshape, vec![sm], Some(s))
    }
}

/// What an op module's importer (see [`crate::ops`]) may do with the node being imported: read
/// its attributes and inputs, report errors naming the node, and emit IR nodes.
pub(crate) struct ImportCx<'x, 'm, 'a, 'n, 'c> {
    imp: &'x mut Importer<'m, 'a>,
    ctx: &'x Ctx<'n, 'c>,
}

impl ImportCx<'_, '_, '_, '_, '_> {
    /// The node's `op_type`.
    pub(crate) fn op_type(&self) -> &str {
        self.ctx.op()
    }
    /// The model's opset of the default domain.
    pub(crate) fn opset(&self) -> i64 {
        self.ctx.opset
    }
    /// Input `i` (required).
    pub(crate) fn input(&mut self, i: usize) -> R<TensorId> {
        self.imp.input(self.ctx, i)
    }
    /// Number of inputs the node lists (empty names included).
    pub(crate) fn num_inputs(&self) -> usize {
        self.ctx.node.input.len()
    }
    /// Input `i`, `None` when absent or empty.
    pub(crate) fn opt_input(&mut self, i: usize) -> R<Option<TensorId>> {
        self.imp.opt_input(self.ctx, i)
    }
    /// An axis attribute value normalised against `rank` (error naming it when out of range).
    pub(crate) fn attr_axis(&self, name: &str, value: i64, rank: usize) -> R<usize> {
        self.ctx.axis(name, value, rank)
    }
    /// When every input in `ids` is a constant, bind the node's output to their concatenation
    /// along `axis` (shape arithmetic) and return `true`.
    pub(crate) fn fold_concat(&mut self, ids: &[TensorId], axis: usize, out: &[usize]) -> R<bool> {
        let consts: Option<Vec<Cv>> = ids.iter().map(|&i| self.imp.cv(i)).collect();
        let Some(cs) = consts else { return Ok(false) };
        let parts: Vec<&Cv> = cs.iter().collect();
        self.imp.out_const(self.ctx, constant::concat(&parts, axis, out))?;
        Ok(true)
    }
    /// The (fixed) shape of a tensor.
    pub(crate) fn shape(&self, id: TensorId) -> Vec<usize> {
        self.imp.shape(id)
    }
    /// Optional input `i` as f32 values; an error naming `what` when it is not a constant.
    pub(crate) fn const_f32(&mut self, i: usize, what: &str) -> R<Option<Vec<f32>>> {
        Ok(self.imp.const_input(self.ctx, i, what)?.map(|c| c.to_f32()))
    }
    /// Optional input `i` as i64 values; an error naming `what` when it is not a constant.
    pub(crate) fn const_i64(&mut self, i: usize, what: &str) -> R<Option<Vec<i64>>> {
        Ok(self.imp.const_input(self.ctx, i, what)?.map(|c| c.to_i64()))
    }
    /// INT attribute.
    pub(crate) fn attr_int(&self, name: &str, default: i64) -> R<i64> {
        self.ctx.int(name, default)
    }
    /// INTS attribute.
    pub(crate) fn attr_ints(&self, name: &str) -> R<Option<Vec<i64>>> {
        self.ctx.ints(name)
    }
    /// FLOAT attribute.
    pub(crate) fn attr_float(&self, name: &str, default: f32) -> R<f32> {
        self.ctx.float(name, default)
    }
    /// FLOATS attribute.
    pub(crate) fn attr_floats(&self, name: &str) -> R<Option<Vec<f32>>> {
        self.ctx.floats(name)
    }
    /// STRING attribute.
    pub(crate) fn attr_string(&self, name: &str, default: &str) -> R<String> {
        self.ctx.string(name, default)
    }
    /// An "unsupported attribute" error naming the node, its opset and `attribute`.
    pub(crate) fn unsupported(&self, attribute: &str, detail: impl Into<String>) -> OnnxError {
        self.ctx.unsupported(attribute, detail)
    }
    /// An "invalid model" error naming the node.
    pub(crate) fn invalid(&self, message: impl Into<String>) -> OnnxError {
        self.ctx.invalid(message)
    }
    /// Emit `op` on `inputs` as the node's output 0, with its declared shape when the op's shape
    /// rule needs one.
    pub(crate) fn emit(&mut self, op: Op, inputs: Vec<TensorId>, shape: Option<Vec<usize>>) -> R<()> {
        self.imp.emit_shaped(self.ctx, op, inputs, shape)
    }
    /// Bind the node's output 0 to `x` unchanged.
    pub(crate) fn emit_identity(&mut self, x: TensorId) -> R<()> {
        self.imp.emit(self.ctx, Op::Identity, vec![x])
    }
}
