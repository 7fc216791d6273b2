//! The subset of `onnx.proto` messages temper reads, decoded with [`super::wire`].
//!
//! Field numbers follow onnx/onnx `onnx/onnx.proto`. Unknown fields are skipped; sub-graphs
//! (attribute fields `g`/`graphs`) are not decoded, which also bounds recursion depth.

use super::wire::{DecodeError, Field, Reader};

/// `OperatorSetIdProto`.
#[derive(Clone, Debug, Default)]
pub(crate) struct OpsetId {
    pub domain: String,
    pub version: i64,
}

/// `ModelProto`.
#[derive(Debug, Default)]
pub(crate) struct ModelProto<'a> {
    pub ir_version: i64,
    pub opset_import: Vec<OpsetId>,
    pub graph: Option<GraphProto<'a>>,
}

/// `GraphProto`.
#[derive(Debug, Default)]
pub(crate) struct GraphProto<'a> {
    pub name: String,
    pub node: Vec<NodeProto<'a>>,
    pub initializer: Vec<TensorProto<'a>>,
    pub input: Vec<ValueInfo>,
    pub output: Vec<ValueInfo>,
    pub value_info: Vec<ValueInfo>,
    pub has_sparse_initializer: bool,
}

/// `NodeProto`.
#[derive(Debug, Default)]
pub(crate) struct NodeProto<'a> {
    pub input: Vec<String>,
    pub output: Vec<String>,
    pub name: String,
    pub op_type: String,
    pub domain: String,
    pub attribute: Vec<AttributeProto<'a>>,
    /// Absolute offset of the node message.
    pub offset: usize,
}

/// `AttributeProto` (sub-graphs are only flagged, not decoded).
#[derive(Debug, Default)]
pub(crate) struct AttributeProto<'a> {
    pub name: String,
    pub ty: i32,
    pub f: Option<f32>,
    pub i: Option<i64>,
    pub s: Option<&'a [u8]>,
    pub t: Option<TensorProto<'a>>,
    pub floats: Vec<f32>,
    pub ints: Vec<i64>,
    pub strings: Vec<&'a [u8]>,
    pub has_graph: bool,
    pub ref_attr_name: Option<String>,
    /// Absolute offset of the attribute message.
    pub offset: usize,
}

/// `TensorProto`.
#[derive(Debug, Default)]
pub(crate) struct TensorProto<'a> {
    pub dims: Vec<i64>,
    pub data_type: i32,
    pub float_data: Vec<f32>,
    pub int32_data: Vec<i64>,
    pub int64_data: Vec<i64>,
    pub double_data: Vec<f64>,
    pub uint64_data: Vec<i64>,
    pub has_string_data: bool,
    /// raw_data bytes and their absolute offset.
    pub raw_data: Option<(&'a [u8], usize)>,
    pub name: String,
    pub data_location: i32,
    pub external_data: Vec<(String, String)>,
    pub has_segment: bool,
    /// Absolute offset of the tensor message.
    pub offset: usize,
}

/// One dimension of a `TensorShapeProto`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Dim {
    /// `dim_value` (may be negative/zero in some exporters' output, meaning "unknown").
    Value(i64),
    /// `dim_param` (symbolic).
    Param(String),
    /// Neither set.
    Unknown,
}

/// `ValueInfoProto` reduced to name, element type and shape.
#[derive(Clone, Debug, Default)]
pub(crate) struct ValueInfo {
    pub name: String,
    pub elem_type: i32,
    /// `None` when no shape is given.
    pub shape: Option<Vec<Dim>>,
    pub offset: usize,
}

/// Decode a whole `ModelProto`.
pub(crate) fn decode_model(bytes: &[u8]) -> Result<ModelProto<'_>, DecodeError> {
    let mut r = Reader::new(bytes, 0);
    let mut m = ModelProto::default();
    while let Some(f) = r.next_field()? {
        match f.number {
            1 => m.ir_version = f.as_i64("ModelProto.ir_version")?,
            7 => m.graph = Some(decode_graph(&f)?),
            8 => m.opset_import.push(decode_opset(&f)?),
            _ => {}
        }
    }
    Ok(m)
}

fn decode_opset(f: &Field<'_>) -> Result<OpsetId, DecodeError> {
    let mut r = f.message("ModelProto.opset_import")?;
    let mut o = OpsetId::default();
    while let Some(f) = r.next_field()? {
        match f.number {
            1 => o.domain = f.as_string("OperatorSetIdProto.domain")?,
            2 => o.version = f.as_i64("OperatorSetIdProto.version")?,
            _ => {}
        }
    }
    Ok(o)
}

fn decode_graph<'a>(f: &Field<'a>) -> Result<GraphProto<'a>, DecodeError> {
    let mut r = f.message("ModelProto.graph")?;
    let mut g = GraphProto::default();
    while let Some(f) = r.next_field()? {
        match f.number {
            1 => g.node.push(decode_node(&f)?),
            2 => g.name = f.as_string("GraphProto.name")?,
            5 => g.initializer.push(decode_tensor(&f, "GraphProto.initializer")?),
            11 => g.input.push(decode_value_info(&f, "GraphProto.input")?),
            12 => g.output.push(decode_value_info(&f, "GraphProto.output")?),
            13 => g.value_info.push(decode_value_info(&f, "GraphProto.value_info")?),
            15 => {
                f.as_bytes("GraphProto.sparse_initializer")?;
                g.has_sparse_initializer = true;
            }
            _ => {}
        }
    }
    Ok(g)
}

