//! NPY / NPZ tests: round trips for every dtype, hand-built headers of every
//! version, hostile input, atomic writes, and NPZ archives made by Python's
//! `zipfile` (committed fixtures plus a fresh one when python3 is present).

mod common;

use std::path::Path;

use temper_data::error::ErrorKind;
use temper_data::npy::{
    npy_to_bytes, npz_get, read_npy, read_npy_bytes, read_npz, read_npz_bytes, write_npy, write_npy_f32, write_npy_i32, write_npy_i64,
    write_npy_i8, write_npy_u8, write_npz, NpyArray, NpyData,
};

/// Hand-built NPY with an arbitrary header dict and payload.
fn npy_raw(major: u8, dict: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = b"\x93NUMPY".to_vec();
    v.push(major);
    v.push(0);
    let mut h = dict.to_string();
    h.push('\n');
    if major == 1 {
        v.extend_from_slice(&(h.len() as u16).to_le_bytes());
    } else {
        v.extend_from_slice(&(h.len() as u32).to_le_bytes());
    }
    v.extend_from_slice(h.as_bytes());
    v.extend_from_slice(payload);
    v
}

fn no_temp_files_left(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!n.contains(".tmp-"), "temporary file left behind: {n}");
    }
}

#[test]
fn round_trip_every_dtype_through_files() {
    let dir = common::TempDir::new("npy-rt");
    let f: Vec<f32> = (0..24).map(|i| i as f32 * -0.125 + 1e-3).collect();
    let p = dir.join("f.npy");
    write_npy_f32(&p, &[2, 3, 4], &f).unwrap();
    let a = read_npy(&p).unwrap();
    assert_eq!(a.shape, vec![2, 3, 4]);
    assert_eq!(a.data, NpyData::F32(f.clone()));

    let u: Vec<u8> = (0..=255).collect();
    let p = dir.join("u.npy");
    write_npy_u8(&p, &[16, 16], &u).unwrap();
    assert_eq!(read_npy(&p).unwrap(), NpyArray { shape: vec![16, 16], data: NpyData::U8(u) });

    let i: Vec<i8> = (-128..=127).collect();
    let p = dir.join("i8.npy");
    write_npy_i8(&p, &[256], &i).unwrap();
    assert_eq!(read_npy(&p).unwrap(), NpyArray { shape: vec![256], data: NpyData::I8(i) });

    let i32s = vec![i32::MIN, -1, 0, 1, i32::MAX, 123456];
    let p = dir.join("i32.npy");
    write_npy_i32(&p, &[3, 2], &i32s).unwrap();
    assert_eq!(read_npy(&p).unwrap().data, NpyData::I32(i32s));

    let i64s = vec![i64::MIN, -1, 0, i64::MAX];
    let p = dir.join("i64.npy");
    write_npy_i64(&p, &[4], &i64s).unwrap();
    assert_eq!(read_npy(&p).unwrap().data, NpyData::I64(i64s));

    no_temp_files_left(dir.path());
}

#[test]
fn round_trip_edge_shapes_in_memory() {
    for (shape, data) in [
        (vec![], NpyData::F32(vec![3.5])),               // 0-d scalar
        (vec![0], NpyData::U8(vec![])),                  // empty 1-d
        (vec![0, 5], NpyData::I32(vec![])),              // empty 2-d
        (vec![1, 1, 1, 1, 1, 1], NpyData::I8(vec![-3])), // many dims
        (vec![2, 1], NpyData::F32(vec![f32::NAN, -0.0])),
    ] {
        let a = NpyArray::new(shape.clone(), data).unwrap();
        let bytes = npy_to_bytes(&a).unwrap();
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let b = read_npy_bytes(&bytes, "mem").unwrap();
        assert_eq!(b.shape, shape);
        // NaN != NaN: compare bit patterns.
        match (&a.data, &b.data) {
            (NpyData::F32(x), NpyData::F32(y)) => {
                assert_eq!(x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), y.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
            }
            (x, y) => assert_eq!(x, y),
        }
    }
}

#[test]
fn header_is_64_byte_aligned_and_numpy_style() {
    let a = NpyArray::new(vec![5], NpyData::F32(vec![0.0; 5])).unwrap();
    let b = npy_to_bytes(&a).unwrap();
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    assert_eq!((10 + hlen) % 64, 0);
    let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
    assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }"), "{header}");
    assert!(header.ends_with('\n'));
    assert_eq!(b.len(), 10 + hlen + 20);
}

