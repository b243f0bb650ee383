//! AVX-VNNI's offset kernels for the signed 32-value types: unsigned quants, `vpdpbusd` from
//! `-offset * sum(y)`, each token tile prepared once per row block.

use super::signed::{
    finish_signed, matmul_q4_0_q8_0_vnni, matmul_q5_0_q8_0_vnni, matmul_q8_0_q8_0_vnni,
};
use super::*;

/// The most blocks per row the offset kernels ([`offset_matmul`]) prepare a token tile for
/// (rows of up to 8192 values); longer rows take the signed tiles.
const NB_OFFSET: usize = 256;
/// Rows per tile of the offset kernels.
const R_OFF: usize = 2;
/// Tokens per tile of the offset kernels.
const T_OFF: usize = 6;

/// One block of a token tile prepared for the offset kernels: each token's quants, its
/// correction lanes (`-offset * (sum of each four quants)`, the accumulator `vpdpbusd` starts
/// from) and the tokens' scales (lane `t`: token `t`). Everything a tile reads of the tokens
/// at fixed offsets from one pointer.
#[derive(Clone, Copy)]
struct OffsetBlock<const T: usize> {
    y: [__m256i; T],
    corr: [__m256i; T],
    dy: __m256,
}

/// A token tile's blocks prepared for the offset kernels.
struct OffsetPrep<const T: usize> {
    blocks: [OffsetBlock<T>; NB_OFFSET],
}

impl<const T: usize> OffsetPrep<T> {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    fn new() -> Self {
        let zero = OffsetBlock {
            y: [_mm256_setzero_si256(); T],
            corr: [_mm256_setzero_si256(); T],
            dy: _mm256_setzero_ps(),
        };
        OffsetPrep {
            blocks: [zero; NB_OFFSET],
        }
    }

    /// Prepare the first `nb` (at most [`NB_OFFSET`]) blocks of the tokens `ys` for weights
    /// whose quants are stored `off` (every byte) above their value.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    fn fill(&mut self, ys: [&[BlockQ8_0]; T], nb: usize, off: __m256i) {
        let zero = _mm256_setzero_si256();
        for (b, p) in self.blocks.iter_mut().enumerate().take(nb) {
            let mut d = [0u16; T];
            for t in 0..T {
                let y = &ys[t][b];
                d[t] = y.d;
                p.y[t] = load256(&y.qs);
                let s = _mm256_dpbusd_avx_epi32(zero, off, p.y[t]);
                p.corr[t] = _mm256_sub_epi32(zero, s);
            }
            p.dy = halves(d);
        }
    }
}

/// `RR` rows of unsigned quants (`unpack`: a block's f16 scale and its quants plus the
/// offset) by the `TT` tokens prepared in `p`, over `nb` blocks: each pair's block gets
/// `vec_dot`'s float step, `fma(fp16(x.d) * fp16(y.d), float(lanes), acc)`, on the same i32
/// lanes, as `vpdpbusd(-offset * sum(y), q + offset, y) = sum(q * y)` exactly (four products
/// a lane). Then each accumulator's lanes summed as `vec_dot` does.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
fn offset_tile<X, const RR: usize, const TT: usize>(
    xs: [&[X]; RR],
    p: &OffsetPrep<TT>,
    nb: usize,
    unpack: &impl Fn(&X) -> (u16, __m256i),
) -> [[f32; TT]; RR] {
    let mut acc = [[_mm256_setzero_ps(); TT]; RR];
    for (b, pb) in p.blocks.iter().enumerate().take(nb) {
        let mut q = [_mm256_setzero_si256(); RR];
        let mut dd = [[0f32; 8]; RR];
        for r in 0..RR {
            let x = &xs[r][b];
            prefetch_ahead(x);
            let (d, qu) = unpack(x);
            q[r] = qu;
            dd[r] = lanes(_mm256_mul_ps(_mm256_set1_ps(fp16(d)), pb.dy));
        }
        // Each pair's scale is read back from memory by a broadcast load (a load port, no
        // shuffle): without the barrier the compiler picks lanes out of a register, two
        // shuffles a pair on the one port that does them.
        let dd = core::hint::black_box(&dd);
        for t in 0..TT {
            for r in 0..RR {
                let s = _mm256_dpbusd_avx_epi32(pb.corr[t], q[r], pb.y[t]);
                let d = _mm256_set1_ps(dd[r][t]);
                acc[r][t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc[r][t]);
            }
        }
    }
    finish_signed(acc)
}

