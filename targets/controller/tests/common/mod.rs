//! The defect model's generator, and mock embedded-hal peripherals.

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use temper_runtime::kernels::QParams;
use temper_runtime::writer::{clamp_range, Builder, QWeights, Window};

/// Frame side.
pub const SIDE: usize = 8;
/// Input quantization: pixel `p` is `p - 128` exactly (x = p / 255).
pub const IN_Q: QParams = QParams { scale: 1.0 / 255.0, zero_point: -128 };
/// Spot filter outputs, `[0, 1]`.
pub const SPOT_Q: QParams = QParams { scale: 1.0 / 254.0, zero_point: -128 };
/// Class scores, `[-0.5, 2.05]`.
pub const SCORE_Q: QParams = QParams { scale: 0.01, zero_point: -78 };
/// The ok score's bias: a spot must be stronger than about 0.08 (20 grey levels) to win.
pub const OK_BIAS: f32 = 0.1;

/// The checked-in `model/defect8x8.tmf` (with `pixels`), or the same network taking only
/// quantized/float input (without).
///
/// frame `[1, 8, 8, 1]` (x = pixel / 255) → 3×3 valid conv, 2 filters + ReLU: bright spot
/// `x_c − mean(neighbours)`, dark spot `mean(neighbours) − x_c` → `[1, 6, 6, 2]` → max pool 6×6
/// (global) → `[1, 2]` → dense: ok = 0.1 − 0.25·(bright + dark), defect = bright + dark.
pub fn defect_model(pixels: bool) -> Vec<u8> {
    let mut b = Builder::new("defect8x8");
    let x = b.activation("frame", &[1, SIDE, SIDE, 1], IN_Q);
    if pixels {
        b.pixel_input(x, 1.0 / 255.0, &[0.0], &[1.0]);
    } else {
        b.input(x);
    }
    let c = b.activation("spots", &[1, 6, 6, 2], SPOT_Q);
    // [O][KH][KW][C]: centre ±1, neighbours ∓1/8, per-channel scale 1/127.
    let w: Vec<i8> = (0..18).map(|i| if i % 9 == 4 { 127 } else { -16 } * if i < 9 { 1 } else { -1 }).collect();
    let ws = [1.0 / 127.0; 2];
    b.conv2d(
        "spot",
        x,
        c,
        Window::square(3, 1, 0),
        1,
        QWeights { data: &w, scales: &ws, bias: &[0, 0] },
        clamp_range(Some(0.0), None, SPOT_Q),
    )
    .unwrap();
    let p = b.activation("strongest", &[1, 1, 1, 2], SPOT_Q);
    b.max_pool("global_max", c, p, Window::square(6, 6, 0), (-128, 127));
    let f = b.activation("features", &[1, 2], SPOT_Q);
    b.reshape("flatten", p, f);
    let y = b.activation("scores", &[1, 2], SCORE_Q);
    let fw = [-127i8, -127, 127, 127];
    let fs = [0.25 / 127.0, 1.0 / 127.0];
    let ok_bias = (OK_BIAS as f64 / (SPOT_Q.scale as f64 * fs[0] as f64)).round() as i32;
    b.fully_connected("classify", f, y, QWeights { data: &fw, scales: &fs, bias: &[ok_bias, 0] }, (-128, 127)).unwrap();
    b.output(y);
    b.meta("labels", "ok,defect");
    b.meta("description", "isolated bright or dark pixel (> ~20 grey levels) in the inner 6x6 of an 8x8 frame");
    b.finish().unwrap()
}

/// A uniform frame.
pub fn uniform(level: u8) -> Vec<u8> {
    vec![level; SIDE * SIDE]
}

/// `base` with pixel (row, col) set to `value`.
pub fn with_spot(mut frame: Vec<u8>, row: usize, col: usize, value: u8) -> Vec<u8> {
    frame[row * SIDE + col] = value;
    frame
}

// ---------------------------------------------------------------- mocks

/// Failure of a mock peripheral.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MockError;

