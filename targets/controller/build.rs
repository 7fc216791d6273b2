//! Chooses the model the controller embeds and, for the thumbv7em firmware, the linker script.
//!
//! `TEMPER_CONTROLLER_MODEL=/abs/path/model.tmf` replaces the checked-in
//! `model/defect8x8.tmf` (a relative path is taken from this package's directory).

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-env-changed=TEMPER_CONTROLLER_MODEL");
    let model = match std::env::var_os("TEMPER_CONTROLLER_MODEL") {
        Some(p) => dir.join(p),
        None => dir.join("model/defect8x8.tmf"),
    };
    assert!(model.is_file(), "TEMPER_CONTROLLER_MODEL: {} is not a file", model.display());
    println!("cargo:rerun-if-changed={}", model.display());
    println!("cargo:rustc-env=TEMPER_CONTROLLER_MODEL_PATH={}", model.display());

    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("thumb") && std::env::var_os("CARGO_FEATURE_FIRMWARE").is_some() {
        let script = dir.join("firmware.ld");
        println!("cargo:rerun-if-changed={}", script.display());
        println!("cargo:rustc-link-arg-bin=controller-fw=-T{}", script.display());
        println!("cargo:rustc-link-arg-bin=controller-fw=--nmagic");
    }
}
