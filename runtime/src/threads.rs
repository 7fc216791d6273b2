//! Optional intra-op threads (std): [`crate::Session::with_threads`].
//!
//! Large convolutions and depthwise convolutions are split into bands of output rows (or
//! images) with [`temper_kernels::split::rows`], fully connected layers into row blocks (or,
//! for one row, into blocks of 16 output channels); the parts run on a
//! [`temper_kernels::parallel::Pool`]. Each part is an ordinary kernel call on its own output
//! bytes, so the result is bit-identical to one thread. Scratch for parts other than the first
//! is allocated once, when the threads are started; `run` still allocates nothing.

use std::sync::Mutex;
use temper_kernels::parallel::Pool;
use temper_kernels::reference::conv::{ConvArgs, DepthwiseArgs};
use temper_kernels::split::{self, Part, MAX_PARTS};
use temper_kernels::{driver, pack, Gemm, Kernels};

/// Most threads a session uses (caller included).
pub const MAX_THREADS: usize = MAX_PARTS;

/// Multiply-accumulates per part below which a layer is not split further (16 Mi, about 40 µs
/// on one AVX-512 VNNI core): waking a sleeping worker costs that much on the 2-vCPU virtual
/// machine we measure on (`kernels/examples/pool_bench.rs`), less on bare metal. Tune it per
/// machine with [`crate::Session::set_min_work_per_part`] (`temper-run bench --split-min`).
pub const MIN_WORK_PER_PART: usize = 1 << 24;

/// The pool and the scratch of parts `1 ..` (part 0 uses the arena's).
pub(crate) struct Threads {
    pool: Pool,
    threads: usize,
    scratch: Vec<Vec<i8>>,
    /// Multiply-accumulates per part below which layers are not split further.
    pub(crate) min_work: usize,
}

impl core::fmt::Debug for Threads {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Threads({})", self.threads)
    }
}

/// One optional mutable slice per part, taken by the part that owns it.
type Slots<'o> = [Mutex<Option<&'o mut [i8]>>; MAX_PARTS];

fn empty_slots<'o>() -> Slots<'o> {
    core::array::from_fn(|_| Mutex::new(None))
}

/// Cut `out` into the parts' disjoint, in-order ranges `[start, end)`.
fn cut<'o>(mut out: &'o mut [i8], ranges: impl Iterator<Item = (usize, usize)>) -> Slots<'o> {
    let mut slots = empty_slots();
    let mut base = 0;
    for (slot, (start, end)) in slots.iter_mut().zip(ranges) {
        let rest = core::mem::take(&mut out);
        let (_, tail) = rest.split_at_mut(start - base);
        let (mid, tail) = tail.split_at_mut(end - start);
        *slot = Mutex::new(Some(mid));
        out = tail;
        base = end;
    }
    slots
}

fn take<'o>(slot: &Mutex<Option<&'o mut [i8]>>) -> Option<&'o mut [i8]> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).take()
}

impl Threads {
    /// `threads` threads in all (2 ..= [`MAX_THREADS`]); every part gets `scratch_len` bytes.
    pub(crate) fn new(threads: usize, scratch_len: usize) -> std::io::Result<Threads> {
        let threads = threads.clamp(2, MAX_THREADS);
        Ok(Threads {
            pool: Pool::new(threads - 1)?,
            threads,
            scratch: vec![vec![0; scratch_len]; threads - 1],
            min_work: MIN_WORK_PER_PART,
        })
    }

    /// Threads in all.
    pub(crate) fn count(&self) -> usize {
        self.threads
    }

    fn parts(&self, work: usize, max: usize) -> usize {
        (work / self.min_work.max(1)).min(self.threads).min(max)
    }

    /// Run a convolution in parts; `false` (nothing done) when it is too small to split.
    pub(crate) fn conv(&mut self, k: &Kernels, a: &ConvArgs<'_>, out: &mut [i8], scratch: &mut [i8]) -> bool {
        let work = a.geom.output.len().saturating_mul(a.geom.k());
        self.in_bands(&a.geom, work, out, Some(scratch), |p, o, s| {
            let sub = ConvArgs { geom: p.geom, input: &a.input[p.input_offset..], ..*a };
            (k.conv2d)(&sub, o, s);
        })
    }

