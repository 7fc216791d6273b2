//! Sessions: a shared `Model` on many threads, writer round trip, zero-copy constants.

use temper_runtime::format::{DType, Layout, OpCode, Storage};
use temper_runtime::writer::AlignedBuf;
use temper_runtime::{Model, Session};
use temper_tests::{Rng, TinyCnn};

fn run_once(model: &Model<'_>, input: &[f32]) -> Vec<i8> {
    let mut arena = vec![0u8; model.arena_size()];
    let mut s = Session::new(model, &mut arena).unwrap();
    s.set_input_f32(0, input).unwrap();
    s.run().unwrap();
    s.output_i8(0).unwrap().to_vec()
}

#[test]
fn many_sessions_on_many_threads_agree_with_one() {
    fn assert_sync<T: Sync>(_: &T) {}
    let bytes = TinyCnn::new(21).build();
    let buf = AlignedBuf::from_bytes(&bytes);
    let model = Model::from_bytes(buf.as_bytes()).unwrap();
    assert_sync(&model);
    let mut rng = Rng(5);
    let inputs: Vec<Vec<f32>> = (0..32).map(|_| (0..128).map(|_| rng.uniform(-2.0, 2.0)).collect()).collect();
    let serial: Vec<Vec<i8>> = inputs.iter().map(|x| run_once(&model, x)).collect();
    let parallel: Vec<Vec<Vec<i8>>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4).map(|_| s.spawn(|| inputs.iter().map(|x| run_once(&model, x)).collect::<Vec<_>>())).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for p in parallel {
        assert_eq!(p, serial);
    }
}

#[test]
fn writer_round_trip_preserves_graph_and_weights() {
    let net = TinyCnn::new(2);
    let bytes = net.build();
    let buf = AlignedBuf::from_bytes(&bytes);
    let m = Model::from_bytes(buf.as_bytes()).unwrap();
    assert_eq!(m.version(), (1, 0));
    assert_eq!(m.name(), "tiny-cnn");
    let codes: Vec<OpCode> = m.ops().map(|o| o.code).collect();
    assert_eq!(codes, [OpCode::Conv2d, OpCode::MaxPool, OpCode::Reshape, OpCode::FullyConnected]);
    let conv = m.op(0);
    assert_eq!(conv.name, "conv");
    let w = m.tensor(conv.inputs[1]);
    assert_eq!((w.dtype, w.storage, w.layout), (DType::I8, Storage::Constant, Layout::Packed));
    assert_eq!(w.dims, [1, 4, 18]);
    // weights read back zero-copy from the file, in the packed layout
    let (q, s) = TinyCnn::quantize(&net.conv_w, 4);
    let packed = m.const_i8(conv.inputs[1]);
    assert!(std::ptr::eq(packed.as_ptr() as *const u8, &buf.as_bytes()[w.offset]));
    for o in 0..4 {
        for k in 0..18 {
            assert_eq!(temper_kernels::pack::get(packed, o, k, 18), q[o * 18 + k]);
        }
    }
    assert_eq!(m.channel_scales(conv.inputs[1]).unwrap(), &s[..]);
    let x = m.tensor(m.graph_inputs()[0]);
    assert_eq!((x.dims, x.scale, x.zero_point), (&[1u32, 8, 8, 2][..], temper_tests::IN_Q.scale, temper_tests::IN_Q.zero_point));
    assert_eq!(m.metadata().collect::<Vec<_>>(), [("labels", "a,b,c")]);
    // the arena plan reuses memory: less than the sum of all activations
    let total: usize = (0..m.tensor_count() as u32).map(|t| m.tensor(t)).filter(|t| t.storage == Storage::Arena).map(|t| t.len).sum();
    assert!(m.arena_size() < total + m.op(0).scratch_len, "arena {} vs activations {total}", m.arena_size());
}

#[test]
fn every_kernel_level_gives_identical_bytes_on_a_model() {
    let bytes = TinyCnn::new(8).build();
    let buf = AlignedBuf::from_bytes(&bytes);
    let model = Model::from_bytes(buf.as_bytes()).unwrap();
    let features = temper_kernels::Features::detect();
    let mut rng = Rng(17);
    let input: Vec<f32> = (0..128).map(|_| rng.uniform(-2.0, 2.0)).collect();
    let mut reference = None;
    for level in temper_kernels::dispatch::Level::ALL {
        let Some(k) = temper_kernels::dispatch::table(level, features) else {
            eprintln!("skipped {level}: not available on this CPU/target");
            continue;
        };
        let mut arena = vec![0u8; model.arena_size()];
        let mut s = Session::with_kernels(&model, &mut arena, k).unwrap();
        s.set_input_f32(0, &input).unwrap();
        s.run().unwrap();
        let out = s.output_i8(0).unwrap().to_vec();
        match &reference {
            None => reference = Some(out),
            Some(r) => assert_eq!(&out, r, "level {level} differs from scalar"),
        }
    }
}
