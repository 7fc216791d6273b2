//! Fuzz the NPY, NPZ and IDX readers: errors, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = temper_data::npy::read_npy_bytes(data, "fuzz.npy");
    let _ = temper_data::npy::read_npz_bytes(data, "fuzz.npz");
    let _ = temper_data::idx::read_idx_bytes(data, "fuzz.idx");
});
