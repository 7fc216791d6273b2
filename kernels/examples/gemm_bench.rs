//! Kernel benchmark: GOPS (2·M·N·K per second) of every kernel table this CPU can run, on GEMM
//! shapes taken from real layers, plus convolution and depthwise layers end to end. On x86 with
//! AVX-512 VNNI it also reports the fraction of the measured single-core VNNI peak (a tight loop
//! of independent `vpdpbusd zmm`, timed in this binary).
//!
//! ```text
//! cargo run --release -p temper-kernels --example gemm_bench [-- --quick] [--only VARIANT ...]
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};
use temper_kernels::dispatch::{conv_scratch_len, variants, Kernels};
use temper_kernels::pack;
use temper_kernels::params::{Conv2d, Gemm, Nhwc, OutQuant};
use temper_kernels::reference::conv::{ConvArgs, DepthwiseArgs};

struct Rng(u64);
impl Rng {
    fn i8s(&mut self, n: usize) -> Vec<i8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                (self.0 >> 24) as i8
            })
            .collect()
    }
}

/// A benchmark layer: (label, h, w, cin, cout, k, stride, pad, depthwise).
type Layer = (&'static str, usize, usize, usize, usize, usize, usize, usize, bool);

/// Best seconds per call of `f` over repeated timed batches (at least `budget` in total).
fn time(budget: Duration, mut f: impl FnMut()) -> f64 {
    f(); // warm up
    let mut best = f64::INFINITY;
    let start = Instant::now();
    let mut reps = 1u32;
    while start.elapsed() < budget {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        let dt = t.elapsed().as_secs_f64() / reps as f64;
        best = best.min(dt);
        if dt * (reps as f64) < 0.02 {
            reps = reps.saturating_mul(2);
        }
    }
    best
}

/// Single-core peak of the widest VNNI instruction, in GOPS (2 ops per multiply-accumulate).
fn vnni_peak() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        use temper_kernels::x86::{vnni512_peak, VNNI512_PEAK_MACS_PER_ITER};
        vnni512_peak(1, 1)?;
        let iters = 4_000_000u64;
        let mut best = f64::INFINITY;
        for _ in 0..25 {
            let t = Instant::now();
            black_box(vnni512_peak(black_box(iters), 3));
            best = best.min(t.elapsed().as_secs_f64());
        }
        Some(2.0 * (iters * VNNI512_PEAK_MACS_PER_ITER) as f64 / best / 1e9)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let budget = Duration::from_millis(if quick { 60 } else { 400 });
    // `--only NAME` (repeatable) restricts the run to some variants.
    let argv: Vec<String> = std::env::args().collect();
    let only: Vec<&str> = argv.windows(2).filter(|w| w[0] == "--only").map(|w| w[1].as_str()).collect();
    let tables: Vec<(&str, &Kernels)> =
        variants().iter().filter(|v| only.is_empty() || only.contains(&v.name)).filter_map(|v| v.kernels().map(|k| (v.name, k))).collect();
    for v in variants() {
        if v.kernels().is_none() {
            println!("skipped {}: CPU lacks {}", v.name, v.missing());
        }
    }
    // The machine may be shared: take the best of a measurement before and after the runs.
    let mut peak = vnni_peak();
    match peak {
        Some(p) => println!("measured single-core VNNI peak (vpdpbusd zmm loop): {p:.1} GOPS"),
        None => println!("no VNNI peak on this CPU"),
    }

    // (label, M, K, N)
    let shapes: &[(&str, usize, usize, usize)] = &[
        ("conv3x3 8x8x64->64", 64, 576, 64),
        ("conv3x3 14x14x128->256", 196, 1152, 256),
        ("fc 1024->1024", 1, 1024, 1024),
        ("pw 56x56x64->64", 3136, 64, 64),
        ("fmnist conv2", 784, 144, 32),
        ("fmnist fc", 1, 1568, 64),
        ("mbv2 pw 112x112x16->96", 12544, 16, 96),
        ("mbv2 pw 56x56x24->144", 3136, 24, 144),
        ("mbv2 pw 14x14x96->576", 196, 96, 576),
    ];
    let mut rng = Rng(0x1234_5678_9abc_def1);
    print!("\nGEMM GOPS (M×K×N)            ");
    for (name, _) in &tables {
        print!("{name:>17}");
    }
    println!();
    for &(label, m, k, n) in shapes {
        let a = rng.i8s(m * k);
        let w = rng.i8s(n * k);
        let mut b = vec![0i8; pack::packed_len(n, k).unwrap()];
        pack::pack_into(&w, n, k, &mut b);
        let bias: Vec<i32> = (0..n as i32).map(|j| j * 31 - 500).collect();
        let mult: Vec<i32> = (0..n as i32).map(|j| (1 << 30) + j * 12345).collect();
        let shift = vec![38; n];
        let q = OutQuant { mult: &mult, shift: &shift, zero_point: -3, min: -128, max: 127 };
        let g = Gemm { m, n, k, a: &a, lda: k, b: &b, bias: &bias, bias_u8: &bias, q };
        let mut c = vec![0i8; m * n];
        let ops = 2.0 * (m * n * k) as f64;
        print!("{:<29}", format!("{label} {m}×{k}×{n}"));
        let mut cells = Vec::new();
        for (_, t) in &tables {
            let s = time(budget, || (t.gemm)(black_box(&g), black_box(&mut c), n));
            cells.push(ops / s / 1e9);
            print!("{:>17.2}", ops / s / 1e9);
        }
        println!();
        if let Some(p) = peak {
            print!("{:<29}", "  % of VNNI peak");
            for g in &cells {
                print!("{:>16.1}%", 100.0 * g / p);
            }
            println!();
        }
    }

    // Convolution layers through each table's conv2d (im2col + GEMM) and depthwise.
    println!();
    print!("{:<29}", "layer GOPS");
    for (name, _) in &tables {
        print!("{name:>17}");
    }
    println!();
    let layers: &[Layer] = &[
        ("fmnist conv1 28² 1→16 3x3", 28, 28, 1, 16, 3, 1, 1, false),
        ("fmnist conv2 28² 16→32 3x3", 28, 28, 16, 32, 3, 1, 1, false),
        ("conv 14² 128→256 3x3", 14, 14, 128, 256, 3, 1, 1, false),
        ("pw 56² 64→64 1x1", 56, 56, 64, 64, 1, 1, 0, false),
        ("conv 56² 32→64 3x3 s2", 56, 56, 32, 64, 3, 2, 1, false),
        ("dw 56² 64 3x3", 56, 56, 64, 64, 3, 1, 1, true),
        ("dw 28² 128 3x3 s2", 28, 28, 128, 128, 3, 2, 1, true),
        ("dw 14² 256 5x5", 14, 14, 256, 256, 5, 1, 2, true),
        ("mbv2 conv1 224² 3→16 3x3 s2", 224, 224, 3, 16, 3, 2, 1, false),
        ("mbv2 dw 112² 16 3x3", 112, 112, 16, 16, 3, 1, 1, true),
        ("mbv2 dw 56² 144 3x3", 56, 56, 144, 144, 3, 1, 1, true),
    ];
    for &(label, h, w, cin, cout, kk, s, pad, dw) in layers {
        let oh = (h + 2 * pad - kk) / s + 1;
        let ow = (w + 2 * pad - kk) / s + 1;
        let g = Conv2d {
            input: Nhwc::new(1, h, w, cin),
            output: Nhwc::new(1, oh, ow, cout),
            kh: kk,
            kw: kk,
            sh: s,
            sw: s,
            dh: 1,
            dw: 1,
            pad_top: pad,
            pad_left: pad,
            groups: if dw { cin } else { 1 },
        };
        let input = rng.i8s(g.input.len());
        let mult: Vec<i32> = (0..cout as i32).map(|j| (1 << 30) + j * 12345).collect();
        let shift = vec![36; cout];
        let bias: Vec<i32> = (0..cout as i32).map(|j| j * 31 - 500).collect();
        let q = OutQuant { mult: &mult, shift: &shift, zero_point: 1, min: -128, max: 127 };
        let mut out = vec![0i8; g.output.len()];
        let macs = if dw { g.output.len() * kk * kk } else { g.output.len() * g.k() };
        let ops = 2.0 * macs as f64;
        print!("{label:<29}");
        if dw {
            let wts = rng.i8s(kk * kk * cin);
            let args = DepthwiseArgs { geom: g, input: &input, input_zp: -7, weights: &wts, bias: &bias, q };
            for (_, t) in &tables {
                let sec = time(budget, || (t.depthwise2d)(black_box(&args), black_box(&mut out)));
                print!("{:>17.2}", ops / sec / 1e9);
            }
        } else {
            let k = g.k();
            let w = rng.i8s(cout * k);
            let mut b = vec![0i8; pack::packed_len(cout, k).unwrap()];
            pack::pack_into(&w, cout, k, &mut b);
            let args = ConvArgs { geom: g, input: &input, input_zp: -7, weights: &b, bias: &bias, bias_u8: &bias, q };
            let mut scratch = vec![0i8; conv_scratch_len(&g)];
            for (_, t) in &tables {
                let sec = time(budget, || (t.conv2d)(black_box(&args), black_box(&mut out), black_box(&mut scratch)));
                print!("{:>17.2}", ops / sec / 1e9);
            }
        }
        println!();
    }
    if let (Some(p0), Some(p1)) = (peak, vnni_peak()) {
        peak = Some(p0.max(p1));
        println!("\nVNNI peak re-measured after the runs: {p1:.1} GOPS (first: {p0:.1})");
    }
    let _ = peak;
}
