//! Hostile model files: truncation at every length, every single-bit flip in the header and
//! tables, and targeted field mutations, on the hand-built model and the real ones (the
//! controller's model and the emitted Fashion-MNIST student). Each mutant either loads and runs,
//! or fails with an error — never a panic.

use temper_kernels::dispatch;
use temper_runtime::format::{Header, SectionEntry, HEADER_SIZE};
use temper_runtime::ops::detect_postprocess::{DetectConfig, DetectLevel, DetectParams};
use temper_runtime::ops::OpParams;
use temper_runtime::writer::AlignedBuf;
use temper_runtime::{LoadOptions, Model, Session};
use temper_tests::TinyCnn;

fn load_and_run(bytes: &[u8], opts: LoadOptions) -> bool {
    let buf = AlignedBuf::from_bytes(bytes);
    match Model::from_bytes_with(buf.as_bytes(), opts) {
        Ok(model) => {
            let mut arena = vec![0u8; model.arena_size()];
            let mut s = Session::with_kernels(&model, &mut arena, &dispatch::SCALAR).expect("arena sized from the model");
            for i in 0..model.graph_inputs().len() {
                let n = model.tensor(model.graph_inputs()[i]).numel();
                s.set_input_i8(i, &vec![1i8; n]).unwrap();
            }
            s.run().unwrap();
            true
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("invalid model:"), "{msg}");
            false
        }
    }
}

#[test]
fn truncation_at_every_length_is_an_error() {
    let bytes = TinyCnn::new(3).build();
    let mut errors = 0;
    for len in 0..bytes.len() {
        for verify in [true, false] {
            let loaded = load_and_run(&bytes[..len], LoadOptions { verify_checksums: verify });
            assert!(!loaded, "truncated to {len} loaded (checksums {verify})");
            errors += 1;
        }
    }
    assert_eq!(errors, 2 * bytes.len(), "every truncation, with and without checksums, is an error");
    assert!(load_and_run(&bytes, LoadOptions::default()), "the whole file loads");
    eprintln!("truncations rejected: {errors}");
}

#[test]
fn every_bit_flip_in_header_and_tables_never_panics() {
    let (tried, loaded) = bit_flips(&TinyCnn::new(5).build(), true);
    eprintln!("bit flips tried: {tried}, loaded and ran without checksums: {loaded}");
}

/// Header byte ranges that structural validation alone must reject whatever bit flips in them:
/// the magic and major version (`0..10`), the file length (`16..24`), the reserved words (`40..72`).
const MUST_REJECT: [(usize, usize); 3] = [(0, 10), (16, 24), (40, 72)];
/// The two checksums (`32..40`): flipping one only breaks verification, so without it the model
/// must load and run.
const CRC_FIELDS: (usize, usize) = (32, 40);

/// Flips every bit of the header and section table (and, with `records`, of every section but
/// the constant data); returns (mutants, loaded and ran without checksums).
///
/// With checksums every flip must be rejected; without them each mutant loads and runs or fails
/// validation (never a panic), and a flip in [`MUST_REJECT`] fails while one in [`CRC_FIELDS`]
/// loads. The counts of each are checked against the number of bits in those ranges.
fn bit_flips(bytes: &[u8], records: bool) -> (usize, usize) {
    let header: Header = *bytemuck::from_bytes(&bytes[..HEADER_SIZE]);
    let table: &[SectionEntry] = bytemuck::cast_slice(&bytes[HEADER_SIZE..header.header_len as usize]);
    // header + section table + every record section (everything but the constant data)
    let mut ranges = vec![(0usize, header.header_len as usize)];
    for s in table {
        if records && s.kind != 6 {
            ranges.push((s.offset as usize, (s.offset + s.len) as usize));
        }
    }
    let in_range = |byte: usize, (a, b): (usize, usize)| (a..b).contains(&byte);
    let (mut tried, mut loaded, mut checksum_rejects, mut structural_rejects, mut crc_loads) = (0, 0, 0, 0, 0);
    for &(a, b) in &ranges {
        for byte in a..b {
            for bit in 0..8 {
                let mut m = bytes.to_vec();
                m[byte] ^= 1 << bit;
                tried += 1;
                // With checksums every flip must be caught...
                assert!(!load_and_run(&m, LoadOptions::default()), "flip at byte {byte} bit {bit} passed the checksums");
                checksum_rejects += 1;
                // ...and without them the structural validation must hold on its own.
                let ok = load_and_run(&m, LoadOptions { verify_checksums: false });
                loaded += ok as usize;
                if MUST_REJECT.iter().any(|&r| in_range(byte, r)) {
                    assert!(!ok, "flip at header byte {byte} bit {bit} loaded without checksums");
                    structural_rejects += 1;
                }
                if in_range(byte, CRC_FIELDS) {
                    assert!(ok, "flip at checksum byte {byte} bit {bit} did not load with checksums off");
                    crc_loads += 1;
                }
            }
        }
    }
    let bits = |rs: &[(usize, usize)]| 8 * rs.iter().map(|(a, b)| b - a).sum::<usize>();
    assert_eq!(tried, bits(&ranges));
    assert_eq!(checksum_rejects, tried, "every flip is rejected by the checksums");
    assert_eq!(structural_rejects, bits(&MUST_REJECT), "every flip of magic, major, file length, reserved is rejected");
    assert_eq!(crc_loads, bits(&[CRC_FIELDS]), "every flip of a checksum loads when checksums are off");
    (tried, loaded)
}

