//! C API of the temper runtime: `libtemper_capi.a` / `libtemper_capi.so` with the hand-written
//! header `include/temper.h` (C99), which documents every function, ownership and thread
//! safety. This crate is only the FFI layer over `temper-runtime`:
//!
//! - Models ([`TemperModel`]) own a 64-byte aligned copy of the bytes, a read-only file mapping,
//!   or borrow the caller's bytes; they are immutable and shared freely between threads.
//! - Sessions ([`TemperSession`]) run a model in an arena the **caller** provides; setting
//!   inputs, running and reading outputs never allocate.
//! - Every entry point returns a [`TemperStatus`], records the runtime's error text (what and
//!   where) in a fixed per-thread buffer read with [`temper_last_error_message`], checks every
//!   pointer for NULL before use, and catches panics (`catch_unwind`) so none crosses into C.
//!
//! `unsafe` is confined to this crate's pointer handling; every block states why it is sound.
//! The C-visible functions are `unsafe extern "C" fn`s: their `# Safety` sections restate the
//! header's contract for Rust callers (the tests call them directly).

#![warn(missing_docs)]

mod model;
mod session;
mod status;

pub use model::{TemperModel, TensorInfo};
pub use session::TemperSession;
pub use status::TemperStatus;

use status::{guard, Error};
use std::ffi::{c_char, c_void, CStr};

/// ABI version (`TEMPER_ABI_VERSION` in `temper.h`).
pub const ABI_VERSION: u32 = 1;

// ---------------------------------------------------------------- pointer helpers

/// A shared reference from a possibly-NULL pointer.
///
/// # Safety
/// `p` is NULL or valid for reads of `T` for `'a`, with no writer meanwhile.
unsafe fn as_ref<'a, T>(p: *const T, what: &'static str) -> Result<&'a T, Error> {
    // SAFETY: forwarded from this function's contract; NULL is mapped to an error.
    unsafe { p.as_ref() }.ok_or(Error::Null(what))
}

/// An exclusive reference from a possibly-NULL pointer.
///
/// # Safety
/// `p` is NULL or valid for reads and writes of `T` for `'a`, with no other access meanwhile.
unsafe fn as_mut<'a, T>(p: *mut T, what: &'static str) -> Result<&'a mut T, Error> {
    // SAFETY: forwarded from this function's contract; NULL is mapped to an error.
    unsafe { p.as_mut() }.ok_or(Error::Null(what))
}

/// Checks of a C array argument: NULL, alignment, and a byte length within `isize::MAX`.
fn check_array<T>(p: *const T, count: usize, what: &'static str) -> Result<(), Error> {
    if p.is_null() {
        return Err(Error::Null(what));
    }
    if !p.is_aligned() {
        return Err(Error::Invalid("data pointer is not aligned for its element type"));
    }
    if count.checked_mul(size_of::<T>()).is_none_or(|b| b > isize::MAX as usize) {
        return Err(Error::Invalid("element count too large"));
    }
    Ok(())
}

/// A slice from a C array.
///
/// # Safety
/// `p` is NULL or valid for reads of `count` initialized `T` for `'a`, with no writer meanwhile.
unsafe fn as_slice<'a, T>(p: *const T, count: usize, what: &'static str) -> Result<&'a [T], Error> {
    check_array(p, count, what)?;
    // SAFETY: non-NULL, aligned, byte length <= isize::MAX (checked); readable and initialized
    // for `count` elements (the caller's contract).
    Ok(unsafe { std::slice::from_raw_parts(p, count) })
}

/// Write `value` to a possibly-NULL out-parameter (which may point to uninitialized memory).
///
/// # Safety
/// `p` is NULL or valid for writes of `T`.
unsafe fn write_out<T>(p: *mut T, value: T, what: &'static str) -> Result<(), Error> {
    if p.is_null() {
        return Err(Error::Null(what));
    }
    if !p.is_aligned() {
        return Err(Error::Invalid("out-parameter is not aligned for its type"));
    }
    // SAFETY: non-NULL and aligned (checked), valid for writes (the caller's contract); `write`
    // neither reads nor drops the old (possibly uninitialized) value.
    unsafe { p.write(value) };
    Ok(())
}

