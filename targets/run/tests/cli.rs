//! End-to-end tests of the `temper-run` binary on small hand-built models.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use temper_kernels::requant::quantize_f32;
use temper_kernels::QParams;
use temper_runtime::writer::{clamp_range, AlignedBuf, Builder, QWeights, Window};
use temper_runtime::{Model, Session};

mod common;
use common::command;

/// Input `[1, 8, 8, 2]` quantization.
const IN_Q: QParams = QParams { scale: 1.0 / 64.0, zero_point: -3 };
/// Conv (+ReLU) and pool quantization.
const CONV_Q: QParams = QParams { scale: 0.03, zero_point: -128 };
/// Logits quantization.
const FC_Q: QParams = QParams { scale: 0.1, zero_point: 5 };
/// Pixel normalization of the pixel-input variant.
const MEAN: [f32; 2] = [0.5, 0.4];
const STD: [f32; 2] = [0.5, 0.6];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn int(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next() % (hi - lo + 1) as u64) as i32
    }
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
}

/// conv 3×3 pad 1 + ReLU → maxpool 2×2 → flatten → FC(3), with int8 weights that are exactly
/// the float weights (so the float reference differs only by activation rounding).
struct Net {
    /// `[O=4][KH=3][KW=3][C=2]` int8 and per-channel scales.
    conv_q: Vec<i8>,
    conv_s: Vec<f32>,
    conv_bq: Vec<i32>,
    /// `[N=3][K=64]` int8 and per-channel scales.
    fc_q: Vec<i8>,
    fc_s: Vec<f32>,
    fc_bq: Vec<i32>,
}

impl Net {
    fn new(seed: u64) -> Net {
        let mut r = Rng(seed);
        let mut weights = |n: usize, k: usize, amax: f32| {
            let mut q: Vec<i8> = (0..n * k).map(|_| r.int(-127, 127) as i8).collect();
            for c in 0..n {
                q[c * k + r.int(0, k as i32 - 1) as usize] = 127;
            }
            let s: Vec<f32> = (0..n).map(|c| amax * (0.7 + 0.1 * c as f32) / 127.0).collect();
            (q, s)
        };
        let (conv_q, conv_s) = weights(4, 18, 0.5);
        let (fc_q, fc_s) = weights(3, 64, 0.08);
        let conv_bq = (0..4).map(|_| r.int(-3000, 3000)).collect();
        let fc_bq = (0..3).map(|_| r.int(-500, 500)).collect();
        Net { conv_q, conv_s, conv_bq, fc_q, fc_s, fc_bq }
    }

    fn build(&self, pixels: bool) -> Vec<u8> {
        let mut b = Builder::new(if pixels { "tiny-pixels" } else { "tiny" });
        let x = b.activation("image", &[1, 8, 8, 2], IN_Q);
        if pixels {
            b.pixel_input(x, 1.0 / 255.0, &MEAN, &STD);
        } else {
            b.input(x);
        }
        let c = b.activation("conv_out", &[1, 8, 8, 4], CONV_Q);
        let w = QWeights { data: &self.conv_q, scales: &self.conv_s, bias: &self.conv_bq };
        b.conv2d("conv1", x, c, Window::square(3, 1, 1), 1, w, clamp_range(Some(0.0), None, CONV_Q)).unwrap();
        let p = b.activation("pool_out", &[1, 4, 4, 4], CONV_Q);
        b.max_pool("pool1", c, p, Window::square(2, 2, 0), (-128, 127));
        let f = b.activation("flat", &[1, 64], CONV_Q);
        b.reshape("flatten", p, f);
        let y = b.activation("logits", &[1, 3], FC_Q);
        let w = QWeights { data: &self.fc_q, scales: &self.fc_s, bias: &self.fc_bq };
        b.fully_connected("fc1", f, y, w, (-128, 127)).unwrap();
        b.output(y);
        b.meta("labels", "a,b,c");
        b.meta("source.model", "hand-built test net");
        b.finish().unwrap()
    }

