//! Cost of the DetectPostprocess op on a 320×320 input's head (strides 8/16/32 → 1600 + 400 +
//! 100 cells, 80 classes, reg_max 7), with few and with many candidates above the threshold.
//!
//! `cargo run --release -p temper-tests --example detect_post`

use std::time::Instant;
use temper_runtime::ops::detect_postprocess::detections;
use temper_runtime::writer::AlignedBuf;
use temper_runtime::{Model, Session};
use temper_tests::det::DetHead;

fn main() {
    println!("{:<44} {:>8} {:>10} {:>10}", "case", "dets", "median µs", "min µs");
    for (name, bg_hi, aware, top_k) in [
        ("few candidates, class-aware", -40, true, 1000),
        ("few candidates, class-agnostic", -40, false, 1000),
        ("many candidates (~18%), class-aware", 0, true, 1000),
        ("many candidates (~18%), class-agnostic", 0, false, 1000),
        ("all above threshold, class-aware", 127, true, 1000),
    ] {
        let h = DetHead::random(7, (320, 320), &[8, 16, 32], 80, 7, bg_hi, 20);
        let mut cfg = h.config(true, aware);
        (cfg.top_k, cfg.max_det) = (top_k, 100);
        let bytes = h.build(&cfg);
        let buf = AlignedBuf::from_bytes(&bytes);
        let model = Model::from_bytes(buf.as_bytes()).unwrap();
        let mut arena = vec![0u8; model.arena_size()];
        let mut s = Session::new(&model, &mut arena).unwrap();
        for (i, x) in h.inputs().iter().enumerate() {
            s.set_input_i8(i, x).unwrap();
        }
        let mut times = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            s.run().unwrap();
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let dets = detections(s.output_i8(0).unwrap()).count();
        println!("{name:<44} {dets:>8} {:>10.1} {:>10.1}", times[times.len() / 2], times[0]);
    }
}
