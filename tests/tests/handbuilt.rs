//! Models built through the writer API run through the runtime and match (a) an independent
//! float computation within quantization error and (b) exact integer expectations.

use temper_kernels::dispatch;
use temper_kernels::requant::{quantize_f32, requantize};
use temper_runtime::writer::{AlignedBuf, Builder, QWeights, Window};
use temper_runtime::{Model, RunError, Session};
use temper_tests::{Rng, TinyCnn, FC_Q, IN_Q};

#[test]
fn tiny_cnn_matches_float_reference() {
    let net = TinyCnn::new(7);
    let bytes = net.build();
    let buf = AlignedBuf::from_bytes(&bytes);
    let model = Model::from_bytes(buf.as_bytes()).expect("valid model");
    assert_eq!(model.meta("labels"), Some("a,b,c"));
    let mut arena = vec![0u8; model.arena_size()];
    let mut s = Session::with_kernels(&model, &mut arena, &dispatch::SCALAR).unwrap();
    let mut rng = Rng(99);
    let mut worst = 0f64;
    for _ in 0..50 {
        let xf: Vec<f32> = (0..128).map(|_| rng.uniform(-1.0, 1.0)).collect();
        s.set_input_f32(0, &xf).unwrap();
        s.run().unwrap();
        let mut y = [0f32; 3];
        s.output_f32(0, &mut y).unwrap();
        // the float reference sees the same (quantized) input
        let xd: Vec<f32> =
            xf.iter().map(|&v| IN_Q.scale * (quantize_f32(v, IN_Q.scale, IN_Q.zero_point) as i32 - IN_Q.zero_point) as f32).collect();
        let (_, logits) = net.forward_f64(&xd);
        for o in 0..3 {
            let err = (y[o] as f64 - logits[o]).abs() / FC_Q.scale as f64;
            worst = worst.max(err);
        }
    }
    // Weight and activation rounding of two layers: within 1.5 output steps.
    assert!(worst <= 1.5, "max error {worst} output quantization steps");
}

#[test]
fn fully_connected_exact_integer_expectation() {
    // y = requant(Σ (x - zx)·w + b) computed by hand, compared exactly.
    let xq = temper_kernels::QParams { scale: 0.5, zero_point: 10 };
    let yq = temper_kernels::QParams { scale: 0.25, zero_point: -7 };
    let mut b = Builder::new("fc");
    let x = b.activation("x", &[1, 5], xq);
    b.input(x);
    let y = b.activation("y", &[1, 2], yq);
    let w: [i8; 10] = [1, -2, 3, -4, 5, 127, -127, 0, 64, -1];
    let scales = [0.01f32, 0.02];
    let bias = [100i32, -300];
    b.fully_connected("fc", x, y, QWeights { data: &w, scales: &scales, bias: &bias }, (-128, 127)).unwrap();
    b.output(y);
    let bytes = b.finish().unwrap();
    let buf = AlignedBuf::from_bytes(&bytes);
    let model = Model::from_bytes(buf.as_bytes()).unwrap();
    let mut arena = vec![0u8; model.arena_size()];
    let mut s = Session::new(&model, &mut arena).unwrap();
    let xin: [i8; 5] = [-128, 127, 10, 0, 55];
    s.set_input_i8(0, &xin).unwrap();
    s.run().unwrap();
    let out = s.output_i8(0).unwrap();
    for o in 0..2 {
        let acc: i32 = bias[o] + (0..5).map(|k| (xin[k] as i32 - 10) * w[o * 5 + k] as i32).sum::<i32>();
        let (m, sh) = temper_kernels::requant::quantize_multiplier(0.5 * scales[o] as f64 / 0.25).unwrap();
        let expect = (requantize(acc, m, sh) - 7).clamp(-128, 127);
        assert_eq!(out[o] as i32, expect, "channel {o}");
    }
}

#[test]
fn arena_and_input_errors_are_reported() {
    let bytes = TinyCnn::new(1).build();
    let buf = AlignedBuf::from_bytes(&bytes);
    let model = Model::from_bytes(buf.as_bytes()).unwrap();
    let mut small = vec![0u8; model.arena_size() - 1];
    match Session::new(&model, &mut small) {
        Err(RunError::ArenaTooSmall { needed, given }) => {
            assert_eq!(needed, model.arena_size());
            assert_eq!(given, needed - 1);
        }
        other => panic!("expected ArenaTooSmall, got {other:?}"),
    }
    let mut arena = vec![0u8; model.arena_size()];
    let mut s = Session::new(&model, &mut arena).unwrap();
    assert_eq!(s.run(), Err(RunError::InputNotSet { index: 0 }));
    assert_eq!(s.set_input_f32(0, &[0.0; 5]), Err(RunError::WrongLength { expected: 128, given: 5 }));
    assert_eq!(s.set_input_u8(0, &[0; 128]), Err(RunError::NotPixelInput { index: 0 }));
    assert!(matches!(s.set_input_i8(3, &[0; 1]), Err(RunError::NoSuchTensor { index: 3 })));
}

