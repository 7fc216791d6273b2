//! Reader for the IDX format used by MNIST and Fashion-MNIST.
//!
//! An IDX file is `00 00 TT ND` followed by `ND` big-endian `u32` dimensions
//! and then the payload in C order, big-endian. `TT` is the element type:
//!
//! | code | type | in [`IdxData`] |
//! |------|------|----------------|
//! | 0x08 | u8   | `U8`  |
//! | 0x09 | i8   | `I8`  |
//! | 0x0B | i16  | `I16` |
//! | 0x0C | i32  | `I32` |
//! | 0x0D | f32  | `F32` |
//! | 0x0E | f64  | `F64` |
//!
//! Files may be gzip-compressed; this is detected from the gzip magic
//! `1f 8b`, never from the file extension.
//!
//! [`read_idx`] / [`read_idx_bytes`] return the common `u8` case as an
//! [`IdxArray`] and reject every other element type with
//! [`ErrorKind::UnsupportedDtype`]; [`read_idx_any`] / [`read_idx_any_bytes`]
//! accept every type and return an [`IdxTensor`].
//!
//! The product of the dimensions is computed with overflow checks and must
//! match the payload length exactly (no missing and no trailing bytes).
//! Byte offsets in errors for gzip'd input refer to the *decompressed* stream
//! (the source name then ends in `(gunzipped)`).

use std::io::Read;
use std::path::Path;

use crate::error::{DataError, ErrorKind};
use crate::fsread::read_input_prefixed;

/// An IDX array of `u8` elements (type code 0x08), the MNIST case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, outermost first (e.g. `[10000, 28, 28]` for images).
    pub dims: Vec<usize>,
    /// Elements in C order; `data.len()` equals the product of `dims`.
    pub data: Vec<u8>,
}

impl IdxArray {
    /// Number of items along the first dimension (0 for a 0-d array).
    pub fn len(&self) -> usize {
        self.dims.first().copied().unwrap_or(0)
    }

    /// True if the first dimension is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of elements per item (product of all dimensions but the first).
    pub fn item_size(&self) -> usize {
        self.dims.iter().skip(1).product()
    }
}

/// Element type of an IDX file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdxDtype {
    /// 0x08, unsigned byte.
    U8,
    /// 0x09, signed byte.
    I8,
    /// 0x0B, big-endian i16.
    I16,
    /// 0x0C, big-endian i32.
    I32,
    /// 0x0D, big-endian f32.
    F32,
    /// 0x0E, big-endian f64.
    F64,
}

impl IdxDtype {
    /// Maps an IDX type code to a dtype.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x08 => IdxDtype::U8,
            0x09 => IdxDtype::I8,
            0x0B => IdxDtype::I16,
            0x0C => IdxDtype::I32,
            0x0D => IdxDtype::F32,
            0x0E => IdxDtype::F64,
            _ => return None,
        })
    }

    /// The IDX type code of this dtype.
    pub fn code(self) -> u8 {
        match self {
            IdxDtype::U8 => 0x08,
            IdxDtype::I8 => 0x09,
            IdxDtype::I16 => 0x0B,
            IdxDtype::I32 => 0x0C,
            IdxDtype::F32 => 0x0D,
            IdxDtype::F64 => 0x0E,
        }
    }

    /// Size in bytes of one element.
    pub fn size(self) -> usize {
        match self {
            IdxDtype::U8 | IdxDtype::I8 => 1,
            IdxDtype::I16 => 2,
            IdxDtype::I32 | IdxDtype::F32 => 4,
            IdxDtype::F64 => 8,
        }
    }
}

/// Decoded IDX payload of any supported element type (converted to host order).
#[derive(Debug, Clone, PartialEq)]
pub enum IdxData {
    /// 0x08.
    U8(Vec<u8>),
    /// 0x09.
    I8(Vec<i8>),
    /// 0x0B.
    I16(Vec<i16>),
    /// 0x0C.
    I32(Vec<i32>),
    /// 0x0D.
    F32(Vec<f32>),
    /// 0x0E (kept as f64; see [`IdxData::to_f32`]).
    F64(Vec<f64>),
}

impl IdxData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            IdxData::U8(v) => v.len(),
            IdxData::I8(v) => v.len(),
            IdxData::I16(v) => v.len(),
            IdxData::I32(v) => v.len(),
            IdxData::F32(v) => v.len(),
            IdxData::F64(v) => v.len(),
        }
    }

    /// True if there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn dtype(&self) -> IdxDtype {
        match self {
            IdxData::U8(_) => IdxDtype::U8,
            IdxData::I8(_) => IdxDtype::I8,
            IdxData::I16(_) => IdxDtype::I16,
            IdxData::I32(_) => IdxDtype::I32,
            IdxData::F32(_) => IdxDtype::F32,
            IdxData::F64(_) => IdxDtype::F64,
        }
    }

    /// Converts every element to `f32` (values are not rescaled; i32 and f64
    /// may lose precision).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            IdxData::U8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            IdxData::I8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            IdxData::I16(v) => v.iter().map(|&x| f32::from(x)).collect(),
            IdxData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            IdxData::F32(v) => v.clone(),
            IdxData::F64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
}