/// The driver of the offset kernels: the first `rows` rows of `nb` (at most [`NB_OFFSET`])
/// blocks times the `outs.len()` tokens of `acts`, in row blocks of about [`ROW_BLOCK_BYTES`]
/// that every token passes over, a tile of [`T_OFF`] tokens prepared once per row block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
fn offset_matmul<X>(
    w: &[X],
    acts: &[BlockQ8_0],
    outs: &mut [&mut [f32]],
    nb: usize,
    rows: usize,
    off: u8,
    unpack: impl Fn(&X) -> (u16, __m256i),
) {
    let n_tokens = outs.len();
    let off = _mm256_set1_epi8(off as i8);
    let full_t = n_tokens / T_OFF * T_OFF;
    let block_rows = (ROW_BLOCK_BYTES / (nb * size_of::<X>()).max(1) / R_OFF).max(1) * R_OFF;
    let row = |r: usize| &w[r * nb..(r + 1) * nb];
    let act = |t: usize| &acts[t * nb..(t + 1) * nb];
    let mut prep = OffsetPrep::<T_OFF>::new();
    let mut prep1 = OffsetPrep::<1>::new();
    for r0 in (0..rows).step_by(block_rows) {
        let r1 = (r0 + block_rows).min(rows);
        for t0 in (0..full_t).step_by(T_OFF) {
            let ys: [&[BlockQ8_0]; T_OFF] = core::array::from_fn(|k| act(t0 + k));
            prep.fill(ys, nb, off);
            let mut r = r0;
            while r + R_OFF <= r1 {
                let xs: [&[X]; R_OFF] = core::array::from_fn(|i| row(r + i));
                let res = offset_tile(xs, &prep, nb, &unpack);
                for (k, o) in outs[t0..t0 + T_OFF].iter_mut().enumerate() {
                    for (i, v) in res.iter().enumerate() {
                        o[r + i] = v[k];
                    }
                }
                r += R_OFF;
            }
            for r in r..r1 {
                let res = offset_tile([row(r)], &prep, nb, &unpack);
                for (k, o) in outs[t0..t0 + T_OFF].iter_mut().enumerate() {
                    o[r] = res[0][k];
                }
            }
        }
        for t in full_t..n_tokens {
            prep1.fill([act(t)], nb, off);
            let mut r = r0;
            while r + R_OFF <= r1 {
                let xs: [&[X]; R_OFF] = core::array::from_fn(|i| row(r + i));
                let res = offset_tile(xs, &prep1, nb, &unpack);
                for (i, v) in res.iter().enumerate() {
                    outs[t][r + i] = v[0];
                }
                r += R_OFF;
            }
            for r in r..r1 {
                outs[t][r] = offset_tile([row(r)], &prep1, nb, &unpack)[0][0];
            }
        }
    }
}

/// `pub unsafe fn $name(w, acts, outs)`: `$w` weights (unsigned quants from `$unpack`, stored
/// `$off` above their value) times Q8_0 activations with AVX-VNNI through [`offset_matmul`];
/// rows of more than [`NB_OFFSET`] blocks through `$signed` (the signed tiles).
macro_rules! offset_kernel {
    ($name:ident, $w:ty, $unpack:ident, $off:expr, $signed:ident, $doc:literal) => {
        #[doc = $doc]
        ///
        /// `outs[t][r]` is the dot product of row `r` of `w` with activation `t` of `acts`,
        /// bit-identical to the vec_dot kernel; `w` holds the rows (as many as the shortest
        /// `outs[t]`) of `acts.len() / outs.len()` blocks each.
        ///
        /// # Safety
        /// The CPU must support AVX2, FMA, F16C and AVX-VNNI.
        #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
        pub unsafe fn $name(w: &[$w], acts: &[BlockQ8_0], outs: &mut [&mut [f32]]) {
            let Some((nb, rows)) = shape(w.len(), acts.len(), outs) else {
                return;
            };
            if nb > NB_OFFSET {
                // SAFETY: the caller guarantees the CPU features, the same for this kernel.
                return unsafe { $signed(w, acts, outs) };
            }
            offset_matmul(w, acts, outs, nb, rows, $off, |x| $unpack(x));
        }
    };
}

/// A Q4_0 block's scale and quants (`q`, stored 8 above the value).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn unsigned_q4_0(x: &BlockQ4_0) -> (u16, __m256i) {
    (x.d, nibbles(&x.qs))
}

/// A Q5_0 block's scale and quants (the nibble and the fifth bit: 16 above the value).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn unsigned_q5_0(x: &BlockQ5_0) -> (u16, __m256i) {
    let high = _mm256_and_si256(bytes_from_bits(x.qh), _mm256_set1_epi8(0x10));
    (x.d, _mm256_or_si256(nibbles(&x.qs), high))
}

/// A Q8_0 block's scale and quants plus 128 (the sign bit flipped).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn unsigned_q8_0(x: &BlockQ8_0) -> (u16, __m256i) {
    let q = load256(&x.qs);
    (x.d, _mm256_xor_si256(q, _mm256_set1_epi8(0x80_u8 as i8)))
}

offset_kernel!(
    matmul_q4_0_q8_0_offset,
    BlockQ4_0,
    unsigned_q4_0,
    8,
    matmul_q4_0_q8_0_vnni,
    "Q4_0 weights times Q8_0 activations with AVX-VNNI on the unsigned nibbles."
);
offset_kernel!(
    matmul_q5_0_q8_0_offset,
    BlockQ5_0,
    unsigned_q5_0,
    16,
    matmul_q5_0_q8_0_vnni,
    "Q5_0 weights times Q8_0 activations with AVX-VNNI on the unsigned five-bit quants."
);
offset_kernel!(
    matmul_q8_0_q8_0_offset,
    BlockQ8_0,
    unsigned_q8_0,
    128,
    matmul_q8_0_q8_0_vnni,
    "Q8_0 weights times Q8_0 activations with AVX-VNNI on the quants plus 128."
);