#[test]
fn reads_f8_as_f32_and_big_endian() {
    let mut p = Vec::new();
    for x in [1.5f64, -2.25, 1e-3] {
        p.extend_from_slice(&x.to_le_bytes());
    }
    let b = npy_raw(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", &p);
    let a = read_npy_bytes(&b, "f8").unwrap();
    assert_eq!(a.data, NpyData::F32(vec![1.5, -2.25, 1e-3f64 as f32]));

    let mut p = Vec::new();
    for x in [1.5f32, -2.0] {
        p.extend_from_slice(&x.to_be_bytes());
    }
    let b = npy_raw(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,)}", &p);
    assert_eq!(read_npy_bytes(&b, "be").unwrap().data, NpyData::F32(vec![1.5, -2.0]));

    let b = npy_raw(1, "{'descr': '>i4', 'fortran_order': False, 'shape': (1,)}", &7i32.to_be_bytes());
    assert_eq!(read_npy_bytes(&b, "be").unwrap().data, NpyData::I32(vec![7]));

    // Bool reads as u8; shape with Python-2 long suffix; double quotes; key order.
    let b = npy_raw(1, "{\"shape\": (2L,), \"fortran_order\": False, \"descr\": \"|b1\"}", &[1, 0]);
    let a = read_npy_bytes(&b, "b1").unwrap();
    assert_eq!((a.shape, a.data), (vec![2], NpyData::U8(vec![1, 0])));
}

#[test]
fn reads_v2_and_v3_headers() {
    let b = npy_raw(
        2,
        "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 2), }",
        &[1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    );
    let a = read_npy_bytes(&b, "v2").unwrap();
    assert_eq!((a.shape, a.data), (vec![1, 2], NpyData::I64(vec![1, -1])));
    let b = npy_raw(3, "{'descr': '|u1', 'fortran_order': False, 'shape': (3,), 'ünïcode': 'ok'}", &[9, 8, 7]);
    assert_eq!(read_npy_bytes(&b, "v3").unwrap().data, NpyData::U8(vec![9, 8, 7]));
    // Unknown version.
    let mut b = npy_raw(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (0,)}", &[]);
    b[6] = 4;
    let e = read_npy_bytes(&b, "v4").unwrap_err();
    assert!(e.to_string().contains("version 4"), "{e}");
}

#[test]
fn rejects_fortran_order_and_unsupported_dtypes() {
    let b = npy_raw(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 1), }", &[0; 4]);
    let e = read_npy_bytes(&b, "fortran.npy").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("fortran.npy") && msg.contains("fortran_order"), "{msg}");
    for descr in ["<c8", "<U3", "<f2", "<u4", "O", "f4"] {
        let d = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (1,), }}");
        let e = read_npy_bytes(&npy_raw(1, &d, &[0; 8]), "dt.npy").unwrap_err();
        assert!(matches!(e.kind, ErrorKind::UnsupportedDtype(_)), "{descr}: {e}");
        assert!(e.to_string().contains(descr), "{e}");
    }
    let d = "{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (1,), }";
    let e = read_npy_bytes(&npy_raw(1, d, &[0; 8]), "rec.npy").unwrap_err();
    assert!(e.to_string().contains("structured"), "{e}");
}

#[test]
fn hostile_headers_never_panic() {
    let cases = [
        "",
        "{",
        "[1, 2]",
        "{'descr': '<f4'}",
        "{'descr': '<f4', 'fortran_order': False}",
        "{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1.5,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': ('a',)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999999999999999999999,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} trailing",
        "{'descr': '<f4, 'fortran_order': False, 'shape': (1,)}",
        "{'descr': '<f4' 'fortran_order': False, 'shape': (1,)}",
        "{1: 2}",
    ];
    for c in cases {
        assert!(read_npy_bytes(&npy_raw(1, c, &[0; 4]), "h").is_err(), "{c}");
    }
    // Deep nesting must not overflow the stack.
    let deep = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {}1{}}}", "(".repeat(5000), ")".repeat(5000));
    assert!(read_npy_bytes(&npy_raw(1, &deep, &[0; 4]), "deep").is_err());
    // Shape product overflow, and byte-size overflow.
    let d = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': ({}, {}, {}), }}", usize::MAX, usize::MAX, 2);
    let e = read_npy_bytes(&npy_raw(1, &d, &[]), "ovf").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::ShapeMismatch(_)), "{e}");
    let d = format!("{{'descr': '<i8', 'fortran_order': False, 'shape': ({},), }}", usize::MAX / 4);
    let e = read_npy_bytes(&npy_raw(1, &d, &[]), "ovf").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::ShapeMismatch(_)), "{e}");
    // Huge header length claim.
    let mut b = b"\x93NUMPY\x02\x00".to_vec();
    b.extend_from_slice(&u32::MAX.to_le_bytes());
    b.extend_from_slice(b"{}");
    let e = read_npy_bytes(&b, "hl").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Truncated { .. }), "{e}");
    // Non-UTF-8 v3 header.
    let mut b = npy_raw(3, "{'descr': '|u1', 'fortran_order': False, 'shape': (1,)}", &[0]);
    b[14] = 0xff;
    assert!(read_npy_bytes(&b, "utf").is_err());
}

