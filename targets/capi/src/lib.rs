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

mod handle;
mod model;
mod session;
mod status;

pub use model::{TemperModel, TensorInfo};
pub use session::TemperSession;
pub use status::TemperStatus;

use status::{guard, Error};
use std::ffi::{c_char, c_void, CStr};

/// ABI version (`TEMPER_ABI_VERSION` in `temper.h`). 2: handles are checked (`*_free` return
/// a status; `TEMPER_ERROR_BUSY`, `TEMPER_ERROR_INVALID_HANDLE`).
pub const ABI_VERSION: u32 = 2;

/// The live models: `temper_model *` values are handles into this table ([`handle`]).
static MODELS: handle::Table<TemperModel> = handle::Table::new("model");
/// The live sessions.
static SESSIONS: handle::Table<TemperSession> = handle::Table::new("session");

/// The handle a C pointer carries (never dereferenced).
fn handle_of<T>(p: *const T) -> usize {
    p.addr()
}

/// The C pointer of a handle (never dereferenced).
fn pointer_of<T>(h: usize) -> *mut T {
    std::ptr::without_provenance_mut(h)
}

// ---------------------------------------------------------------- pointer helpers

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

/// Box a value, reporting allocation failure instead of aborting where possible.
fn try_box<T>(value: T, what: &'static str) -> Result<Box<T>, Error> {
    let mut v: Vec<T> = Vec::new();
    v.try_reserve_exact(1).map_err(|_| Error::OutOfMemory(what))?;
    v.push(value);
    let b: Box<[T]> = v.into_boxed_slice();
    // SAFETY: a `Box<[T]>` of length 1 has the layout of a `Box<T>` (same allocation, size and
    // alignment of one `T`); ownership moves from the slice box to the new box.
    Ok(unsafe { Box::from_raw(Box::into_raw(b).cast::<T>()) })
}

/// Enter `model` in the handle table and write its handle to `out_model`.
///
/// # Safety
/// `out_model` is NULL or valid for writes.
unsafe fn publish_model(model: TemperModel, out_model: *mut *mut TemperModel) -> Result<(), Error> {
    if out_model.is_null() {
        return Err(Error::Null("out_model"));
    }
    let h = MODELS.insert(try_box(model, "the model")?)?;
    // SAFETY: the caller's contract: `out_model` writable. On failure the model is dropped.
    unsafe { write_out(out_model, pointer_of(h), "out_model") }.inspect_err(|_| drop(MODELS.remove(h)))
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
            // SAFETY: the caller's contract: `out_model` writable.
            unsafe { publish_model(model, out_model) }
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
            // SAFETY: the caller's contract: `out_model` writable.
            unsafe { publish_model(model, out_model) }
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
            // SAFETY: the caller's contract: `out_model` writable.
            unsafe { publish_model(model, out_model) }
        },
        || {},
    )
}

/// Free a model (`temper_model_free`): `TEMPER_ERROR_BUSY` while sessions of it exist (or
/// another thread is in a call on it), `TEMPER_ERROR_INVALID_HANDLE` when already freed; NULL
/// is a no-op (`TEMPER_OK`).
///
/// # Safety
/// None beyond the C contract: `model` is any value (handles are checked, see `temper.h`, "Handles").
#[no_mangle]
pub unsafe extern "C" fn temper_model_free(model: *mut TemperModel) -> TemperStatus {
    if model.is_null() {
        return TemperStatus::Ok;
    }
    guard(|| MODELS.remove(handle_of(model)).map(drop), || {})
}

/// Run `f` on a pinned model behind the panic barrier.
fn with_model(model: *const TemperModel, f: impl FnOnce(&TemperModel) -> Result<(), Error>) -> TemperStatus {
    guard(
        || {
            if model.is_null() {
                return Err(Error::Null("model"));
            }
            let m = MODELS.pin(handle_of(model), false)?;
            f(&m)
        },
        || {},
    )
}

/// Number of graph inputs (`temper_model_num_inputs`).
///
/// # Safety
/// `out_count` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn temper_model_num_inputs(model: *const TemperModel, out_count: *mut usize) -> TemperStatus {
    let f = |m: &TemperModel| {
        // SAFETY: the caller's contract: `out_count` writable.
        unsafe { write_out(out_count, m.model().graph_inputs().len(), "out_count") }
    };
    with_model(model, f)
}

