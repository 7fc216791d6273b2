//! NPY (v1, v2, v3) reading and writing, NPZ reading and writing.
//!
//! Supported dtypes (C order only; `fortran_order: True` is rejected):
//!
//! | descr            | read as          |
//! |------------------|------------------|
//! | `<f4`            | [`NpyData::F32`] |
//! | `<f8`            | [`NpyData::F32`] (narrowed, precision may be lost) |
//! | `|u1`, `|b1`     | [`NpyData::U8`]  |
//! | `|i1`            | [`NpyData::I8`]  |
//! | `<i4`            | [`NpyData::I32`] |
//! | `<i8`            | [`NpyData::I64`] |
//!
//! The byte-order character may also be `=` (treated as little-endian, as
//! numpy itself never writes it) or `>` (big-endian, byte-swapped on load);
//! for the one-byte types `<`, `>`, `=` and `|` are all accepted.
//!
//! The payload must match the shape exactly: missing bytes are a
//! [`ErrorKind::Truncated`] error and trailing bytes an
//! [`ErrorKind::ShapeMismatch`] error.
//!
//! NPZ archives are zip files of `.npy` members, either stored or deflated
//! (zip64 records, as written by `numpy.savez`, are understood). The reader
//! is self-contained and checks each member's CRC-32 and size. Writers
//! ([`write_npy`], [`write_npz`] and the typed shortcuts) replace their target
//! atomically: they write a temporary file in the same directory and rename it.

use std::path::Path;

use crate::error::{DataError, ErrorKind};
use crate::fsread::{read_input, read_input_prefixed};
use crate::util::write_atomic;

/// The NPY magic string `\x93NUMPY`.
pub const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Element storage of an [`NpyArray`].
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    /// From `<f4` or `<f8`.
    F32(Vec<f32>),
    /// From `|u1` (or `|b1`).
    U8(Vec<u8>),
    /// From `|i1`.
    I8(Vec<i8>),
    /// From `<i4`.
    I32(Vec<i32>),
    /// From `<i8`.
    I64(Vec<i64>),
}

impl NpyData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            NpyData::F32(v) => v.len(),
            NpyData::U8(v) => v.len(),
            NpyData::I8(v) => v.len(),
            NpyData::I32(v) => v.len(),
            NpyData::I64(v) => v.len(),
        }
    }

    /// True if there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The numpy descr this data is written with (`<f4`, `|u1`, `|i1`, `<i4`, `<i8`).
    pub fn descr(&self) -> &'static str {
        match self {
            NpyData::F32(_) => "<f4",
            NpyData::U8(_) => "|u1",
            NpyData::I8(_) => "|i1",
            NpyData::I32(_) => "<i4",
            NpyData::I64(_) => "<i8",
        }
    }

    /// Converts every element to `f32` without rescaling (i32/i64 may lose precision).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            NpyData::F32(v) => v.clone(),
            NpyData::U8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            NpyData::I8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            NpyData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            NpyData::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// Converts every element to `i64` if the data is integral; `None` for `F32`.
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        Some(match self {
            NpyData::F32(_) => return None,
            NpyData::U8(v) => v.iter().map(|&x| i64::from(x)).collect(),
            NpyData::I8(v) => v.iter().map(|&x| i64::from(x)).collect(),
            NpyData::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
            NpyData::I64(v) => v.clone(),
        })
    }

    fn item_size(&self) -> usize {
        match self {
            NpyData::U8(_) | NpyData::I8(_) => 1,
            NpyData::F32(_) | NpyData::I32(_) => 4,
            NpyData::I64(_) => 8,
        }
    }
}

/// An n-dimensional array read from or written to NPY.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Shape, outermost first; empty for a 0-d (scalar) array.
    pub shape: Vec<usize>,
    /// Elements in C order; `data.len()` equals the product of `shape`.
    pub data: NpyData,
}

