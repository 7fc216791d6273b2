//! IDX reader tests: valid files of every dtype, gzip detection, and hostile input.

mod common;

use temper_data::error::ErrorKind;
use temper_data::idx::{idx_u8_bytes, read_idx, read_idx_any, read_idx_any_bytes, read_idx_bytes, IdxData, IdxDtype};

fn header(code: u8, dims: &[u32]) -> Vec<u8> {
    let mut v = vec![0, 0, code, dims.len() as u8];
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v
}

fn sample_u8() -> Vec<u8> {
    let mut v = header(0x08, &[2, 3, 2]);
    v.extend(0u8..12);
    v
}

#[test]
fn reads_u8_plain_and_gzip() {
    let raw = sample_u8();
    for bytes in [raw.clone(), common::gzip(&raw)] {
        let a = read_idx_bytes(&bytes, "mem").unwrap();
        assert_eq!(a.dims, vec![2, 3, 2]);
        assert_eq!(a.data, (0u8..12).collect::<Vec<_>>());
        assert_eq!(a.len(), 2);
        assert_eq!(a.item_size(), 6);
    }
}

#[test]
fn gzip_detected_by_magic_not_extension() {
    let dir = common::TempDir::new("idx-ext");
    // A gzip file without .gz and a raw file with .gz: both must load.
    let p1 = dir.join("images-ubyte");
    std::fs::write(&p1, common::gzip(&sample_u8())).unwrap();
    let p2 = dir.join("labels.gz");
    std::fs::write(&p2, sample_u8()).unwrap();
    assert_eq!(read_idx(&p1).unwrap(), read_idx(&p2).unwrap());
}

#[test]
fn writer_round_trip() {
    let bytes = idx_u8_bytes(&[3, 1], &[7, 8, 9]).unwrap();
    let a = read_idx_bytes(&bytes, "mem").unwrap();
    assert_eq!((a.dims, a.data), (vec![3, 1], vec![7, 8, 9]));
    assert!(idx_u8_bytes(&[2, 2], &[1, 2, 3]).is_err());
}

#[test]
fn every_dtype() {
    let mut b = header(0x09, &[3]);
    b.extend_from_slice(&[0xff, 0x00, 0x7f]);
    assert_eq!(read_idx_any_bytes(&b, "i8").unwrap().data, IdxData::I8(vec![-1, 0, 127]));

    let mut b = header(0x0B, &[2]);
    b.extend_from_slice(&(-2i16).to_be_bytes());
    b.extend_from_slice(&300i16.to_be_bytes());
    assert_eq!(read_idx_any_bytes(&b, "i16").unwrap().data, IdxData::I16(vec![-2, 300]));

    let mut b = header(0x0C, &[1, 2]);
    b.extend_from_slice(&(-70000i32).to_be_bytes());
    b.extend_from_slice(&5i32.to_be_bytes());
    let t = read_idx_any_bytes(&b, "i32").unwrap();
    assert_eq!(t.dims, vec![1, 2]);
    assert_eq!(t.data, IdxData::I32(vec![-70000, 5]));

    let mut b = header(0x0D, &[2]);
    b.extend_from_slice(&1.5f32.to_be_bytes());
    b.extend_from_slice(&(-0.25f32).to_be_bytes());
    assert_eq!(read_idx_any_bytes(&b, "f32").unwrap().data, IdxData::F32(vec![1.5, -0.25]));

    let mut b = header(0x0E, &[1]);
    b.extend_from_slice(&2.75f64.to_be_bytes());
    let t = read_idx_any_bytes(&b, "f64").unwrap();
    assert_eq!(t.data, IdxData::F64(vec![2.75]));
    assert_eq!(t.data.to_f32(), vec![2.75f32]);
    assert_eq!(t.data.dtype(), IdxDtype::F64);

    // u8 through the any-reader, too.
    let t = read_idx_any_bytes(&sample_u8(), "u8").unwrap();
    assert_eq!(t.data.dtype(), IdxDtype::U8);
    assert_eq!(t.data.len(), 12);
}

#[test]
fn read_idx_rejects_non_u8_with_clear_error() {
    let mut b = header(0x0D, &[1]);
    b.extend_from_slice(&1.0f32.to_be_bytes());
    let e = read_idx_bytes(&b, "floats.idx").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::UnsupportedDtype(_)), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("floats.idx") && msg.contains("0x0d"), "{msg}");
}

#[test]
fn wrong_magic() {
    for bad in [b"\x50\x4b\x03\x04rest".to_vec(), b"\x01\x00\x08\x01\0\0\0\0".to_vec(), b"ab".to_vec()] {
        let e = read_idx_bytes(&bad, "bad.idx").unwrap_err();
        assert!(matches!(e.kind, ErrorKind::BadMagic { .. }), "{e}");
        assert!(e.to_string().contains("bad.idx"));
    }
    // Unknown type code.
    let e = read_idx_any_bytes(&header(0x0A, &[1]), "t").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::UnsupportedDtype(_)), "{e}");
    // Zero dimensions.
    let e = read_idx_bytes(&[0, 0, 8, 0], "t").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Format(_)), "{e}");
}

