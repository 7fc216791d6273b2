//! Kernels of the FP32 engine. Each takes input views and the (already checked) output shape.

use super::gemm::{self, PackedA, MR, NR};
use crate::ir::{Activation, Window};

/// Borrowed tensor view.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub shape: &'a [usize],
    pub data: &'a [f32],
}

/// Run `f(first_unit, chunk)` over `out` split into contiguous chunks of whole `unit`-sized
/// pieces, on up to `threads` scoped threads.
pub(crate) fn par_chunks<F>(out: &mut [f32], unit: usize, threads: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let units = out.len().checked_div(unit).unwrap_or(0);
    let t = threads.max(1).min(units.max(1));
    if t <= 1 {
        f(0, out);
        return;
    }
    let per = units.div_ceil(t);
    std::thread::scope(|s| {
        let f = &f;
        for (i, chunk) in out.chunks_mut(per * unit).enumerate() {
            s.spawn(move || f(i * per, chunk));
        }
    });
}

fn apply_act(v: &mut [f32], act: Activation) {
    match act {
        Activation::None => {}
        Activation::Relu => v.iter_mut().for_each(|x| *x = x.max(0.0)),
        Activation::Clip { min, max } => v.iter_mut().for_each(|x| *x = x.max(min).min(max)),
    }
}

fn fill_bias(out: &mut [f32], bias: Option<&[f32]>, channels: usize, plane: usize) {
    match bias {
        Some(b) => {
            for (c, row) in out.chunks_mut(plane).enumerate() {
                row.fill(b[c % channels]);
            }
        }
        None => out.fill(0.0),
    }
}

/// Geometry of one 2-D convolution.
#[derive(Clone, Copy)]
struct ConvGeom {
    c: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    win: Window,
}

/// Pack the im2col matrix of one image/group (`cg·kh·kw × oh·ow`) straight into `NR` panels.
fn im2col_packed(x: &[f32], cg: usize, g: &ConvGeom, out: &mut Vec<[f32; NR]>) {
    let k = cg * g.kh * g.kw;
    let n = g.oh * g.ow;
    out.clear();
    out.resize(gemm::panels(n, NR) * k, [0.0; NR]);
    let (sh, sw) = (g.win.stride[0] as isize, g.win.stride[1] as isize);
    let (dh, dw) = (g.win.dilation[0] as isize, g.win.dilation[1] as isize);
    let (pt, pl) = (g.win.pads[0] as isize, g.win.pads[1] as isize);
    let (h, w) = (g.h as isize, g.w as isize);
    for q in 0..gemm::panels(n, NR) {
        let j0 = q * NR;
        let cols = NR.min(n - j0);
        let mut iy0 = [0isize; NR];
        let mut ix0 = [0isize; NR];
        for j in 0..cols {
            let p = j0 + j;
            iy0[j] = (p / g.ow) as isize * sh - pt;
            ix0[j] = (p % g.ow) as isize * sw - pl;
        }
        let dst = &mut out[q * k..(q + 1) * k];
        let mut kk = 0;
        for c in 0..cg {
            let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
            for ky in 0..g.kh as isize {
                for kx in 0..g.kw as isize {
                    let d = &mut dst[kk];
                    for j in 0..cols {
                        let iy = iy0[j] + ky * dh;
                        let ix = ix0[j] + kx * dw;
                        d[j] = if iy >= 0 && iy < h && ix >= 0 && ix < w { plane[(iy * w + ix) as usize] } else { 0.0 };
                    }
                    kk += 1;
                }
            }
        }
    }
}

