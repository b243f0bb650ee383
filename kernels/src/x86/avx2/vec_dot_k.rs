//! AVX2 dot products of the K-quants with Q8_K activations (ggml's `ggml_vec_dot_q*_K_q8_K`
//! in `arch/x86/quants.c`). Per super-block the unsigned quants are multiplied with the
//! activation quants by `maddubs`, the sub-block scales applied by `madd` into eight i32
//! lanes, and the lanes scaled by `d` into one f32 accumulator. Offsets and minimums are not
//! subtracted per value: they meet the activation's 16-value sums `bsums` instead.

use super::vec_dot::{fp16x8, lanes8, row_sums8};
use super::{
    fp16, hsum_f32x4, hsum_f32x8, hsum_i32x4, hsum_i32x8, load128, load256, prefetch_ahead,
};
use crate::scalar::{scales_mins_k4, scales_q3_k};
use core::arch::x86_64::*;
use formats::quant::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, QK_K};

/// The activation quants of a super-block as 32-byte pieces.
#[inline(always)]
pub(super) fn q8_pieces(y: &BlockQ8K) -> &[[i8; 32]; QK_K / 32] {
    bytemuck::cast_ref(&y.qs)
}

/// The i16 lane `k` (0..8) of each 128-bit half of `v`, broadcast over that half.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn broadcast_i16(v: __m256i, k: usize) -> __m256i {
    let (lo, hi) = (2 * k as i16, 2 * k as i16 + 1);
    _mm256_shuffle_epi8(v, _mm256_set1_epi16((hi << 8) | lo))
}

/// Sixteen i16 scales in both halves of a register, for the 16-value sub-blocks of Q2_K and
/// Q3_K: `(first eight, last eight)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scale_halves(scales8: __m128i) -> (__m256i, __m256i) {
    let all = _mm256_cvtepi8_epi16(scales8);
    let lo = _mm256_castsi256_si128(all);
    let hi = _mm256_extracti128_si256::<1>(all);
    (_mm256_set_m128i(lo, lo), _mm256_set_m128i(hi, hi))
}

/// The scales of the two 16-value sub-blocks of a 32-value piece (`2s` and `2s + 1` of the
/// eight in `scales`, each in both halves), spread over the piece's sixteen i16 pair sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn pair_of_scales(scales: __m256i, s: usize) -> __m256i {
    let lo = _mm_set1_epi16((((4 * s + 1) << 8) | (4 * s)) as i16);
    let hi = _mm_set1_epi16((((4 * s + 3) << 8) | (4 * s + 2)) as i16);
    _mm256_shuffle_epi8(scales, _mm256_set_m128i(hi, lo))
}

