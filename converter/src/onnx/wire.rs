//! Protobuf wire-format reader: varints, fixed32/64, length-delimited fields and packed repeated
//! scalars. Every read is bounds-checked; errors carry the absolute byte offset of the fault.

/// A decode failure at an absolute byte offset of the model file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DecodeError {
    /// Absolute byte offset where the problem was found.
    pub offset: usize,
    /// What was wrong.
    pub message: String,
}

impl DecodeError {
    pub(crate) fn new(offset: usize, message: impl Into<String>) -> Self {
        DecodeError { offset, message: message.into() }
    }
}

/// The payload of one field, by wire type.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2: the payload bytes and the absolute offset of their first byte.
    Bytes(&'a [u8], usize),
    /// Wire type 5.
    Fixed32(u32),
}

/// One decoded field: number, value and absolute offset of its tag.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field<'a> {
    pub number: u32,
    pub value: Value<'a>,
    pub offset: usize,
}

/// Sequential reader over one message's bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    /// Reader over `buf`, whose first byte sits at absolute offset `base` in the file.
    pub(crate) fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    fn abs(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let start = self.abs();
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(DecodeError::new(start, "truncated varint (message ends inside it)"));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(DecodeError::new(start, "varint overflows 64 bits"));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::new(start, "varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize, what: &str) -> Result<(&'a [u8], usize), DecodeError> {
        let start = self.abs();
        let remaining = self.buf.len() - self.pos;
        if n > remaining {
            return Err(DecodeError::new(start, format!("{what}: needs {n} bytes but only {remaining} remain in the enclosing message")));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok((s, start))
    }

    /// Next field, or `None` at the end of the message.
    pub(crate) fn next_field(&mut self) -> Result<Option<Field<'a>>, DecodeError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let offset = self.abs();
        let tag = self.varint()?;
        let number = tag >> 3;
        if number == 0 || number > (u64::from(u32::MAX) >> 3) {
            return Err(DecodeError::new(offset, format!("invalid field number {number}")));
        }
        let number = number as u32;
        let value = match tag & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                let (b, _) = self.take(8, "fixed64 field")?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Value::Fixed64(u64::from_le_bytes(a))
            }
            2 => {
                let len_off = self.abs();
                let len = self.varint()?;
                let len = usize::try_from(len)
                    .map_err(|_| DecodeError::new(len_off, format!("length {len} of field {number} does not fit in memory")))?;
                let (b, start) = self.take(len, &format!("length-delimited field {number}"))?;
                Value::Bytes(b, start)
            }
            5 => {
                let (b, _) = self.take(4, "fixed32 field")?;
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                Value::Fixed32(u32::from_le_bytes(a))
            }
            w => {
                return Err(DecodeError::new(offset, format!("unsupported wire type {w} for field {number} (groups are not used by ONNX)")))
            }
        };
        Ok(Some(Field { number, value, offset }))
    }
}

fn wrong_type(f: &Field<'_>, msg: &str, expected: &str) -> DecodeError {
    DecodeError::new(f.offset, format!("{msg} field {}: expected {expected}", f.number))
}

impl<'a> Field<'a> {
    /// Varint value as i64 (two's complement, as protobuf int64/int32 encode negatives).
    pub(crate) fn as_i64(&self, msg: &str) -> Result<i64, DecodeError> {
        match self.value {
            Value::Varint(v) => Ok(v as i64),
            _ => Err(wrong_type(self, msg, "a varint")),
        }
    }

    /// Varint value as i32 (protobuf int32 / enum: truncation of the 64-bit value).
    pub(crate) fn as_i32(&self, msg: &str) -> Result<i32, DecodeError> {
        Ok(self.as_i64(msg)? as i32)
    }

    /// fixed32 value as f32.
    pub(crate) fn as_f32(&self, msg: &str) -> Result<f32, DecodeError> {
        match self.value {
            Value::Fixed32(v) => Ok(f32::from_bits(v)),
            _ => Err(wrong_type(self, msg, "a fixed32 float")),
        }
    }

    /// Length-delimited payload and its absolute offset.
    pub(crate) fn as_bytes(&self, msg: &str) -> Result<(&'a [u8], usize), DecodeError> {
        match self.value {
            Value::Bytes(b, o) => Ok((b, o)),
            _ => Err(wrong_type(self, msg, "a length-delimited value")),
        }
    }

