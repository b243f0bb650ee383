//! Parallel sections for matrix-vector products: the output rows are split into contiguous
//! ranges, one per thread, so each thread streams its own stretch of the weight matrix.
//!
//! This version spawns scoped threads per section; issue #4 measures it against a persistent
//! spin-barrier pool and rayon and keeps the fastest.

use core::ops::Range;

#[derive(Debug, Clone, Copy)]
pub struct Pool {
    threads: usize,
}

/// Below this many output rows per thread a section runs on one thread: spawning costs more.
const MIN_ROWS_PER_THREAD: usize = 64;

impl Pool {
    pub fn new(threads: usize) -> Self {
        Pool {
            threads: threads.max(1),
        }
    }

    pub fn threads(&self) -> usize {
        self.threads
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
