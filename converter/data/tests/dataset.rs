//! Dataset loading by spec string, validation, subsets, normalization and
//! batching; plus the real Fashion-MNIST files when installed.

mod common;

use std::path::Path;

use temper_data::dataset::{check_labels, load_dataset_with, Layout, LoadOptions, FASHION_MNIST_CLASSES};
use temper_data::error::ErrorKind;
use temper_data::idx::idx_u8_bytes;
use temper_data::images::ColorMode;
use temper_data::npy::{write_npy, write_npy_f32, write_npy_i64, write_npy_u8, write_npz, NpyArray, NpyData};
use temper_data::{load_dataset, Dataset, Normalize, Pixels};

/// Writes gzip'd IDX images [n, h, w] (pixel = index) and labels.
fn write_idx(dir: &Path, n: usize, h: usize, w: usize, labels: &[u8]) -> (String, String) {
    let px: Vec<u8> = (0..n * h * w).map(|i| (i % 251) as u8).collect();
    let ip = dir.join("img.idx.gz");
    let lp = dir.join("lab.idx");
    std::fs::write(&ip, common::gzip(&idx_u8_bytes(&[n, h, w], &px).unwrap())).unwrap();
    std::fs::write(&lp, idx_u8_bytes(&[labels.len()], labels).unwrap()).unwrap();
    (ip.display().to_string(), lp.display().to_string())
}

#[test]
fn idx_spec_loads_and_infers_classes() {
    let dir = common::TempDir::new("ds-idx");
    let (ip, lp) = write_idx(dir.path(), 5, 2, 3, &[0, 3, 1, 1, 2]);
    let ds = load_dataset(&format!("idx:{ip},{lp}")).unwrap();
    assert_eq!(ds.shape, [5, 1, 2, 3]);
    assert_eq!(ds.labels, vec![0, 3, 1, 1, 2]);
    assert_eq!(ds.num_classes, 4);
    assert_eq!(ds.image_u8(1).unwrap(), &[6, 7, 8, 9, 10, 11]);
    assert_eq!(ds.class_counts(), vec![1, 2, 1, 1]);
    assert!(ds.image_u8(5).is_none());
    ds.validate().unwrap();
}

#[test]
fn label_out_of_range_count_mismatch_and_empty() {
    let dir = common::TempDir::new("ds-bad");
    let (ip, lp) = write_idx(dir.path(), 3, 2, 2, &[0, 1, 7]);
    let opts = LoadOptions { num_classes: Some(5), ..LoadOptions::default() };
    let e = load_dataset_with(&format!("idx:{ip},{lp}"), &opts).unwrap_err();
    match &e.kind {
        ErrorKind::LabelOutOfRange { index, label, num_classes } => assert_eq!((*index, *label, *num_classes), (2, 7, 5)),
        k => panic!("{k:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains("lab.idx") && msg.contains("sample 2"), "{msg}");

    let (ip, lp) = write_idx(dir.path(), 3, 2, 2, &[0, 1]);
    let e = load_dataset(&format!("idx:{ip},{lp}")).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::ShapeMismatch(_)), "{e}");
    assert!(e.to_string().contains("2 labels for 3 images"), "{e}");

    let (ip, lp) = write_idx(dir.path(), 0, 2, 2, &[]);
    let e = load_dataset(&format!("idx:{ip},{lp}")).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Empty(_)), "{e}");
    assert!(e.to_string().contains("img.idx.gz"), "{e}");

    // Labels must be 1-d.
    std::fs::write(dir.join("lab2.idx"), idx_u8_bytes(&[3, 2], &[0; 6]).unwrap()).unwrap();
    let (ip, _) = write_idx(dir.path(), 3, 2, 2, &[0, 0, 0]);
    let e = load_dataset(&format!("idx:{ip},{}", dir.join("lab2.idx").display())).unwrap_err();
    assert!(e.to_string().contains("labels must have shape"), "{e}");

    assert!(check_labels(&[0, 1, 2], 3, "x").is_ok());
    assert!(check_labels(&[0, 3], 3, "x").is_err());
}

