//! Parallel sections for matrix products: the output rows are split into contiguous ranges,
//! one per thread, so each thread streams its own stretch of the weight matrix.
//!
//! Decode steps run their matrix-vector products on a [`Crew`] (`crew.rs`): `threads - 1`
//! workers started for the step that spin between sections and claim chunks of rows from a
//! shared counter. Prompt batches (matrix-matrix products, attention over many tokens: fewer,
//! longer sections) run on rayon's persistent workers. `SINTRA_POOL=rayon` runs decode on
//! rayon too and `SINTRA_POOL=scoped` runs every section on freshly spawned scoped threads, so
//! that `sintra-rt bench` can compare them.
//!
//! Three kinds of rayon section: [`Pool::for_rows`] (a matrix-vector product: one output value
//! per row), [`Pool::for_rows_batched`] (a matrix-matrix product: one output row per token,
//! each thread writing its row range of every token's row) and [`Pool::for_units`]
//! (independent units of unequal cost, such as the tokens of a batch in attention).
//!
//! **Rayon against a spinning pool (issue #4).** A first spin-barrier pool (commit 18efffc:
//! every section a barrier over all threads) lost to rayon badly on this loaded 2-core VM
//! (tg128 3-8 tokens/s against rayon's 55-79: a descheduled worker stalled every barrier for
//! a time slice). Rayon was kept, and decode barely scaled: its workers sleep after a few µs
//! without work, so most of the ~120 sections of a step paid a futex wake-up and ran on one
//! thread. The crew fixes both: it spins, and it never waits on a barrier (chunks are claimed,
//! and a chunk a late worker holds is recomputed by the caller after a few chunk times).
//! Measured with `sintra-rt bench -p 512 -n 128 -t 2 -r 3` (release build, SmolLM2-135M,
//! tokens/s, two runs each, interleaved), on this repository's 2-core x86-64 VM (Intel Xeon,
//! AVX2 kernels):
//!
//! | model | machine | rayon tg128 | crew tg128 | rayon pp512 | crew pp512 |
//! | ----- | ------- | ----------: | ---------: | ----------: | ---------: |
//! | Q4_1 | idle | 91, 100 | 141, 158 | 334, 354 | 353, 348 |
//! | Q4_0 | idle | 116, 114 | 177, 161 | 354, 355 | 347, 355 |
//! | Q4_1 (`-p 128 -n 64`) | two busy loops running | 39, 39 | 69, 50 | | |
//!
//! (pp is rayon's in both columns: prompt batches always run there.) One thread measured 54
//! tokens/s beside the two busy loops: the crew still gains under load.

mod crew;

pub use crew::{Crew, Mat, Product};

use core::ops::Range;
use rayon::prelude::*;
use std::sync::atomic::AtomicU32;
use std::sync::Mutex;

#[derive(Debug)]
pub struct Pool {
    threads: usize,
    rayon: Option<rayon::ThreadPool>,
    /// Decode steps run their sections on a [`Crew`] (the default) rather than on rayon.
    crew: bool,
    /// The crew's result rows, kept between steps (sized by the widest matrix seen).
    crew_out: Mutex<Vec<AtomicU32>>,
}

/// Below this many output values per thread a section runs on one thread: spawning costs more.
const MIN_ROWS_PER_THREAD: usize = 64;

/// Below this many tokens per thread a batch's per-token work (norms, quantization, RoPE,
/// SwiGLU) runs on one thread.
const MIN_TOKENS_PER_THREAD: usize = 8;

