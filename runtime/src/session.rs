//! Heap-free execution of a validated model in a caller-given arena.

use crate::error::RunError;
use crate::format::InputKind;
use crate::model::{Model, TensorView};
use crate::ops::Exec;
use temper_kernels::dispatch::{self, Kernels};
use temper_kernels::reference as r;
use temper_kernels::requant;

/// One inference context: a model, an arena, and the kernel table chosen at creation.
///
/// `run` performs no heap allocation. A `Model` can be shared by many sessions on many threads
/// (it is `Sync`); each session owns its arena.
pub struct Session<'m, 'a> {
    model: &'m Model<'m>,
    arena: &'a mut [u8],
    kernels: &'static Kernels,
    inputs_set: u64,
    #[cfg(feature = "std")]
    threads: Option<crate::threads::Threads>,
}

impl core::fmt::Debug for Session<'_, '_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "Session(model {:?}, arena {} bytes, kernels {}, threads {})",
            self.model.name(),
            self.arena.len(),
            self.kernels.level,
            self.threads()
        )
    }
}

fn i8s(b: &[u8]) -> &[i8] {
    bytemuck::cast_slice(b)
}
fn i8s_mut(b: &mut [u8]) -> &mut [i8] {
    bytemuck::cast_slice_mut(b)
}

impl<'m, 'a> Session<'m, 'a> {
    /// Create a session with the best kernels for this CPU (honouring `TEMPER_KERNELS` under std).
    pub fn new(model: &'m Model<'m>, arena: &'a mut [u8]) -> Result<Self, RunError> {
        Self::with_kernels(model, arena, dispatch::detect())
    }

    /// Create a session with an explicit kernel table (tests, benchmarks, forced levels).
    pub fn with_kernels(model: &'m Model<'m>, arena: &'a mut [u8], kernels: &'static Kernels) -> Result<Self, RunError> {
        if arena.len() < model.arena_size() {
            return Err(RunError::ArenaTooSmall { needed: model.arena_size(), given: arena.len() });
        }
        Ok(Session {
            model,
            arena,
            kernels,
            inputs_set: 0,
            #[cfg(feature = "std")]
            threads: None,
        })
    }

    /// Spread large layers over `threads` threads in all: this one and `threads − 1` workers,
    /// started here and stopped when the session is dropped; 0 or 1 (the default): this thread
    /// only. At most [`crate::threads::MAX_THREADS`]. Outputs are bit-identical whatever the
    /// count; layers too small to gain from it still run on one thread. Batch-1 latency is the
    /// target: parts are bands of output rows. Idle workers sleep (no spinning).
    ///
    /// # Errors
    /// [`RunError::ThreadsUnavailable`] when the operating system refuses to start the threads.
    #[cfg(feature = "std")]
    pub fn with_threads(mut self, threads: usize) -> Result<Self, RunError> {
        self.set_threads(threads)?;
        Ok(self)
    }

    /// [`Session::with_threads`] on an existing session (the previous workers are stopped
    /// first; the split threshold goes back to its default).
    ///
    /// # Errors
    /// [`RunError::ThreadsUnavailable`] (the session then runs on one thread).
    #[cfg(feature = "std")]
    pub fn set_threads(&mut self, threads: usize) -> Result<(), RunError> {
        self.threads = None;
        if threads >= 2 {
            let m = self.model;
            let scratch = (0..m.op_count()).map(|i| m.op(i).scratch_len).max().unwrap_or(0);
            self.threads = Some(crate::threads::Threads::new(threads, scratch).map_err(|_| RunError::ThreadsUnavailable { threads })?);
        }
        Ok(())
    }

    /// Split layers only into parts of at least `macs` multiply-accumulates each (default
    /// [`crate::threads::MIN_WORK_PER_PART`]; 1 splits every splittable layer, as tests do).
    /// No effect without [`Session::with_threads`].
    #[cfg(feature = "std")]
    pub fn set_min_work_per_part(&mut self, macs: usize) {
        if let Some(t) = self.threads.as_mut() {
            t.min_work = macs.max(1);
        }
    }

    /// Threads this session runs on (1 unless [`Session::with_threads`] asked for more).
    pub fn threads(&self) -> usize {
        #[cfg(feature = "std")]
        if let Some(t) = &self.threads {
            return t.count();
        }
        1
    }

