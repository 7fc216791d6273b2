//! The zero-copy, fully validating model reader.
//!
//! [`Model::from_bytes`] views the file's records in place (`bytemuck`), then checks everything a
//! run will rely on — every offset, length and count (overflow-checked), every id, every shape
//! against its op's parameters, every scale and requantization multiplier, the memory plan — so
//! that [`crate::Session::run`] can index without further checks. It never panics on any input.

mod load;

use crate::error::{LoadError, LoadErrorKind as K, Location};
use crate::format::*;
use crate::ops::window::{conv_geom, ConvParams};
use crate::ops::OpParams;

/// Options for [`Model::from_bytes_with`].
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Verify the header and payload CRC-32s (default true). Mutation tests turn this off to
    /// reach the structural checks behind the checksums.
    pub verify_checksums: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { verify_checksums: true }
    }
}

/// A validated model borrowing its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Model<'a> {
    bytes: &'a [u8],
    header: &'a Header,
    graph: &'a GraphRecord,
    tensors: &'a [TensorRecord],
    ops: &'a [OpRecord],
    ids: &'a [u32],
    strings: &'a [u8],
    meta: &'a [u8],
    inputs: &'a [InputRecord],
    sections: [(u64, u64); 9],
}

/// A read-only view of one tensor.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    /// Tensor id.
    pub id: u32,
    /// Name.
    pub name: &'a str,
    /// Element type.
    pub dtype: DType,
    /// Dimensions (4-D activations are NHWC).
    pub dims: &'a [u32],
    /// Storage.
    pub storage: Storage,
    /// Weight layout.
    pub layout: Layout,
    /// Arena or file offset.
    pub offset: usize,
    /// Byte length.
    pub len: usize,
    /// Quantization scale (0 when unquantized).
    pub scale: f32,
    /// Zero point.
    pub zero_point: i32,
}

impl TensorView<'_> {
    /// Element count.
    pub fn numel(&self) -> usize {
        self.dims.iter().map(|&d| d as usize).product()
    }
}

/// A read-only view of one op.
#[derive(Clone, Copy, Debug)]
pub struct OpView<'a> {
    /// Index in execution order.
    pub index: usize,
    /// Op code.
    pub code: OpCode,
    /// Name (from the source model).
    pub name: &'a str,
    /// Input tensor ids.
    pub inputs: &'a [u32],
    /// Output tensor ids.
    pub outputs: &'a [u32],
    /// Parameters.
    pub params: &'a [i32; OP_PARAMS],
    /// Scratch arena offset.
    pub scratch_off: usize,
    /// Scratch bytes.
    pub scratch_len: usize,
}

impl OpView<'_> {
    /// The typed parameters, e.g. `op.decode::<temper_runtime::ops::window::ConvParams>()`
    /// (the op module of [`OpView::code`] names its params type).
    pub fn decode<P: OpParams>(&self) -> P {
        P::decode(self.params)
    }
}