    /// Float forward pass on an NHWC `[8, 8, 2]` input with the (exact) float weights.
    fn forward(&self, x: &[f64]) -> Vec<f64> {
        let cw = |o: usize, j: usize| self.conv_q[o * 18 + j] as f64 * self.conv_s[o] as f64;
        let cb = |o: usize| self.conv_bq[o] as f64 * IN_Q.scale as f64 * self.conv_s[o] as f64;
        let mut conv = vec![0f64; 8 * 8 * 4];
        for y in 0..8i64 {
            for xx in 0..8i64 {
                for o in 0..4 {
                    let mut acc = cb(o);
                    for ky in 0..3i64 {
                        for kx in 0..3i64 {
                            let (iy, ix) = (y + ky - 1, xx + kx - 1);
                            if (0..8).contains(&iy) && (0..8).contains(&ix) {
                                for ch in 0..2 {
                                    acc += x[((iy * 8 + ix) * 2) as usize + ch] * cw(o, ((ky * 3 + kx) * 2) as usize + ch);
                                }
                            }
                        }
                    }
                    conv[((y * 8 + xx) * 4) as usize + o] = acc.max(0.0);
                }
            }
        }
        assert!(conv.iter().all(|&v| v < 255.0 * CONV_Q.scale as f64), "test net saturates its conv range");
        let mut pool = vec![0f64; 64];
        for y in 0..4 {
            for xx in 0..4 {
                for ch in 0..4 {
                    let m = [(0, 0), (0, 1), (1, 0), (1, 1)]
                        .iter()
                        .map(|&(dy, dx)| conv[((2 * y + dy) * 8 + 2 * xx + dx) * 4 + ch])
                        .fold(f64::MIN, f64::max);
                    pool[(y * 4 + xx) * 4 + ch] = m;
                }
            }
        }
        (0..3)
            .map(|n| {
                let s = self.fc_s[n] as f64;
                self.fc_bq[n] as f64 * CONV_Q.scale as f64 * s + (0..64).map(|k| pool[k] * self.fc_q[n * 64 + k] as f64 * s).sum::<f64>()
            })
            .collect()
    }
}

enum Feed<'a> {
    F32(&'a [f32]),
    U8(&'a [u8]),
}

/// Logits (dequantized) and the raw int8 output, computed with the runtime directly.
fn session_run(bytes: &[u8], feed: Feed<'_>) -> (Vec<f32>, Vec<i8>) {
    let buf = AlignedBuf::from_bytes(bytes);
    let model = Model::from_bytes(buf.as_bytes()).unwrap();
    let mut arena = vec![0u8; model.arena_size()];
    let mut s = Session::new(&model, &mut arena).unwrap();
    match feed {
        Feed::F32(v) => s.set_input_f32(0, v).unwrap(),
        Feed::U8(v) => s.set_input_u8(0, v).unwrap(),
    }
    s.run().unwrap();
    let mut y = vec![0f32; 3];
    s.output_f32(0, &mut y).unwrap();
    (y, s.output_i8(0).unwrap().to_vec())
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for i in 1..v.len() {
        if v[i] > v[best] {
            best = i;
        }
    }
    best
}

/// `[n, c, h, w]` → `[n, h, w, c]`.
fn nchw_to_nhwc<T: Copy>(v: &[T], n: usize, c: usize, h: usize, w: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(v.len());
    for i in 0..n {
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    out.push(v[((i * c + ch) * h + y) * w + x]);
                }
            }
        }
    }
    out
}

