//! Every runtime op end to end: built with the writer, validated by the loader, run by the
//! session, compared with an independent float computation on the dequantized input.

use temper_kernels::requant::{dequantize, quantize_f32};
use temper_kernels::QParams;
use temper_runtime::writer::{AlignedBuf, Builder, QWeights, Window};
use temper_runtime::{Model, Session};
use temper_tests::Rng;

const QA: QParams = QParams { scale: 0.03, zero_point: 7 };
const QB: QParams = QParams { scale: 0.05, zero_point: -20 };
const QY: QParams = QParams { scale: 0.04, zero_point: 3 };

/// Build with `f`, feed `inputs` (int8), return the dequantized output 0.
fn run(build: impl FnOnce(&mut Builder) -> u32, inputs: &[Vec<i8>]) -> Vec<f32> {
    let mut b = Builder::new("op");
    let y = build(&mut b);
    b.output(y);
    let bytes = b.finish().expect("builds and validates");
    let buf = AlignedBuf::from_bytes(&bytes);
    let model = Model::from_bytes(buf.as_bytes()).unwrap();
    let mut arena = vec![0u8; model.arena_size()];
    let mut s = Session::new(&model, &mut arena).unwrap();
    for (i, x) in inputs.iter().enumerate() {
        s.set_input_i8(i, x).unwrap();
    }
    s.run().unwrap();
    let n = model.tensor(model.graph_outputs()[0]).numel();
    let mut out = vec![0f32; n];
    s.output_f32(0, &mut out).unwrap();
    out
}

fn rand_i8(r: &mut Rng, n: usize) -> Vec<i8> {
    (0..n).map(|_| r.int(-128, 127) as i8).collect()
}

fn deq(v: &[i8], q: QParams) -> Vec<f32> {
    v.iter().map(|&x| dequantize(x, q.scale, q.zero_point)).collect()
}

/// Expected quantized-then-dequantized value of a real result.
fn requant_ref(v: f32, q: QParams) -> f32 {
    dequantize(quantize_f32(v, q.scale, q.zero_point), q.scale, q.zero_point)
}

fn close(got: &[f32], want: &[f32], q: QParams, steps: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let w = requant_ref(*w, q);
        assert!((g - w).abs() <= steps * q.scale + 1e-6, "{what}[{i}]: got {g}, want {w}");
    }
}

#[test]
fn add_and_mul_with_broadcast() {
    let mut r = Rng(1);
    let a = rand_i8(&mut r, 2 * 3 * 4 * 5);
    let bv = rand_i8(&mut r, 5);
    for mul in [false, true] {
        let out = run(
            |b| {
                let x = b.activation("a", &[2, 3, 4, 5], QA);
                let z = b.activation("b", &[1, 1, 1, 5], QB);
                b.input(x);
                b.input(z);
                let y = b.activation("y", &[2, 3, 4, 5], if mul { QParams { scale: 0.1, zero_point: 0 } } else { QY });
                if mul {
                    b.mul("mul", x, z, y, (-128, 127)).unwrap();
                } else {
                    b.add("add", x, z, y, (-128, 127)).unwrap();
                }
                y
            },
            &[a.clone(), bv.clone()],
        );
        let (fa, fb) = (deq(&a, QA), deq(&bv, QB));
        let want: Vec<f32> = (0..a.len()).map(|i| if mul { fa[i] * fb[i % 5] } else { fa[i] + fb[i % 5] }).collect();
        let q = if mul { QParams { scale: 0.1, zero_point: 0 } } else { QY };
        close(&out, &want, q, 1.0, if mul { "mul" } else { "add" });
    }
}

