//! Parallel sections for matrix-vector products: the output rows are split into contiguous
//! ranges, one per thread, so each thread streams its own stretch of the weight matrix.
//!
//! Two ways to run a section, chosen by `SINTRA_POOL` (`rayon`, the default, or `scoped`) so
//! that `sintra-rt bench` can compare them: rayon's persistent workers, which spin briefly
//! before sleeping, so back-to-back sections skip the wake-up; or a fresh `std::thread::scope`
//! per section (no shared state at all, ~20 µs of spawning each time).

use core::ops::Range;
use rayon::prelude::*;

#[derive(Debug)]
pub struct Pool {
    threads: usize,
    rayon: Option<rayon::ThreadPool>,
}

/// Below this many output rows per thread a section runs on one thread: spawning costs more.
const MIN_ROWS_PER_THREAD: usize = 64;

impl Pool {
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let scoped = std::env::var("SINTRA_POOL").is_ok_and(|v| v == "scoped");
        let rayon = (threads > 1 && !scoped)
            .then(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .ok()
            })
            .flatten();
        Pool { threads, rayon }
    }

    /// Which implementation runs the sections.
    pub fn kind(&self) -> &'static str {
        if self.rayon.is_some() {
            "rayon"
        } else if self.threads > 1 {
            "scoped"
        } else {
            "single"
        }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Run `f` (a whole forward pass) on the pool, so that the parallel sections inside it
    /// start from one of the pool's own threads: a section is then a cheap fork/join on
    /// workers that are already spinning, instead of a job injected from outside followed by
    /// a sleep on a latch, which costs microseconds per section and there are ~210 a token.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.rayon {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    /// Call `f(rows, out[rows])` over disjoint row ranges covering `out`, in parallel; the
    /// first error any range returns is the result.
    pub fn for_rows<F, E>(&self, out: &mut [f32], f: F) -> Result<(), E>
    where
        F: Fn(Range<usize>, &mut [f32]) -> Result<(), E> + Sync,
        E: Send,
    {
        let n = out.len();
        let threads = self.threads.min(n / MIN_ROWS_PER_THREAD).max(1);
        if threads == 1 {
            return f(0..n, out);
        }
        let per = n.div_ceil(threads);
        if let Some(pool) = &self.rayon {
            return pool.install(|| {
                out.par_chunks_mut(per)
                    .enumerate()
                    .try_for_each(|(i, chunk)| f(i * per..i * per + chunk.len(), chunk))
            });
        }
        std::thread::scope(|scope| {
            let mut chunks = out.chunks_mut(per).enumerate();
            let Some((_, first)) = chunks.next() else {
                return Ok(());
            };
            let handles: Vec<_> = chunks
                .map(|(i, chunk)| {
                    let f = &f;
                    let start = i * per;
                    scope.spawn(move || f(start..start + chunk.len(), chunk))
                })
                .collect();
            let mut result = f(0..first.len(), first);
            for h in handles {
                // A panicking kernel is a bug: re-raise it rather than hide it.
                let r = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
                if result.is_ok() {
                    result = r;
                }
            }
            result
        })
    }
}
