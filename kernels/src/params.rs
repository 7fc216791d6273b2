//! Parameter structs shared by every kernel implementation.

/// A 4-D NHWC shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Nhwc {
    /// Batch.
    pub n: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Channels.
    pub c: usize,
}

impl Nhwc {
    /// Create a shape.
    pub const fn new(n: usize, h: usize, w: usize, c: usize) -> Self {
        Nhwc { n, h, w, c }
    }
    /// Number of elements (callers validate that this does not overflow).
    pub const fn len(&self) -> usize {
        self.n * self.h * self.w * self.c
    }
    /// True when any dimension is zero.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Output quantization of a kernel: per-channel (or per-tensor, length 1) multiplier and shift,
/// output zero point, and the clamp range that also implements fused ReLU/ReLU6/clip.
#[derive(Clone, Copy, Debug)]
pub struct OutQuant<'a> {
    /// Q31 multipliers, each 0 or in `[2^30, 2^31)`; length 1 (per tensor) or one per channel.
    pub mult: &'a [i32],
    /// Right shifts in `[1, 62]`, same length as `mult`.
    pub shift: &'a [i32],
    /// Output zero point in `[-128, 127]`.
    pub zero_point: i32,
    /// Lower clamp (quantized), `-128..=max`.
    pub min: i32,
    /// Upper clamp (quantized), `min..=127`.
    pub max: i32,
}

impl OutQuant<'_> {
    /// Requantize accumulator `acc` of channel `ch` to int8.
    #[inline(always)]
    pub fn apply(&self, acc: i32, ch: usize) -> i8 {
        let i = if self.mult.len() == 1 { 0 } else { ch };
        // i64: a saturated requantization plus a zero point must not overflow.
        let v = crate::requant::requantize(acc, self.mult[i], self.shift[i]) as i64 + self.zero_point as i64;
        v.clamp(self.min as i64, self.max as i64) as i8
    }
}

/// Quantized GEMM: `C[m, n] = requant(Σ_k A[m, k] · B[n, k] + bias[n])`.
///
/// `A` is row-major int8 with row stride `lda ≥ k`; `B` is packed by [`crate::pack`]
/// (`pack::packed_len(n, k)` bytes). `bias` already contains `-za · Σ_k B[n, k]` (the input zero
/// point folded in at conversion), and `bias_u8` is `bias - 128 · Σ_k B[n, k]`, used by paths
/// that feed activations as unsigned bytes (`a ^ 0x80`, x86 VNNI).
#[derive(Debug)]
pub struct Gemm<'a> {
    /// Rows of A and C.
    pub m: usize,
    /// Output channels.
    pub n: usize,
    /// Reduction length.
    pub k: usize,
    /// Activations.
    pub a: &'a [i8],
    /// Row stride of A.
    pub lda: usize,
    /// Packed weights.
    pub b: &'a [i8],
    /// Bias with the input zero point folded in (signed-activation paths).
    pub bias: &'a [i32],
    /// Bias for unsigned-activation paths.
    pub bias_u8: &'a [i32],
    /// Output quantization.
    pub q: OutQuant<'a>,
}

/// Geometry of a 2-D convolution or pooling window over NHWC tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Conv2d {
    /// Input shape.
    pub input: Nhwc,
    /// Output shape.
    pub output: Nhwc,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Vertical stride.
    pub sh: usize,
    /// Horizontal stride.
    pub sw: usize,
    /// Vertical dilation.
    pub dh: usize,
    /// Horizontal dilation.
    pub dw: usize,
    /// Padding at the top.
    pub pad_top: usize,
    /// Padding at the left.
    pub pad_left: usize,
    /// Group count (1 = dense convolution).
    pub groups: usize,
}

impl Conv2d {
    /// Input channels per group.
    pub const fn cin_per_group(&self) -> usize {
        self.input.c / self.groups
    }
    /// Output channels per group.
    pub const fn cout_per_group(&self) -> usize {
        self.output.c / self.groups
    }
    /// Reduction length of one output value: `kh · kw · cin_per_group`.
    pub const fn k(&self) -> usize {
        self.kh * self.kw * self.cin_per_group()
    }
    /// Input row for output row `oy` and kernel row `ky` (may be out of range: padding).
    #[inline(always)]
    pub fn in_y(&self, oy: usize, ky: usize) -> isize {
        (oy * self.sh + ky * self.dh) as isize - self.pad_top as isize
    }
    /// Input column for output column `ox` and kernel column `kx`.
    #[inline(always)]
    pub fn in_x(&self, ox: usize, kx: usize) -> isize {
        (ox * self.sw + kx * self.dw) as isize - self.pad_left as isize
    }
}

/// Quantization of one int8 tensor: `real = scale · (q - zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QParams {
    /// Scale (> 0, finite).
    pub scale: f32,
    /// Zero point in `[-128, 127]`.
    pub zero_point: i32,
}