#[test]
fn bad_specs_are_clear_errors() {
    for spec in ["", "idx:only_one", "idx:a,b,c", "npy:,b", "fashion-mnist:bogus", "/definitely/not/here", "csv:x"] {
        let e = load_dataset(spec).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::InvalidSpec(_)), "{spec}: {e}");
    }
    let e = load_dataset("idx:/nonexistent/i.gz,/nonexistent/l.gz").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Io(_)));
    assert!(e.to_string().contains("/nonexistent/i.gz"));
}

#[test]
fn npy_spec_nhwc_autodetect_and_f32_passthrough() {
    let dir = common::TempDir::new("ds-npy");
    // NHWC u8: 2 images 2x2 RGB.
    let px: Vec<u8> = (0..24).collect();
    write_npy_u8(&dir.join("x.npy"), &[2, 2, 2, 3], &px).unwrap();
    write_npy_i64(&dir.join("y.npy"), &[2, 1], &[1, 0]).unwrap();
    let spec = format!("npy:{},{}", dir.join("x.npy").display(), dir.join("y.npy").display());
    let ds = load_dataset(&spec).unwrap();
    assert_eq!(ds.shape, [2, 3, 2, 2]);
    // Image 0, R plane = pixels 0,3,6,9.
    assert_eq!(&ds.image_u8(0).unwrap()[..4], &[0, 3, 6, 9]);
    assert_eq!(ds.labels, vec![1, 0]);
    // Forcing NCHW keeps [2, 2, 2, 3].
    let ds2 = load_dataset_with(&spec, &LoadOptions { layout: Layout::Nchw, ..Default::default() }).unwrap();
    assert_eq!(ds2.shape, [2, 2, 2, 3]);

    // f32 NCHW data, already normalized: batches pass it through.
    let f: Vec<f32> = (0..8).map(|i| i as f32 - 3.5).collect();
    write_npy_f32(&dir.join("xf.npy"), &[2, 1, 2, 2], &f).unwrap();
    let spec = format!("npy:{},{}", dir.join("xf.npy").display(), dir.join("y.npy").display());
    let ds = load_dataset(&spec).unwrap();
    assert!(matches!(ds.images, Pixels::F32(_)));
    let b: Vec<_> = ds.batches(8, &Normalize::imagenet()).collect();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].pixels, f);
    assert!(ds.u8_batches(1).is_none());
    // Resizing f32 is refused clearly.
    let e = load_dataset_with(&spec, &LoadOptions { size: Some((4, 4)), ..Default::default() }).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::UnsupportedDtype(_)), "{e}");

    // Negative labels and float labels are errors.
    write_npy_i64(&dir.join("yneg.npy"), &[2], &[0, -1]).unwrap();
    let e = load_dataset(&format!("npy:{},{}", dir.join("x.npy").display(), dir.join("yneg.npy").display())).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::LabelOutOfRange { index: 1, label: -1, .. }), "{e}");
    write_npy_f32(&dir.join("yf.npy"), &[2], &[0.0, 1.0]).unwrap();
    let e = load_dataset(&format!("npy:{},{}", dir.join("x.npy").display(), dir.join("yf.npy").display())).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::UnsupportedDtype(_)), "{e}");
    // i32 images are not pixels.
    write_npy(&dir.join("xi.npy"), &NpyArray::new(vec![2, 1], NpyData::I32(vec![1, 2])).unwrap()).unwrap();
    let e = load_dataset(&format!("npy:{},{}", dir.join("xi.npy").display(), dir.join("y.npy").display())).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::UnsupportedDtype(_)), "{e}");
}