/// 2-D convolution (grouped, dilated, padded) with optional bias and fused activation.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d(
    x: View<'_>,
    w: View<'_>,
    bias: Option<&[f32]>,
    win: &Window,
    group: usize,
    act: Activation,
    out_shape: &[usize],
    threads: usize,
) -> Vec<f32> {
    let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (o, cg, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3]);
    let (oh, ow) = (out_shape[2], out_shape[3]);
    let og = o / group;
    let kg = cg * kh * kw;
    let hw = oh * ow;
    let geom = ConvGeom { c, h, w: wd, oh, ow, kh, kw, win: *win };
    let mut out = vec![0.0f32; n * o * hw];
    if out.is_empty() {
        return out;
    }
    if group == c && cg == 1 && og == 1 {
        depthwise(x.data, w.data, bias, &geom, act, &mut out, threads);
        return out;
    }
    let packed: Vec<PackedA> = (0..group).map(|gi| PackedA::from_rows(&w.data[gi * og * kg..], og, kg, kg)).collect();
    let img_in = c * h * wd;
    let img_out = o * hw;
    let run_image = |ni: usize, out_img: &mut [f32], buf: &mut Vec<[f32; NR]>| {
        fill_bias(out_img, bias, o, hw);
        for (gi, pa) in packed.iter().enumerate() {
            let xg = &x.data[ni * img_in + gi * cg * h * wd..][..cg * h * wd];
            im2col_packed(xg, cg, &geom, buf);
            gemm::gemm_acc(og, hw, kg, &pa.data, buf, &mut out_img[gi * og * hw..(gi + 1) * og * hw], hw);
        }
        apply_act(out_img, act);
    };
    if n >= threads || threads <= 1 {
        par_chunks(&mut out, img_out, threads, |first, chunk| {
            let mut buf = Vec::new();
            for (i, img) in chunk.chunks_mut(img_out).enumerate() {
                run_image(first + i, img, &mut buf);
            }
        });
    } else {
        // Few images: parallelise each image's GEMM over output-channel panels.
        let mut buf = Vec::new();
        for (ni, out_img) in out.chunks_mut(img_out).enumerate() {
            fill_bias(out_img, bias, o, hw);
            for (gi, pa) in packed.iter().enumerate() {
                let xg = &x.data[ni * img_in + gi * cg * h * wd..][..cg * h * wd];
                im2col_packed(xg, cg, &geom, &mut buf);
                let cgrp = &mut out_img[gi * og * hw..(gi + 1) * og * hw];
                let bref = &buf;
                par_chunks(cgrp, MR * hw, threads, |first_panel, rows| {
                    let m = rows.len() / hw;
                    let p1 = first_panel + gemm::panels(m, MR);
                    gemm::gemm_acc(m, hw, kg, pa.panel_range(first_panel, p1), bref, rows, hw);
                });
            }
            apply_act(out_img, act);
        }
    }
    out
}

fn depthwise(x: &[f32], w: &[f32], bias: Option<&[f32]>, g: &ConvGeom, act: Activation, out: &mut [f32], threads: usize) {
    let plane_in = g.h * g.w;
    let plane_out = g.oh * g.ow;
    let kk = g.kh * g.kw;
    let c = g.c;
    par_chunks(out, plane_out, threads, |first, chunk| {
        for (i, op) in chunk.chunks_mut(plane_out).enumerate() {
            let idx = first + i; // n * C + c
            let ch = idx % c;
            let ip = &x[idx * plane_in..(idx + 1) * plane_in];
            let wk = &w[ch * kk..(ch + 1) * kk];
            let b = bias.map_or(0.0, |b| b[ch]);
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut s = 0.0f32;
                    for ky in 0..g.kh {
                        let iy = (oy * g.win.stride[0] + ky * g.win.dilation[0]) as isize - g.win.pads[0] as isize;
                        if iy < 0 || iy >= g.h as isize {
                            continue;
                        }
                        for kx in 0..g.kw {
                            let ix = (ox * g.win.stride[1] + kx * g.win.dilation[1]) as isize - g.win.pads[1] as isize;
                            if ix < 0 || ix >= g.w as isize {
                                continue;
                            }
                            s += ip[iy as usize * g.w + ix as usize] * wk[ky * g.kw + kx];
                        }
                    }
                    op[oy * g.ow + ox] = act.apply(s + b);
                }
            }
        }
    });
}