#[test]
fn pools_pad_transpose_resize_concat() {
    let mut r = Rng(2);
    let x = rand_i8(&mut r, 6 * 6 * 3);
    let fx = deq(&x, QA);
    let at = |y: usize, xx: usize, c: usize| fx[(y * 6 + xx) * 3 + c];
    // average pool 3x3 stride 2 pad 1, padding excluded
    let out = run(
        |b| {
            let i = b.activation("x", &[1, 6, 6, 3], QA);
            b.input(i);
            let y = b.activation("y", &[1, 3, 3, 3], QY);
            b.avg_pool("avg", i, y, Window::square(3, 2, 1), false, (-128, 127)).unwrap();
            y
        },
        std::slice::from_ref(&x),
    );
    let mut want = vec![];
    for oy in 0..3 {
        for ox in 0..3 {
            for c in 0..3 {
                let (mut s, mut n) = (0.0, 0);
                for ky in 0..3 {
                    for kx in 0..3 {
                        let (iy, ix) = ((oy * 2 + ky) as isize - 1, (ox * 2 + kx) as isize - 1);
                        if (0..6).contains(&iy) && (0..6).contains(&ix) {
                            s += at(iy as usize, ix as usize, c);
                            n += 1;
                        }
                    }
                }
                want.push(s / n as f32);
            }
        }
    }
    close(&out, &want, QY, 1.0, "avgpool");
    // pad then transpose to NCHW: exact data movement
    let out = run(
        |b| {
            let i = b.activation("x", &[1, 6, 6, 3], QA);
            b.input(i);
            let p = b.activation("p", &[1, 7, 8, 3], QA);
            b.pad("pad", i, p, [0, 1, 0, 0], [0, 0, 2, 0]);
            let t = b.activation("t", &[1, 3, 7, 8], QA);
            b.transpose("t", p, t, [0, 3, 1, 2]);
            t
        },
        std::slice::from_ref(&x),
    );
    for c in 0..3 {
        for y in 0..7 {
            for xx in 0..8 {
                let want = if y >= 1 && xx < 6 { at(y - 1, xx, c) } else { 0.0 };
                assert_eq!(out[(c * 7 + y) * 8 + xx], want, "pad/transpose ({c},{y},{xx})");
            }
        }
    }
    // nearest resize 2x: exact
    let out = run(
        |b| {
            let i = b.activation("x", &[1, 6, 6, 3], QA);
            b.input(i);
            let y = b.activation("y", &[1, 12, 12, 3], QA);
            b.resize("up", i, y, 0);
            y
        },
        std::slice::from_ref(&x),
    );
    for y in 0..12 {
        for xx in 0..12 {
            for c in 0..3 {
                assert_eq!(out[(y * 12 + xx) * 3 + c], at(y / 2, xx / 2, c));
            }
        }
    }
    // concat on channels with rescaling of the second input
    let x2 = rand_i8(&mut r, 6 * 6 * 2);
    let out = run(
        |b| {
            let i = b.activation("x", &[1, 6, 6, 3], QA);
            let j = b.activation("x2", &[1, 6, 6, 2], QB);
            b.input(i);
            b.input(j);
            let y = b.activation("y", &[1, 6, 6, 5], QA);
            b.concat("cat", &[i, j], y, 3).unwrap();
            y
        },
        &[x.clone(), x2.clone()],
    );
    let f2 = deq(&x2, QB);
    let want: Vec<f32> = (0..36 * 5).map(|i| if i % 5 < 3 { fx[i / 5 * 3 + i % 5] } else { f2[i / 5 * 2 + i % 5 - 3] }).collect();
    close(&out, &want, QA, 0.5, "concat");
}

