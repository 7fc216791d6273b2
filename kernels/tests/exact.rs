//! Property tests: every kernel table this CPU can run must produce exactly the bytes of the
//! scalar reference (zero tolerance) on random GEMM, convolution and depthwise problems.
//!
//! Every test fails unless it compared each table the CPU can run (judged by the operating
//! system's report of the CPU, not only by the crate's detection; see `common`), and
//! `levels_compared` prints one line naming the tables compared and those the CPU lacks.
//! `TEMPER_TEST_CASES` scales the number of random cases (default 1.0, e.g. `0.25` under qemu),
//! `TEMPER_TEST_SEED` changes the seed.

mod common;
mod exact_support;

use exact_support::*;
use temper_kernels::dispatch::{conv_scratch_len, Kernels, Variant, SCALAR};
use temper_kernels::pack;
use temper_kernels::params::{Conv2d, Gemm, Nhwc, OutQuant};
use temper_kernels::reference::conv::{ConvArgs, DepthwiseArgs};
use temper_kernels::split::{self, Part, MAX_PARTS};

fn gemm_case(r: &mut Rng, kernels: &[(&Variant, &Kernels)], case: usize) {
    let m = if r.chance(15) { r.pick(&[1, 2, 3, 5, 8, 9, 16, 17]) } else { r.usize(1, 70) };
    let n = if r.chance(30) { r.pick(&[1, 15, 16, 17, 31, 32, 33, 48, 64, 80]) } else { r.usize(1, 80) };
    let k = match r.usize(0, 9) {
        0 => r.usize(1, 8),
        1 => r.pick(&[1, 2, 3, 4, 5, 15, 16, 17, 63, 64, 65, 255, 256, 257, 300]),
        _ => r.usize(1, 300),
    };
    let lda = if r.chance(30) { k + r.usize(1, 9) } else { k };
    let ldc = if r.chance(30) { n + r.usize(1, 9) } else { n };
    let a = activations(r, (m - 1) * lda + k);
    let w = weights(r, n * k);
    let za = r.range(-128, 127) as i32;
    let full_bias = k <= 4 && r.chance(50);
    let p = pack_weights(r, &w, n, k, za, full_bias);
    let acc_bits = if full_bias { 31 } else { bits_for(k) };
    let qu = quant(r, n, acc_bits);
    let g = Gemm { m, n, k, a: &a, lda, b: &p.b, bias: &p.bias, bias_u8: &p.bias_u8, q: qu.q() };
    let clen = (m - 1) * ldc + n + GUARD;
    let mut want = vec![SENTINEL; clen];
    (SCALAR.gemm)(&g, &mut want, ldc);
    assert_guard("gemm (scalar)", "random", &want, want.len() - GUARD);
    let desc = format!(
        "case {case}: m={m} n={n} k={k} lda={lda} ldc={ldc} za={za} per_tensor={} zp={} clamp=[{}, {}] shifts={:?}",
        qu.mult.len() == 1,
        qu.zp,
        qu.min,
        qu.max,
        &qu.shift[..qu.shift.len().min(4)]
    );
    for (var, kern) in kernels {
        let mut got = vec![SENTINEL; clen];
        (kern.gemm)(&g, &mut got, ldc);
        check_equal("gemm", var.name, &desc, &want, &got);
    }
}

