//! Checked handles (issue #16): a session in use by one thread returns `TEMPER_ERROR_BUSY` to
//! another (never a wrong output), double free and use after free return
//! `TEMPER_ERROR_INVALID_HANDLE`, and a model with sessions cannot be freed.

mod common;

use std::ffi::CStr;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use temper_capi::*;

fn last_error() -> String {
    // SAFETY: the library returns a NUL-terminated string valid for this thread's life.
    unsafe { CStr::from_ptr(temper_last_error_message()) }.to_string_lossy().into_owned()
}

fn load() -> (*mut TemperModel, usize) {
    let bytes = common::build_model(true);
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
fn double_free_use_after_free_and_busy_model() {
    let (m, arena_len) = load();
    let mut arena = vec![0u8; arena_len];
    let mut s = ptr::null_mut();
    let (_, _, p) = common::inputs();
    let mut logits = [0f32; 3];
    let mut n = 0usize;
    // SAFETY: handles are checked by the library; the arena outlives the session.
    unsafe {
        assert_eq!(temper_session_create(m, arena.as_mut_ptr().cast(), arena_len, &mut s), TemperStatus::Ok);
        // The model is pinned by its session.
        assert_eq!(temper_model_free(m), TemperStatus::Busy);
        assert!(last_error().contains("model is in use"), "{}", last_error());
        assert_eq!(temper_set_input_u8(s, 0, p.as_ptr(), p.len()), TemperStatus::Ok);
        assert_eq!(temper_run(s), TemperStatus::Ok, "the refused free left the model alone");
        assert_eq!(temper_session_free(s), TemperStatus::Ok);
        // Double free and use after free of the session.
        assert_eq!(temper_session_free(s), TemperStatus::InvalidHandle);
        assert!(last_error().contains("invalid session handle: already freed"), "{}", last_error());
        assert_eq!(temper_run(s), TemperStatus::InvalidHandle);
        assert_eq!(temper_get_output_f32(s, 0, logits.as_mut_ptr(), 3), TemperStatus::InvalidHandle);
        assert_eq!(CStr::from_ptr(temper_session_kernels(s)).to_bytes(), b"");
        // A new session may reuse the slot: the old handle stays invalid.
        let mut s2 = ptr::null_mut();
        assert_eq!(temper_session_create(m, arena.as_mut_ptr().cast(), arena_len, &mut s2), TemperStatus::Ok);
        assert_ne!(s2, s);
        assert_eq!(temper_run(s), TemperStatus::InvalidHandle);
        assert_eq!(temper_session_free(s2), TemperStatus::Ok);
        // Now the model frees; then double free and use after free of the model.
        assert_eq!(temper_model_free(m), TemperStatus::Ok);
        assert_eq!(temper_model_free(m), TemperStatus::InvalidHandle);
        assert!(last_error().contains("invalid model handle"), "{}", last_error());
        assert_eq!(temper_model_num_inputs(m, &mut n), TemperStatus::InvalidHandle);
        assert_eq!(temper_session_create(m, arena.as_mut_ptr().cast(), arena_len, &mut s), TemperStatus::InvalidHandle);
        // A forged handle is refused too (what the header leaves undefined is a forged value
        // that happens to name a live slot and generation).
        assert_eq!(temper_run(ptr::without_provenance_mut(0xdead_0000)), TemperStatus::InvalidHandle);
        assert_eq!(temper_model_free(ptr::null_mut()), TemperStatus::Ok);
        assert_eq!(temper_session_free(ptr::null_mut()), TemperStatus::Ok);
    }
}

/// A handle shared by threads on purpose (the test is that the library refuses the overlap).
#[derive(Clone, Copy)]
struct Shared(*mut TemperSession);
// SAFETY: the handle is a number the library checks; the threads are joined before it is freed.
unsafe impl Send for Shared {}

#[test]
fn threads_hammering_one_session_get_busy_never_wrong_outputs() {
    let (m, arena_len) = load();
    let mut arena = vec![0u8; arena_len];
    let mut s = ptr::null_mut();
    let (_, _, p) = common::inputs();
    let mut want = [0f32; 3];
    let mut want_pool = [0i8; 64];
    // SAFETY: live handles, buffers of the stated lengths; the arena outlives the session.
    unsafe {
        assert_eq!(temper_session_create(m, arena.as_mut_ptr().cast(), arena_len, &mut s), TemperStatus::Ok);
        assert_eq!(temper_set_input_u8(s, 0, p.as_ptr(), p.len()), TemperStatus::Ok);
        assert_eq!(temper_run(s), TemperStatus::Ok);
        assert_eq!(temper_get_output_f32(s, 0, want.as_mut_ptr(), 3), TemperStatus::Ok);
        assert_eq!(temper_get_output_i8(s, 1, want_pool.as_mut_ptr(), 64), TemperStatus::Ok);
    }
    let shared = Shared(s);
    let (ok, busy) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        let (ok, busy, p, want, want_pool) = (&ok, &busy, &p, &want, &want_pool);
        for _ in 0..4 {
            scope.spawn(move || {
                let s = shared;
                let mut logits = [0f32; 3];
                let mut pool = [0i8; 64];
                // Until every thread has seen both outcomes often, within a bound.
                for i in 0..200_000 {
                    // Every thread sets the same input, so any complete run gives `want`;
                    // only an overlap inside a call could give anything else.
                    // SAFETY: the handle is checked; buffers of the stated lengths.
                    let st = unsafe {
                        match i % 4 {
                            0 => temper_set_input_u8(s.0, 0, p.as_ptr(), p.len()),
                            1 => temper_run(s.0),
                            2 => temper_get_output_f32(s.0, 0, logits.as_mut_ptr(), 3),
                            _ => temper_get_output_i8(s.0, 1, pool.as_mut_ptr(), 64),
                        }
                    };
                    match st {
                        TemperStatus::Ok => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            if i % 4 == 2 {
                                assert_eq!(logits.map(f32::to_bits), want.map(f32::to_bits), "a wrong output");
                            }
                            if i % 4 == 3 {
                                assert_eq!(pool, *want_pool, "a wrong output");
                            }
                        }
                        TemperStatus::Busy => {
                            busy.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("unexpected status {other:?}: {}", last_error()),
                    }
                    if i >= 20_000 && busy.load(Ordering::Relaxed) >= 100 {
                        break;
                    }
                }
            });
        }
    });
    let (ok, busy) = (ok.into_inner(), busy.into_inner());
    eprintln!("one session, 4 threads: {ok} calls OK, {busy} BUSY");
    assert!(busy > 0, "no overlap was ever refused ({ok} calls)");
    assert!(ok > 0);
    // SAFETY: the threads are joined; freed once each, session first.
    unsafe {
        assert_eq!(temper_session_free(s), TemperStatus::Ok);
        assert_eq!(temper_model_free(m), TemperStatus::Ok);
    }
}
