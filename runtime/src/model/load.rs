//! The loader's checks: [`Model::from_bytes_with`] views the records in place, then every
//! offset, length, count, id, tensor, op (through each op's `validate`, [`crate::ops`]), the
//! dataflow, the memory plan, the metadata and the input records are checked once, here.

use super::{LoadOptions, Model};
use crate::error::{LoadError, LoadErrorKind as K, Location};
use crate::format::*;
use crate::ops::Check;
use bytemuck::try_from_bytes;
use temper_kernels::pack;

fn section_min_align(k: SectionKind) -> u64 {
    match k {
        SectionKind::Graph | SectionKind::Tensors | SectionKind::Ops => 8,
        SectionKind::Ids | SectionKind::Inputs => 4,
        SectionKind::Data => DATA_ALIGN as u64,
        SectionKind::Strings | SectionKind::Meta => 1,
    }
}

impl<'a> Model<'a> {
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

    fn validate_op(&self, i: usize) -> Result<(), LoadError> {
        let o = &self.ops[i];
        let at = self.oloc(i);
        let code = OpCode::from_code(o.code)
            .ok_or(LoadError::new(K::Invalid, "unknown op code", at).with(o.code as i64, OpCode::ALL.len() as i64))?;
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
        let def = code.def();
        (def.validate)(&Check { m: self, at, ins, y, p: &o.params })?;
        let dims = |r: &'a TensorRecord| &r.dims[..r.rank as usize];
        let x_dims = ins.first().map_or(&[][..], |&id| dims(self.rec(id)));
        let need = (def.scratch)(&o.params, x_dims, dims(y));
        if (o.scratch_len as usize) < need || o.scratch_len > self.graph.arena_size {
            return Err(LoadError::new(K::Plan, "op scratch smaller than the kernels need, or larger than the arena", at)
                .with(o.scratch_len.min(i64::MAX as u64) as i64, need as i64));
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
}

/// Whether byte ranges `[a, a + al)` and `[b, b + bl)` intersect (lengths already bounded).
fn overlaps(a: u64, al: u64, b: u64, bl: u64) -> bool {
    a < b.saturating_add(bl) && b < a.saturating_add(al)
}