impl embedded_hal::digital::Error for MockError {
    fn kind(&self) -> embedded_hal::digital::ErrorKind {
        embedded_hal::digital::ErrorKind::Other
    }
}

impl embedded_hal::spi::Error for MockError {
    fn kind(&self) -> embedded_hal::spi::ErrorKind {
        embedded_hal::spi::ErrorKind::Other
    }
}

/// The state of the simulated bench, shared by the mocks and the test.
#[derive(Debug, Default)]
pub struct Bench {
    /// Scripted levels of the data-ready line, one per read; `idle_level` when exhausted.
    pub ready: VecDeque<bool>,
    /// Level of the data-ready line once the script is exhausted.
    pub idle_level: bool,
    /// Frames the sensor will send, in order.
    pub frames: VecDeque<Vec<u8>>,
    /// Bytes written by each SPI transaction.
    pub commands: Vec<Vec<u8>>,
    /// Every level driven on the reject pin, in order.
    pub reject: Vec<bool>,
    /// Make the next SPI transaction fail.
    pub fail_spi: bool,
    /// Make the next data-ready read fail.
    pub fail_ready: bool,
    /// Make the next reject pin write fail.
    pub fail_reject: bool,
}

/// Shared handle to the bench.
pub type Shared = Rc<RefCell<Bench>>;

/// A new bench.
pub fn bench() -> Shared {
    Rc::new(RefCell::new(Bench::default()))
}

/// The data-ready input.
#[derive(Debug)]
pub struct ReadyPin(pub Shared);

impl embedded_hal::digital::ErrorType for ReadyPin {
    type Error = MockError;
}

impl embedded_hal::digital::InputPin for ReadyPin {
    fn is_high(&mut self) -> Result<bool, MockError> {
        let mut b = self.0.borrow_mut();
        if std::mem::take(&mut b.fail_ready) {
            return Err(MockError);
        }
        let idle = b.idle_level;
        Ok(b.ready.pop_front().unwrap_or(idle))
    }
    fn is_low(&mut self) -> Result<bool, MockError> {
        self.is_high().map(|h| !h)
    }
}

/// The reject output.
#[derive(Debug)]
pub struct RejectPin(pub Shared);

impl embedded_hal::digital::ErrorType for RejectPin {
    type Error = MockError;
}

impl embedded_hal::digital::OutputPin for RejectPin {
    fn set_low(&mut self) -> Result<(), MockError> {
        self.set(false)
    }
    fn set_high(&mut self) -> Result<(), MockError> {
        self.set(true)
    }
}

impl RejectPin {
    fn set(&mut self, level: bool) -> Result<(), MockError> {
        let mut b = self.0.borrow_mut();
        if std::mem::take(&mut b.fail_reject) {
            return Err(MockError);
        }
        b.reject.push(level);
        Ok(())
    }
}

/// The sensor's SPI device: records written bytes, answers reads with the next frame.
#[derive(Debug)]
pub struct SensorSpi(pub Shared);

impl embedded_hal::spi::ErrorType for SensorSpi {
    type Error = MockError;
}

impl embedded_hal::spi::SpiDevice<u8> for SensorSpi {
    fn transaction(&mut self, operations: &mut [embedded_hal::spi::Operation<'_, u8>]) -> Result<(), MockError> {
        use embedded_hal::spi::Operation;
        let mut b = self.0.borrow_mut();
        if std::mem::take(&mut b.fail_spi) {
            return Err(MockError);
        }
        let mut written = Vec::new();
        for op in operations {
            match op {
                Operation::Write(bytes) => written.extend_from_slice(bytes),
                Operation::Read(buf) => {
                    let frame = b.frames.pop_front().expect("the test scripted no frame for this read");
                    assert_eq!(frame.len(), buf.len(), "frame length");
                    buf.copy_from_slice(&frame);
                }
                other => panic!("unexpected SPI operation {other:?}"),
            }
        }
        b.commands.push(written);
        Ok(())
    }
}
