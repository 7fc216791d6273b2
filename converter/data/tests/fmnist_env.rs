//! `fashion-mnist:*` specs against a synthetic directory chosen with
//! `TEMPER_FMNIST_DIR`. Its own test binary, so setting the variable cannot
//! race with other tests.

mod common;

use temper_data::error::ErrorKind;
use temper_data::idx::idx_u8_bytes;
use temper_data::load_dataset;

#[test]
fn fashion_mnist_dir_override_and_splits() {
    let dir = common::TempDir::new("fmnist-env");
    let write = |name: &str, dims: &[usize], data: &[u8]| {
        std::fs::write(dir.join(name), common::gzip(&idx_u8_bytes(dims, data).unwrap())).unwrap();
    };
    let n_train = 5007;
    let train_px: Vec<u8> = (0..n_train * 4).map(|i| (i / 4 % 256) as u8).collect();
    let train_lab: Vec<u8> = (0..n_train).map(|i| (i % 10) as u8).collect();
    write("train-images-idx3-ubyte.gz", &[n_train, 2, 2], &train_px);
    write("train-labels-idx1-ubyte.gz", &[n_train], &train_lab);
    write("t10k-images-idx3-ubyte.gz", &[3, 2, 2], &[7; 12]);
    write("t10k-labels-idx1-ubyte.gz", &[3], &[9, 0, 1]);
    std::env::set_var("TEMPER_FMNIST_DIR", dir.path());

    let test = load_dataset("fashion-mnist:test").unwrap();
    assert_eq!((test.shape, test.labels.clone()), ([3, 1, 2, 2], vec![9, 0, 1]));
    assert_eq!(test.class_names[9], "Ankle boot");
    let train = load_dataset("fashion-mnist:train").unwrap();
    assert_eq!(train.len(), 7);
    let val = load_dataset("fashion-mnist:val").unwrap();
    assert_eq!(val.len(), 5000);
    assert_eq!(val.labels[0], 7, "val starts right after train");
    assert_eq!(val.image_u8(0).unwrap(), &[7, 7, 7, 7]);
    assert_eq!(load_dataset("fashion-mnist:val:10").unwrap().len(), 10);

    // Labels >= 10 are rejected, naming the file and index.
    write("t10k-labels-idx1-ubyte.gz", &[3], &[9, 10, 1]);
    let e = load_dataset("fashion-mnist:test").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::LabelOutOfRange { index: 1, label: 10, num_classes: 10 }), "{e}");
    assert!(e.to_string().contains("t10k-labels-idx1-ubyte.gz"), "{e}");

    // Missing files: a hint, not just ENOENT.
    std::env::set_var("TEMPER_FMNIST_DIR", dir.join("nope"));
    let e = load_dataset("fashion-mnist:test").unwrap_err();
    assert!(e.to_string().contains("dataset-fashion-mnist") && e.to_string().contains("TEMPER_FMNIST_DIR"), "{e}");
    std::env::remove_var("TEMPER_FMNIST_DIR");
}
