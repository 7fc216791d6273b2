//! The tests' ONNX builder: a tiny protobuf encoder (`M`) and the tensor, attribute and node
//! messages the converter tests assemble models from. Value infos and the model wrapper stay
//! in each test (their dimension forms differ).

#![allow(dead_code)]

/// A protobuf message under construction (fields appended in call order).
#[derive(Clone, Default)]
pub struct M(pub Vec<u8>);

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl M {
    fn key(&mut self, f: u32, wt: u8) {
        varint(&mut self.0, (u64::from(f) << 3) | u64::from(wt));
    }
    /// Field `f` as a varint.
    pub fn int(mut self, f: u32, v: i64) -> Self {
        self.key(f, 0);
        varint(&mut self.0, v as u64);
        self
    }
    /// Field `f` as a 32-bit float.
    pub fn float(mut self, f: u32, v: f32) -> Self {
        self.key(f, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Field `f` as length-delimited bytes.
    pub fn bytes(mut self, f: u32, b: &[u8]) -> Self {
        self.key(f, 2);
        varint(&mut self.0, b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    /// Field `f` as a string.
    pub fn str(self, f: u32, s: &str) -> Self {
        self.bytes(f, s.as_bytes())
    }
    /// Field `f` as an embedded message.
    pub fn msg(self, f: u32, m: M) -> Self {
        self.bytes(f, &m.0)
    }
    /// Field `f` as packed varints.
    pub fn packed(self, f: u32, v: &[i64]) -> Self {
        let mut b = Vec::new();
        for &x in v {
            varint(&mut b, x as u64);
        }
        self.bytes(f, &b)
    }
}

/// A float TensorProto with raw little-endian data (the element count must match `dims`).
pub fn tensor_f32(name: &str, dims: &[i64], data: &[f32]) -> M {
    assert_eq!(dims.iter().product::<i64>() as usize, data.len(), "{name}");
    let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    M::default().packed(1, dims).int(2, 1).str(8, name).bytes(9, &raw)
}

/// An int64 TensorProto (packed `int64_data`).
pub fn tensor_i64(name: &str, dims: &[i64], data: &[i64]) -> M {
    M::default().packed(1, dims).int(2, 7).packed(7, data).str(8, name)
}

/// An INT attribute.
pub fn attr_i(name: &str, v: i64) -> M {
    M::default().str(1, name).int(20, 2).int(3, v)
}
/// A FLOAT attribute.
pub fn attr_f(name: &str, v: f32) -> M {
    M::default().str(1, name).int(20, 1).float(2, v)
}
/// A STRING attribute.
pub fn attr_s(name: &str, s: &str) -> M {
    M::default().str(1, name).int(20, 3).str(4, s)
}
/// INTS, unpacked (one varint field per value), to exercise that encoding.
pub fn attr_ints(name: &str, v: &[i64]) -> M {
    let mut m = M::default().str(1, name).int(20, 7);
    for &x in v {
        m = m.int(8, x);
    }
    m
}
/// INTS, packed (as most exporters write them).
pub fn attr_ints_packed(name: &str, v: &[i64]) -> M {
    M::default().str(1, name).int(20, 7).packed(8, v)
}
/// A TENSOR attribute.
pub fn attr_t(name: &str, t: M) -> M {
    M::default().str(1, name).int(20, 4).msg(5, t)
}

/// A NodeProto.
pub fn node(op: &str, name: &str, ins: &[&str], outs: &[&str], attrs: Vec<M>) -> M {
    let mut m = M::default();
    for i in ins {
        m = m.str(1, i);
    }
    for o in outs {
        m = m.str(2, o);
    }
    m = m.str(3, name).str(4, op);
    for a in attrs {
        m = m.msg(5, a);
    }
    m
}
