//! The zero-copy, fully validating model reader.
//!
//! [`Model::from_bytes`] views the file's records in place (`bytemuck`), then checks everything a
//! run will rely on — every offset, length and count (overflow-checked), every id, every shape
//! against its op's parameters, every scale and requantization multiplier, the memory plan — so
//! that [`crate::Session::run`] can index without further checks. It never panics on any input.

use crate::error::{LoadError, LoadErrorKind as K, Location};
use crate::format::*;
use bytemuck::try_from_bytes;
use temper_kernels::pack;
use temper_kernels::requant;

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

fn section_min_align(k: SectionKind) -> u64 {
    match k {
        SectionKind::Graph | SectionKind::Tensors | SectionKind::Ops => 8,
        SectionKind::Ids | SectionKind::Inputs => 4,
        SectionKind::Data => DATA_ALIGN as u64,
        SectionKind::Strings | SectionKind::Meta => 1,
    }
}

impl<'a> Model<'a> {
    /// Validate and view a model with default options (checksums verified).
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Model<'a>, LoadError> {
        Self::from_bytes_with(bytes, LoadOptions::default())
    }

    /// Validate and view a model.
    pub fn from_bytes_with(bytes: &'a [u8], opts: LoadOptions) -> Result<Model<'a>, LoadError> {
        let file = |o: u64| Location::File { offset: o };
        if bytes.len() < HEADER_SIZE {
            return Err(LoadError::new(K::Format, "file shorter than the header", file(0)).with(bytes.len() as i64, HEADER_SIZE as i64));
        }
        if !(bytes.as_ptr() as usize).is_multiple_of(8) {
            return Err(LoadError::new(K::Alignment, "model bytes must start at an 8-byte aligned address (use AlignedBytes)", file(0)));
        }
        let header: &Header =
            try_from_bytes(&bytes[..HEADER_SIZE]).map_err(|_| LoadError::new(K::Alignment, "header not viewable", file(0)))?;
        if header.magic != MAGIC {
            return Err(LoadError::new(K::Format, "bad magic: not a temper model file", file(0)));
        }
        if header.major != VERSION_MAJOR {
            return Err(LoadError::new(K::Version, "unsupported major version", file(8)).with(header.major as i64, VERSION_MAJOR as i64));
        }
        if header.flags & !KNOWN_FLAGS != 0 {
            return Err(LoadError::new(K::Version, "unknown flags set (file written by a newer minor version that needs them)", file(24))
                .with(header.flags as i64, KNOWN_FLAGS as i64));
        }
        if header.reserved != [0; 8] {
            return Err(LoadError::new(K::Format, "reserved header bytes are not zero", file(40)));
        }
        if header.file_len != bytes.len() as u64 {
            return Err(LoadError::new(K::Format, "file length differs from the header (truncated or padded file)", file(16))
                .with(bytes.len() as i64, header.file_len.min(i64::MAX as u64) as i64));
        }
        let table_len =
            (header.section_count as u64).checked_mul(24).ok_or(LoadError::new(K::Bounds, "section count overflows", file(28)))?;
        let expect_hlen = HEADER_SIZE as u64 + table_len;
        if header.header_len as u64 != expect_hlen || expect_hlen > bytes.len() as u64 {
            return Err(LoadError::new(K::Bounds, "header length does not match the section table", file(12))
                .with(header.header_len as i64, expect_hlen.min(i64::MAX as u64) as i64));
        }
        let hlen = expect_hlen as usize;
        if opts.verify_checksums {
            let mut h = *header;
            h.header_crc = 0;
            let crc = crc32(crc32(0, bytemuck::bytes_of(&h)), &bytes[HEADER_SIZE..hlen]);
            if crc != header.header_crc {
                return Err(LoadError::new(K::Checksum, "header checksum mismatch", file(32)).with(crc as i64, header.header_crc as i64));
            }
            if header.flags & FLAG_PAYLOAD_CRC != 0 {
                let crc = crc32(0, &bytes[hlen..]);
                if crc != header.payload_crc {
                    return Err(LoadError::new(K::Checksum, "payload checksum mismatch (corrupted data)", file(36))
                        .with(crc as i64, header.payload_crc as i64));
                }
            }
        }
        let table: &[SectionEntry] = bytemuck::try_cast_slice(&bytes[HEADER_SIZE..hlen])
            .map_err(|_| LoadError::new(K::Alignment, "section table not viewable", file(HEADER_SIZE as u64)))?;
        let mut sections = [(0u64, 0u64); 9];
        let mut seen = [false; 9];
        for (i, s) in table.iter().enumerate() {
            let at = file((HEADER_SIZE + i * 24) as u64);
            let kind =
                SectionKind::from_code(s.kind).ok_or(LoadError::new(K::Invalid, "unknown section kind", at).with(s.kind as i64, 8))?;
            let k = kind as usize;
            if seen[k] {
                return Err(LoadError::new(K::Invalid, "duplicate section", at).with(s.kind as i64, 0));
            }
            seen[k] = true;
            let end = s.offset.checked_add(s.len).ok_or(LoadError::new(K::Bounds, "section end overflows", at))?;
            if s.offset < hlen as u64 || end > bytes.len() as u64 {
                return Err(LoadError::new(K::Bounds, "section outside the file", at)
                    .with(s.offset.min(i64::MAX as u64) as i64, bytes.len() as i64));
            }
            if !s.align.is_power_of_two() || (s.align as u64) < section_min_align(kind) || s.offset % s.align as u64 != 0 {
                return Err(LoadError::new(K::Alignment, "section misaligned", at).with(s.offset as i64, s.align as i64));
            }
            sections[k] = (s.offset, s.len);
        }
        for kind in SectionKind::ALL {
            if !seen[kind as usize] {
                return Err(LoadError::new(K::Format, "required section missing", file(HEADER_SIZE as u64)).with(kind as i64, 0));
            }
        }
        // Sections must not overlap one another.
        for a in SectionKind::ALL {
            for b in SectionKind::ALL {
                let (ao, al) = sections[a as usize];
                let (bo, bl) = sections[b as usize];
                if (a as u32) < (b as u32) && al > 0 && bl > 0 && ao < bo + bl && bo < ao + al {
                    return Err(LoadError::new(K::Bounds, "sections overlap", file(ao)).with(a as i64, b as i64));
                }
            }
        }
        let sec = |k: SectionKind| {
            let (o, l) = sections[k as usize];
            &bytes[o as usize..(o + l) as usize]
        };
        let sloc = |k: SectionKind| Location::Section { kind: k, offset: sections[k as usize].0 };
        let cast_err = |k: SectionKind| LoadError::new(K::Bounds, "section length is not a whole number of records", sloc(k));
        let graph: &GraphRecord = try_from_bytes(sec(SectionKind::Graph)).map_err(|_| cast_err(SectionKind::Graph))?;
        let tensors: &[TensorRecord] = bytemuck::try_cast_slice(sec(SectionKind::Tensors)).map_err(|_| cast_err(SectionKind::Tensors))?;
        let ops: &[OpRecord] = bytemuck::try_cast_slice(sec(SectionKind::Ops)).map_err(|_| cast_err(SectionKind::Ops))?;
        let ids: &[u32] = bytemuck::try_cast_slice(sec(SectionKind::Ids)).map_err(|_| cast_err(SectionKind::Ids))?;
        let inputs: &[InputRecord] = bytemuck::try_cast_slice(sec(SectionKind::Inputs)).map_err(|_| cast_err(SectionKind::Inputs))?;
        let model = Model {
            bytes,
            header,
            graph,
            tensors,
            ops,
            ids,
            strings: sec(SectionKind::Strings),
            meta: sec(SectionKind::Meta),
            inputs,
            sections,
        };
        model.validate()?;
        Ok(model)
    }

    // ---------------------------------------------------------------- validation

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

    fn validate(&self) -> Result<(), LoadError> {
        let g = self.graph;
        if g.reserved != [0; 8] {
            return Err(LoadError::new(K::Format, "reserved graph fields are not zero", self.gloc()));
        }
        self.string(g.name_off, g.name_len, self.gloc())?;
        if self.tensors.len() >= NONE as usize || self.ops.len() >= i32::MAX as usize {
            return Err(LoadError::new(K::Bounds, "too many tensors or ops", self.gloc()));
        }
        if g.arena_size > isize::MAX as u64 / 2 {
            return Err(LoadError::new(K::Bounds, "arena size absurd", self.gloc()).with(g.arena_size.min(i64::MAX as u64) as i64, 0));
        }
        for i in 0..self.tensors.len() {
            self.validate_tensor(i)?;
        }
        let ins = self.id_list(g.inputs_off, g.n_inputs, self.gloc())?;
        let outs = self.id_list(g.outputs_off, g.n_outputs, self.gloc())?;
        if ins.is_empty() || outs.is_empty() {
            return Err(LoadError::new(K::Invalid, "graph has no inputs or no outputs", self.gloc()));
        }
        for (i, &t) in ins.iter().chain(outs.iter()).enumerate() {
            let r = &self.tensors[t as usize];
            if r.storage != Storage::Arena as u32 || r.dtype != DType::I8 as u32 {
                return Err(LoadError::new(K::Invalid, "graph inputs/outputs must be int8 activations", self.gloc()).with(t as i64, 0));
            }
            if i < ins.len() && ins[..i].contains(&t) {
                return Err(LoadError::new(K::Invalid, "graph input listed twice", self.gloc()).with(t as i64, 0));
            }
        }
        for i in 0..self.ops.len() {
            self.validate_op(i)?;
        }
        // The planner never needs more than every activation and scratch region side by side
        // (each rounded up to its alignment): a larger arena request is a corrupt or hostile file.
        let mut bound: u64 = 64;
        for r in self.tensors.iter().filter(|r| r.storage == Storage::Arena as u32) {
            bound = bound.saturating_add(r.len.saturating_add(64));
        }
        for o in self.ops {
            bound = bound.saturating_add(o.scratch_len.saturating_add(64));
        }
        if g.arena_size > bound {
            return Err(LoadError::new(K::Plan, "arena size larger than all activations and scratch together", self.gloc())
                .with(g.arena_size.min(i64::MAX as u64) as i64, bound.min(i64::MAX as u64) as i64));
        }
        self.validate_dataflow(ins, outs)?;
        self.validate_plan()?;
        self.validate_meta()?;
        self.validate_inputs(ins)?;
        Ok(())
    }

    fn validate_tensor(&self, i: usize) -> Result<(), LoadError> {
        let r = &self.tensors[i];
        let at = self.tloc(i);
        self.string(r.name_off, r.name_len, at)?;
        let dtype = DType::from_code(r.dtype).ok_or(LoadError::new(K::Invalid, "unknown dtype", at).with(r.dtype as i64, 4))?;
        if r.rank == 0 || r.rank as usize > MAX_RANK {
            return Err(LoadError::new(K::Invalid, "rank must be 1..=8", at).with(r.rank as i64, MAX_RANK as i64));
        }
        let rank = r.rank as usize;
        let mut numel: u64 = 1;
        for (d, &v) in r.dims.iter().enumerate() {
            if d < rank {
                if v == 0 {
                    return Err(LoadError::new(K::Invalid, "zero dimension", at).with(d as i64, 0));
                }
                numel = numel.checked_mul(v as u64).ok_or(LoadError::new(K::Bounds, "element count overflows", at))?;
            } else if v != 0 {
                return Err(LoadError::new(K::Invalid, "dimension beyond rank is not zero", at).with(d as i64, v as i64));
            }
        }
        let limit = (1u64 << 40).min(usize::MAX as u64 / 16);
        if numel > limit {
            return Err(LoadError::new(K::Bounds, "tensor absurdly large", at).with(numel as i64, limit as i64));
        }
        let layout = match r.layout {
            0 => Layout::Plain,
            1 => Layout::Packed,
            v => return Err(LoadError::new(K::Invalid, "unknown layout", at).with(v as i64, 1)),
        };
        let expect = match layout {
            Layout::Plain => numel * dtype.size() as u64,
            Layout::Packed => {
                if rank != 3 || dtype != DType::I8 {
                    return Err(LoadError::new(K::Invalid, "packed weights must be i8 [groups, n, k]", at));
                }
                let per = pack::packed_len(r.dims[1] as usize, r.dims[2] as usize).ok_or(LoadError::new(
                    K::Bounds,
                    "packed size overflows",
                    at,
                ))?;
                (per as u64).checked_mul(r.dims[0] as u64).ok_or(LoadError::new(K::Bounds, "packed size overflows", at))?
            }
        };
        if r.len != expect {
            return Err(LoadError::new(K::Bounds, "byte length does not match dims and dtype", at)
                .with(r.len.min(i64::MAX as u64) as i64, expect as i64));
        }
        let end = r.offset.checked_add(r.len).ok_or(LoadError::new(K::Bounds, "tensor end overflows", at))?;
        match r.storage {
            0 => {
                if dtype != DType::I8 || layout != Layout::Plain {
                    return Err(LoadError::new(K::Invalid, "arena tensors must be plain i8", at));
                }
                if end > self.graph.arena_size {
                    return Err(LoadError::new(K::Plan, "activation outside the arena", at)
                        .with(end.min(i64::MAX as u64) as i64, self.graph.arena_size as i64));
                }
            }
            1 => {
                let (doff, dlen) = self.sections[SectionKind::Data as usize];
                if r.offset < doff || end > doff + dlen || !r.offset.is_multiple_of(DATA_ALIGN as u64) {
                    return Err(LoadError::new(K::Bounds, "constant outside the data section or not 64-byte aligned", at)
                        .with(r.offset.min(i64::MAX as u64) as i64, (doff + dlen) as i64));
                }
            }
            v => return Err(LoadError::new(K::Invalid, "unknown storage", at).with(v as i64, 1)),
        }
        if dtype == DType::I8 {
            if !(r.scale.is_finite() && r.scale > 0.0) {
                return Err(LoadError::new(K::Invalid, "int8 tensor scale must be finite and > 0", at));
            }
            if !(-128..=127).contains(&r.zero_point) {
                return Err(LoadError::new(K::Invalid, "zero point outside [-128, 127]", at).with(r.zero_point as i64, 127));
            }
        }
        if r.channel_scales != NONE {
            let c = r.channel_scales as usize;
            let cr = self
                .tensors
                .get(c)
                .ok_or(LoadError::new(K::Bounds, "channel scales id out of range", at).with(c as i64, self.tensors.len() as i64))?;
            let axis = r.channel_axis as usize;
            if cr.dtype != DType::F32 as u32
                || cr.storage != Storage::Constant as u32
                || cr.rank != 1
                || axis >= rank
                || cr.dims[0] != r.dims[axis]
            {
                return Err(LoadError::new(K::Invalid, "channel scales must be a constant f32 vector as long as the channel axis", at));
            }
        }
        Ok(())
    }

    fn rec(&self, id: u32) -> &'a TensorRecord {
        &self.tensors[id as usize]
    }

    fn numel(r: &TensorRecord) -> usize {
        r.dims[..r.rank as usize].iter().map(|&d| d as usize).product()
    }

    fn validate_op(&self, i: usize) -> Result<(), LoadError> {
        let o = &self.ops[i];
        let at = self.oloc(i);
        let code = OpCode::from_code(o.code).ok_or(LoadError::new(K::Invalid, "unknown op code", at).with(o.code as i64, 15))?;
        self.string(o.name_off, o.name_len, at)?;
        if o.reserved != 0 {
            return Err(LoadError::new(K::Format, "reserved op field is not zero", at));
        }
        let ins = self.id_list(o.inputs_off, o.n_inputs, at)?;
        let outs = self.id_list(o.outputs_off, o.n_outputs, at)?;
        if outs.len() != 1 {
            return Err(LoadError::new(K::Invalid, "every op has exactly one output", at).with(outs.len() as i64, 1));
        }
        let y = self.rec(outs[0]);
        if y.storage != Storage::Arena as u32 {
            return Err(LoadError::new(K::Invalid, "op output must be an arena tensor", at));
        }
        let p = &o.params;
        let arity = |n: usize| -> Result<(), LoadError> {
            if ins.len() != n {
                Err(LoadError::new(K::Invalid, "wrong number of inputs", at).with(ins.len() as i64, n as i64))
            } else {
                Ok(())
            }
        };
        let act = |id: u32| -> Result<&TensorRecord, LoadError> {
            let r = self.rec(id);
            if r.storage != Storage::Arena as u32 {
                return Err(LoadError::new(K::Invalid, "input must be an activation", at).with(id as i64, 0));
            }
            Ok(r)
        };
        let cst = |id: u32, dt: DType, layout: Layout| -> Result<&TensorRecord, LoadError> {
            let r = self.rec(id);
            if r.storage != Storage::Constant as u32 || r.dtype != dt as u32 || r.layout != layout as u32 {
                return Err(LoadError::new(K::Invalid, "constant input of the wrong kind", at).with(id as i64, dt as i64));
            }
            Ok(r)
        };
        let clamp_ok = |lo: i32, hi: i32| -> Result<(), LoadError> {
            if !(-128..=127).contains(&lo) || !(-128..=127).contains(&hi) || lo > hi {
                return Err(LoadError::new(K::Invalid, "activation clamp range invalid", at).with(lo as i64, hi as i64));
            }
            Ok(())
        };
        let same_q = |a: &TensorRecord, b: &TensorRecord| -> Result<(), LoadError> {
            if a.scale != b.scale || a.zero_point != b.zero_point {
                return Err(LoadError::new(K::Invalid, "op requires identical input/output quantization", at));
            }
            Ok(())
        };
        let window = |base: usize| -> Result<[usize; 10], LoadError> {
            let mut w = [0usize; 10];
            for (k, slot) in w.iter_mut().enumerate() {
                let v = p[base + k];
                let lo = if k < 6 { 1 } else { 0 };
                if v < lo || v > 4096 {
                    return Err(LoadError::new(K::Invalid, "window parameter out of range", at).with(v as i64, (base + k) as i64));
                }
                *slot = v as usize;
            }
            Ok(w)
        };
        match code {
            OpCode::Conv2d | OpCode::Depthwise2d | OpCode::ConvTranspose2d => {
                let w = window(0)?; // kh kw sh sw dh dw pt pl pb pr
                let groups = p[10];
                clamp_ok(p[11], p[12])?;
                let n_in = if code == OpCode::Conv2d { 6 } else { 5 };
                arity(n_in)?;
                let x = act(ins[0])?;
                nhwc(x, at)?;
                nhwc(y, at)?;
                let (n, h, wd, c) = dims4(x);
                let (yn, yh, yw, yc) = dims4(y);
                if groups < 1 || c % groups as usize != 0 || yc % groups as usize != 0 || yn != n {
                    return Err(
                        LoadError::new(K::Invalid, "channels not divisible by groups, or batch differs", at).with(groups as i64, c as i64)
                    );
                }
                let groups = groups as usize;
                if code == OpCode::ConvTranspose2d {
                    let base = (h - 1).saturating_mul(w[2]).saturating_add(w[4] * (w[0] - 1) + 1);
                    let basew = (wd - 1).saturating_mul(w[3]).saturating_add(w[5] * (w[1] - 1) + 1);
                    let ok_h = base.saturating_sub(w[6] + w[8]);
                    let ok_w = basew.saturating_sub(w[7] + w[9]);
                    if ok_h == 0 || ok_w == 0 || yh < ok_h || yh >= ok_h + w[2] || yw < ok_w || yw >= ok_w + w[3] {
                        return Err(LoadError::new(K::Invalid, "output shape inconsistent with transposed-conv parameters", at)
                            .with(yh as i64, ok_h as i64));
                    }
                    let wt = cst(ins[1], DType::I8, Layout::Plain)?;
                    if wt.rank != 4 || dims4(wt) != (yc, w[0], w[1], c / groups) {
                        return Err(LoadError::new(K::Invalid, "transposed-conv weights must be [O, KH, KW, C/groups]", at));
                    }
                    self.check_vec(ins[2], yc, at)?;
                    self.check_requant(ins[3], ins[4], yc, at)?;
                } else {
                    let oh = conv_out(h, w[0], w[2], w[4], w[6] + w[8]);
                    let ow = conv_out(wd, w[1], w[3], w[5], w[7] + w[9]);
                    if oh != Some(yh) || ow != Some(yw) {
                        return Err(LoadError::new(K::Invalid, "output shape inconsistent with conv parameters", at)
                            .with(yh as i64, oh.unwrap_or(0) as i64));
                    }
                    if code == OpCode::Conv2d {
                        let wt = cst(ins[1], DType::I8, Layout::Packed)?;
                        let k = w[0] * w[1] * (c / groups);
                        if wt.dims[0] as usize != groups || wt.dims[1] as usize != yc / groups || wt.dims[2] as usize != k {
                            return Err(LoadError::new(K::Invalid, "packed conv weights must be [groups, O/groups, KH·KW·C/groups]", at));
                        }
                        self.check_vec(ins[2], yc, at)?;
                        self.check_vec(ins[3], yc, at)?;
                        self.check_requant(ins[4], ins[5], yc, at)?;
                        self.check_packed(ins[1], ins[2], ins[3], at)?;
                        let need = temper_kernels::dispatch::conv_scratch_len(&self.conv_geom(i));
                        if (o.scratch_len as usize) < need || o.scratch_len > self.graph.arena_size {
                            return Err(LoadError::new(K::Plan, "conv scratch smaller than the kernels need", at)
                                .with(o.scratch_len as i64, need as i64));
                        }
                    } else {
                        if groups != c || yc != c {
                            return Err(LoadError::new(K::Invalid, "depthwise requires groups = in channels = out channels", at));
                        }
                        let wt = cst(ins[1], DType::I8, Layout::Plain)?;
                        if wt.rank != 3 || wt.dims[0] as usize != w[0] || wt.dims[1] as usize != w[1] || wt.dims[2] as usize != c {
                            return Err(LoadError::new(K::Invalid, "depthwise weights must be [KH, KW, C]", at));
                        }
                        self.check_vec(ins[2], c, at)?;
                        self.check_requant(ins[3], ins[4], c, at)?;
                        if self.const_i8(ins[1]).contains(&-128) {
                            return Err(LoadError::new(K::Invalid, "weights must lie in -127..=127 (symmetric int8)", at));
                        }
                    }
                }
            }
            OpCode::FullyConnected => {
                arity(6)?;
                clamp_ok(p[0], p[1])?;
                let x = act(ins[0])?;
                let wt = cst(ins[1], DType::I8, Layout::Packed)?;
                let (nn, k) = (wt.dims[1] as usize, wt.dims[2] as usize);
                let xk = x.dims[x.rank as usize - 1] as usize;
                let m = Self::numel(x) / xk.max(1);
                if wt.dims[0] != 1 || xk != k || Self::numel(y) != m * nn || y.dims[y.rank as usize - 1] as usize != nn {
                    return Err(LoadError::new(K::Invalid, "fully connected shapes inconsistent (x [.., K], w [1, N, K], y [.., N])", at)
                        .with(xk as i64, k as i64));
                }
                self.check_vec(ins[2], nn, at)?;
                self.check_vec(ins[3], nn, at)?;
                self.check_requant(ins[4], ins[5], nn, at)?;
                self.check_packed(ins[1], ins[2], ins[3], at)?;
            }
            OpCode::Add | OpCode::Mul => {
                arity(2)?;
                let (a, b) = (act(ins[0])?, act(ins[1])?);
                for r in [a, b, y] {
                    if r.rank > 4 {
                        return Err(LoadError::new(K::Invalid, "elementwise ops take rank ≤ 4", at));
                    }
                }
                let (ya, yb, yo) = (pad4(a), pad4(b), pad4(y));
                for d in 0..4 {
                    let ok = |v: u32| v == yo[d] || v == 1;
                    if !ok(ya[d]) || !ok(yb[d]) || yo[d] != ya[d].max(yb[d]) {
                        return Err(LoadError::new(K::Invalid, "shapes do not broadcast to the output", at).with(d as i64, yo[d] as i64));
                    }
                }
                if code == OpCode::Add {
                    if !(1..=62).contains(&p[2]) {
                        return Err(LoadError::new(K::Invalid, "add shift out of range", at).with(p[2] as i64, 62));
                    }
                    clamp_ok(p[3], p[4])?;
                } else {
                    if !requant::is_valid(p[0], p[1]) {
                        return Err(LoadError::new(K::Invalid, "mul multiplier/shift invalid", at).with(p[0] as i64, p[1] as i64));
                    }
                    clamp_ok(p[2], p[3])?;
                }
            }
            OpCode::MaxPool | OpCode::AvgPool => {
                arity(1)?;
                let x = act(ins[0])?;
                nhwc(x, at)?;
                nhwc(y, at)?;
                let (n, h, wd, c) = dims4(x);
                let (yn, yh, yw, yc) = dims4(y);
                let (kh, kw, sh, sw, pt, pl, pb, pr) = if code == OpCode::MaxPool {
                    let w = window(0)?;
                    clamp_ok(p[10], p[11])?;
                    same_q(x, y)?;
                    if w[4] != 1 || w[5] != 1 {
                        return Err(LoadError::new(K::Invalid, "dilated pooling is not supported", at));
                    }
                    (w[0], w[1], w[2], w[3], w[6], w[7], w[8], w[9])
                } else {
                    let mut w = [0usize; 8];
                    for k in 0..8 {
                        let lo = if k < 4 { 1 } else { 0 };
                        if p[k] < lo || p[k] > 4096 {
                            return Err(LoadError::new(K::Invalid, "pool parameter out of range", at).with(p[k] as i64, k as i64));
                        }
                        w[k] = p[k] as usize;
                    }
                    if !(0..=1).contains(&p[8]) || !requant::is_valid(p[9], p[10]) {
                        return Err(LoadError::new(K::Invalid, "avg pool flags or multiplier invalid", at));
                    }
                    clamp_ok(p[11], p[12])?;
                    (w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7])
                };
                if pt >= kh || pb >= kh || pl >= kw || pr >= kw {
                    return Err(LoadError::new(K::Invalid, "pool padding must be smaller than the window", at));
                }
                let fh = conv_out(h, kh, sh, 1, pt + pb);
                let fw = conv_out(wd, kw, sw, 1, pl + pr);
                let okh = fh.is_some_and(|f| yh == f || yh == f + 1) && (yh - 1) * sh < h + pt;
                let okw = fw.is_some_and(|f| yw == f || yw == f + 1) && (yw - 1) * sw < wd + pl;
                if n != yn || c != yc || !okh || !okw {
                    return Err(LoadError::new(K::Invalid, "pool output shape inconsistent with its window", at)
                        .with(yh as i64, fh.unwrap_or(0) as i64));
                }
            }
            OpCode::Lut => {
                arity(2)?;
                let x = act(ins[0])?;
                let t = cst(ins[1], DType::I8, Layout::Plain)?;
                if Self::numel(t) != 256 || Self::numel(x) != Self::numel(y) {
                    return Err(LoadError::new(K::Invalid, "lookup table must have 256 entries and output the input's size", at));
                }
            }
            OpCode::Concat => {
                if ins.len() < 2 {
                    return Err(LoadError::new(K::Invalid, "concat needs inputs and a rescale table", at));
                }
                let n = ins.len() - 1;
                let table = cst(ins[n], DType::I32, Layout::Plain)?;
                if Self::numel(table) != n * 2 {
                    return Err(LoadError::new(K::Invalid, "concat rescale table must be [inputs, 2]", at));
                }
                let t = self.const_i32(ins[n]);
                for k in 0..n {
                    let (m, s) = (t[2 * k], t[2 * k + 1]);
                    if (m != 0 || s != 0) && !requant::is_valid(m, s) {
                        return Err(LoadError::new(K::Invalid, "concat rescale multiplier invalid", at).with(m as i64, s as i64));
                    }
                }
                let axis = p[0];
                nhwc(y, at)?;
                if !(0..4).contains(&axis) {
                    return Err(LoadError::new(K::Invalid, "concat axis out of range", at).with(axis as i64, 3));
                }
                let yd = pad4(y);
                let mut sum = 0u64;
                for &id in &ins[..n] {
                    let x = act(id)?;
                    nhwc(x, at)?;
                    let xd = pad4(x);
                    for d in 0..4 {
                        if d != axis as usize && xd[d] != yd[d] {
                            return Err(LoadError::new(K::Invalid, "concat inputs differ off the axis", at).with(d as i64, 0));
                        }
                    }
                    sum += xd[axis as usize] as u64;
                }
                if sum != yd[axis as usize] as u64 {
                    return Err(LoadError::new(K::Invalid, "concat sizes do not add up", at).with(sum as i64, yd[axis as usize] as i64));
                }
            }
            OpCode::Reshape => {
                arity(1)?;
                let x = act(ins[0])?;
                same_q(x, y)?;
                if Self::numel(x) != Self::numel(y) {
                    return Err(LoadError::new(K::Invalid, "reshape changes the element count", at));
                }
            }
            OpCode::Transpose => {
                arity(1)?;
                let x = act(ins[0])?;
                nhwc(x, at)?;
                nhwc(y, at)?;
                same_q(x, y)?;
                let mut seen = [false; 4];
                for (d, &v) in p[..4].iter().enumerate() {
                    if !(0..4).contains(&v) || seen[v as usize] || y.dims[d] != x.dims[v as usize] {
                        return Err(LoadError::new(K::Invalid, "transpose permutation invalid", at).with(d as i64, v as i64));
                    }
                    seen[v as usize] = true;
                }
            }
            OpCode::Pad => {
                arity(1)?;
                let x = act(ins[0])?;
                nhwc(x, at)?;
                nhwc(y, at)?;
                same_q(x, y)?;
                for d in 0..4 {
                    let (b, e) = (p[d], p[4 + d]);
                    if !(0..=1 << 20).contains(&b)
                        || !(0..=1 << 20).contains(&e)
                        || y.dims[d] as i64 != x.dims[d] as i64 + b as i64 + e as i64
                    {
                        return Err(LoadError::new(K::Invalid, "pad sizes inconsistent", at).with(d as i64, b as i64));
                    }
                }
            }
            OpCode::Resize => {
                arity(1)?;
                let x = act(ins[0])?;
                nhwc(x, at)?;
                nhwc(y, at)?;
                same_q(x, y)?;
                if !(0..=2).contains(&p[0]) || x.dims[0] != y.dims[0] || x.dims[3] != y.dims[3] {
                    return Err(LoadError::new(K::Invalid, "resize mode or shape invalid", at).with(p[0] as i64, 2));
                }
            }
            OpCode::Softmax => {
                arity(2)?;
                let x = act(ins[0])?;
                let t = cst(ins[1], DType::I32, Layout::Plain)?;
                if Self::numel(t) != 256 || x.dims != y.dims || x.rank != y.rank || y.zero_point != -128 || y.scale != 1.0 / 256.0 {
                    return Err(LoadError::new(
                        K::Invalid,
                        "softmax needs a 256-entry table, same shape, output scale 1/256 zero point -128",
                        at,
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_vec(&self, id: u32, n: usize, at: Location) -> Result<(), LoadError> {
        let r = self.rec(id);
        if r.storage != Storage::Constant as u32 || r.dtype != DType::I32 as u32 || Self::numel(r) != n {
            return Err(LoadError::new(K::Invalid, "bias must be a constant i32 vector with one value per output channel", at)
                .with(id as i64, n as i64));
        }
        Ok(())
    }

    /// Packed weights: padding is zero, values lie in −127..=127, and `bias_u8[c]` equals
    /// `bias[c] − 128 · Σ_k w[c][k]` (wrapping), so that every kernel path — signed or unsigned
    /// activations — computes the same accumulators. One pass over the weights, no heap.
    fn check_packed(&self, wid: u32, bias: u32, bias_u8: u32, at: Location) -> Result<(), LoadError> {
        let r = self.rec(wid);
        let (groups, n, k) = (r.dims[0] as usize, r.dims[1] as usize, r.dims[2] as usize);
        let w = self.const_i8(wid);
        let (b, bu) = (self.const_i32(bias), self.const_i32(bias_u8));
        let k4 = k.div_ceil(pack::KR);
        let block = k4 * pack::NR * pack::KR;
        let per = pack::packed_len(n, k).unwrap_or(0);
        for g in 0..groups {
            for nb in 0..n.div_ceil(pack::NR) {
                let mut sums = [0i32; pack::NR];
                let base = g * per + nb * block;
                for (i, &v) in w[base..base + block].iter().enumerate() {
                    let lane = (i / pack::KR) % pack::NR;
                    let kk = (i / (pack::NR * pack::KR)) * pack::KR + i % pack::KR;
                    let ch = nb * pack::NR + lane;
                    if ch >= n || kk >= k {
                        if v != 0 {
                            return Err(LoadError::new(K::Invalid, "packed weight padding is not zero", at).with((base + i) as i64, 0));
                        }
                    } else if v == -128 {
                        return Err(
                            LoadError::new(K::Invalid, "weights must lie in -127..=127 (symmetric int8)", at).with((base + i) as i64, 0)
                        );
                    } else {
                        sums[lane] += v as i32;
                    }
                }
                for (lane, &s) in sums.iter().enumerate() {
                    let ch = nb * pack::NR + lane;
                    if ch < n {
                        let c = g * n + ch;
                        if bu[c] != b[c].wrapping_sub(128i32.wrapping_mul(s)) {
                            return Err(LoadError::new(K::Invalid, "bias_u8 inconsistent with bias and weights", at).with(c as i64, 0));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn check_requant(&self, mid: u32, sid: u32, n: usize, at: Location) -> Result<(), LoadError> {
        let (m, s) = (self.rec(mid), self.rec(sid));
        for r in [m, s] {
            let len = Self::numel(r);
            if r.storage != Storage::Constant as u32 || r.dtype != DType::I32 as u32 || (len != 1 && len != n) {
                return Err(LoadError::new(
                    K::Invalid,
                    "requantization multipliers/shifts must be constant i32, per tensor or per channel",
                    at,
                ));
            }
        }
        let (mv, sv) = (self.const_i32(mid), self.const_i32(sid));
        if mv.len() != sv.len() {
            return Err(LoadError::new(K::Invalid, "multiplier and shift counts differ", at));
        }
        for (k, (&mm, &ss)) in mv.iter().zip(sv).enumerate() {
            if !requant::is_valid(mm, ss) {
                return Err(LoadError::new(K::Invalid, "requantization multiplier or shift out of range", at).with(k as i64, mm as i64));
            }
        }
        Ok(())
    }

    /// Every arena tensor is a graph input or produced exactly once, before any use.
    fn validate_dataflow(&self, ins: &[u32], outs: &[u32]) -> Result<(), LoadError> {
        for t in 0..self.tensors.len() as u32 {
            if self.rec(t).storage != Storage::Arena as u32 {
                continue;
            }
            let is_input = ins.contains(&t);
            let (def, _, producers) = self.lifetime_raw(t, ins, outs);
            let used = outs.contains(&t) || self.first_use(t).is_some();
            if producers > 1 || (is_input && producers > 0) || (!is_input && producers == 0 && used) {
                return Err(LoadError::new(
                    K::Invalid,
                    "activation produced more than once, or consumed but never produced",
                    self.tloc(t as usize),
                )
                .with(producers as i64, 1));
            }
            if let (Some(d), Some(u)) = (def, self.first_use(t)) {
                if u <= d {
                    return Err(LoadError::new(
                        K::Invalid,
                        "activation consumed before it is produced (ops not in topological order)",
                        self.tloc(t as usize),
                    ));
                }
            }
        }
        Ok(())
    }

    fn first_use(&self, t: u32) -> Option<i64> {
        self.ops.iter().enumerate().find(|(_, o)| self.op_ins(o).contains(&t)).map(|(i, _)| i as i64)
    }

    fn op_ins(&self, o: &OpRecord) -> &'a [u32] {
        &self.ids[o.inputs_off as usize..(o.inputs_off + o.n_inputs) as usize]
    }
    fn op_outs(&self, o: &OpRecord) -> &'a [u32] {
        &self.ids[o.outputs_off as usize..(o.outputs_off + o.n_outputs) as usize]
    }

    /// (definition step, last-use step, producer count); graph inputs are defined at -1 and graph
    /// outputs live to the end.
    fn lifetime_raw(&self, t: u32, ins: &[u32], outs: &[u32]) -> (Option<i64>, Option<i64>, usize) {
        let mut def = if ins.contains(&t) { Some(-1) } else { None };
        let mut last = None;
        let mut producers = 0;
        for (i, o) in self.ops.iter().enumerate() {
            if self.op_outs(o).contains(&t) {
                producers += 1;
                def.get_or_insert(i as i64);
            }
            if self.op_ins(o).contains(&t) {
                last = Some(i as i64);
            }
        }
        if outs.contains(&t) {
            last = Some(self.ops.len() as i64);
        }
        if last.is_none() {
            last = def; // produced but unused: live only at its definition
        }
        (def, last, producers)
    }

    fn lifetime(&self, t: u32) -> Option<(i64, i64)> {
        let (def, last, _) = self.lifetime_raw(t, self.graph_inputs(), self.graph_outputs());
        Some((def?, last?))
    }

    /// No two tensors live at the same time overlap in the arena; scratch never overlaps a live tensor.
    fn validate_plan(&self) -> Result<(), LoadError> {
        let arena = |r: &TensorRecord| r.storage == Storage::Arena as u32;
        for a in 0..self.tensors.len() {
            let ra = self.rec(a as u32);
            if !arena(ra) {
                continue;
            }
            for b in a + 1..self.tensors.len() {
                let rb = self.rec(b as u32);
                if !arena(rb) || !overlaps(ra.offset, ra.len, rb.offset, rb.len) {
                    continue;
                }
                if let (Some((d1, l1)), Some((d2, l2))) = (self.lifetime(a as u32), self.lifetime(b as u32)) {
                    if d1 <= l2 && d2 <= l1 {
                        return Err(
                            LoadError::new(K::Plan, "two live activations overlap in the arena", self.tloc(a)).with(a as i64, b as i64)
                        );
                    }
                }
            }
        }
        for (i, o) in self.ops.iter().enumerate() {
            if o.scratch_len == 0 {
                continue;
            }
            let end = o.scratch_off.checked_add(o.scratch_len).ok_or(LoadError::new(K::Bounds, "scratch end overflows", self.oloc(i)))?;
            if end > self.graph.arena_size {
                return Err(LoadError::new(K::Plan, "scratch outside the arena", self.oloc(i))
                    .with(end.min(i64::MAX as u64) as i64, self.graph.arena_size as i64));
            }
            for t in 0..self.tensors.len() {
                let r = self.rec(t as u32);
                if !arena(r) || !overlaps(r.offset, r.len, o.scratch_off, o.scratch_len) {
                    continue;
                }
                if let Some((d, l)) = self.lifetime(t as u32) {
                    if d <= i as i64 && i as i64 <= l {
                        return Err(LoadError::new(K::Plan, "scratch overlaps a live activation", self.oloc(i)).with(t as i64, 0));
                    }
                }
            }
        }
        Ok(())
    }

    fn validate_meta(&self) -> Result<(), LoadError> {
        let m = self.meta;
        let base = self.sections[SectionKind::Meta as usize].0;
        let mut pos = 0usize;
        while pos < m.len() {
            let at = Location::Section { kind: SectionKind::Meta, offset: base + pos as u64 };
            let hdr = m.get(pos..pos + 8).ok_or(LoadError::new(K::Bounds, "truncated metadata entry", at))?;
            let kl = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
            let vl = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
            let end = (pos + 8).checked_add(kl).and_then(|v| v.checked_add(vl)).ok_or(LoadError::new(
                K::Bounds,
                "metadata entry overflows",
                at,
            ))?;
            let body = m
                .get(pos + 8..end)
                .ok_or(LoadError::new(K::Bounds, "metadata entry past the section end", at).with(end as i64, m.len() as i64))?;
            if kl == 0 || core::str::from_utf8(body).is_err() || core::str::from_utf8(&body[..kl]).is_err() {
                return Err(LoadError::new(K::Invalid, "metadata key empty or not UTF-8", at));
            }
            pos = end;
        }
        Ok(())
    }

    fn validate_inputs(&self, ins: &[u32]) -> Result<(), LoadError> {
        for (i, r) in self.inputs.iter().enumerate() {
            let at = Location::Input { index: i as u32 };
            if !ins.contains(&r.tensor) || r.reserved != [0; 4] {
                return Err(
                    LoadError::new(K::Invalid, "input record names no graph input, or reserved fields set", at).with(r.tensor as i64, 0)
                );
            }
            match r.kind {
                0 => {}
                1 => {
                    let t = self.rec(r.tensor);
                    let c = r.channels as usize;
                    if !(1..=4).contains(&c)
                        || t.rank != 4
                        || t.dims[3] as usize != c
                        || !(r.pixel_scale.is_finite() && r.pixel_scale > 0.0)
                    {
                        return Err(LoadError::new(
                            K::Invalid,
                            "pixel input needs 1..=4 channels matching an NHWC input, and a positive scale",
                            at,
                        ));
                    }
                    for k in 0..c {
                        if !r.mean[k].is_finite() || !r.std[k].is_finite() || r.std[k] <= 0.0 {
                            return Err(LoadError::new(K::Invalid, "pixel mean/std must be finite, std > 0", at).with(k as i64, 0));
                        }
                    }
                }
                v => return Err(LoadError::new(K::Invalid, "unknown input kind", at).with(v as i64, 1)),
            }
        }
        Ok(())
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
        let p = o.params;
        let x = self.tensor(o.inputs[0]);
        let y = self.tensor(o.outputs[0]);
        let d =
            |t: &TensorView<'_>| temper_kernels::Nhwc::new(t.dims[0] as usize, t.dims[1] as usize, t.dims[2] as usize, t.dims[3] as usize);
        let g = |v: i32| v.max(0) as usize;
        temper_kernels::Conv2d {
            input: d(&x),
            output: d(&y),
            kh: g(p[0]),
            kw: g(p[1]),
            sh: g(p[2]),
            sw: g(p[3]),
            dh: g(p[4]),
            dw: g(p[5]),
            pad_top: g(p[6]),
            pad_left: g(p[7]),
            groups: if o.code == OpCode::MaxPool { 1 } else { g(p[10]).max(1) },
        }
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

/// Whether byte ranges `[a, a + al)` and `[b, b + bl)` intersect (lengths already bounded).
fn overlaps(a: u64, al: u64, b: u64, bl: u64) -> bool {
    a < b.saturating_add(bl) && b < a.saturating_add(al)
}

fn nhwc(r: &TensorRecord, at: Location) -> Result<(), LoadError> {
    if r.rank != 4 {
        return Err(LoadError::new(K::Invalid, "expected a 4-D NHWC activation", at).with(r.rank as i64, 4));
    }
    Ok(())
}

fn dims4(r: &TensorRecord) -> (usize, usize, usize, usize) {
    (r.dims[0] as usize, r.dims[1] as usize, r.dims[2] as usize, r.dims[3] as usize)
}

/// Dims right-aligned into 4 (leading 1s), as numpy broadcasting does.
pub(crate) fn pad4(r: &TensorRecord) -> [u32; 4] {
    let rank = r.rank as usize;
    let mut d = [1u32; 4];
    for k in 0..rank.min(4) {
        d[4 - rank.min(4) + k] = r.dims[k];
    }
    d
}

/// Floor-mode output size of a window, `None` when the window does not fit.
fn conv_out(i: usize, k: usize, s: usize, d: usize, pad: usize) -> Option<usize> {
    let eff = d.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
    let span = i.checked_add(pad)?.checked_sub(eff)?;
    Some(span / s + 1)
}