/// Q2_K weights (`d * sc * q - dmin * m`, 2-bit `q`) against Q8_K activations.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q2_k_q8_k(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    let m3 = _mm256_set1_epi8(3);
    let m4 = _mm_set1_epi8(0x0f);
    let mut acc = _mm256_setzero_ps();
    for (x, y) in x.iter().zip(y) {
        prefetch_ahead(x);
        let d = y.d * fp16(x.d);
        let dmin = -y.d * fp16(x.dmin);

        // Minimums (high nibbles) against the activation's 16-value sums.
        let packed = load128(&x.scales);
        let mins = _mm256_cvtepi8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(packed), m4));
        let prod = _mm256_madd_epi16(mins, load256(&y.bsums));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod), acc);

        // Value 128 * j + 32 * s + l: bits 2s..2s + 2 of qs[32 * j + l].
        let scales = scale_halves(_mm_and_si128(packed, m4));
        let q2: &[[u8; 32]; 2] = bytemuck::cast_ref(&x.qs);
        let q8 = q8_pieces(y);
        let mut sumi = _mm256_setzero_si256();
        for (j, scales) in [scales.0, scales.1].into_iter().enumerate() {
            let mut bits = load256(&q2[j]);
            for s in 0..4 {
                let q = _mm256_and_si256(bits, m3);
                let p = _mm256_maddubs_epi16(q, load256(&q8[4 * j + s]));
                let p = _mm256_madd_epi16(pair_of_scales(scales, s), p);
                sumi = _mm256_add_epi32(sumi, p);
                // Bits from the next byte enter at the top; two more shifts stay clear of 0-1.
                bits = _mm256_srli_epi16::<2>(bits);
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32x8(acc)
}

/// Q3_K weights (`d * (sc - 32) * (q - 4)`, 3-bit `q`) against Q8_K activations. The low two
/// bits and the "minus 4 unless the high bit is set" are multiplied separately and
/// subtracted, both through `maddubs` on unsigned quants.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q3_k_q8_k(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    let m3 = _mm256_set1_epi8(3);
    let four = _mm256_set1_epi8(4);
    let zero = _mm256_setzero_si256();
    let mut acc = _mm256_setzero_ps();
    for (x, y) in x.iter().zip(y) {
        prefetch_ahead(x);
        let d = y.d * fp16(x.d);
        let unpacked = scales_q3_k(&x.scales);
        let scales8 = _mm_sub_epi8(load128(&unpacked), _mm_set1_epi8(32));
        let scales = scale_halves(scales8);
        let hmask = load256(&x.hmask);

        // Value 128 * j + 32 * s + l: bits 2s..2s + 2 of qs[32 * j + l], minus 4 unless bit
        // 4j + s of hmask[l] is set.
        let q3: &[[u8; 32]; 2] = bytemuck::cast_ref(&x.qs);
        let q8 = q8_pieces(y);
        let mut sumi = _mm256_setzero_si256();
        for (j, scales) in [scales.0, scales.1].into_iter().enumerate() {
            let mut bits = load256(&q3[j]);
            for s in 0..4 {
                let bit = _mm256_set1_epi8((1u8 << (4 * j + s)) as i8);
                let high_clear = _mm256_cmpeq_epi8(_mm256_and_si256(hmask, bit), zero);
                let minus = _mm256_and_si256(high_clear, four);
                let low = _mm256_and_si256(bits, m3);
                let q8 = load256(&q8[4 * j + s]);
                let p = _mm256_sub_epi16(
                    _mm256_maddubs_epi16(low, q8),
                    _mm256_maddubs_epi16(minus, q8),
                );
                let p = _mm256_madd_epi16(pair_of_scales(scales, s), p);
                sumi = _mm256_add_epi32(sumi, p);
                bits = _mm256_srli_epi16::<2>(bits);
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32x8(acc)
}

/// Q4_K/Q5_K's minimums against the activation block sums: four i32 lanes, each two of the
/// eight `mins * (bsums[2i] + bsums[2i + 1])`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn k4_min_products(mins: [u8; 8], y: &BlockQ8K) -> __m128i {
    let bsums = load256(&y.bsums);
    let pair_sums = _mm_hadd_epi16(
        _mm256_castsi256_si128(bsums),
        _mm256_extracti128_si256::<1>(bsums),
    );
    let mins = _mm_cvtepu8_epi16(_mm_set_epi64x(0, i64::from_le_bytes(mins)));
    _mm_madd_epi16(mins, pair_sums)
}

/// Q4_K/Q5_K's eight 6-bit sub-block scales as i16 in both halves of a register.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn k4_scales(scales: [u8; 8]) -> __m256i {
    let sc = _mm_cvtepu8_epi16(_mm_set_epi64x(0, i64::from_le_bytes(scales)));
    _mm256_set_m128i(sc, sc)
}

// One unpacking per K-quant type, shared by the dot products here and the prompt's tiles
// (`matmul/k_quants.rs`): the 256 unsigned quants as eight 32-value pieces, in order, and
// their scales spread over each piece's sixteen i16 pair sums.

/// Q4_K/Q5_K's eight sub-block scales, each over a whole register (piece `k`'s).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn k4_piece_scales(scales: [u8; 8]) -> [__m256i; 8] {
    let scales = k4_scales(scales);
    let mut out = [_mm256_setzero_si256(); 8];
    for (k, o) in out.iter_mut().enumerate() {
        *o = broadcast_i16(scales, k);
    }
    out
}