fn decode_node<'a>(f: &Field<'a>) -> Result<NodeProto<'a>, DecodeError> {
    let mut r = f.message("GraphProto.node")?;
    let mut n = NodeProto { offset: f.offset, ..Default::default() };
    while let Some(f) = r.next_field()? {
        match f.number {
            1 => n.input.push(f.as_string("NodeProto.input")?),
            2 => n.output.push(f.as_string("NodeProto.output")?),
            3 => n.name = f.as_string("NodeProto.name")?,
            4 => n.op_type = f.as_string("NodeProto.op_type")?,
            5 => n.attribute.push(decode_attribute(&f)?),
            7 => n.domain = f.as_string("NodeProto.domain")?,
            _ => {}
        }
    }
    Ok(n)
}

fn decode_attribute<'a>(f: &Field<'a>) -> Result<AttributeProto<'a>, DecodeError> {
    const M: &str = "AttributeProto";
    let mut r = f.message("NodeProto.attribute")?;
    let mut a = AttributeProto { offset: f.offset, ..Default::default() };
    while let Some(f) = r.next_field()? {
        match f.number {
            1 => a.name = f.as_string(M)?,
            2 => a.f = Some(f.as_f32(M)?),
            3 => a.i = Some(f.as_i64(M)?),
            4 => a.s = Some(f.as_bytes(M)?.0),
            5 => a.t = Some(decode_tensor(&f, "AttributeProto.t")?),
            6 | 11 => {
                f.as_bytes(M)?;
                a.has_graph = true;
            }
            7 => f.push_f32s(M, &mut a.floats)?,
            8 => f.push_varints(M, &mut a.ints)?,
            9 => a.strings.push(f.as_bytes(M)?.0),
            20 => a.ty = f.as_i32(M)?,
            21 => a.ref_attr_name = Some(f.as_string(M)?),
            _ => {}
        }
    }
    Ok(a)
}

/// Decode a `TensorProto` field.
pub(crate) fn decode_tensor<'a>(f: &Field<'a>, ctx: &str) -> Result<TensorProto<'a>, DecodeError> {
    const M: &str = "TensorProto";
    let mut r = f.message(ctx)?;
    let mut t = TensorProto { offset: f.offset, ..Default::default() };
    while let Some(f) = r.next_field()? {
        match f.number {
            1 => f.push_varints(M, &mut t.dims)?,
            2 => t.data_type = f.as_i32(M)?,
            3 => {
                f.as_bytes(M)?;
                t.has_segment = true;
            }
            4 => f.push_f32s(M, &mut t.float_data)?,
            5 => f.push_varints(M, &mut t.int32_data)?,
            6 => {
                f.as_bytes(M)?;
                t.has_string_data = true;
            }
            7 => f.push_varints(M, &mut t.int64_data)?,
            8 => t.name = f.as_string(M)?,
            9 => t.raw_data = Some(f.as_bytes(M)?),
            10 => f.push_f64s(M, &mut t.double_data)?,
            11 => f.push_varints(M, &mut t.uint64_data)?,
            13 => {
                let mut er = f.message("TensorProto.external_data")?;
                let (mut k, mut v) = (String::new(), String::new());
                while let Some(f) = er.next_field()? {
                    match f.number {
                        1 => k = f.as_string("StringStringEntryProto.key")?,
                        2 => v = f.as_string("StringStringEntryProto.value")?,
                        _ => {}
                    }
                }
                t.external_data.push((k, v));
            }
            14 => t.data_location = f.as_i32(M)?,
            _ => {}
        }
    }
    Ok(t)
}

fn decode_value_info(f: &Field<'_>, ctx: &str) -> Result<ValueInfo, DecodeError> {
    let mut r = f.message(ctx)?;
    let mut v = ValueInfo { offset: f.offset, ..Default::default() };
    while let Some(f) = r.next_field()? {
        match f.number {
            1 => v.name = f.as_string("ValueInfoProto.name")?,
            2 => {
                // TypeProto: only tensor_type (1) is read.
                let mut tr = f.message("ValueInfoProto.type")?;
                while let Some(f) = tr.next_field()? {
                    if f.number != 1 {
                        continue;
                    }
                    let mut ttr = f.message("TypeProto.tensor_type")?;
                    while let Some(f) = ttr.next_field()? {
                        match f.number {
                            1 => v.elem_type = f.as_i32("TypeProto.Tensor.elem_type")?,
                            2 => v.shape = Some(decode_shape(&f)?),
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(v)
}

fn decode_shape(f: &Field<'_>) -> Result<Vec<Dim>, DecodeError> {
    let mut r = f.message("TypeProto.Tensor.shape")?;
    let mut dims = Vec::new();
    while let Some(f) = r.next_field()? {
        if f.number != 1 {
            continue;
        }
        let mut dr = f.message("TensorShapeProto.dim")?;
        let mut d = Dim::Unknown;
        while let Some(f) = dr.next_field()? {
            match f.number {
                1 => d = Dim::Value(f.as_i64("Dimension.dim_value")?),
                2 => d = Dim::Param(f.as_string("Dimension.dim_param")?),
                _ => {}
            }
        }
        dims.push(d);
    }
    Ok(dims)
}
