//! Where frames come from: the [`FrameSource`] abstraction and its SPI implementation.

use embedded_hal::digital::InputPin;
use embedded_hal::spi::{Operation, SpiDevice};

/// A camera-like sensor delivering fixed-size frames.
pub trait FrameSource {
    /// Error of the underlying bus or pins.
    type Error;
    /// Whether a new frame is ready to be read (non-blocking).
    fn frame_ready(&mut self) -> Result<bool, Self::Error>;
    /// Read the frame into `frame` (its length is the frame size).
    fn read_frame(&mut self, frame: &mut [u8]) -> Result<(), Self::Error>;
}

/// Command byte that starts a frame read-out (sent before the pixels are clocked in).
pub const READ_FRAME: u8 = 0x3C;

/// How the data-ready line signals a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// A frame is ready while the line is high (the sensor lowers it once the frame is read).
    Level,
    /// A frame is ready when the line has gone from low to high since the previous poll (the
    /// line may stay high, e.g. a strobe held by the sensor for a fixed time).
    RisingEdge,
}

/// Error of [`SpiSensor`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SensorError<S, P> {
    /// The SPI transfer failed.
    Spi(S),
    /// Reading the data-ready pin failed.
    Ready(P),
}

/// A sensor on an SPI bus with a data-ready line: a frame is read as one transaction, the
/// [`READ_FRAME`] command byte followed by the frame's bytes.
#[derive(Debug)]
pub struct SpiSensor<SPI, RDY> {
    spi: SPI,
    ready: RDY,
    trigger: Trigger,
    /// Level of the data-ready line at the previous poll (for [`Trigger::RisingEdge`]); `true`
    /// at start, so a line already high at power-up is not taken for a fresh frame.
    was_high: bool,
}

impl<SPI, RDY> SpiSensor<SPI, RDY> {
    /// A sensor on `spi` signalling frames on `ready`.
    pub fn new(spi: SPI, ready: RDY, trigger: Trigger) -> Self {
        SpiSensor { spi, ready, trigger, was_high: true }
    }

    /// Give back the bus device and the pin.
    pub fn release(self) -> (SPI, RDY) {
        (self.spi, self.ready)
    }
}

impl<SPI: SpiDevice<u8>, RDY: InputPin> FrameSource for SpiSensor<SPI, RDY> {
    type Error = SensorError<SPI::Error, RDY::Error>;

    fn frame_ready(&mut self) -> Result<bool, Self::Error> {
        let high = self.ready.is_high().map_err(SensorError::Ready)?;
        let ready = match self.trigger {
            Trigger::Level => high,
            Trigger::RisingEdge => high && !self.was_high,
        };
        self.was_high = high;
        Ok(ready)
    }

    fn read_frame(&mut self, frame: &mut [u8]) -> Result<(), Self::Error> {
        self.spi.transaction(&mut [Operation::Write(&[READ_FRAME]), Operation::Read(frame)]).map_err(SensorError::Spi)
    }
}