/// A Q4_K super-block's quants (0..16): value `64j + l` is the low nibble of `qs[32j + l]`,
/// `64j + 32 + l` the high one.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q4_k_quants(x: &BlockQ4K) -> [__m256i; 8] {
    let m4 = _mm256_set1_epi8(0x0f);
    let q4: &[[u8; 32]; 4] = bytemuck::cast_ref(&x.qs);
    let mut q = [_mm256_setzero_si256(); 8];
    for j in 0..4 {
        let bits = load256(&q4[j]);
        q[2 * j] = _mm256_and_si256(bits, m4);
        q[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4);
    }
    q
}

/// A Q5_K super-block's quants (0..32): Q4_K's, plus 16 where bit `2j` (low nibbles) or
/// `2j + 1` (high) of `qh[l]` is set.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q5_k_quants(x: &BlockQ5K) -> [__m256i; 8] {
    let m4 = _mm256_set1_epi8(0x0f);
    let m16 = _mm256_set1_epi8(0x10);
    let q4: &[[u8; 32]; 4] = bytemuck::cast_ref(&x.qs);
    let mut high = load256(&x.qh);
    let mut q = [_mm256_setzero_si256(); 8];
    for j in 0..4 {
        let bits = load256(&q4[j]);
        // Bits 0 and 1 of each byte of `high` to bit 4 (what a shift brings in from the
        // neighbouring byte is masked off).
        let h_lo = _mm256_and_si256(_mm256_slli_epi16::<4>(high), m16);
        let h_hi = _mm256_and_si256(_mm256_slli_epi16::<3>(high), m16);
        q[2 * j] = _mm256_or_si256(_mm256_and_si256(bits, m4), h_lo);
        q[2 * j + 1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4), h_hi);
        high = _mm256_srli_epi16::<2>(high);
    }
    q
}

/// Q4_K/Q5_K's scaled piece sums `sum(sc * q * y)` in eight i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn k4_sumi(
    scales: &[__m256i; 8],
    q: &[__m256i; 8],
    q8: &[[i8; 32]; QK_K / 32],
) -> __m256i {
    let mut sumi = _mm256_setzero_si256();
    for j in 0..4 {
        let p_lo = _mm256_maddubs_epi16(q[2 * j], load256(&q8[2 * j]));
        let p_hi = _mm256_maddubs_epi16(q[2 * j + 1], load256(&q8[2 * j + 1]));
        let p_lo = _mm256_madd_epi16(scales[2 * j], p_lo);
        let p_hi = _mm256_madd_epi16(scales[2 * j + 1], p_hi);
        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p_lo, p_hi));
    }
    sumi
}

/// A Q6_K super-block's quants (0..64). Within each 128: values `l`, `l + 32`, `l + 64`,
/// `l + 96` take the low nibble of `ql[l]`, of `ql[l + 32]`, the high nibble of `ql[l]`, of
/// `ql[l + 32]`, and bits 0-1, 2-3, 4-5, 6-7 of `qh[l]` on top.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q6_k_quants(x: &BlockQ6K) -> [__m256i; 8] {
    let m4 = _mm256_set1_epi8(0x0f);
    let m3 = _mm256_set1_epi8(3);
    let ql: &[[u8; 32]; 4] = bytemuck::cast_ref(&x.ql);
    let qh: &[[u8; 32]; 2] = bytemuck::cast_ref(&x.qh);
    let mut q = [_mm256_setzero_si256(); 8];
    for j in 0..2 {
        let (l0, l1) = (load256(&ql[2 * j]), load256(&ql[2 * j + 1]));
        let h = load256(&qh[j]);
        q[4 * j] = _mm256_or_si256(
            _mm256_and_si256(l0, m4),
            _mm256_slli_epi16::<4>(_mm256_and_si256(h, m3)),
        );
        q[4 * j + 1] = _mm256_or_si256(
            _mm256_and_si256(l1, m4),
            _mm256_slli_epi16::<2>(_mm256_and_si256(h, _mm256_set1_epi8(0x0c))),
        );
        q[4 * j + 2] = _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<4>(l0), m4),
            _mm256_and_si256(h, _mm256_set1_epi8(0x30)),
        );
        q[4 * j + 3] = _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<4>(l1), m4),
            _mm256_srli_epi16::<2>(_mm256_and_si256(h, _mm256_set1_epi8(0xc0_u8 as i8))),
        );
    }
    q
}

