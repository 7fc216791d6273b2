//! Status codes, the per-thread last-error message, and the panic barrier every entry point
//! goes through.

use std::cell::RefCell;
use std::ffi::c_char;
use std::fmt::{self, Write as _};
use std::panic::{catch_unwind, AssertUnwindSafe};
use temper_runtime::{LoadError, LoadErrorKind, RunError};

/// Result of a C API call (`temper_status` in `temper.h`; the values must match).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemperStatus {
    /// Success.
    Ok = 0,
    /// A required pointer argument is NULL.
    NullPointer = 1,
    /// An argument is invalid (misaligned data pointer, length above `isize::MAX`, …).
    InvalidArgument = 2,
    /// The model file cannot be opened, read or mapped.
    Io = 3,
    /// No metadata entry with this key.
    NoSuchKey = 4,
    /// Model file: not a temper model, or truncated.
    ModelFormat = 10,
    /// Model file: unsupported version or flag.
    ModelVersion = 11,
    /// Model file: checksum mismatch.
    ModelChecksum = 12,
    /// Model bytes or a section misaligned.
    ModelAlignment = 13,
    /// Model file: out-of-bounds offset, length or count.
    ModelBounds = 14,
    /// Model file: invalid code, shape, parameter or quantization.
    ModelInvalid = 15,
    /// Model file: inconsistent memory plan.
    ModelPlan = 16,
    /// Arena smaller than the plan needs.
    ArenaTooSmall = 20,
    /// No graph input/output with this index.
    NoSuchTensor = 21,
    /// Element count differs from the tensor's.
    WrongLength = 22,
    /// The input takes no raw u8 pixels.
    NotPixelInput = 23,
    /// A graph input was not set before `temper_run`.
    InputNotSet = 24,
    /// The worker threads asked for could not be started.
    ThreadsUnavailable = 25,
    /// An f32 input holds NaN or infinity.
    NonFinite = 26,
    /// An allocation failed.
    OutOfMemory = 30,
    /// Internal error (a caught panic).
    Panic = 31,
    /// The session is in use by another thread, or the model/session to free is still in use.
    Busy = 32,
    /// A handle that was freed (double free, use after free) or never issued.
    InvalidHandle = 33,
}

impl TemperStatus {
    /// Every status, for the name table and the tests.
    pub const ALL: [TemperStatus; 23] = [
        TemperStatus::Ok,
        TemperStatus::NullPointer,
        TemperStatus::InvalidArgument,
        TemperStatus::Io,
        TemperStatus::NoSuchKey,
        TemperStatus::ModelFormat,
        TemperStatus::ModelVersion,
        TemperStatus::ModelChecksum,
        TemperStatus::ModelAlignment,
        TemperStatus::ModelBounds,
        TemperStatus::ModelInvalid,
        TemperStatus::ModelPlan,
        TemperStatus::ArenaTooSmall,
        TemperStatus::NoSuchTensor,
        TemperStatus::WrongLength,
        TemperStatus::NotPixelInput,
        TemperStatus::InputNotSet,
        TemperStatus::ThreadsUnavailable,
        TemperStatus::NonFinite,
        TemperStatus::OutOfMemory,
        TemperStatus::Panic,
        TemperStatus::Busy,
        TemperStatus::InvalidHandle,
    ];

    /// The C enumerator's name, NUL-terminated.
    pub const fn c_name(self) -> &'static std::ffi::CStr {
        match self {
            TemperStatus::Ok => c"TEMPER_OK",
            TemperStatus::NullPointer => c"TEMPER_ERROR_NULL_POINTER",
            TemperStatus::InvalidArgument => c"TEMPER_ERROR_INVALID_ARGUMENT",
            TemperStatus::Io => c"TEMPER_ERROR_IO",
            TemperStatus::NoSuchKey => c"TEMPER_ERROR_NO_SUCH_KEY",
            TemperStatus::ModelFormat => c"TEMPER_ERROR_MODEL_FORMAT",
            TemperStatus::ModelVersion => c"TEMPER_ERROR_MODEL_VERSION",
            TemperStatus::ModelChecksum => c"TEMPER_ERROR_MODEL_CHECKSUM",
            TemperStatus::ModelAlignment => c"TEMPER_ERROR_MODEL_ALIGNMENT",
            TemperStatus::ModelBounds => c"TEMPER_ERROR_MODEL_BOUNDS",
            TemperStatus::ModelInvalid => c"TEMPER_ERROR_MODEL_INVALID",
            TemperStatus::ModelPlan => c"TEMPER_ERROR_MODEL_PLAN",
            TemperStatus::ArenaTooSmall => c"TEMPER_ERROR_ARENA_TOO_SMALL",
            TemperStatus::NoSuchTensor => c"TEMPER_ERROR_NO_SUCH_TENSOR",
            TemperStatus::WrongLength => c"TEMPER_ERROR_WRONG_LENGTH",
            TemperStatus::NotPixelInput => c"TEMPER_ERROR_NOT_PIXEL_INPUT",
            TemperStatus::InputNotSet => c"TEMPER_ERROR_INPUT_NOT_SET",
            TemperStatus::ThreadsUnavailable => c"TEMPER_ERROR_THREADS_UNAVAILABLE",
            TemperStatus::NonFinite => c"TEMPER_ERROR_NON_FINITE",
            TemperStatus::OutOfMemory => c"TEMPER_ERROR_OUT_OF_MEMORY",
            TemperStatus::Panic => c"TEMPER_ERROR_PANIC",
            TemperStatus::Busy => c"TEMPER_ERROR_BUSY",
            TemperStatus::InvalidHandle => c"TEMPER_ERROR_INVALID_HANDLE",
        }
    }
}