/// Number of graph outputs (`temper_model_num_outputs`).
///
/// # Safety
/// `out_count` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn temper_model_num_outputs(model: *const TemperModel, out_count: *mut usize) -> TemperStatus {
    let f = |m: &TemperModel| {
        // SAFETY: the caller's contract: `out_count` writable.
        unsafe { write_out(out_count, m.model().graph_outputs().len(), "out_count") }
    };
    with_model(model, f)
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
/// `out_info` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn temper_model_input_info(model: *const TemperModel, index: usize, out_info: *mut TensorInfo) -> TemperStatus {
    let f = |m: &TemperModel| {
        let info = tensor_info(m, index, true)?;
        // SAFETY: the caller's contract: `out_info` writable.
        unsafe { write_out(out_info, info, "out_info") }
    };
    with_model(model, f)
}

/// Describe graph output `index` (`temper_model_output_info`).
///
/// # Safety
/// `out_info` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn temper_model_output_info(model: *const TemperModel, index: usize, out_info: *mut TensorInfo) -> TemperStatus {
    let f = |m: &TemperModel| {
        let info = tensor_info(m, index, false)?;
        // SAFETY: the caller's contract: `out_info` writable.
        unsafe { write_out(out_info, info, "out_info") }
    };
    with_model(model, f)
}

/// Arena bytes a session needs (`temper_model_arena_size`).
///
/// # Safety
/// `out_bytes` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn temper_model_arena_size(model: *const TemperModel, out_bytes: *mut usize) -> TemperStatus {
    let f = |m: &TemperModel| {
        // SAFETY: the caller's contract: `out_bytes` writable.
        unsafe { write_out(out_bytes, m.model().arena_size(), "out_bytes") }
    };
    with_model(model, f)
}

/// A metadata value (`temper_model_metadata`).
///
/// # Safety
/// `key` is NULL or a NUL-terminated string; `out_value` and
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
    with_model(model, f)
}

// ---------------------------------------------------------------- sessions

/// Create a session in the caller's arena (`temper_session_create`). The session pins its model
/// (`temper_model_free` returns `TEMPER_ERROR_BUSY` until the session is freed).
///
/// # Safety
/// `arena` is NULL or valid for reads and writes of `arena_len` bytes, outlives the session and
/// is used by nothing else meanwhile; `out_session` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn temper_session_create(
    model: *const TemperModel,
    arena: *mut c_void,
    arena_len: usize,
    out_session: *mut *mut TemperSession,
) -> TemperStatus {
    guard(
        || {
            if model.is_null() {
                return Err(Error::Null("model"));
            }
            if arena.is_null() {
                return Err(Error::Null("arena"));
            }
            if out_session.is_null() {
                return Err(Error::Null("out_session"));
            }
            let mh = handle_of(model);
            // Pinned for the session's life: released by `temper_session_free` (or below).
            let m: &'static TemperModel = MODELS.pin(mh, false)?.leak();
            let made = (|| {
                // SAFETY: the model outlives the session (pinned until the session is freed);
                // the arena is valid, outlives the session and is exclusively the session's
                // (the caller's contract).
                let s = unsafe { TemperSession::create(m, mh, arena.cast::<u8>(), arena_len) }?;
                let h = SESSIONS.insert(try_box(s, "the session")?)?;
                // SAFETY: the caller's contract: `out_session` writable (non-NULL checked).
                unsafe { write_out(out_session, pointer_of(h), "out_session") }.inspect_err(|_| drop(SESSIONS.remove(h)))
            })();
            if made.is_err() {
                MODELS.release(mh);
            }
            made
        },
        || {},
    )
}

/// Free a session (`temper_session_free`) and unpin its model: `TEMPER_ERROR_BUSY` while
/// another thread is in a call on it, `TEMPER_ERROR_INVALID_HANDLE` when already freed; NULL is
/// a no-op (`TEMPER_OK`).
///
/// # Safety
/// None beyond the C contract: `session` is any value (handles are checked).
#[no_mangle]
pub unsafe extern "C" fn temper_session_free(session: *mut TemperSession) -> TemperStatus {
    if session.is_null() {
        return TemperStatus::Ok;
    }
    guard(
        || {
            let s = SESSIONS.remove(handle_of(session))?;
            let mh = s.model_handle();
            drop(s);
            MODELS.release(mh);
            Ok(())
        },
        || {},
    )
}

/// The session's kernel path (`temper_session_kernels`); "" for NULL, a stale handle or a
/// session in use by another thread.
///
/// # Safety
/// None beyond the C contract (handles are checked).
#[no_mangle]
pub unsafe extern "C" fn temper_session_kernels(session: *const TemperSession) -> *const c_char {
    match SESSIONS.pin(handle_of(session), true) {
        Ok(s) => s.kernels_name().as_ptr(),
        Err(_) => c"".as_ptr(),
    }
}

/// Run `f` on a session, pinned exclusively (another thread gets `TEMPER_ERROR_BUSY`), behind
/// the panic barrier; a panic poisons the session.
fn with_session_mut(
    session: *const TemperSession,
    f: impl FnOnce(&mut temper_runtime::Session<'static, 'static>) -> Result<(), Error>,
) -> TemperStatus {
    with_session(session, |s| f(s.get_mut()?))
}

