//! The decode crew: the pool's other threads, started for one decode step, spinning between
//! its matrix-vector products instead of sleeping.
//!
//! A decode step of a small model is ~120 to ~210 matrix-vector products of 5 to 50 µs each,
//! separated by a few µs of serial work (norms, RoPE, attention). Rayon's workers go to sleep
//! after a few µs without work, so most sections paid a futex wake-up and ran on one thread
//! (SmolLM2 Q4_1 decoded at 78 tokens/s on one thread and 83 on two). The crew's workers
//! spin on a section counter, so a posted section starts on every thread within a few
//! hundred nanoseconds; they live only as long as the step (a `std::thread::scope`, started
//! once per token, ~20 µs), so they never spin while the runtime waits for anything else.
//!
//! **Graceful under load.** A section's rows are cut into chunks (whole groups of 8 rows,
//! about four per thread) that every thread, the caller included, claims from one counter, so
//! the caller does the chunks nobody claimed. A chunk a worker claimed but has not finished
//! when the caller runs out of chunks is awaited for a few of the caller's own chunk times,
//! then computed by the caller itself (a chunk is a pure function of the section's inputs:
//! both copies are the same bits, and the caller keeps its own). So a worker the OS has
//! descheduled in the middle of a chunk (an oversubscribed machine) costs about one chunk,
//! not a time slice. After ~50 µs of spinning a waiting worker yields its core on every check.
//!
//! Safe code only: a section's job is plain data (the weight matrices borrowed for the
//! step's lifetime, a copy of the quantized activation), and the workers return their rows
//! through atomics.

use core::ops::Range;
use formats::quant::GgmlType;
use kernels::KernelError;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A weight matrix as a section sees it: rows of `n_in` values of type `ty`, row-major, or
/// packed in groups of rows (`packed`: `kernels::packed`, made at load time).
#[derive(Debug, Clone, Copy)]
pub struct Mat<'w> {
    pub ty: GgmlType,
    pub data: &'w [u8],
    pub n_in: usize,
    pub packed: bool,
}

impl Mat<'_> {
    /// Rows `rows` of the matrix times `act` into `out`, through the kernels for its layout.
    pub fn matvec(
        &self,
        rows: Range<usize>,
        act: &[u8],
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        if self.packed {
            kernels::packed::matvec_packed(self.ty, self.data, rows, self.n_in, act, out)
        } else {
            kernels::matvec(self.ty, self.data, rows, self.n_in, act, out)
        }
    }
}

/// One product of a section: `out = mat * act` (`act` quantized for `mat.ty`).
#[derive(Debug)]
pub struct Product<'a, 'w> {
    pub mat: Mat<'w>,
    pub act: &'a [u8],
    pub out: &'a mut [f32],
}

/// How long a waiting thread spins before it starts yielding its core on every check.
const SPIN: Duration = Duration::from_micros(50);

/// Chunks per thread in a section: enough that a late thread's share is taken by the others.
const CHUNKS_PER_THREAD: usize = 4;

/// How long the caller waits for a worker's chunk when it has no measure of its own.
const PATIENCE: Duration = Duration::from_micros(100);

/// Fewest rows in a chunk (a multiple of 8, so the 8-row interleaved kernels see whole groups).
const MIN_CHUNK_ROWS: usize = 64;

/// Spin until `done()`, then yield between checks.
fn wait_until(done: impl Fn() -> bool) {
    let start = Instant::now();
    let mut spins = 0u32;
    while !done() {
        spins = spins.wrapping_add(1);
        if spins % 64 == 0 && start.elapsed() > SPIN {
            std::thread::yield_now();
        } else {
            core::hint::spin_loop();
        }
    }
}

/// A chunk of a section: (product, its rows, the product's first row in the section's row
/// space, where the workers' results go in [`Shared::out`]).
type Chunk = (usize, Range<usize>, usize);

/// The posted section, as the workers copy it.
#[derive(Debug, Default)]
struct Job<'w> {
    /// The section number this job belongs to.
    seq: u32,
    /// Each product's matrix and activation bytes.
    mats: Vec<(Mat<'w>, Vec<u8>)>,
    chunks: Vec<Chunk>,
}

impl<'w> Job<'w> {
    /// Make `self` section `seq` of these matrices and activations and `chunks`, reusing
    /// allocations.
    fn assign<'a>(
        &mut self,
        seq: u32,
        mats: impl ExactSizeIterator<Item = (Mat<'w>, &'a [u8])>,
        chunks: &[Chunk],
    ) {
        self.seq = seq;
        self.mats.truncate(mats.len());
        for (i, (m, act)) in mats.enumerate() {
            match self.mats.get_mut(i) {
                Some(mine) => {
                    mine.0 = m;
                    mine.1.clear();
                    mine.1.extend_from_slice(act);
                }
                None => self.mats.push((m, act.to_vec())),
            }
        }
        self.chunks.clear();
        self.chunks.extend_from_slice(chunks);
    }
}

