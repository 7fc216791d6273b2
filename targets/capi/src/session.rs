//! `temper_session`: a runtime session over a `temper_model` and the caller's arena.

use crate::model::TemperModel;
use crate::status::Error;
use std::cell::Cell;
use std::ffi::CStr;
use temper_runtime::kernels::dispatch::Level;
use temper_runtime::Session;

/// The object behind a `temper_session *`.
pub struct TemperSession {
    /// The session. Its `'static` lifetimes are the C contract of `temper_session_create`: the
    /// model and the arena outlive the session, and nothing else touches the arena meanwhile.
    session: Session<'static, 'static>,
    /// Set when a call on this session panicked: its arena may be half-written, so every later
    /// call fails with `TEMPER_ERROR_PANIC`.
    poisoned: Cell<bool>,
    /// The handle of the model, pinned by this session until it is freed.
    model_handle: usize,
}

impl std::fmt::Debug for TemperSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TemperSession({:?}, poisoned {})", self.session, self.poisoned.get())
    }
}

// A session may move between threads (used by one at a time).
const _: () = {
    const fn movable<T: Send>() {}
    movable::<TemperSession>();
};

impl TemperSession {
    /// Create a session.
    ///
    /// # Safety
    /// `model` must outlive the session; `arena` must be valid for reads and writes of
    /// `arena_len` bytes, outlive the session, and not be accessed by anyone else meanwhile.
    pub(crate) unsafe fn create(
        model: &TemperModel,
        model_handle: usize,
        arena: *mut u8,
        arena_len: usize,
    ) -> Result<TemperSession, Error> {
        if arena_len > isize::MAX as usize {
            return Err(Error::Invalid("arena_len is larger than PTRDIFF_MAX"));
        }
        // SAFETY: the caller guarantees the model outlives the session.
        let model = unsafe { model.model_static() };
        if arena_len < model.arena_size() {
            // Checked before the arena is touched, so a failed call leaves it as it was.
            return Err(temper_runtime::RunError::ArenaTooSmall { needed: model.arena_size(), given: arena_len }.into());
        }
        // SAFETY: the caller guarantees `arena` is valid for writes of `arena_len` bytes. The
        // bytes may be uninitialized (fresh malloc): zeroing them first makes the `&mut [u8]`
        // below refer to initialized memory.
        unsafe { std::ptr::write_bytes(arena, 0, arena_len) };
        // SAFETY: valid, initialized, exclusively ours until the session is freed and longer
        // than the session lives (the caller's contract); `arena_len <= isize::MAX` (checked).
        let arena: &'static mut [u8] = unsafe { std::slice::from_raw_parts_mut(arena, arena_len) };
        let session = Session::new(model, arena)?;
        Ok(TemperSession { session, poisoned: Cell::new(false), model_handle })
    }

    /// The handle of the session's model.
    pub(crate) fn model_handle(&self) -> usize {
        self.model_handle
    }

    /// The session, unless poisoned.
    pub(crate) fn get(&self) -> Result<&Session<'static, 'static>, Error> {
        if self.poisoned.get() {
            return Err(Error::Poisoned);
        }
        Ok(&self.session)
    }

    /// The session, mutably, unless poisoned.
    pub(crate) fn get_mut(&mut self) -> Result<&mut Session<'static, 'static>, Error> {
        if self.poisoned.get() {
            return Err(Error::Poisoned);
        }
        Ok(&mut self.session)
    }

    /// Mark the session unusable (after a caught panic).
    pub(crate) fn poison(&self) {
        self.poisoned.set(true);
    }

    /// Element count of graph output `index`.
    pub(crate) fn output_numel(&self, index: usize) -> Result<usize, Error> {
        let m = self.session.model();
        let id = *m.graph_outputs().get(index).ok_or(temper_runtime::RunError::NoSuchTensor { index })?;
        Ok(m.tensor(id).numel())
    }

    /// Name of the kernel path, as a static C string.
    pub(crate) fn kernels_name(&self) -> &'static CStr {
        level_name(self.session.kernels().level)
    }
}

/// A kernel level's name as a static C string.
pub(crate) const fn level_name(level: Level) -> &'static CStr {
    match level {
        Level::Scalar => c"scalar",
        Level::Avx2 => c"avx2",
        Level::AvxVnni => c"avxvnni",
        Level::Avx512Vnni => c"avx512vnni",
        Level::Neon => c"neon",
        Level::NeonDot => c"dotprod",
        Level::NeonI8mm => c"i8mm",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_names_match_the_runtime() {
        for level in Level::ALL {
            assert_eq!(level_name(level).to_str().unwrap(), level.name());
        }
    }
}