#[test]
fn npy_of_any_rank_keeps_the_sample_shape() {
    let dir = common::TempDir::new("ds-rank");
    write_npy_i64(&dir.join("y.npy"), &[2], &[1, 0]).unwrap();
    let load = |dims: &[usize]| {
        let n: usize = dims.iter().product();
        let f: Vec<f32> = (0..n).map(|i| i as f32).collect();
        write_npy_f32(&dir.join("x.npy"), dims, &f).unwrap();
        let ds = load_dataset(&format!("npy:{},{}", dir.join("x.npy").display(), dir.join("y.npy").display())).unwrap();
        let same_order = ds.to_f32(&Normalize::unit()) == f;
        (ds.shape, ds.sample_shape, same_order)
    };
    // Vectors, sequences, images, higher ranks and scalars per sample.
    assert_eq!(load(&[2, 64]), ([2, 1, 1, 64], vec![64], true));
    assert_eq!(load(&[2, 3, 128]), ([2, 1, 3, 128], vec![3, 128], true));
    assert_eq!(load(&[2, 3, 8, 8]), ([2, 3, 8, 8], vec![3, 8, 8], true));
    assert_eq!(load(&[2, 8, 8, 3]), ([2, 3, 8, 8], vec![3, 8, 8], false), "NHWC is transposed: the sample shape follows");
    assert_eq!(load(&[2, 2, 3, 4, 5]), ([2, 1, 1, 120], vec![2, 3, 4, 5], true));
    assert_eq!(load(&[2]), ([2, 1, 1, 1], vec![], true));
    let ds = load_dataset(&format!("npy:{},{}:1", dir.join("x.npy").display(), dir.join("y.npy").display())).unwrap();
    assert_eq!(ds.sample_shape, Vec::<usize>::new(), "a subset keeps the sample shape");
}

#[test]
fn npz_spec_with_python_fixture_and_our_writer() {
    let p = common::fixtures().join("small_deflate.npz");
    let ds = load_dataset(&format!("npz:{}", p.display())).unwrap();
    assert_eq!(ds.shape, [3, 1, 2, 2]);
    assert_eq!(ds.labels, vec![2, 0, 1]);
    assert_eq!(ds.num_classes, 3);
    assert_eq!(ds.images.as_f32().unwrap()[4], 2.0);
    // A bare .npz path works too.
    assert_eq!(load_dataset(&p.display().to_string()).unwrap(), ds);

    let dir = common::TempDir::new("ds-npz");
    let x = NpyArray::new(vec![2, 1, 1, 2], NpyData::U8(vec![0, 255, 51, 102])).unwrap();
    let y = NpyArray::new(vec![2], NpyData::U8(vec![1, 1])).unwrap();
    let z = dir.join("d.npz");
    write_npz(&z, &[("images", &x), ("labels", &y)]).unwrap();
    let ds = load_dataset(&format!("npz:{}", z.display())).unwrap();
    assert_eq!(ds.shape, [2, 1, 1, 2]);
    let b: Vec<_> = ds.batches(1, &Normalize::unit()).collect();
    assert_eq!(b[0].pixels, vec![0.0, 1.0]);
    assert!(b[1].pixels.iter().zip([0.2f32, 0.4]).all(|(a, b)| (a - b).abs() < 1e-6));

    write_npz(&z, &[("a", &x), ("labels", &y)]).unwrap();
    let e = load_dataset(&format!("npz:{}", z.display())).unwrap_err();
    assert!(e.to_string().contains("\"a\"") && e.to_string().contains("'x'"), "{e}");
}