    /// Length-delimited payload as UTF-8 text.
    pub(crate) fn as_string(&self, msg: &str) -> Result<String, DecodeError> {
        let (b, o) = self.as_bytes(msg)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(DecodeError::new(o + e.valid_up_to(), format!("{msg} field {}: string is not valid UTF-8", self.number))),
        }
    }

    /// A sub-message reader over the payload.
    pub(crate) fn message(&self, msg: &str) -> Result<Reader<'a>, DecodeError> {
        let (b, o) = self.as_bytes(msg)?;
        Ok(Reader::new(b, o))
    }

    /// Append repeated int64/int32/uint64 values, packed or unpacked.
    pub(crate) fn push_varints(&self, msg: &str, out: &mut Vec<i64>) -> Result<(), DecodeError> {
        match self.value {
            Value::Varint(v) => {
                out.push(v as i64);
                Ok(())
            }
            Value::Bytes(b, o) => {
                let mut r = Reader::new(b, o);
                while r.pos < b.len() {
                    out.push(r.varint()? as i64);
                }
                Ok(())
            }
            _ => Err(wrong_type(self, msg, "varints (packed or not)")),
        }
    }

    /// Append repeated floats, packed or unpacked.
    pub(crate) fn push_f32s(&self, msg: &str, out: &mut Vec<f32>) -> Result<(), DecodeError> {
        match self.value {
            Value::Fixed32(v) => {
                out.push(f32::from_bits(v));
                Ok(())
            }
            Value::Bytes(b, o) => {
                if b.len() % 4 != 0 {
                    return Err(DecodeError::new(
                        o,
                        format!("{msg} field {}: packed floats length {} is not a multiple of 4", self.number, b.len()),
                    ));
                }
                out.extend(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
                Ok(())
            }
            _ => Err(wrong_type(self, msg, "fixed32 floats (packed or not)")),
        }
    }

    /// Append repeated doubles, packed or unpacked.
    pub(crate) fn push_f64s(&self, msg: &str, out: &mut Vec<f64>) -> Result<(), DecodeError> {
        match self.value {
            Value::Fixed64(v) => {
                out.push(f64::from_bits(v));
                Ok(())
            }
            Value::Bytes(b, o) => {
                if b.len() % 8 != 0 {
                    return Err(DecodeError::new(
                        o,
                        format!("{msg} field {}: packed doubles length {} is not a multiple of 8", self.number, b.len()),
                    ));
                }
                out.extend(b.chunks_exact(8).map(|c| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(c);
                    f64::from_le_bytes(a)
                }));
                Ok(())
            }
            _ => Err(wrong_type(self, msg, "fixed64 doubles (packed or not)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_and_fields() {
        // field 1 varint 150, field 2 bytes "hi", field 3 fixed32 1.0f, field 4 packed [1, 300]
        let mut b = vec![0x08, 0x96, 0x01, 0x12, 2, b'h', b'i', 0x1d];
        b.extend_from_slice(&1.0f32.to_le_bytes());
        b.extend_from_slice(&[0x22, 3, 1, 0xac, 0x02]);
        let mut r = Reader::new(&b, 0);
        let f = r.next_field().unwrap().unwrap();
        assert_eq!((f.number, f.as_i64("t").unwrap()), (1, 150));
        let f = r.next_field().unwrap().unwrap();
        assert_eq!(f.as_string("t").unwrap(), "hi");
        let f = r.next_field().unwrap().unwrap();
        assert_eq!(f.as_f32("t").unwrap(), 1.0);
        let f = r.next_field().unwrap().unwrap();
        let mut v = Vec::new();
        f.push_varints("t", &mut v).unwrap();
        assert_eq!(v, vec![1, 300]);
        assert!(r.next_field().unwrap().is_none());
    }

    #[test]
    fn negative_int64_and_errors() {
        let mut b = vec![0x08];
        b.extend_from_slice(&[0xff; 9]);
        b.push(0x01);
        let mut r = Reader::new(&b, 0);
        assert_eq!(r.next_field().unwrap().unwrap().as_i64("t").unwrap(), -1);
        // overlong varint
        let b = [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert!(Reader::new(&b, 0).next_field().is_err());
        // length beyond the end
        let b = [0x12, 5, 1, 2];
        let e = Reader::new(&b, 100).next_field().unwrap_err();
        assert_eq!(e.offset, 102);
        // group wire type
        assert!(Reader::new(&[0x0b], 0).next_field().is_err());
        // field number zero
        assert!(Reader::new(&[0x00, 0x00], 0).next_field().is_err());
    }
}
