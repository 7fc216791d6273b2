//! Splitting one convolution, depthwise convolution or pooling call into independent parts over
//! disjoint output rows (or images): how the runtime spreads a layer over threads.
//!
//! A part is an ordinary call with its own geometry: a sub-batch, or a band of output rows whose
//! input starts at the first input row the band reads (rows above it become top padding only
//! where the whole layer pads). Every part computes exactly the bytes the whole call computes
//! for those rows, on every kernel path (`tests/exact.rs` checks it).

use crate::params::{Conv2d, Nhwc};

/// Most parts [`rows`] produces.
pub const MAX_PARTS: usize = 16;

/// One part of a split layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Part {
    /// Geometry of the part.
    pub geom: Conv2d,
    /// Offset (elements) of the part's input in the whole input.
    pub input_offset: usize,
    /// First output element of the part in the whole output.
    pub output_start: usize,
    /// One past the part's last output element (parts are contiguous and in order).
    pub output_end: usize,
}

/// Split `g` into at most `parts` (≤ [`MAX_PARTS`]) parts written to `out`; returns how many
/// (0 or 1: do not split). A batch of at least two images is split by images; a single image by
/// bands of output rows, unless some band would start inside the bottom padding (where no input
/// row is left to start from).
pub fn rows(g: &Conv2d, parts: usize, out: &mut [Part; MAX_PARTS]) -> usize {
    let parts = parts.min(MAX_PARTS);
    let (ih, iw, ic) = (g.input.h, g.input.w, g.input.c);
    let (oh, ow, oc) = (g.output.h, g.output.w, g.output.c);
    if parts < 2 || g.output.is_empty() {
        return 0;
    }
    if g.output.n >= 2 {
        let p = parts.min(g.output.n);
        for (i, part) in out.iter_mut().enumerate().take(p) {
            let (n0, n1) = (i * g.output.n / p, (i + 1) * g.output.n / p);
            *part = Part {
                geom: Conv2d { input: Nhwc::new(n1 - n0, ih, iw, ic), output: Nhwc::new(n1 - n0, oh, ow, oc), ..*g },
                input_offset: n0 * ih * iw * ic,
                output_start: n0 * oh * ow * oc,
                output_end: n1 * oh * ow * oc,
            };
        }
        return p;
    }
    let p = parts.min(oh);
    for (i, part) in out.iter_mut().enumerate().take(p) {
        let (y0, y1) = (i * oh / p, (i + 1) * oh / p);
        // first input row the band reads (may be above the image: top padding)
        let t = (y0 * g.sh) as isize - g.pad_top as isize;
        if t >= ih as isize {
            return 0;
        }
        let s = t.max(0) as usize;
        *part = Part {
            geom: Conv2d {
                input: Nhwc::new(1, ih - s, iw, ic),
                output: Nhwc::new(1, y1 - y0, ow, oc),
                pad_top: (s as isize - t) as usize,
                ..*g
            },
            input_offset: s * iw * ic,
            output_start: y0 * ow * oc,
            output_end: y1 * ow * oc,
        };
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom(ih: usize, oh: usize, k: usize, s: usize, pad: usize, n: usize) -> Conv2d {
        Conv2d {
            input: Nhwc::new(n, ih, 5, 3),
            output: Nhwc::new(n, oh, 5, 4),
            kh: k,
            kw: 1,
            sh: s,
            sw: 1,
            dh: 1,
            dw: 1,
            pad_top: pad,
            pad_left: 0,
            groups: 1,
        }
    }

    #[test]
    fn bands_cover_the_output_and_map_rows() {
        // 10 input rows, 3×1 window, stride 2, pad 1: output rows 0..5 read rows -1..9
        let g = geom(10, 5, 3, 2, 1, 1);
        let mut parts = [Part::default(); MAX_PARTS];
        let n = rows(&g, 3, &mut parts);
        assert_eq!(n, 3);
        let mut end = 0;
        for p in &parts[..n] {
            assert_eq!(p.output_start, end);
            end = p.output_end;
            // the first output row of the band reads (in whole-layer rows) y0·2 − 1
            let y0 = p.output_start / (5 * 4);
            let first = (y0 * 2) as isize - 1;
            let local = -(p.geom.pad_top as isize);
            assert_eq!(first, (p.input_offset / 15) as isize + local);
            assert_eq!(p.geom.input.h, 10 - p.input_offset / 15);
        }
        assert_eq!(end, g.output.len());
        assert_eq!(parts[0].geom.pad_top, 1);
        assert_eq!(parts[1].geom.pad_top, 0);
    }

    #[test]
    fn batches_split_by_images_and_bottom_padding_is_refused() {
        let g = geom(4, 4, 3, 1, 1, 3);
        let mut parts = [Part::default(); MAX_PARTS];
        assert_eq!(rows(&g, 8, &mut parts), 3);
        assert_eq!(parts[2].input_offset, 2 * 4 * 5 * 3);
        assert_eq!(parts[2].output_end, g.output.len());
        // 2 input rows, 1×1 window, pad 3 top and bottom: in 4 bands, the last (output rows
        // 6, 7) starts below the input
        let g = geom(2, 8, 1, 1, 3, 1);
        assert_eq!(rows(&g, 2, &mut parts), 2);
        assert_eq!(rows(&g, 4, &mut parts), 0);
        assert_eq!(rows(&g, 1, &mut parts), 0);
    }
}
