//! `Session::run` performs no heap allocation: checked with a counting global allocator.
//! (Its own test binary, with a single test, so no other thread allocates meanwhile.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use temper_runtime::writer::AlignedBuf;
use temper_runtime::{Model, Session};
use temper_tests::TinyCnn;

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by 100 rounds of set_input / run / output on `s` (after one warm-up run).
fn allocations_of_100_runs(s: &mut Session<'_, '_>, input: &[f32]) -> usize {
    let mut out = [0f32; 3];
    s.set_input_f32(0, input).unwrap();
    s.run().unwrap(); // warm: any lazy one-time initialisation happens here
    let before = ALLOCS.load(Ordering::SeqCst);
    for _ in 0..100 {
        s.set_input_f32(0, input).unwrap();
        s.run().unwrap();
        s.output_f32(0, &mut out).unwrap();
    }
    ALLOCS.load(Ordering::SeqCst) - before
}

#[test]
fn run_does_not_allocate() {
    let bytes = TinyCnn::new(11).build();
    let buf = AlignedBuf::from_bytes(&bytes);
    let model = Model::from_bytes(buf.as_bytes()).unwrap();
    let mut arena = vec![0u8; model.arena_size()];
    let input = vec![0.25f32; 128];
    let mut s = Session::new(&model, &mut arena).unwrap();
    let n = allocations_of_100_runs(&mut s, &input);
    assert_eq!(n, 0, "set_input/run/output allocated {n} times");
    drop(s);
    // The same with worker threads splitting every layer (workers allocate nothing either; the
    // pool returns from its constructor only once every worker has started).
    let mut s = Session::new(&model, &mut arena).unwrap().with_threads(3).unwrap();
    s.set_min_work_per_part(1);
    let n = allocations_of_100_runs(&mut s, &input);
    assert_eq!(n, 0, "run with 3 threads allocated {n} times");
    drop(s);
    // The detection post-process (top-k heap and kept boxes in the arena's scratch), with many
    // candidates above the threshold.
    let head = temper_tests::det::DetHead::random(3, (100, 72), &[8, 16, 32], 6, 7, 60, 12);
    let bytes = head.build(&head.config(true, true));
    let buf = AlignedBuf::from_bytes(&bytes);
    let model = Model::from_bytes(buf.as_bytes()).unwrap();
    let mut arena = vec![0u8; model.arena_size()];
    let mut s = Session::new(&model, &mut arena).unwrap();
    let inputs = head.inputs();
    for (i, x) in inputs.iter().enumerate() {
        s.set_input_i8(i, x).unwrap();
    }
    s.run().unwrap();
    let before = ALLOCS.load(Ordering::SeqCst);
    for _ in 0..100 {
        for (i, x) in inputs.iter().enumerate() {
            s.set_input_i8(i, x).unwrap();
        }
        s.run().unwrap();
        assert!(s.output_i8(0).unwrap()[0] > 0, "detections found");
    }
    let n = ALLOCS.load(Ordering::SeqCst) - before;
    assert_eq!(n, 0, "detection post-process run allocated {n} times");
    drop(s);
    // The counter works: an allocation is seen.
    let after = ALLOCS.load(Ordering::SeqCst);
    let v = vec![1u8; 10];
    assert!(ALLOCS.load(Ordering::SeqCst) > after);
    drop(v);
}