/// Box a value for C, reporting allocation failure instead of aborting where possible.
fn boxed<T>(value: T, what: &'static str) -> Result<*mut T, Error> {
    let mut v: Vec<T> = Vec::new();
    v.try_reserve_exact(1).map_err(|_| Error::OutOfMemory(what))?;
    v.push(value);
    let b: Box<[T]> = v.into_boxed_slice();
    Ok(Box::into_raw(b).cast::<T>())
}

/// Free a value made by [`boxed`].
///
/// # Safety
/// `p` came from [`boxed`] and is not used afterwards.
unsafe fn unbox<T>(p: *mut T) {
    // SAFETY: `boxed` made `p` from a `Box<[T]>` of length 1, whose layout equals `Box<T>`'s;
    // ownership returns here exactly once (the caller's contract).
    drop(unsafe { Box::from_raw(p) });
}

// ---------------------------------------------------------------- library

/// Library version, NUL-terminated (`temper_version`).
#[no_mangle]
pub extern "C" fn temper_version() -> *const c_char {
    const V: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => c"",
    };
    V.as_ptr()
}

/// ABI version (`temper_abi_version`).
#[no_mangle]
pub extern "C" fn temper_abi_version() -> u32 {
    ABI_VERSION
}

/// Name of a status code (`temper_status_name`). Takes the raw integer so that any value C
/// passes is defined behaviour.
#[no_mangle]
pub extern "C" fn temper_status_name(status: i32) -> *const c_char {
    TemperStatus::ALL.iter().find(|s| **s as i32 == status).map_or(c"unknown", |s| s.c_name()).as_ptr()
}

/// This thread's last error message (`temper_last_error_message`).
#[no_mangle]
pub extern "C" fn temper_last_error_message() -> *const c_char {
    status::last_error_ptr()
}

// ---------------------------------------------------------------- models

/// Load a model from memory, copying it (`temper_model_load_memory`).
///
/// # Safety
/// `data` is NULL or valid for reads of `len` bytes; `out_model` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn temper_model_load_memory(data: *const u8, len: usize, out_model: *mut *mut TemperModel) -> TemperStatus {
    guard(
        || {
            // SAFETY: the caller's contract: `data` readable for `len` bytes.
            let bytes = unsafe { as_slice(data, len, "data") }?;
            let model = TemperModel::copy_from(bytes)?;
            let p = boxed(model, "the model")?;
            // SAFETY: the caller's contract: `out_model` writable. On failure `p` is freed.
            unsafe { write_out(out_model, p, "out_model") }.inspect_err(|_| {
                // SAFETY: `p` came from `boxed` and was never handed out.
                unsafe { unbox(p) }
            })
        },
        || {},
    )
}

/// Load a model from memory without copying (`temper_model_load_memory_nocopy`).
///
/// # Safety
/// `data` is NULL or valid for reads of `len` bytes that stay valid and unmodified until the
/// model is freed; `out_model` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn temper_model_load_memory_nocopy(data: *const u8, len: usize, out_model: *mut *mut TemperModel) -> TemperStatus {
    guard(
        || {
            // SAFETY: the caller's contract: `data` readable for `len` bytes.
            let bytes = unsafe { as_slice(data, len, "data") }?;
            // SAFETY: the caller's contract: the bytes outlive the model and are not modified.
            let model = unsafe { TemperModel::borrow(bytes) }?;
            let p = boxed(model, "the model")?;
            // SAFETY: the caller's contract: `out_model` writable. On failure `p` is freed.
            unsafe { write_out(out_model, p, "out_model") }.inspect_err(|_| {
                // SAFETY: `p` came from `boxed` and was never handed out.
                unsafe { unbox(p) }
            })
        },
        || {},
    )
}