#[test]
fn folder_spec_with_options() {
    let dir = common::TempDir::new("ds-dir");
    for (c, v) in [("a", 10u8), ("b", 20)] {
        std::fs::create_dir_all(dir.join(c)).unwrap();
        for i in 0..3 {
            let mut out = Vec::new();
            {
                let mut e = png::Encoder::new(&mut out, 3, 3);
                e.set_color(png::ColorType::Grayscale);
                e.set_depth(png::BitDepth::Eight);
                e.write_header().unwrap().write_image_data(&[v + i; 9]).unwrap();
            }
            std::fs::write(dir.join(&format!("{c}/{i}.png")), out).unwrap();
        }
    }
    let plain = load_dataset(&dir.path().display().to_string()).unwrap();
    assert_eq!(plain.shape, [6, 1, 3, 3]);
    assert_eq!(plain.class_names, vec!["a", "b"]);
    assert_eq!(plain.labels, vec![0, 0, 0, 1, 1, 1]);
    let opts = LoadOptions { size: Some((5, 4)), color: Some(ColorMode::Rgb), ..Default::default() };
    let ds = load_dataset_with(&format!("dir:{}:2..5", dir.path().display()), &opts).unwrap();
    assert_eq!(ds.shape, [3, 3, 5, 4]);
    assert_eq!(ds.labels, vec![0, 1, 1]);
    assert!(ds.image_u8(0).unwrap().iter().all(|&v| v == 12));
    // num_classes smaller than the folder count: the label check fires.
    let e = load_dataset_with(&dir.path().display().to_string(), &LoadOptions { num_classes: Some(1), ..Default::default() }).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::LabelOutOfRange { index: 3, .. }), "{e}");
}

fn small() -> Dataset {
    // 5 images, 2 channels, 1x2.
    let px: Vec<u8> = (0..20).map(|i| i * 10).collect();
    Dataset::new(Pixels::U8(px), [5, 2, 1, 2], vec![0, 1, 2, 0, 1], 3, "mem").unwrap()
}

#[test]
fn dataset_new_validates() {
    assert!(Dataset::new(Pixels::U8(vec![0; 4]), [2, 1, 1, 2], vec![0, 0], 1, "m").is_ok());
    let e = Dataset::new(Pixels::U8(vec![0; 3]), [2, 1, 1, 2], vec![0, 0], 1, "m").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::ShapeMismatch(_)));
    let e = Dataset::new(Pixels::U8(vec![0; 4]), [2, 1, 1, 2], vec![0], 1, "m").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::ShapeMismatch(_)));
    let e = Dataset::new(Pixels::U8(vec![]), [0, 1, 1, 2], vec![], 1, "m").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Empty(_)));
    let e = Dataset::new(Pixels::U8(vec![0; 4]), [2, 1, 1, 2], vec![0, 1], 1, "m").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::LabelOutOfRange { index: 1, .. }));
    let e = Dataset::new(Pixels::F32(vec![]), [usize::MAX, 2, 2, 2], vec![], 1, "m").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::ShapeMismatch(_)));
}

#[test]
fn subset_take_and_suffixes() {
    let ds = small();
    let s = ds.subset(1, 3).unwrap();
    assert_eq!(s.shape, [3, 2, 1, 2]);
    assert_eq!(s.labels, vec![1, 2, 0]);
    assert_eq!(s.image_u8(0).unwrap(), &[40, 50, 60, 70]);
    assert!(ds.subset(4, 2).is_err());
    assert!(ds.subset(usize::MAX, 2).is_err());
    assert!(matches!(ds.subset(2, 0).unwrap_err().kind, ErrorKind::Empty(_)));
    assert_eq!(ds.take(100).unwrap().len(), 5);
    assert_eq!(ds.take(2).unwrap().len(), 2);
    assert!(ds.take(0).is_err());

    let dir = common::TempDir::new("ds-sfx");
    let (ip, lp) = write_idx(dir.path(), 6, 1, 1, &[0, 1, 2, 3, 4, 5]);
    let base = format!("idx:{ip},{lp}");
    assert_eq!(load_dataset(&format!("{base}:4")).unwrap().labels, vec![0, 1, 2, 3]);
    assert_eq!(load_dataset(&format!("{base}:99")).unwrap().len(), 6);
    let r = load_dataset(&format!("{base}:2..5")).unwrap();
    assert_eq!(r.labels, vec![2, 3, 4]);
    assert_eq!(r.num_classes, 6, "num_classes is kept from the full set");
    assert!(load_dataset(&format!("{base}:4..9")).is_err());
    assert!(load_dataset(&format!("{base}:5..2")).is_err());
    assert!(load_dataset(&format!("{base}:0")).is_err());
}