/// Run `f` on a session pinned exclusively behind the panic barrier; a panic poisons it.
fn with_session(session: *const TemperSession, f: impl FnOnce(&mut TemperSession) -> Result<(), Error>) -> TemperStatus {
    guard(
        || {
            if session.is_null() {
                return Err(Error::Null("session"));
            }
            let mut s = SESSIONS.pin_mut(handle_of(session))?;
            f(&mut s)
        },
        || {
            // The panicked call's pin was released while unwinding.
            if let Ok(s) = SESSIONS.pin_mut(handle_of(session)) {
                s.poison();
            }
        },
    )
}

/// Set an input from real values (`temper_set_input_f32`).
///
/// # Safety
/// `data` is NULL or
/// valid for reads of `count` floats.
#[no_mangle]
pub unsafe extern "C" fn temper_set_input_f32(session: *mut TemperSession, index: usize, data: *const f32, count: usize) -> TemperStatus {
    let f = |s: &mut temper_runtime::Session<'static, 'static>| {
        // SAFETY: the caller's contract: `data` readable for `count` floats.
        let data = unsafe { as_slice(data, count, "data") }?;
        Ok(s.set_input_f32(index, data)?)
    };
    with_session_mut(session, f)
}

/// Set an input from int8 values (`temper_set_input_i8`).
///
/// # Safety
/// `data` is NULL or
/// valid for reads of `count` bytes.
#[no_mangle]
pub unsafe extern "C" fn temper_set_input_i8(session: *mut TemperSession, index: usize, data: *const i8, count: usize) -> TemperStatus {
    let f = |s: &mut temper_runtime::Session<'static, 'static>| {
        // SAFETY: the caller's contract: `data` readable for `count` bytes.
        let data = unsafe { as_slice(data, count, "data") }?;
        Ok(s.set_input_i8(index, data)?)
    };
    with_session_mut(session, f)
}

/// Set an input from raw u8 pixels (`temper_set_input_u8`).
///
/// # Safety
/// `pixels` is NULL or
/// valid for reads of `count` bytes.
#[no_mangle]
pub unsafe extern "C" fn temper_set_input_u8(session: *mut TemperSession, index: usize, pixels: *const u8, count: usize) -> TemperStatus {
    let f = |s: &mut temper_runtime::Session<'static, 'static>| {
        // SAFETY: the caller's contract: `pixels` readable for `count` bytes.
        let pixels = unsafe { as_slice(pixels, count, "pixels") }?;
        Ok(s.set_input_u8(index, pixels)?)
    };
    with_session_mut(session, f)
}

/// Use `threads` threads per run (`temper_session_set_threads`).
///
/// # Safety
/// None beyond the C contract (handles are checked; another thread gets `TEMPER_ERROR_BUSY`).
#[no_mangle]
pub unsafe extern "C" fn temper_session_set_threads(session: *mut TemperSession, threads: usize) -> TemperStatus {
    with_session_mut(session, |s| Ok(s.set_threads(threads)?))
}

/// Run the model (`temper_run`).
///
/// # Safety
/// None beyond the C contract (handles are checked; another thread gets `TEMPER_ERROR_BUSY`).
#[no_mangle]
pub unsafe extern "C" fn temper_run(session: *mut TemperSession) -> TemperStatus {
    with_session_mut(session, |s| Ok(s.run()?))
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
/// `out` is NULL or valid
/// for writes of `count` floats.
#[no_mangle]
pub unsafe extern "C" fn temper_get_output_f32(session: *const TemperSession, index: usize, out: *mut f32, count: usize) -> TemperStatus {
    let f = |s: &mut TemperSession| {
        let sess = s.get()?;
        // SAFETY: the caller's contract: `out` writable for `count` floats.
        let out = unsafe { out_slice(s, index, out, count) }?;
        Ok(sess.output_f32(index, out)?)
    };
    with_session(session, f)
}

/// Read an output as int8 (`temper_get_output_i8`).
///
/// # Safety
/// `out` is NULL or valid
/// for writes of `count` bytes.
#[no_mangle]
pub unsafe extern "C" fn temper_get_output_i8(session: *const TemperSession, index: usize, out: *mut i8, count: usize) -> TemperStatus {
    let f = |s: &mut TemperSession| {
        let sess = s.get()?;
        // SAFETY: the caller's contract: `out` writable for `count` bytes.
        let out = unsafe { out_slice(s, index, out, count) }?;
        out.copy_from_slice(sess.output_i8(index)?);
        Ok(())
    };
    with_session(session, f)
}