/// Map and load a model file (`temper_model_load_path`).
///
/// # Safety
/// `path` is NULL or a valid NUL-terminated string; `out_model` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn temper_model_load_path(path: *const c_char, out_model: *mut *mut TemperModel) -> TemperStatus {
    guard(
        || {
            if path.is_null() {
                return Err(Error::Null("path"));
            }
            // SAFETY: non-NULL (checked) and NUL-terminated (the caller's contract).
            let path = unsafe { CStr::from_ptr(path) };
            #[cfg(unix)]
            let path: &std::path::Path = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(path.to_bytes()).as_ref();
            #[cfg(not(unix))]
            let path: &std::path::Path = path.to_str().map_err(|_| Error::Invalid("path is not UTF-8"))?.as_ref();
            let model = TemperModel::open(path)?;
            let p = boxed(model, "the model")?;
            // SAFETY: the caller's contract: `out_model` writable. On failure `p` is freed.
            unsafe { write_out(out_model, p, "out_model") }.inspect_err(|_| {
                // SAFETY: `p` came from `boxed` and was never handed out.
                unsafe { unbox(p) }
            })
        },
        || {},
    )
}

/// Free a model (`temper_model_free`).
///
/// # Safety
/// `model` is NULL or a model from a `temper_model_load_*` function, not freed before, with no
/// session of it left.
#[no_mangle]
pub unsafe extern "C" fn temper_model_free(model: *mut TemperModel) {
    if model.is_null() {
        return;
    }
    let _ = guard(
        || {
            // SAFETY: the caller's contract: `model` came from `boxed` and is freed once.
            unsafe { unbox(model) };
            Ok(())
        },
        || {},
    );
}

/// Run `f` on a model behind the panic barrier.
///
/// # Safety
/// `model` is NULL or a live model.
unsafe fn with_model(model: *const TemperModel, f: impl FnOnce(&TemperModel) -> Result<(), Error>) -> TemperStatus {
    guard(
        || {
            // SAFETY: the caller's contract: NULL or a live model (immutable, so shared access
            // from any thread is fine).
            let m = unsafe { as_ref(model, "model") }?;
            f(m)
        },
        || {},
    )
}

/// Number of graph inputs (`temper_model_num_inputs`).
///
/// # Safety
/// `model` is NULL or a live model; `out_count` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn temper_model_num_inputs(model: *const TemperModel, out_count: *mut usize) -> TemperStatus {
    let f = |m: &TemperModel| {
        // SAFETY: the caller's contract: `out_count` writable.
        unsafe { write_out(out_count, m.model().graph_inputs().len(), "out_count") }
    };
    // SAFETY: `model` is NULL or a live model (this function's contract).
    unsafe { with_model(model, f) }
}

/// Number of graph outputs (`temper_model_num_outputs`).
///
/// # Safety
/// `model` is NULL or a live model; `out_count` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn temper_model_num_outputs(model: *const TemperModel, out_count: *mut usize) -> TemperStatus {
    let f = |m: &TemperModel| {
        // SAFETY: the caller's contract: `out_count` writable.
        unsafe { write_out(out_count, m.model().graph_outputs().len(), "out_count") }
    };
    // SAFETY: `model` is NULL or a live model (this function's contract).
    unsafe { with_model(model, f) }
}

fn tensor_info(m: &TemperModel, index: usize, input: bool) -> Result<TensorInfo, Error> {
    let model = m.model();
    let ids = if input { model.graph_inputs() } else { model.graph_outputs() };
    let id = *ids.get(index).ok_or(temper_runtime::RunError::NoSuchTensor { index })?;
    Ok(TensorInfo::new(model, &model.tensor(id), input))
}

/// Describe graph input `index` (`temper_model_input_info`).
///
/// # Safety
/// `model` is NULL or a live model; `out_info` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn temper_model_input_info(model: *const TemperModel, index: usize, out_info: *mut TensorInfo) -> TemperStatus {
    let f = |m: &TemperModel| {
        let info = tensor_info(m, index, true)?;
        // SAFETY: the caller's contract: `out_info` writable.
        unsafe { write_out(out_info, info, "out_info") }
    };
    // SAFETY: `model` is NULL or a live model (this function's contract).
    unsafe { with_model(model, f) }
}

