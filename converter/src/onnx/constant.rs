//! Import-time evaluation of constant (shape-arithmetic) subgraphs on [`ConstData`].

use crate::fp32::shape::broadcast_shapes;
use crate::ir::ConstData;

/// A constant value: shape plus data.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Cv {
    pub shape: Vec<usize>,
    pub data: ConstData,
}

impl Cv {
    pub(crate) fn i64s(shape: Vec<usize>, v: Vec<i64>) -> Self {
        Cv { shape, data: ConstData::I64(v) }
    }
    pub(crate) fn is_float(&self) -> bool {
        matches!(self.data, ConstData::F32(_))
    }
    /// Values as i64 (floats truncated).
    pub(crate) fn to_i64(&self) -> Vec<i64> {
        match &self.data {
            ConstData::I64(v) => v.clone(),
            ConstData::F32(v) => v.iter().map(|&x| x as i64).collect(),
        }
    }
    /// Values as f32.
    pub(crate) fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            ConstData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            ConstData::F32(v) => v.clone(),
        }
    }
}

/// Row-major strides.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut st = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        st[i] = st[i + 1] * shape[i + 1];
    }
    st
}

/// Strides of `shape` broadcast into `out` (0 on broadcast axes).
pub(crate) fn bcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let r = out.len();
    let mut st = vec![0; r];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        let oi = i + r - shape.len();
        st[oi] = if shape[i] == 1 && out[oi] != 1 { 0 } else { acc };
        acc *= shape[i];
    }
    st
}

/// Source index for every element of `out_shape`, `base + Σ idx[a]·strides[a]`.
pub(crate) fn strided_indices(out_shape: &[usize], base: usize, st: &[usize]) -> Vec<usize> {
    let total: usize = out_shape.iter().product();
    let mut out = Vec::with_capacity(total);
    if total == 0 {
        return out;
    }
    let r = out_shape.len();
    let mut idx = vec![0usize; r];
    let mut off = base;
    loop {
        out.push(off);
        let mut d = r;
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            idx[d] += 1;
            off += st[d];
            if idx[d] < out_shape[d] {
                break;
            }
            off -= st[d] * out_shape[d];
            idx[d] = 0;
        }
    }
}

/// Gather elements by index.
pub(crate) fn take(d: &ConstData, idx: &[usize]) -> ConstData {
    match d {
        ConstData::F32(v) => ConstData::F32(idx.iter().map(|&i| v[i]).collect()),
        ConstData::I64(v) => ConstData::I64(idx.iter().map(|&i| v[i]).collect()),
    }
}

/// Broadcast `a` to `out`.
pub(crate) fn expand(a: &Cv, out: &[usize]) -> Cv {
    let idx = strided_indices(out, 0, &bcast_strides(&a.shape, out));
    Cv { shape: out.to_vec(), data: take(&a.data, &idx) }
}

/// Binary arithmetic kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bin {
    Add,
    Sub,
    Mul,
    Div,
    Equal,
    Less,
    Greater,
    Min,
    Max,
}

/// Elementwise binary op with broadcasting; integer when both are integer.
pub(crate) fn binary(a: &Cv, b: &Cv, op: Bin, limit: usize) -> Result<Cv, String> {
    let out = broadcast_shapes(&a.shape, &b.shape)?;
    let n = crate::onnx::tensor::checked_numel(&out).filter(|&n| n <= limit).ok_or("result too large")?;
    let _ = n;
    let ia = strided_indices(&out, 0, &bcast_strides(&a.shape, &out));
    let ib = strided_indices(&out, 0, &bcast_strides(&b.shape, &out));
    let cmp = matches!(op, Bin::Equal | Bin::Less | Bin::Greater);
    if !a.is_float() && !b.is_float() {
        let (va, vb) = (a.to_i64(), b.to_i64());
        let mut r = Vec::with_capacity(ia.len());
        for (&i, &j) in ia.iter().zip(&ib) {
            let (x, y) = (va[i], vb[j]);
            r.push(match op {
                Bin::Add => x.checked_add(y).ok_or("integer overflow in Add")?,
                Bin::Sub => x.checked_sub(y).ok_or("integer overflow in Sub")?,
                Bin::Mul => x.checked_mul(y).ok_or("integer overflow in Mul")?,
                Bin::Div => {
                    if y == 0 {
                        return Err("integer division by zero".into());
                    }
                    x.checked_div(y).ok_or("integer overflow in Div")?
                }
                Bin::Equal => i64::from(x == y),
                Bin::Less => i64::from(x < y),
                Bin::Greater => i64::from(x > y),
                Bin::Min => x.min(y),
                Bin::Max => x.max(y),
            });
        }
        return Ok(Cv::i64s(out, r));
    }
    let (va, vb) = (a.to_f32(), b.to_f32());
    let it = ia.iter().zip(&ib).map(|(&i, &j)| (va[i], vb[j]));
    if cmp {
        let r = it
            .map(|(x, y)| {
                i64::from(match op {
                    Bin::Equal => x == y,
                    Bin::Less => x < y,
                    _ => x > y,
                })
            })
            .collect();
        return Ok(Cv::i64s(out, r));
    }
    let r = it
        .map(|(x, y)| match op {
            Bin::Add => x + y,
            Bin::Sub => x - y,
            Bin::Mul => x * y,
            Bin::Div => x / y,
            Bin::Min => x.min(y),
            _ => x.max(y),
        })
        .collect();
    Ok(Cv { shape: out, data: ConstData::F32(r) })
}