impl NpyArray {
    /// Builds an array, checking that the shape matches the element count.
    pub fn new(shape: Vec<usize>, data: NpyData) -> Result<Self, DataError> {
        check_shape("<array>", &shape, data.len())?;
        Ok(NpyArray { shape, data })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True if there are no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Elements converted to `f32` (see [`NpyData::to_f32`]).
    pub fn to_f32(&self) -> Vec<f32> {
        self.data.to_f32()
    }
}

fn check_shape(label: &str, shape: &[usize], len: usize) -> Result<(), DataError> {
    match shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) {
        Some(n) if n == len => Ok(()),
        Some(n) => Err(DataError::shape(label, format!("shape {shape:?} has {n} elements but the data has {len}"))),
        None => Err(DataError::shape(label, format!("product of shape {shape:?} overflows"))),
    }
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

/// Longest NPY header read before the payload size is known (numpy itself refuses headers
/// over 10,000 bytes by default).
const NPY_HEADER_MAX: usize = 1 << 20;

/// Reads an `.npy` file.
///
/// The file is checked and its header parsed before the payload is read: a special file, or
/// a file whose size differs from what the header's shape and dtype declare, is refused
/// without reading the payload (see [`crate::fsread`]).
pub fn read_npy(path: &Path) -> Result<NpyArray, DataError> {
    let label = path.display().to_string();
    let bytes = read_input_prefixed(path, NPY_HEADER_MAX, |head, len| match parse_head(head, &label) {
        Ok(h) => {
            let total = (h.dstart as u64).saturating_add(h.nbytes as u64);
            if len < total {
                return Err(DataError::truncated(label.as_str(), h.dstart as u64, h.nbytes as u64, len.saturating_sub(h.dstart as u64)));
            }
            Ok(total)
        }
        Err(e) if matches!(e.kind, ErrorKind::Truncated { .. }) && (head.len() as u64) < len => {
            Err(DataError::format(label.as_str(), format!("NPY header longer than {NPY_HEADER_MAX} bytes is not supported")))
        }
        Err(e) => Err(e),
    })?;
    read_npy_bytes(&bytes, &label)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    F4,
    F8,
    U1,
    I1,
    I4,
    I8,
}

impl Kind {
    fn size(self) -> usize {
        match self {
            Kind::U1 | Kind::I1 => 1,
            Kind::F4 | Kind::I4 => 4,
            Kind::F8 | Kind::I8 => 8,
        }
    }
}

fn parse_descr(descr: &str) -> Option<(Kind, bool)> {
    let mut chars = descr.chars();
    let (order, rest) = match chars.next()? {
        c @ ('<' | '>' | '=' | '|') => (c, chars.as_str()),
        _ => ('|', descr),
    };
    let kind = match rest {
        "f4" => Kind::F4,
        "f8" => Kind::F8,
        "u1" | "b1" => Kind::U1,
        "i1" => Kind::I1,
        "i4" => Kind::I4,
        "i8" => Kind::I8,
        _ => return None,
    };
    let big = order == '>';
    // Multi-byte types need an explicit byte order.
    if kind.size() > 1 && order == '|' {
        return None;
    }
    Some((kind, big))
}

/// The parsed NPY header: where the payload starts, its size and element type.
struct Head {
    shape: Vec<usize>,
    descr: String,
    kind: Kind,
    big: bool,
    dstart: usize,
    nbytes: usize,
}

/// Parses NPY bytes held in memory; `label` names the source in errors.
pub fn read_npy_bytes(bytes: &[u8], label: &str) -> Result<NpyArray, DataError> {
    let Head { shape, descr, kind, big, dstart, nbytes } = parse_head(bytes, label)?;
    let payload = &bytes[dstart..];
    if payload.len() < nbytes {
        return Err(DataError::truncated(label, dstart as u64, nbytes as u64, payload.len() as u64));
    }
    if payload.len() > nbytes {
        return Err(DataError::at(
            label,
            (dstart + nbytes) as u64,
            ErrorKind::ShapeMismatch(format!(
                "{} trailing byte(s) after the {nbytes}-byte payload of shape {:?} {}",
                payload.len() - nbytes,
                shape,
                descr
            )),
        ));
    }
    let data = decode_payload(payload, kind, big);
    Ok(NpyArray { shape, data })
}

/// Parses the magic, version and header dict at the start of `bytes` (the payload need not
/// be there).
fn parse_head(bytes: &[u8], label: &str) -> Result<Head, DataError> {
    if bytes.len() < 8 {
        if !NPY_MAGIC.starts_with(&bytes[..bytes.len().min(6)]) {
            return Err(bad_npy_magic(label, bytes));
        }
        return Err(DataError::truncated(label, 0, 8, bytes.len() as u64));
    }
    if &bytes[..6] != NPY_MAGIC {
        return Err(bad_npy_magic(label, &bytes[..6]));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (hlen, hstart) = match major {
        1 => {
            if bytes.len() < 10 {
                return Err(DataError::truncated(label, 8, 2, (bytes.len() - 8) as u64));
            }
            (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize)
        }
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(DataError::truncated(label, 8, 4, (bytes.len() - 8) as u64));
            }
            let l = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (l as usize, 12usize)
        }
        _ => {
            return Err(DataError::format_at(
                label,
                6,
                format!("unsupported NPY format version {major}.{minor} (supported: 1.x, 2.x, 3.x)"),
            ))
        }
    };
    let avail = bytes.len() - hstart;
    if hlen > avail {
        return Err(DataError::truncated(label, hstart as u64, hlen as u64, avail as u64));
    }
    let hbytes = &bytes[hstart..hstart + hlen];
    let header: String = if major == 3 {
        std::str::from_utf8(hbytes).map_err(|e| DataError::format_at(label, hstart as u64, format!("header is not UTF-8: {e}")))?.to_owned()
    } else {
        // latin-1
        hbytes.iter().map(|&b| b as char).collect()
    };
    let h = parse_header(&header).map_err(|m| DataError::format_at(label, hstart as u64, m))?;
    if h.fortran_order {
        return Err(DataError::at(
            label,
            hstart as u64,
            ErrorKind::UnsupportedDtype("fortran_order is True; only C-order arrays are supported (save with np.ascontiguousarray)".into()),
        ));
    }
    let (kind, big) = parse_descr(&h.descr).ok_or_else(|| {
        DataError::at(label, hstart as u64, ErrorKind::UnsupportedDtype(format!("{} (supported: <f4 <f8 |u1 |i1 <i4 <i8)", h.descr)))
    })?;
    let count = h
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| DataError::shape(label, format!("product of shape {:?} overflows", h.shape)))?;
    let nbytes =
        count.checked_mul(kind.size()).ok_or_else(|| DataError::shape(label, format!("byte size of shape {:?} overflows", h.shape)))?;
    let dstart = hstart + hlen;
    Ok(Head { shape: h.shape, descr: h.descr, kind, big, dstart, nbytes })
}

