//! Run one GEMM, convolution or depthwise layer `reps` times on one kernel variant, for external
//! instruction counting (e.g. `qemu-aarch64 -d in_asm,exec,nochain`, difference of two `reps`).
//!
//! ```text
//! kernel_once <variant> gemm <m> <k> <n> <reps>
//! kernel_once <variant> dw <h> <w> <c> <k> <stride> <reps>
//! ```

use std::hint::black_box;
use temper_kernels::dispatch::variants;
use temper_kernels::pack;
use temper_kernels::params::{Conv2d, Gemm, Nhwc, OutQuant};
use temper_kernels::reference::conv::DepthwiseArgs;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize| -> usize { args[i].parse().expect("number") };
    let v = variants().iter().find(|v| v.name == args[1]).expect("variant name");
    let Some(kern) = v.kernels() else {
        println!("skipped {}: CPU lacks {}", v.name, v.missing());
        return;
    };
    let bytes = |n: usize, salt: usize| -> Vec<i8> { (0..n).map(|i| ((i * 37 + salt * 11) % 255) as i8).collect() };
    match args[2].as_str() {
        "gemm" => {
            let (m, k, n, reps) = (num(3), num(4), num(5), num(6));
            let a = bytes(m * k, 1);
            // weights in [-127, 127] (the NEON paths' common case)
            let w: Vec<i8> = bytes(n * k, 2).into_iter().map(|x| x.max(-127)).collect();
            let mut b = vec![0i8; pack::packed_len(n, k).unwrap()];
            pack::pack_into(&w, n, k, &mut b);
            let bias = vec![100; n];
            let (mult, shift) = (vec![1 << 30; n], vec![40; n]);
            let q = OutQuant { mult: &mult, shift: &shift, zero_point: 3, min: -128, max: 127 };
            let g = Gemm { m, n, k, a: &a, lda: k, b: &b, bias: &bias, bias_u8: &bias, q };
            let mut c = vec![0i8; m * n];
            for _ in 0..reps {
                (kern.gemm)(black_box(&g), black_box(&mut c), n);
            }
            println!("{} gemm {m}x{k}x{n} x{reps}: checksum {}", v.name, c.iter().map(|&x| x as i64).sum::<i64>());
        }
        "dw" => {
            let (h, w, c, kk, s, reps) = (num(3), num(4), num(5), num(6), num(7), num(8));
            let pad = kk / 2;
            let g = Conv2d {
                input: Nhwc::new(1, h, w, c),
                output: Nhwc::new(1, (h + 2 * pad - kk) / s + 1, (w + 2 * pad - kk) / s + 1, c),
                kh: kk,
                kw: kk,
                sh: s,
                sw: s,
                dh: 1,
                dw: 1,
                pad_top: pad,
                pad_left: pad,
                groups: c,
            };
            let input = bytes(g.input.len(), 3);
            let wts: Vec<i8> = bytes(kk * kk * c, 4).into_iter().map(|x| x.max(-127)).collect();
            let bias = vec![100; c];
            let (mult, shift) = (vec![1 << 30; c], vec![40; c]);
            let q = OutQuant { mult: &mult, shift: &shift, zero_point: 3, min: -128, max: 127 };
            let a = DepthwiseArgs { geom: g, input: &input, input_zp: -5, weights: &wts, bias: &bias, q };
            let mut out = vec![0i8; g.output.len()];
            for _ in 0..reps {
                (kern.depthwise2d)(black_box(&a), black_box(&mut out));
            }
            println!("{} dw {h}x{w}x{c} {kk}x{kk}/s{s} x{reps}: checksum {}", v.name, out.iter().map(|&x| x as i64).sum::<i64>());
        }
        other => panic!("unknown kernel {other}"),
    }
}