/// Transposed 2-D convolution via GEMM + col2im.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_transpose2d(
    x: View<'_>,
    w: View<'_>,
    bias: Option<&[f32]>,
    win: &Window,
    group: usize,
    act: Activation,
    out_shape: &[usize],
    threads: usize,
) -> Vec<f32> {
    let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (og, kh, kw) = (w.shape[1], w.shape[2], w.shape[3]);
    let cg = c / group;
    let (o, oh, ow) = (out_shape[1], out_shape[2], out_shape[3]);
    let rows = og * kh * kw;
    let hw = h * wd;
    // A_g[r][ci] = w[(g*cg + ci)][r]
    let packed: Vec<PackedA> = (0..group).map(|gi| PackedA::from_fn(rows, cg, |r, ci| w.data[(gi * cg + ci) * rows + r])).collect();
    let img_out = o * oh * ow;
    let mut out = vec![0.0f32; n * img_out];
    if out.is_empty() {
        return out;
    }
    par_chunks(&mut out, img_out, threads, |first, chunk| {
        let mut pb = Vec::new();
        let mut col = vec![0.0f32; rows * hw];
        for (i, out_img) in chunk.chunks_mut(img_out).enumerate() {
            let ni = first + i;
            fill_bias(out_img, bias, o, oh * ow);
            for (gi, pa) in packed.iter().enumerate() {
                let xg = &x.data[(ni * c + gi * cg) * hw..][..cg * hw];
                gemm::pack_b_rows(xg, cg, hw, hw, &mut pb);
                col.fill(0.0);
                gemm::gemm_acc(rows, hw, cg, &pa.data, &pb, &mut col, hw);
                for oc in 0..og {
                    let plane = &mut out_img[(gi * og + oc) * oh * ow..][..oh * ow];
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let crow = &col[((oc * kh + ky) * kw + kx) * hw..][..hw];
                            for iy in 0..h {
                                let oy = (iy * win.stride[0] + ky * win.dilation[0]) as isize - win.pads[0] as isize;
                                if oy < 0 || oy >= oh as isize {
                                    continue;
                                }
                                for ix in 0..wd {
                                    let ox = (ix * win.stride[1] + kx * win.dilation[1]) as isize - win.pads[1] as isize;
                                    if ox < 0 || ox >= ow as isize {
                                        continue;
                                    }
                                    plane[oy as usize * ow + ox as usize] += crow[iy * wd + ix];
                                }
                            }
                        }
                    }
                }
            }
            apply_act(out_img, act);
        }
    });
    out
}

/// Dense `y = x · Wᵀ + b` with fused activation.
pub(crate) fn dense(x: View<'_>, w: View<'_>, bias: Option<&[f32]>, act: Activation, threads: usize) -> Vec<f32> {
    let (m, k) = (x.shape[0], x.shape[1]);
    let n = w.shape[0];
    let pb = gemm::pack_b_transposed(w.data, n, k);
    let mut out = vec![0.0f32; m * n];
    if out.is_empty() {
        return out;
    }
    par_chunks(&mut out, MR * n, threads, |first_panel, rows| {
        let mrows = rows.len() / n;
        let r0 = first_panel * MR;
        fill_bias(rows, bias, n, 1);
        let pa = PackedA::from_rows(&x.data[r0 * k..], mrows, k, k);
        gemm::gemm_acc(mrows, n, k, &pa.data, &pb, rows, n);
        apply_act(rows, act);
    });
    out
}

/// Strides of `shape` broadcast into `out` (0 on broadcast axes).
fn bcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
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

