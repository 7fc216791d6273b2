//! The checked-in model is what the generator makes, and the compile-time sizes match it.
//!
//! Regenerate it after changing the generator (or the writer's output) with
//! `TEMPER_CONTROLLER_REGENERATE=1 cargo test -p temper-controller --test model_file`: that run
//! writes the file and fails (so regeneration never passes as a test); rerun without the variable.
//! Under CI (or `TEMPER_REQUIRE=data`) regeneration is refused.

mod common;

use temper_controller::{plan, ARENA_SIZE, FRAME_LEN, MODEL, MODEL_LEN};
use temper_runtime::Model;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/model/defect8x8.tmf");

#[test]
fn checked_in_model_is_up_to_date() {
    let bytes = common::defect_model(true);
    if std::env::var_os("TEMPER_CONTROLLER_REGENERATE").is_some() {
        use temper_testkit::{required, required_in, Need};
        let ci = std::env::var("CI").ok();
        assert!(
            !required(Need::Data) && !required_in(None, ci.as_deref(), Need::Data),
            "TEMPER_CONTROLLER_REGENERATE is refused under CI / TEMPER_REQUIRE: the checked-in {PATH} must match the generator as it is"
        );
        std::fs::write(PATH, &bytes).unwrap();
        panic!("regenerated {PATH} ({} bytes); rerun without TEMPER_CONTROLLER_REGENERATE", bytes.len());
    }
    let on_disk = std::fs::read(PATH).unwrap();
    assert!(on_disk == bytes, "{PATH} is stale: rerun with TEMPER_CONTROLLER_REGENERATE=1");
}

#[test]
fn compile_time_sizes_match_the_validated_model() {
    let m = temper_controller::model().unwrap();
    assert_eq!(MODEL_LEN, m.bytes().len());
    assert_eq!(ARENA_SIZE, m.arena_size());
    assert_eq!(FRAME_LEN, m.tensor(m.graph_inputs()[0]).numel());
    assert_eq!(MODEL.as_bytes().as_ptr() as usize % 64, 0);
    // The same reader on other models.
    for bytes in [common::defect_model(false), common::defect_model(true)] {
        let buf = temper_runtime::writer::AlignedBuf::from_bytes(&bytes);
        let m = Model::from_bytes(buf.as_bytes()).unwrap();
        assert_eq!(plan::arena_size(&bytes), m.arena_size());
        assert_eq!(plan::input_len(&bytes, 0), 64);
    }
}

/// Prints the embedded model's arena and frame sizes for `size.sh` (`--ignored print_sizes`).
#[test]
#[ignore = "a helper of size.sh"]
fn print_sizes() {
    println!("SIZES {ARENA_SIZE} {FRAME_LEN}");
}
