//! Forward and backward kernels of the training engine (NCHW, f32).
//!
//! Convolutions run as im2col + [`gemm`](super::gemm) per group of images (several small images
//! share one GEMM so its `n` dimension stays ≥ ~256), backward as two GEMMs (`dW += dZ·colᵀ`,
//! `dcol = Wᵀ·dZ`) plus col2im. Heavy kernels split the batch over `threads` scoped threads
//! ([`par_chunks`]); per-thread weight-gradient partials are summed in a fixed order, so results
//! are deterministic for a given thread count.

use std::ops::Range;

use super::gemm::{self, Mat, Scratch};
use crate::ir::{Activation, Window};

/// Split `0..n` into at most `threads` contiguous ranges and run `f` on each (the calling thread
/// runs the last one); results come back in range order.
pub(crate) fn par_ranges<R: Send>(n: usize, threads: usize, f: impl Fn(Range<usize>) -> R + Sync) -> Vec<R> {
    let t = threads.max(1).min(n.max(1));
    if t <= 1 {
        return vec![f(0..n)];
    }
    let per = n.div_ceil(t);
    let ranges: Vec<Range<usize>> = (0..t).map(|i| (i * per).min(n)..((i + 1) * per).min(n)).filter(|r| !r.is_empty()).collect();
    std::thread::scope(|s| {
        let f = &f;
        let (last, rest) = ranges.split_last().expect("at least one range");
        let handles: Vec<_> = rest.iter().cloned().map(|r| s.spawn(move || f(r))).collect();
        let l = f(last.clone());
        let mut out: Vec<R> = handles.into_iter().map(|h| h.join().expect("training worker thread panicked")).collect();
        out.push(l);
        out
    })
}

/// Split `out` into contiguous chunks of whole `unit`-sized items and run `f(items, chunk)` on
/// each on up to `threads` scoped threads; results come back in order.
pub(crate) fn par_chunks<R: Send>(
    out: &mut [f32],
    unit: usize,
    threads: usize,
    f: impl Fn(Range<usize>, &mut [f32]) -> R + Sync,
) -> Vec<R> {
    let n = out.len().checked_div(unit).unwrap_or(0);
    let t = threads.max(1).min(n.max(1));
    if t <= 1 {
        return vec![f(0..n, out)];
    }
    let per = n.div_ceil(t);
    std::thread::scope(|s| {
        let f = &f;
        let mut chunks: Vec<(Range<usize>, &mut [f32])> =
            out.chunks_mut(per * unit).enumerate().map(|(i, c)| (i * per..i * per + c.len() / unit, c)).collect();
        let (r, c) = chunks.pop().expect("at least one chunk");
        let handles: Vec<_> = chunks.into_iter().map(|(r, c)| s.spawn(move || f(r, c))).collect();
        let l = f(r, c);
        let mut res: Vec<R> = handles.into_iter().map(|h| h.join().expect("training worker thread panicked")).collect();
        res.push(l);
        res
    })
}

/// Sum per-thread partial vectors in order.
fn sum_partials(parts: Vec<Vec<f32>>) -> Vec<f32> {
    let mut it = parts.into_iter();
    let mut acc = it.next().unwrap_or_default();
    for p in it {
        for (a, b) in acc.iter_mut().zip(&p) {
            *a += b;
        }
    }
    acc
}

/// `dst = act(src + b)`.
fn bias_act(dst: &mut [f32], src: &[f32], b: f32, act: Activation) {
    match act {
        Activation::None => dst.iter_mut().zip(src).for_each(|(d, &v)| *d = v + b),
        Activation::Relu => dst.iter_mut().zip(src).for_each(|(d, &v)| *d = (v + b).max(0.0)),
        Activation::Clip { min, max } => dst.iter_mut().zip(src).for_each(|(d, &v)| *d = (v + b).max(min).min(max)),
    }
}

/// Gradient through a fused activation, from the activation's output `y`: `dz = dy · act'(z)`.
/// Returns `None` for the identity (use `dy` as is).
pub(crate) fn act_backward(dy: &[f32], y: &[f32], act: Activation) -> Option<Vec<f32>> {
    match act {
        Activation::None => None,
        // Branch-free masks so the loops vectorize.
        Activation::Relu => Some(dy.iter().zip(y).map(|(&g, &v)| g * ((v > 0.0) as u32 as f32)).collect()),
        Activation::Clip { min, max } => Some(dy.iter().zip(y).map(|(&g, &v)| g * (((v > min) & (v < max)) as u32 as f32)).collect()),
    }
}

/// Geometry of a 2-D convolution.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvShape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub group: usize,
    pub kh: usize,
    pub kw: usize,
    pub oh: usize,
    pub ow: usize,
    pub win: Window,
}