fn tmpdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("temper-run-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_model(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

/// Runs the binary; with `TEMPER_RUN_RUNNER` set (e.g. `qemu-arm -L /usr/arm-linux-gnueabihf`
/// when the tests themselves run under qemu-user for a cross target) through that runner.
fn cli(args: &[&str]) -> Output {
    command().args(args).output().expect("run temper-run")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(args: &[&str]) -> String {
    let o = cli(args);
    assert!(o.status.success(), "temper-run {args:?} failed: {}\n{}", stderr(&o), stdout(&o));
    stdout(&o)
}

/// Runs a command that must fail with `code`; returns stderr.
fn fails(args: &[&str], code: i32) -> String {
    let o = cli(args);
    assert_eq!(o.status.code(), Some(code), "temper-run {args:?}: stdout {} stderr {}", stdout(&o), stderr(&o));
    let e = stderr(&o);
    assert!(!e.contains("panicked"), "temper-run {args:?} panicked: {e}");
    e
}

/// The number after `"key":` in a flat JSON text.
fn json_num(s: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\":");
    let i = s.find(&pat).unwrap_or_else(|| panic!("no {key} in {s}")) + pat.len();
    let end = s[i..].find([',', '}']).unwrap() + i;
    s[i..end].trim().parse().unwrap_or_else(|_| panic!("{key} is not a number in {s}"))
}

fn random_f32(n: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng(seed);
    (0..n).map(|_| r.uniform(-1.0, 1.0)).collect()
}

fn random_u8(n: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed);
    (0..n).map(|_| (r.next() >> 56) as u8).collect()
}

#[test]
fn help_for_every_command() {
    for cmd in ["info", "run", "eval", "bench", "soak"] {
        let out = ok(&[cmd, "--help"]);
        assert!(out.contains(&format!("Usage: temper-run {cmd}")), "{out}");
    }
    assert!(ok(&["--help"]).contains("Commands:"));
    assert!(ok(&["help", "eval"]).contains("--threads"));
    fails(&[], 2);
    fails(&["frobnicate", "m.tmf"], 2);
}

#[test]
fn info_mentions_every_op_inputs_and_plan() {
    let dir = tmpdir("info");
    let net = Net::new(1);
    let bytes = net.build(true);
    let m = write_model(&dir, "pix.tmf", &bytes);
    let out = ok(&["info", &m]);
    for want in [
        "Conv2d",
        "MaxPool",
        "Reshape",
        "FullyConnected",
        "conv1",
        "pool1",
        "flatten",
        "fc1",
        "tiny-pixels",
        "v1.0",
        "labels = a,b,c",
        "source.model = hand-built test net",
        "image",
        "[1, 8, 8, 2]",
        "[1, 8, 8, 4]",
        "[1, 3]",
        "raw u8 pixels: accepted",
        "memory plan",
        "scratch of op 0",
        "tensor logits",
        "features detected",
        "kernel path",
    ] {
        assert!(out.contains(want), "info lacks {want:?}:\n{out}");
    }
    assert!(out.contains(&format!("({} bytes)", bytes.len())), "{out}");
    let buf = AlignedBuf::from_bytes(&bytes);
    let model = Model::from_bytes(buf.as_bytes()).unwrap();
    assert!(out.contains(&format!("arena      {} bytes", model.arena_size())), "{out}");

    let plain = write_model(&dir, "plain.tmf", &net.build(false));
    assert!(ok(&["info", &plain]).contains("raw u8 pixels: not accepted"));
    fails(&["info"], 2);
    fails(&["info", &plain, "--bogus"], 2);
}

