//! Fuzz the ONNX reader and import (with a fixed input shape): errors, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = temper_converter::onnx::import_bytes(data, None, Some(&[1, 1, 28, 28]), "fuzz.onnx");
});
