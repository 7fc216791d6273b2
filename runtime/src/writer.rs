//! Building `.tmf` files from an in-memory quantized graph (feature `writer`).
//!
//! [`Builder`] collects tensors and ops, plans the arena (greedy by size with lifetime overlap,
//! as TensorFlow Lite Micro's planner), lays out the sections, computes the checksums, and
//! validates the result with [`Model::from_bytes`] before handing it out. The typed helpers
//! ([`Builder::conv2d`], [`Builder::fully_connected`], …) own the integer arithmetic that goes
//! into the file: zero-point folding into biases, the unsigned-activation bias, requantization
//! multipliers, clamps. Each is defined in its op's module under [`crate::ops`], beside the
//! op's validation and execution; all end in [`Builder::op`].

use crate::format::*;
use crate::model::Model;
use crate::ops::OpParams;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use temper_kernels::pack;
use temper_kernels::requant::quantize_multiplier;
use temper_kernels::QParams;

/// An error building a file.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildError(pub String);

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot build model: {}", self.0)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for BuildError {}

/// `Err(BuildError(msg))`.
pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T, BuildError> {
    Err(BuildError(msg.into()))
}

#[derive(Clone, Debug)]
struct TDef {
    name: String,
    dtype: DType,
    dims: Vec<usize>,
    constant: bool,
    layout: Layout,
    q: QParams,
    channel_scales: Option<u32>,
    channel_axis: u32,
    data: Vec<u8>,
}

#[derive(Clone, Debug)]
struct ODef {
    code: OpCode,
    name: String,
    inputs: Vec<u32>,
    output: u32,
    params: [i32; OP_PARAMS],
    scratch_len: usize,
}

pub use crate::ops::window::Window;

/// Quantized clamp range `[min, max]` for a fused activation with real bounds `lo..hi`
/// (`None` = unbounded), in the output quantization `q`.
pub fn clamp_range(lo: Option<f32>, hi: Option<f32>, q: QParams) -> (i32, i32) {
    let qv = |x: f32| temper_kernels::requant::quantize_f32(x, q.scale, q.zero_point) as i32;
    let min = lo.map_or(-128, qv);
    let max = hi.map_or(127, qv);
    (min, max.max(min))
}

/// Weights of a GEMM-like op, already quantized symmetric per output channel.
#[derive(Clone, Copy, Debug)]
pub struct QWeights<'w> {
    /// Int8 weights. Conv: `[O][KH][KW][C/groups]`; dense: `[N][K]`; depthwise: `[KH][KW][C]`.
    pub data: &'w [i8],
    /// One scale per output channel.
    pub scales: &'w [f32],
    /// Bias per output channel, quantized with scale `input_scale · scales[c]` (raw, without
    /// zero-point folding).
    pub bias: &'w [i32],
}

/// Builder of a `.tmf` file.
#[derive(Clone, Debug, Default)]
pub struct Builder {
    name: String,
    tensors: Vec<TDef>,
    ops: Vec<ODef>,
    inputs: Vec<u32>,
    outputs: Vec<u32>,
    meta: Vec<(String, String)>,
    input_records: Vec<InputRecord>,
}

impl Builder {
    /// A new, empty model.
    pub fn new(name: &str) -> Builder {
        Builder { name: name.to_string(), ..Default::default() }
    }

    fn push(&mut self, t: TDef) -> u32 {
        self.tensors.push(t);
        (self.tensors.len() - 1) as u32
    }

    /// Shape of a tensor.
    pub fn dims(&self, id: u32) -> &[usize] {
        &self.tensors[id as usize].dims
    }

    /// Quantization of a tensor.
    pub fn qparams(&self, id: u32) -> QParams {
        self.tensors[id as usize].q
    }

    /// Add an int8 activation (4-D activations are NHWC).
    pub fn activation(&mut self, name: &str, dims: &[usize], q: QParams) -> u32 {
        self.push(TDef {
            name: name.to_string(),
            dtype: DType::I8,
            dims: dims.to_vec(),
            constant: false,
            layout: Layout::Plain,
            q,
            channel_scales: None,
            channel_axis: 0,
            data: Vec::new(),
        })
    }