#[test]
fn wrong_magic_truncation_and_trailing_data() {
    let e = read_npy_bytes(b"PK\x03\x04whatever", "x.npy").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::BadMagic { .. }), "{e}");
    assert!(e.to_string().contains("x.npy"));

    let a = NpyArray::new(vec![2, 3], NpyData::I32(vec![1, 2, 3, 4, 5, 6])).unwrap();
    let full = npy_to_bytes(&a).unwrap();
    for k in 0..full.len() {
        let e = read_npy_bytes(&full[..k], "cut.npy").unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Truncated { .. } | ErrorKind::Format(_)), "len {k}: {e}");
    }
    let data_start = full.len() - 24;
    let e = read_npy_bytes(&full[..full.len() - 1], "cut.npy").unwrap_err();
    assert_eq!(e.offset, Some(data_start as u64));
    assert!(matches!(e.kind, ErrorKind::Truncated { needed: 24, available: 23 }), "{e}");

    let mut long = full.clone();
    long.extend_from_slice(&[0, 0]);
    let e = read_npy_bytes(&long, "long.npy").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::ShapeMismatch(_)), "{e}");
    assert_eq!(e.offset, Some(full.len() as u64));
}

#[test]
fn writer_checks_shape_and_reports_io_errors() {
    let dir = common::TempDir::new("npy-w");
    let p = dir.join("bad.npy");
    let e = write_npy_f32(&p, &[2, 2], &[1.0, 2.0, 3.0]).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::ShapeMismatch(_)), "{e}");
    assert!(!p.exists());
    let e = write_npy_u8(&dir.join("no/such/dir/x.npy"), &[1], &[1]).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Io(_)));
    assert!(e.to_string().contains("no/such/dir"), "{e}");
    assert!(NpyArray::new(vec![3], NpyData::U8(vec![1])).is_err());
    no_temp_files_left(dir.path());
}

#[test]
fn atomic_write_replaces_existing_file() {
    let dir = common::TempDir::new("npy-atomic");
    let p = dir.join("x.npy");
    std::fs::write(&p, b"old contents").unwrap();
    write_npy_i8(&p, &[2], &[-1, 1]).unwrap();
    assert_eq!(read_npy(&p).unwrap().data, NpyData::I8(vec![-1, 1]));
    let arr = NpyArray::new(vec![1], NpyData::I64(vec![42])).unwrap();
    write_npy(&p, &arr).unwrap();
    assert_eq!(read_npy(&p).unwrap(), arr);
    // A relative path in the current directory has an empty parent: still works.
    no_temp_files_left(dir.path());
}

#[test]
fn to_f32_helpers() {
    assert_eq!(NpyData::U8(vec![0, 255]).to_f32(), vec![0.0, 255.0]);
    assert_eq!(NpyData::I8(vec![-128]).to_f32(), vec![-128.0]);
    assert_eq!(NpyData::I32(vec![-5]).to_f32(), vec![-5.0]);
    assert_eq!(NpyData::I64(vec![1 << 20]).to_f32(), vec![1048576.0]);
    assert_eq!(NpyData::I64(vec![3]).to_i64(), Some(vec![3]));
    assert_eq!(NpyData::F32(vec![1.0]).to_i64(), None);
}