/// The i16 scales of Q6_K's piece `i` (its sub-blocks `2i` and `2i + 1`, sixteen values
/// each) over the piece's low and high eight pair sums; `scales` the sixteen i8 scales.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q6_k_piece_scales(scales: __m128i, i: usize) -> __m256i {
    let k = 2 * i as i64;
    let pick = _mm_set_epi64x(0x0101_0101_0101_0101 * (k + 1), 0x0101_0101_0101_0101 * k);
    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, pick))
}

/// Q4_K weights (`d * sc * q - dmin * m`, 4-bit `q`) against Q8_K activations.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_k_q8_k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = _mm_setzero_ps();
    for (x, y) in x.iter().zip(y) {
        prefetch_ahead(x);
        let d = y.d * fp16(x.d);
        let dmin = -y.d * fp16(x.dmin);
        let (sumi, prod) = q4_k_sums(x, y);
        acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32x8(acc) + hsum_f32x4(acc_m)
}

/// A Q4_K super-block's integer sums against a Q8_K one: `sum(sc * q * y)` over eight i32
/// lanes, and the minimums' `sum(m * bsums)` over four ([`k4_min_products`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_sums(x: &BlockQ4K, y: &BlockQ8K) -> (__m256i, __m128i) {
    let (scales, mins) = scales_mins_k4(&x.scales);
    let prod = k4_min_products(mins, y);
    let sumi = k4_sumi(&k4_piece_scales(scales), &q4_k_quants(x), q8_pieces(y));
    (sumi, prod)
}