    fn constant(&mut self, name: &str, dtype: DType, dims: &[usize], layout: Layout, data: Vec<u8>, q: QParams) -> u32 {
        self.push(TDef {
            name: name.to_string(),
            dtype,
            dims: dims.to_vec(),
            constant: true,
            layout,
            q,
            channel_scales: None,
            channel_axis: 0,
            data,
        })
    }

    /// Add a constant i32 tensor.
    pub fn const_i32(&mut self, name: &str, dims: &[usize], data: &[i32]) -> u32 {
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(name, DType::I32, dims, Layout::Plain, bytes, QParams { scale: 0.0, zero_point: 0 })
    }

    /// Add a constant f32 tensor.
    pub fn const_f32(&mut self, name: &str, dims: &[usize], data: &[f32]) -> u32 {
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(name, DType::F32, dims, Layout::Plain, bytes, QParams { scale: 0.0, zero_point: 0 })
    }

    /// Add a constant i8 tensor with per-channel scales (`scales[c]` along `axis`) or a
    /// per-tensor scale (`scales.len() == 1`).
    pub fn const_i8(&mut self, name: &str, dims: &[usize], layout: Layout, data: &[i8], scales: &[f32], axis: usize) -> u32 {
        let q = QParams { scale: scales.first().copied().unwrap_or(1.0), zero_point: 0 };
        let id = self.constant(name, DType::I8, dims, layout, data.iter().map(|&v| v as u8).collect(), q);
        if scales.len() > 1 {
            let s = self.const_f32(&alloc::format!("{name}.scales"), &[scales.len()], scales);
            self.tensors[id as usize].channel_scales = Some(s);
            self.tensors[id as usize].channel_axis = axis as u32;
        }
        id
    }

    /// Mark a graph input.
    pub fn input(&mut self, id: u32) {
        self.inputs.push(id);
    }

    /// Mark a graph input that also accepts raw u8 pixels (NHWC), normalized as
    /// `(pixel · pixel_scale − mean[c]) / std[c]` before quantization.
    pub fn pixel_input(&mut self, id: u32, pixel_scale: f32, mean: &[f32], std: &[f32]) {
        self.inputs.push(id);
        let mut rec = InputRecord {
            tensor: id,
            kind: InputKind::Pixels as u32,
            channels: mean.len() as u32,
            pixel_scale,
            ..bytemuck::Zeroable::zeroed()
        };
        for (c, &m) in mean.iter().enumerate().take(4) {
            rec.mean[c] = m;
            rec.std[c] = std.get(c).copied().unwrap_or(1.0);
        }
        self.input_records.push(rec);
    }

    /// Mark a graph output.
    pub fn output(&mut self, id: u32) {
        self.outputs.push(id);
    }

    /// Add a metadata pair.
    pub fn meta(&mut self, key: &str, value: &str) {
        self.meta.push((key.to_string(), value.to_string()));
    }

    /// Add an op with typed parameters (no checks beyond those of the final validation); the
    /// scratch it needs comes from the op registry. The typed helpers ([`Builder::conv2d`], …,
    /// one per op module in [`crate::ops`]) compute the constants and call this.
    pub fn op(&mut self, code: OpCode, name: &str, inputs: &[u32], output: u32, params: &impl OpParams) {
        let params = params.encode();
        let dims = |id: Option<&u32>| -> ([u32; MAX_RANK], usize) {
            let mut d = [0u32; MAX_RANK];
            let t = id.and_then(|&id| self.tensors.get(id as usize)).map_or(&[][..], |t| &t.dims[..]);
            for (k, &v) in t.iter().take(MAX_RANK).enumerate() {
                d[k] = u32::try_from(v).unwrap_or(u32::MAX);
            }
            (d, t.len().min(MAX_RANK))
        };
        let ((xd, xr), (yd, yr)) = (dims(inputs.first()), dims(Some(&output)));
        let scratch = (code.def().scratch)(&params, &xd[..xr], &yd[..yr]);
        self.raw_op(code, name, inputs, output, &params, scratch);
    }