#[test]
fn lut_softmax_and_transposed_conv() {
    let mut r = Rng(3);
    let x = rand_i8(&mut r, 2 * 10);
    let fx = deq(&x, QA);
    // hard-swish through a lookup table
    let yq = QParams { scale: 0.02, zero_point: -100 };
    let mut table = [0i8; 256];
    for (i, t) in table.iter_mut().enumerate() {
        let v = dequantize((i as i32 - 128) as i8, QA.scale, QA.zero_point);
        *t = quantize_f32(v * (v + 3.0).clamp(0.0, 6.0) / 6.0, yq.scale, yq.zero_point);
    }
    let out = run(
        |b| {
            let i = b.activation("x", &[2, 10], QA);
            b.input(i);
            let y = b.activation("y", &[2, 10], yq);
            b.lut("hswish", i, y, &table);
            y
        },
        std::slice::from_ref(&x),
    );
    let want: Vec<f32> = fx.iter().map(|v| v * (v + 3.0).clamp(0.0, 6.0) / 6.0).collect();
    close(&out, &want, yq, 0.0, "hardswish");
    // softmax over rows
    let sq = QParams { scale: 1.0 / 256.0, zero_point: -128 };
    let mut exp = [0u32; 256];
    for (d, e) in exp.iter_mut().enumerate() {
        *e = ((-(d as f64) * QA.scale as f64).exp() * 65536.0).round() as u32;
    }
    let out = run(
        |b| {
            let i = b.activation("x", &[2, 10], QA);
            b.input(i);
            let y = b.activation("y", &[2, 10], sq);
            b.softmax("softmax", i, y, &exp);
            y
        },
        std::slice::from_ref(&x),
    );
    for row in 0..2 {
        let m = fx[row * 10..row * 10 + 10].iter().cloned().fold(f32::MIN, f32::max);
        let s: f32 = fx[row * 10..row * 10 + 10].iter().map(|v| (v - m).exp()).sum();
        let want: Vec<f32> = fx[row * 10..row * 10 + 10].iter().map(|v| (v - m).exp() / s).collect();
        close(&out[row * 10..row * 10 + 10], &want, sq, 1.0, "softmax");
    }
    // transposed conv 3x3 stride 2 pad 1: [1,3,3,2] -> [1,5,5,3]
    let xi = rand_i8(&mut r, 3 * 3 * 2);
    let fxi = deq(&xi, QA);
    let wf: Vec<f32> = (0..3 * 3 * 3 * 2).map(|_| r.uniform(-0.5, 0.5)).collect();
    let (wq, ws) = temper_tests::TinyCnn::quantize(&wf, 3);
    let out = run(
        |b| {
            let i = b.activation("x", &[1, 3, 3, 2], QA);
            b.input(i);
            let y = b.activation("y", &[1, 5, 5, 3], QY);
            b.conv_transpose2d(
                "deconv",
                i,
                y,
                Window::square(3, 2, 1),
                1,
                QWeights { data: &wq, scales: &ws, bias: &[0, 0, 0] },
                (-128, 127),
            )
            .unwrap();
            y
        },
        std::slice::from_ref(&xi),
    );
    let mut want = vec![0f32; 5 * 5 * 3];
    for iy in 0..3 {
        for ix in 0..3 {
            for o in 0..3 {
                for ky in 0..3 {
                    for kx in 0..3 {
                        let (oy, ox) = ((iy * 2 + ky) as isize - 1, (ix * 2 + kx) as isize - 1);
                        if !(0..5).contains(&oy) || !(0..5).contains(&ox) {
                            continue;
                        }
                        for c in 0..2 {
                            let w = wq[((o * 3 + ky) * 3 + kx) * 2 + c] as f32 * ws[o];
                            want[((oy * 5 + ox) * 3) as usize + o] += fxi[(iy * 3 + ix) * 2 + c] * w;
                        }
                    }
                }
            }
        }
    }
    close(&out, &want, QY, 0.5001, "conv_transpose");
}

#[test]
fn channel_affine_per_channel_with_negative_and_zero_scales() {
    let mut r = Rng(16);
    let x = rand_i8(&mut r, 2 * 3 * 4 * 5);
    let a = [0.8f32, -1.7, 0.0, 2.5, -0.05];
    let bb = [0.3f32, -0.9, 1.1, 0.0, -2.0];
    for (shape, clamp) in [(vec![2usize, 3, 4, 5], (-128, 127)), (vec![24, 5], (3, 127))] {
        let out = run(
            |b| {
                let xi = b.activation("x", &shape, QA);
                b.input(xi);
                let y = b.activation("y", &shape, QY);
                b.channel_affine("affine", xi, y, &a, &bb, clamp).unwrap();
                y
            },
            std::slice::from_ref(&x),
        );
        let fx = deq(&x, QA);
        let lo = dequantize(clamp.0 as i8, QY.scale, QY.zero_point);
        let want: Vec<f32> = fx.iter().enumerate().map(|(i, &v)| (v * a[i % 5] + bb[i % 5]).max(lo)).collect();
        close(&out, &want, QY, 1.0, "channel_affine");
    }
}

/// One detection of the float reference: box (x1, y1, x2, y2), score, class.
type RefDet = ([f64; 4], f64, usize);