/// An error of an entry point: its status and its message.
#[derive(Debug)]
pub(crate) enum Error {
    /// A NULL pointer for the named parameter.
    Null(&'static str),
    /// An invalid argument (message).
    Invalid(&'static str),
    /// The model file could not be opened or mapped (the runtime's message names the file).
    Open(temper_runtime::OpenError),
    /// The model is invalid.
    Load(LoadError),
    /// Session creation or inference failed.
    Run(RunError),
    /// No metadata entry with this key.
    NoSuchKey,
    /// Allocation failure of `what`.
    OutOfMemory(&'static str),
    /// The session panicked before and is unusable.
    Poisoned,
    /// The named kind of handle is in use (by another thread, or a model by its sessions).
    Busy(&'static str),
    /// A stale handle of the named kind (freed, or never issued).
    Stale(&'static str),
    /// No free slot in the handle table of the named kind.
    TableFull(&'static str),
}

impl Error {
    pub(crate) fn status(&self) -> TemperStatus {
        match self {
            Error::Null(_) => TemperStatus::NullPointer,
            Error::Invalid(_) => TemperStatus::InvalidArgument,
            Error::Open(temper_runtime::OpenError::Io(..)) => TemperStatus::Io,
            Error::Open(temper_runtime::OpenError::Load(_, e)) | Error::Load(e) => load_status(e.kind),
            Error::Run(e) => match e {
                RunError::ArenaTooSmall { .. } => TemperStatus::ArenaTooSmall,
                RunError::NoSuchTensor { .. } => TemperStatus::NoSuchTensor,
                RunError::WrongLength { .. } => TemperStatus::WrongLength,
                RunError::NotPixelInput { .. } => TemperStatus::NotPixelInput,
                RunError::InputNotSet { .. } => TemperStatus::InputNotSet,
                RunError::ThreadsUnavailable { .. } => TemperStatus::ThreadsUnavailable,
                RunError::NonFinite { .. } => TemperStatus::NonFinite,
            },
            Error::NoSuchKey => TemperStatus::NoSuchKey,
            Error::OutOfMemory(_) => TemperStatus::OutOfMemory,
            Error::Poisoned => TemperStatus::Panic,
            Error::Busy(_) => TemperStatus::Busy,
            Error::Stale(_) => TemperStatus::InvalidHandle,
            Error::TableFull(_) => TemperStatus::OutOfMemory,
        }
    }
}

fn load_status(kind: LoadErrorKind) -> TemperStatus {
    match kind {
        LoadErrorKind::Format => TemperStatus::ModelFormat,
        LoadErrorKind::Version => TemperStatus::ModelVersion,
        LoadErrorKind::Checksum => TemperStatus::ModelChecksum,
        LoadErrorKind::Alignment => TemperStatus::ModelAlignment,
        LoadErrorKind::Bounds => TemperStatus::ModelBounds,
        LoadErrorKind::Invalid => TemperStatus::ModelInvalid,
        LoadErrorKind::Plan => TemperStatus::ModelPlan,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Null(what) => write!(f, "{what} is NULL"),
            Error::Invalid(msg) => f.write_str(msg),
            Error::Open(e) => write!(f, "{e}"),
            Error::Load(e) => write!(f, "{e}"),
            Error::Run(e) => write!(f, "{e}"),
            Error::NoSuchKey => f.write_str("no metadata entry with this key"),
            Error::OutOfMemory(what) => write!(f, "out of memory allocating {what}"),
            Error::Poisoned => f.write_str("the session is unusable after an internal error; free it"),
            Error::Busy("model") => {
                f.write_str("the model is in use (sessions of it exist, or a call on it runs); free its sessions first")
            }
            Error::Busy(what) => write!(f, "the {what} is in use by another thread (one thread at a time)"),
            Error::Stale(what) => write!(f, "invalid {what} handle: already freed (double free or use after free) or never created"),
            Error::TableFull(what) => write!(f, "too many live {what}s (at most {} at a time)", crate::handle::SLOTS),
        }
    }
}

impl From<RunError> for Error {
    fn from(e: RunError) -> Self {
        Error::Run(e)
    }
}

impl From<LoadError> for Error {
    fn from(e: LoadError) -> Self {
        Error::Load(e)
    }
}

/// Capacity of the per-thread message buffer, NUL included.
pub(crate) const MESSAGE_CAP: usize = 1024;

thread_local! {
    /// The last error message of this thread, NUL-terminated. A fixed buffer: recording an
    /// error never allocates.
    static LAST_ERROR: RefCell<[u8; MESSAGE_CAP]> = const { RefCell::new([0; MESSAGE_CAP]) };
}

/// Writes into a fixed buffer, truncating at a character boundary, always leaving room for
/// the terminating NUL.
struct Truncating<'b> {
    buf: &'b mut [u8; MESSAGE_CAP],
    len: usize,
}

impl fmt::Write for Truncating<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = MESSAGE_CAP - 1 - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        // Interior NULs would cut the C string short; none occur in temper's messages, but a
        // path could in principle contain odd bytes after lossy conversion: replace them.
        for (dst, &b) in self.buf[self.len..self.len + n].iter_mut().zip(s.as_bytes()) {
            *dst = if b == 0 { b'?' } else { b };
        }
        self.len += n;
        Ok(())
    }
}

/// Record `msg` as this thread's last error message.
pub(crate) fn set_last_error(msg: fmt::Arguments<'_>) {
    LAST_ERROR.with(|cell| {
        if let Ok(mut buf) = cell.try_borrow_mut() {
            let mut w = Truncating { buf: &mut buf, len: 0 };
            let _ = w.write_fmt(msg);
            let len = w.len;
            buf[len] = 0;
        }
    });
}

/// Pointer to this thread's last error message (NUL-terminated, valid for the thread's life).
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|cell| cell.as_ptr() as *const c_char)
}

