//! The test model of the C API tests and the Rust runtime's reference outputs for it.

#![allow(dead_code)]

use temper_runtime::kernels::QParams;
use temper_runtime::writer::{clamp_range, AlignedBuf, Builder, QWeights, Window};
use temper_runtime::{Model, Session};

/// Input `[1, 8, 8, 2]` quantization.
const IN_Q: QParams = QParams { scale: 1.0 / 64.0, zero_point: -3 };
/// Conv (+ReLU) and pool quantization.
const CONV_Q: QParams = QParams { scale: 0.03, zero_point: -128 };
/// Logits quantization.
const FC_Q: QParams = QParams { scale: 0.1, zero_point: 5 };

/// Input elements.
pub const IN_LEN: usize = 8 * 8 * 2;

fn weights(n: usize, seed: u32) -> Vec<i8> {
    // A fixed, varied pattern (any values do; both sides compute with the same file).
    (0..n).map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 24) as u8 as i8).max(-127)).collect()
}

/// conv 3×3 pad 1 + ReLU → maxpool 2×2 → flatten → FC(3). Outputs: logits `[1, 3]` and the
/// pooled tensor `[1, 4, 4, 4]`. With `pixels`, the input accepts raw u8 pixels.
pub fn build_model(pixels: bool) -> Vec<u8> {
    let mut b = Builder::new(if pixels { "capi-test-pixels" } else { "capi-test-plain" });
    let x = b.activation("x", &[1, 8, 8, 2], IN_Q);
    if pixels {
        b.pixel_input(x, 1.0 / 255.0, &[0.5, 0.4], &[0.5, 0.6]);
    } else {
        b.input(x);
    }
    let c = b.activation("conv", &[1, 8, 8, 4], CONV_Q);
    let cw = weights(4 * 9 * 2, 1);
    let cs = [0.004, 0.003, 0.005, 0.0035];
    let cb = [120, -40, 0, 300];
    b.conv2d(
        "conv",
        x,
        c,
        Window::square(3, 1, 1),
        1,
        QWeights { data: &cw, scales: &cs, bias: &cb },
        clamp_range(Some(0.0), None, CONV_Q),
    )
    .unwrap();
    let p = b.activation("pool", &[1, 4, 4, 4], CONV_Q);
    b.max_pool("pool", c, p, Window::square(2, 2, 0), (-128, 127));
    let f = b.activation("flat", &[1, 64], CONV_Q);
    b.reshape("flatten", p, f);
    let y = b.activation("logits", &[1, 3], FC_Q);
    let fw = weights(3 * 64, 7);
    let fs = [0.002, 0.0025, 0.0015];
    let fb = [10, -200, 55];
    b.fully_connected("fc", f, y, QWeights { data: &fw, scales: &fs, bias: &fb }, (-128, 127)).unwrap();
    b.output(y);
    b.output(p);
    b.meta("labels", "cat,dog,bird");
    b.finish().unwrap()
}

/// The three deterministic inputs of `test_temper.c` (same formulas).
pub fn inputs() -> (Vec<f32>, Vec<i8>, Vec<u8>) {
    let f = (0..IN_LEN).map(|i| ((i * 37) % 128) as f32 / 64.0 - 1.0).collect();
    let q = (0..IN_LEN).map(|i| (((i * 53) % 256) as i32 - 128) as i8).collect();
    let p = (0..IN_LEN).map(|i| ((i * 29 + 7) % 256) as u8).collect();
    (f, q, p)
}

fn floats(tag: &str, v: &[f32]) -> String {
    let mut s = format!("OUT {tag} f32");
    for x in v {
        s += &format!(" {:08x}", x.to_bits());
    }
    s
}

fn ints(tag: &str, v: &[i8]) -> String {
    let mut s = format!("OUT {tag} i8");
    for x in v {
        s += &format!(" {x}");
    }
    s
}

fn info(tag: &str, m: &Model<'_>, id: u32, pixels: bool) -> String {
    let t = m.tensor(id);
    let mut dims = [0u32; 8];
    dims[..t.dims.len()].copy_from_slice(t.dims);
    let dims: Vec<String> = dims.iter().map(u32::to_string).collect();
    format!(
        "OUT {tag} name={} dtype={} rank={} dims={} numel={} scale={:08x} zp={} pixels={}",
        t.name,
        t.dtype as u32,
        t.dims.len(),
        dims.join(","),
        t.numel(),
        t.scale.to_bits(),
        t.zero_point,
        pixels as u32
    )
}

/// The `OUT` lines `test_temper.c` must print for the pixel model, computed with the Rust
/// runtime (its kernel path is chosen the same way, and every path gives the same bytes).
pub fn expected_lines(model_bytes: &[u8]) -> Vec<String> {
    let buf = AlignedBuf::from_bytes(model_bytes);
    let m = Model::from_bytes(buf.as_bytes()).unwrap();
    use std::mem::{offset_of, size_of};
    use temper_capi::{TemperStatus, TensorInfo};
    let status: Vec<String> = TemperStatus::ALL.iter().map(|s| format!(" {}={}", s.c_name().to_str().unwrap(), *s as i32)).collect();
    let mut lines = vec![
        format!(
            "OUT layout size={} name={} name_len={} dtype={} rank={} dims={} numel={} scale={} zp={} pixels={}",
            size_of::<TensorInfo>(),
            offset_of!(TensorInfo, name),
            offset_of!(TensorInfo, name_len),
            offset_of!(TensorInfo, dtype),
            offset_of!(TensorInfo, rank),
            offset_of!(TensorInfo, dims),
            offset_of!(TensorInfo, numel),
            offset_of!(TensorInfo, scale),
            offset_of!(TensorInfo, zero_point),
            offset_of!(TensorInfo, accepts_u8_pixels)
        ),
        format!("OUT status{}", status.concat()),
        format!("OUT sizeof(temper_status)={}", size_of::<TemperStatus>()),
        info("input0", &m, m.graph_inputs()[0], true),
        info("output0", &m, m.graph_outputs()[0], false),
        info("output1", &m, m.graph_outputs()[1], false),
    ];
    let mut arena = vec![0u8; m.arena_size()];
    let mut s = Session::new(&m, &mut arena).unwrap();
    let (f, q, p) = inputs();
    for kind in ["f32", "i8", "u8"] {
        match kind {
            "f32" => s.set_input_f32(0, &f).unwrap(),
            "i8" => s.set_input_i8(0, &q).unwrap(),
            _ => s.set_input_u8(0, &p).unwrap(),
        }
        s.run().unwrap();
        for (o, n) in [(0usize, 3usize), (1, 64)] {
            let mut out = vec![0f32; n];
            s.output_f32(o, &mut out).unwrap();
            let tag = format!("{kind} out{o}");
            lines.push(floats(&tag, &out));
            lines.push(ints(&tag, s.output_i8(o).unwrap()));
        }
    }
    lines
}