#[test]
fn truncated_at_every_length_never_panics() {
    let raw = sample_u8();
    for k in 0..raw.len() {
        let e = read_idx_bytes(&raw[..k], "cut").unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Truncated { .. }), "len {k}: {e}");
    }
    let gz = common::gzip(&raw);
    for k in 2..gz.len() {
        assert!(read_idx_bytes(&gz[..k], "cutgz").is_err(), "gzip len {k}");
    }
    // Every dtype, cut everywhere.
    for code in [0x09u8, 0x0B, 0x0C, 0x0D, 0x0E] {
        let size = match code {
            0x09 => 1,
            0x0B => 2,
            0x0C | 0x0D => 4,
            _ => 8,
        };
        let mut b = header(code, &[2, 2]);
        b.extend(std::iter::repeat_n(0x41, 4 * size));
        assert!(read_idx_any_bytes(&b, "ok").is_ok());
        for k in 0..b.len() {
            assert!(read_idx_any_bytes(&b[..k], "cut").is_err());
        }
    }
}

#[test]
fn truncation_error_reports_offset_and_sizes() {
    let raw = sample_u8();
    let e = read_idx_bytes(&raw[..raw.len() - 3], "x.idx").unwrap_err();
    assert_eq!(e.offset, Some(16));
    match e.kind {
        ErrorKind::Truncated { needed, available } => assert_eq!((needed, available), (12, 9)),
        k => panic!("{k:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains("x.idx at byte 16"), "{msg}");
}

#[test]
fn trailing_bytes_are_a_shape_mismatch() {
    let mut raw = sample_u8();
    raw.push(0);
    let e = read_idx_bytes(&raw, "t").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::ShapeMismatch(_)), "{e}");
    let e = read_idx_bytes(&common::gzip(&raw), "t").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::ShapeMismatch(_)), "{e}");
}

#[test]
fn dims_overflow_and_huge_claims() {
    // Product overflows usize.
    let b = header(0x08, &[u32::MAX, u32::MAX, u32::MAX]);
    let e = read_idx_bytes(&b, "t").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::ShapeMismatch(_)), "{e}");
    // Element count fits but byte size overflows for f64.
    let b = header(0x0E, &[u32::MAX, u32::MAX, 1 << 29]);
    let e = read_idx_any_bytes(&b, "t").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::ShapeMismatch(_)), "{e}");
    // A huge (non-overflowing, also on 32-bit targets: 65535² < 2³²) claim with a tiny payload
    // must fail fast without allocating the claimed size.
    let mut b = header(0x08, &[0xffff, 0xffff]);
    b.extend_from_slice(&[1, 2, 3]);
    let e = read_idx_bytes(&b, "t").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Truncated { available: 3, .. }), "{e}");
    // Same through gzip.
    let e = read_idx_bytes(&common::gzip(&b), "t").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Truncated { available: 3, .. }), "{e}");
}

#[test]
fn corrupt_gzip_is_an_error() {
    let mut gz = common::gzip(&sample_u8());
    let n = gz.len();
    gz[n - 6] ^= 0xff; // CRC32 trailer
    assert!(read_idx_bytes(&gz, "t").is_err());
    let mut gz = common::gzip(&sample_u8());
    for b in gz.iter_mut().skip(10).take(5) {
        *b ^= 0x5a;
    }
    assert!(read_idx_bytes(&gz, "t").is_err());
}

#[test]
fn io_error_names_the_path() {
    let e = read_idx(std::path::Path::new("/nonexistent/dir/train-images.gz")).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Io(_)));
    assert!(e.to_string().contains("/nonexistent/dir/train-images.gz"), "{e}");
    assert!(std::error::Error::source(&e).is_some());
    let e = read_idx_any(std::path::Path::new("/nonexistent/x")).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Io(_)));
}

#[test]
fn real_fashion_mnist_test_set() {
    let Some(dir) = temper_testkit::fmnist_dir() else {
        return;
    };
    let images = read_idx(&dir.join("t10k-images-idx3-ubyte.gz")).unwrap();
    let labels = read_idx(&dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!(images.dims, vec![10000, 28, 28]);
    assert_eq!(images.data.len(), 10000 * 28 * 28);
    assert_eq!(labels.dims, vec![10000]);
    assert_eq!(labels.data[0], 9, "first test label is Ankle boot");
    assert!(labels.data.iter().all(|&l| l < 10));
    // Balanced: 1000 per class.
    let mut counts = [0usize; 10];
    for &l in &labels.data {
        counts[l as usize] += 1;
    }
    assert_eq!(counts, [1000; 10]);
    assert!(images.data.contains(&255) && images.data.contains(&0));
}