/// The float reference of DetectPostprocess, written independently of the op: f64 dequantize,
/// sigmoid, threshold, ranking (score desc, index asc), top-k, DFL softmax expectation, clip,
/// greedy NMS.
fn detect_reference(h: &temper_tests::det::DetHead, cfg: &temper_runtime::ops::detect_postprocess::DetectConfig) -> Vec<RefDet> {
    let score = |q: i8, s: QParams| {
        let v = (q as i32 - s.zero_point) as f64 * s.scale as f64;
        if cfg.logits {
            1.0 / (1.0 + (-v).exp())
        } else {
            v.clamp(0.0, 1.0)
        }
    };
    let (c, bins) = (h.classes, h.reg_max + 1);
    let mut cands = Vec::new(); // (score, index, level, cell, class)
    let mut first = 0;
    for l in 0..h.strides.len() {
        let (gh, gw) = h.grid(l);
        for cell in 0..gh * gw {
            let row = &h.scores[l][cell * c..(cell + 1) * c];
            let classes: Vec<usize> = if cfg.class_aware {
                (0..c).collect()
            } else {
                let best = (0..c).fold(0, |b, k| if score(row[k], h.qs[l]) > score(row[b], h.qs[l]) { k } else { b });
                vec![best]
            };
            for k in classes {
                let p = score(row[k], h.qs[l]);
                if p >= cfg.score_threshold as f64 {
                    cands.push((p, (first + cell) * c + k, l, cell, k));
                }
            }
        }
        first += gh * gw;
    }
    cands.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.1.cmp(&b.1)));
    cands.truncate(cfg.top_k);
    let iou = |a: &[f64; 4], b: &[f64; 4]| {
        let inter = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0) * (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
        let area = |r: &[f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
        let union = area(a) + area(b) - inter;
        if union > 0.0 {
            inter / union
        } else {
            0.0
        }
    };
    let mut kept: Vec<RefDet> = Vec::new();
    for (p, _, l, cell, k) in cands {
        if kept.len() == cfg.max_det {
            break;
        }
        let (_, gw) = h.grid(l);
        let s = h.strides[l] as f64;
        let side = |j: usize| {
            let v: Vec<f64> = (0..bins)
                .map(|b| (h.boxes[l][(cell * 4 + j) * bins + b] as i32 - h.qb[l].zero_point) as f64 * h.qb[l].scale as f64)
                .collect();
            let m = v.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = v.iter().map(|x| (x - m).exp()).collect();
            e.iter().enumerate().map(|(b, x)| b as f64 * x).sum::<f64>() / e.iter().sum::<f64>() * s
        };
        let (cx, cy) = (((cell % gw) as f64 + 0.5) * s, ((cell / gw) as f64 + 0.5) * s);
        let (w, hh) = (cfg.image_w as f64, cfg.image_h as f64);
        let bx = [(cx - side(0)).clamp(0.0, w), (cy - side(1)).clamp(0.0, hh), (cx + side(2)).clamp(0.0, w), (cy + side(3)).clamp(0.0, hh)];
        let t = (cfg.iou_threshold as f64 * 65536.0).round() / 65536.0;
        if kept.iter().any(|o| (!cfg.class_aware || o.2 == k) && iou(&o.0, &bx) > t) {
            continue;
        }
        kept.push((bx, p, k));
    }
    kept
}

#[test]
fn detect_postprocess_matches_a_float_reference() {
    use temper_runtime::ops::detect_postprocess::detections;
    let (mut checked, mut max_err) = (0, 0f64);
    for (seed, logits, aware, bg_hi, top_k) in [
        (1, true, true, -40, 200),
        (2, true, false, -40, 200),
        (3, false, true, 60, 300),
        (4, true, true, 0, 40),
        (5, false, false, 127, 500),
    ] {
        let h = temper_tests::det::DetHead::random(seed, (100, 72), &[8, 16, 32], 6, 7, bg_hi, 12);
        let mut cfg = h.config(logits, aware);
        cfg.top_k = top_k;
        let bytes = h.build(&cfg);
        let buf = AlignedBuf::from_bytes(&bytes);
        let model = Model::from_bytes(buf.as_bytes()).unwrap();
        let mut arena = vec![0u8; model.arena_size()];
        let mut s = Session::new(&model, &mut arena).unwrap();
        for (i, x) in h.inputs().iter().enumerate() {
            s.set_input_i8(i, x).unwrap();
        }
        s.run().unwrap();
        let got: Vec<_> = detections(s.output_i8(0).unwrap()).collect();
        let want = detect_reference(&h, &cfg);
        assert!(!want.is_empty(), "seed {seed}: the planted objects are detected");
        assert_eq!(got.len(), want.len(), "seed {seed}: detection count");
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.class as usize, w.2, "seed {seed} det {k}: class");
            assert!((g.score as f64 - w.1).abs() <= 1e-6, "seed {seed} det {k}: score {} vs {}", g.score, w.1);
            for (gc, wc) in [g.x1, g.y1, g.x2, g.y2].iter().zip(w.0) {
                assert!((*gc as f64 - wc).abs() <= 1.0 / 256.0, "seed {seed} det {k}: box {g:?} vs {w:?}");
                max_err = max_err.max((*gc as f64 - wc).abs());
            }
        }
        eprintln!("seed {seed}: {} detections match the reference", got.len());
        checked += got.len();
    }
    eprintln!("largest coordinate difference: {max_err:.6} px (bound 1/256)");
    assert!(checked > 50);
}