/// What the caller and the workers share.
#[derive(Debug)]
struct Shared<'o, 'w> {
    /// The number of the last posted section; workers start a section when it changes.
    seq: AtomicU32,
    quit: AtomicBool,
    /// `(section << 32) | next unclaimed chunk`: a claim names its section, so a thread that
    /// wakes late for an old section claims nothing of the new one.
    claim: AtomicU64,
    /// Per chunk `(section << 32) | worker + 1` once a worker has its rows in its `out`.
    done: Vec<AtomicU64>,
    job: Mutex<Job<'w>>,
    /// Per worker, `rows` f32 bits: the rows it computed, by their row in the section's row
    /// space (worker `w` at `w * rows`).
    out: &'o [AtomicU32],
    rows: usize,
    error: Mutex<Option<KernelError>>,
}

impl Shared<'_, '_> {
    /// The next chunk of section `seq`, if any is left.
    fn claim(&self, seq: u32, n_chunks: usize) -> Option<usize> {
        let mut cur = self.claim.load(Ordering::Acquire);
        loop {
            let next = (cur & 0xffff_ffff) as usize;
            if (cur >> 32) as u32 != seq || next >= n_chunks {
                return None;
            }
            match self.claim.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(next),
                Err(now) => cur = now,
            }
        }
    }

    /// The worker that finished chunk `c` of section `seq`, if one has.
    fn done_by(&self, c: usize, seq: u32) -> Option<usize> {
        let tag = self.done[c].load(Ordering::Acquire);
        ((tag >> 32) as u32 == seq && tag & 0xffff_ffff > 0)
            .then(|| (tag & 0xffff_ffff) as usize - 1)
    }

    fn fail(&self, e: KernelError) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(e);
    }
}

/// Worker `w`: wait for a section, copy its job, do chunks until none are left; until `quit`.
fn worker(shared: &Shared<'_, '_>, w: usize) {
    let mut job = Job::default();
    let mut rows: Vec<f32> = Vec::new();
    let mut seen = 0u32;
    let out = &shared.out[w * shared.rows..(w + 1) * shared.rows];
    loop {
        wait_until(|| {
            shared.seq.load(Ordering::Acquire) != seen || shared.quit.load(Ordering::Acquire)
        });
        if shared.quit.load(Ordering::Acquire) {
            return;
        }
        {
            let posted = shared.job.lock().unwrap_or_else(|p| p.into_inner());
            let mats = posted.mats.iter().map(|(m, act)| (*m, act.as_slice()));
            job.assign(posted.seq, mats, &posted.chunks);
        }
        seen = job.seq;
        while let Some(c) = shared.claim(job.seq, job.chunks.len()) {
            let (p, range, at) = job.chunks[c].clone();
            let (mat, act) = &job.mats[p];
            rows.resize(range.len(), 0.0);
            let r = mat.matvec(range.clone(), act, &mut rows);
            if let Err(e) = r {
                shared.fail(e);
            }
            for (slot, v) in out[at + range.start..at + range.end].iter().zip(&rows) {
                slot.store(v.to_bits(), Ordering::Relaxed);
            }
            let tag = (u64::from(job.seq) << 32) | (w as u64 + 1);
            shared.done[c].store(tag, Ordering::Release);
        }
    }
}

/// The caller's side of the crew, handed to a decode step by [`super::Pool::decode`].
#[derive(Debug)]
pub struct Crew<'s, 'w> {
    threads: usize,
    shared: &'s Shared<'s, 'w>,
    /// Sections run on rayon instead (`SINTRA_POOL=rayon`).
    rayon: Option<&'s super::Pool>,
    /// The current section's chunks, and which of them the caller did itself.
    chunks: RefCell<Vec<Chunk>>,
    mine: RefCell<Vec<bool>>,
}

/// `out = mat * act` on one thread.
fn matvec_here(p: &mut Product<'_, '_>) -> Result<(), KernelError> {
    let rows = 0..p.out.len();
    p.mat.matvec(rows, p.act, p.out)
}