#[test]
fn normalize_and_batches() {
    let n = Normalize::new(vec![0.5, 0.25], vec![0.5, 0.25], 1.0 / 255.0);
    n.validate(2).unwrap();
    assert!((n.apply(255, 0) - 1.0).abs() < 1e-6);
    assert!((n.apply(0, 1) + 1.0).abs() < 1e-6);
    assert_eq!(n.lut(1)[255], n.apply(255, 1));
    assert!(n.validate(3).is_err());
    assert!(Normalize::new(vec![0.0], vec![0.0], 1.0).validate(1).is_err());
    assert!(Normalize::new(vec![f32::NAN], vec![1.0], 1.0).validate(1).is_err());
    assert_eq!(Normalize::identity().apply(200, 7), 200.0);
    assert_eq!(Normalize::default(), Normalize::unit());
    let im = Normalize::imagenet();
    im.validate(3).unwrap();
    assert!((im.apply(0, 2) - (-0.406 / 0.225)).abs() < 1e-5);

    let ds = small();
    let it = ds.batches(2, &n);
    assert_eq!(it.len(), 3);
    let bs: Vec<_> = it.collect();
    assert_eq!(bs.iter().map(|b| b.shape[0]).collect::<Vec<_>>(), vec![2, 2, 1]);
    assert_eq!(bs[2].start, 4);
    assert_eq!(bs[2].labels, &[1]);
    assert_eq!(bs[2].shape, [1, 2, 1, 2]);
    // Image 4: channel 0 = [160, 170], channel 1 = [180, 190].
    let want: Vec<f32> = [(160, 0), (170, 0), (180, 1), (190, 1)].iter().map(|&(v, c)| n.apply(v, c)).collect();
    assert_eq!(bs[2].pixels, want);
    let all: Vec<f32> = bs.iter().flat_map(|b| b.pixels.clone()).collect();
    assert_eq!(all, ds.to_f32(&n));
    let mut one = vec![0f32; 4];
    assert!(ds.image_f32_into(4, &n, &mut one));
    assert_eq!(one, want);
    assert!(!ds.image_f32_into(5, &n, &mut one));

    // Reusing one buffer.
    let mut it = ds.batches(0, &n); // 0 means 1
    let mut buf = Vec::new();
    let mut count = 0;
    let cap_ptr;
    {
        let (_, shape, labels) = it.next_into(&mut buf).unwrap();
        assert_eq!((shape[0], labels), (1, &[0u32][..]));
        cap_ptr = buf.as_ptr();
        count += 1;
    }
    while let Some((start, _, _)) = it.next_into(&mut buf) {
        assert_eq!(buf.len(), 4);
        assert_eq!(buf, ds.to_f32(&n)[start * 4..start * 4 + 4]);
        count += 1;
    }
    assert_eq!(count, 5);
    assert_eq!(buf.as_ptr(), cap_ptr, "buffer reused without reallocation");

    let u: Vec<_> = ds.u8_batches(3).unwrap().collect();
    assert_eq!(u.len(), 2);
    assert_eq!((u[1].0.len(), u[1].1), (8, &[0u32, 1][..]));
}

#[test]
fn dataset_color_and_resize() {
    let px = vec![255, 0, 0, 0, 0, 255]; // 1 image, RGB planes, 1x2: red, blue
    let ds = Dataset::new(Pixels::U8(px), [1, 3, 1, 2], vec![0], 1, "m").unwrap();
    let g = ds.convert_color(ColorMode::Gray).unwrap();
    assert_eq!((g.shape, g.images.as_u8().unwrap()), ([1, 1, 1, 2], &[76u8, 29][..]));
    let b = ds.convert_color(ColorMode::Bgr).unwrap();
    assert_eq!(b.images.as_u8().unwrap(), &[0, 255, 0, 0, 255, 0]);
    let rgb = g.convert_color(ColorMode::Rgb).unwrap();
    assert_eq!(rgb.images.as_u8().unwrap(), &[76, 29, 76, 29, 76, 29]);
    let r = ds.resize(1, 4).unwrap();
    assert_eq!(r.shape, [1, 3, 1, 4]);
    assert_eq!(&r.images.as_u8().unwrap()[..4], &[255, 191, 64, 0]);
    assert!(ds.resize(0, 4).is_err());
    assert!(ds.resize(1 << 20, 1 << 20).is_err());
    let four = Dataset::new(Pixels::U8(vec![0; 4]), [1, 4, 1, 1], vec![0], 1, "m").unwrap();
    assert!(four.convert_color(ColorMode::Gray).is_err());
}