/// Elementwise binary op with numpy broadcasting.
pub(crate) fn binary<F: Fn(f32, f32) -> f32 + Copy>(a: View<'_>, b: View<'_>, out_shape: &[usize], f: F) -> Vec<f32> {
    let total: usize = out_shape.iter().product();
    if a.shape == out_shape && b.shape == out_shape {
        return a.data.iter().zip(b.data).map(|(&x, &y)| f(x, y)).collect();
    }
    // Coalesce dims (from the right) where both strides stay linear.
    let sa = bcast_strides(a.shape, out_shape);
    let sb = bcast_strides(b.shape, out_shape);
    let mut dims: Vec<(usize, usize, usize)> = Vec::new(); // (size, stride a, stride b), innermost first
    for i in (0..out_shape.len()).rev() {
        let (d, x, y) = (out_shape[i], sa[i], sb[i]);
        if d == 1 {
            continue;
        }
        if let Some(last) = dims.last_mut() {
            if x == last.1 * last.0 && y == last.2 * last.0 {
                last.0 *= d;
                continue;
            }
        }
        dims.push((d, x, y));
    }
    let mut out = Vec::with_capacity(total);
    if dims.is_empty() {
        out.push(f(a.data[0], b.data[0]));
        return out;
    }
    let (inner, ia, ib) = dims[0];
    let outer = &dims[1..];
    let mut idx = vec![0usize; outer.len()];
    let (mut oa, mut ob) = (0usize, 0usize);
    loop {
        let ra = &a.data[oa..];
        let rb = &b.data[ob..];
        match (ia, ib) {
            (1, 1) => out.extend(ra[..inner].iter().zip(&rb[..inner]).map(|(&x, &y)| f(x, y))),
            (1, 0) => {
                let y = rb[0];
                out.extend(ra[..inner].iter().map(|&x| f(x, y)));
            }
            (0, 1) => {
                let x = ra[0];
                out.extend(rb[..inner].iter().map(|&y| f(x, y)));
            }
            _ => out.extend((0..inner).map(|j| f(ra[j * ia], rb[j * ib]))),
        }
        // advance the outer counter
        let mut d = 0;
        loop {
            if d == outer.len() {
                return out;
            }
            idx[d] += 1;
            oa += outer[d].1;
            ob += outer[d].2;
            if idx[d] < outer[d].0 {
                break;
            }
            oa -= outer[d].1 * outer[d].0;
            ob -= outer[d].2 * outer[d].0;
            idx[d] = 0;
            d += 1;
        }
    }
}

/// Apply a fused activation in place.
pub(crate) fn activate(v: &mut [f32], act: Activation) {
    apply_act(v, act);
}

/// Inference BatchNorm over axis 1.
pub(crate) fn batchnorm(x: View<'_>, p: [&[f32]; 4], eps: f32) -> Vec<f32> {
    let c = x.shape[1];
    let inner: usize = x.shape[2..].iter().product();
    let [scale, bias, mean, var] = p;
    let s: Vec<f32> = (0..c).map(|i| scale[i] / (var[i] + eps).sqrt()).collect();
    let t: Vec<f32> = (0..c).map(|i| bias[i] - mean[i] * s[i]).collect();
    let mut out = x.data.to_vec();
    if inner == 0 {
        return out;
    }
    for (i, row) in out.chunks_mut(inner).enumerate() {
        let ch = i % c;
        let (a, b) = (s[ch], t[ch]);
        row.iter_mut().for_each(|v| *v = *v * a + b);
    }
    out
}

/// Max or average pooling over NCHW planes.
pub(crate) fn pool(x: View<'_>, win: &Window, out_shape: &[usize], avg: Option<bool>, threads: usize) -> Vec<f32> {
    let (h, w) = (x.shape[2], x.shape[3]);
    let (oh, ow) = (out_shape[2], out_shape[3]);
    let planes = x.shape[0] * x.shape[1];
    let mut out = vec![0.0f32; planes * oh * ow];
    if out.is_empty() {
        return out;
    }
    let [kh, kw] = win.kernel;
    let [sh, sw] = win.stride;
    let [dh, dw] = win.dilation;
    let (pt, pl) = (win.pads[0] as isize, win.pads[1] as isize);
    let (hp, wp) = ((h + win.pads[2]) as isize, (w + win.pads[3]) as isize);
    par_chunks(&mut out, oh * ow, threads, |first, chunk| {
        for (i, op) in chunk.chunks_mut(oh * ow).enumerate() {
            let ip = &x.data[(first + i) * h * w..][..h * w];
            for oy in 0..oh {
                for ox in 0..ow {
                    let y0 = (oy * sh) as isize - pt;
                    let x0 = (ox * sw) as isize - pl;
                    let mut mx = f32::NEG_INFINITY;
                    let mut sum = 0.0f32;
                    let mut cnt = 0usize;
                    for ky in 0..kh {
                        let iy = y0 + (ky * dh) as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for kx in 0..kw {
                            let ix = x0 + (kx * dw) as isize;
                            if ix < 0 || ix >= w as isize {
                                continue;
                            }
                            let v = ip[iy as usize * w + ix as usize];
                            mx = mx.max(v);
                            sum += v;
                            cnt += 1;
                        }
                    }
                    op[oy * ow + ox] = match avg {
                        None => mx,
                        Some(include_pad) => {
                            let div = if include_pad {
                                // window clipped to the padded extent (PyTorch / ONNX semantics)
                                let y1 = (y0 + (dh * (kh - 1) + 1) as isize).min(hp);
                                let x1 = (x0 + (dw * (kw - 1) + 1) as isize).min(wp);
                                let ny = (y1 - y0 + dh as isize - 1) / dh as isize;
                                let nx = (x1 - x0 + dw as isize - 1) / dw as isize;
                                (ny * nx).max(1) as usize
                            } else {
                                cnt.max(1)
                            };
                            sum / div as f32
                        }
                    };
                }
            }
        }
    });
    out
}

