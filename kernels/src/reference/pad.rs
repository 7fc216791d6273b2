//! Reference constant padding of int8 NHWC tensors.

use crate::params::Nhwc;

/// Constant padding: the input is placed at `begin = [n, h, w, c]` inside the output and every
/// other output cell is `value` (normally the zero point, i.e. real 0):
///
/// ```text
/// out[n, h, w, c] = in[n − b_n, h − b_h, w − b_w, c − b_c]   when that index is inside the input
///                 = value                                   otherwise
/// ```
///
/// The end padding is implied: `out_shape[i] − begin[i] − in_shape[i]` along each axis, which
/// must not be negative (negative pads, i.e. cropping, are not supported; panics). Exact.
pub fn pad(input: &[i8], in_shape: Nhwc, out: &mut [i8], out_shape: Nhwc, begin: [usize; 4], value: i8) {
    let di = [in_shape.n, in_shape.h, in_shape.w, in_shape.c];
    let dout = [out_shape.n, out_shape.h, out_shape.w, out_shape.c];
    assert!((0..4).all(|i| begin[i] + di[i] <= dout[i]), "pad: {in_shape:?} at {begin:?} does not fit {out_shape:?}");
    let out = &mut out[..out_shape.len()];
    out.fill(value);
    let c_in = in_shape.c;
    for n in 0..in_shape.n {
        for h in 0..in_shape.h {
            for w in 0..in_shape.w {
                let src = ((n * in_shape.h + h) * in_shape.w + w) * c_in;
                let dst = (((n + begin[0]) * out_shape.h + h + begin[1]) * out_shape.w + w + begin[2]) * out_shape.c + begin[3];
                out[dst..dst + c_in].copy_from_slice(&input[src..src + c_in]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::test_util::XorShift;

    #[test]
    fn pad_exact() {
        let mut rng = XorShift::new(60);
        let cases = [
            (Nhwc::new(1, 3, 4, 2), [0, 1, 1, 0], Nhwc::new(1, 5, 6, 2)),
            (Nhwc::new(2, 3, 4, 2), [0, 0, 2, 0], Nhwc::new(2, 3, 7, 2)),
            (Nhwc::new(1, 2, 2, 3), [0, 0, 0, 2], Nhwc::new(1, 2, 2, 8)), // channel padding
            (Nhwc::new(1, 2, 2, 3), [1, 0, 0, 0], Nhwc::new(3, 2, 2, 3)), // batch padding
            (Nhwc::new(1, 2, 3, 1), [0, 0, 0, 0], Nhwc::new(1, 2, 3, 1)), // no-op
            (Nhwc::new(1, 1, 1, 1), [0, 3, 0, 1], Nhwc::new(1, 4, 2, 3)),
        ];
        for (ci, &(is, begin, os)) in cases.iter().enumerate() {
            let input = rng.vec_i8(is.len());
            let value = rng.i8();
            let mut out = vec![0i8; os.len()];
            pad(&input, is, &mut out, os, begin, value);
            let mut o = 0;
            for n in 0..os.n {
                for h in 0..os.h {
                    for w in 0..os.w {
                        for c in 0..os.c {
                            let idx = [n, h, w, c];
                            let dims = [is.n, is.h, is.w, is.c];
                            let inside = (0..4).all(|i| idx[i] >= begin[i] && idx[i] - begin[i] < dims[i]);
                            let want = if inside {
                                let (a, b, cc, d) = (n - begin[0], h - begin[1], w - begin[2], c - begin[3]);
                                input[((a * is.h + b) * is.w + cc) * is.c + d]
                            } else {
                                value
                            };
                            assert_eq!(out[o], want, "case {ci} at {idx:?}");
                            o += 1;
                        }
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn pad_rejects_cropping() {
        pad(&[0; 4], Nhwc::new(1, 2, 2, 1), &mut [0; 4], Nhwc::new(1, 2, 2, 1), [0, 1, 0, 0], 0);
    }
}
