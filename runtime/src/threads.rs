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
        Pool { threads: threads.max(1) }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Call `f(rows, out[rows])` over disjoint row ranges covering `out`, in parallel.
    pub fn for_rows<F>(&self, out: &mut [f32], f: F)
    where
        F: Fn(Range<usize>, &mut [f32]) + Sync,
    {
        let n = out.len();
        let threads = self.threads.min(n / MIN_ROWS_PER_THREAD).max(1);
        if threads == 1 {
            f(0..n, out);
            return;
        }
        let per = n.div_ceil(threads);
        std::thread::scope(|scope| {
            let mut chunks = out.chunks_mut(per).enumerate();
            let (_, first) = chunks.next().expect("n > 0");
            for (i, chunk) in chunks {
                let f = &f;
                let start = i * per;
                scope.spawn(move || f(start..start + chunk.len(), chunk));
            }
            f(0..first.len(), first);
        });
    }
}
