//! A deterministic self-test: a scripted sensor and a recording reject pin, so that the same
//! inspection sequence runs on the host and on the target — the firmware's `selftest` feature,
//! under QEMU (`run_firmware_qemu.sh`) — and the two transcripts can be compared line by line.
//!
//! Works with any model the controller accepts: frames are generated for the model's frame
//! length.

use crate::controller::{defect_class, Controller};
use crate::sensor::FrameSource;
use core::convert::Infallible;
use core::fmt::Write;
use temper_runtime::Model;

/// Frames in the self-test sequence.
pub const FRAMES: u32 = 48;

/// Self-test frame `i` of `out.len()` pixels: a uniform level, noise of growing amplitude, and
/// every third frame an isolated spot of random contrast and position.
pub fn frame(i: u32, out: &mut [u8]) {
    let mut s = (u64::from(i) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let base = (next() % 256) as i32;
    let amp = [0, 3, 8, 20][i as usize % 4];
    for p in out.iter_mut() {
        let noise = if amp == 0 { 0 } else { (next() % (2 * amp + 1)) as i32 - amp as i32 };
        *p = (base + noise).clamp(0, 255) as u8;
    }
    if i.is_multiple_of(3) && !out.is_empty() {
        let at = (next() % out.len() as u64) as usize;
        let contrast = 16 + (next() % 80) as i32;
        let v = if base > 127 { base - contrast } else { base + contrast };
        out[at] = v.clamp(0, 255) as u8;
    }
}

/// A sensor that delivers [`FRAMES`] self-test frames, one per poll.
#[derive(Clone, Copy, Debug, Default)]
pub struct Script {
    next: u32,
}

impl FrameSource for Script {
    type Error = Infallible;
    fn frame_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.next < FRAMES)
    }
    fn read_frame(&mut self, out: &mut [u8]) -> Result<(), Infallible> {
        frame(self.next, out);
        self.next += 1;
        Ok(())
    }
}

/// A reject output that records its level and counts rising edges.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pin {
    /// Current level.
    pub level: bool,
    /// Low-to-high transitions.
    pub rising_edges: u32,
}

impl embedded_hal::digital::ErrorType for Pin {
    type Error = Infallible;
}

impl embedded_hal::digital::OutputPin for Pin {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.level = false;
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        self.rising_edges += u32::from(!self.level);
        self.level = true;
        Ok(())
    }
}

/// Run the self-test sequence through a controller over `model` and write the transcript to
/// `out`: one line per frame (index, pixel sum, class, quantized score, decision, every class's
/// quantized score), then the
/// counters and the reject pin's rising edges. Returns whether the controller could be set up.
pub fn run<W: Write>(model: &Model<'_>, arena: &mut [u8], frame: &mut [u8], out: &mut W) -> Result<bool, core::fmt::Error> {
    let class = defect_class(model, "defect").unwrap_or(1);
    let mut c = match Controller::new(model, arena, frame, Script::default(), Pin::default(), class) {
        Ok(c) => c,
        Err(e) => {
            writeln!(out, "setup failed: {e:?}")?;
            return Ok(false);
        }
    };
    let mut i = 0;
    while let Ok(Some(r)) = c.poll() {
        let sum: u32 = c.frame().iter().map(|&p| u32::from(p)).sum();
        write!(out, "frame {i} sum {sum} class {} score {} defect {} scores", r.class, r.score, r.defect as u8)?;
        for s in c.scores() {
            write!(out, " {s}")?;
        }
        writeln!(out)?;
        i += 1;
    }
    let stats = c.stats();
    let (_, pin) = c.release();
    writeln!(out, "stats inferences {} rejects {} rising_edges {}", stats.inferences, stats.rejects, pin.rising_edges)?;
    Ok(true)
}
