//! Building `.tmf` files from an in-memory quantized graph (feature `writer`).
//!
//! [`Builder`] collects tensors and ops, plans the arena (greedy by size with lifetime overlap,
//! as TensorFlow Lite Micro's planner), lays out the sections, computes the checksums, and
//! validates the result with [`Model::from_bytes`] before handing it out. The typed helpers
//! ([`Builder::conv2d`], [`Builder::fully_connected`], …) own the integer arithmetic that goes
//! into the file: zero-point folding into biases, the unsigned-activation bias, requantization
//! multipliers, clamps.

use crate::format::*;
use crate::model::Model;
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

fn err<T>(msg: impl Into<String>) -> Result<T, BuildError> {
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

/// Geometry of a convolution, pooling or transposed convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Kernel `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Stride `[sh, sw]`.
    pub stride: [usize; 2],
    /// Dilation `[dh, dw]`.
    pub dilation: [usize; 2],
    /// Padding `[top, left, bottom, right]`.
    pub pads: [usize; 4],
}

impl Window {
    /// A square window with stride and symmetric padding, no dilation.
    pub fn square(k: usize, stride: usize, pad: usize) -> Window {
        Window { kernel: [k, k], stride: [stride, stride], dilation: [1, 1], pads: [pad; 4] }
    }
    /// Output size (floor mode) for input `[h, w]`, `None` if the window does not fit.
    pub fn out_size(&self, h: usize, w: usize) -> Option<[usize; 2]> {
        let o = |i: usize, k: usize, s: usize, d: usize, p: usize| -> Option<usize> {
            let eff = d * (k - 1) + 1;
            Some((i + p).checked_sub(eff)? / s + 1)
        };
        Some([
            o(h, self.kernel[0], self.stride[0], self.dilation[0], self.pads[0] + self.pads[2])?,
            o(w, self.kernel[1], self.stride[1], self.dilation[1], self.pads[1] + self.pads[3])?,
        ])
    }
    fn params(&self) -> [i32; 10] {
        [
            self.kernel[0] as i32,
            self.kernel[1] as i32,
            self.stride[0] as i32,
            self.stride[1] as i32,
            self.dilation[0] as i32,
            self.dilation[1] as i32,
            self.pads[0] as i32,
            self.pads[1] as i32,
            self.pads[2] as i32,
            self.pads[3] as i32,
        ]
    }
}

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

    /// Add a raw op (no checks beyond those of the final validation).
    pub fn raw_op(&mut self, code: OpCode, name: &str, inputs: &[u32], output: u32, params: &[i32], scratch_len: usize) {
        let mut p = [0i32; OP_PARAMS];
        p[..params.len()].copy_from_slice(params);
        self.ops.push(ODef { code, name: name.to_string(), inputs: inputs.to_vec(), output, params: p, scratch_len });
    }

    fn requant_vecs(&mut self, name: &str, in_scale: f32, w_scales: &[f32], out_scale: f32) -> Result<(u32, u32), BuildError> {
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

    /// Add a convolution (dense, grouped or depthwise — depthwise when `groups == C == O`).
    /// Output `y` must already exist with the right shape. Returns nothing; errors name the op.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d(
        &mut self,
        name: &str,
        x: u32,
        y: u32,
        win: Window,
        groups: usize,
        w: QWeights<'_>,
        clamp: (i32, i32),
    ) -> Result<(), BuildError> {
        let (xd, yd) = (self.dims(x).to_vec(), self.dims(y).to_vec());
        if xd.len() != 4 || yd.len() != 4 {
            return err(alloc::format!("{name}: conv needs NHWC activations"));
        }
        let (c, o) = (xd[3], yd[3]);
        if groups == 0 || c % groups != 0 || o % groups != 0 {
            return err(alloc::format!("{name}: channels {c}/{o} not divisible by groups {groups}"));
        }
        let (xq, yq) = (self.qparams(x), self.qparams(y));
        let (kh, kw) = (win.kernel[0], win.kernel[1]);
        let cig = c / groups;
        let k = kh * kw * cig;
        if w.data.len() != o * k || w.scales.len() != o || w.bias.len() != o {
            return err(alloc::format!(
                "{name}: weights {} / scales {} / bias {} do not match O={o}, K={k}",
                w.data.len(),
                w.scales.len(),
                w.bias.len()
            ));
        }
        let wsum: Vec<i32> = (0..o).map(|oc| w.data[oc * k..(oc + 1) * k].iter().map(|&v| v as i32).sum()).collect();
        let bias: Vec<i32> = (0..o).map(|oc| w.bias[oc].wrapping_sub(xq.zero_point.wrapping_mul(wsum[oc]))).collect();
        let mut p = [0i32; 13];
        p[..10].copy_from_slice(&win.params());
        p[10] = groups as i32;
        p[11] = clamp.0;
        p[12] = clamp.1;
        let (mult, shift) = self.requant_vecs(name, xq.scale, w.scales, yq.scale)?;
        let bias_id = self.const_i32(&alloc::format!("{name}.bias"), &[o], &bias);
        if groups == c && groups == o && groups > 1 {
            // Depthwise: weights [O][KH][KW][1] → [KH][KW][C].
            let mut dw = vec![0i8; kh * kw * c];
            for ch in 0..c {
                for t in 0..kh * kw {
                    dw[t * c + ch] = w.data[ch * kh * kw + t];
                }
            }
            let wid = self.const_i8(&alloc::format!("{name}.weights"), &[kh, kw, c], Layout::Plain, &dw, w.scales, 2);
            self.raw_op(OpCode::Depthwise2d, name, &[x, wid, bias_id, mult, shift], y, &p, 0);
        } else {
            let cog = o / groups;
            let per = pack::packed_len(cog, k).ok_or_else(|| BuildError(alloc::format!("{name}: weights too large")))?;
            let mut packed = vec![0i8; per * groups];
            for g in 0..groups {
                pack::pack_into(&w.data[g * cog * k..(g + 1) * cog * k], cog, k, &mut packed[g * per..(g + 1) * per]);
            }
            let wid = self.const_i8(&alloc::format!("{name}.weights"), &[groups, cog, k], Layout::Packed, &packed, w.scales, 1);
            let bias_u8: Vec<i32> = (0..o).map(|oc| bias[oc].wrapping_sub(128i32.wrapping_mul(wsum[oc]))).collect();
            let bu = self.const_i32(&alloc::format!("{name}.bias_u8"), &[o], &bias_u8);
            let geom = temper_kernels::Conv2d {
                input: temper_kernels::Nhwc::new(xd[0], xd[1], xd[2], xd[3]),
                output: temper_kernels::Nhwc::new(yd[0], yd[1], yd[2], yd[3]),
                kh,
                kw,
                sh: win.stride[0],
                sw: win.stride[1],
                dh: win.dilation[0],
                dw: win.dilation[1],
                pad_top: win.pads[0],
                pad_left: win.pads[1],
                groups,
            };
            let scratch = temper_kernels::dispatch::conv_scratch_len(&geom);
            self.raw_op(OpCode::Conv2d, name, &[x, wid, bias_id, bu, mult, shift], y, &p, scratch);
        }
        Ok(())
    }

    /// Add a fully connected layer: `x [.., K]`, weights `[N][K]`, output `y [.., N]`.
    pub fn fully_connected(&mut self, name: &str, x: u32, y: u32, w: QWeights<'_>, clamp: (i32, i32)) -> Result<(), BuildError> {
        let k = *self.dims(x).last().unwrap_or(&0);
        let n = *self.dims(y).last().unwrap_or(&0);
        if k == 0 || w.data.len() != n * k || w.scales.len() != n || w.bias.len() != n {
            return err(alloc::format!(
                "{name}: weights {} / scales {} / bias {} do not match N={n}, K={k}",
                w.data.len(),
                w.scales.len(),
                w.bias.len()
            ));
        }
        let (xq, yq) = (self.qparams(x), self.qparams(y));
        let wsum: Vec<i32> = (0..n).map(|j| w.data[j * k..(j + 1) * k].iter().map(|&v| v as i32).sum()).collect();
        let bias: Vec<i32> = (0..n).map(|j| w.bias[j].wrapping_sub(xq.zero_point.wrapping_mul(wsum[j]))).collect();
        let bias_u8: Vec<i32> = (0..n).map(|j| bias[j].wrapping_sub(128i32.wrapping_mul(wsum[j]))).collect();
        let per = pack::packed_len(n, k).ok_or_else(|| BuildError(alloc::format!("{name}: weights too large")))?;
        let mut packed = vec![0i8; per];
        pack::pack_into(w.data, n, k, &mut packed);
        let wid = self.const_i8(&alloc::format!("{name}.weights"), &[1, n, k], Layout::Packed, &packed, w.scales, 1);
        let b = self.const_i32(&alloc::format!("{name}.bias"), &[n], &bias);
        let bu = self.const_i32(&alloc::format!("{name}.bias_u8"), &[n], &bias_u8);
        let (mult, shift) = self.requant_vecs(name, xq.scale, w.scales, yq.scale)?;
        self.raw_op(OpCode::FullyConnected, name, &[x, wid, b, bu, mult, shift], y, &[clamp.0, clamp.1], 0);
        Ok(())
    }

    /// Add max pooling (same quantization in and out).
    pub fn max_pool(&mut self, name: &str, x: u32, y: u32, win: Window, clamp: (i32, i32)) {
        let mut p = [0i32; 12];
        p[..10].copy_from_slice(&win.params());
        p[10] = clamp.0;
        p[11] = clamp.1;
        self.raw_op(OpCode::MaxPool, name, &[x], y, &p, 0);
    }

    /// Add average pooling (global pooling: a window of the whole input).
    pub fn avg_pool(
        &mut self,
        name: &str,
        x: u32,
        y: u32,
        win: Window,
        count_include_pad: bool,
        clamp: (i32, i32),
    ) -> Result<(), BuildError> {
        let (xq, yq) = (self.qparams(x), self.qparams(y));
        let (m, s) = quantize_multiplier(xq.scale as f64 / yq.scale as f64)
            .ok_or_else(|| BuildError(alloc::format!("{name}: scale ratio cannot be encoded")))?;
        let p = [
            win.kernel[0] as i32,
            win.kernel[1] as i32,
            win.stride[0] as i32,
            win.stride[1] as i32,
            win.pads[0] as i32,
            win.pads[1] as i32,
            win.pads[2] as i32,
            win.pads[3] as i32,
            count_include_pad as i32,
            m,
            s,
            clamp.0,
            clamp.1,
        ];
        self.raw_op(OpCode::AvgPool, name, &[x], y, &p, 0);
        Ok(())
    }

    /// Add an elementwise add `y = clamp(a + b)` with broadcasting.
    pub fn add(&mut self, name: &str, a: u32, b: u32, y: u32, clamp: (i32, i32)) -> Result<(), BuildError> {
        let (qa, qb, qy) = (self.qparams(a), self.qparams(b), self.qparams(y));
        let ra = qa.scale as f64 / qy.scale as f64;
        let rb = qb.scale as f64 / qy.scale as f64;
        let big = ra.max(rb);
        let (_, s) =
            quantize_multiplier(big).ok_or_else(|| BuildError(alloc::format!("{name}: add scale ratio {big} cannot be encoded")))?;
        let enc = |r: f64| temper_kernels::requant::round_half_away(r * (1u64 << s) as f64) as i64;
        let (ma, mb) = (enc(ra), enc(rb));
        if ma > i32::MAX as i64 || mb > i32::MAX as i64 {
            return err(alloc::format!("{name}: add multipliers overflow"));
        }
        self.raw_op(OpCode::Add, name, &[a, b], y, &[ma as i32, mb as i32, s, clamp.0, clamp.1], 0);
        Ok(())
    }

    /// Add an elementwise multiply with broadcasting.
    pub fn mul(&mut self, name: &str, a: u32, b: u32, y: u32, clamp: (i32, i32)) -> Result<(), BuildError> {
        let (qa, qb, qy) = (self.qparams(a), self.qparams(b), self.qparams(y));
        let r = qa.scale as f64 * qb.scale as f64 / qy.scale as f64;
        let (m, s) = quantize_multiplier(r).ok_or_else(|| BuildError(alloc::format!("{name}: mul scale {r} cannot be encoded")))?;
        self.raw_op(OpCode::Mul, name, &[a, b], y, &[m, s, clamp.0, clamp.1], 0);
        Ok(())
    }

    /// Add a 256-entry lookup table op (index = q + 128).
    pub fn lut(&mut self, name: &str, x: u32, y: u32, table: &[i8; 256]) {
        let t = self.const_i8(&alloc::format!("{name}.table"), &[256], Layout::Plain, table, &[1.0], 0);
        self.raw_op(OpCode::Lut, name, &[x, t], y, &[], 0);
    }

    /// Add a reshape (element order unchanged).
    pub fn reshape(&mut self, name: &str, x: u32, y: u32) {
        self.raw_op(OpCode::Reshape, name, &[x], y, &[], 0);
    }

    /// Add a 4-D transpose: `y.dims[d] = x.dims[perm[d]]`.
    pub fn transpose(&mut self, name: &str, x: u32, y: u32, perm: [usize; 4]) {
        self.raw_op(OpCode::Transpose, name, &[x], y, &perm.map(|v| v as i32), 0);
    }

    /// Add concatenation along NHWC `axis`, rescaling inputs whose quantization differs.
    pub fn concat(&mut self, name: &str, xs: &[u32], y: u32, axis: usize) -> Result<(), BuildError> {
        let qy = self.qparams(y);
        let mut table = Vec::new();
        for &x in xs {
            let q = self.qparams(x);
            if q == qy {
                table.extend([0, 0]);
            } else {
                let (m, s) = quantize_multiplier(q.scale as f64 / qy.scale as f64)
                    .ok_or_else(|| BuildError(alloc::format!("{name}: rescale cannot be encoded")))?;
                table.extend([m, s]);
            }
        }
        let t = self.const_i32(&alloc::format!("{name}.rescale"), &[xs.len(), 2], &table);
        let mut ins = xs.to_vec();
        ins.push(t);
        self.raw_op(OpCode::Concat, name, &ins, y, &[axis as i32], 0);
        Ok(())
    }

    /// Add constant padding (with the input's zero point): `begin`/`end` per NHWC axis.
    pub fn pad(&mut self, name: &str, x: u32, y: u32, begin: [usize; 4], end: [usize; 4]) {
        let mut p = [0i32; 8];
        for d in 0..4 {
            p[d] = begin[d] as i32;
            p[4 + d] = end[d] as i32;
        }
        self.raw_op(OpCode::Pad, name, &[x], y, &p, 0);
    }

    /// Add a resize: mode 0 nearest, 1 bilinear half-pixel, 2 bilinear align-corners.
    pub fn resize(&mut self, name: &str, x: u32, y: u32, mode: i32) {
        self.raw_op(OpCode::Resize, name, &[x], y, &[mode], 0);
    }

    /// Add a transposed convolution; weights `[O][KH][KW][C/groups]`, raw bias.
    #[allow(clippy::too_many_arguments)]
    pub fn conv_transpose2d(
        &mut self,
        name: &str,
        x: u32,
        y: u32,
        win: Window,
        groups: usize,
        w: QWeights<'_>,
        clamp: (i32, i32),
    ) -> Result<(), BuildError> {
        let c = self.dims(x)[3];
        let o = self.dims(y)[3];
        let (kh, kw) = (win.kernel[0], win.kernel[1]);
        if groups == 0
            || !c.is_multiple_of(groups)
            || w.data.len() != o * kh * kw * (c / groups)
            || w.scales.len() != o
            || w.bias.len() != o
        {
            return err(alloc::format!("{name}: transposed-conv weights do not match"));
        }
        let (xq, yq) = (self.qparams(x), self.qparams(y));
        let wid = self.const_i8(&alloc::format!("{name}.weights"), &[o, kh, kw, c / groups], Layout::Plain, w.data, w.scales, 0);
        let b = self.const_i32(&alloc::format!("{name}.bias"), &[o], w.bias);
        let (mult, shift) = self.requant_vecs(name, xq.scale, w.scales, yq.scale)?;
        let mut p = [0i32; 13];
        p[..10].copy_from_slice(&win.params());
        p[10] = groups as i32;
        p[11] = clamp.0;
        p[12] = clamp.1;
        self.raw_op(OpCode::ConvTranspose2d, name, &[x, wid, b, mult, shift], y, &p, 0);
        Ok(())
    }

    /// Add a softmax over the last axis; `y` must have scale 1/256 and zero point −128.
    pub fn softmax(&mut self, name: &str, x: u32, y: u32, table: &[u32; 256]) {
        let t: Vec<i32> = table.iter().map(|&v| v as i32).collect();
        let tid = self.const_i32(&alloc::format!("{name}.exp"), &[256], &t);
        self.raw_op(OpCode::Softmax, name, &[x, tid], y, &[], 0);
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