impl<'w> Crew<'_, 'w> {
    /// Run `products` (each `out = mat * act`) across the crew; returns the first kernel
    /// error. Every row's value is the one `kernels::matvec` gives it on any row range.
    pub fn matvecs(&self, products: &mut [Product<'_, 'w>]) -> Result<(), KernelError> {
        if let Some(pool) = self.rayon {
            for p in products.iter_mut() {
                let m = p.mat;
                let act = p.act;
                pool.for_rows(p.out, |rows, out| m.matvec(rows, act, out))?;
            }
            return Ok(());
        }
        let total: usize = products.iter().map(|p| p.out.len()).sum();
        // One thread, a section too small to share, or wider than the crew was sized for
        // (not reached: it is sized by the widest matrix).
        if self.threads == 1 || total < 2 * MIN_CHUNK_ROWS || total > self.shared.rows {
            return products.iter_mut().try_for_each(matvec_here);
        }
        let chunk_rows = (total / (self.threads * CHUNKS_PER_THREAD))
            .next_multiple_of(8)
            .max(MIN_CHUNK_ROWS);
        let mut chunks = self.chunks.borrow_mut();
        chunks.clear();
        let mut at = 0;
        for (i, p) in products.iter().enumerate() {
            let n = p.out.len();
            let mut r = 0;
            while r < n {
                let end = (r + chunk_rows).min(n);
                chunks.push((i, r..end, at));
                r = end;
            }
            at += n;
        }
        let n_chunks = chunks.len();
        if n_chunks > self.shared.done.len() {
            return products.iter_mut().try_for_each(matvec_here);
        }
        let seq = {
            let mut job = self.shared.job.lock().unwrap_or_else(|p| p.into_inner());
            let seq = job.seq.wrapping_add(1);
            job.assign(seq, products.iter().map(|p| (p.mat, p.act)), &chunks);
            self.shared
                .claim
                .store(u64::from(seq) << 32, Ordering::Release);
            seq
        };
        self.shared.seq.store(seq, Ordering::Release);

        // The caller's share: chunks until none are left, straight into the outputs.
        let mut mine = self.mine.borrow_mut();
        mine.clear();
        mine.resize(n_chunks, false);
        let mut result = Ok(());
        let mut compute = |c: usize, mine: &mut [bool]| {
            let (i, range, _) = chunks[c].clone();
            let p = &mut products[i];
            let out = &mut p.out[range.clone()];
            if let Err(e) = p.mat.matvec(range, p.act, out) {
                result = Err(e);
            }
            mine[c] = true;
        };
        let started = Instant::now();
        let mut done_here = 0u32;
        while let Some(c) = self.shared.claim(seq, n_chunks) {
            compute(c, &mut mine);
            done_here += 1;
        }
        // The workers' chunks: wait a few of our chunk times for each, then do it here.
        let patience = match done_here {
            0 => PATIENCE,
            n => (started.elapsed() / n * 3).max(PATIENCE / 8),
        };
        for c in 0..n_chunks {
            if mine[c] {
                continue;
            }
            let since = Instant::now();
            let mut spins = 0u32;
            while self.shared.done_by(c, seq).is_none() {
                spins = spins.wrapping_add(1);
                if spins % 16 == 0 && since.elapsed() > patience {
                    compute(c, &mut mine);
                    break;
                }
                core::hint::spin_loop();
            }
        }

        // The workers' rows.
        let rows = self.shared.rows;
        for (c, (i, range, at)) in chunks.iter().enumerate() {
            let Some(w) = (!mine[c]).then(|| self.shared.done_by(c, seq)).flatten() else {
                continue;
            };
            let from = &self.shared.out[w * rows + at + range.start..w * rows + at + range.end];
            for (o, v) in products[*i].out[range.clone()].iter_mut().zip(from) {
                *o = f32::from_bits(v.load(Ordering::Relaxed));
            }
        }
        if let Some(e) = self
            .shared
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            result = Err(e);
        }
        result
    }
}

/// Run `f` with the sections on `pool`'s rayon threads (to compare with the crew).
pub(super) fn with_rayon<'w, R: Send>(
    pool: &super::Pool,
    f: impl FnOnce(&Crew<'_, 'w>) -> R + Send,
) -> R {
    pool.run(|| rayon_crew(pool, f))
}

fn rayon_crew<'w, R>(pool: &super::Pool, f: impl FnOnce(&Crew<'_, 'w>) -> R) -> R {
    let shared = Shared::new(pool.threads(), &[], 0);
    f(&Crew::new(pool.threads(), &shared, Some(pool)))
}

impl<'o> Shared<'o, '_> {
    /// For `threads` threads, their results in `out` (`rows` per worker).
    fn new(threads: usize, out: &'o [AtomicU32], rows: usize) -> Self {
        Shared {
            seq: AtomicU32::new(0),
            quit: AtomicBool::new(false),
            claim: AtomicU64::new(0),
            // Chunks never exceed this: each product adds at most one partial chunk.
            done: (0..threads * CHUNKS_PER_THREAD + 8)
                .map(|_| AtomicU64::new(0))
                .collect(),
            job: Mutex::new(Job::default()),
            out,
            rows,
            error: Mutex::new(None),
        }
    }
}

