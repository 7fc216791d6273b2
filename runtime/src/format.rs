//! On-disk records of the temper model file (`.tmf`), version 1. See `docs/FORMAT.md`.
//!
//! Every record is `#[repr(C)]`, little-endian, made only of `u32`/`i32`/`u64`/`f32` fields laid
//! out without implicit padding, so it can be viewed in place with `bytemuck`. Codes are plain
//! integers here and are validated into Rust enums by the loader.

use bytemuck::{Pod, Zeroable};

/// File magic.
pub const MAGIC: [u8; 8] = *b"TEMPERMF";
/// Major version this reader understands.
pub const VERSION_MAJOR: u16 = 1;
/// Minor version this writer emits.
pub const VERSION_MINOR: u16 = 0;
/// Header flag: `payload_crc` covers every byte after the header and section table.
pub const FLAG_PAYLOAD_CRC: u32 = 1;
/// Flags this reader understands.
pub const KNOWN_FLAGS: u32 = FLAG_PAYLOAD_CRC;
/// Alignment of tensor data in the file and of the whole arena.
pub const DATA_ALIGN: usize = 64;
/// Maximum tensor rank.
pub const MAX_RANK: usize = 8;
/// Marker for "no tensor" in id fields.
pub const NONE: u32 = u32::MAX;
/// Number of `i32` parameters of an op record.
pub const OP_PARAMS: usize = 16;

/// File header, at offset 0 (72 bytes). The section table follows it directly.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// Major version; a reader rejects any other major.
    pub major: u16,
    /// Minor version; newer minors load unless they set unknown flags.
    pub minor: u16,
    /// Bytes of header plus section table.
    pub header_len: u32,
    /// Total file length.
    pub file_len: u64,
    /// Feature flags ([`KNOWN_FLAGS`]).
    pub flags: u32,
    /// Number of [`SectionEntry`] records after the header.
    pub section_count: u32,
    /// CRC-32 (IEEE) of header and section table, computed with this field set to 0.
    pub header_crc: u32,
    /// CRC-32 of bytes `header_len..file_len` (when [`FLAG_PAYLOAD_CRC`] is set).
    pub payload_crc: u32,
    /// Must be zero.
    pub reserved: [u32; 8],
}

/// Size of [`Header`].
pub const HEADER_SIZE: usize = core::mem::size_of::<Header>();

/// One entry of the section table (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct SectionEntry {
    /// [`SectionKind`] code.
    pub kind: u32,
    /// Required alignment of `offset` (power of two).
    pub align: u32,
    /// Byte offset from the start of the file.
    pub offset: u64,
    /// Byte length.
    pub len: u64,
}

/// Section kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum SectionKind {
    /// One [`GraphRecord`].
    Graph = 1,
    /// [`TensorRecord`] array.
    Tensors = 2,
    /// [`OpRecord`] array.
    Ops = 3,
    /// `u32` id lists referenced by ops and the graph.
    Ids = 4,
    /// UTF-8 names.
    Strings = 5,
    /// Constant tensor data (each 64-byte aligned).
    Data = 6,
    /// Metadata key/value pairs.
    Meta = 7,
    /// [`InputRecord`] array: how raw inputs map to graph inputs.
    Inputs = 8,
}

impl SectionKind {
    /// All kinds, each required exactly once.
    pub const ALL: [SectionKind; 8] = [
        SectionKind::Graph,
        SectionKind::Tensors,
        SectionKind::Ops,
        SectionKind::Ids,
        SectionKind::Strings,
        SectionKind::Data,
        SectionKind::Meta,
        SectionKind::Inputs,
    ];
    /// Decode a code.
    pub fn from_code(c: u32) -> Option<SectionKind> {
        SectionKind::ALL.into_iter().find(|k| *k as u32 == c)
    }
    /// Name for messages.
    pub const fn name(self) -> &'static str {
        match self {
            SectionKind::Graph => "graph",
            SectionKind::Tensors => "tensors",
            SectionKind::Ops => "ops",
            SectionKind::Ids => "ids",
            SectionKind::Strings => "strings",
            SectionKind::Data => "data",
            SectionKind::Meta => "meta",
            SectionKind::Inputs => "inputs",
        }
    }
}

/// Graph-level record (64 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct GraphRecord {
    /// Bytes of arena the plan needs.
    pub arena_size: u64,
    /// Offset (in the strings section) of the model name.
    pub name_off: u32,
    /// Length of the model name.
    pub name_len: u32,
    /// Index into the ids section of the graph input tensor ids.
    pub inputs_off: u32,
    /// Number of graph inputs.
    pub n_inputs: u32,
    /// Index into the ids section of the graph output tensor ids.
    pub outputs_off: u32,
    /// Number of graph outputs.
    pub n_outputs: u32,
    /// Must be zero.
    pub reserved: [u32; 8],
}