    /// Run a depthwise convolution in parts; `false` (nothing done) when it is too small.
    pub(crate) fn depthwise(&mut self, k: &Kernels, a: &DepthwiseArgs<'_>, out: &mut [i8]) -> bool {
        // depthwise layers do several times less work per multiply-accumulate than GEMMs
        let work = a.geom.output.len().saturating_mul(a.geom.kh * a.geom.kw * 4);
        self.in_bands(&a.geom, work, out, None, |p, o, _| {
            (k.depthwise2d)(&DepthwiseArgs { geom: p.geom, input: &a.input[p.input_offset..], ..*a }, o);
        })
    }

    /// Split a layer of geometry `g` into bands ([`split::rows`]) and run `part(band, its output,
    /// its scratch)` for each on the pool (part 0's scratch is `scratch`, the others' the pool's;
    /// empty when `scratch` is `None`). `false` (nothing done) when it is too small to split.
    fn in_bands(
        &mut self,
        g: &temper_kernels::Conv2d,
        work: usize,
        out: &mut [i8],
        scratch: Option<&mut [i8]>,
        part: impl Fn(&Part, &mut [i8], &mut [i8]) + Sync,
    ) -> bool {
        let p = self.parts(work, usize::MAX);
        let mut parts = [Part::default(); MAX_PARTS];
        let n = if p >= 2 { split::rows(g, p, &mut parts) } else { 0 };
        if n < 2 || out.len() < g.output.len() {
            return false;
        }
        let outs = cut(out, parts[..n].iter().map(|p| (p.output_start, p.output_end)));
        let mut scr = empty_slots();
        if let Some(first) = scratch {
            scr[0] = Mutex::new(Some(first));
            for (slot, s) in scr[1..].iter_mut().zip(self.scratch.iter_mut()) {
                *slot = Mutex::new(Some(&mut s[..]));
            }
        }
        self.pool.run(n, &|i| {
            if let Some(o) = take(&outs[i]) {
                part(&parts[i], o, take(&scr[i]).unwrap_or(&mut []));
            }
        });
        true
    }

    /// Run a GEMM writing `c` (row stride `ldc`) in parts: blocks of rows, or for one row blocks
    /// of 16 output channels. `false` (nothing done) when it is too small to split.
    pub(crate) fn gemm(&mut self, k: &Kernels, g: &Gemm<'_>, c: &mut [i8], ldc: usize) -> bool {
        let work = g.m.saturating_mul(g.n).saturating_mul(g.k);
        if g.m >= 2 {
            let n = self.parts(work, g.m);
            if n < 2 || ldc < g.n || c.len() < (g.m - 1) * ldc + g.n || g.a.len() < (g.m - 1) * g.lda + g.k {
                return false;
            }
            let rows = |i: usize| (i * g.m / n, (i + 1) * g.m / n);
            // part i owns rows r0 .. r1 of c: elements r0·ldc .. (r1 − 1)·ldc + n
            let outs = cut(c, (0..n).map(&rows).map(|(r0, r1)| (r0 * ldc, (r1 - 1) * ldc + g.n)));
            self.pool.run(n, &|i| {
                if let Some(o) = take(&outs[i]) {
                    let (r0, r1) = rows(i);
                    let sub = Gemm { m: r1 - r0, a: &g.a[r0 * g.lda..], ..*g };
                    (k.gemm)(&sub, o, ldc);
                }
            });
            return true;
        }
        let n = self.parts(work, g.n.div_ceil(pack::NR));
        if g.m != 1 || n < 2 || c.len() < g.n {
            return false;
        }
        let kpad = pack::round_up(g.k, pack::KR);
        let cols = |i: usize| ((i * g.n / n).next_multiple_of(pack::NR).min(g.n), ((i + 1) * g.n / n).next_multiple_of(pack::NR).min(g.n));
        let outs = cut(c, (0..n).map(&cols));
        self.pool.run(n, &|i| {
            let (n0, n1) = cols(i);
            if let (Some(o), true) = (take(&outs[i]), n1 > n0) {
                let sub = Gemm {
                    n: n1 - n0,
                    b: &g.b[n0 * kpad..],
                    bias: &g.bias[n0..],
                    bias_u8: g.bias_u8.get(n0..).unwrap_or(&[]),
                    q: driver::quant_from(&g.q, n0),
                    ..*g
                };
                (k.gemm)(&sub, o, ldc);
            }
        });
        true
    }
}
