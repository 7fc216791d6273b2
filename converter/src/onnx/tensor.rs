//! `TensorProto` → IR constant conversion (raw/typed/external data, element types).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::proto::TensorProto;
use super::{OnnxError, MAX_TENSOR_ELEMENTS};
use crate::ir::ConstData;

/// ONNX `TensorProto.DataType` values.
pub(crate) mod dt {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const UINT16: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const BOOL: i32 = 9;
    pub const FLOAT16: i32 = 10;
    pub const DOUBLE: i32 = 11;
    pub const UINT32: i32 = 12;
    pub const UINT64: i32 = 13;
    pub const BFLOAT16: i32 = 16;
}

/// Human-readable name of an ONNX data type.
pub(crate) fn dtype_name(t: i32) -> &'static str {
    match t {
        0 => "UNDEFINED",
        1 => "FLOAT",
        2 => "UINT8",
        3 => "INT8",
        4 => "UINT16",
        5 => "INT16",
        6 => "INT32",
        7 => "INT64",
        8 => "STRING",
        9 => "BOOL",
        10 => "FLOAT16",
        11 => "DOUBLE",
        12 => "UINT32",
        13 => "UINT64",
        14 => "COMPLEX64",
        15 => "COMPLEX128",
        16 => "BFLOAT16",
        _ => "unknown",
    }
}

/// Whether the ONNX type maps to an f32 constant (else i64).
pub(crate) fn is_float_type(t: i32) -> bool {
    matches!(t, dt::FLOAT | dt::DOUBLE | dt::FLOAT16 | dt::BFLOAT16)
}

fn elem_size(t: i32) -> Option<usize> {
    Some(match t {
        dt::FLOAT | dt::INT32 | dt::UINT32 => 4,
        dt::DOUBLE | dt::INT64 | dt::UINT64 => 8,
        dt::INT8 | dt::UINT8 | dt::BOOL => 1,
        dt::FLOAT16 | dt::BFLOAT16 | dt::INT16 | dt::UINT16 => 2,
        _ => return None,
    })
}

/// IEEE half → f32 (exact).
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = if exp == 0 {
        if man == 0 {
            sign
        } else {
            // subnormal: value = man * 2^-24
            let v = man as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
    } else if exp == 31 {
        sign | 0x7f80_0000 | (man << 13)
    } else {
        sign | ((exp + 112) << 23) | (man << 13)
    };
    f32::from_bits(bits)
}

/// Checked element count of a shape.
pub(crate) fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= MAX_TENSOR_ELEMENTS)
}