/// Run `f` behind the panic barrier: its error becomes a status plus the thread's message; a
/// panic becomes [`TemperStatus::Panic`] (and `on_panic` runs, e.g. to poison a session).
pub(crate) fn guard(f: impl FnOnce() -> Result<(), Error>, on_panic: impl FnOnce()) -> TemperStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => TemperStatus::Ok,
        Ok(Err(e)) => {
            set_last_error(format_args!("{e}"));
            e.status()
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            set_last_error(format_args!("internal error (panic): {what}"));
            // Dropping the payload could itself panic (a payload with a panicking Drop); keep
            // that from unwinding into C as well.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            // Poisoning must not unwind either.
            let _ = catch_unwind(AssertUnwindSafe(on_panic));
            TemperStatus::Panic
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> String {
        // SAFETY: `last_error_ptr` points to this thread's NUL-terminated buffer, and no Rust
        // borrow of it is active here.
        unsafe { CStr::from_ptr(last_error_ptr()) }.to_string_lossy().into_owned()
    }

    #[test]
    fn panics_become_a_status_and_a_message() {
        let mut poisoned = false;
        let s = guard(|| panic!("boom {}", 7), || poisoned = true);
        assert_eq!(s, TemperStatus::Panic);
        assert!(poisoned);
        assert_eq!(last(), "internal error (panic): boom 7");
        let s = guard(|| std::panic::panic_any(42u32), || {});
        assert_eq!(s, TemperStatus::Panic);
        assert_eq!(last(), "internal error (panic): (no message)");
    }

    #[test]
    fn errors_set_the_message_and_success_keeps_it() {
        assert_eq!(guard(|| Err(Error::Null("model")), || {}), TemperStatus::NullPointer);
        assert_eq!(last(), "model is NULL");
        assert_eq!(guard(|| Ok(()), || {}), TemperStatus::Ok);
        assert_eq!(last(), "model is NULL");
    }

    #[test]
    fn long_messages_are_truncated_on_a_char_boundary() {
        let long = "é".repeat(MESSAGE_CAP);
        set_last_error(format_args!("{long}"));
        let m = last();
        assert!(m.len() < MESSAGE_CAP && m.len() >= MESSAGE_CAP - 3, "{}", m.len());
        assert!(m.chars().all(|c| c == 'é'));
        set_last_error(format_args!("a\0b"));
        assert_eq!(last(), "a?b");
    }

    #[test]
    fn messages_are_per_thread() {
        set_last_error(format_args!("main thread"));
        std::thread::spawn(|| {
            assert_eq!(last(), "");
            set_last_error(format_args!("other thread"));
        })
        .join()
        .unwrap();
        assert_eq!(last(), "main thread");
    }

    #[test]
    fn every_status_has_a_distinct_name() {
        let names: std::collections::HashSet<_> = TemperStatus::ALL.iter().map(|s| s.c_name()).collect();
        assert_eq!(names.len(), TemperStatus::ALL.len());
    }
}