    /// Add a raw op (no checks beyond those of the final validation).
    pub fn raw_op(&mut self, code: OpCode, name: &str, inputs: &[u32], output: u32, params: &[i32], scratch_len: usize) {
        let mut p = [0i32; OP_PARAMS];
        p[..params.len()].copy_from_slice(params);
        self.ops.push(ODef { code, name: name.to_string(), inputs: inputs.to_vec(), output, params: p, scratch_len });
    }

    /// Per-channel requantization constants `{name}.mult`, `{name}.shift` for
    /// `in_scale · w_scales[c] / out_scale`; returns their tensor ids.
    pub(crate) fn requant_vecs(&mut self, name: &str, in_scale: f32, w_scales: &[f32], out_scale: f32) -> Result<(u32, u32), BuildError> {
        let mut mult = Vec::with_capacity(w_scales.len());
        let mut shift = Vec::with_capacity(w_scales.len());
        for (c, &ws) in w_scales.iter().enumerate() {
            let r = in_scale as f64 * ws as f64 / out_scale as f64;
            let (m, s) = quantize_multiplier(r)
                .ok_or_else(|| BuildError(alloc::format!("{name}: channel {c}: requantization scale {r} cannot be encoded")))?;
            mult.push(m);
            shift.push(s);
        }
        let n = w_scales.len();
        Ok((self.const_i32(&alloc::format!("{name}.mult"), &[n], &mult), self.const_i32(&alloc::format!("{name}.shift"), &[n], &shift)))
    }

    /// Plan the arena: returns (arena size, tensor offsets, scratch offsets).
    fn plan(&self) -> (usize, Vec<usize>, Vec<usize>) {
        const ALIGN: usize = 16;
        let n_ops = self.ops.len() as i64;
        // (size, first step, last step, is scratch, index)
        let mut bufs: Vec<(usize, i64, i64, bool, usize)> = Vec::new();
        for (t, d) in self.tensors.iter().enumerate() {
            if d.constant {
                continue;
            }
            let t32 = t as u32;
            let mut first = if self.inputs.contains(&t32) { Some(-1) } else { None };
            let mut last = None;
            for (i, o) in self.ops.iter().enumerate() {
                if o.output == t32 {
                    first.get_or_insert(i as i64);
                }
                if o.inputs.contains(&t32) {
                    last = Some(i as i64);
                }
            }
            if self.outputs.contains(&t32) {
                last = Some(n_ops);
            }
            let Some(f) = first else { continue };
            let size: usize = d.dims.iter().product();
            bufs.push((size, f, last.unwrap_or(f).max(f), false, t));
        }
        for (i, o) in self.ops.iter().enumerate() {
            if o.scratch_len > 0 {
                bufs.push((o.scratch_len, i as i64, i as i64, true, i));
            }
        }
        bufs.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut placed: Vec<(usize, usize, i64, i64)> = Vec::new(); // offset, size, first, last
        let mut t_off = vec![0usize; self.tensors.len()];
        let mut s_off = vec![0usize; self.ops.len()];
        let mut arena = 0usize;
        for &(size, f, l, scratch, idx) in &bufs {
            let mut live: Vec<(usize, usize)> = placed.iter().filter(|p| p.2 <= l && f <= p.3).map(|p| (p.0, p.1)).collect();
            live.sort();
            let mut off = 0usize;
            for (po, ps) in live {
                if off + size <= po {
                    break;
                }
                off = off.max(pack::round_up(po + ps, ALIGN));
            }
            placed.push((off, size, f, l));
            arena = arena.max(off + size);
            if scratch {
                s_off[idx] = off;
            } else {
                t_off[idx] = off;
            }
        }
        (pack::round_up(arena, ALIGN), t_off, s_off)
    }

