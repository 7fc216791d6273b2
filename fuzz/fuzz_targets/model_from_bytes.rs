//! Fuzz the model loader: any byte string either loads (and then runs, on the scalar path and
//! on the best path, with identical outputs) or returns an error. Checksums are skipped so the
//! fuzzer reaches the structural validation behind them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use temper_runtime::writer::AlignedBuf;
use temper_runtime::{LoadOptions, Model, Session};

fuzz_target!(|data: &[u8]| {
    let buf = AlignedBuf::from_bytes(data);
    let Ok(model) = Model::from_bytes_with(buf.as_bytes(), LoadOptions { verify_checksums: false }) else { return };
    if model.arena_size() > 64 << 20 {
        return;
    }
    let mut outs = Vec::new();
    for k in [&temper_kernels::dispatch::SCALAR, temper_kernels::dispatch::detect()] {
        let mut arena = vec![0u8; model.arena_size()];
        let mut s = Session::with_kernels(&model, &mut arena, k).expect("arena sized by the model");
        for i in 0..model.graph_inputs().len() {
            let n = model.tensor(model.graph_inputs()[i]).numel();
            s.set_input_i8(i, &vec![3i8; n]).expect("input sized by the model");
        }
        s.run().expect("inputs set");
        outs.push(s.output_i8(0).expect("output 0").to_vec());
    }
    assert_eq!(outs[0], outs[1], "fast path differs from scalar");
});