impl<'s, 'w> Crew<'s, 'w> {
    fn new(threads: usize, shared: &'s Shared<'s, 'w>, rayon: Option<&'s super::Pool>) -> Self {
        Crew {
            threads,
            shared,
            rayon,
            chunks: RefCell::new(Vec::new()),
            mine: RefCell::new(Vec::new()),
        }
    }
}

/// Run `f` with a crew of `threads` threads (the caller and `threads - 1` workers) able to
/// run sections of up to `rows` rows; `out` holds `threads - 1` times `rows` values.
pub(super) fn with_crew<'w, R>(
    threads: usize,
    out: &[AtomicU32],
    rows: usize,
    f: impl FnOnce(&Crew<'_, 'w>) -> R,
) -> R {
    let shared = Shared::new(threads, out, rows);
    let crew = Crew::new(threads, &shared, None);
    if threads <= 1 {
        return f(&crew);
    }
    std::thread::scope(|scope| {
        for w in 0..threads - 1 {
            let shared = &shared;
            scope.spawn(move || worker(shared, w));
        }
        // Workers stop whether `f` returns or unwinds.
        struct Quit<'a>(&'a AtomicBool);
        impl Drop for Quit<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let _quit = Quit(&shared.quit);
        f(&crew)
    })
}

#[cfg(test)]
mod tests {
    use super::super::Pool;
    use super::*;

    /// A deterministic stream of values in -1..1.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// Bytes in u64 storage (the kernels want 8-byte aligned activations).
    fn aligned(bytes: &[u8]) -> Vec<u64> {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        words
    }

    /// Sections of one, two and three products of mixed types and row counts (multiples of 8
    /// and not), on one to four threads (more threads than this machine's cores included, where
    /// workers are descheduled mid-chunk and the caller takes their chunks over), give every
    /// row the bits of a plain `kernels::matvec`, section after section.
    #[test]
    fn crew_sections_are_plain_matvecs_bit_for_bit() {
        let n = 256;
        let shapes = [
            (GgmlType::Q4_0, 96),
            (GgmlType::Q8_0, 200),
            (GgmlType::Q4_K, 1000),
        ];
        let mats: Vec<(GgmlType, usize, Vec<u8>)> = shapes
            .iter()
            .enumerate()
            .map(|(i, &(ty, rows))| {
                let w = formats::quant::quantize(ty, &values(rows * n, i as u64), n, None).unwrap();
                (ty, rows, w)
            })
            .collect();
        let widest = shapes.iter().map(|s| s.1).sum::<usize>();
        // Per section: each product's activation (u64 storage) and its plain matvec.
        type Section = Vec<(Vec<u64>, usize, Vec<f32>)>;
        let sections: Vec<Section> = (0..40u64)
            .map(|section| {
                let x = values(n, 100 + section);
                mats.iter()
                    .map(|(ty, rows, w)| {
                        let len = kernels::activation_bytes(*ty, n).unwrap();
                        let mut a = vec![0u8; len];
                        kernels::quantize_activation(*ty, &x, &mut a).unwrap();
                        let mut o = vec![0f32; *rows];
                        kernels::matvec(*ty, w, 0..*rows, n, &a, &mut o).unwrap();
                        (aligned(&a), len, o)
                    })
                    .collect()
            })
            .collect();
        for threads in 1..=4 {
            let pool = Pool::new(threads);
            // Two decode steps, so that a crew starts after another one ended.
            for step in 0..2 {
                pool.decode(widest, |crew| {
                    for (s, section) in sections.iter().enumerate() {
                        let take = (s + step) % 3 + 1;
                        let mut got: Vec<Vec<f32>> =
                            mats.iter().map(|m| vec![f32::NAN; m.1]).collect();
                        let mut products: Vec<Product<'_, '_>> = got
                            .iter_mut()
                            .zip(section)
                            .zip(&mats)
                            .take(take)
                            .map(|((out, (act, len, _)), (ty, _, w))| Product {
                                mat: Mat {
                                    ty: *ty,
                                    data: w,
                                    n_in: n,
                                    packed: false,
                                },
                                act: &bytemuck::cast_slice::<u64, u8>(act)[..*len],
                                out,
                            })
                            .collect();
                        crew.matvecs(&mut products).unwrap();
                        for (i, (g, (_, _, want))) in got.iter().zip(section).take(take).enumerate()
                        {
                            let same = g.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits());
                            assert!(
                                same,
                                "{threads} threads, step {step}, section {s}, product {i}"
                            );
                        }
                    }
                });
            }
        }
    }
}