/// Convert a `TensorProto` into a shape and constant data.
pub(crate) fn tensor_to_const(t: &TensorProto<'_>, file: &str, base_dir: Option<&Path>) -> Result<(Vec<usize>, ConstData), OnnxError> {
    let ctx = format!("tensor '{}' (TensorProto at byte offset {})", t.name, t.offset);
    let invalid = |m: String| OnnxError::Invalid { file: file.to_string(), context: ctx.clone(), message: m };
    let mut shape = Vec::with_capacity(t.dims.len().min(16));
    for &d in &t.dims {
        if d < 0 {
            return Err(invalid(format!("negative dimension {d} in dims {:?}", t.dims)));
        }
        shape.push(usize::try_from(d).map_err(|_| invalid(format!("dimension {d} too large")))?);
    }
    let numel =
        checked_numel(&shape).ok_or_else(|| invalid(format!("dims {:?} overflow or exceed {MAX_TENSOR_ELEMENTS} elements", t.dims)))?;
    let ty = t.data_type;
    let Some(esize) = elem_size(ty) else {
        return Err(invalid(format!("unsupported data type {} ({ty})", dtype_name(ty))));
    };
    if t.has_segment {
        return Err(invalid("segmented tensors are not supported".into()));
    }
    let external_bytes;
    let raw: Option<&[u8]> = if t.data_location == 1 {
        external_bytes = read_external(t, file, base_dir, &ctx)?;
        Some(&external_bytes)
    } else if t.data_location != 0 {
        return Err(invalid(format!("unknown data_location {}", t.data_location)));
    } else {
        t.raw_data.map(|(b, _)| b)
    };
    if let Some(raw) = raw {
        let want = numel.checked_mul(esize).ok_or_else(|| invalid("byte size overflows".to_string()))?;
        if raw.len() != want {
            let at = t.raw_data.map(|(_, o)| format!(" (raw_data at byte offset {o})")).unwrap_or_default();
            return Err(invalid(format!(
                "data has {} bytes but dims {:?} of {} need {} × {} = {want}{at}",
                raw.len(),
                shape,
                dtype_name(ty),
                numel,
                esize
            )));
        }
        let data = decode_raw(raw, ty);
        return Ok((shape, data));
    }
    // Typed fields.
    let (count, data) = match ty {
        dt::FLOAT => (t.float_data.len(), ConstData::F32(t.float_data.clone())),
        dt::DOUBLE => (t.double_data.len(), ConstData::F32(t.double_data.iter().map(|&v| v as f32).collect())),
        dt::INT64 => (t.int64_data.len(), ConstData::I64(t.int64_data.clone())),
        dt::UINT64 | dt::UINT32 => (t.uint64_data.len(), ConstData::I64(t.uint64_data.clone())),
        dt::FLOAT16 => (t.int32_data.len(), ConstData::F32(t.int32_data.iter().map(|&v| f16_to_f32(v as u16)).collect())),
        dt::BFLOAT16 => {
            (t.int32_data.len(), ConstData::F32(t.int32_data.iter().map(|&v| f32::from_bits(u32::from(v as u16) << 16)).collect()))
        }
        dt::BOOL => (t.int32_data.len(), ConstData::I64(t.int32_data.iter().map(|&v| i64::from(v != 0)).collect())),
        dt::INT8 => (t.int32_data.len(), ConstData::I64(t.int32_data.iter().map(|&v| i64::from(v as i8)).collect())),
        dt::UINT8 => (t.int32_data.len(), ConstData::I64(t.int32_data.iter().map(|&v| i64::from(v as u8)).collect())),
        dt::INT16 => (t.int32_data.len(), ConstData::I64(t.int32_data.iter().map(|&v| i64::from(v as i16)).collect())),
        dt::UINT16 => (t.int32_data.len(), ConstData::I64(t.int32_data.iter().map(|&v| i64::from(v as u16)).collect())),
        _ => (t.int32_data.len(), ConstData::I64(t.int32_data.iter().map(|&v| i64::from(v as i32)).collect())),
    };
    if count != numel {
        return Err(invalid(format!("has {count} {} values but dims {:?} need {numel}", dtype_name(ty), shape)));
    }
    Ok((shape, data))
}

fn decode_raw(raw: &[u8], ty: i32) -> ConstData {
    fn arr<const N: usize>(c: &[u8]) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        a
    }
    match ty {
        dt::FLOAT => ConstData::F32(raw.chunks_exact(4).map(|c| f32::from_le_bytes(arr(c))).collect()),
        dt::DOUBLE => ConstData::F32(raw.chunks_exact(8).map(|c| f64::from_le_bytes(arr(c)) as f32).collect()),
        dt::FLOAT16 => ConstData::F32(raw.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes(arr(c)))).collect()),
        dt::BFLOAT16 => ConstData::F32(raw.chunks_exact(2).map(|c| f32::from_bits(u32::from(u16::from_le_bytes(arr(c))) << 16)).collect()),
        dt::INT64 | dt::UINT64 => ConstData::I64(raw.chunks_exact(8).map(|c| i64::from_le_bytes(arr(c))).collect()),
        dt::INT32 => ConstData::I64(raw.chunks_exact(4).map(|c| i64::from(i32::from_le_bytes(arr(c)))).collect()),
        dt::UINT32 => ConstData::I64(raw.chunks_exact(4).map(|c| i64::from(u32::from_le_bytes(arr(c)))).collect()),
        dt::INT16 => ConstData::I64(raw.chunks_exact(2).map(|c| i64::from(i16::from_le_bytes(arr(c)))).collect()),
        dt::UINT16 => ConstData::I64(raw.chunks_exact(2).map(|c| i64::from(u16::from_le_bytes(arr(c)))).collect()),
        dt::INT8 => ConstData::I64(raw.iter().map(|&b| i64::from(b as i8)).collect()),
        dt::BOOL => ConstData::I64(raw.iter().map(|&b| i64::from(b != 0)).collect()),
        _ => ConstData::I64(raw.iter().map(|&b| i64::from(b)).collect()),
    }
}