/// Mean over the given axes.
pub(crate) fn reduce_mean(x: View<'_>, axes: &[usize], out_len: usize) -> Vec<f32> {
    let r = x.shape.len();
    // strides of the output in input index space (0 on reduced axes)
    let mut ost = vec![0usize; r];
    let mut acc = 1;
    for i in (0..r).rev() {
        if !axes.contains(&i) {
            ost[i] = acc;
            acc *= x.shape[i];
        }
    }
    let count: usize = axes.iter().map(|&a| x.shape[a]).product();
    let mut out = vec![0.0f32; out_len];
    if x.data.is_empty() {
        return out;
    }
    let mut idx = vec![0usize; r];
    let mut o = 0usize;
    for &v in x.data {
        out[o] += v;
        for d in (0..r).rev() {
            idx[d] += 1;
            o += ost[d];
            if idx[d] < x.shape[d] {
                break;
            }
            o -= ost[d] * x.shape[d];
            idx[d] = 0;
        }
    }
    let inv = 1.0 / count.max(1) as f32;
    out.iter_mut().for_each(|v| *v *= inv);
    out
}

/// Gather `out[i] = data[offset(i)]` over an N-d index space with per-axis input strides.
fn strided_copy(data: &[f32], out_shape: &[usize], base: usize, strides: &[usize]) -> Vec<f32> {
    let total: usize = out_shape.iter().product();
    let mut out = Vec::with_capacity(total);
    if total == 0 {
        return out;
    }
    let r = out_shape.len();
    if r == 0 {
        out.push(data[base]);
        return out;
    }
    let inner = out_shape[r - 1];
    let is = strides[r - 1];
    let mut idx = vec![0usize; r - 1];
    let mut off = base;
    loop {
        if is == 1 {
            out.extend_from_slice(&data[off..off + inner]);
        } else {
            out.extend((0..inner).map(|j| data[off + j * is]));
        }
        let mut d = r - 1;
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            idx[d] += 1;
            off += strides[d];
            if idx[d] < out_shape[d] {
                break;
            }
            off -= strides[d] * out_shape[d];
            idx[d] = 0;
        }
    }
}

fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut st = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        st[i] = st[i + 1] * shape[i + 1];
    }
    st
}

/// Axis permutation.
pub(crate) fn transpose(x: View<'_>, perm: &[usize], out_shape: &[usize]) -> Vec<f32> {
    let st = contiguous_strides(x.shape);
    let pst: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
    strided_copy(x.data, out_shape, 0, &pst)
}

/// Strided slice.
pub(crate) fn slice(x: View<'_>, starts: &[usize], steps: &[usize], out_shape: &[usize]) -> Vec<f32> {
    let st = contiguous_strides(x.shape);
    let base: usize = starts.iter().zip(&st).map(|(a, b)| a * b).sum();
    let sst: Vec<usize> = steps.iter().zip(&st).map(|(a, b)| a * b).collect();
    strided_copy(x.data, out_shape, base, &sst)
}

