//! The C entry points called from Rust: no heap allocation on the inference path (a counting
//! global allocator), out-parameters and arenas untouched by failed calls, the model copy
//! independent of the caller's buffer, sharing a model between threads.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ffi::CStr;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use temper_capi::*;

/// Counts allocations made by threads that enabled counting.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static COUNT: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards every call to the system allocator unchanged; the bookkeeping (an atomic
// counter, a const-initialized thread-local flag) neither allocates nor touches the blocks.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNT.try_with(Cell::get).unwrap_or(false) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded contract of `GlobalAlloc::alloc`.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract of `GlobalAlloc::dealloc`.
        unsafe { System.dealloc(p, layout) }
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNT.try_with(Cell::get).unwrap_or(false) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded contract of `GlobalAlloc::realloc`.
        unsafe { System.realloc(p, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by this thread while running `f`.
fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNT.with(|c| c.set(true));
    f();
    COUNT.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

fn last_error() -> String {
    // SAFETY: the library returns a NUL-terminated string valid for this thread's life.
    unsafe { CStr::from_ptr(temper_last_error_message()) }.to_string_lossy().into_owned()
}

/// A model loaded by copy, and its arena size.
fn load(bytes: &[u8]) -> (*mut TemperModel, usize) {
    let mut m = ptr::null_mut();
    let mut arena = 0usize;
    // SAFETY: valid slice and out-parameters.
    unsafe {
        assert_eq!(temper_model_load_memory(bytes.as_ptr(), bytes.len(), &mut m), TemperStatus::Ok);
        assert_eq!(temper_model_arena_size(m, &mut arena), TemperStatus::Ok);
    }
    (m, arena)
}

#[test]
fn inference_never_allocates_not_even_on_errors() {
    let bytes = common::build_model(true);
    let (m, arena_len) = load(&bytes);
    let mut arena = vec![0u8; arena_len];
    let mut s = ptr::null_mut();
    // SAFETY: live model, arena valid for `arena_len` bytes and outliving the session.
    assert_eq!(unsafe { temper_session_create(m, arena.as_mut_ptr().cast(), arena_len, &mut s) }, TemperStatus::Ok);
    let (f, q, p) = common::inputs();
    let mut logits = [0f32; 3];
    let mut pool = [0i8; 64];
    // Warm up (first use of the thread-local message buffer, CPU feature cache, ...).
    // SAFETY: live session, valid buffers of the stated lengths.
    unsafe {
        temper_set_input_u8(s, 0, p.as_ptr(), p.len());
        temper_run(s);
        temper_set_input_u8(s, 0, p.as_ptr(), 3);
    }
    let n = allocations_in(|| {
        for _ in 0..10 {
            // SAFETY: live session, valid buffers of the stated lengths.
            unsafe {
                assert_eq!(temper_set_input_f32(s, 0, f.as_ptr(), f.len()), TemperStatus::Ok);
                assert_eq!(temper_set_input_i8(s, 0, q.as_ptr(), q.len()), TemperStatus::Ok);
                assert_eq!(temper_set_input_u8(s, 0, p.as_ptr(), p.len()), TemperStatus::Ok);
                assert_eq!(temper_run(s), TemperStatus::Ok);
                assert_eq!(temper_get_output_f32(s, 0, logits.as_mut_ptr(), 3), TemperStatus::Ok);
                assert_eq!(temper_get_output_i8(s, 1, pool.as_mut_ptr(), 64), TemperStatus::Ok);
                // Error paths record their message in the fixed thread-local buffer.
                assert_eq!(temper_set_input_u8(s, 0, p.as_ptr(), 3), TemperStatus::WrongLength);
                assert_eq!(temper_get_output_f32(s, 5, logits.as_mut_ptr(), 3), TemperStatus::NoSuchTensor);
                assert_eq!(temper_run(ptr::null_mut()), TemperStatus::NullPointer);
            }
        }
    });
    assert_eq!(n, 0, "the inference path allocated {n} times");
    // The counter does count.
    assert_eq!(allocations_in(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(16)))), 1);
    // SAFETY: the session, then the model, freed once each; the arena outlives the session.
    unsafe {
        temper_session_free(s);
        temper_model_free(m);
    }
}