/// Q4_K weights against Q8_K activations in llama.cpp's 8-row interleaved order
/// (`ggml_gemv_q4_K_8x8_q8_K`; see `vec_dot.rs`): per row and super-block the integer sums of
/// [`q4_k_sums`] whole, `acc = fma(isum, d * y.d, acc)` and `acc_min = fma(imin, dmin * y.d,
/// acc_min)`, and `acc - acc_min` at the end. `out[r]` for row `r` of `w`, which holds
/// `out.len()` rows of `act.len()` super-blocks; a row's result does not depend on the rows
/// around it.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemv_q4_k_8x8_q8_k(w: &[BlockQ4K], act: &[BlockQ8K], out: &mut [f32]) {
    let n = act.len();
    if n == 0 {
        out.fill(0.0);
        return;
    }
    let mut done = 0;
    for (o, rows) in out.chunks_exact_mut(8).zip(w.chunks_exact(8 * n)) {
        let mut acc = _mm256_setzero_ps();
        let mut acc_min = _mm256_setzero_ps();
        for (b, y) in act.iter().enumerate() {
            // Plain loops, not `array::map`: its closures would not inherit the CPU features
            // and stay calls.
            let mut sums = [_mm256_setzero_si256(); 8];
            let mut mins = [_mm256_setzero_si256(); 8];
            let (mut dx, mut dmin_x) = ([0u16; 8], [0u16; 8]);
            for r in 0..8 {
                let x = &rows[r * n + b];
                prefetch_ahead(x);
                let (sumi, prod) = q4_k_sums(x, y);
                sums[r] = sumi;
                mins[r] = _mm256_set_m128i(_mm_setzero_si128(), prod);
                (dx[r], dmin_x[r]) = (x.d, x.dmin);
            }
            let (isum, imin) = (row_sums8(sums), row_sums8(mins));
            let yd = _mm256_set1_ps(y.d);
            let d = _mm256_mul_ps(fp16x8(dx), yd);
            let dmin = _mm256_mul_ps(fp16x8(dmin_x), yd);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), d, acc);
            acc_min = _mm256_fmadd_ps(_mm256_cvtepi32_ps(imin), dmin, acc_min);
        }
        o.copy_from_slice(&lanes8(_mm256_sub_ps(acc, acc_min)));
        done += 8;
    }
    for (o, row) in out[done..].iter_mut().zip(w[done * n..].chunks_exact(n)) {
        let (mut acc, mut acc_min) = (_mm_setzero_ps(), _mm_setzero_ps());
        for (x, y) in row.iter().zip(act) {
            let (sumi, prod) = q4_k_sums(x, y);
            let (isum, imin) = (hsum_i32x8(sumi) as f32, hsum_i32x4(prod) as f32);
            acc = _mm_fmadd_ss(_mm_set_ss(isum), _mm_set_ss(fp16(x.d) * y.d), acc);
            acc_min = _mm_fmadd_ss(_mm_set_ss(imin), _mm_set_ss(fp16(x.dmin) * y.d), acc_min);
        }
        *o = _mm_cvtss_f32(_mm_sub_ss(acc, acc_min));
    }
}

/// Tokens per tile of [`gemm_q4_k_8x8_q8_k`].
const T_Q4K: usize = 4;

/// Q4_K weights times Q8_K activations in llama.cpp's 8-row interleaved order, the matrix form
/// of `gemv_q4_k_8x8_q8_k`: `outs[t][r]` is that kernel's result for row `r` of `w` and token
/// `t`'s activation (`acts`, the tokens' blocks end to end), bit for bit. Each row's super-block
/// is unpacked once (its nibbles, sub-block scales and minimums) for a tile of [`T_Q4K`]
/// tokens instead of once per token; every token's integer sums, row sums and fused
/// multiply-adds are the matrix-vector kernel's, in its order. A group of eight rows stays in
/// L1 while the tokens stream past it.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_q4_k_8x8_q8_k(w: &[BlockQ4K], acts: &[BlockQ8K], outs: &mut [&mut [f32]]) {
    let n_tokens = outs.len();
    let Some((nb, rows)) = crate::matmul::shape(w.len(), acts.len(), outs) else {
        return;
    };
    let groups = rows / 8;
    for g in 0..groups {
        let group = &w[g * 8 * nb..(g + 1) * 8 * nb];
        let mut t0 = 0;
        while t0 < n_tokens {
            let tt = (n_tokens - t0).min(T_Q4K);
            let mut acc = [_mm256_setzero_ps(); T_Q4K];
            let mut acc_min = [_mm256_setzero_ps(); T_Q4K];
            for b in 0..nb {
                let mut sums = [[_mm256_setzero_si256(); 8]; T_Q4K];
                let mut mins = [[_mm256_setzero_si256(); 8]; T_Q4K];
                let (mut dx, mut dmin_x) = ([0u16; 8], [0u16; 8]);
                for r in 0..8 {
                    let x = &group[r * nb + b];
                    let (scales, m) = scales_mins_k4(&x.scales);
                    let piece = k4_piece_scales(scales);
                    let q = q4_k_quants(x);
                    for k in 0..tt {
                        let y = &acts[(t0 + k) * nb + b];
                        sums[k][r] = k4_sumi(&piece, &q, q8_pieces(y));
                        let prod = k4_min_products(m, y);
                        mins[k][r] = _mm256_set_m128i(_mm_setzero_si128(), prod);
                    }
                    (dx[r], dmin_x[r]) = (x.d, x.dmin);
                }
                let (dx, dmin_x) = (fp16x8(dx), fp16x8(dmin_x));
                for k in 0..tt {
                    let y = &acts[(t0 + k) * nb + b];
                    let (isum, imin) = (row_sums8(sums[k]), row_sums8(mins[k]));
                    let yd = _mm256_set1_ps(y.d);
                    let d = _mm256_mul_ps(dx, yd);
                    let dmin = _mm256_mul_ps(dmin_x, yd);
                    acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), d, acc[k]);
                    acc_min[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(imin), dmin, acc_min[k]);
                }
            }
            for k in 0..tt {
                let out = lanes8(_mm256_sub_ps(acc[k], acc_min[k]));
                outs[t0 + k][g * 8..g * 8 + 8].copy_from_slice(&out);
            }
            t0 += tt;
        }
    }
    // The rows after the last whole group: the matrix-vector kernel's one-row arithmetic.
    let done = groups * 8;
    if done < rows {
        for (t, out) in outs.iter_mut().enumerate() {
            let act = &acts[t * nb..(t + 1) * nb];
            // SAFETY: the caller guarantees the CPU features.
            unsafe { gemv_q4_k_8x8_q8_k(&w[done * nb..rows * nb], act, &mut out[done..rows]) };
        }
    }
}