/// An IDX array of any supported element type.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxTensor {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Elements in C order; `data.len()` equals the product of `dims`.
    pub data: IdxData,
}

/// True if `bytes` starts with the gzip magic `1f 8b`.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
}

/// Reads a `u8` IDX file (gzip'd or not).
///
/// Errors name `path`; element types other than `u8` give
/// [`ErrorKind::UnsupportedDtype`] (use [`read_idx_any`] for those).
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    let bytes = read_idx_file(path)?;
    read_idx_bytes(&bytes, &path.display().to_string())
}

/// Parses a `u8` IDX file held in memory (gzip'd or not); `label` names the
/// source in errors.
pub fn read_idx_bytes(bytes: &[u8], label: &str) -> Result<IdxArray, DataError> {
    let t = parse(bytes, label, true)?;
    match t.data {
        IdxData::U8(data) => Ok(IdxArray { dims: t.dims, data }),
        // parse() with u8_only rejects other types before reading the payload.
        other => Err(DataError::at(
            label,
            2,
            ErrorKind::UnsupportedDtype(format!("IDX type 0x{:02x}; expected 0x08 (u8)", other.dtype().code())),
        )),
    }
}

/// Reads an IDX file of any supported element type (gzip'd or not).
pub fn read_idx_any(path: &Path) -> Result<IdxTensor, DataError> {
    let bytes = read_idx_file(path)?;
    read_idx_any_bytes(&bytes, &path.display().to_string())
}

/// Parses an IDX file of any supported element type held in memory.
pub fn read_idx_any_bytes(bytes: &[u8], label: &str) -> Result<IdxTensor, DataError> {
    parse(bytes, label, false)
}

/// Largest decompressed size one deflate byte can produce (deflate's limit is about 1032:1).
const DEFLATE_MAX_RATIO: u64 = 1032;

/// Reads an IDX file checked and bounded (see [`crate::fsread`]): the header (magic and dims)
/// bounds the payload, so a file whose size cannot match it is refused before its payload is
/// read. A gzip'd file may be at most a little larger than the payload it declares would need
/// stored, and may not declare more than deflate can expand it to.
fn read_idx_file(path: &Path) -> Result<Vec<u8>, DataError> {
    let label = path.display().to_string();
    read_input_prefixed(path, 4 + 4 * 255, |head, len| {
        if is_gzip(head) {
            // The decompressed header is not known yet: bound what the compressed file can hold.
            return Ok(len);
        }
        let mut r = head;
        let (header_len, nbytes) = parse_header(&mut r, &label, false)?;
        let total = header_len.saturating_add(nbytes);
        if len < total {
            return Err(DataError::truncated(label.as_str(), header_len, nbytes, len.saturating_sub(header_len)));
        }
        Ok(total)
    })
}

/// Detects gzip and dispatches to the stream parser.
fn parse(bytes: &[u8], label: &str, u8_only: bool) -> Result<IdxTensor, DataError> {
    if is_gzip(bytes) {
        let src = format!("{label} (gunzipped)");
        let mut dec = flate2::read::MultiGzDecoder::new(bytes);
        parse_stream(&mut dec, &src, u8_only, Some(bytes.len() as u64))
    } else {
        let mut r = bytes;
        parse_stream(&mut r, label, u8_only, None)
    }
}

/// Reads up to `buf.len()` bytes; returns the number actually read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8], src: &str, offset: u64) -> Result<usize, DataError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(stream_error(src, offset + n as u64, e)),
        }
    }
    Ok(n)
}

fn stream_error(src: &str, offset: u64, e: std::io::Error) -> DataError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        DataError::format_at(src, offset, format!("gzip stream ends early: {e}"))
    } else {
        DataError::format_at(src, offset, format!("corrupt compressed stream: {e}"))
    }
}

fn read_exact_or_truncated<R: Read>(r: &mut R, buf: &mut [u8], src: &str, offset: u64) -> Result<(), DataError> {
    let n = read_full(r, buf, src, offset)?;
    if n < buf.len() {
        return Err(DataError::truncated(src, offset, buf.len() as u64, n as u64));
    }
    Ok(())
}

/// Reads the magic and dims; returns the header length and the payload size in bytes.
fn parse_header<R: Read>(r: &mut R, src: &str, u8_only: bool) -> Result<(u64, u64), DataError> {
    let (h, _, _, nbytes) = header_fields(r, src, u8_only)?;
    Ok((h, nbytes as u64))
}