/// Concatenation along `axis`.
pub(crate) fn concat(inputs: &[View<'_>], axis: usize, out_shape: &[usize]) -> Vec<f32> {
    let outer: usize = out_shape[..axis].iter().product();
    let total: usize = out_shape.iter().product();
    let mut out = Vec::with_capacity(total);
    for o in 0..outer {
        for v in inputs {
            let chunk: usize = v.shape[axis..].iter().product();
            out.extend_from_slice(&v.data[o * chunk..(o + 1) * chunk]);
        }
    }
    out
}

/// Constant padding (`pads` = all begins then all ends).
pub(crate) fn pad(x: View<'_>, pads: &[usize], value: f32, out_shape: &[usize]) -> Vec<f32> {
    let total: usize = out_shape.iter().product();
    let mut out = vec![value; total];
    let r = x.shape.len();
    if x.data.is_empty() {
        return out;
    }
    if r == 0 {
        out[0] = x.data[0];
        return out;
    }
    let ost = contiguous_strides(out_shape);
    let base: usize = (0..r).map(|i| pads[i] * ost[i]).sum();
    let inner = x.shape[r - 1];
    let mut idx = vec![0usize; r - 1];
    let mut off = base;
    for row in x.data.chunks(inner.max(1)) {
        out[off..off + inner].copy_from_slice(row);
        let mut d = r - 1;
        while d > 0 {
            d -= 1;
            idx[d] += 1;
            off += ost[d];
            if idx[d] < x.shape[d] {
                break;
            }
            off -= ost[d] * x.shape[d];
            idx[d] = 0;
        }
    }
    out
}

/// Softmax along `axis`.
pub(crate) fn softmax(x: View<'_>, axis: usize) -> Vec<f32> {
    let d = x.shape[axis];
    let inner: usize = x.shape[axis + 1..].iter().product();
    let outer: usize = x.shape[..axis].iter().product();
    let mut out = x.data.to_vec();
    if d == 0 || inner == 0 {
        return out;
    }
    for o in 0..outer {
        let blk = &mut out[o * d * inner..(o + 1) * d * inner];
        for i in 0..inner {
            let mut mx = f32::NEG_INFINITY;
            for k in 0..d {
                mx = mx.max(blk[k * inner + i]);
            }
            let mut sum = 0.0f32;
            for k in 0..d {
                let e = (blk[k * inner + i] - mx).exp();
                blk[k * inner + i] = e;
                sum += e;
            }
            let inv = 1.0 / sum;
            for k in 0..d {
                blk[k * inner + i] *= inv;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_conv(x: &[f32], xs: [usize; 4], w: &[f32], ws: [usize; 4], win: &Window, g: usize, os: [usize; 4]) -> Vec<f32> {
        let mut out = vec![0.0; os.iter().product()];
        let og = ws[0] / g;
        for n in 0..os[0] {
            for o in 0..os[1] {
                let gi = o / og;
                for oy in 0..os[2] {
                    for ox in 0..os[3] {
                        let mut s = 0.0;
                        for c in 0..ws[1] {
                            for ky in 0..ws[2] {
                                for kx in 0..ws[3] {
                                    let iy = (oy * win.stride[0] + ky * win.dilation[0]) as isize - win.pads[0] as isize;
                                    let ix = (ox * win.stride[1] + kx * win.dilation[1]) as isize - win.pads[1] as isize;
                                    if iy < 0 || ix < 0 || iy >= xs[2] as isize || ix >= xs[3] as isize {
                                        continue;
                                    }
                                    let ci = gi * ws[1] + c;
                                    s += x[((n * xs[1] + ci) * xs[2] + iy as usize) * xs[3] + ix as usize]
                                        * w[((o * ws[1] + c) * ws[2] + ky) * ws[3] + kx];
                                }
                            }
                        }
                        out[((n * os[1] + o) * os[2] + oy) * os[3] + ox] = s;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn conv_variants_match_naive() {
        let cases = [
            // (xs, o, group, kernel, stride, pads, dilation)
            ([2, 3, 9, 8], 5, 1, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1]),
            ([1, 4, 10, 7], 6, 2, [3, 2], [2, 1], [0, 1, 2, 0], [1, 2]),
            ([3, 4, 6, 6], 4, 4, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1]),
            ([1, 8, 5, 5], 16, 1, [1, 1], [1, 1], [0, 0, 0, 0], [1, 1]),
            ([4, 2, 7, 7], 3, 1, [3, 3], [2, 2], [1, 1, 1, 1], [2, 2]),
        ];
        for (xs, o, g, k, s, p, d) in cases {
            let ws = [o, xs[1] / g, k[0], k[1]];
            let win = Window { kernel: k, stride: s, pads: p, dilation: d };
            let x: Vec<f32> = (0..xs.iter().product()).map(|i: usize| ((i * 37 % 19) as f32 - 9.0) * 0.1).collect();
            let w: Vec<f32> = (0..ws.iter().product()).map(|i: usize| ((i * 11 % 7) as f32 - 3.0) * 0.1).collect();
            let oh = crate::fp32::shape::window_out_dim(xs[2], k[0], s[0], p[0], p[2], d[0], false).unwrap();
            let ow = crate::fp32::shape::window_out_dim(xs[3], k[1], s[1], p[1], p[3], d[1], false).unwrap();
            let os = [xs[0], o, oh, ow];
            let r = naive_conv(&x, xs, &w, ws, &win, g, os);
            for threads in [1, 2, 3] {
                let got =
                    conv2d(View { shape: &xs, data: &x }, View { shape: &ws, data: &w }, None, &win, g, Activation::None, &os, threads);
                for (a, b) in got.iter().zip(&r) {
                    assert!((a - b).abs() < 1e-4, "{xs:?} g{g}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn broadcast_binary() {
        let a: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let b = [10.0, 20.0, 30.0];
        let out = binary(View { shape: &[2, 3, 2, 2], data: &a }, View { shape: &[3, 1, 1], data: &b }, &[2, 3, 2, 2], |x, y| x + y);
        assert_eq!(out[0], 10.0);
        assert_eq!(out[4], 24.0);
        assert_eq!(out[12], 22.0);
        let out =
            binary(View { shape: &[2, 1], data: &[1.0, 2.0] }, View { shape: &[1, 3], data: &[1.0, 2.0, 3.0] }, &[2, 3], |x, y| x * y);
        assert_eq!(out, vec![1.0, 2.0, 3.0, 2.0, 4.0, 6.0]);
    }

    #[test]
    fn transpose_slice_pad() {
        let x: Vec<f32> = (0..6).map(|i| i as f32).collect();
        let t = transpose(View { shape: &[2, 3], data: &x }, &[1, 0], &[3, 2]);
        assert_eq!(t, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        let s = slice(View { shape: &[2, 3], data: &x }, &[0, 1], &[1, 2], &[2, 1]);
        assert_eq!(s, vec![1.0, 4.0]);
        let p = pad(View { shape: &[1, 2], data: &[1.0, 2.0] }, &[0, 1, 1, 0], 9.0, &[2, 3]);
        assert_eq!(p, vec![9.0, 1.0, 2.0, 9.0, 9.0, 9.0]);
    }

    #[test]
    fn conv_transpose_matches_scatter() {
        // (xs, og, group, kernel, stride, pads, dilation, output_padding)
        let cases = [
            ([2, 4, 3, 3], 3, 2, [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], [1, 1]),
            ([1, 2, 4, 5], 2, 1, [2, 3], [1, 2], [0, 1, 0, 0], [2, 1], [0, 1]),
        ];
        for (xs, og, g, k, st, p, d, op) in cases {
            let ws = [xs[1], og, k[0], k[1]];
            let win = Window { kernel: k, stride: st, pads: p, dilation: d };
            let x: Vec<f32> = (0..xs.iter().product()).map(|i: usize| ((i * 37 % 19) as f32 - 9.0) * 0.1).collect();
            let w: Vec<f32> = (0..ws.iter().product()).map(|i: usize| ((i * 11 % 7) as f32 - 3.0) * 0.1).collect();
            let o = og * g;
            let bias: Vec<f32> = (0..o).map(|i| i as f32 * 0.5).collect();
            let op_shape =
                crate::fp32::shape::infer_output_shape(&crate::ops::conv_transpose::op(win, op, g, Activation::None), &[&xs, &ws], None)
                    .unwrap();
            let (oh, ow) = (op_shape[2], op_shape[3]);
            let mut want = vec![0.0f32; xs[0] * o * oh * ow];
            for n in 0..xs[0] {
                for oc in 0..o {
                    for v in &mut want[(n * o + oc) * oh * ow..][..oh * ow] {
                        *v = bias[oc];
                    }
                }
                for c in 0..xs[1] {
                    let gi = c / (xs[1] / g);
                    for j in 0..og {
                        for iy in 0..xs[2] {
                            for ix in 0..xs[3] {
                                for ky in 0..k[0] {
                                    for kx in 0..k[1] {
                                        let oy = (iy * st[0] + ky * d[0]) as isize - p[0] as isize;
                                        let ox = (ix * st[1] + kx * d[1]) as isize - p[1] as isize;
                                        if oy < 0 || ox < 0 || oy >= oh as isize || ox >= ow as isize {
                                            continue;
                                        }
                                        let oc = gi * og + j;
                                        want[((n * o + oc) * oh + oy as usize) * ow + ox as usize] +=
                                            x[((n * xs[1] + c) * xs[2] + iy) * xs[3] + ix] * w[((c * og + j) * k[0] + ky) * k[1] + kx];
                                    }
                                }
                            }
                        }
                    }
                }
            }
            for threads in [1, 2] {
                let got = conv_transpose2d(
                    View { shape: &xs, data: &x },
                    View { shape: &ws, data: &w },
                    Some(&bias),
                    &win,
                    g,
                    Activation::None,
                    &op_shape,
                    threads,
                );
                assert_eq!(got.len(), want.len());
                for (a, b) in got.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-4, "{a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn avg_pool_padding_and_ceil_mode() {
        let x = vec![1.0f32; 16];
        let win = Window { kernel: [3, 3], stride: [2, 2], pads: [1, 1, 1, 1], dilation: [1, 1] };
        let out = [1, 1, 3, 3];
        let excl = pool(View { shape: &[1, 1, 4, 4], data: &x }, &win, &out, Some(false), 1);
        assert!(excl.iter().all(|&v| (v - 1.0).abs() < 1e-6), "{excl:?}");
        let incl = pool(View { shape: &[1, 1, 4, 4], data: &x }, &win, &out, Some(true), 1);
        let want = [4.0 / 9.0, 6.0 / 9.0, 2.0 / 6.0, 6.0 / 9.0, 1.0, 3.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0, 1.0 / 4.0];
        for (a, b) in incl.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{incl:?}");
        }
        // max pool, ceil mode: the last window holds only the last row/column
        let x: Vec<f32> = (0..25).map(|i| i as f32).collect();
        let win = Window { kernel: [2, 2], stride: [2, 2], pads: [0; 4], dilation: [1, 1] };
        let m = pool(View { shape: &[1, 1, 5, 5], data: &x }, &win, &[1, 1, 3, 3], None, 2);
        assert_eq!(m, vec![6.0, 8.0, 9.0, 16.0, 18.0, 19.0, 21.0, 23.0, 24.0]);
    }

    #[test]
    fn softmax_and_reduce_mean() {
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let s = softmax(View { shape: &[1, 2, 2], data: &x }, 1);
        let e = (2.0f32).exp();
        assert!((s[0] - 1.0 / (1.0 + e)).abs() < 1e-6 && (s[0] + s[2] - 1.0).abs() < 1e-6);
        let r = reduce_mean(View { shape: &[2, 2], data: &x }, &[0], 2);
        assert_eq!(r, vec![2.0, 3.0]);
        let r = reduce_mean(View { shape: &[2, 2], data: &x }, &[1], 2);
        assert_eq!(r, vec![1.5, 3.5]);
        let c = concat(&[View { shape: &[1, 2], data: &x[..2] }, View { shape: &[1, 1], data: &x[2..3] }], 1, &[1, 3]);
        assert_eq!(c, vec![1.0, 2.0, 3.0]);
    }
}