impl Pool {
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let choice = std::env::var("SINTRA_POOL").unwrap_or_default();
        let scoped = choice == "scoped";
        let rayon = (threads > 1 && !scoped)
            .then(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .ok()
            })
            .flatten();
        Pool {
            threads,
            rayon,
            crew: threads > 1 && !scoped && choice != "rayon",
            crew_out: Mutex::new(Vec::new()),
        }
    }

    /// Which implementation runs the sections (of decode; prompt batches run on rayon).
    pub fn kind(&self) -> &'static str {
        if self.crew {
            "crew"
        } else if self.rayon.is_some() {
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

    /// Run `f` (one decode step) with a [`Crew`] for its matrix-vector products of up to
    /// `max_rows` rows each: the crew's spinning workers by default, rayon's with
    /// `SINTRA_POOL=rayon` or `scoped`, none on one thread.
    pub fn decode<'w, R: Send>(
        &self,
        max_rows: usize,
        f: impl FnOnce(&Crew<'_, 'w>) -> R + Send,
    ) -> R {
        if !self.crew {
            return crew::with_rayon(self, f);
        }
        let mut out = self.crew_out.lock().unwrap_or_else(|p| p.into_inner());
        let need = max_rows * (self.threads - 1);
        if out.len() < need {
            out.resize_with(need, || AtomicU32::new(0));
        }
        crew::with_crew(self.threads, &out, max_rows, f)
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
        self.scoped(
            out.chunks_mut(per)
                .enumerate()
                .map(|(i, chunk)| (i * per..i * per + chunk.len(), chunk)),
            |(rows, chunk)| f(rows, chunk),
        )
    }

    /// A matrix-matrix product's section: `out` holds one row of `n_rows` values per token
    /// (token-major); `f(rows, parts)` gets a range of rows and, for every token in order, the
    /// part of its row for that range (`parts[t] = out[t][rows]`). The ranges are disjoint and
    /// cover `0..n_rows`, one per thread, in parallel; the first error is the result.
    pub fn for_rows_batched<F, E>(&self, out: &mut [f32], n_rows: usize, f: F) -> Result<(), E>
    where
        F: Fn(Range<usize>, &mut [&mut [f32]]) -> Result<(), E> + Sync,
        E: Send,
    {
        if n_rows == 0 {
            return f(0..0, &mut []);
        }
        let n_tokens = out.len() / n_rows;
        let threads = self
            .threads
            .min(n_rows * n_tokens / MIN_ROWS_PER_THREAD)
            .min(n_rows)
            .max(1);
        let per = n_rows.div_ceil(threads);
        let mut parts: Vec<(Range<usize>, Vec<&mut [f32]>)> = (0..n_rows.div_ceil(per))
            .map(|i| {
                (
                    i * per..((i + 1) * per).min(n_rows),
                    Vec::with_capacity(n_tokens),
                )
            })
            .collect();
        for row in out.chunks_exact_mut(n_rows) {
            for ((_, p), chunk) in parts.iter_mut().zip(row.chunks_mut(per)) {
                p.push(chunk);
            }
        }
        let run = |(rows, mut p): (Range<usize>, Vec<&mut [f32]>)| f(rows, &mut p);
        if parts.len() == 1 {
            return parts.into_iter().try_for_each(run);
        }
        if let Some(pool) = &self.rayon {
            return pool.install(|| parts.into_par_iter().try_for_each(run));
        }
        self.scoped(parts.into_iter(), run)
    }

    /// `out` as `n` units of `unit` values each, unit `i` costing about `cost(i)`: `f(units,
    /// out[units])` over disjoint ranges of units covering all of them, one per thread, of
    /// about equal total cost, in parallel; the first error is the result.
    pub fn for_units<T, F, E>(
        &self,
        out: &mut [T],
        unit: usize,
        cost: impl Fn(usize) -> usize,
        f: F,
    ) -> Result<(), E>
    where
        T: Send,
        F: Fn(Range<usize>, &mut [T]) -> Result<(), E> + Sync,
        E: Send,
    {
        let n = out.len().checked_div(unit).unwrap_or(0);
        let threads = self.threads.min(n).max(1);
        if threads == 1 {
            return f(0..n, out);
        }
        let total: usize = (0..n).map(&cost).sum();
        let mut parts = Vec::with_capacity(threads);
        let (mut rest, mut start, mut acc) = (out, 0, 0);
        for i in 0..n {
            acc += cost(i);
            // Close a part once it reaches its share of the cost (the last takes the rest).
            let share = total * (parts.len() + 1) / threads;
            if (acc >= share && parts.len() + 1 < threads) || i + 1 == n {
                let (head, tail) = std::mem::take(&mut rest).split_at_mut((i + 1 - start) * unit);
                parts.push((start..i + 1, head));
                rest = tail;
                start = i + 1;
            }
        }
        let run = |(units, chunk): (Range<usize>, &mut [T])| f(units, chunk);
        if let Some(pool) = &self.rayon {
            return pool.install(|| parts.into_par_iter().try_for_each(run));
        }
        self.scoped(parts.into_iter(), run)
    }

    /// `out` as `n` rows of `unit` values (a batch's tokens): `f(rows, out[rows])` over equal
    /// disjoint ranges of rows, in parallel where there are enough rows for it to pay
    /// ([`MIN_TOKENS_PER_THREAD`] a thread); the first error is the result.
    pub fn for_tokens<T, F, E>(&self, out: &mut [T], unit: usize, f: F) -> Result<(), E>
    where
        T: Send,
        F: Fn(Range<usize>, &mut [T]) -> Result<(), E> + Sync,
        E: Send,
    {
        let n = out.len().checked_div(unit).unwrap_or(0);
        if n < 2 * MIN_TOKENS_PER_THREAD || self.threads == 1 {
            return f(0..n, &mut out[..n * unit]);
        }
        self.for_units(&mut out[..n * unit], unit, |_| 1, f)
    }

    /// Run `f` on every part, the first on this thread and the others on scoped threads.
    fn scoped<P: Send, E: Send>(
        &self,
        mut parts: impl Iterator<Item = P>,
        f: impl Fn(P) -> Result<(), E> + Sync,
    ) -> Result<(), E> {
        std::thread::scope(|scope| {
            let Some(first) = parts.next() else {
                return Ok(());
            };
            let f = &f;
            let handles: Vec<_> = parts.map(|p| scope.spawn(move || f(p))).collect();
            let mut result = f(first);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every section kind hands out disjoint ranges that cover the output, with each value
    /// where its row and token say, on one thread and on several.
    #[test]
    fn sections_cover_their_output_once() {
        for threads in [1, 2, 3] {
            let pool = Pool::new(threads);
            let mut out = vec![0f32; 1000];
            pool.for_rows(&mut out, |rows, o| {
                for (v, r) in o.iter_mut().zip(rows) {
                    *v += r as f32;
                }
                Ok::<(), ()>(())
            })
            .unwrap();
            assert!(out.iter().enumerate().all(|(i, &v)| v == i as f32));

            let (n_rows, n_tokens) = (300, 7);
            let mut out = vec![0f32; n_rows * n_tokens];
            pool.for_rows_batched(&mut out, n_rows, |rows, parts| {
                assert_eq!(parts.len(), n_tokens);
                for (t, part) in parts.iter_mut().enumerate() {
                    assert_eq!(part.len(), rows.len());
                    for (v, r) in part.iter_mut().zip(rows.clone()) {
                        *v += (t * 1000 + r) as f32;
                    }
                }
                Ok::<(), ()>(())
            })
            .unwrap();
            for (i, &v) in out.iter().enumerate() {
                assert_eq!(v, ((i / n_rows) * 1000 + i % n_rows) as f32);
            }

            let mut out = vec![0f32; 5 * 9];
            let seen = std::sync::Mutex::new(Vec::new());
            pool.for_units(
                &mut out,
                9,
                |i| i + 1,
                |units, o| {
                    assert_eq!(o.len(), 9 * units.len());
                    for (u, chunk) in units.clone().zip(o.chunks_exact_mut(9)) {
                        chunk.fill(u as f32 + 1.0);
                    }
                    seen.lock().unwrap().push(units);
                    Ok::<(), ()>(())
                },
            )
            .unwrap();
            assert!(out
                .iter()
                .enumerate()
                .all(|(i, &v)| v == (i / 9) as f32 + 1.0));
            let mut seen = seen.into_inner().unwrap();
            seen.sort_by_key(|r| r.start);
            assert_eq!(seen.len(), threads.min(5));
            assert_eq!(seen.first().unwrap().start, 0);
            assert_eq!(seen.last().unwrap().end, 5);
            assert!(seen.windows(2).all(|w| w[0].end == w[1].start));
        }
    }

    /// An error from any part is the section's result.
    #[test]
    fn an_error_in_any_part_is_returned() {
        let pool = Pool::new(2);
        let mut out = vec![0f32; 4096];
        let r = pool.for_rows(
            &mut out,
            |rows, _| if rows.start > 0 { Err(7) } else { Ok(()) },
        );
        assert_eq!(r, Err(7));
        let r = pool.for_rows_batched(
            &mut out,
            512,
            |rows, _| {
                if rows.start > 0 {
                    Err(8)
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(r, Err(8));
    }
}