fn header_fields<R: Read>(r: &mut R, src: &str, u8_only: bool) -> Result<(u64, IdxDtype, Vec<usize>, usize), DataError> {
    let mut magic = [0u8; 4];
    let n = read_full(r, &mut magic, src, 0)?;
    if n < 4 {
        // Distinguish "not IDX at all" from "IDX cut short".
        if magic[..n.min(2)].iter().any(|&b| b != 0) {
            return Err(bad_magic(src, &magic[..n]));
        }
        return Err(DataError::truncated(src, 0, 4, n as u64));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(bad_magic(src, &magic));
    }
    let dtype = IdxDtype::from_code(magic[2])
        .ok_or_else(|| DataError::at(src, 2, ErrorKind::UnsupportedDtype(format!("unknown IDX type code 0x{:02x}", magic[2]))))?;
    if u8_only && dtype != IdxDtype::U8 {
        return Err(DataError::at(
            src,
            2,
            ErrorKind::UnsupportedDtype(format!(
                "IDX type 0x{:02x} ({dtype:?}); read_idx handles only 0x08 (u8), use read_idx_any",
                magic[2]
            )),
        ));
    }
    let ndims = magic[3] as usize;
    if ndims == 0 {
        return Err(DataError::format_at(src, 3, "IDX header declares 0 dimensions"));
    }
    let mut dim_bytes = vec![0u8; ndims * 4];
    read_exact_or_truncated(r, &mut dim_bytes, src, 4)?;
    let dims: Vec<usize> = dim_bytes.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    let header_len = 4 + 4 * ndims as u64;
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DataError::shape(src, format!("product of dims {dims:?} overflows the address space")))?;
    let nbytes = count
        .checked_mul(dtype.size())
        .ok_or_else(|| DataError::shape(src, format!("payload size of dims {dims:?} x {} bytes overflows", dtype.size())))?;
    Ok((header_len, dtype, dims, nbytes))
}

fn parse_stream<R: Read>(r: &mut R, src: &str, u8_only: bool, compressed_len: Option<u64>) -> Result<IdxTensor, DataError> {
    let (header_len, dtype, dims, nbytes) = header_fields(r, src, u8_only)?;
    // A gzip'd file cannot expand beyond deflate's ratio: never read (or decompress) more.
    let limit = match compressed_len {
        Some(c) => (nbytes as u64).min(c.saturating_mul(DEFLATE_MAX_RATIO).saturating_add(1024)),
        None => nbytes as u64,
    };
    // Read the payload without trusting the header for the allocation size:
    // `take` + `read_to_end` grows only as data actually arrives.
    let mut payload = Vec::new();
    r.take(limit).read_to_end(&mut payload).map_err(|e| stream_error(src, header_len + payload.len() as u64, e))?;
    if payload.len() < nbytes {
        return Err(DataError::at(src, header_len, ErrorKind::Truncated { needed: nbytes as u64, available: payload.len() as u64 }));
    }
    let mut extra = [0u8; 1];
    let k = read_full(r, &mut extra, src, header_len + nbytes as u64)?;
    if k > 0 {
        return Err(DataError::at(
            src,
            header_len + nbytes as u64,
            ErrorKind::ShapeMismatch(format!("trailing data after the {nbytes}-byte payload declared by dims {dims:?}")),
        ));
    }
    let data = match dtype {
        IdxDtype::U8 => IdxData::U8(payload),
        IdxDtype::I8 => IdxData::I8(payload.iter().map(|&b| b as i8).collect()),
        IdxDtype::I16 => IdxData::I16(payload.chunks_exact(2).map(|c| i16::from_be_bytes([c[0], c[1]])).collect()),
        IdxDtype::I32 => IdxData::I32(payload.chunks_exact(4).map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect()),
        IdxDtype::F32 => IdxData::F32(payload.chunks_exact(4).map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect()),
        IdxDtype::F64 => {
            IdxData::F64(payload.chunks_exact(8).map(|c| f64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect())
        }
    };
    Ok(IdxTensor { dims, data })
}

fn bad_magic(src: &str, found: &[u8]) -> DataError {
    DataError::at(src, 0, ErrorKind::BadMagic { expected: "IDX header 00 00 <type> <ndims>".into(), found: found.to_vec() })
}

/// Serializes a `u8` IDX array (uncompressed); handy for tests and tools.
///
/// Fails if there are more than 255 dimensions, a dimension exceeds `u32`,
/// or `data.len()` does not match the product of `dims`.
pub fn idx_u8_bytes(dims: &[usize], data: &[u8]) -> Result<Vec<u8>, DataError> {
    if dims.is_empty() || dims.len() > 255 {
        return Err(DataError::shape("<idx writer>", format!("need 1..=255 dims, got {}", dims.len())));
    }
    let count = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if count != Some(data.len()) {
        return Err(DataError::shape("<idx writer>", format!("dims {dims:?} do not match {} data bytes", data.len())));
    }
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&[0, 0, 0x08, dims.len() as u8]);
    for &d in dims {
        let d32 = u32::try_from(d).map_err(|_| DataError::shape("<idx writer>", format!("dim {d} exceeds u32")))?;
        out.extend_from_slice(&d32.to_be_bytes());
    }
    out.extend_from_slice(data);
    Ok(out)
}
