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
fn intra_op_threads_give_identical_bytes() {
    // Every splittable layer split (min work 1), on the hand-built CNN and the emitted student.
    let student = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/seeds/model_from_bytes/student_kd.tmf")).unwrap();
    for (name, bytes) in [("tiny-cnn", TinyCnn::new(9).build()), ("student_kd", student)] {
        let buf = AlignedBuf::from_bytes(&bytes);
        let model = Model::from_bytes(buf.as_bytes()).unwrap();
        let n_in = model.tensor(model.graph_inputs()[0]).numel();
        let mut rng = Rng(23);
        let inputs: Vec<Vec<f32>> = (0..8).map(|_| (0..n_in).map(|_| rng.uniform(-2.0, 2.0)).collect()).collect();
        let serial: Vec<Vec<i8>> = inputs.iter().map(|x| run_once(&model, x)).collect();
        for threads in [2, 3, 5, 16] {
            let mut arena = vec![0u8; model.arena_size()];
            let mut s = Session::new(&model, &mut arena).unwrap().with_threads(threads).unwrap();
            assert_eq!(s.threads(), threads);
            s.set_min_work_per_part(1);
            for (x, want) in inputs.iter().zip(&serial) {
                s.set_input_f32(0, x).unwrap();
                s.run().unwrap();
                assert_eq!(s.output_i8(0).unwrap(), &want[..], "{name}, {threads} threads");
            }
        }
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

/// Every kernel table the CPU runs gives the scalar table's bytes on a whole model; fails when
/// a table the CPU has (by `/proc/cpuinfo` or the aux vector, see `temper_testkit::cpu`) did not
/// run, and prints one line naming the tables compared.
#[test]
fn every_kernel_level_gives_identical_bytes_on_a_model() {
    use std::collections::{BTreeMap, BTreeSet};
    use temper_kernels::dispatch::variants;
    use temper_kernels::Features;
    use temper_testkit::cpu;
    let bytes = TinyCnn::new(8).build();
    let buf = AlignedBuf::from_bytes(&bytes);
    let model = Model::from_bytes(buf.as_bytes()).unwrap();
    let mut rng = Rng(17);
    let input: Vec<f32> = (0..128).map(|_| rng.uniform(-2.0, 2.0)).collect();
    let run = |k| {
        let mut arena = vec![0u8; model.arena_size()];
        let mut s = Session::with_kernels(&model, &mut arena, k).unwrap();
        s.set_input_f32(0, &input).unwrap();
        s.run().unwrap();
        s.output_i8(0).unwrap().to_vec()
    };
    let reference = run(&temper_kernels::dispatch::SCALAR);
    let names = |f: Features| -> BTreeSet<String> {
        if f.is_empty() {
            BTreeSet::new()
        } else {
            f.to_string().split(' ').map(str::to_string).collect()
        }
    };
    let mut tables = Vec::new();
    let mut compared = BTreeMap::new();
    for v in variants().iter().filter(|v| v.name != "scalar") {
        tables.push(cpu::Table { name: v.name, needs: names(v.required).into_iter().collect(), runnable: v.kernels().is_some() });
        if let Some(k) = v.kernels() {
            assert_eq!(run(k), reference, "table {} differs from scalar", v.name);
            compared.insert(v.name, 1);
        }
    }
    match cpu::check_levels(&tables, &names(Features::cpu()), cpu::os_features().as_ref(), cpu::expected_levels().as_ref(), &compared) {
        // straight to stderr: the test harness captures only print!/eprint!
        Ok(line) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "{line} [whole model]");
        }
        Err(e) => panic!("{e}"),
    }
}

/// The emitted Fashion-MNIST student (a real converter output, checked in as a fuzz seed) on
/// real test images: eight threads share one `Model`, each with its own session and arena,
/// half of them walking the images backwards, and all give the bytes of a single session.
#[test]
fn student_on_eight_threads_agrees_with_one_session() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/model_from_bytes/student_kd.tmf");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let buf = AlignedBuf::from_bytes(&bytes);
    let model = Model::from_bytes(buf.as_bytes()).unwrap();
    let ds = temper_data::load_dataset("fashion-mnist:test:64").expect("Fashion-MNIST (scripts/setup.sh installs it)");
    let images: Vec<&[u8]> = (0..ds.len()).map(|i| ds.image_u8(i).unwrap()).collect();
    let run_all = |order: &mut dyn Iterator<Item = usize>| {
        let mut arena = vec![0u8; model.arena_size()];
        let mut s = Session::new(&model, &mut arena).unwrap();
        let mut out = vec![Vec::new(); images.len()];
        for i in order {
            s.set_input_u8(0, images[i]).unwrap();
            s.run().unwrap();
            out[i] = s.output_i8(0).unwrap().to_vec();
        }
        out
    };
    let n = images.len();
    let serial = run_all(&mut (0..n));
    let argmax = |o: &[i8]| (0..o.len()).fold(0, |b, i| if o[i] > o[b] { i } else { b });
    let correct = serial.iter().zip(&ds.labels).filter(|&(o, &l)| argmax(o) == l as usize).count();
    assert!(correct * 100 > n * 85, "the student gets {correct}/{n} right");
    let parallel: Vec<Vec<Vec<i8>>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|t| {
                let run_all = &run_all;
                s.spawn(move || if t % 2 == 0 { run_all(&mut (0..n)) } else { run_all(&mut (0..n).rev()) })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (t, p) in parallel.iter().enumerate() {
        assert!(p == &serial, "thread {t} differs from the single session");
    }
}
