//! The inspection loop: frame in, inference, reject pin out.

use crate::sensor::FrameSource;
use embedded_hal::digital::OutputPin;
use temper_runtime::{Model, RunError, Session};

/// Counters since start (wrapping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames classified.
    pub inferences: u32,
    /// Frames classified as defective (reject pin driven high).
    pub rejects: u32,
}

/// The result of one inspected frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// The winning class (highest score; the lowest index on a tie).
    pub class: usize,
    /// Its quantized score.
    pub score: i8,
    /// Whether the winning class is the defect class (the reject pin was driven high).
    pub defect: bool,
}

/// Why a controller cannot be set up for a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupError<PE> {
    /// The session cannot be created (arena too small).
    Run(RunError),
    /// The model's first input does not accept raw u8 pixels.
    NotPixelInput,
    /// The frame buffer's length is not the model input's element count.
    FrameLength {
        /// Input elements.
        expected: usize,
        /// Frame buffer bytes.
        given: usize,
    },
    /// The defect class index is not below the number of classes.
    DefectClass {
        /// Index given.
        class: usize,
        /// Classes of the model's first output.
        classes: usize,
    },
    /// Driving the reject pin low failed.
    Pin(PE),
}

/// An error while inspecting a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error<SE, PE> {
    /// The sensor failed.
    Sensor(SE),
    /// Driving the reject pin failed.
    Pin(PE),
    /// The runtime refused the frame (cannot happen after a successful setup).
    Run(RunError),
}

/// Index of the class named `name` in the model's `labels` metadata (comma-separated).
pub fn defect_class(model: &Model<'_>, name: &str) -> Option<usize> {
    model.meta("labels")?.split(',').position(|l| l.trim() == name)
}

/// The controller: a session over the model in a caller-given arena, a frame buffer, a sensor
/// and a reject output.
pub struct Controller<'m, 'a, S, P> {
    session: Session<'m, 'a>,
    frame: &'a mut [u8],
    source: S,
    reject: P,
    defect_class: usize,
    stats: Stats,
}

impl<S, P> core::fmt::Debug for Controller<'_, '_, S, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Controller({:?}, defect class {}, {:?})", self.session, self.defect_class, self.stats)
    }
}

impl<'m, 'a, S: FrameSource, P: OutputPin> Controller<'m, 'a, S, P> {
    /// Set up: `arena` needs `model.arena_size()` bytes and `frame` exactly the element count of
    /// the model's first input, which must accept raw u8 pixels. The reject pin is driven low.
    pub fn new(
        model: &'m Model<'m>,
        arena: &'a mut [u8],
        frame: &'a mut [u8],
        source: S,
        mut reject: P,
        defect_class: usize,
    ) -> Result<Self, SetupError<P::Error>> {
        let input = model.tensor(model.graph_inputs()[0]);
        if model.input_record(input.id).is_none_or(|r| r.kind != temper_runtime::format::InputKind::Pixels as u32) {
            return Err(SetupError::NotPixelInput);
        }
        if frame.len() != input.numel() {
            return Err(SetupError::FrameLength { expected: input.numel(), given: frame.len() });
        }
        let classes = model.tensor(model.graph_outputs()[0]).numel();
        if defect_class >= classes {
            return Err(SetupError::DefectClass { class: defect_class, classes });
        }
        let session = Session::new(model, arena).map_err(SetupError::Run)?;
        reject.set_low().map_err(SetupError::Pin)?;
        Ok(Controller { session, frame, source, reject, defect_class, stats: Stats::default() })
    }

    /// Inspect a frame if the sensor has one: read it, classify it, drive the reject pin (high
    /// for a defect, low otherwise). `Ok(None)` when no frame is ready. No allocation; on an
    /// error the counters and the pin are unchanged.
    pub fn poll(&mut self) -> Result<Option<Inspection>, Error<S::Error, P::Error>> {
        if !self.source.frame_ready().map_err(Error::Sensor)? {
            return Ok(None);
        }
        self.source.read_frame(self.frame).map_err(Error::Sensor)?;
        let inspection = self.classify()?;
        if inspection.defect {
            self.reject.set_high().map_err(Error::Pin)?;
            self.stats.rejects = self.stats.rejects.wrapping_add(1);
        } else {
            self.reject.set_low().map_err(Error::Pin)?;
        }
        self.stats.inferences = self.stats.inferences.wrapping_add(1);
        Ok(Some(inspection))
    }

    fn classify<SE, PE>(&mut self) -> Result<Inspection, Error<SE, PE>> {
        self.session.set_input_u8(0, self.frame).map_err(Error::Run)?;
        self.session.run().map_err(Error::Run)?;
        let scores = self.session.output_i8(0).map_err(Error::Run)?;
        // Quantized scores share one positive scale, so their order is the real scores' order.
        let (class, score) = scores.iter().enumerate().fold((0, i8::MIN), |best, (i, &s)| if s > best.1 { (i, s) } else { best });
        Ok(Inspection { class, score, defect: class == self.defect_class })
    }

    /// Counters since setup.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The quantized scores of every class for the last frame (all zero before the first).
    pub fn scores(&self) -> &[i8] {
        self.session.output_i8(0).unwrap_or(&[])
    }

    /// The last frame read.
    pub fn frame(&self) -> &[u8] {
        self.frame
    }

    /// Give back the sensor and the reject pin.
    pub fn release(self) -> (S, P) {
        (self.source, self.reject)
    }
}