/// `Where(cond, x, y)` with broadcasting.
pub(crate) fn where_(c: &Cv, x: &Cv, y: &Cv, limit: usize) -> Result<Cv, String> {
    let out = broadcast_shapes(&broadcast_shapes(&c.shape, &x.shape)?, &y.shape)?;
    crate::onnx::tensor::checked_numel(&out).filter(|&n| n <= limit).ok_or("result too large")?;
    let ic = strided_indices(&out, 0, &bcast_strides(&c.shape, &out));
    let ix = strided_indices(&out, 0, &bcast_strides(&x.shape, &out));
    let iy = strided_indices(&out, 0, &bcast_strides(&y.shape, &out));
    let cv = c.to_i64();
    if !x.is_float() && !y.is_float() {
        let (vx, vy) = (x.to_i64(), y.to_i64());
        let r = (0..ic.len()).map(|k| if cv[ic[k]] != 0 { vx[ix[k]] } else { vy[iy[k]] }).collect();
        return Ok(Cv::i64s(out, r));
    }
    let (vx, vy) = (x.to_f32(), y.to_f32());
    let r = (0..ic.len()).map(|k| if cv[ic[k]] != 0 { vx[ix[k]] } else { vy[iy[k]] }).collect();
    Ok(Cv { shape: out, data: ConstData::F32(r) })
}

/// Gather along `axis` with (already normalised) indices of shape `ishape`.
pub(crate) fn gather(d: &Cv, axis: usize, indices: &[usize], ishape: &[usize]) -> Cv {
    let outer: usize = d.shape[..axis].iter().product();
    let dim = d.shape[axis];
    let inner: usize = d.shape[axis + 1..].iter().product();
    let mut idx = Vec::with_capacity(outer * indices.len() * inner);
    for o in 0..outer {
        for &k in indices {
            for i in 0..inner {
                idx.push((o * dim + k) * inner + i);
            }
        }
    }
    let mut shape = d.shape[..axis].to_vec();
    shape.extend_from_slice(ishape);
    shape.extend_from_slice(&d.shape[axis + 1..]);
    Cv { shape, data: take(&d.data, &idx) }
}

/// Concatenate constants along `axis`.
pub(crate) fn concat(parts: &[&Cv], axis: usize, out_shape: &[usize]) -> Cv {
    let any_float = parts.iter().any(|p| p.is_float());
    let outer: usize = out_shape[..axis].iter().product();
    if any_float {
        let vs: Vec<Vec<f32>> = parts.iter().map(|p| p.to_f32()).collect();
        let mut r = Vec::new();
        for o in 0..outer {
            for (p, v) in parts.iter().zip(&vs) {
                let chunk: usize = p.shape[axis..].iter().product();
                r.extend_from_slice(&v[o * chunk..(o + 1) * chunk]);
            }
        }
        Cv { shape: out_shape.to_vec(), data: ConstData::F32(r) }
    } else {
        let vs: Vec<Vec<i64>> = parts.iter().map(|p| p.to_i64()).collect();
        let mut r = Vec::new();
        for o in 0..outer {
            for (p, v) in parts.iter().zip(&vs) {
                let chunk: usize = p.shape[axis..].iter().product();
                r.extend_from_slice(&v[o * chunk..(o + 1) * chunk]);
            }
        }
        Cv::i64s(out_shape.to_vec(), r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_arith_and_where() {
        let a = Cv::i64s(vec![3], vec![1, 2, 3]);
        let b = Cv::i64s(vec![], vec![2]);
        assert_eq!(binary(&a, &b, Bin::Mul, 100).unwrap().to_i64(), vec![2, 4, 6]);
        assert_eq!(binary(&a, &b, Bin::Equal, 100).unwrap().to_i64(), vec![0, 1, 0]);
        assert!(binary(&a, &Cv::i64s(vec![], vec![0]), Bin::Div, 100).is_err());
        let c = Cv::i64s(vec![3], vec![1, 0, 1]);
        let w = where_(&c, &a, &Cv::i64s(vec![1], vec![-1]), 100).unwrap();
        assert_eq!(w.to_i64(), vec![1, -1, 3]);
    }

    #[test]
    fn gather_and_concat() {
        let d = Cv::i64s(vec![4], vec![1, 16, 7, 7]);
        let g = gather(&d, 0, &[0], &[]);
        assert_eq!((g.shape.clone(), g.to_i64()), (vec![], vec![1]));
        let m = Cv::i64s(vec![1], vec![-1]);
        let u = Cv::i64s(vec![1], vec![1]);
        let c = concat(&[&u, &m], 0, &[2]);
        assert_eq!(c.to_i64(), vec![1, -1]);
    }
}