fn decode_payload(p: &[u8], kind: Kind, big: bool) -> NpyData {
    macro_rules! conv {
        ($t:ty, $n:literal) => {
            p.chunks_exact($n)
                .map(|c| {
                    let mut a = [0u8; $n];
                    a.copy_from_slice(c);
                    if big {
                        <$t>::from_be_bytes(a)
                    } else {
                        <$t>::from_le_bytes(a)
                    }
                })
                .collect::<Vec<$t>>()
        };
    }
    match kind {
        Kind::U1 => NpyData::U8(p.to_vec()),
        Kind::I1 => NpyData::I8(p.iter().map(|&b| b as i8).collect()),
        Kind::F4 => NpyData::F32(conv!(f32, 4)),
        Kind::F8 => NpyData::F32(conv!(f64, 8).into_iter().map(|x| x as f32).collect()),
        Kind::I4 => NpyData::I32(conv!(i32, 4)),
        Kind::I8 => NpyData::I64(conv!(i64, 8)),
    }
}

fn bad_npy_magic(label: &str, found: &[u8]) -> DataError {
    DataError::at(label, 0, ErrorKind::BadMagic { expected: "NPY magic 93 4e 55 4d 50 59 (\\x93NUMPY)".into(), found: found.to_vec() })
}

// --- header dict parser (a small subset of Python literal syntax) ----------

struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

#[derive(Debug)]
enum PyVal {
    Str(String),
    Bool(bool),
    Int(u128),
    NoneVal,
    Seq(Vec<PyVal>),
    Dict(Vec<(String, PyVal)>),
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

const MAX_DEPTH: usize = 32;

impl Lexer<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && (self.s[self.i] as char).is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        match self.peek() {
            Some(x) if x == c => {
                self.i += 1;
                Ok(())
            }
            Some(x) => Err(format!("header: expected '{}' at char {}, found '{}'", c as char, self.i, x as char)),
            None => Err(format!("header: expected '{}' but the header ended", c as char)),
        }
    }

    fn value(&mut self, depth: usize) -> Result<PyVal, String> {
        if depth > MAX_DEPTH {
            return Err("header: nesting too deep".into());
        }
        match self.peek() {
            None => Err("header: value expected but the header ended".into()),
            Some(b'\'') | Some(b'"') => self.string().map(PyVal::Str),
            Some(b'(') | Some(b'[') => {
                let close = if self.s[self.i] == b'(' { b')' } else { b']' };
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(close) {
                        self.i += 1;
                        break;
                    }
                    items.push(self.value(depth + 1)?);
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(c) if c == close => {}
                        _ => return Err(format!("header: expected ',' or '{}' at char {}", close as char, self.i)),
                    }
                }
                Ok(PyVal::Seq(items))
            }
            Some(b'{') => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                        break;
                    }
                    let k = match self.value(depth + 1)? {
                        PyVal::Str(s) => s,
                        other => return Err(format!("header: dict key must be a string, got {other:?}")),
                    };
                    self.expect(b':')?;
                    let v = self.value(depth + 1)?;
                    items.push((k, v));
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {}
                        _ => return Err(format!("header: expected ',' or '}}' at char {}", self.i)),
                    }
                }
                Ok(PyVal::Dict(items))
            }
            Some(c) if c.is_ascii_digit() => {
                let mut v: u128 = 0;
                while let Some(&d) = self.s.get(self.i) {
                    if !d.is_ascii_digit() {
                        break;
                    }
                    v = v.checked_mul(10).and_then(|v| v.checked_add(u128::from(d - b'0'))).ok_or("header: integer too large")?;
                    self.i += 1;
                }
                // Python 2 long suffix.
                if matches!(self.s.get(self.i), Some(b'L') | Some(b'l')) {
                    self.i += 1;
                }
                Ok(PyVal::Int(v))
            }
            Some(_) => {
                let start = self.i;
                while self.i < self.s.len() && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_') {
                    self.i += 1;
                }
                match &self.s[start..self.i] {
                    b"True" => Ok(PyVal::Bool(true)),
                    b"False" => Ok(PyVal::Bool(false)),
                    b"None" => Ok(PyVal::NoneVal),
                    _ => Err(format!("header: unexpected token at char {start}")),
                }
            }
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let q = self.s[self.i];
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.s.get(self.i) {
                None => return Err("header: unterminated string".into()),
                Some(&c) if c == q => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => {
                    let n = *self.s.get(self.i + 1).ok_or("header: unterminated string")?;
                    out.push(n);
                    self.i += 2;
                }
                Some(&c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

fn parse_header(h: &str) -> Result<Header, String> {
    let mut lx = Lexer { s: h.as_bytes(), i: 0 };
    let v = lx.value(0)?;
    if let Some(c) = lx.peek() {
        return Err(format!("header: unexpected '{}' after the dict", c as char));
    }
    let PyVal::Dict(items) = v else {
        return Err("header is not a dict".into());
    };
    let mut descr = None;
    let mut fortran = None;
    let mut shape = None;
    for (k, v) in items {
        match (k.as_str(), v) {
            ("descr", PyVal::Str(s)) => descr = Some(s),
            ("descr", other) => return Err(format!("structured/record dtype {other:?} is not supported (plain numeric arrays only)")),
            ("fortran_order", PyVal::Bool(b)) => fortran = Some(b),
            ("fortran_order", other) => return Err(format!("fortran_order must be True/False, got {other:?}")),
            ("shape", PyVal::Seq(dims)) => {
                let mut s = Vec::with_capacity(dims.len());
                for d in dims {
                    match d {
                        PyVal::Int(n) => s.push(usize::try_from(n).map_err(|_| format!("shape dimension {n} too large"))?),
                        other => return Err(format!("shape entries must be integers, got {other:?}")),
                    }
                }
                shape = Some(s);
            }
            ("shape", other) => return Err(format!("shape must be a tuple, got {other:?}")),
            _ => {} // unknown keys are ignored
        }
    }
    Ok(Header {
        descr: descr.ok_or("header has no 'descr'")?,
        fortran_order: fortran.ok_or("header has no 'fortran_order'")?,
        shape: shape.ok_or("header has no 'shape'")?,
    })
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// Serializes an array to NPY bytes (format 1.0, or 2.0 if the header needs it).
///
/// The header is padded so that the payload starts on a 64-byte boundary, as
/// numpy does.
pub fn npy_to_bytes(arr: &NpyArray) -> Result<Vec<u8>, DataError> {
    check_shape("<npy writer>", &arr.shape, arr.data.len())?;
    let shape = match arr.shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", arr.shape[0]),
        _ => format!("({})", arr.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let dict = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", arr.data.descr(), shape);
    // v1: 6 magic + 2 version + 2 len; v2: 4 len.
    let (major, prefix) = if dict.len() + 1 + 10 + 63 <= 65535 { (1u8, 10) } else { (2u8, 12) };
    let unpadded = prefix + dict.len() + 1;
    let total = unpadded.div_ceil(64) * 64;
    let hlen = total - prefix;
    let payload_len =
        arr.data.len().checked_mul(arr.data.item_size()).ok_or_else(|| DataError::shape("<npy writer>", "payload size overflows"))?;
    let mut out = Vec::with_capacity(total + payload_len);
    out.extend_from_slice(NPY_MAGIC);
    out.push(major);
    out.push(0);
    if major == 1 {
        out.extend_from_slice(&(hlen as u16).to_le_bytes());
    } else {
        let h32 = u32::try_from(hlen).map_err(|_| DataError::shape("<npy writer>", "header too large"))?;
        out.extend_from_slice(&h32.to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    match &arr.data {
        NpyData::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::U8(v) => out.extend_from_slice(v),
        NpyData::I8(v) => out.extend(v.iter().map(|&x| x as u8)),
        NpyData::I32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
    }
    Ok(out)
}

/// Writes an array to an `.npy` file atomically.
pub fn write_npy(path: &Path, arr: &NpyArray) -> Result<(), DataError> {
    let bytes = npy_to_bytes(arr).map_err(|e| DataError { source_name: path.display().to_string(), ..e })?;
    write_atomic(path, &bytes)
}

fn write_typed(path: &Path, shape: &[usize], data: NpyData) -> Result<(), DataError> {
    check_shape(&path.display().to_string(), shape, data.len())?;
    write_npy(path, &NpyArray { shape: shape.to_vec(), data })
}

/// Writes `data` with `shape` as `<f4` NPY, atomically.
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), DataError> {
    write_typed(path, shape, NpyData::F32(data.to_vec()))
}

/// Writes `data` with `shape` as `|i1` NPY, atomically.
pub fn write_npy_i8(path: &Path, shape: &[usize], data: &[i8]) -> Result<(), DataError> {
    write_typed(path, shape, NpyData::I8(data.to_vec()))
}

/// Writes `data` with `shape` as `|u1` NPY, atomically.
pub fn write_npy_u8(path: &Path, shape: &[usize], data: &[u8]) -> Result<(), DataError> {
    write_typed(path, shape, NpyData::U8(data.to_vec()))
}

/// Writes `data` with `shape` as `<i4` NPY, atomically.
pub fn write_npy_i32(path: &Path, shape: &[usize], data: &[i32]) -> Result<(), DataError> {
    write_typed(path, shape, NpyData::I32(data.to_vec()))
}

/// Writes `data` with `shape` as `<i8` NPY, atomically.
pub fn write_npy_i64(path: &Path, shape: &[usize], data: &[i64]) -> Result<(), DataError> {
    write_typed(path, shape, NpyData::I64(data.to_vec()))
}

// ---------------------------------------------------------------------------
// NPZ
// ---------------------------------------------------------------------------

/// Reads every `.npy` member of an `.npz` archive, in archive order.
///
/// Keys are member names with the `.npy` suffix removed (as numpy's `NpzFile`
/// does); members not ending in `.npy` (e.g. directories) are skipped.
///
/// The archive is read whole, up to [`NPZ_MAX`] bytes (a larger file is refused from its size).
pub fn read_npz(path: &Path) -> Result<Vec<(String, NpyArray)>, DataError> {
    let bytes = read_input(path, NPZ_MAX, "an NPZ archive may have")?;
    read_npz_bytes(&bytes, &path.display().to_string())
}

/// Parses an `.npz` archive held in memory; `label` names the source in errors
/// (member errors are reported as `label:member`).
pub fn read_npz_bytes(bytes: &[u8], label: &str) -> Result<Vec<(String, NpyArray)>, DataError> {
    let entries = crate::zip::read_entries(bytes, label)?;
    let mut out = Vec::new();
    for e in entries {
        let Some(key) = e.name.strip_suffix(".npy") else {
            continue;
        };
        let member_label = format!("{label}:{}", e.name);
        let data = crate::zip::extract(bytes, &e, label)?;
        let arr = read_npy_bytes(&data, &member_label)?;
        out.push((key.to_string(), arr));
    }
    Ok(out)
}

/// Largest `.npz` archive [`read_npz`] reads (4 GiB).
pub const NPZ_MAX: u64 = 4 << 30;

/// Looks up `key` in the result of [`read_npz`].
pub fn npz_get<'a>(members: &'a [(String, NpyArray)], key: &str) -> Option<&'a NpyArray> {
    members.iter().find(|(k, _)| k == key).map(|(_, a)| a)
}

/// Writes arrays into an `.npz` archive (stored, uncompressed), atomically.
///
/// Each `name` becomes the member `name.npy`; duplicate names are an error.
pub fn write_npz(path: &Path, arrays: &[(&str, &NpyArray)]) -> Result<(), DataError> {
    let label = path.display().to_string();
    let mut members = Vec::with_capacity(arrays.len());
    for (i, (name, arr)) in arrays.iter().enumerate() {
        if arrays[..i].iter().any(|(n, _)| n == name) {
            return Err(DataError::spec(label, format!("duplicate npz member name {name:?}")));
        }
        let bytes = npy_to_bytes(arr).map_err(|e| DataError { source_name: label.clone(), ..e })?;
        members.push((format!("{name}.npy"), bytes));
    }
    let zip = crate::zip::write_stored(&members).map_err(|m| DataError::format(label.clone(), m))?;
    write_atomic(path, &zip)
}