impl ConvShape {
    fn cg(&self) -> usize {
        self.c / self.group
    }
    fn og(&self) -> usize {
        self.o / self.group
    }
    fn kg(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
    fn hw(&self) -> usize {
        self.oh * self.ow
    }
    /// Images per GEMM: enough to make `n = imgs·OH·OW` ≥ 256, bounded so the column buffer
    /// stays ≤ ~2 MiB.
    fn imgs_per_gemm(&self) -> usize {
        let hw = self.hw().max(1);
        let by_n = 256usize.div_ceil(hw);
        let by_mem = ((512 * 1024) / (self.kg() * hw).max(1)).max(1);
        by_n.min(by_mem).clamp(1, 32)
    }
}

/// Valid output range `[lo, hi)` of `o` for which `o + off` lies in `[0, len)` (stride 1).
fn valid_range(off: isize, len: usize, outs: usize) -> (usize, usize) {
    let lo = (-off).clamp(0, outs as isize) as usize;
    let hi = (len as isize - off).clamp(lo as isize, outs as isize) as usize;
    (lo, hi)
}

/// im2col of images `imgs` (group `gi`) into `col` (`kg × imgs·hw`, row-major).
fn im2col(x: &[f32], s: &ConvShape, gi: usize, imgs: Range<usize>, col: &mut Vec<f32>) {
    let (hw, kg, cg) = (s.hw(), s.kg(), s.cg());
    let ld = imgs.len() * hw;
    col.resize(kg * ld, 0.0);
    let [sh, sw] = s.win.stride;
    let [dh, dw] = s.win.dilation;
    let (pt, pl) = (s.win.pads[0] as isize, s.win.pads[1] as isize);
    for (gj, n) in imgs.enumerate() {
        for ci in 0..cg {
            let plane = &x[(n * s.c + gi * cg + ci) * s.h * s.w..][..s.h * s.w];
            for ky in 0..s.kh {
                for kx in 0..s.kw {
                    let row = (ci * s.kh + ky) * s.kw + kx;
                    let dst = &mut col[row * ld + gj * hw..][..hw];
                    let xoff = (kx * dw) as isize - pl;
                    for oy in 0..s.oh {
                        let iy = (oy * sh + ky * dh) as isize - pt;
                        let drow = &mut dst[oy * s.ow..(oy + 1) * s.ow];
                        if iy < 0 || iy >= s.h as isize {
                            drow.fill(0.0);
                            continue;
                        }
                        let src = &plane[iy as usize * s.w..][..s.w];
                        if sw == 1 {
                            let (lo, hi) = valid_range(xoff, s.w, s.ow);
                            drow[..lo].fill(0.0);
                            drow[lo..hi].copy_from_slice(&src[(lo as isize + xoff) as usize..(hi as isize + xoff) as usize]);
                            drow[hi..].fill(0.0);
                        } else {
                            for (ox, d) in drow.iter_mut().enumerate() {
                                let ix = (ox * sw) as isize + xoff;
                                *d = if ix >= 0 && ix < s.w as isize { src[ix as usize] } else { 0.0 };
                            }
                        }
                    }
                }
            }
        }
    }
}

/// col2im: accumulate `dcol` (`kg × imgs·hw`) of images `imgs` (group `gi`) into `dx`, whose
/// first image is `first`.
fn col2im(dcol: &[f32], s: &ConvShape, gi: usize, imgs: Range<usize>, first: usize, dx: &mut [f32]) {
    let (hw, cg) = (s.hw(), s.cg());
    let ld = imgs.len() * hw;
    let [sh, sw] = s.win.stride;
    let [dh, dw] = s.win.dilation;
    let (pt, pl) = (s.win.pads[0] as isize, s.win.pads[1] as isize);
    for (gj, n) in imgs.enumerate() {
        for ci in 0..cg {
            let plane = &mut dx[((n - first) * s.c + gi * cg + ci) * s.h * s.w..][..s.h * s.w];
            for ky in 0..s.kh {
                for kx in 0..s.kw {
                    let row = (ci * s.kh + ky) * s.kw + kx;
                    let src = &dcol[row * ld + gj * hw..][..hw];
                    let xoff = (kx * dw) as isize - pl;
                    for oy in 0..s.oh {
                        let iy = (oy * sh + ky * dh) as isize - pt;
                        if iy < 0 || iy >= s.h as isize {
                            continue;
                        }
                        let srow = &src[oy * s.ow..(oy + 1) * s.ow];
                        let drow = &mut plane[iy as usize * s.w..][..s.w];
                        if sw == 1 {
                            let (lo, hi) = valid_range(xoff, s.w, s.ow);
                            let d = &mut drow[(lo as isize + xoff) as usize..(hi as isize + xoff) as usize];
                            for (a, &b) in d.iter_mut().zip(&srow[lo..hi]) {
                                *a += b;
                            }
                        } else {
                            for (ox, &g) in srow.iter().enumerate() {
                                let ix = (ox * sw) as isize + xoff;
                                if ix >= 0 && ix < s.w as isize {
                                    drow[ix as usize] += g;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Whether a convolution is depthwise with one output per input channel (run directly, not as
/// one tiny GEMM per group).
fn is_depthwise(s: &ConvShape) -> bool {
    s.group > 1 && s.group == s.c && s.o == s.c
}

/// Visit the taps of one depthwise plane: for every kernel position `(ky, kx)`, every output row
/// `oy` and the run of output columns `lo..hi` whose input pixel is inside the image, call
/// `f(tap, oy, iy, lo, hi, ix0)` where input column = `ix0 + ox·sw`.
fn dw_taps(s: &ConvShape, mut f: impl FnMut(usize, usize, usize, usize, usize, isize)) {
    let [sh, sw] = s.win.stride;
    let [dh, dwl] = s.win.dilation;
    let (pt, pl) = (s.win.pads[0] as isize, s.win.pads[1] as isize);
    for ky in 0..s.kh {
        for kx in 0..s.kw {
            let xoff = (kx * dwl) as isize - pl;
            // ox valid when 0 ≤ ox·sw + xoff < w.
            let lo = if xoff >= 0 { 0 } else { ((-xoff) as usize).div_ceil(sw) };
            let hi = if (s.w as isize) <= xoff { 0 } else { ((s.w as isize - xoff) as usize).div_ceil(sw).min(s.ow) };
            if lo >= hi {
                continue;
            }
            for oy in 0..s.oh {
                let iy = (oy * sh + ky * dh) as isize - pt;
                if iy < 0 || iy >= s.h as isize {
                    continue;
                }
                f(ky * s.kw + kx, oy, iy as usize, lo, hi, xoff);
            }
        }
    }
}

/// Direct depthwise convolution forward.
fn dw_forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, s: &ConvShape, act: Activation, threads: usize) -> Vec<f32> {
    let (hw, kk, plane) = (s.hw(), s.kh * s.kw, s.h * s.w);
    let sw = s.win.stride[1];
    let mut y = vec![0.0f32; s.n * s.c * hw];
    if y.is_empty() {
        return y;
    }
    par_chunks(&mut y, hw, threads, |range, ych| {
        let mut acc = vec![0.0f32; hw];
        for (p, yp) in range.clone().zip(ych.chunks_mut(hw)) {
            let ch = p % s.c;
            let xp = &x[p * plane..][..plane];
            let wk = &w[ch * kk..][..kk];
            acc.fill(0.0);
            dw_taps(s, |t, oy, iy, lo, hi, xoff| {
                let wv = wk[t];
                let row = &mut acc[oy * s.ow..][lo..hi];
                let src = &xp[iy * s.w..][..s.w];
                if sw == 1 {
                    let start = (lo as isize + xoff) as usize;
                    for (a, &v) in row.iter_mut().zip(&src[start..start + (hi - lo)]) {
                        *a += wv * v;
                    }
                } else {
                    for (j, a) in row.iter_mut().enumerate() {
                        *a += wv * src[(((lo + j) * sw) as isize + xoff) as usize];
                    }
                }
            });
            bias_act(yp, &acc, bias.map_or(0.0, |b| b[ch]), act);
        }
    });
    y
}

/// Direct depthwise convolution backward (`dz` = gradient before the fused activation).
fn dw_backward(x: &[f32], w: &[f32], dz: &[f32], s: &ConvShape, need: (bool, bool, bool), threads: usize) -> ConvGrads {
    let (hw, kk, plane) = (s.hw(), s.kh * s.kw, s.h * s.w);
    let sw = s.win.stride[1];
    let (need_dx, need_dw, need_db) = need;
    let work = |range: Range<usize>, mut dx: Option<&mut [f32]>| -> (Vec<f32>, Vec<f32>) {
        let mut dwv = if need_dw { vec![0.0f32; s.c * kk] } else { Vec::new() };
        let mut db = if need_db { vec![0.0f32; s.c] } else { Vec::new() };
        for n in range.clone() {
            for ch in 0..s.c {
                let p = n * s.c + ch;
                let g = &dz[p * hw..][..hw];
                if need_db {
                    db[ch] += g.iter().sum::<f32>();
                }
                let xp = &x[p * plane..][..plane];
                let wk = &w[ch * kk..][..kk];
                let mut dxp = dx.as_deref_mut().map(|d| &mut d[((n - range.start) * s.c + ch) * plane..][..plane]);
                dw_taps(s, |t, oy, iy, lo, hi, xoff| {
                    let grow = &g[oy * s.ow..][lo..hi];
                    if sw == 1 {
                        let start = iy * s.w + (lo as isize + xoff) as usize;
                        if need_dw {
                            dwv[ch * kk + t] += grow.iter().zip(&xp[start..start + grow.len()]).map(|(a, b)| a * b).sum::<f32>();
                        }
                        if let Some(d) = dxp.as_deref_mut() {
                            let wv = wk[t];
                            for (a, &gv) in d[start..start + grow.len()].iter_mut().zip(grow) {
                                *a += wv * gv;
                            }
                        }
                    } else {
                        let base = iy * s.w;
                        let mut acc = 0.0f32;
                        for (j, &gv) in grow.iter().enumerate() {
                            let ix = base + (((lo + j) * sw) as isize + xoff) as usize;
                            acc += gv * xp[ix];
                            if let Some(d) = dxp.as_deref_mut() {
                                d[ix] += wk[t] * gv;
                            }
                        }
                        if need_dw {
                            dwv[ch * kk + t] += acc;
                        }
                    }
                });
            }
        }
        (dwv, db)
    };
    let img_in = s.c * plane;
    let (dx, parts) = if need_dx {
        let mut dx = vec![0.0f32; s.n * img_in];
        let parts = par_chunks(&mut dx, img_in, threads, |r, chunk| work(r, Some(chunk)));
        (Some(dx), parts)
    } else {
        (None, par_ranges(s.n, threads, |r| work(r, None)))
    };
    let (dws, dbs): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
    ConvGrads { dx, dw: need_dw.then(|| sum_partials(dws)), db: need_db.then(|| sum_partials(dbs)) }
}

/// Convolution forward: `y = act(conv(x, w) + b)`.
pub(crate) fn conv_forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, s: &ConvShape, act: Activation, threads: usize) -> Vec<f32> {
    if is_depthwise(s) {
        return dw_forward(x, w, bias, s, act, threads);
    }
    let (og, kg, hw) = (s.og(), s.kg(), s.hw());
    let img_out = s.o * hw;
    let mut y = vec![0.0f32; s.n * img_out];
    if y.is_empty() {
        return y;
    }
    let packed: Vec<Vec<f32>> = (0..s.group)
        .map(|gi| {
            let mut pa = Vec::new();
            gemm::pack_a(og, kg, Mat::rows(&w[gi * og * kg..], kg), &mut pa);
            pa
        })
        .collect();
    let gsz = s.imgs_per_gemm();
    par_chunks(&mut y, img_out, threads, |range, ych| {
        let (mut col, mut pb, mut tmp) = (Vec::new(), Vec::new(), Vec::new());
        let mut start = range.start;
        while start < range.end {
            let imgs = start..(start + gsz).min(range.end);
            let ld = imgs.len() * hw;
            for (gi, pa) in packed.iter().enumerate() {
                im2col(x, s, gi, imgs.clone(), &mut col);
                gemm::pack_b(kg, ld, Mat::rows(&col, ld), &mut pb);
                tmp.resize(og * ld, 0.0);
                gemm::gemm_packed(og, ld, kg, pa, &pb, &mut tmp, ld, false);
                for (gj, n) in imgs.clone().enumerate() {
                    let yimg = &mut ych[(n - range.start) * img_out..][..img_out];
                    for oc in 0..og {
                        let ch = gi * og + oc;
                        bias_act(&mut yimg[ch * hw..][..hw], &tmp[oc * ld + gj * hw..][..hw], bias.map_or(0.0, |b| b[ch]), act);
                    }
                }
            }
            start = imgs.end;
        }
    });
    y
}

/// Gradients of a convolution.
pub(crate) struct ConvGrads {
    pub dx: Option<Vec<f32>>,
    pub dw: Option<Vec<f32>>,
    pub db: Option<Vec<f32>>,
}

/// Convolution backward from the output gradient `dy` (through the fused activation, using the
/// output `y`). `need` = (dx, dw, db).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_backward(
    x: &[f32],
    w: &[f32],
    y: &[f32],
    dy: &[f32],
    s: &ConvShape,
    act: Activation,
    need: (bool, bool, bool),
    threads: usize,
) -> ConvGrads {
    let (og, kg, hw) = (s.og(), s.kg(), s.hw());
    let dz_owned = act_backward(dy, y, act);
    let dz: &[f32] = dz_owned.as_deref().unwrap_or(dy);
    if is_depthwise(s) {
        return dw_backward(x, w, dz, s, need, threads);
    }
    let (need_dx, need_dw, need_db) = need;
    let packed_wt: Vec<Vec<f32>> = if need_dx {
        (0..s.group)
            .map(|gi| {
                let mut pa = Vec::new();
                gemm::pack_a(kg, og, Mat::trans(&w[gi * og * kg..], kg), &mut pa);
                pa
            })
            .collect()
    } else {
        Vec::new()
    };
    let gsz = s.imgs_per_gemm();
    let img_in = s.c * s.h * s.w;
    let img_out = s.o * hw;
    let work = |range: Range<usize>, mut dx: Option<&mut [f32]>| -> (Vec<f32>, Vec<f32>) {
        let mut dw = if need_dw { vec![0.0f32; s.o * kg] } else { Vec::new() };
        let mut db = if need_db { vec![0.0f32; s.o] } else { Vec::new() };
        let (mut col, mut dzg, mut dcol, mut pb) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut sc = Scratch::default();
        let mut start = range.start;
        while start < range.end {
            let imgs = start..(start + gsz).min(range.end);
            let ld = imgs.len() * hw;
            for gi in 0..s.group {
                dzg.resize(og * ld, 0.0);
                for (gj, n) in imgs.clone().enumerate() {
                    for oc in 0..og {
                        dzg[oc * ld + gj * hw..][..hw].copy_from_slice(&dz[n * img_out + (gi * og + oc) * hw..][..hw]);
                    }
                }
                if need_db {
                    for oc in 0..og {
                        db[gi * og + oc] += dzg[oc * ld..(oc + 1) * ld].iter().sum::<f32>();
                    }
                }
                if need_dw {
                    im2col(x, s, gi, imgs.clone(), &mut col);
                    gemm::gemm(og, kg, ld, Mat::rows(&dzg, ld), Mat::trans(&col, ld), &mut dw[gi * og * kg..], kg, true, &mut sc);
                }
                if let Some(dx) = dx.as_deref_mut() {
                    gemm::pack_b(og, ld, Mat::rows(&dzg, ld), &mut pb);
                    dcol.resize(kg * ld, 0.0);
                    gemm::gemm_packed(kg, ld, og, &packed_wt[gi], &pb, &mut dcol, ld, false);
                    col2im(&dcol, s, gi, imgs.clone(), range.start, dx);
                }
            }
            start = imgs.end;
        }
        (dw, db)
    };
    let (dx, parts) = if need_dx {
        let mut dx = vec![0.0f32; s.n * img_in];
        let parts = par_chunks(&mut dx, img_in, threads, |r, chunk| work(r, Some(chunk)));
        (Some(dx), parts)
    } else {
        (None, par_ranges(s.n, threads, |r| work(r, None)))
    };
    let (dws, dbs): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
    ConvGrads { dx, dw: need_dw.then(|| sum_partials(dws)), db: need_db.then(|| sum_partials(dbs)) }
}

/// Dense forward: `y[m, n] = act(x[m, k] · w[n, k]ᵀ + b)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dense_forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
    act: Activation,
    threads: usize,
) -> Vec<f32> {
    let mut y = vec![0.0f32; m * n];
    if y.is_empty() {
        return y;
    }
    let mut pb = Vec::new();
    gemm::pack_b(k, n, Mat::trans(w, k), &mut pb);
    let threads = if m * n * k < (1 << 18) { 1 } else { threads };
    par_chunks(&mut y, n, threads, |rows, ych| {
        let mut pa = Vec::new();
        gemm::pack_a(rows.len(), k, Mat::rows(&x[rows.start * k..], k), &mut pa);
        gemm::gemm_packed(rows.len(), n, k, &pa, &pb, ych, n, false);
        for row in ych.chunks_mut(n) {
            for (j, v) in row.iter_mut().enumerate() {
                *v = act.apply(*v + bias.map_or(0.0, |b| b[j]));
            }
        }
    });
    y
}

/// Dense backward; `need` = (dx, dw, db). Returns (dx, dw, db).
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub(crate) fn dense_backward(
    x: &[f32],
    w: &[f32],
    y: &[f32],
    dy: &[f32],
    (m, k, n): (usize, usize, usize),
    act: Activation,
    need: (bool, bool, bool),
    threads: usize,
) -> (Option<Vec<f32>>, Option<Vec<f32>>, Option<Vec<f32>>) {
    let dz_owned = act_backward(dy, y, act);
    let dz: &[f32] = dz_owned.as_deref().unwrap_or(dy);
    let threads = if m * n * k < (1 << 18) { 1 } else { threads };
    let dx = need.0.then(|| {
        let mut dx = vec![0.0f32; m * k];
        let mut pb = Vec::new();
        gemm::pack_b(n, k, Mat::rows(w, k), &mut pb);
        par_chunks(&mut dx, k, threads, |rows, chunk| {
            let mut pa = Vec::new();
            gemm::pack_a(rows.len(), n, Mat::rows(&dz[rows.start * n..], n), &mut pa);
            gemm::gemm_packed(rows.len(), k, n, &pa, &pb, chunk, k, false);
        });
        dx
    });
    let dw = need.1.then(|| {
        let mut dw = vec![0.0f32; n * k];
        par_chunks(&mut dw, k, threads, |rows, chunk| {
            let mut sc = Scratch::default();
            let a = Mat { data: &dz[rows.start..], rs: 1, cs: n };
            gemm::gemm(rows.len(), k, m, a, Mat::rows(x, k), chunk, k, false, &mut sc);
        });
        dw
    });
    let db = need.2.then(|| {
        let mut db = vec![0.0f32; n];
        for row in dz.chunks(n) {
            for (a, &b) in db.iter_mut().zip(row) {
                *a += b;
            }
        }
        db
    });
    (dx, dw, db)
}

/// Pooling geometry: input `[planes, h, w]`, output `[planes, oh, ow]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolShape {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
    pub win: Window,
}

/// Max pooling forward; also returns the argmax (index within the input plane, `u32::MAX` for
/// an all-padding window).
pub(crate) fn maxpool_forward(x: &[f32], s: &PoolShape, threads: usize) -> (Vec<f32>, Vec<u32>) {
    let (ohw, hw) = (s.oh * s.ow, s.h * s.w);
    let mut y = vec![0.0f32; s.planes * ohw];
    let mut arg = vec![u32::MAX; s.planes * ohw];
    if y.is_empty() {
        return (y, arg);
    }
    let [kh, kw] = s.win.kernel;
    let [sh, sw] = s.win.stride;
    let [dh, dw] = s.win.dilation;
    let (pt, pl) = (s.win.pads[0] as isize, s.win.pads[1] as isize);
    // Every window inside the input (no padding reached): no bounds checks.
    let interior = s.win.pads == [0; 4] && (s.oh - 1) * sh + (kh - 1) * dh < s.h && (s.ow - 1) * sw + (kw - 1) * dw < s.w;
    let args = par_chunks(&mut y, ohw, threads, |planes, ych| {
        let mut a = vec![u32::MAX; planes.len() * ohw];
        for (pi, p) in planes.clone().enumerate() {
            let ip = &x[p * hw..][..hw];
            if interior {
                let yp = &mut ych[pi * ohw..][..ohw];
                let ap = &mut a[pi * ohw..][..ohw];
                for oy in 0..s.oh {
                    for ox in 0..s.ow {
                        let base = oy * sh * s.w + ox * sw;
                        let mut am = base;
                        let mut mx = ip[base];
                        for ky in 0..kh {
                            let row = base + ky * dh * s.w;
                            for kx in 0..kw {
                                let idx = row + kx * dw;
                                let v = ip[idx];
                                if v > mx {
                                    mx = v;
                                    am = idx;
                                }
                            }
                        }
                        yp[oy * s.ow + ox] = mx;
                        ap[oy * s.ow + ox] = am as u32;
                    }
                }
                continue;
            }
            for oy in 0..s.oh {
                for ox in 0..s.ow {
                    let (y0, x0) = ((oy * sh) as isize - pt, (ox * sw) as isize - pl);
                    let mut mx = f32::NEG_INFINITY;
                    let mut am = u32::MAX;
                    for ky in 0..kh {
                        let iy = y0 + (ky * dh) as isize;
                        if iy < 0 || iy >= s.h as isize {
                            continue;
                        }
                        for kx in 0..kw {
                            let ix = x0 + (kx * dw) as isize;
                            if ix < 0 || ix >= s.w as isize {
                                continue;
                            }
                            let idx = iy as usize * s.w + ix as usize;
                            let v = ip[idx];
                            if v > mx || am == u32::MAX {
                                mx = mx.max(v);
                                am = idx as u32;
                            }
                        }
                    }
                    ych[pi * ohw + oy * s.ow + ox] = mx;
                    a[pi * ohw + oy * s.ow + ox] = am;
                }
            }
        }
        a
    });
    let mut o = 0;
    for a in args {
        arg[o..o + a.len()].copy_from_slice(&a);
        o += a.len();
    }
    (y, arg)
}

/// Max pooling backward: scatter `dy` to the argmax positions.
pub(crate) fn maxpool_backward(dy: &[f32], arg: &[u32], s: &PoolShape, threads: usize) -> Vec<f32> {
    let (ohw, hw) = (s.oh * s.ow, s.h * s.w);
    let mut dx = vec![0.0f32; s.planes * hw];
    par_chunks(&mut dx, hw, threads, |planes, chunk| {
        for (pi, p) in planes.enumerate() {
            let d = &mut chunk[pi * hw..][..hw];
            for (&g, &a) in dy[p * ohw..][..ohw].iter().zip(&arg[p * ohw..][..ohw]) {
                if a != u32::MAX {
                    d[a as usize] += g;
                }
            }
        }
    });
    dx
}

/// Average-pool divisor of the window starting at `(y0, x0)` (same rules as the FP32 engine).
fn avg_divisor(s: &PoolShape, y0: isize, x0: isize, include_pad: bool) -> f32 {
    let [kh, kw] = s.win.kernel;
    let [dh, dw] = s.win.dilation;
    if include_pad {
        let (hp, wp) = ((s.h + s.win.pads[2]) as isize, (s.w + s.win.pads[3]) as isize);
        let y1 = (y0 + (dh * (kh - 1) + 1) as isize).min(hp);
        let x1 = (x0 + (dw * (kw - 1) + 1) as isize).min(wp);
        let ny = (y1 - y0 + dh as isize - 1) / dh as isize;
        let nx = (x1 - x0 + dw as isize - 1) / dw as isize;
        (ny * nx).max(1) as f32
    } else {
        let mut cnt = 0usize;
        for ky in 0..kh {
            let iy = y0 + (ky * dh) as isize;
            if iy >= 0 && iy < s.h as isize {
                for kx in 0..kw {
                    let ix = x0 + (kx * dw) as isize;
                    if ix >= 0 && ix < s.w as isize {
                        cnt += 1;
                    }
                }
            }
        }
        cnt.max(1) as f32
    }
}

/// Average pooling backward: spread `dy / divisor` over the window's in-range cells.
pub(crate) fn avgpool_backward(dy: &[f32], s: &PoolShape, include_pad: bool, threads: usize) -> Vec<f32> {
    let (ohw, hw) = (s.oh * s.ow, s.h * s.w);
    let mut dx = vec![0.0f32; s.planes * hw];
    let [kh, kw] = s.win.kernel;
    let [sh, sw] = s.win.stride;
    let [dh, dw] = s.win.dilation;
    let (pt, pl) = (s.win.pads[0] as isize, s.win.pads[1] as isize);
    par_chunks(&mut dx, hw, threads, |planes, chunk| {
        for (pi, p) in planes.enumerate() {
            let d = &mut chunk[pi * hw..][..hw];
            for oy in 0..s.oh {
                for ox in 0..s.ow {
                    let (y0, x0) = ((oy * sh) as isize - pt, (ox * sw) as isize - pl);
                    let g = dy[p * ohw + oy * s.ow + ox] / avg_divisor(s, y0, x0, include_pad);
                    for ky in 0..kh {
                        let iy = y0 + (ky * dh) as isize;
                        if iy < 0 || iy >= s.h as isize {
                            continue;
                        }
                        for kx in 0..kw {
                            let ix = x0 + (kx * dw) as isize;
                            if ix >= 0 && ix < s.w as isize {
                                d[iy as usize * s.w + ix as usize] += g;
                            }
                        }
                    }
                }
            }
        }
    });
    dx
}

/// Batch statistics of a training-mode BatchNorm.
#[derive(Clone, Debug)]
pub(crate) struct BnStats {
    /// Per-channel batch mean.
    pub mean: Vec<f32>,
    /// Per-channel `1/sqrt(var + eps)` with the biased batch variance.
    pub invstd: Vec<f32>,
    /// Per-channel unbiased batch variance (for the running estimate).
    pub var_unbiased: Vec<f32>,
}

/// BatchNorm forward over `x` `[n, c, inner]`. With `stats == None` the batch statistics are
/// computed (training mode) and returned; otherwise the given `(mean, var)` are used.
#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_forward(
    x: &[f32],
    (n, c, inner): (usize, usize, usize),
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    running: Option<(&[f32], &[f32])>,
    threads: usize,
) -> (Vec<f32>, BnStats) {
    let stats = match running {
        Some((mean, var)) => {
            BnStats { mean: mean.to_vec(), invstd: var.iter().map(|&v| 1.0 / (v + eps).sqrt()).collect(), var_unbiased: var.to_vec() }
        }
        None => {
            let parts = par_ranges(n, threads, |imgs| {
                let mut acc = vec![0.0f64; 2 * c];
                for i in imgs {
                    for ch in 0..c {
                        let row = &x[(i * c + ch) * inner..][..inner];
                        let (mut s, mut q) = (0.0f32, 0.0f32);
                        for &v in row {
                            s += v;
                            q += v * v;
                        }
                        acc[2 * ch] += s as f64;
                        acc[2 * ch + 1] += q as f64;
                    }
                }
                acc
            });
            let mut tot = vec![0.0f64; 2 * c];
            for p in parts {
                for (a, b) in tot.iter_mut().zip(p) {
                    *a += b;
                }
            }
            let cnt = (n * inner).max(1) as f64;
            let mut mean = Vec::with_capacity(c);
            let mut invstd = Vec::with_capacity(c);
            let mut var_unbiased = Vec::with_capacity(c);
            for ch in 0..c {
                let m = tot[2 * ch] / cnt;
                let var = (tot[2 * ch + 1] / cnt - m * m).max(0.0);
                mean.push(m as f32);
                invstd.push((1.0 / (var + eps as f64).sqrt()) as f32);
                var_unbiased.push(if cnt > 1.0 { (var * cnt / (cnt - 1.0)) as f32 } else { var as f32 });
            }
            BnStats { mean, invstd, var_unbiased }
        }
    };
    let mut y = vec![0.0f32; x.len()];
    let scale: Vec<f32> = (0..c).map(|ch| gamma[ch] * stats.invstd[ch]).collect();
    let shift: Vec<f32> = (0..c).map(|ch| beta[ch] - stats.mean[ch] * scale[ch]).collect();
    if inner > 0 {
        par_chunks(&mut y, c * inner, threads, |imgs, chunk| {
            for (r, row) in chunk.chunks_mut(inner).enumerate() {
                let ch = r % c;
                let src = &x[(imgs.start * c + r) * inner..][..inner];
                let (a, b) = (scale[ch], shift[ch]);
                for (d, &v) in row.iter_mut().zip(src) {
                    *d = v * a + b;
                }
            }
        });
    }
    (y, stats)
}

/// BatchNorm backward. `train` selects batch statistics (gradient through mean and variance)
/// or fixed statistics. Returns (dx, dgamma, dbeta).
#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_backward(
    x: &[f32],
    dy: &[f32],
    (n, c, inner): (usize, usize, usize),
    gamma: &[f32],
    stats: &BnStats,
    train: bool,
    need_dx: bool,
    threads: usize,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let parts = par_ranges(n, threads, |imgs| {
        let mut acc = vec![0.0f64; 2 * c];
        for i in imgs {
            for ch in 0..c {
                let o = (i * c + ch) * inner;
                let (m, is) = (stats.mean[ch], stats.invstd[ch]);
                let (mut sd, mut sdx) = (0.0f32, 0.0f32);
                for (&g, &v) in dy[o..o + inner].iter().zip(&x[o..o + inner]) {
                    sd += g;
                    sdx += g * (v - m) * is;
                }
                acc[2 * ch] += sd as f64;
                acc[2 * ch + 1] += sdx as f64;
            }
        }
        acc
    });
    let mut tot = vec![0.0f64; 2 * c];
    for p in parts {
        for (a, b) in tot.iter_mut().zip(p) {
            *a += b;
        }
    }
    let dbeta: Vec<f32> = (0..c).map(|ch| tot[2 * ch] as f32).collect();
    let dgamma: Vec<f32> = (0..c).map(|ch| tot[2 * ch + 1] as f32).collect();
    let dx = need_dx.then(|| {
        let mut dx = vec![0.0f32; x.len()];
        let cnt = (n * inner).max(1) as f32;
        if inner > 0 {
            par_chunks(&mut dx, c * inner, threads, |imgs, chunk| {
                for (r, row) in chunk.chunks_mut(inner).enumerate() {
                    let ch = r % c;
                    let o = (imgs.start * c + r) * inner;
                    let (m, is) = (stats.mean[ch], stats.invstd[ch]);
                    let k = gamma[ch] * is;
                    if train {
                        let (mb, mg) = (dbeta[ch] / cnt, dgamma[ch] / cnt);
                        for ((d, &g), &v) in row.iter_mut().zip(&dy[o..o + inner]).zip(&x[o..o + inner]) {
                            *d = k * (g - mb - (v - m) * is * mg);
                        }
                    } else {
                        for (d, &g) in row.iter_mut().zip(&dy[o..o + inner]) {
                            *d = k * g;
                        }
                    }
                }
            });
        }
        dx
    });
    (dx, dgamma, dbeta)
}

/// Strides of `shape` broadcast into `out` (0 on broadcast axes), right-aligned.
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

/// Call `f(out_index, offset_a, offset_b)` for every element of `out` in order, with the
/// broadcast offsets of two operands (strides from [`bcast_strides`]).
pub(crate) fn for_each_bcast(out: &[usize], sa: &[usize], sb: &[usize], mut f: impl FnMut(usize, usize, usize)) {
    let total: usize = out.iter().product();
    if total == 0 {
        return;
    }
    let r = out.len();
    if r == 0 {
        f(0, 0, 0);
        return;
    }
    let inner = out[r - 1];
    let (ia, ib) = (sa[r - 1], sb[r - 1]);
    let mut idx = vec![0usize; r];
    let (mut oa, mut ob) = (0usize, 0usize);
    let mut o = 0;
    loop {
        for j in 0..inner {
            f(o + j, oa + j * ia, ob + j * ib);
        }
        o += inner;
        let mut d = r - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            oa += sa[d];
            ob += sb[d];
            if idx[d] < out[d] {
                break;
            }
            oa -= sa[d] * out[d];
            ob -= sb[d] * out[d];
            idx[d] = 0;
        }
    }
}

/// Sum a gradient of shape `out` down to a broadcast operand of shape `shape`.
pub(crate) fn reduce_to(g: &[f32], out: &[usize], shape: &[usize]) -> Vec<f32> {
    if shape == out {
        return g.to_vec();
    }
    let n: usize = shape.iter().product();
    let mut r = vec![0.0f32; n];
    let sa = bcast_strides(shape, out);
    let zero = vec![0; out.len()];
    for_each_bcast(out, &sa, &zero, |o, ia, _| r[ia] += g[o]);
    r
}

/// Strides of a contiguous tensor.
pub(crate) fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut st = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        st[i] = st[i + 1] * shape[i + 1];
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn par_helpers_cover_everything_in_order() {
        for threads in 1..5 {
            let r = par_ranges(10, threads, |r| r.collect::<Vec<_>>());
            assert_eq!(r.concat(), (0..10).collect::<Vec<_>>());
            let mut v = vec![0.0f32; 12];
            let firsts = par_chunks(&mut v, 3, threads, |items, chunk| {
                for (i, c) in chunk.chunks_mut(3).enumerate() {
                    c.fill((items.start + i) as f32);
                }
                items.start
            });
            assert_eq!(firsts[0], 0);
            assert_eq!(v, vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0]);
        }
    }

    #[test]
    fn reduce_to_sums_broadcast_axes() {
        let g: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let r = reduce_to(&g, &[2, 3, 4], &[3, 1]);
        let want: Vec<f32> = (0..3).map(|c| (0..2).flat_map(|n| (0..4).map(move |w| ((n * 3 + c) * 4 + w) as f32)).sum()).collect();
        assert_eq!(r, want);
        assert_eq!(reduce_to(&g, &[2, 3, 4], &[1]), vec![276.0]);
    }
}