/// Q5_K weights (`d * sc * q - dmin * m`, 5-bit `q`) against Q8_K activations.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q5_k_q8_k(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0f32;
    for (x, y) in x.iter().zip(y) {
        prefetch_ahead(x);
        let d = y.d * fp16(x.d);
        let dmin = -y.d * fp16(x.dmin);
        let (scales, mins) = scales_mins_k4(&x.scales);
        // ggml sums Q5_K's minimums in integers, then one scalar multiply-add per block
        // (contracted into an FMA by its build): the same here, for the same bits.
        let min_sum = hsum_i32x4(k4_min_products(mins, y));
        let fma = _mm_fmadd_ss(
            _mm_set_ss(dmin),
            _mm_set_ss(min_sum as f32),
            _mm_set_ss(summs),
        );
        summs = _mm_cvtss_f32(fma);

        let sumi = k4_sumi(&k4_piece_scales(scales), &q5_k_quants(x), q8_pieces(y));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32x8(acc) + summs
}

/// Q6_K weights (`d * sc * (q - 32)`, 6-bit `q`, signed 8-bit `sc`) against Q8_K
/// activations: `q` unsigned through `maddubs`, the 32 subtracted once per super-block as
/// `32 * sum(sc * bsums)`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q6_k_q8_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (x, y) in x.iter().zip(y) {
        prefetch_ahead(x);
        let d = y.d * fp16(x.d);
        let scales = load128(&x.scales);
        let offsets = _mm256_madd_epi16(load256(&y.bsums), _mm256_cvtepi8_epi16(scales));
        let mut sumi = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32::<5>(offsets));
        let q8 = q8_pieces(y);
        for (i, q) in q6_k_quants(x).into_iter().enumerate() {
            let p = _mm256_maddubs_epi16(q, load256(&q8[i]));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(q6_k_piece_scales(scales, i), p));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32x8(acc)
}

matvec_of!(matvec_q2_k_q8_k, vec_dot_q2_k_q8_k, BlockQ2K, BlockQ8K);
matvec_of!(matvec_q3_k_q8_k, vec_dot_q3_k_q8_k, BlockQ3K, BlockQ8K);
matvec_of!(matvec_q4_k_q8_k, vec_dot_q4_k_q8_k, BlockQ4K, BlockQ8K);
matvec_of!(matvec_q5_k_q8_k, vec_dot_q5_k_q8_k, BlockQ5K, BlockQ8K);
matvec_of!(matvec_q6_k_q8_k, vec_dot_q6_k_q8_k, BlockQ6K, BlockQ8K);
