//! Cost and scaling of `temper_kernels::parallel::Pool` on this machine (a benchmark, not a
//! test): the round trip of a job whose parts do nothing (wake-up and hand-back), and the
//! speed-up of jobs of fixed compute-bound work (40k, 400k, 4M dependent multiply-adds) split over
//! 1 .. T threads.
//!
//!     cargo run --release -p temper-kernels --example pool_bench -- [T]

use std::hint::black_box;
use std::time::Instant;
use temper_kernels::parallel::Pool;

/// About `n` dependent integer multiply-adds (no memory traffic).
fn work(n: u64, seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    }
    x
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let max: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    for threads in 1..=max {
        let mut pool = Pool::new(threads - 1).expect("threads");
        let empty = median(
            (0..2000)
                .map(|_| {
                    let t = Instant::now();
                    pool.run(threads, &|i| {
                        black_box(i);
                    });
                    t.elapsed().as_secs_f64() * 1e6
                })
                .collect(),
        );
        let mut line = String::new();
        for total in [40_000u64, 400_000, 4_000_000] {
            // `total` multiply-adds in all (about 0.14 ns each on one core), split evenly
            let runs = (40_000_000 / total) as usize;
            let t = median(
                (0..runs)
                    .map(|_| {
                        let t = Instant::now();
                        pool.run(threads, &|i| {
                            black_box(work(total / threads as u64, i as u64));
                        });
                        t.elapsed().as_secs_f64() * 1e6
                    })
                    .collect(),
            );
            line += &format!("  {total:>9} MACs: {t:8.1} µs");
        }
        println!("threads {threads}: empty job {empty:7.2} µs;{line}");
    }
}