#[test]
fn run_matches_session_and_float_reference() {
    let dir = tmpdir("run");
    let net = Net::new(2);
    let bytes = net.build(false);
    let m = write_model(&dir, "tiny.tmf", &bytes);
    let items = 3;
    let nchw = random_f32(items * 2 * 8 * 8, 7);
    let nhwc = nchw_to_nhwc(&nchw, items, 2, 8, 8);
    let x_nchw = dir.join("x_nchw.npy");
    let x_nhwc = dir.join("x_nhwc.npy");
    temper_data::write_npy_f32(&x_nchw, &[items, 2, 8, 8], &nchw).unwrap();
    temper_data::write_npy_f32(&x_nhwc, &[items, 8, 8, 2], &nhwc).unwrap();
    let y1 = dir.join("y1.npy");
    let y2 = dir.join("y2.npy");
    let out = ok(&["run", &m, "--input", x_nchw.to_str().unwrap(), "--output", y1.to_str().unwrap()]);
    assert!(out.contains("NCHW, transposed to NHWC"), "{out}");
    ok(&["run", &m, "--input", x_nhwc.to_str().unwrap(), "--output", y2.to_str().unwrap(), "--layout", "nhwc"]);

    let a = temper_data::read_npy(&y1).unwrap();
    let b = temper_data::read_npy(&y2).unwrap();
    assert_eq!(a.shape, vec![items, 3]);
    assert_eq!(a, b, "NCHW and NHWC inputs give different outputs");
    let got = a.to_f32();
    let mut worst = 0f64;
    for k in 0..items {
        let item = &nhwc[k * 128..(k + 1) * 128];
        let (want, _) = session_run(&bytes, Feed::F32(item));
        assert_eq!(&got[k * 3..(k + 1) * 3], &want[..], "item {k}: CLI output differs from the runtime session");
        // Float reference on the quantized input.
        let xd: Vec<f64> = item
            .iter()
            .map(|&v| IN_Q.scale as f64 * (quantize_f32(v, IN_Q.scale, IN_Q.zero_point) as i32 - IN_Q.zero_point) as f64)
            .collect();
        let reference = net.forward(&xd);
        for o in 0..3 {
            worst = worst.max((got[k * 3 + o] as f64 - reference[o]).abs() / FC_Q.scale as f64);
        }
        let top = argmax(&want);
        let label = ["a", "b", "c"][top];
        assert!(out.contains(&format!("item {k}: top-1 {top} ({label})")), "item {k} top-1 {top} missing:\n{out}");
    }
    assert!(worst <= 1.0, "CLI output is {worst} quantization steps from the float reference");

    // NCHW data forced to be read as NHWC does not fit.
    let e = fails(&["run", &m, "--input", x_nchw.to_str().unwrap(), "--layout", "nhwc"], 1);
    assert!(e.contains("wrong input shape"), "{e}");
}

#[test]
fn run_u8_pixels_and_int8_output() {
    let dir = tmpdir("run-u8");
    let net = Net::new(3);
    let pix = net.build(true);
    let m = write_model(&dir, "pix.tmf", &pix);
    let px = random_u8(128, 11);
    let x = dir.join("x.npy");
    temper_data::write_npy_u8(&x, &[1, 8, 8, 2], &px).unwrap();
    let y = dir.join("y.npy");
    let yq = dir.join("yq.npy");
    ok(&["run", &m, "--input", x.to_str().unwrap(), "--output", y.to_str().unwrap()]);
    ok(&["run", &m, "--input", x.to_str().unwrap(), "--output", yq.to_str().unwrap(), "--output-i8"]);
    let (want, want_q) = session_run(&pix, Feed::U8(&px));
    assert_eq!(temper_data::read_npy(&y).unwrap().to_f32(), want);
    let q = temper_data::read_npy(&yq).unwrap();
    assert_eq!(q.data, temper_data::NpyData::I8(want_q));

    // --raw: the same pixels stored as float 0..255.
    let xf = dir.join("xf.npy");
    let pf: Vec<f32> = px.iter().map(|&p| p as f32).collect();
    temper_data::write_npy_f32(&xf, &[1, 8, 8, 2], &pf).unwrap();
    let yr = dir.join("yr.npy");
    ok(&["run", &m, "--input", xf.to_str().unwrap(), "--raw", "--output", yr.to_str().unwrap()]);
    assert_eq!(temper_data::read_npy(&yr).unwrap().to_f32(), want);

    // A model without a pixel record refuses u8 input.
    let plain = write_model(&dir, "plain.tmf", &net.build(false));
    let e = fails(&["run", &plain, "--input", x.to_str().unwrap()], 1);
    assert!(e.contains("accepts no raw pixels"), "{e}");
}