    /// The kernel table in use.
    pub fn kernels(&self) -> &'static Kernels {
        self.kernels
    }

    /// The model.
    pub fn model(&self) -> &'m Model<'m> {
        self.model
    }

    fn input_view(&self, index: usize) -> Result<TensorView<'m>, RunError> {
        let id = *self.model.graph_inputs().get(index).ok_or(RunError::NoSuchTensor { index })?;
        Ok(self.model.tensor(id))
    }

    fn output_view(&self, index: usize) -> Result<TensorView<'m>, RunError> {
        let id = *self.model.graph_outputs().get(index).ok_or(RunError::NoSuchTensor { index })?;
        Ok(self.model.tensor(id))
    }

    fn input_slot(&mut self, index: usize, n: usize) -> Result<&mut [i8], RunError> {
        let t = self.input_view(index)?;
        if n != t.numel() {
            return Err(RunError::WrongLength { expected: t.numel(), given: n });
        }
        if index < 64 {
            self.inputs_set |= 1 << index;
        }
        Ok(i8s_mut(&mut self.arena[t.offset..t.offset + t.len]))
    }

    /// Set graph input `index` from already-quantized int8 values (NHWC for 4-D inputs).
    pub fn set_input_i8(&mut self, index: usize, data: &[i8]) -> Result<(), RunError> {
        self.input_slot(index, data.len())?.copy_from_slice(data);
        Ok(())
    }

    /// Set graph input `index` from real values, quantized with the input's scale and zero point.
    ///
    /// NaN and ±Inf are rejected with [`RunError::NonFinite`] (naming the first one) and the
    /// input is left unset; [`Session::set_input_f32_saturating`] accepts them.
    pub fn set_input_f32(&mut self, index: usize, data: &[f32]) -> Result<(), RunError> {
        self.input_view(index)?;
        if let Some(element) = data.iter().position(|v| !v.is_finite()) {
            return Err(RunError::NonFinite { index, element });
        }
        self.set_input_f32_saturating(index, data)
    }

    /// [`Session::set_input_f32`] accepting non-finite values: ±Inf saturate to the int8
    /// range's ends, NaN quantizes as 0.0 (the zero point).
    pub fn set_input_f32_saturating(&mut self, index: usize, data: &[f32]) -> Result<(), RunError> {
        let t = self.input_view(index)?;
        let dst = self.input_slot(index, data.len())?;
        r::quantize::quantize_f32(data, t.scale, t.zero_point, dst);
        Ok(())
    }

    /// Set graph input `index` from raw u8 pixels (NHWC), applying the normalization folded into
    /// the model (`(pixel · pixel_scale − mean[c]) / std[c]`, then quantization).
    pub fn set_input_u8(&mut self, index: usize, pixels: &[u8]) -> Result<(), RunError> {
        let t = self.input_view(index)?;
        let rec = match self.model.input_record(t.id) {
            Some(rec) if rec.kind == InputKind::Pixels as u32 => *rec,
            _ => return Err(RunError::NotPixelInput { index }),
        };
        let c = rec.channels as usize;
        let mut luts = [[0i8; 256]; 4];
        for (ch, lut) in luts.iter_mut().enumerate().take(c) {
            for (p, v) in lut.iter_mut().enumerate() {
                let x = (p as f32 * rec.pixel_scale - rec.mean[ch]) / rec.std[ch];
                *v = requant::quantize_f32(x, t.scale, t.zero_point);
            }
        }
        let dst = self.input_slot(index, pixels.len())?;
        r::quantize::map_u8(pixels, &luts[..c], c, dst);
        Ok(())
    }

    /// Quantized output `index` (valid after `run`).
    pub fn output_i8(&self, index: usize) -> Result<&[i8], RunError> {
        let t = self.output_view(index)?;
        Ok(i8s(&self.arena[t.offset..t.offset + t.len]))
    }

    /// Dequantized output `index` written into `out` (valid after `run`).
    pub fn output_f32(&self, index: usize, out: &mut [f32]) -> Result<(), RunError> {
        let t = self.output_view(index)?;
        if out.len() != t.numel() {
            return Err(RunError::WrongLength { expected: t.numel(), given: out.len() });
        }
        r::quantize::dequantize(i8s(&self.arena[t.offset..t.offset + t.len]), t.scale, t.zero_point, out);
        Ok(())
    }

    /// Run every op in order. No heap allocation.
    pub fn run(&mut self) -> Result<(), RunError> {
        let n_in = self.model.graph_inputs().len();
        for i in 0..n_in.min(64) {
            if self.inputs_set & (1 << i) == 0 {
                return Err(RunError::InputNotSet { index: i });
            }
        }
        for i in 0..self.model.op_count() {
            self.run_op(i);
        }
        Ok(())
    }

    /// Run op `index` alone (per-op profiling): ops read what earlier ops wrote, so call it for
    /// `0..op_count()` in order after the inputs are set. Out-of-range indices do nothing.
    pub fn run_single(&mut self, index: usize) {
        if index < self.model.op_count() {
            self.run_op(index);
        }
    }

    fn run_op(&mut self, index: usize) {
        let m = self.model;
        let op = m.op(index);
        let mut e = Exec {
            m,
            op,
            k: self.kernels,
            arena: &mut *self.arena,
            #[cfg(feature = "std")]
            threads: self.threads.as_mut(),
        };
        (op.code.def().run)(&mut e);
    }
}