/// The real models of the test set: the controller's checked-in `defect8x8.tmf` and the
/// emitted Fashion-MNIST student (the fuzz seed), read from the source tree.
fn real_models() -> Vec<(&'static str, Vec<u8>)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    ["targets/controller/model/defect8x8.tmf", "fuzz/seeds/model_from_bytes/student_kd.tmf"]
        .iter()
        .map(|p| (*p, std::fs::read(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"))))
        .collect()
}

/// Truncation at every length of the real models (no copy: prefixes of one aligned buffer).
#[test]
fn real_models_truncated_at_every_length_fail() {
    for (name, bytes) in real_models() {
        let buf = AlignedBuf::from_bytes(&bytes);
        for len in 0..bytes.len() {
            for verify in [true, false] {
                assert!(
                    Model::from_bytes_with(&buf.as_bytes()[..len], LoadOptions { verify_checksums: verify }).is_err(),
                    "{name} truncated to {len} loaded"
                );
            }
        }
        assert!(load_and_run(&bytes, LoadOptions::default()), "{name}");
        eprintln!("{name}: {} truncations rejected", 2 * bytes.len());
    }
}

/// Bit flips on the real models: every bit of header, table and records of the small controller
/// model; header and section table of the student (its record flips would each cost a payload
/// checksum over 114 KB — the hand-built model covers records).
#[test]
fn real_models_bit_flips_never_panic() {
    for (name, bytes) in real_models() {
        let records = bytes.len() < 16 * 1024;
        let (tried, loaded) = bit_flips(&bytes, records);
        eprintln!("{name}: bit flips tried: {tried} (records {records}), loaded and ran without checksums: {loaded}");
    }
}

/// Byte offset of `section kind` and its length.
fn section(bytes: &[u8], kind: u32) -> (usize, usize) {
    let header: Header = *bytemuck::from_bytes(&bytes[..HEADER_SIZE]);
    let table: &[SectionEntry] = bytemuck::cast_slice(&bytes[HEADER_SIZE..header.header_len as usize]);
    let s = table.iter().find(|s| s.kind == kind).expect("section");
    (s.offset as usize, s.len as usize)
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn targeted_field_mutations_load_and_run_or_fail_cleanly() {
    let (tried, loaded) = targeted(&TinyCnn::new(9).build());
    eprintln!("targeted mutants tried: {tried}, loaded and ran: {loaded}");
}

#[test]
fn targeted_field_mutations_on_the_controller_model() {
    let (name, bytes) = real_models().remove(0);
    let (tried, loaded) = targeted(&bytes);
    eprintln!("{name}: targeted mutants tried: {tried}, loaded and ran: {loaded}");
}

/// Targeted field mutations of `bytes` (checksums off); returns (mutants, loaded and ran). Each
/// mutant loads and runs or fails validation; a tensor id out of range and live activations
/// moved onto each other must fail, and the count of each is checked.
fn targeted(bytes: &[u8]) -> (usize, usize) {
    let bytes = bytes.to_vec();
    let n = bytes.len() as u64;
    let u32s = [0u32, 1, 2, 3, 7, 8, 9, 255, 256, 0x7fff_ffff, 0x8000_0000, u32::MAX - 1, u32::MAX, n as u32, n as u32 - 1, n as u32 + 1];
    let u64s = [0u64, 1, 63, 64, n - 1, n, n + 1, u32::MAX as u64, i64::MAX as u64, u64::MAX - 7, u64::MAX];
    let f32s = [0.0f32, -0.0, -1.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE, 1e-40, f32::MAX];
    let mut tried = 0usize;
    let mut loaded = 0usize;
    let mut check = |m: Vec<u8>| {
        tried += 1;
        loaded += load_and_run(&m, LoadOptions { verify_checksums: false }) as usize;
    };
    // graph record: every u32/u64 field
    let (g, _) = section(&bytes, 1);
    for v in u64s {
        let mut m = bytes.clone();
        put_u64(&mut m, g, v);
        check(m);
    }
    for field in 0..6 {
        for v in u32s {
            let mut m = bytes.clone();
            put_u32(&mut m, g + 8 + 4 * field, v);
            check(m);
        }
    }
    // tensor records (88 bytes): u32 fields, dims, offsets/lengths, quantization
    let (t, tl) = section(&bytes, 2);
    for rec in 0..tl / 88 {
        let base = t + rec * 88;
        for word in 0..12 {
            for v in u32s {
                let mut m = bytes.clone();
                put_u32(&mut m, base + 4 * word, v);
                check(m);
            }
        }
        for off in [56, 64] {
            for v in u64s {
                let mut m = bytes.clone();
                put_u64(&mut m, base + off, v);
                check(m);
            }
        }
        for v in f32s {
            let mut m = bytes.clone();
            m[base + 72..base + 76].copy_from_slice(&v.to_le_bytes());
            check(m);
        }
        for word in [76usize, 80, 84] {
            for v in u32s.iter().copied().chain([128u32, (-129i32) as u32]) {
                let mut m = bytes.clone();
                put_u32(&mut m, base + word, v);
                check(m);
            }
        }
    }
    // op records (112 bytes): counts, offsets, scratch, every parameter
    let (o, ol) = section(&bytes, 3);
    for rec in 0..ol / 112 {
        let base = o + rec * 112;
        for word in 0..8 {
            for v in u32s {
                let mut m = bytes.clone();
                put_u32(&mut m, base + 4 * word, v);
                check(m);
            }
        }
        for off in [32, 40] {
            for v in u64s {
                let mut m = bytes.clone();
                put_u64(&mut m, base + off, v);
                check(m);
            }
        }
        for p in 0..16 {
            for v in [i32::MIN, -129, -1, 0, 1, 2, 62, 63, 127, 128, 4097, 1 << 30, i32::MAX] {
                let mut m = bytes.clone();
                m[base + 48 + 4 * p..base + 52 + 4 * p].copy_from_slice(&v.to_le_bytes());
                check(m);
            }
        }
    }
    // id lists: every id to out-of-range and to every other tensor
    let (ids, il) = section(&bytes, 4);
    let n_tensors = tl / 88;
    let mut bad_ids = 0;
    for k in 0..il / 4 {
        for v in (0..n_tensors as u32 + 2).chain([u32::MAX]) {
            let mut m = bytes.clone();
            put_u32(&mut m, ids + 4 * k, v);
            if v as usize >= n_tensors {
                assert!(
                    !load_and_run(&m, LoadOptions { verify_checksums: false }),
                    "id {v} of {n_tensors} tensors (id list entry {k}) loaded"
                );
                bad_ids += 1;
            }
            check(m);
        }
    }
    assert_eq!(bad_ids, 3 * (il / 4), "every id list entry set to n, n + 1 and u32::MAX is rejected");
    // requantization data: every multiplier and shift value replaced
    let buf = AlignedBuf::from_bytes(&bytes);
    let model = Model::from_bytes(buf.as_bytes()).unwrap();
    for op in model.ops() {
        for &id in op.inputs {
            let tv = model.tensor(id);
            if tv.dtype != temper_runtime::DType::I32 || tv.storage != temper_runtime::format::Storage::Constant {
                continue;
            }
            for k in 0..tv.numel().min(8) {
                for v in [i32::MIN, -1, 0, 1, 61, 62, 63, (1 << 30) - 1, 1 << 30, i32::MAX] {
                    let mut m = bytes.clone();
                    m[tv.offset + 4 * k..tv.offset + 4 * k + 4].copy_from_slice(&v.to_le_bytes());
                    check(m);
                }
            }
        }
    }
    // arena plan: move every activation onto every other one's offset (overlaps while live)
    let acts: Vec<_> =
        (0..model.tensor_count() as u32).map(|i| model.tensor(i)).filter(|t| t.storage == temper_runtime::format::Storage::Arena).collect();
    let mut overlap_rejected = 0;
    for a in &acts {
        for b in &acts {
            if a.id == b.id {
                continue;
            }
            let mut m = bytes.clone();
            put_u64(&mut m, t + a.id as usize * 88 + 56, b.offset as u64);
            tried += 1;
            let ok = load_and_run(&m, LoadOptions { verify_checksums: false });
            loaded += ok as usize;
            overlap_rejected += (!ok) as usize;
        }
    }
    assert!(overlap_rejected > 0, "moving live activations onto each other must be rejected");
    assert!(loaded > 0 && loaded < tried, "structural validation neither accepts nor rejects every mutant ({loaded} of {tried} loaded)");
    (tried, loaded)
}

/// Every fuzzer reproducer kept in `fuzz/regressions/model_from_bytes/` either fails to load or
/// runs with the same bytes on every kernel level this CPU has.
#[test]
fn fuzz_regressions_load_consistently_or_fail() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/model_from_bytes");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("regression directory") {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        n += 1;
        let buf = AlignedBuf::from_bytes(&bytes);
        let Ok(model) = Model::from_bytes_with(buf.as_bytes(), LoadOptions { verify_checksums: false }) else { continue };
        let features = temper_kernels::Features::detect();
        let mut first: Option<Vec<i8>> = None;
        for level in temper_kernels::dispatch::Level::ALL {
            let Some(k) = dispatch::table(level, features) else { continue };
            let mut arena = vec![0u8; model.arena_size()];
            let mut s = Session::with_kernels(&model, &mut arena, k).unwrap();
            for i in 0..model.graph_inputs().len() {
                let len = model.tensor(model.graph_inputs()[i]).numel();
                s.set_input_i8(i, &vec![3i8; len]).unwrap();
            }
            s.run().unwrap();
            let out = s.output_i8(0).unwrap().to_vec();
            match &first {
                None => first = Some(out),
                Some(f) => assert_eq!(&out, f, "level {level} differs from scalar"),
            }
        }
    }
    assert!(n > 0, "no reproducers found in {}", dir.display());
}

/// ChannelAffine's constants and quantization, mutated one at a time (checksums off so the
/// structural validation alone must catch them): every hostile value is rejected with an error,
/// and the unmodified model loads and runs.
#[test]
fn channel_affine_hostile_params_are_rejected() {
    use temper_kernels::QParams;
    use temper_runtime::writer::Builder;
    let mut b = Builder::new("affine");
    let x = b.activation("x", &[1, 2, 2, 3], QParams { scale: 0.05, zero_point: 4 });
    b.input(x);
    let y = b.activation("y", &[1, 2, 2, 3], QParams { scale: 0.07, zero_point: -3 });
    b.channel_affine("aff", x, y, &[0.5, -1.25, 2.0], &[0.1, -0.2, 0.3], (-128, 127)).unwrap();
    b.output(y);
    let bytes = b.finish().unwrap();
    let off = LoadOptions { verify_checksums: false };
    assert!(load_and_run(&bytes, off));
    // tensor records (88 bytes each) in builder order: x, y, mult, shift, offset
    let (t, _) = section(&bytes, 2);
    let rec = |i: usize| t + i * 88;
    let data = |i: usize| u64::from_le_bytes(bytes[rec(i) + 56..rec(i) + 64].try_into().unwrap()) as usize;
    let mut hostile: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut put = |what: &'static str, at: usize, v: [u8; 4]| {
        let mut m = bytes.clone();
        m[at..at + 4].copy_from_slice(&v);
        hostile.push((what, m));
    };
    put("zero input scale", rec(0) + 72, 0f32.to_le_bytes());
    put("zero output scale", rec(1) + 72, 0f32.to_le_bytes());
    put("NaN output scale", rec(1) + 72, f32::NAN.to_le_bytes());
    put("multiplier below 2^30", data(2) + 4, 5i32.to_le_bytes());
    put("negative multiplier below 2^30", data(2) + 4, (-5i32).to_le_bytes());
    put("multiplier i32::MIN", data(2), i32::MIN.to_le_bytes());
    put("shift 0", data(3), 0i32.to_le_bytes());
    put("shift 63", data(3) + 8, 63i32.to_le_bytes());
    put("offset above 2^24", data(4) + 4, ((1i32 << 24) + 1).to_le_bytes());
    put("offset i32::MIN", data(4), i32::MIN.to_le_bytes());
    // channel count mismatch: the multipliers become a 1-element vector (a valid tensor)
    let mut m = bytes.clone();
    put_u32(&mut m, rec(2) + 16, 1);
    put_u64(&mut m, rec(2) + 64, 4);
    hostile.push(("per-tensor multiplier for 3 channels", m));
    let mut m = bytes.clone();
    put_u32(&mut m, rec(4) + 16, 1);
    put_u64(&mut m, rec(4) + 64, 4);
    hostile.push(("1 offset for 3 channels", m));
    for (what, m) in &hostile {
        let buf = AlignedBuf::from_bytes(m);
        let e = Model::from_bytes_with(buf.as_bytes(), off).err().unwrap_or_else(|| panic!("{what}: loaded"));
        eprintln!("{what}: {e}");
        assert!(e.to_string().starts_with("invalid model:"), "{what}: {e}");
    }
    // a valid negative multiplier (a sign flip of channel 0) still loads and runs
    let mut m = bytes.clone();
    let at = data(2);
    let v = i32::from_le_bytes(m[at..at + 4].try_into().unwrap());
    m[at..at + 4].copy_from_slice(&(-v).to_le_bytes());
    assert!(load_and_run(&m, off));
}

/// A hostile case: the expected error text and the mutation.
type Case<T> = (&'static str, Box<dyn Fn(&mut T)>);

/// A small DetectPostprocess model (2 levels, 3 classes, reg_max 4, on a 64×48 image).
fn detector() -> Vec<u8> {
    let h = temper_tests::det::DetHead::random(21, (64, 48), &[8, 16], 3, 4, 0, 4);
    let mut cfg = h.config(true, true);
    (cfg.top_k, cfg.max_det) = (30, 10);
    h.build(&cfg)
}

/// The detection model under every single-bit flip of its header, tables, records and constant
/// tables (levels, score map, exp), and under the targeted field mutations: loads and runs, or
/// fails with an error.
#[test]
fn detection_model_mutants_never_panic() {
    let bytes = detector();
    assert!(load_and_run(&bytes, LoadOptions::default()));
    let (tried, loaded) = bit_flips(&bytes, true);
    eprintln!("detector: bit flips tried: {tried}, loaded and ran without checksums: {loaded}");
    let (off, len) = section(&bytes, 6);
    let (mut data_tried, mut data_loaded) = (0, 0);
    for byte in off..off + len {
        for bit in 0..8 {
            let mut m = bytes.clone();
            m[byte] ^= 1 << bit;
            data_loaded += load_and_run(&m, LoadOptions { verify_checksums: false }) as usize;
            data_tried += 1;
        }
    }
    eprintln!("detector: constant-data bit flips tried: {data_tried}, loaded and ran: {data_loaded}");
    assert!(data_tried > 8 * 4096 && data_loaded > 0 && data_loaded < data_tried);
    let (tried_t, loaded_t) = targeted(&bytes);
    eprintln!("detector: targeted mutants tried: {tried_t}, loaded and ran: {loaded_t}");
    assert!(tried > 8 * 500 && tried_t > 2000);
}

/// The raw pieces of a DetectPostprocess op, to be made hostile one field at a time.
#[derive(Clone)]
struct DetSpec {
    params: [i32; 16],
    levels: Vec<i32>,
    score_map: Vec<f32>,
    exp: Vec<i32>,
    /// `(scores dims, boxes dims)` per level.
    shapes: Vec<(Vec<usize>, Vec<usize>)>,
    /// Level tensors used per op input slot (index into `shapes`).
    use_level: Vec<usize>,
    out: Vec<usize>,
    out_scale: f32,
}

impl DetSpec {
    /// Valid: image 64×48, strides 8 and 16, 3 classes, reg_max 4, top_k 30, max_det 10.
    fn valid() -> DetSpec {
        let mut params = [0; 16];
        params[..10].copy_from_slice(&[0, 2, 3, 4, 32768, 1, 30, 10, 64, 48]);
        let map: Vec<f32> = (0..256).map(|q| q as f32 / 255.0).collect();
        let exp: Vec<i32> = (0..256).map(|d| ((-(d as f64) * 0.2).exp() * (1u64 << 30) as f64).round() as i32).collect();
        DetSpec {
            params,
            levels: vec![8, 10, 16, -5],
            score_map: [map.clone(), map].concat(),
            exp: [exp.clone(), exp].concat(),
            shapes: vec![(vec![1, 48, 3], vec![1, 6, 8, 20]), (vec![1, 12, 3], vec![1, 12, 20])],
            use_level: vec![0, 1],
            out: vec![1, 11, 24],
            out_scale: 1.0,
        }
    }

    fn build(&self) -> Result<Vec<u8>, String> {
        use temper_kernels::QParams;
        use temper_runtime::format::OpCode;
        let mut b = temper_runtime::writer::Builder::new("hostile");
        let q = QParams { scale: 0.1, zero_point: 0 };
        let mut ins = Vec::new();
        let mut made = Vec::new();
        for (l, (s, x)) in self.shapes.iter().enumerate() {
            let si = b.activation(&format!("s{l}"), s, q);
            let xi = b.activation(&format!("b{l}"), x, q);
            b.input(si);
            b.input(xi);
            made.push((si, xi));
        }
        for &l in &self.use_level {
            ins.extend([made[l].0, made[l].1]);
        }
        let n = self.levels.len() / 2;
        ins.push(b.const_i32("levels", &[n.max(1), 2], &self.levels));
        ins.push(b.const_f32("map", &[self.score_map.len()], &self.score_map));
        ins.push(b.const_i32("exp", &[self.exp.len()], &self.exp));
        let y = b.activation("y", &self.out, QParams { scale: self.out_scale, zero_point: 0 });
        let d = DetectParams::decode(&self.params);
        b.raw_op(OpCode::DetectPostprocess, "post", &ins, y, &self.params, 8 * d.top_k + 20 * d.max_det);
        b.output(y);
        b.finish().map_err(|e| e.to_string())
    }
}

/// Each hostile field is rejected at load with an error naming it (the writer's self-check runs
/// the loader); the valid spec loads and runs.
#[test]
fn hostile_detection_params_are_rejected_at_load() {
    let ok = DetSpec::valid().build().expect("the valid spec builds");
    assert!(load_and_run(&ok, LoadOptions::default()));
    let cases: Vec<Case<DetSpec>> = vec![
        ("unknown input form", Box::new(|s| s.params[0] = 1)),
        ("levels out of", Box::new(|s| s.params[1] = 9)),
        ("levels out of", Box::new(|s| s.params[1] = 0)),
        ("wrong number of inputs", Box::new(|s| s.params[1] = 3)),
        ("classes out of", Box::new(|s| s.params[2] = 100_000)),
        ("scores must be", Box::new(|s| s.params[2] = 4)),
        ("reg_max out of", Box::new(|s| s.params[3] = 1000)),
        ("reg_max out of", Box::new(|s| s.params[3] = i32::MAX)),
        ("boxes must be", Box::new(|s| s.params[3] = 5)),
        ("IoU threshold", Box::new(|s| s.params[4] = 65537)),
        ("IoU threshold", Box::new(|s| s.params[4] = -1)),
        ("class_aware", Box::new(|s| s.params[5] = 2)),
        ("top_k out of", Box::new(|s| s.params[6] = 0)),
        ("top_k out of", Box::new(|s| s.params[6] = 1 << 30)),
        ("max_det out of", Box::new(|s| s.params[7] = 0)),
        ("max_det out of", Box::new(|s| s.params[7] = 5000)),
        ("image width", Box::new(|s| s.params[8] = 0)),
        ("scores must be", Box::new(|s| s.params[8] = 72)),
        ("image height", Box::new(|s| s.params[9] = 1 << 20)),
        ("unused params", Box::new(|s| s.params[12] = 1)),
        ("scores must be", Box::new(|s| s.levels[0] = 16)),
        ("scores must be", Box::new(|s| s.levels[2] = 8)),
        ("stride out of", Box::new(|s| s.levels[0] = 0)),
        ("stride out of", Box::new(|s| s.levels[2] = 4096)),
        ("score threshold out of", Box::new(|s| s.levels[1] = 129)),
        ("score threshold out of", Box::new(|s| s.levels[3] = -129)),
        ("score map", Box::new(|s| s.score_map[7] = f32::NAN)),
        ("score map", Box::new(|s| s.score_map[300] = 1.5)),
        ("score map", Box::new(|s| s.score_map[100] = 0.9)),
        ("score map", Box::new(|s| s.score_map[0] = -0.1)),
        ("tables must be", Box::new(|s| s.score_map.truncate(256))),
        ("exp table", Box::new(|s| s.exp[0] = 1 << 29)),
        ("exp table", Box::new(|s| s.exp[300] = 1 << 30)),
        ("exp table", Box::new(|s| s.exp[255] = -1)),
        (
            "given twice",
            Box::new(|s| {
                s.levels = vec![8, 10, 8, 10];
                s.use_level = vec![0, 0];
            }),
        ),
        ("output must be", Box::new(|s| s.out = vec![1, 10, 24])),
        ("output must be", Box::new(|s| s.out_scale = 0.5)),
    ];
    for (i, (want, f)) in cases.iter().enumerate() {
        let mut s = DetSpec::valid();
        f(&mut s);
        let e = s.build().expect_err(&format!("case {i} ({want}) must be rejected"));
        assert!(e.contains(want), "case {i}: expected an error about {want:?}, got: {e}");
    }
}

/// The writer method rejects non-finite or out-of-range float settings before writing anything.
#[test]
fn hostile_detection_configs_are_rejected_by_the_writer() {
    let h = temper_tests::det::DetHead::random(1, (64, 48), &[8, 16], 3, 4, 0, 2);
    let cases: Vec<Case<DetectConfig>> = vec![
        ("thresholds", Box::new(|c| c.score_threshold = f32::NAN)),
        ("thresholds", Box::new(|c| c.iou_threshold = f32::NAN)),
        ("thresholds", Box::new(|c| c.iou_threshold = 1.5)),
        ("thresholds", Box::new(|c| c.score_threshold = -0.1)),
        ("max_det", Box::new(|c| c.max_det = 0)),
        ("max_det", Box::new(|c| c.max_det = 1 << 20)),
        ("max_det", Box::new(|c| c.reg_max = 500)),
        ("max_det", Box::new(|c| c.top_k = 0)),
    ];
    for (want, f) in &cases {
        let mut cfg = h.config(true, true);
        f(&mut cfg);
        let mut b = temper_runtime::writer::Builder::new("w");
        let s = b.activation("s", &[1, 48, 3], h.qs[0]);
        let x = b.activation("b", &[1, 48, 20], h.qb[0]);
        let e = b.detect_postprocess("post", &[DetectLevel { scores: s, boxes: x, stride: 8 }], &cfg).expect_err(want);
        assert!(e.to_string().contains(want), "{e}");
    }
    let mut b = temper_runtime::writer::Builder::new("w");
    assert!(b.detect_postprocess("post", &[], &h.config(true, true)).is_err(), "no levels");
}