/// Describe graph output `index` (`temper_model_output_info`).
///
/// # Safety
/// `model` is NULL or a live model; `out_info` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn temper_model_output_info(model: *const TemperModel, index: usize, out_info: *mut TensorInfo) -> TemperStatus {
    let f = |m: &TemperModel| {
        let info = tensor_info(m, index, false)?;
        // SAFETY: the caller's contract: `out_info` writable.
        unsafe { write_out(out_info, info, "out_info") }
    };
    // SAFETY: `model` is NULL or a live model (this function's contract).
    unsafe { with_model(model, f) }
}

/// Arena bytes a session needs (`temper_model_arena_size`).
///
/// # Safety
/// `model` is NULL or a live model; `out_bytes` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn temper_model_arena_size(model: *const TemperModel, out_bytes: *mut usize) -> TemperStatus {
    let f = |m: &TemperModel| {
        // SAFETY: the caller's contract: `out_bytes` writable.
        unsafe { write_out(out_bytes, m.model().arena_size(), "out_bytes") }
    };
    // SAFETY: `model` is NULL or a live model (this function's contract).
    unsafe { with_model(model, f) }
}

/// A metadata value (`temper_model_metadata`).
///
/// # Safety
/// `model` is NULL or a live model; `key` is NULL or a NUL-terminated string; `out_value` and
/// `out_len` are NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn temper_model_metadata(
    model: *const TemperModel,
    key: *const c_char,
    out_value: *mut *const c_char,
    out_len: *mut usize,
) -> TemperStatus {
    let f = |m: &TemperModel| {
        if key.is_null() {
            return Err(Error::Null("key"));
        }
        if out_value.is_null() || out_len.is_null() {
            return Err(Error::Null(if out_value.is_null() { "out_value" } else { "out_len" }));
        }
        // SAFETY: non-NULL (checked), NUL-terminated (the caller's contract).
        let key = unsafe { CStr::from_ptr(key) };
        let key = key.to_str().map_err(|_| Error::Invalid("key is not UTF-8"))?;
        let value = m.model().meta(key).ok_or(Error::NoSuchKey)?;
        // SAFETY: the caller's contract: both out-parameters writable (non-NULL checked
        // above, so the first write cannot fail half-way).
        unsafe {
            write_out(out_value, value.as_ptr().cast::<c_char>(), "out_value")?;
            write_out(out_len, value.len(), "out_len")
        }
    };
    // SAFETY: `model` is NULL or a live model (this function's contract).
    unsafe { with_model(model, f) }
}

// ---------------------------------------------------------------- sessions

/// Create a session in the caller's arena (`temper_session_create`).
///
/// # Safety
/// `model` is NULL or a live model that outlives the session; `arena` is NULL or valid for reads
/// and writes of `arena_len` bytes, outlives the session and is used by nothing else meanwhile;
/// `out_session` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn temper_session_create(
    model: *const TemperModel,
    arena: *mut c_void,
    arena_len: usize,
    out_session: *mut *mut TemperSession,
) -> TemperStatus {
    guard(
        || {
            // SAFETY: the caller's contract: NULL or a live model.
            let m = unsafe { as_ref(model, "model") }?;
            if arena.is_null() {
                return Err(Error::Null("arena"));
            }
            if out_session.is_null() {
                return Err(Error::Null("out_session"));
            }
            // SAFETY: the caller's contract: the model outlives the session; the arena is valid,
            // outlives the session and is exclusively the session's.
            let s = unsafe { TemperSession::create(m, arena.cast::<u8>(), arena_len) }?;
            let p = boxed(s, "the session")?;
            // SAFETY: the caller's contract: `out_session` writable. On failure `p` is freed.
            unsafe { write_out(out_session, p, "out_session") }.inspect_err(|_| {
                // SAFETY: `p` came from `boxed` and was never handed out.
                unsafe { unbox(p) }
            })
        },
        || {},
    )
}

