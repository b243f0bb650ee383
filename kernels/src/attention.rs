//! Flash attention over an f16 KV cache, as ggml's CPU backend runs it for one query (llama.cpp
//! enables it on CPU): the query rounded to f16, f16 dot products with the keys, an online
//! softmax (running maximum `m`, sum `S`, libm's `expf`) and the weighted values accumulated in
//! f16 (rounded at every step), divided by `S` at the end.
//!
//! [`KernelTable::attend_f16`] takes several queries that read the same keys and values (the
//! query heads of one key/value head, for one token or for several tokens of a prompt, each
//! seeing its own number of positions): **each query's result is the same, bit for bit, as if
//! it ran alone**, so a prompt's attention in a batch is the attention of its tokens one at a
//! time. The portable version ([`attend_f16_generic`], every table without its own) is the
//! table's `vec_dot_f16`, `vec_scale_f16` and `vec_mad_f16` per query and position; AVX2 runs
//! the same steps inlined (`x86::avx2::attention`).

use crate::dispatch::KernelTable;
use crate::error::KernelError;
use formats::quant::fp16_bits_to_fp32;

/// The most queries one [`KernelTable::attend_f16`] call takes.
pub const MAX_QUERIES: usize = 32;

/// One query of [`KernelTable::attend_f16`]: its head as f16 bits, how many cached positions
/// (from the first) it attends over, and where its result goes (as many values as the head).
#[derive(Debug)]
pub struct F16Query<'a> {
    pub q16: &'a [u16],
    pub n_pos: usize,
    pub out: &'a mut [f32],
}

/// `attend_f16` with its checks done: `queries` (at most [`MAX_QUERIES`], heads of `hd`
/// values, outputs as long), keys and values of position `p` at `p * stride` in `k` and `v`
/// (both long enough for every query's positions), `vkq` one f16 accumulator per query.
pub(crate) type AttendF16 = fn(
    queries: &mut [F16Query<'_>],
    k: &[u16],
    v: &[u16],
    stride: usize,
    scale: f32,
    vkq: &mut [u16],
);

impl KernelTable {
    /// Flash attention of `queries` over an f16 cache: query `g` attends over positions
    /// `0..queries[g].n_pos`, whose keys and values are `k[p * stride..][..hd]` and
    /// `v[p * stride..][..hd]` (`hd = q16.len()`, the same for every query, as long as each
    /// `out`); scores are `q . k * scale`. `vkq` is scratch of at least `queries.len() * hd`
    /// halves. Each result is bit-identical to the same query run alone. At most
    /// [`MAX_QUERIES`] queries; a query of no positions gets zeros.
    pub fn attend_f16(
        &self,
        queries: &mut [F16Query<'_>],
        k: &[u16],
        v: &[u16],
        stride: usize,
        scale: f32,
        vkq: &mut [u16],
    ) -> Result<(), KernelError> {
        let Some(hd) = queries.first().map(|q| q.q16.len()) else {
            return Ok(());
        };
        let bad = |problem: &'static str| Err(KernelError::Attention(problem));
        if queries.len() > MAX_QUERIES {
            return bad("more queries than MAX_QUERIES");
        }
        if queries
            .iter()
            .any(|q| q.q16.len() != hd || q.out.len() != hd)
        {
            return bad("queries and outputs of unequal head sizes");
        }
        if vkq.len() < queries.len() * hd {
            return bad("accumulator scratch shorter than one head per query");
        }
        let n_pos = queries.iter().map(|q| q.n_pos).max().unwrap_or(0);
        if n_pos > 0 {
            let need = (n_pos - 1)
                .checked_mul(stride)
                .and_then(|x| x.checked_add(hd));
            if need.is_none_or(|need| k.len() < need || v.len() < need) {
                return bad("keys or values shorter than the positions attended over");
            }
        }
        match self.attend_f16 {
            Some(kernel) => kernel(queries, k, v, stride, scale, vkq),
            None => attend_f16_generic(self, queries, k, v, stride, scale, vkq),
        }
        Ok(())
    }
}

/// [`KernelTable::attend_f16`] from the table's vector steps, one query after the other.
pub(crate) fn attend_f16_generic(
    t: &KernelTable,
    queries: &mut [F16Query<'_>],
    k: &[u16],
    v: &[u16],
    stride: usize,
    scale: f32,
    vkq: &mut [u16],
) {
    let hd = query_len(queries);
    for (query, acc) in queries.iter_mut().zip(vkq.chunks_exact_mut(hd)) {
        acc.fill(0);
        let (mut sum, mut m) = (0f32, f32::NEG_INFINITY);
        for p in 0..query.n_pos {
            let base = p * stride;
            let score = t.vec_dot_f16(&k[base..base + hd], query.q16) * scale;
            let (mut ms, mut vs) = (1f32, 1f32);
            if score > m {
                // A new maximum: rescale what was accumulated.
                ms = crate::scalar::expf(m - score);
                m = score;
                t.vec_scale_f16(acc, ms);
            } else {
                vs = crate::scalar::expf(score - m);
            }
            t.vec_mad_f16(acc, &v[base..base + hd], vs);
            sum = fmaf(sum, ms, vs); // ggml's build fuses `S*ms + vs`
        }
        let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
        for (o, &a) in query.out.iter_mut().zip(acc.iter()) {
            *o = fp16_bits_to_fp32(a) * inv;
        }
    }
}

extern "C" {
    /// The C library's `fmaf` (what `f32::mul_add` calls where `std` is linked and the target
    /// has no FMA instruction; this crate is `no_std`).
    #[link_name = "fmaf"]
    fn libm_fmaf(x: f32, y: f32, z: f32) -> f32;
}

/// `x * y + z` rounded once.
fn fmaf(x: f32, y: f32, z: f32) -> f32 {
    // SAFETY: `fmaf` is a pure function of its arguments, defined for every f32.
    unsafe { libm_fmaf(x, y, z) }
}

/// The head size of `queries` (at least 1, for `chunks_exact`).
pub(crate) fn query_len(queries: &[F16Query<'_>]) -> usize {
    queries.first().map_or(1, |q| q.q16.len().max(1))
}
