//! An example `no_std` inspection controller on temper: a sensor signals a new frame on a
//! data-ready pin, the frame is read over SPI into a buffer, an embedded `.tmf` model classifies
//! it in a statically sized arena, and a reject output is driven when the defect class wins.
//!
//! - [`FrameSource`] abstracts the sensor; [`SpiSensor`] implements it over an `embedded-hal` 1.0
//!   [`SpiDevice`](embedded_hal::spi::SpiDevice) and a data-ready
//!   [`InputPin`](embedded_hal::digital::InputPin).
//! - [`Controller`] owns the session, the sensor and the reject
//!   [`OutputPin`](embedded_hal::digital::OutputPin), and counts inferences and rejects
//!   ([`Stats`]). Its logic is plain `no_std` Rust, tested on the host with mock pins and a mock
//!   SPI device (`tests/controller.rs`).
//! - [`MODEL`] is the model embedded with [`AlignedBytes`] and `include_bytes!`;
//!   [`ARENA_SIZE`] and [`FRAME_LEN`] are read from its bytes at compile time ([`plan`]), so
//!   the arena and the frame buffer are fixed-size arrays: no heap, no `static mut`, and no
//!   `unsafe` in this library (`#![forbid(unsafe_code)]`).
//!
//! The checked-in model `model/defect8x8.tmf` is a tiny hand-weighted defect detector over 8×8
//! grey frames (a 3×3 spot filter, bright and dark, over the inner 6×6 pixels, global max pool,
//! a 2-class dense layer; labels `ok,defect`): it flags an isolated pixel that differs from its
//! neighbourhood by more than about 20 grey levels. `tests/model_file.rs` regenerates it with
//! the writer and checks the file is up to date.
//!
//! # Using a real model
//!
//! Build with `TEMPER_CONTROLLER_MODEL=/abs/path/to/model.tmf` (read by `build.rs`), or replace
//! `model/defect8x8.tmf`. The model needs one graph input that accepts raw u8 pixels (convert it
//! with the converter's pixel normalization) — the frame length becomes that input's element
//! count — and a first output with one score per class. The defect class is taken from the
//! `labels` metadata (a class named `defect`, see [`defect_class`]) or given explicitly.
//!
//! The firmware binary `controller-fw` (feature `firmware`, thumbv7em-none-eabihf only) wires
//! this to a simulated board; replace its `board` module with your HAL's SPI and GPIO types.
//! With the feature `selftest` it runs the [`selftest`] sequence instead and prints the
//! transcript through semihosting: `run_firmware_qemu.sh` boots it on an emulated Cortex-M4F
//! (QEMU `netduinoplus2`, an STM32F405) and compares the transcript with the host's.
#![no_std]
#![forbid(unsafe_code)]

pub mod controller;
pub mod plan;
pub mod selftest;
pub mod sensor;

pub use controller::{defect_class, Controller, Error, Inspection, SetupError, Stats};
pub use sensor::{FrameSource, SensorError, SpiSensor, Trigger, READ_FRAME};
pub use temper_runtime::AlignedBytes;

/// The raw bytes of the embedded model, for compile-time evaluation only ([`plan`]).
const MODEL_RAW: &[u8] = include_bytes!(env!("TEMPER_CONTROLLER_MODEL_PATH"));

/// Length of the embedded model in bytes (flash it occupies).
pub const MODEL_LEN: usize = MODEL_RAW.len();

/// The embedded model, 64-byte aligned for zero-copy loading (it stays in flash).
pub static MODEL: AlignedBytes<[u8; MODEL_LEN]> = AlignedBytes(*include_bytes!(env!("TEMPER_CONTROLLER_MODEL_PATH")));

/// Arena bytes the embedded model's memory plan needs (from its header, at compile time).
pub const ARENA_SIZE: usize = plan::arena_size(MODEL_RAW);

/// Frame bytes: the element count of the embedded model's first input.
pub const FRAME_LEN: usize = plan::input_len(MODEL_RAW, 0);

/// Validate the embedded model (all of it, checksums included) and view it in place.
pub fn model() -> Result<temper_runtime::Model<'static>, temper_runtime::LoadError> {
    temper_runtime::Model::from_bytes(MODEL.as_bytes())
}
