//! Fuzz the PNG and JPEG decoders of image folders: errors, never panics; a decoded image's
//! pixels match its stated size.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = temper_data::images::decode_image(data, "fuzz.img") {
        assert_eq!(img.data.len(), img.height * img.width * img.channels);
    }
});