#[test]
fn run_rejects_bad_input_clearly() {
    let dir = tmpdir("run-bad");
    let m = write_model(&dir, "tiny.tmf", &Net::new(4).build(false));
    let small = dir.join("small.npy");
    temper_data::write_npy_f32(&small, &[1, 5, 5, 2], &[0.0; 50]).unwrap();
    let e = fails(&["run", &m, "--input", small.to_str().unwrap()], 1);
    assert!(e.contains("wrong input shape") && e.contains("small.npy") && e.contains("[1, 8, 8, 2]"), "{e}");
    let ints = dir.join("ints.npy");
    temper_data::npy::write_npy_i32(&ints, &[1, 8, 8, 2], &[0; 128]).unwrap();
    let e = fails(&["run", &m, "--input", ints.to_str().unwrap()], 1);
    assert!(e.contains("unsupported input dtype"), "{e}");
    let e = fails(&["run", &m, "--input", dir.join("missing.npy").to_str().unwrap()], 1);
    assert!(e.contains("missing.npy"), "{e}");
    let e = fails(&["run", &m], 2);
    assert!(e.contains("--input"), "{e}");
    fails(&["run", &m, "--input", small.to_str().unwrap(), "--layout", "sideways"], 2);
    fails(&["run", &m, "--input", small.to_str().unwrap(), "--kernels", "warp9"], 2);
}