/// Free a session (`temper_session_free`).
///
/// # Safety
/// `session` is NULL or a session from `temper_session_create`, not freed before, not in use.
#[no_mangle]
pub unsafe extern "C" fn temper_session_free(session: *mut TemperSession) {
    if session.is_null() {
        return;
    }
    let _ = guard(
        || {
            // SAFETY: the caller's contract: `session` came from `boxed` and is freed once.
            unsafe { unbox(session) };
            Ok(())
        },
        || {},
    );
}

/// The session's kernel path (`temper_session_kernels`).
///
/// # Safety
/// `session` is NULL or a live session not used by another thread meanwhile.
#[no_mangle]
pub unsafe extern "C" fn temper_session_kernels(session: *const TemperSession) -> *const c_char {
    // SAFETY: the caller's contract: NULL or a live session without concurrent use.
    match unsafe { session.as_ref() } {
        Some(s) => s.kernels_name().as_ptr(),
        None => c"".as_ptr(),
    }
}

/// Run `f` on a session (exclusively) behind the panic barrier; a panic poisons the session.
///
/// # Safety
/// `session` is NULL or a live session used by no other thread meanwhile.
unsafe fn with_session_mut(
    session: *mut TemperSession,
    f: impl FnOnce(&mut temper_runtime::Session<'static, 'static>) -> Result<(), Error>,
) -> TemperStatus {
    guard(
        || {
            // SAFETY: the caller's contract: NULL or a live session, not used concurrently.
            let s = unsafe { as_mut(session, "session") }?;
            f(s.get_mut()?)
        },
        || {
            // SAFETY: as above; the `&mut` of the panicked closure is gone (unwound).
            if let Some(s) = unsafe { session.as_ref() } {
                s.poison();
            }
        },
    )
}

/// Run `f` on a session (shared) behind the panic barrier; a panic poisons the session.
///
/// # Safety
/// `session` is NULL or a live session used by no other thread meanwhile.
unsafe fn with_session(session: *const TemperSession, f: impl FnOnce(&TemperSession) -> Result<(), Error>) -> TemperStatus {
    guard(
        || {
            // SAFETY: the caller's contract: NULL or a live session, not used concurrently.
            let s = unsafe { as_ref(session, "session") }?;
            f(s)
        },
        || {
            // SAFETY: as above.
            if let Some(s) = unsafe { session.as_ref() } {
                s.poison();
            }
        },
    )
}

/// Set an input from real values (`temper_set_input_f32`).
///
/// # Safety
/// `session` is NULL or a live session used by no other thread meanwhile; `data` is NULL or
/// valid for reads of `count` floats.
#[no_mangle]
pub unsafe extern "C" fn temper_set_input_f32(session: *mut TemperSession, index: usize, data: *const f32, count: usize) -> TemperStatus {
    let f = |s: &mut temper_runtime::Session<'static, 'static>| {
        // SAFETY: the caller's contract: `data` readable for `count` floats.
        let data = unsafe { as_slice(data, count, "data") }?;
        Ok(s.set_input_f32(index, data)?)
    };
    // SAFETY: `session` is NULL or a live session used by this thread only (this function's
    // contract).
    unsafe { with_session_mut(session, f) }
}

/// Set an input from int8 values (`temper_set_input_i8`).
///
/// # Safety
/// `session` is NULL or a live session used by no other thread meanwhile; `data` is NULL or
/// valid for reads of `count` bytes.
#[no_mangle]
pub unsafe extern "C" fn temper_set_input_i8(session: *mut TemperSession, index: usize, data: *const i8, count: usize) -> TemperStatus {
    let f = |s: &mut temper_runtime::Session<'static, 'static>| {
        // SAFETY: the caller's contract: `data` readable for `count` bytes.
        let data = unsafe { as_slice(data, count, "data") }?;
        Ok(s.set_input_i8(index, data)?)
    };
    // SAFETY: `session` is NULL or a live session used by this thread only (this function's
    // contract).
    unsafe { with_session_mut(session, f) }
}