impl<'a> Model<'a> {
    /// Validate and view a model with default options (checksums verified).
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Model<'a>, LoadError> {
        Self::from_bytes_with(bytes, LoadOptions::default())
    }

    // ---------------------------------------------------------------- record helpers (also used by the loader in `load.rs`)

    fn tloc(&self, i: usize) -> Location {
        Location::Tensor { index: i as u32, offset: self.sections[SectionKind::Tensors as usize].0 + (i * 88) as u64 }
    }
    fn oloc(&self, i: usize) -> Location {
        Location::Op { index: i as u32, offset: self.sections[SectionKind::Ops as usize].0 + (i * 112) as u64 }
    }
    fn gloc(&self) -> Location {
        Location::Section { kind: SectionKind::Graph, offset: self.sections[SectionKind::Graph as usize].0 }
    }

    fn string(&self, off: u32, len: u32, at: Location) -> Result<&'a str, LoadError> {
        let end = (off as usize).checked_add(len as usize).ok_or(LoadError::new(K::Bounds, "string range overflows", at))?;
        let b = self
            .strings
            .get(off as usize..end)
            .ok_or(LoadError::new(K::Bounds, "string outside the strings section", at).with(end as i64, self.strings.len() as i64))?;
        core::str::from_utf8(b).map_err(|_| LoadError::new(K::Invalid, "string is not UTF-8", at))
    }

    fn id_list(&self, off: u32, n: u32, at: Location) -> Result<&'a [u32], LoadError> {
        let end = (off as usize).checked_add(n as usize).ok_or(LoadError::new(K::Bounds, "id list overflows", at))?;
        let list = self
            .ids
            .get(off as usize..end)
            .ok_or(LoadError::new(K::Bounds, "id list outside the ids section", at).with(end as i64, self.ids.len() as i64))?;
        for &id in list {
            if id as usize >= self.tensors.len() {
                return Err(LoadError::new(K::Bounds, "tensor id out of range", at).with(id as i64, self.tensors.len() as i64));
            }
        }
        Ok(list)
    }

    /// A tensor record by id (in range: checked by the loader before any use).
    pub(crate) fn rec(&self, id: u32) -> &'a TensorRecord {
        &self.tensors[id as usize]
    }

    fn op_ins(&self, o: &OpRecord) -> &'a [u32] {
        &self.ids[o.inputs_off as usize..(o.inputs_off + o.n_inputs) as usize]
    }
    fn op_outs(&self, o: &OpRecord) -> &'a [u32] {
        &self.ids[o.outputs_off as usize..(o.outputs_off + o.n_outputs) as usize]
    }

    // ---------------------------------------------------------------- accessors

    /// The whole file.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// Format version (major, minor).
    pub fn version(&self) -> (u16, u16) {
        (self.header.major, self.header.minor)
    }
    /// Model name.
    pub fn name(&self) -> &'a str {
        self.string(self.graph.name_off, self.graph.name_len, self.gloc()).unwrap_or("")
    }
    /// Bytes of arena the plan needs.
    pub fn arena_size(&self) -> usize {
        self.graph.arena_size as usize
    }
    /// Number of tensors.
    pub fn tensor_count(&self) -> usize {
        self.tensors.len()
    }
    /// Number of ops.
    pub fn op_count(&self) -> usize {
        self.ops.len()
    }
    /// Graph input tensor ids.
    pub fn graph_inputs(&self) -> &'a [u32] {
        &self.ids[self.graph.inputs_off as usize..(self.graph.inputs_off + self.graph.n_inputs) as usize]
    }
    /// Graph output tensor ids.
    pub fn graph_outputs(&self) -> &'a [u32] {
        &self.ids[self.graph.outputs_off as usize..(self.graph.outputs_off + self.graph.n_outputs) as usize]
    }
    /// A tensor by id (ids come from this model; out-of-range ids panic).
    pub fn tensor(&self, id: u32) -> TensorView<'a> {
        let r = &self.tensors[id as usize];
        TensorView {
            id,
            name: self.string(r.name_off, r.name_len, self.tloc(id as usize)).unwrap_or(""),
            dtype: DType::from_code(r.dtype).unwrap_or(DType::I8),
            dims: &r.dims[..r.rank as usize],
            storage: if r.storage == 0 { Storage::Arena } else { Storage::Constant },
            layout: if r.layout == 0 { Layout::Plain } else { Layout::Packed },
            offset: r.offset as usize,
            len: r.len as usize,
            scale: r.scale,
            zero_point: r.zero_point,
        }
    }
    /// Per-channel scales of a tensor, if it has them.
    pub fn channel_scales(&self, id: u32) -> Option<&'a [f32]> {
        let r = &self.tensors[id as usize];
        if r.channel_scales == NONE {
            return None;
        }
        let c = &self.tensors[r.channel_scales as usize];
        bytemuck::try_cast_slice(&self.bytes[c.offset as usize..(c.offset + c.len) as usize]).ok()
    }
    /// An op by index.
    pub fn op(&self, index: usize) -> OpView<'a> {
        let o = &self.ops[index];
        OpView {
            index,
            code: OpCode::from_code(o.code).unwrap_or(OpCode::Reshape),
            name: self.string(o.name_off, o.name_len, self.oloc(index)).unwrap_or(""),
            inputs: self.op_ins(o),
            outputs: self.op_outs(o),
            params: &o.params,
            scratch_off: o.scratch_off as usize,
            scratch_len: o.scratch_len as usize,
        }
    }
    /// All ops in execution order.
    pub fn ops(&self) -> impl Iterator<Item = OpView<'a>> + '_ {
        (0..self.ops.len()).map(move |i| self.op(i))
    }
    /// Raw bytes of a constant tensor.
    pub fn const_bytes(&self, id: u32) -> &'a [u8] {
        let r = &self.tensors[id as usize];
        &self.bytes[r.offset as usize..(r.offset + r.len) as usize]
    }
    /// A constant i8 tensor (zero-copy).
    pub fn const_i8(&self, id: u32) -> &'a [i8] {
        bytemuck::cast_slice(self.const_bytes(id))
    }
    /// A constant i32 tensor (zero-copy; alignment guaranteed by the loader).
    pub fn const_i32(&self, id: u32) -> &'a [i32] {
        bytemuck::try_cast_slice(self.const_bytes(id)).unwrap_or(&[])
    }
    /// Metadata pairs in file order.
    pub fn metadata(&self) -> MetaIter<'a> {
        MetaIter { rest: self.meta }
    }
    /// The value of a metadata key.
    pub fn meta(&self, key: &str) -> Option<&'a str> {
        self.metadata().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
    /// Input record (raw-input mapping) of graph input `tensor`, if any.
    pub fn input_record(&self, tensor: u32) -> Option<&'a InputRecord> {
        self.inputs.iter().find(|r| r.tensor == tensor)
    }
    /// Geometry of conv-like op `index` (Conv2d, Depthwise2d, ConvTranspose2d, MaxPool).
    pub fn conv_geom(&self, index: usize) -> temper_kernels::Conv2d {
        let o = self.op(index);
        let mut p = ConvParams::decode(o.params);
        if o.code == OpCode::MaxPool {
            p.groups = 1;
        }
        conv_geom(&p, self.tensor(o.inputs[0]).dims, self.tensor(o.outputs[0]).dims)
    }
}

/// Iterator over metadata `(key, value)` pairs.
#[derive(Clone, Debug)]
pub struct MetaIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for MetaIter<'a> {
    type Item = (&'a str, &'a str);
    fn next(&mut self) -> Option<Self::Item> {
        let r = self.rest;
        if r.len() < 8 {
            return None;
        }
        let kl = u32::from_le_bytes([r[0], r[1], r[2], r[3]]) as usize;
        let vl = u32::from_le_bytes([r[4], r[5], r[6], r[7]]) as usize;
        let k = core::str::from_utf8(r.get(8..8 + kl)?).ok()?;
        let v = core::str::from_utf8(r.get(8 + kl..8 + kl + vl)?).ok()?;
        self.rest = &r[8 + kl + vl..];
        Some((k, v))
    }
}