/// Element types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum DType {
    /// Signed 8-bit (activations, weights).
    I8 = 1,
    /// Signed 32-bit (biases, multipliers, shifts, tables).
    I32 = 2,
    /// 32-bit float (per-channel scales).
    F32 = 3,
    /// Unsigned 8-bit (raw camera input).
    U8 = 4,
}

impl DType {
    /// Decode a code.
    pub fn from_code(c: u32) -> Option<DType> {
        match c {
            1 => Some(DType::I8),
            2 => Some(DType::I32),
            3 => Some(DType::F32),
            4 => Some(DType::U8),
            _ => None,
        }
    }
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::I8 | DType::U8 => 1,
            DType::I32 | DType::F32 => 4,
        }
    }
    /// Name for messages.
    pub const fn name(self) -> &'static str {
        match self {
            DType::I8 => "i8",
            DType::I32 => "i32",
            DType::F32 => "f32",
            DType::U8 => "u8",
        }
    }
}

/// Where a tensor lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Storage {
    /// In the arena at `offset` (activations).
    Arena = 0,
    /// In the data section at `offset` (constants).
    Constant = 1,
}

/// Layout of constant weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Layout {
    /// Row-major in the order of `dims`.
    Plain = 0,
    /// GEMM-packed (`temper_kernels::pack`), dims `[groups, n, k]`.
    Packed = 1,
}

/// One tensor (88 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct TensorRecord {
    /// Name offset in the strings section.
    pub name_off: u32,
    /// Name length.
    pub name_len: u32,
    /// [`DType`] code.
    pub dtype: u32,
    /// Rank (1..=8).
    pub rank: u32,
    /// Dimensions (each ≥ 1 up to `rank`, 0 after). 4-D activations are NHWC.
    pub dims: [u32; MAX_RANK],
    /// [`Storage`] code.
    pub storage: u32,
    /// [`Layout`] code.
    pub layout: u32,
    /// Arena offset (activations) or file offset (constants).
    pub offset: u64,
    /// Byte length (must equal the element count times the element size, or the packed size).
    pub len: u64,
    /// Quantization scale (int8 tensors; > 0 and finite), 0 for unquantized tensors.
    pub scale: f32,
    /// Quantization zero point.
    pub zero_point: i32,
    /// Tensor id of per-channel f32 scales, or [`NONE`].
    pub channel_scales: u32,
    /// Axis the per-channel scales run along.
    pub channel_axis: u32,
}

pub use crate::ops::OpCode;

/// One operation (112 bytes). Inputs and outputs are tensor ids in the ids section; the meaning
/// of `params` is given per op code in `docs/FORMAT.md` and by each op's params type in
/// [`crate::ops`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct OpRecord {
    /// [`OpCode`].
    pub code: u32,
    /// Name offset in the strings section.
    pub name_off: u32,
    /// Name length.
    pub name_len: u32,
    /// Index of the first input id in the ids section.
    pub inputs_off: u32,
    /// Number of inputs.
    pub n_inputs: u32,
    /// Index of the first output id in the ids section.
    pub outputs_off: u32,
    /// Number of outputs.
    pub n_outputs: u32,
    /// Must be zero.
    pub reserved: u32,
    /// Arena offset of this op's scratch.
    pub scratch_off: u64,
    /// Scratch bytes.
    pub scratch_len: u64,
    /// Typed parameters.
    pub params: [i32; OP_PARAMS],
}

/// Kind of raw input accepted for a graph input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum InputKind {
    /// Only quantized (i8) or float input.
    Tensor = 0,
    /// Raw u8 pixels (NHWC) with `(pixel · pixel_scale − mean[c]) / std[c]` folded into the
    /// input quantization.
    Pixels = 1,
}

/// How raw data maps to one graph input (64 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct InputRecord {
    /// Graph input tensor id.
    pub tensor: u32,
    /// [`InputKind`] code.
    pub kind: u32,
    /// Channels (1..=4) for pixel input.
    pub channels: u32,
    /// Pixel scale (usually 1/255).
    pub pixel_scale: f32,
    /// Per-channel mean.
    pub mean: [f32; 4],
    /// Per-channel standard deviation (> 0).
    pub std: [f32; 4],
    /// Must be zero.
    pub reserved: [u32; 4],
}

const _: () = {
    assert!(core::mem::size_of::<Header>() == 72);
    assert!(core::mem::size_of::<SectionEntry>() == 24);
    assert!(core::mem::size_of::<GraphRecord>() == 64);
    assert!(core::mem::size_of::<TensorRecord>() == 88);
    assert!(core::mem::size_of::<OpRecord>() == 112);
    assert!(core::mem::size_of::<InputRecord>() == 64);
};

/// CRC-32 (IEEE 802.3, reflected, as zlib) of `data`, continuing from `crc` (start with 0).
pub fn crc32(crc: u32, data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !crc;
    for &b in data {
        c = TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(0, b"123456789"), 0xCBF4_3926);
        let a = crc32(0, b"12345");
        assert_eq!(crc32(a, b"6789"), 0xCBF4_3926);
    }
}
