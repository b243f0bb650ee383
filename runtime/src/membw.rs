//! Memory bandwidth: how fast this device streams a buffer much larger than its caches, which
//! bounds token generation (every weight is read once per token).

use formats::wire::MemoryBandwidth;
use std::time::Instant;

/// Fill then sum a buffer of `bytes` (rounded down to 8-byte words, at least 1 MiB) with
/// `threads` threads (0: all cores), `repetitions` times; the best pass of each is reported.
pub fn probe(bytes: u64, threads: u32, repetitions: u32) -> Result<MemoryBandwidth, String> {
    let bytes = bytes.max(1 << 20);
    let words = usize::try_from(bytes / 8)
        .map_err(|_| format!("memory probe of {bytes} bytes is larger than this address space"))?;
    let threads = if threads == 0 {
        crate::sysinfo::cores()
    } else {
        threads as usize
    };
    let mut buf: Vec<u64> = Vec::new();
    buf.try_reserve_exact(words)
        .map_err(|_| format!("cannot allocate {bytes} bytes for the memory probe"))?;
    buf.resize(words, 1);
    let per = words.div_ceil(threads);
    let (mut best_read, mut best_write) = (f64::INFINITY, f64::INFINITY);
    let mut sink = 0u64;
    for rep in 0..repetitions.max(1) {
        let t = Instant::now();
        std::thread::scope(|s| {
            for (i, chunk) in buf.chunks_mut(per).enumerate() {
                s.spawn(move || chunk.fill(rep as u64 ^ i as u64));
            }
        });
        best_write = best_write.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        sink ^= std::thread::scope(|s| {
            let handles: Vec<_> = buf
                .chunks(per)
                .map(|chunk| {
                    s.spawn(move || {
                        // Four independent sums so the loads, not an add chain, are the limit.
                        let mut acc = [0u64; 4];
                        for q in chunk.chunks_exact(4) {
                            for k in 0..4 {
                                acc[k] = acc[k].wrapping_add(q[k]);
                            }
                        }
                        acc.iter().fold(0u64, |a, &b| a.wrapping_add(b))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(0))
                .fold(0u64, u64::wrapping_add)
        });
        best_read = best_read.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(sink);
    let moved = (words * 8) as f64;
    Ok(MemoryBandwidth {
        bytes: (words * 8) as u64,
        threads: threads as u32,
        read_gb_s: moved / best_read.max(1e-9) / 1e9,
        write_gb_s: moved / best_write.max(1e-9) / 1e9,
    })
}