/// One line per run naming the tables compared on this CPU (and those it lacks), after a few
/// cases of every kernel entry point; fails like every test here if a table the CPU runs was
/// not compared or the detection disagrees with the operating system.
#[test]
fn levels_compared() {
    let kernels = runnable();
    let mut r = Rng::new(16);
    for case in 0..4 {
        gemm_case(&mut r, &kernels, case);
        conv_case(&mut r, &kernels, case, 1);
        depthwise_case(&mut r, &kernels, case, 1);
        add_case(&mut r, &kernels, case);
        mul_case(&mut r, &kernels, case);
    }
    let compared = COMPARED.with(|c| c.borrow().clone());
    match common::check(&compared) {
        Ok(line) => common::announce(&line),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn gemm_matches_reference() {
    let kernels = runnable();
    let mut r = Rng::new(1);
    let n = cases(400);
    for case in 0..n {
        gemm_case(&mut r, &kernels, case);
    }
    println!("gemm: {n} random cases");
}

#[test]
fn gemm_requant_edges() {
    // k = 1 with zero weights: the accumulator is the bias itself, so every i32 (including
    // i32::MIN / i32::MAX) reaches the requantization with every shift.
    let kernels = runnable();
    let mut r = Rng::new(2);
    let accs = [i32::MIN, i32::MIN + 1, -(1 << 30), -3, -2, -1, 0, 1, 2, 3, (1 << 30) + 7, i32::MAX - 1, i32::MAX];
    for shift in 1..=62 {
        for &mult in &[0, 1 << 30, (1 << 30) + 12345, i32::MAX] {
            let n = 37;
            let bias: Vec<i32> = (0..n).map(|j| if j < accs.len() { accs[j] } else { r.next() as i32 }).collect();
            let b = vec![0i8; pack::packed_len(n, 1).unwrap()];
            let a = vec![0i8; 3];
            let mult = vec![mult; n];
            let shift_v = vec![shift; n];
            // saturated results (i32::MIN / i32::MAX) plus zero points of either sign
            for (zp, lo, hi) in [(0, -128, 127), (0, -5, 9), (127, -128, 127), (-128, -128, 127), (100, 90, 110), (-7, -128, -100)] {
                let q = OutQuant { mult: &mult, shift: &shift_v, zero_point: zp, min: lo, max: hi };
                let g = Gemm { m: 3, n, k: 1, a: &a, lda: 1, b: &b, bias: &bias, bias_u8: &bias, q };
                let mut want = vec![SENTINEL; 3 * n + GUARD];
                (SCALAR.gemm)(&g, &mut want, n);
                assert_guard("gemm requant (scalar)", "requant edges", &want, want.len() - GUARD);
                for (var, kern) in &kernels {
                    let mut got = vec![SENTINEL; 3 * n + GUARD];
                    (kern.gemm)(&g, &mut got, n);
                    check_equal("gemm requant", var.name, &format!("shift={shift} mult={}", mult[0]), &want, &got);
                }
            }
        }
    }
}

/// A random convolution geometry (and its output shape), `depthwise` forcing groups = channels.
fn geometry(r: &mut Rng, depthwise: bool) -> Conv2d {
    loop {
        let k = if depthwise { r.pick(&[3, 3, 3, 5, 5, 1, 2, 7]) } else { r.pick(&[1, 1, 3, 3, 5, 7]) };
        let (kh, kw) = if r.chance(10) { (k, r.pick(&[1, 3, 5])) } else { (k, k) };
        let s = if r.chance(10) { 3 } else { r.pick(&[1, 2]) };
        let (sh, sw) = (s, if r.chance(10) { 1 } else { s });
        let d = if r.chance(15) { 2 } else { 1 };
        let pointwise = !depthwise && kh == 1 && kw == 1 && r.chance(50);
        let (sh, sw, d) = if pointwise { (1, 1, 1) } else { (sh, sw, d) };
        let pad_top = if pointwise { 0 } else { r.usize(0, (kh - 1) * d / 2 + 1) };
        let pad_left = if pointwise { 0 } else { r.usize(0, (kw - 1) * d / 2 + 1) };
        let pad_bottom = if pointwise { 0 } else { r.usize(0, pad_top + 1) };
        let pad_right = if pointwise { 0 } else { r.usize(0, pad_left + 1) };
        let (ih, iw) = (r.usize(1, 13), r.usize(1, 13));
        let eh = ih + pad_top + pad_bottom;
        let ew = iw + pad_left + pad_right;
        let (sph, spw) = ((kh - 1) * d + 1, (kw - 1) * d + 1);
        if eh < sph || ew < spw {
            continue;
        }
        let (oh, ow) = ((eh - sph) / sh + 1, (ew - spw) / sw + 1);
        let batch = if r.chance(20) { 2 } else { 1 };
        let (groups, cin, cout) = if depthwise {
            let c = if r.chance(30) { r.pick(&[1, 8, 15, 16, 17, 32, 33, 64]) } else { r.usize(1, 70) };
            (c, c, c)
        } else {
            let groups = match r.usize(0, 9) {
                0 => r.pick(&[2, 3, 4]),
                1 => {
                    // depthwise-shaped grouped convolution, channel multiplier 1 or 2
                    let g = r.usize(1, 12);
                    let mult = r.usize(1, 2);
                    return finish((ih, iw, oh, ow, kh, kw, sh, sw, d, pad_top, pad_left, batch), g, g, g * mult);
                }
                _ => 1,
            };
            let cig = if r.chance(20) { r.pick(&[1, 3, 4]) } else { r.usize(1, 24) };
            let cog = if r.chance(20) { r.pick(&[1, 8, 16, 32, 33]) } else { r.usize(1, 40) };
            (groups, cig * groups, cog * groups)
        };
        return finish((ih, iw, oh, ow, kh, kw, sh, sw, d, pad_top, pad_left, batch), groups, cin, cout);
    }
}

type Dims = (usize, usize, usize, usize, usize, usize, usize, usize, usize, usize, usize, usize);

fn finish(d: Dims, groups: usize, cin: usize, cout: usize) -> Conv2d {
    let (ih, iw, oh, ow, kh, kw, sh, sw, dil, pad_top, pad_left, batch) = d;
    Conv2d {
        input: Nhwc::new(batch, ih, iw, cin),
        output: Nhwc::new(batch, oh, ow, cout),
        kh,
        kw,
        sh,
        sw,
        dh: dil,
        dw: dil,
        pad_top,
        pad_left,
        groups,
    }
}

fn conv_case(r: &mut Rng, kernels: &[(&Variant, &Kernels)], case: usize, parts: usize) {
    let g = geometry(r, false);
    let (cig, cog, k) = (g.cin_per_group(), g.cout_per_group(), g.k());
    let input = activations(r, g.input.len());
    let za = r.range(-128, 127) as i32;
    let group_len = pack::packed_len(cog, k).unwrap();
    let mut weights_packed = vec![0i8; g.groups * group_len];
    let mut bias = Vec::new();
    let mut bias_u8 = Vec::new();
    for grp in 0..g.groups {
        let w = weights(r, cog * k);
        let p = pack_weights(r, &w, cog, k, za, false);
        weights_packed[grp * group_len..(grp + 1) * group_len].copy_from_slice(&p.b);
        bias.extend(p.bias);
        bias_u8.extend(p.bias_u8);
    }
    let qu = quant(r, g.output.c, bits_for(k));
    let args = ConvArgs { geom: g, input: &input, input_zp: za, weights: &weights_packed, bias: &bias, bias_u8: &bias_u8, q: qu.q() };
    let olen = g.output.len() + GUARD;
    let mut want = vec![SENTINEL; olen];
    let mut scratch = vec![0x33i8; conv_scratch_len(&g)];
    (SCALAR.conv2d)(&args, &mut want, &mut scratch);
    assert_guard("conv2d (scalar)", "random", &want, want.len() - GUARD);
    let desc = format!("case {case}: {g:?} cig={cig} cog={cog} k={k} za={za}");
    for (var, kern) in kernels {
        let mut got = vec![SENTINEL; olen];
        in_parts(&g, parts, &mut got, &desc, |geom, off, out| {
            // scratch of exactly the advertised size, filled with garbage
            let mut scratch: Vec<i8> = (0..conv_scratch_len(&geom)).map(|i| (i * 97 + 13) as i8).collect();
            let sub = ConvArgs { geom, input: &input[off..], ..args };
            (kern.conv2d)(&sub, out, &mut scratch);
        });
        check_equal("conv2d", var.name, &desc, &want, &got);
    }
}

/// Compute `out` (the whole layer `g`, then guard bytes) by `call(geometry, input offset, out)`
/// for the whole layer when `parts ≤ 1` or `split::rows` does not split it, else part by part,
/// each into its own guarded buffer (a part writing past its rows fails here).
fn in_parts(g: &Conv2d, parts: usize, out: &mut [i8], desc: &str, mut call: impl FnMut(Conv2d, usize, &mut [i8])) {
    let mut ps = [Part::default(); MAX_PARTS];
    let n = if parts >= 2 { split::rows(g, parts, &mut ps) } else { 0 };
    if n < 2 {
        call(*g, 0, out);
        return;
    }
    for p in &ps[..n] {
        let len = p.output_end - p.output_start;
        assert_eq!(len, p.geom.output.len(), "{desc}: part {p:?}");
        let mut buf = vec![SENTINEL; len + GUARD];
        call(p.geom, p.input_offset, &mut buf);
        assert!(buf[len..].iter().all(|&b| b == SENTINEL), "{desc}: part {p:?} wrote past its rows");
        out[p.output_start..p.output_end].copy_from_slice(&buf[..len]);
    }
}

#[test]
fn conv2d_in_parts_matches_reference() {
    // Bands of output rows (or images) computed one at a time, as the runtime's threads do.
    let kernels = runnable();
    let mut r = Rng::new(13);
    let n = cases(150);
    for case in 0..n {
        let parts = r.usize(2, 6);
        conv_case(&mut r, &kernels, case, parts);
    }
}

#[test]
fn conv2d_matches_reference() {
    let kernels = runnable();
    let mut r = Rng::new(3);
    let n = cases(250);
    for case in 0..n {
        conv_case(&mut r, &kernels, case, 1);
    }
    println!("conv2d: {n} random cases");
}

#[test]
fn conv2d_real_layers() {
    // Layer shapes of the Fashion-MNIST student and common mobile blocks (one image each).
    let kernels = runnable();
    let mut r = Rng::new(4);
    let shapes: [(usize, usize, usize, usize, usize, usize, usize); 10] = [
        // (h, w, cin, cout, k, stride, pad)
        (28, 28, 1, 16, 3, 1, 1),
        // first layers on RGB images (x86 VNNI: direct row convolution); 200 wide rows are
        // done in segments, 80 output channels in two groups of blocks
        (8, 200, 3, 24, 3, 2, 1),
        (10, 30, 1, 80, 3, 1, 1),
        (12, 12, 3, 32, 5, 1, 2),
        (16, 16, 3, 16, 7, 2, 3),
        (28, 28, 16, 32, 3, 1, 1),
        (14, 14, 32, 64, 3, 2, 1),
        (14, 14, 64, 64, 1, 1, 0),
        (7, 7, 64, 128, 3, 1, 1),
        (8, 8, 24, 24, 5, 1, 2),
    ];
    for (case, &(h, w, cin, cout, k, s, pad)) in shapes.iter().enumerate() {
        let oh = (h + 2 * pad - k) / s + 1;
        let ow = (w + 2 * pad - k) / s + 1;
        let g = Conv2d {
            input: Nhwc::new(1, h, w, cin),
            output: Nhwc::new(1, oh, ow, cout),
            kh: k,
            kw: k,
            sh: s,
            sw: s,
            dh: 1,
            dw: 1,
            pad_top: pad,
            pad_left: pad,
            groups: 1,
        };
        let kk = g.k();
        let input = activations(&mut r, g.input.len());
        let za = r.range(-128, 127) as i32;
        let w = weights(&mut r, cout * kk);
        let p = pack_weights(&mut r, &w, cout, kk, za, false);
        let qu = quant(&mut r, cout, bits_for(kk));
        let args = ConvArgs { geom: g, input: &input, input_zp: za, weights: &p.b, bias: &p.bias, bias_u8: &p.bias_u8, q: qu.q() };
        let mut want = vec![SENTINEL; g.output.len() + GUARD];
        (SCALAR.conv2d)(&args, &mut want, &mut []);
        assert_guard("conv2d (scalar)", &format!("layer {case}"), &want, g.output.len());
        for (var, kern) in &kernels {
            let mut got = vec![SENTINEL; g.output.len() + GUARD];
            let mut scratch = vec![0i8; conv_scratch_len(&g)];
            (kern.conv2d)(&args, &mut got, &mut scratch);
            check_equal("conv2d", var.name, &format!("layer {case}: {g:?}"), &want, &got);
        }
    }
}

fn depthwise_case(r: &mut Rng, kernels: &[(&Variant, &Kernels)], case: usize, parts: usize) {
    let g = geometry(r, true);
    let c = g.output.c;
    let input = activations(r, g.input.len());
    let za = r.range(-128, 127) as i32;
    let taps = g.kh * g.kw;
    let w = weights(r, taps * c);
    let bias: Vec<i32> = (0..c)
        .map(|ch| {
            let wsum: i32 = (0..taps).map(|t| w[t * c + ch] as i32).sum();
            (r.range(-(1 << 20), 1 << 20) as i32).wrapping_sub(za * wsum)
        })
        .collect();
    let qu = quant(r, c, bits_for(taps));
    let args = DepthwiseArgs { geom: g, input: &input, input_zp: za, weights: &w, bias: &bias, q: qu.q() };
    let olen = g.output.len() + GUARD;
    let mut want = vec![SENTINEL; olen];
    (SCALAR.depthwise2d)(&args, &mut want);
    assert_guard("depthwise2d (scalar)", "random", &want, want.len() - GUARD);
    let desc = format!("case {case}: {g:?} za={za}");
    for (var, kern) in kernels {
        let mut got = vec![SENTINEL; olen];
        in_parts(&g, parts, &mut got, &desc, |geom, off, out| {
            (kern.depthwise2d)(&DepthwiseArgs { geom, input: &input[off..], ..args }, out);
        });
        check_equal("depthwise2d", var.name, &desc, &want, &got);
    }
}

#[test]
fn depthwise2d_in_parts_matches_reference() {
    let kernels = runnable();
    let mut r = Rng::new(14);
    let n = cases(150);
    for case in 0..n {
        let parts = r.usize(2, 6);
        depthwise_case(&mut r, &kernels, case, parts);
    }
}

#[test]
fn depthwise2d_matches_reference() {
    let kernels = runnable();
    let mut r = Rng::new(5);
    let n = cases(300);
    for case in 0..n {
        depthwise_case(&mut r, &kernels, case, 1);
    }
    println!("depthwise2d: {n} random cases");
}

#[test]
fn depthwise2d_large_windows() {
    // Windows above the SIMD tap limit fall back to the reference; 8×8 = 64 taps is the limit.
    let kernels = runnable();
    let mut r = Rng::new(6);
    for &(kh, kw) in &[(8usize, 8usize), (9, 9), (1, 11)] {
        let (h, w, c) = (12, 12, 20);
        let g = Conv2d {
            input: Nhwc::new(1, h, w, c),
            output: Nhwc::new(1, h - kh + 1, w - kw + 1, c),
            kh,
            kw,
            sh: 1,
            sw: 1,
            dh: 1,
            dw: 1,
            pad_top: 0,
            pad_left: 0,
            groups: c,
        };
        let input = activations(&mut r, g.input.len());
        let wts = weights(&mut r, kh * kw * c);
        let bias: Vec<i32> = (0..c).map(|_| r.range(-1000, 1000) as i32).collect();
        let qu = quant(&mut r, c, bits_for(kh * kw));
        let args = DepthwiseArgs { geom: g, input: &input, input_zp: 5, weights: &wts, bias: &bias, q: qu.q() };
        let mut want = vec![SENTINEL; g.output.len() + GUARD];
        (SCALAR.depthwise2d)(&args, &mut want);
        assert_guard("depthwise2d (scalar)", &format!("{kh}x{kw}"), &want, g.output.len());
        for (var, kern) in &kernels {
            let mut got = vec![SENTINEL; g.output.len() + GUARD];
            (kern.depthwise2d)(&args, &mut got);
            check_equal("depthwise2d", var.name, &format!("{kh}x{kw}"), &want, &got);
        }
    }
}

fn add_case(r: &mut Rng, kernels: &[(&Variant, &Kernels)], case: usize) {
    use temper_kernels::reference::eltwise::{add_multipliers, AddArgs};
    let c = if r.chance(30) { r.pick(&[1, 15, 16, 17, 31, 32, 33, 64]) } else { r.usize(1, 70) };
    let out = Nhwc::new(r.usize(1, 2), r.usize(1, 9), r.usize(1, 9), c);
    let shape_of = |r: &mut Rng| {
        if r.chance(75) {
            out
        } else {
            let pick = |r: &mut Rng, d: usize| if r.chance(50) { 1 } else { d };
            Nhwc::new(pick(r, out.n), pick(r, out.h), pick(r, out.w), pick(r, out.c))
        }
    };
    let (sa, sb) = (shape_of(r), shape_of(r));
    let a = activations(r, sa.len());
    let b = activations(r, sb.len());
    let (a_mult, b_mult, shift) = match r.usize(0, 5) {
        // raw parameters: any multipliers within the reference's no-overflow bound
        0 => {
            let shift = r.range(1, 62) as i32;
            let am = r.range(-(1 << 31), (1 << 31) - 1) as i32;
            let bm = r.range(-(1 << 31), (1 << 31) - 1) as i32;
            (am, bm, shift)
        }
        1 => (i32::MAX, if r.chance(50) { i32::MIN + 1 } else { i32::MAX }, r.range(28, 40) as i32),
        _ => {
            let scale = |r: &mut Rng| 0.001 * (1 + r.usize(0, 3000)) as f64;
            let (am, bm, s) = add_multipliers(scale(r), scale(r), scale(r)).unwrap();
            (am, if r.chance(20) { -bm } else { bm }, s)
        }
    };
    let zp = r.range(-128, 127) as i32;
    let (min, max) = match r.usize(0, 2) {
        0 => (-128, 127),
        1 => (zp, 127),
        _ => {
            let x = r.range(-128, 127) as i32;
            let y = r.range(-128, 127) as i32;
            (x.min(y), x.max(y))
        }
    };
    let args = AddArgs {
        a: &a,
        a_shape: sa,
        a_zp: r.range(-128, 127) as i32,
        a_mult,
        b: &b,
        b_shape: sb,
        b_zp: r.range(-128, 127) as i32,
        b_mult,
        shift,
        out_shape: out,
        out_zp: zp,
        min,
        max,
    };
    let desc = format!("case {case}: a {sa:?} b {sb:?} out {out:?} mult {a_mult}/{b_mult} shift {shift}");
    against_reference("add", kernels, &desc, out.len(), |k, y| (k.add)(&args, y));
}

/// Run `call` with the scalar table and with every table in `kernels`, each into a fresh
/// guarded buffer of `len` outputs, and require identical bytes (guard included).
fn against_reference(what: &str, kernels: &[(&Variant, &Kernels)], desc: &str, len: usize, call: impl Fn(&Kernels, &mut [i8])) {
    let mut want = vec![SENTINEL; len + GUARD];
    call(&SCALAR, &mut want);
    assert_guard(what, desc, &want, want.len() - GUARD);
    for (var, kern) in kernels {
        let mut got = vec![SENTINEL; len + GUARD];
        call(kern, &mut got);
        check_equal(what, var.name, desc, &want, &got);
    }
}

fn mul_case(r: &mut Rng, kernels: &[(&Variant, &Kernels)], case: usize) {
    use temper_kernels::reference::eltwise::MulArgs;
    let c = if r.chance(30) { r.pick(&[1, 15, 16, 17, 31, 32, 33, 64]) } else { r.usize(1, 70) };
    let out = Nhwc::new(r.usize(1, 2), r.usize(1, 9), r.usize(1, 9), c);
    let shape_of = |r: &mut Rng| match r.usize(0, 5) {
        0 | 1 => out,
        // per-channel vectors (squeeze-and-excite), once per image or shared
        2 => Nhwc::new(if r.chance(50) { 1 } else { out.n }, 1, 1, out.c),
        _ => {
            let pick = |r: &mut Rng, d: usize| if r.chance(50) { 1 } else { d };
            Nhwc::new(pick(r, out.n), pick(r, out.h), pick(r, out.w), pick(r, out.c))
        }
    };
    let (sa, sb) = (shape_of(r), shape_of(r));
    let a = activations(r, sa.len());
    let b = activations(r, sb.len());
    let (mult, shift) = if r.chance(20) {
        (r.range(1 << 30, (1 << 31) - 1) as i32, r.range(1, 62) as i32)
    } else {
        temper_kernels::requant::quantize_multiplier(0.0001 * (1 + r.usize(0, 2000)) as f64).unwrap()
    };
    let zp = r.range(-128, 127) as i32;
    let (min, max) = if r.chance(50) { (-128, 127) } else { (zp, 127) };
    let args = MulArgs {
        a: &a,
        a_shape: sa,
        a_zp: r.range(-128, 127) as i32,
        b: &b,
        b_shape: sb,
        b_zp: r.range(-128, 127) as i32,
        mult,
        shift,
        out_shape: out,
        out_zp: zp,
        min,
        max,
    };
    let desc = format!("case {case}: a {sa:?} b {sb:?} out {out:?} mult {mult} shift {shift}");
    against_reference("mul", kernels, &desc, out.len(), |k, y| (k.mul)(&args, y));
}

#[test]
fn mul_matches_reference() {
    let kernels = runnable();
    let mut r = Rng::new(15);
    let n = cases(400);
    for case in 0..n {
        mul_case(&mut r, &kernels, case);
    }
    println!("mul: {n} random cases");
}

#[test]
fn add_matches_reference() {
    let kernels = runnable();
    let mut r = Rng::new(7);
    let n = cases(400);
    for case in 0..n {
        add_case(&mut r, &kernels, case);
    }
    println!("add: {n} random cases");
}

#[test]
fn max_pool_matches_reference() {
    let kernels = runnable();
    let mut r = Rng::new(8);
    let n = cases(300);
    for case in 0..n {
        let mut g = geometry(&mut r, true);
        g.groups = 1;
        if r.chance(30) {
            // the usual 2×2 / 3×3 stride-2 pooling shapes
            let k = r.pick(&[2, 3]);
            let (h, w) = (r.usize(k, 15), r.usize(k, 15));
            g = finish((h, w, (h - k) / 2 + 1, (w - k) / 2 + 1, k, k, 2, 2, 1, 0, 0, 1), 1, g.input.c, g.input.c);
        }
        let input = activations(&mut r, g.input.len());
        let (min, max) = if r.chance(50) {
            (-128, 127)
        } else {
            let x = r.range(-128, 127) as i32;
            let y = r.range(-128, 127) as i32;
            (x.min(y), x.max(y))
        };
        let olen = g.output.len() + GUARD;
        let mut want = vec![SENTINEL; olen];
        (SCALAR.max_pool)(&g, &input, &mut want, min, max);
        assert_guard("max_pool (scalar)", "random", &want, want.len() - GUARD);
        for (var, kern) in &kernels {
            let mut got = vec![SENTINEL; olen];
            (kern.max_pool)(&g, &input, &mut got, min, max);
            check_equal("max_pool", var.name, &format!("case {case}: {g:?} clamp [{min}, {max}]"), &want, &got);
        }
    }
    println!("max_pool: {n} random cases");
}

#[test]
fn avg_pool_matches_reference() {
    use temper_kernels::reference::pool::{global_geometry, AvgPoolArgs};
    let kernels = runnable();
    let mut r = Rng::new(9);
    let n = cases(200);
    for case in 0..n {
        let geom = if r.chance(60) {
            let c = if r.chance(30) { r.pick(&[1, 16, 63, 64, 65, 640]) } else { r.usize(1, 130) };
            global_geometry(Nhwc::new(r.usize(1, 2), r.usize(1, 9), r.usize(1, 9), c))
        } else {
            let mut g = geometry(&mut r, true);
            g.groups = 1;
            g.dh = 1;
            g.dw = 1;
            g
        };
        let input = activations(&mut r, geom.input.len());
        let (mult, shift) = match r.usize(0, 3) {
            0 => (1 << 30, 30),
            1 => (r.range(1 << 30, i32::MAX as i64) as i32, r.range(1, 62) as i32),
            _ => (r.range(1 << 30, i32::MAX as i64) as i32, r.range(28, 34) as i32),
        };
        let zp = r.range(-128, 127) as i32;
        let (min, max) = if r.chance(50) { (-128, 127) } else { (zp.max(-128), 127) };
        let args =
            AvgPoolArgs { geom, count_include_pad: r.chance(50), input_zp: r.range(-128, 127) as i32, mult, shift, out_zp: zp, min, max };
        let olen = geom.output.len() + GUARD;
        let mut want = vec![SENTINEL; olen];
        (SCALAR.avg_pool)(&args, &input, &mut want);
        assert_guard("avg_pool (scalar)", "random", &want, want.len() - GUARD);
        for (var, kern) in &kernels {
            let mut got = vec![SENTINEL; olen];
            (kern.avg_pool)(&args, &input, &mut got);
            check_equal("avg_pool", var.name, &format!("case {case}: {args:?}"), &want, &got);
        }
    }
    println!("avg_pool: {n} random cases");
}

#[test]
fn depthwise2d_real_layers() {
    // MobileNetV2-like depthwise layers (smaller images): 16 channels (pixel pairs), channel
    // tails, stride 2, 5×5.
    let kernels = runnable();
    let mut r = Rng::new(10);
    let shapes: [(usize, usize, usize, usize, usize, usize); 7] = [
        // (h, w, c, k, stride, pad)
        (20, 20, 16, 3, 1, 1),
        (21, 19, 16, 3, 2, 1),
        (14, 14, 96, 3, 2, 1),
        (9, 9, 144, 3, 1, 1),
        (7, 7, 40, 5, 1, 2),
        (10, 11, 16, 5, 1, 2),
        (6, 6, 8, 3, 1, 1),
    ];
    for (case, &(h, w, c, k, s, pad)) in shapes.iter().enumerate() {
        let g = Conv2d {
            input: Nhwc::new(1, h, w, c),
            output: Nhwc::new(1, (h + 2 * pad - k) / s + 1, (w + 2 * pad - k) / s + 1, c),
            kh: k,
            kw: k,
            sh: s,
            sw: s,
            dh: 1,
            dw: 1,
            pad_top: pad,
            pad_left: pad,
            groups: c,
        };
        let input = activations(&mut r, g.input.len());
        let za = r.range(-128, 127) as i32;
        let wts = weights(&mut r, k * k * c);
        let bias: Vec<i32> = (0..c).map(|_| r.range(-(1 << 20), 1 << 20) as i32).collect();
        let qu = quant(&mut r, c, bits_for(k * k));
        let args = DepthwiseArgs { geom: g, input: &input, input_zp: za, weights: &wts, bias: &bias, q: qu.q() };
        let mut want = vec![SENTINEL; g.output.len() + GUARD];
        (SCALAR.depthwise2d)(&args, &mut want);
        assert_guard("depthwise2d (scalar)", "real layer", &want, want.len() - GUARD);
        for (var, kern) in &kernels {
            let mut got = vec![SENTINEL; g.output.len() + GUARD];
            (kern.depthwise2d)(&args, &mut got);
            check_equal("depthwise2d", var.name, &format!("layer {case}: {g:?}"), &want, &got);
        }
    }
}

#[test]
fn gemm_large_outputs() {
    // Outputs above 512 KiB: the AVX-512 GEMM goes by chunks of rows (12,000 × 48 and a
    // pointwise-convolution-like 11,000 × 16 × 96 with a row stride); rows longer than the VNNI
    // paths' flip buffer (k = 9,000).
    let kernels = runnable();
    let mut r = Rng::new(11);
    for &(m, k, n, ldc) in &[(12_000usize, 20usize, 48usize, 48usize), (11_000, 16, 90, 96), (3, 9_000, 40, 40)] {
        let a = activations(&mut r, m * k);
        let w = weights(&mut r, n * k);
        let p = pack_weights(&mut r, &w, n, k, -3, false);
        let qu = quant(&mut r, n, bits_for(k));
        let g = Gemm { m, n, k, a: &a, lda: k, b: &p.b, bias: &p.bias, bias_u8: &p.bias_u8, q: qu.q() };
        let mut want = vec![SENTINEL; (m - 1) * ldc + n + GUARD];
        (SCALAR.gemm)(&g, &mut want, ldc);
        assert_guard("gemm (scalar)", "large", &want, want.len() - GUARD);
        for (var, kern) in &kernels {
            let mut got = vec![SENTINEL; want.len()];
            (kern.gemm)(&g, &mut got, ldc);
            check_equal("gemm", var.name, &format!("{m}×{k}×{n} ldc {ldc}"), &want, &got);
        }
    }
}
