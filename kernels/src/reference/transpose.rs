//! Reference 4-D transposition (axis permutation) of int8 tensors.

/// Permute the axes of a dense row-major 4-D tensor (ONNX/numpy `Transpose` semantics):
///
/// ```text
/// out_shape[i] = in_shape[perm[i]]
/// out[o0, o1, o2, o3] = in[j]   where j[perm[i]] = o_i for every i
/// ```
///
/// e.g. NHWC → NCHW is `perm = [0, 3, 1, 2]`. `perm` must be a permutation of `0..4` (panics
/// otherwise). Exact (a pure gather).
pub fn transpose4(input: &[i8], in_shape: [usize; 4], perm: [usize; 4], out: &mut [i8]) {
    let mut seen = [false; 4];
    for &p in &perm {
        assert!(p < 4 && !seen[p], "transpose4: {perm:?} is not a permutation");
        seen[p] = true;
    }
    let d = in_shape;
    let in_strides = [d[1] * d[2] * d[3], d[2] * d[3], d[3], 1];
    let od = perm.map(|p| d[p]);
    let st = perm.map(|p| in_strides[p]);
    let mut o = 0;
    for a in 0..od[0] {
        for b in 0..od[1] {
            for c in 0..od[2] {
                let base = a * st[0] + b * st[1] + c * st[2];
                for e in 0..od[3] {
                    out[o] = input[base + e * st[3]];
                    o += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::test_util::XorShift;

    fn all_perms() -> Vec<[usize; 4]> {
        let mut v = Vec::new();
        for a in 0..4 {
            for b in 0..4 {
                for c in 0..4 {
                    for d in 0..4 {
                        let p = [a, b, c, d];
                        if (0..4).all(|i| p.contains(&i)) {
                            v.push(p);
                        }
                    }
                }
            }
        }
        v
    }

    #[test]
    fn transpose_all_permutations_exact() {
        let mut rng = XorShift::new(70);
        let shape = [2usize, 3, 4, 5];
        let input = rng.vec_i8(120);
        let perms = all_perms();
        assert_eq!(perms.len(), 24);
        for &perm in &perms {
            let mut out = vec![0i8; 120];
            transpose4(&input, shape, perm, &mut out);
            let od = perm.map(|p| shape[p]);
            let mut o = 0;
            for i0 in 0..od[0] {
                for i1 in 0..od[1] {
                    for i2 in 0..od[2] {
                        for i3 in 0..od[3] {
                            let oi = [i0, i1, i2, i3];
                            let mut j = [0usize; 4];
                            for k in 0..4 {
                                j[perm[k]] = oi[k];
                            }
                            let want = input[((j[0] * shape[1] + j[1]) * shape[2] + j[2]) * shape[3] + j[3]];
                            assert_eq!(out[o], want, "perm {perm:?} at {oi:?}");
                            o += 1;
                        }
                    }
                }
            }
            // applying the inverse permutation restores the input
            let mut inv = [0usize; 4];
            for k in 0..4 {
                inv[perm[k]] = k;
            }
            let mut back = vec![0i8; 120];
            transpose4(&out, od, inv, &mut back);
            assert_eq!(back, input, "inverse of {perm:?}");
        }
    }

    #[test]
    fn nhwc_to_nchw() {
        // [1, 2, 2, 3] NHWC with value = 10·c + (h·2 + w)
        let mut input = [0i8; 12];
        for hw in 0..4 {
            for c in 0..3 {
                input[hw * 3 + c] = (10 * c + hw) as i8;
            }
        }
        let mut out = [0i8; 12];
        transpose4(&input, [1, 2, 2, 3], [0, 3, 1, 2], &mut out);
        assert_eq!(out, [0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23]);
    }

    #[test]
    #[should_panic(expected = "not a permutation")]
    fn rejects_non_permutation() {
        transpose4(&[0; 4], [1, 1, 2, 2], [0, 1, 1, 3], &mut [0; 4]);
    }
}
