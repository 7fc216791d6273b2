//! Fuzz the `temper pipeline` config-file parser (`key = value` lines, `[fallback]` sections):
//! errors, never panics, also when the fallbacks are expanded into attempts and checked.
#![no_main]
use libfuzzer_sys::fuzz_target;
use temper_converter::pipeline::PipelineConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut cfg = PipelineConfig::default();
    if cfg.apply_text(text, "fuzz.toml").is_ok() {
        let _ = cfg.check();
        let _ = cfg.attempts();
    }
});