fn check_fixture_contents(m: &[(String, NpyArray)]) {
    let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, vec!["x", "y"], "README.txt must be skipped");
    let x = npz_get(m, "x").unwrap();
    assert_eq!(x.shape, vec![3, 2, 2]);
    assert_eq!(x.data, NpyData::F32((0..12).map(|i| i as f32 * 0.5).collect()));
    let y = npz_get(m, "y").unwrap();
    assert_eq!((y.shape.clone(), y.data.clone()), (vec![3], NpyData::I64(vec![2, 0, 1])));
    assert!(npz_get(m, "z").is_none());
}

#[test]
fn npz_fixtures_from_python_zipfile() {
    for name in ["small_deflate.npz", "small_stored.npz"] {
        let m = read_npz(&common::fixtures().join(name)).unwrap();
        check_fixture_contents(&m);
    }
}

/// Runs `python3` with `args`: `None` (after `temper_testkit::skip`) when there is no python3
/// to start; a test failure showing stderr when it starts and fails; else its stdout.
#[track_caller]
fn python3(args: &[&std::ffi::OsStr]) -> Option<String> {
    let out = match std::process::Command::new("python3").args(args).output() {
        Ok(o) => o,
        Err(e) => {
            temper_testkit::skip(temper_testkit::Need::Python, &format!("python3 cannot be started: {e}"));
            return None;
        }
    };
    assert!(out.status.success(), "python3 {args:?} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn npz_freshly_generated_by_python3() {
    let dir = common::TempDir::new("npz-py");
    let script = common::fixtures().join("make_npz.py");
    let Some(_) = python3(&[script.as_os_str(), dir.path().as_os_str()]) else { return };
    for name in ["small_deflate.npz", "small_stored.npz"] {
        check_fixture_contents(&read_npz(&dir.join(name)).unwrap());
    }
}

#[test]
fn npz_write_round_trip() {
    let dir = common::TempDir::new("npz-w");
    let x = NpyArray::new(vec![2, 2], NpyData::F32(vec![1.0, 2.0, 3.0, 4.0])).unwrap();
    let y = NpyArray::new(vec![2], NpyData::U8(vec![0, 1])).unwrap();
    let p = dir.join("out.npz");
    write_npz(&p, &[("images", &x), ("labels", &y)]).unwrap();
    let m = read_npz(&p).unwrap();
    assert_eq!(m, vec![("images".to_string(), x.clone()), ("labels".to_string(), y)]);
    assert!(write_npz(&dir.join("dup.npz"), &[("a", &x), ("a", &x)]).is_err());
    // Python's zipfile agrees with our writer: it opens the archive, every member's CRC checks
    // (testzip), and the names are ours. A failing check is a non-zero exit, which fails here.
    let check =
        "import sys,zipfile; z=zipfile.ZipFile(sys.argv[1]); bad=z.testzip(); assert bad is None, bad; print(','.join(z.namelist()))";
    if let Some(names) = python3(&["-c".as_ref(), check.as_ref(), p.as_os_str()]) {
        assert_eq!(names.trim(), "images.npy,labels.npy");
    }
    no_temp_files_left(dir.path());
}

#[test]
fn npz_hostile_input() {
    let good = std::fs::read(common::fixtures().join("small_deflate.npz")).unwrap();
    // Truncated at every length.
    for k in 0..good.len() {
        assert!(read_npz_bytes(&good[..k], "cut.npz").is_err(), "len {k}");
    }
    // Flip every byte of the stored archive, one at a time: never panics.
    let stored = std::fs::read(common::fixtures().join("small_stored.npz")).unwrap();
    for i in 0..stored.len() {
        let mut b = stored.clone();
        b[i] ^= 0xa5;
        let _ = read_npz_bytes(&b, "flip.npz");
    }
    for i in 0..good.len() {
        let mut b = good.clone();
        b[i] = b[i].wrapping_add(1);
        let _ = read_npz_bytes(&b, "flip.npz");
    }
    // A payload byte flip in a stored member is caught by the CRC.
    let mut b = stored.clone();
    let pos = stored.windows(4).position(|w| w == b"\x93NUM").unwrap() + 80;
    b[pos] ^= 1;
    let e = read_npz_bytes(&b, "crc.npz").unwrap_err();
    assert!(e.to_string().contains("CRC"), "{e}");
    assert!(e.to_string().contains("crc.npz:x.npy"), "{e}");
    // Not a zip at all.
    let e = read_npz_bytes(b"\x93NUMPY\x01\x00 this is an npy, not an npz......", "npy.npz").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::BadMagic { .. }), "{e}");
    let e = read_npz(Path::new("/nonexistent.npz")).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Io(_)));
}