#[test]
fn failed_calls_leave_out_parameters_and_the_arena_alone() {
    let bytes = common::build_model(true);
    let (m, arena_len) = load(&bytes);
    let mut arena = vec![0xA5u8; arena_len];
    let mut s: *mut TemperSession = ptr::dangling_mut();
    // SAFETY: live model; the arena is valid for `arena_len - 1` bytes.
    let st = unsafe { temper_session_create(m, arena.as_mut_ptr().cast(), arena_len - 1, &mut s) };
    assert_eq!(st, TemperStatus::ArenaTooSmall);
    assert_eq!(last_error(), format!("arena too small: the model needs {arena_len} bytes, {} given", arena_len - 1));
    assert_eq!(s, ptr::dangling_mut(), "out-parameter written on failure");
    assert!(arena.iter().all(|&b| b == 0xA5), "arena touched by a failed create");

    // SAFETY: as above, with the full arena; then valid output buffers.
    unsafe {
        assert_eq!(temper_session_create(m, arena.as_mut_ptr().cast(), arena_len, &mut s), TemperStatus::Ok);
        assert!(arena.iter().all(|&b| b == 0), "the arena is zeroed at creation");
        let mut out = [7i8; 4];
        assert_eq!(temper_get_output_i8(s, 0, out.as_mut_ptr(), 4), TemperStatus::WrongLength);
        assert_eq!(out, [7; 4]);
        let mut info = std::mem::MaybeUninit::<TensorInfo>::uninit();
        assert_eq!(temper_model_output_info(m, 1, info.as_mut_ptr()), TemperStatus::Ok);
        assert_eq!(info.assume_init().numel, 64);
        temper_session_free(s);
        temper_model_free(m);
    }
}

#[test]
fn the_model_copy_outlives_the_callers_buffer() {
    let mut bytes = common::build_model(true);
    let (m, arena_len) = load(&bytes);
    bytes.iter_mut().for_each(|b| *b = 0);
    drop(bytes);
    let mut arena = vec![0u8; arena_len];
    let mut s = ptr::null_mut();
    let (_, _, p) = common::inputs();
    let mut logits = [0f32; 3];
    // SAFETY: live model and session, valid buffers.
    unsafe {
        assert_eq!(temper_session_create(m, arena.as_mut_ptr().cast(), arena_len, &mut s), TemperStatus::Ok);
        assert_eq!(temper_set_input_u8(s, 0, p.as_ptr(), p.len()), TemperStatus::Ok);
        assert_eq!(temper_run(s), TemperStatus::Ok);
        assert_eq!(temper_get_output_f32(s, 0, logits.as_mut_ptr(), 3), TemperStatus::Ok);
        temper_session_free(s);
        temper_model_free(m);
    }
    let expected = common::expected_lines(&common::build_model(true));
    let line = expected.iter().find(|l| l.starts_with("OUT u8 out0 f32")).unwrap();
    let bits: Vec<String> = logits.iter().map(|v| format!("{:08x}", v.to_bits())).collect();
    assert_eq!(line, &format!("OUT u8 out0 f32 {}", bits.join(" ")));
}

#[test]
fn one_model_many_threads() {
    let bytes = common::build_model(true);
    let (m, arena_len) = load(&bytes);
    /// The model pointer, shareable because `temper_model` is immutable and `Sync`.
    #[derive(Clone, Copy)]
    struct Shared(*const TemperModel);
    // SAFETY: `TemperModel` is `Sync` (asserted at compile time in the crate); the pointer is
    // only used while the model is alive (the threads are joined before it is freed).
    unsafe impl Send for Shared {}
    let shared = Shared(m);
    let results: Vec<[u32; 3]> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(move || {
                    let shared = shared;
                    let mut arena = vec![0u8; arena_len];
                    let mut s = ptr::null_mut();
                    let (_, _, p) = common::inputs();
                    let mut logits = [0f32; 3];
                    // SAFETY: live model; this thread's own session and arena.
                    unsafe {
                        assert_eq!(temper_session_create(shared.0, arena.as_mut_ptr().cast(), arena_len, &mut s), TemperStatus::Ok);
                        for _ in 0..50 {
                            assert_eq!(temper_set_input_u8(s, 0, p.as_ptr(), p.len()), TemperStatus::Ok);
                            assert_eq!(temper_run(s), TemperStatus::Ok);
                            assert_eq!(temper_get_output_f32(s, 0, logits.as_mut_ptr(), 3), TemperStatus::Ok);
                        }
                        temper_session_free(s);
                    }
                    logits.map(f32::to_bits)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.windows(2).all(|w| w[0] == w[1]));
    // SAFETY: every session is freed; the model is freed once.
    unsafe { temper_model_free(m) };
}

#[test]
fn version_and_names() {
    // SAFETY: static NUL-terminated strings.
    let v = unsafe { CStr::from_ptr(temper_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    assert_eq!(temper_abi_version(), ABI_VERSION);
    for s in TemperStatus::ALL {
        // SAFETY: static NUL-terminated strings.
        assert_eq!(unsafe { CStr::from_ptr(temper_status_name(s as i32)) }, s.c_name());
    }
    // SAFETY: as above.
    assert_eq!(unsafe { CStr::from_ptr(temper_status_name(-1)) }.to_str().unwrap(), "unknown");
}

#[test]
fn header_declares_every_exported_function() {
    let header = include_str!("../include/temper.h");
    let lib = include_str!("../src/lib.rs");
    let exported: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.split("extern \"C\" fn ").nth(1))
        .filter_map(|rest| rest.split('(').next())
        .filter(|name| name.starts_with("temper_"))
        .collect();
    assert!(exported.len() >= 20, "{exported:?}");
    for name in exported {
        assert!(header.contains(&format!(" {name}(")) || header.contains(&format!("*{name}(")), "{name} missing from temper.h");
    }
}