#[test]
fn pixel_input_folds_normalization() {
    // A model whose input accepts raw pixels: (p/255 - 0.5)/0.25, then identity-like FC.
    let q = temper_kernels::QParams { scale: 4.0 / 255.0, zero_point: 0 };
    let mut b = Builder::new("pix");
    let x = b.activation("x", &[1, 1, 2, 1], q);
    b.pixel_input(x, 1.0 / 255.0, &[0.5], &[0.25]);
    let f = b.activation("f", &[1, 2], q);
    b.reshape("flat", x, f);
    let y = b.activation("y", &[1, 2], q);
    b.fully_connected("fc", f, y, QWeights { data: &[127, 0, 0, 127], scales: &[1.0 / 127.0, 1.0 / 127.0], bias: &[0, 0] }, (-128, 127))
        .unwrap();
    b.output(y);
    let bytes = b.finish().unwrap();
    let buf = AlignedBuf::from_bytes(&bytes);
    let model = Model::from_bytes(buf.as_bytes()).unwrap();
    let mut arena = vec![0u8; model.arena_size()];
    let mut s = Session::new(&model, &mut arena).unwrap();
    for (p0, p1) in [(0u8, 255u8), (128, 64), (200, 10)] {
        s.set_input_u8(0, &[p0, p1]).unwrap();
        s.run().unwrap();
        let mut out = [0f32; 2];
        s.output_f32(0, &mut out).unwrap();
        for (o, p) in out.iter().zip([p0, p1]) {
            let real = (p as f32 / 255.0 - 0.5) / 0.25;
            assert!((o - real).abs() <= 1.01 * q.scale, "pixel {p}: {o} vs {real}");
        }
    }
}

#[test]
fn random_conv_graphs_match_float_within_a_step() {
    // Depthwise and grouped convolutions, with padding, strides and dilation.
    let mut rng = Rng(4242);
    for case in 0..12 {
        let (h, w, c) = (rng.int(3, 9) as usize, rng.int(3, 9) as usize, [1, 2, 4, 6][case % 4]);
        let groups = if case % 3 == 0 { c } else { 1 };
        let o = if groups == c { c } else { rng.int(1, 20) as usize };
        let k = [1, 3, 5][case % 3];
        let win = Window { kernel: [k, k], stride: [1 + case % 2, 1], dilation: [1, 1 + (case / 6)], pads: [k / 2, k / 2, k / 2, k / 2] };
        let Some([oh, ow]) = win.out_size(h, w) else { continue };
        let xq = temper_kernels::QParams { scale: 0.02, zero_point: rng.int(-20, 20) };
        let yq = temper_kernels::QParams { scale: 0.05, zero_point: rng.int(-20, 20) };
        let cg = c / groups;
        let wf: Vec<f32> = (0..o * k * k * cg).map(|_| rng.uniform(-0.4, 0.4)).collect();
        let (wq, ws) = TinyCnn::quantize(&wf, o);
        let bias: Vec<i32> = (0..o).map(|_| rng.int(-500, 500)).collect();
        let mut b = Builder::new("conv");
        let x = b.activation("x", &[1, h, w, c], xq);
        b.input(x);
        let y = b.activation("y", &[1, oh, ow, o], yq);
        b.conv2d("c", x, y, win, groups, QWeights { data: &wq, scales: &ws, bias: &bias }, (-128, 127)).unwrap();
        b.output(y);
        let bytes = b.finish().unwrap();
        let buf = AlignedBuf::from_bytes(&bytes);
        let model = Model::from_bytes(buf.as_bytes()).unwrap();
        let mut arena = vec![0u8; model.arena_size()];
        let mut s = Session::with_kernels(&model, &mut arena, &dispatch::SCALAR).unwrap();
        let xin: Vec<i8> = (0..h * w * c).map(|_| rng.int(-128, 127) as i8).collect();
        s.set_input_i8(0, &xin).unwrap();
        s.run().unwrap();
        let out = s.output_i8(0).unwrap();
        for oy in 0..oh {
            for ox in 0..ow {
                for oc in 0..o {
                    let g = oc / (o / groups);
                    let mut acc = bias[oc] as f64 * xq.scale as f64 * ws[oc] as f64;
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = (oy * win.stride[0] + ky * win.dilation[0]) as isize - win.pads[0] as isize;
                            let ix = (ox * win.stride[1] + kx * win.dilation[1]) as isize - win.pads[1] as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            for ci in 0..cg {
                                let xv = xin[((iy as usize * w + ix as usize) * c) + g * cg + ci] as i32 - xq.zero_point;
                                acc += xq.scale as f64 * xv as f64 * ws[oc] as f64 * wq[((oc * k + ky) * k + kx) * cg + ci] as f64;
                            }
                        }
                    }
                    let expect = (acc / yq.scale as f64 + yq.zero_point as f64).clamp(-128.0, 127.0);
                    let got = out[(oy * ow + ox) * o + oc] as f64;
                    assert!((got - expect).abs() <= 0.5 + 1e-6, "case {case}: ({oy},{ox},{oc}) got {got}, float {expect}");
                }
            }
        }
    }
}