/// Set an input from raw u8 pixels (`temper_set_input_u8`).
///
/// # Safety
/// `session` is NULL or a live session used by no other thread meanwhile; `pixels` is NULL or
/// valid for reads of `count` bytes.
#[no_mangle]
pub unsafe extern "C" fn temper_set_input_u8(session: *mut TemperSession, index: usize, pixels: *const u8, count: usize) -> TemperStatus {
    let f = |s: &mut temper_runtime::Session<'static, 'static>| {
        // SAFETY: the caller's contract: `pixels` readable for `count` bytes.
        let pixels = unsafe { as_slice(pixels, count, "pixels") }?;
        Ok(s.set_input_u8(index, pixels)?)
    };
    // SAFETY: `session` is NULL or a live session used by this thread only (this function's
    // contract).
    unsafe { with_session_mut(session, f) }
}

/// Use `threads` threads per run (`temper_session_set_threads`).
///
/// # Safety
/// `session` is NULL or a live session used by no other thread meanwhile.
#[no_mangle]
pub unsafe extern "C" fn temper_session_set_threads(session: *mut TemperSession, threads: usize) -> TemperStatus {
    // SAFETY: `session` is NULL or a live session used by this thread only (this function's
    // contract).
    unsafe { with_session_mut(session, |s| Ok(s.set_threads(threads)?)) }
}

/// Run the model (`temper_run`).
///
/// # Safety
/// `session` is NULL or a live session used by no other thread meanwhile.
#[no_mangle]
pub unsafe extern "C" fn temper_run(session: *mut TemperSession) -> TemperStatus {
    // SAFETY: `session` is NULL or a live session used by this thread only (this function's
    // contract).
    unsafe { with_session_mut(session, |s| Ok(s.run()?)) }
}

/// Validate an output buffer, zero it (it may be uninitialized memory) and view it.
///
/// # Safety
/// `out` is NULL or valid for writes of `count` elements of `T` for `'a`, with no other access
/// meanwhile.
unsafe fn out_slice<'a, T: bytemuck::Zeroable>(s: &TemperSession, index: usize, out: *mut T, count: usize) -> Result<&'a mut [T], Error> {
    let numel = s.output_numel(index)?;
    check_array(out, count, "out")?;
    if count != numel {
        return Err(temper_runtime::RunError::WrongLength { expected: numel, given: count }.into());
    }
    // SAFETY: non-NULL, aligned, byte length <= isize::MAX (checked); writable for `count`
    // elements (the caller's contract); all-zero bytes are a valid `T` (`Zeroable`).
    unsafe { std::ptr::write_bytes(out, 0, count) };
    // SAFETY: as above, now initialized; exclusively ours for `'a` (the caller's contract).
    Ok(unsafe { std::slice::from_raw_parts_mut(out, count) })
}

/// Read an output, dequantized (`temper_get_output_f32`).
///
/// # Safety
/// `session` is NULL or a live session used by no other thread meanwhile; `out` is NULL or valid
/// for writes of `count` floats.
#[no_mangle]
pub unsafe extern "C" fn temper_get_output_f32(session: *const TemperSession, index: usize, out: *mut f32, count: usize) -> TemperStatus {
    let f = |s: &TemperSession| {
        let sess = s.get()?;
        // SAFETY: the caller's contract: `out` writable for `count` floats.
        let out = unsafe { out_slice(s, index, out, count) }?;
        Ok(sess.output_f32(index, out)?)
    };
    // SAFETY: `session` is NULL or a live session used by this thread only (this function's
    // contract).
    unsafe { with_session(session, f) }
}

/// Read an output as int8 (`temper_get_output_i8`).
///
/// # Safety
/// `session` is NULL or a live session used by no other thread meanwhile; `out` is NULL or valid
/// for writes of `count` bytes.
#[no_mangle]
pub unsafe extern "C" fn temper_get_output_i8(session: *const TemperSession, index: usize, out: *mut i8, count: usize) -> TemperStatus {
    let f = |s: &TemperSession| {
        let sess = s.get()?;
        // SAFETY: the caller's contract: `out` writable for `count` bytes.
        let out = unsafe { out_slice(s, index, out, count) }?;
        out.copy_from_slice(sess.output_i8(index)?);
        Ok(())
    };
    // SAFETY: `session` is NULL or a live session used by this thread only (this function's
    // contract).
    unsafe { with_session(session, f) }
}
