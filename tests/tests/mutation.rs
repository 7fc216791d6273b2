//! Hostile model files: truncation at every length, every single-bit flip in the header and
//! tables, and targeted field mutations, on the hand-built model and the real ones (the
//! controller's model and the emitted Fashion-MNIST student). Each mutant either loads and runs,
//! or fails with an error — never a panic.

use temper_kernels::dispatch;
use temper_runtime::format::{Header, SectionEntry, HEADER_SIZE};
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