#[test]
fn real_fashion_mnist_splits() {
    // The folder `fashion-mnist:*` reads (TEMPER_FMNIST_DIR or the package's) must hold the
    // real files: the counts and labels below are theirs, and a stand-in folder fails.
    let Some(dir) = temper_testkit::fmnist_dir() else { return };
    let test = load_dataset("fashion-mnist:test").unwrap();
    assert_eq!(test.shape, [10000, 1, 28, 28]);
    assert_eq!(test.num_classes, 10);
    assert_eq!(test.labels[0], 9);
    assert_eq!(test.class_names[test.labels[0] as usize], "Ankle boot");
    assert_eq!(test.class_names, FASHION_MNIST_CLASSES.to_vec());
    assert_eq!(test.class_counts(), vec![1000; 10]);
    assert_eq!(test.source, "fashion-mnist:test");

    let train = load_dataset("fashion-mnist:train").unwrap();
    let val = load_dataset("fashion-mnist:val").unwrap();
    assert_eq!((train.len(), val.len()), (55000, 5000));
    let full = temper_data::idx::read_idx(&dir.join("train-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!(full.data.len(), 60000);
    assert_eq!(&val.labels[..], &full.data[55000..].iter().map(|&l| u32::from(l)).collect::<Vec<_>>()[..]);
    assert_eq!(train.labels[0], u32::from(full.data[0]));

    let head = load_dataset("fashion-mnist:test:100").unwrap();
    assert_eq!(head.len(), 100);
    assert_eq!(head.image_u8(7), test.image_u8(7));
    // Normalized batch of the first image matches a hand computation.
    let n = Normalize::new(vec![0.2860], vec![0.3530], 1.0 / 255.0);
    let b = head.batches(32, &n).next().unwrap();
    assert_eq!(b.pixels.len(), 32 * 784);
    let p = head.image_u8(0).unwrap()[400];
    assert!((b.pixels[400] - (p as f32 / 255.0 - 0.2860) / 0.3530).abs() < 1e-5);

    let r =
        load_dataset_with("fashion-mnist:test:8", &LoadOptions { size: Some((32, 32)), color: Some(ColorMode::Rgb), ..Default::default() })
            .unwrap();
    assert_eq!(r.shape, [8, 3, 32, 32]);
}

#[test]
fn hand_built_inconsistent_dataset_never_panics() {
    let bad = Dataset {
        images: Pixels::U8(vec![1, 2, 3]),
        shape: [4, 1, 1, 2],
        sample_shape: vec![1, 1, 2],
        labels: vec![0, 0],
        num_classes: 1,
        class_names: vec![],
        source: "hand".into(),
    };
    assert!(bad.validate().is_err());
    assert!(bad.subset(0, 1).is_err());
    assert!(bad.resize(2, 2).is_err());
    assert!(bad.convert_color(ColorMode::Rgb).is_err());
    assert_eq!(bad.batches(2, &Normalize::unit()).count(), 0);
    assert!(bad.u8_batches(2).is_none());
    assert!(bad.to_f32(&Normalize::unit()).is_empty());
    assert!(bad.image_u8(usize::MAX).is_none());
    let mut out = [0f32; 2];
    assert!(!bad.image_f32_into(0, &Normalize::unit(), &mut out));
    let huge = Dataset { shape: [usize::MAX, usize::MAX, 2, 2], ..bad };
    assert!(huge.validate().is_err());
    assert_eq!(huge.image_len(), usize::MAX);
    assert!(huge.subset(0, 1).is_err());
}