fn read_external(t: &TensorProto<'_>, file: &str, base_dir: Option<&Path>, ctx: &str) -> Result<Vec<u8>, OnnxError> {
    let invalid = |m: String| OnnxError::Invalid { file: file.to_string(), context: ctx.to_string(), message: m };
    let Some(base) = base_dir else {
        return Err(invalid("external data needs a model directory (import from a file instead of bytes)".into()));
    };
    let mut location = None;
    let mut offset: u64 = 0;
    let mut length: Option<u64> = None;
    for (k, v) in &t.external_data {
        match k.as_str() {
            "location" => location = Some(v.as_str()),
            "offset" => offset = v.trim().parse().map_err(|_| invalid(format!("external_data offset '{v}' is not a number")))?,
            "length" => length = Some(v.trim().parse().map_err(|_| invalid(format!("external_data length '{v}' is not a number")))?),
            _ => {}
        }
    }
    let Some(location) = location else {
        return Err(invalid("external data without a 'location' entry".into()));
    };
    let rel = Path::new(location);
    if rel.is_absolute() {
        return Err(invalid(format!("external data location '{location}' is absolute; it must be relative to the model directory")));
    }
    let io = |p: &Path, e: std::io::Error| invalid(format!("external data location '{location}': cannot read {}: {e}", p.display()));
    let base_c = base.canonicalize().map_err(|e| io(base, e))?;
    let joined = base_c.join(rel);
    let path = joined.canonicalize().map_err(|e| io(&joined, e))?;
    if !path.starts_with(&base_c) {
        return Err(invalid(format!(
            "external data location '{location}' resolves to {} outside the model directory {}",
            path.display(),
            base_c.display()
        )));
    }
    let mut f = temper_data::fsread::open_input(&path).map_err(|e| invalid(format!("external data location '{location}': {e}")))?.file;
    let size = f.metadata().map_err(|e| io(&path, e))?.len();
    let len = match length {
        Some(l) => l,
        None => size.checked_sub(offset).ok_or_else(|| invalid(format!("external data offset {offset} beyond file size {size}")))?,
    };
    let end = offset.checked_add(len).ok_or_else(|| invalid("external data offset + length overflows".into()))?;
    if end > size {
        return Err(invalid(format!("external data range {offset}..{end} is beyond the end of {} ({size} bytes)", path.display())));
    }
    let max_bytes = (MAX_TENSOR_ELEMENTS as u64) * 8;
    if len > max_bytes {
        return Err(invalid(format!("external data length {len} is too large")));
    }
    f.seek(SeekFrom::Start(offset)).map_err(|e| io(&path, e))?;
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf).map_err(|e| io(&path, e))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn raw_length_checked() {
        let raw = [0u8; 12];
        let t = TensorProto { dims: vec![2, 2], data_type: dt::FLOAT, raw_data: Some((&raw, 10)), ..Default::default() };
        let e = tensor_to_const(&t, "m.onnx", None).unwrap_err().to_string();
        assert!(e.contains("12 bytes") && e.contains("16"), "{e}");
        let t = TensorProto { dims: vec![i64::MAX, 4], data_type: dt::FLOAT, ..Default::default() };
        assert!(tensor_to_const(&t, "m.onnx", None).is_err());
    }
}
