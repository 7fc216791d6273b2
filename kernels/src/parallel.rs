//! Worker threads for splitting one kernel call into parts (std only).
//!
//! [`Pool::run`]`(parts, f)` calls `f(i)` for every `i < parts` — part 0 on the calling thread,
//! the others on the pool's workers (and on the caller once it is free) — and returns only when
//! all of them have finished. That is what lets `f` borrow the caller's data although the
//! workers outlive the call. Idle workers sleep on a condition variable: nothing spins.
//!
//! A panic in any part is caught, the other parts still run to completion, and the panic is then
//! raised again on the calling thread.

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// A job: a borrowed closure whose lifetime [`Pool::run`] erases and then guarantees.
#[derive(Clone, Copy)]
struct Job(*const (dyn Fn(usize) + Sync + 'static));

// SAFETY: the pointee is `Sync` (so it may be called from any thread), and `Pool::run` keeps it
// alive until every call has returned (see there).
unsafe impl Send for Job {}

/// State shared by the caller and the workers, under one mutex.
struct State {
    job: Option<Job>,
    parts: usize,
    /// Next part not yet taken.
    next: usize,
    /// Parts taken from the queue and not yet finished, plus those not yet taken.
    unfinished: usize,
    panicked: bool,
    shutdown: bool,
    /// Workers that have started.
    started: usize,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a job is posted or at shutdown.
    work: Condvar,
    /// Signalled when the last part of a job finishes, and when a worker starts.
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means some thread panicked while holding it; every critical
        // section below leaves the state consistent, so go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take the next part of the current job, if any.
    fn take(st: &mut State) -> Option<(Job, usize)> {
        match st.job {
            Some(job) if st.next < st.parts => {
                st.next += 1;
                Some((job, st.next - 1))
            }
            _ => None,
        }
    }

    /// Run part `i` of `job` and record that it finished.
    fn run_part(&self, job: Job, i: usize) {
        // SAFETY: `job` was taken from the current job while it was posted; `Pool::run` does
        // not return (and so the closure stays borrowed and alive) until `unfinished` is 0, which
        // happens only after this call has returned and been counted below.
        let f = unsafe { &*job.0 };
        let ok = panic::catch_unwind(AssertUnwindSafe(|| f(i))).is_ok();
        let mut st = self.lock();
        st.panicked |= !ok;
        st.unfinished -= 1;
        if st.unfinished == 0 {
            self.done.notify_all();
        }
    }
}

/// A fixed set of worker threads (see the module documentation).
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl core::fmt::Debug for Pool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Pool({} workers)", self.workers.len())
    }
}

impl Pool {
    /// A pool with `workers` threads besides the caller (0: every part runs on the caller).
    ///
    /// # Errors
    /// The operating system refused to start a thread (the threads already started are stopped).
    pub fn new(workers: usize) -> std::io::Result<Pool> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State { job: None, parts: 0, next: 0, unfinished: 0, panicked: false, shutdown: false, started: 0 }),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let mut pool = Pool { shared, workers: Vec::with_capacity(workers) };
        for w in 0..workers {
            let shared = Arc::clone(&pool.shared);
            let handle = std::thread::Builder::new().name(format!("temper-worker-{w}")).spawn(move || worker(&shared))?;
            pool.workers.push(handle);
        }
        // Return once every worker runs, so that their start-up (which allocates: thread names,
        // thread-locals) is over before any job.
        let mut st = pool.shared.lock();
        while st.started < workers {
            st = pool.shared.done.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        drop(st);
        Ok(pool)
    }

    /// Worker threads (the caller is one more).
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Call `f(i)` for every `i < parts`, in parallel, and return when all calls have returned.
    ///
    /// # Panics
    /// Again on this thread, after every part has finished, if some part panicked.
    ///
    /// `&mut self`: one job at a time (a second concurrent job would overwrite the first).
    pub fn run<F: Fn(usize) + Sync>(&mut self, parts: usize, f: &F) {
        if parts <= 1 || self.workers.is_empty() {
            (0..parts).for_each(f);
            return;
        }
        let short: &(dyn Fn(usize) + Sync) = f;
        // SAFETY: only the lifetime is changed. The erased reference is reachable through the
        // shared state only between posting below and the wait for `unfinished == 0` at the end
        // of this function, which every path out of it (including unwinding from part 0, which
        // is caught) goes through; `job` is cleared before returning, so no worker can take a
        // part afterwards.
        let long: &'static (dyn Fn(usize) + Sync) = unsafe { core::mem::transmute(short) };
        let job = Job(long);
        {
            let mut st = self.shared.lock();
            st.job = Some(job);
            st.parts = parts;
            st.next = 1;
            st.unfinished = parts;
            st.panicked = false;
        }
        self.shared.work.notify_all();
        self.shared.run_part(job, 0);
        // Help with the parts no worker has taken yet, then wait for the others.
        loop {
            let next = Shared::take(&mut self.shared.lock());
            match next {
                Some((job, i)) => self.shared.run_part(job, i),
                None => break,
            }
        }
        let mut st = self.shared.lock();
        while st.unfinished > 0 {
            st = self.shared.done.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.job = None;
        let panicked = st.panicked;
        drop(st);
        if panicked {
            panic!("temper: a kernel part panicked on a worker thread or the caller");
        }
    }
}

fn worker(shared: &Shared) {
    let mut st = shared.lock();
    st.started += 1;
    shared.done.notify_all();
    loop {
        if st.shutdown {
            return;
        }
        match Shared::take(&mut st) {
            Some((job, i)) => {
                drop(st);
                shared.run_part(job, i);
                st = shared.lock();
            }
            None => st = shared.work.wait(st).unwrap_or_else(|e| e.into_inner()),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.work.notify_all();
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_part_runs_once_on_borrowed_data() {
        let mut pool = Pool::new(3).expect("threads");
        for parts in [1, 2, 3, 4, 7, 64] {
            let mut out = vec![0usize; 64];
            let size = 64usize.div_ceil(parts);
            let slots: Vec<Mutex<&mut [usize]>> = out.chunks_mut(size).map(Mutex::new).collect();
            let calls = AtomicUsize::new(0);
            pool.run(slots.len(), &|i| {
                calls.fetch_add(1, Ordering::Relaxed);
                for v in slots[i].lock().unwrap().iter_mut() {
                    *v += i + 1;
                }
            });
            assert_eq!(calls.load(Ordering::Relaxed), slots.len());
            drop(slots);
            for (j, &v) in out.iter().enumerate() {
                assert_eq!(v, j / size + 1, "parts {parts}, element {j}");
            }
        }
    }

    #[test]
    fn a_panicking_part_is_reported_after_all_parts_finish() {
        let mut pool = Pool::new(2).expect("threads");
        let finished = AtomicUsize::new(0);
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            pool.run(6, &|i| {
                if i == 3 {
                    panic!("part 3");
                }
                finished.fetch_add(1, Ordering::Relaxed);
            })
        }));
        assert!(r.is_err());
        assert_eq!(finished.load(Ordering::Relaxed), 5);
        // the pool still works afterwards
        let n = AtomicUsize::new(0);
        pool.run(4, &|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn zero_workers_runs_on_the_caller() {
        let mut pool = Pool::new(0).expect("no threads");
        let n = AtomicUsize::new(0);
        pool.run(5, &|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 5);
    }
}