#[test]
fn corrupted_missing_and_truncated_models_fail_clearly() {
    let dir = tmpdir("corrupt");
    let bytes = Net::new(5).build(false);
    let mut bad = bytes.clone();
    let i = bad.len() / 2;
    bad[i] ^= 0x40;
    let m = write_model(&dir, "bad.tmf", &bad);
    let x = dir.join("x.npy");
    temper_data::write_npy_f32(&x, &[1, 8, 8, 2], &[0.0; 128]).unwrap();
    let xs = x.to_str().unwrap();
    let imgs = dir.join("i.idx");
    let lbls = dir.join("l.idx");
    std::fs::write(&imgs, temper_data::idx::idx_u8_bytes(&[1, 8, 8, 2], &[0; 128]).unwrap()).unwrap();
    std::fs::write(&lbls, temper_data::idx::idx_u8_bytes(&[1], &[0]).unwrap()).unwrap();
    let (is, ls) = (imgs.to_str().unwrap(), lbls.to_str().unwrap());
    for args in [
        vec!["info", m.as_str()],
        vec!["run", m.as_str(), "--input", xs],
        vec!["bench", m.as_str(), "--runs", "1"],
        vec!["eval", m.as_str(), "--images", is, "--labels", ls],
    ] {
        let e = fails(&args, 1);
        assert!(e.contains("invalid model") && e.contains("checksum") && e.contains("bad.tmf"), "{args:?}: {e}");
    }
    let t = write_model(&dir, "trunc.tmf", &bytes[..bytes.len() - 10]);
    let e = fails(&["info", &t], 1);
    assert!(e.contains("invalid model"), "{e}");
    let e = fails(&["info", &write_model(&dir, "empty.tmf", &[])], 1);
    assert!(e.contains("invalid model"), "{e}");
    let e = fails(&["info", dir.join("nope.tmf").to_str().unwrap()], 1);
    assert!(e.contains("cannot open model") && e.contains("nope.tmf"), "{e}");
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Writes an IDX image/label pair (raw and gzip'd) and returns the paths
/// `[raw images, raw labels, gz images, gz labels]`.
fn write_idx(dir: &Path, dims: &[usize], images: &[u8], labels: &[u8]) -> [String; 4] {
    let ib = temper_data::idx::idx_u8_bytes(dims, images).unwrap();
    let lb = temper_data::idx::idx_u8_bytes(&[labels.len()], labels).unwrap();
    let names = ["images-idx", "labels-idx", "images-idx.gz", "labels-idx.gz"];
    let data = [ib.clone(), lb.clone(), gzip(&ib), gzip(&lb)];
    let mut out: [String; 4] = Default::default();
    for k in 0..4 {
        let p = dir.join(names[k]);
        std::fs::write(&p, &data[k]).unwrap();
        out[k] = p.to_str().unwrap().to_string();
    }
    out
}

#[test]
fn eval_idx_raw_and_gz_matches_the_runtime() {
    let dir = tmpdir("eval");
    let net = Net::new(6);
    let n = 40;
    // NCHW u8 images, as the IDX file stores them ([N, C, H, W] with C = 2).
    let images = random_u8(n * 2 * 8 * 8, 21);
    let hwc = nchw_to_nhwc(&images, n, 2, 8, 8);
    for pixels in [true, false] {
        let bytes = net.build(pixels);
        let m = write_model(&dir, if pixels { "pix.tmf" } else { "plain.tmf" }, &bytes);
        // Predictions straight from the runtime: u8 through the pixel record, or pixel/255 as f32.
        let preds: Vec<usize> = (0..n)
            .map(|i| {
                let img = &hwc[i * 128..(i + 1) * 128];
                let y = if pixels {
                    session_run(&bytes, Feed::U8(img)).0
                } else {
                    let f: Vec<f32> = img.iter().map(|&p| p as f32 / 255.0).collect();
                    session_run(&bytes, Feed::F32(&f)).0
                };
                argmax(&y)
            })
            .collect();
        assert!(preds.iter().any(|&p| p != preds[0]), "the test net predicts one class only");
        // Labels: right for 2 of every 3 images, wrong for the others.
        let labels: Vec<u8> = preds.iter().enumerate().map(|(i, &p)| if i % 3 == 0 { ((p + 1) % 3) as u8 } else { p as u8 }).collect();
        let sub = dir.join(if pixels { "pix" } else { "plain" });
        std::fs::create_dir_all(&sub).unwrap();
        let [ri, rl, gi, gl] = write_idx(&sub, &[n, 2, 8, 8], &images, &labels);
        let expect = |count: usize| {
            let correct = (0..count).filter(|&i| preds[i] == labels[i] as usize).count();
            let per: Vec<(usize, usize)> = (0..3)
                .map(|c| {
                    let idx: Vec<usize> = (0..count).filter(|&i| labels[i] as usize == c).collect();
                    (idx.len(), idx.iter().filter(|&&i| preds[i] == c).count())
                })
                .collect();
            (correct, per)
        };
        let (correct, per) = expect(n);
        assert!(correct > 0 && correct < n);
        for (imgs, lbls, threads) in [(&ri, &rl, "1"), (&gi, &gl, "3"), (&ri, &gl, "8")] {
            let out = ok(&["eval", &m, "--images", imgs, "--labels", lbls, "--threads", threads, "--json"]);
            assert_eq!(json_num(&out, "count"), n as f64, "{out}");
            assert_eq!(json_num(&out, "correct"), correct as f64, "{out}");
            assert!((json_num(&out, "accuracy") - 100.0 * correct as f64 / n as f64).abs() < 1e-9, "{out}");
            for (c, (cnt, ok_c)) in per.iter().enumerate() {
                let name = ["a", "b", "c"][c];
                assert!(
                    out.contains(&format!("{{\"class\":{c},\"name\":\"{name}\",\"count\":{cnt},\"correct\":{ok_c},")),
                    "class {c}: {out}"
                );
            }
            let feed = if pixels { "\"input\":\"u8-pixels\"" } else { "\"input\":\"u8-unit-f32\"" };
            assert!(out.contains(feed), "{out}");
        }
        // Text output and --limit.
        let out = ok(&["eval", &m, "--images", &gi, "--labels", &gl, "--limit", "10"]);
        let (c10, _) = expect(10);
        assert!(out.contains(&format!("top-1 accuracy: {:.2}% ({c10}/10)", c10 as f64 * 10.0)), "{out}");
        assert!(out.contains("per class:"), "{out}");
        // The same set through a dataset spec.
        let out = ok(&["eval", &m, "--data", &format!("idx:{gi},{gl}"), "--json"]);
        assert_eq!(json_num(&out, "correct"), correct as f64, "{out}");
    }
}

#[test]
fn eval_rejects_mismatched_data_clearly() {
    let dir = tmpdir("eval-bad");
    let m = write_model(&dir, "pix.tmf", &Net::new(7).build(true));
    let [ri, rl, _, _] = write_idx(&dir, &[4, 6, 6], &[0; 4 * 36], &[0, 1, 2, 0]);
    let e = fails(&["eval", &m, "--images", &ri, "--labels", &rl], 1);
    assert!(e.contains("no resizing") && e.contains("[1, 8, 8, 2]"), "{e}");
    fails(&["eval", &m, "--images", &ri], 2);
    fails(&["eval", &m, "--images", &ri, "--labels", &rl, "--threads", "0"], 2);
    fails(&["eval", &m, "--images", &ri, "--labels", &rl, "--data", "fashion-mnist:test"], 2);
    let e = fails(&["eval", &m, "--images", dir.join("none").to_str().unwrap(), "--labels", &rl], 1);
    assert!(e.contains("none"), "{e}");
}

#[test]
fn bench_reports_latency_and_memory() {
    let dir = tmpdir("bench");
    let bytes = Net::new(8).build(false);
    let m = write_model(&dir, "tiny.tmf", &bytes);
    let model_buf = AlignedBuf::from_bytes(&bytes);
    let model = Model::from_bytes(model_buf.as_bytes()).unwrap();
    let out = ok(&["bench", &m, "--runs", "5", "--warmup", "1", "--json"]);
    assert_eq!(json_num(&out, "runs"), 5.0, "{out}");
    assert_eq!(json_num(&out, "warmup"), 1.0, "{out}");
    // what the file and the model imply
    assert_eq!(json_num(&out, "file_bytes"), bytes.len() as f64, "{out}");
    assert_eq!(json_num(&out, "arena_bytes"), model.arena_size() as f64, "{out}");
    // order statistics of five measured runs, each taking some time
    let [load, min, median, mean, p90, max] = ["load_us", "min", "median", "mean", "p90", "max"].map(|k| json_num(&out, k));
    assert!(load > 0.0 && min > 0.0, "{out}");
    assert!(min <= median && median <= p90 && p90 <= max && min <= mean && mean <= max, "{out}");
    // throughput is the inverse of the mean latency (JSON numbers round-trip exactly), per item
    // the same (batch 1)
    let per_s = json_num(&out, "inferences_per_s");
    assert_eq!(per_s, 1e6 / mean, "inferences_per_s {per_s} vs mean {mean} µs: {out}");
    assert_eq!(model.tensor(model.graph_inputs()[0]).dims[0], 1);
    assert_eq!(json_num(&out, "items_per_s"), per_s, "{out}");
    assert!(json_num(&out, "peak_rss_kib") > 0.0 && out.contains("\"kernels\":\""), "{out}");
    let out = ok(&["bench", &m, "--runs", "2", "--kernels", "scalar", "--json"]);
    assert!(out.contains("\"kernels\":\"scalar\""), "{out}");
    let out = ok(&["bench", &m, "--runs", "2", "--warmup", "0"]);
    for want in ["load", "median", "p90", "throughput", "peak RSS", "kernels"] {
        assert!(out.contains(want), "bench text lacks {want}: {out}");
    }
    let out = ok(&["bench", &m, "--runs", "3", "--threads", "3", "--split-min", "1", "--json"]);
    assert_eq!(json_num(&out, "threads"), 3.0, "{out}");
    fails(&["bench", &m, "--runs", "0"], 2);
    fails(&["bench", &m, "--kernels", "warp9"], 2);
    fails(&["bench", &m, "--threads", "0"], 2);
}

#[test]
fn closed_stdout_ends_quietly_without_a_panic() {
    // `temper-run bench … | head -1`: the reader goes away; no panic message, exit 141 (as a
    // process killed by SIGPIPE reports itself to shells). A chain of 1,000 reshapes makes the
    // per-op table (about 100 KB) overflow the pipe buffer, so some write must fail.
    let dir = tmpdir("pipe");
    let mut b = Builder::new("reshapes");
    let q = QParams { scale: 0.1, zero_point: 0 };
    let mut x = b.activation("x", &[1, 4], q);
    b.input(x);
    for i in 0..1000 {
        let y = b.activation(&format!("y{i}"), &[1, 4], q);
        b.reshape(&format!("reshape_{i}"), x, y);
        x = y;
    }
    b.output(x);
    let m = write_model(&dir, "reshapes.tmf", &b.finish().expect("builds"));
    let mut child = command()
        .args(["bench", &m, "--runs", "2", "--per-op"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn temper-run");
    drop(child.stdout.take()); // close the read end
    let o = child.wait_with_output().expect("wait");
    assert_eq!(o.status.code(), Some(141), "stderr: {}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "stderr: {}", stderr(&o));
}

#[test]
fn soak_checks_outputs_and_memory() {
    let dir = tmpdir("soak");
    let net = Net::new(9);
    let n = 30;
    let images = random_u8(n * 2 * 8 * 8, 33);
    let hwc = nchw_to_nhwc(&images, n, 2, 8, 8);
    let bytes = net.build(true);
    let m = write_model(&dir, "pix.tmf", &bytes);
    let preds: Vec<usize> = (0..n).map(|i| argmax(&session_run(&bytes, Feed::U8(&hwc[i * 128..(i + 1) * 128])).0)).collect();
    let labels: Vec<u8> = preds.iter().enumerate().map(|(i, &p)| if i % 5 == 0 { ((p + 1) % 3) as u8 } else { p as u8 }).collect();
    let correct = (0..n).filter(|&i| preds[i] == labels[i] as usize).count();
    let [ri, rl, _, _] = write_idx(&dir, &[n, 2, 8, 8], &images, &labels);
    // 30 images, 10 passes: the first records, the next 9 must match it byte for byte.
    let out = ok(&[
        "soak",
        &m,
        "--images",
        &ri,
        "--labels",
        &rl,
        "--count",
        "300",
        "--rss-every",
        "7",
        "--warmup",
        "30",
        "--rss-slack",
        "4096",
        "--json",
    ]);
    assert_eq!(json_num(&out, "runs"), 300.0, "{out}");
    assert_eq!(json_num(&out, "images"), n as f64, "{out}");
    assert_eq!(json_num(&out, "mismatches"), 0.0, "{out}");
    assert!((json_num(&out, "first_pass_accuracy") - 100.0 * correct as f64 / n as f64).abs() < 1e-9, "{out}");
    // 42 multiples of 7 plus the baseline sample after run 60 and the last one after run 300.
    assert_eq!(json_num(&out, "samples"), 44.0, "{out}");
    assert!(json_num(&out, "min") > 0.0 && json_num(&out, "max") >= json_num(&out, "baseline"), "{out}");
    let out = ok(&["soak", &m, "--images", &ri, "--labels", &rl, "--limit", "10", "--count", "50", "--warmup", "0", "--rss-slack", "4096"]);
    for want in ["50 in", "every output identical to the first pass", "10 images", "RSS", "baseline"] {
        assert!(out.contains(want), "soak text lacks {want}: {out}");
    }
    // Nothing to check after the first pass and the warm-up: a usage error, not a vacuous pass.
    let e = fails(&["soak", &m, "--images", &ri, "--labels", &rl, "--count", "30", "--warmup", "0"], 2);
    assert!(e.contains("nothing to check"), "{e}");
    fails(&["soak", &m, "--count", "100"], 2);
    let e = fails(&["soak", &m, "--data", "idx:nope,nada", "--count", "100"], 1);
    assert!(e.contains("nope"), "{e}");
}