    /// Serialize, then validate with the runtime's loader. The bytes are ready to write.
    pub fn finish(&self) -> Result<Vec<u8>, BuildError> {
        let (arena, t_off, s_off) = self.plan();
        let mut strings: Vec<u8> = Vec::new();
        let mut intern = |s: &str| -> (u32, u32) {
            let off = strings.len() as u32;
            strings.extend_from_slice(s.as_bytes());
            (off, s.len() as u32)
        };
        let mut ids: Vec<u32> = Vec::new();
        let (gname_off, gname_len) = intern(&self.name);
        let inputs_off = ids.len() as u32;
        ids.extend(&self.inputs);
        let outputs_off = ids.len() as u32;
        ids.extend(&self.outputs);
        let mut op_recs = Vec::new();
        for (i, o) in self.ops.iter().enumerate() {
            let (no, nl) = intern(&o.name);
            let io = ids.len() as u32;
            ids.extend(&o.inputs);
            let oo = ids.len() as u32;
            ids.push(o.output);
            op_recs.push(OpRecord {
                code: o.code as u32,
                name_off: no,
                name_len: nl,
                inputs_off: io,
                n_inputs: o.inputs.len() as u32,
                outputs_off: oo,
                n_outputs: 1,
                reserved: 0,
                scratch_off: if o.scratch_len > 0 { s_off[i] as u64 } else { 0 },
                scratch_len: o.scratch_len as u64,
                params: o.params,
            });
        }
        let mut meta = Vec::new();
        for (k, v) in &self.meta {
            meta.extend((k.len() as u32).to_le_bytes());
            meta.extend((v.len() as u32).to_le_bytes());
            meta.extend(k.as_bytes());
            meta.extend(v.as_bytes());
        }
        let mut names = Vec::new();
        for t in &self.tensors {
            names.push(intern(&t.name));
        }
        // Layout: header, table, graph, tensors, ops, ids, inputs, strings, meta, data.
        let n_sec = 8usize;
        let header_len = HEADER_SIZE + n_sec * 24;
        let mut cursor = header_len;
        let mut place = |len: usize, align: usize| -> usize {
            let off = pack::round_up(cursor, align);
            cursor = off + len;
            off
        };
        let g_off = place(64, 8);
        let t_sec = place(self.tensors.len() * 88, 8);
        let o_sec = place(op_recs.len() * 112, 8);
        let i_sec = place(ids.len() * 4, 4);
        let in_sec = place(self.input_records.len() * 64, 4);
        let s_sec = place(strings.len(), 1);
        let m_sec = place(meta.len(), 1);
        let d_start = pack::round_up(cursor, DATA_ALIGN);
        let mut d_cursor = d_start;
        let mut const_off = vec![0usize; self.tensors.len()];
        for (t, d) in self.tensors.iter().enumerate() {
            if d.constant {
                const_off[t] = d_cursor;
                d_cursor = pack::round_up(d_cursor + d.data.len(), DATA_ALIGN);
            }
        }
        let file_len = d_cursor.max(d_start);
        let mut tensor_recs = Vec::new();
        for (t, d) in self.tensors.iter().enumerate() {
            if d.dims.is_empty() || d.dims.len() > MAX_RANK {
                return err(alloc::format!("tensor {}: rank {} not in 1..=8", d.name, d.dims.len()));
            }
            let mut dims = [0u32; MAX_RANK];
            for (k, &v) in d.dims.iter().enumerate() {
                dims[k] = u32::try_from(v).map_err(|_| BuildError(alloc::format!("tensor {}: dimension too large", d.name)))?;
            }
            let numel: usize = d.dims.iter().product();
            let len = if d.constant { d.data.len() } else { numel };
            tensor_recs.push(TensorRecord {
                name_off: names[t].0,
                name_len: names[t].1,
                dtype: d.dtype as u32,
                rank: d.dims.len() as u32,
                dims,
                storage: if d.constant { Storage::Constant as u32 } else { Storage::Arena as u32 },
                layout: d.layout as u32,
                offset: if d.constant { const_off[t] as u64 } else { t_off[t] as u64 },
                len: len as u64,
                scale: if d.dtype == DType::I8 { d.q.scale } else { 0.0 },
                zero_point: if d.dtype == DType::I8 { d.q.zero_point } else { 0 },
                channel_scales: d.channel_scales.unwrap_or(NONE),
                channel_axis: d.channel_axis,
            });
        }
        let graph = GraphRecord {
            arena_size: arena as u64,
            name_off: gname_off,
            name_len: gname_len,
            inputs_off,
            n_inputs: self.inputs.len() as u32,
            outputs_off,
            n_outputs: self.outputs.len() as u32,
            reserved: [0; 8],
        };
        let mut out = vec![0u8; file_len];
        let secs = [
            (SectionKind::Graph, 8u32, g_off, 64usize),
            (SectionKind::Tensors, 8, t_sec, tensor_recs.len() * 88),
            (SectionKind::Ops, 8, o_sec, op_recs.len() * 112),
            (SectionKind::Ids, 4, i_sec, ids.len() * 4),
            (SectionKind::Inputs, 4, in_sec, self.input_records.len() * 64),
            (SectionKind::Strings, 1, s_sec, strings.len()),
            (SectionKind::Meta, 1, m_sec, meta.len()),
            (SectionKind::Data, DATA_ALIGN as u32, d_start, file_len - d_start),
        ];
        for (i, &(kind, align, off, len)) in secs.iter().enumerate() {
            let e = SectionEntry { kind: kind as u32, align, offset: off as u64, len: len as u64 };
            out[HEADER_SIZE + i * 24..HEADER_SIZE + (i + 1) * 24].copy_from_slice(bytemuck::bytes_of(&e));
        }
        out[g_off..g_off + 64].copy_from_slice(bytemuck::bytes_of(&graph));
        out[t_sec..t_sec + tensor_recs.len() * 88].copy_from_slice(bytemuck::cast_slice(&tensor_recs));
        out[o_sec..o_sec + op_recs.len() * 112].copy_from_slice(bytemuck::cast_slice(&op_recs));
        out[i_sec..i_sec + ids.len() * 4].copy_from_slice(bytemuck::cast_slice(&ids));
        out[in_sec..in_sec + self.input_records.len() * 64].copy_from_slice(bytemuck::cast_slice(&self.input_records));
        out[s_sec..s_sec + strings.len()].copy_from_slice(&strings);
        out[m_sec..m_sec + meta.len()].copy_from_slice(&meta);
        for (t, d) in self.tensors.iter().enumerate() {
            if d.constant {
                out[const_off[t]..const_off[t] + d.data.len()].copy_from_slice(&d.data);
            }
        }
        let mut header = Header {
            magic: MAGIC,
            major: VERSION_MAJOR,
            minor: VERSION_MINOR,
            header_len: header_len as u32,
            file_len: file_len as u64,
            flags: FLAG_PAYLOAD_CRC,
            section_count: n_sec as u32,
            header_crc: 0,
            payload_crc: crc32(0, &out[header_len..]),
            reserved: [0; 8],
        };
        header.header_crc = crc32(crc32(0, bytemuck::bytes_of(&header)), &out[HEADER_SIZE..header_len]);
        out[..HEADER_SIZE].copy_from_slice(bytemuck::bytes_of(&header));
        // Self-check through the real loader (Vec<u8> from the global allocator is 8-aligned in
        // practice; copy to an aligned buffer to be sure).
        let mut aligned = vec![0u64; file_len.div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut aligned)[..file_len].copy_from_slice(&out);
        let view = &bytemuck::cast_slice::<u64, u8>(&aligned)[..file_len];
        Model::from_bytes(view).map_err(|e| BuildError(alloc::format!("the built file does not validate: {e}")))?;
        Ok(out)
    }
}

/// A byte buffer with 64-byte alignment, for loading models read into memory.
#[derive(Clone, Debug, Default)]
pub struct AlignedBuf {
    words: Vec<[u64; 8]>,
    len: usize,
}

impl AlignedBuf {
    /// Copy bytes into an aligned buffer.
    pub fn from_bytes(b: &[u8]) -> AlignedBuf {
        let mut words = vec![[0u64; 8]; b.len().div_ceil(64)];
        bytemuck::cast_slice_mut::<[u64; 8], u8>(&mut words)[..b.len()].copy_from_slice(b);
        AlignedBuf { words, len: b.len() }
    }
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<[u64; 8], u8>(&self.words)[..self.len]
    }
    /// The bytes, mutable.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut::<[u64; 8], u8>(&mut self.words)[..self.len]
    }
}
