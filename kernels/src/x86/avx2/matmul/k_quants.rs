//! The K-quants (Q4_K, Q5_K, Q6_K) against Q8_K activations: one row by [`T_K`] tokens, each
//! super-block unpacked once for the tile.

use super::*;

/// A Q4_K / Q5_K super-block unpacked: `d`, `dmin`, the eight minimums as i16, the eight
/// sub-block scales each broadcast over a register, and the 256 quants (0..32) in order.
#[derive(Clone, Copy)]
struct K4 {
    d: f32,
    dmin: f32,
    mins: __m128i,
    scales: [__m256i; 8],
    q: [__m256i; 8],
}

/// Q4_K's and Q5_K's unpacking: scales and minimums of `packed`, the quants `q`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn k4(d: u16, dmin: u16, packed: &[u8; 12], q: [__m256i; 8]) -> K4 {
    let (scales, mins) = scales_mins_k4(packed);
    K4 {
        d: fp16(d),
        dmin: fp16(dmin),
        mins: _mm_cvtepu8_epi16(_mm_set_epi64x(0, i64::from_le_bytes(mins))),
        scales: k4_piece_scales(scales),
        q,
    }
}

/// An activation super-block for Q4_K / Q5_K: `d`, the sums of its 32-value pieces (the
/// activation half of `k4_min_products`), its quants.
#[derive(Clone, Copy)]
struct Q8KPrep<'a> {
    d: f32,
    pair_sums: __m128i,
    q8: &'a [[i8; 32]; QK_K / 32],
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q8_k_prep(y: &BlockQ8K) -> Q8KPrep<'_> {
    let bsums = load256(&y.bsums);
    Q8KPrep {
        d: y.d,
        pair_sums: _mm_hadd_epi16(
            _mm256_castsi256_si128(bsums),
            _mm256_extracti128_si256::<1>(bsums),
        ),
        q8: q8_pieces(y),
    }
}

/// `vec_dot_q4_k_q8_k`'s step: the minimums into a four-lane accumulator, the scaled quants
/// into an eight-lane one.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_tile<const RR: usize, const TT: usize>(
    x: [&[BlockQ4K]; RR],
    y: [&[BlockQ8K]; TT],
) -> [[f32; TT]; RR] {
    let acc = tile(
        x,
        y,
        (_mm256_setzero_ps(), _mm_setzero_ps()),
        |x| k4(x.d, x.dmin, &x.scales, q4_k_quants(x)),
        |y| q8_k_prep(y),
        |x, p, acc| {
            let d = p.d * x.d;
            let dmin = -p.d * x.dmin;
            let prod = _mm_madd_epi16(x.mins, p.pair_sums);
            let acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc.1);
            let sumi = k4_sumi(&x.scales, &x.q, p.q8);
            let acc_d = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc.0);
            (acc_d, acc_m)
        },
    );
    finish_all!(acc, |(a, m)| hsum_f32x8(a) + hsum_f32x4(m))
}

matmul_kernel!(
    matmul_q4_k_q8_k,
    q4_k_tile,
    BlockQ4K,
    BlockQ8K,
    "Q4_K weights times Q8_K activations (`vec_dot_q4_k_q8_k` per pair).",
    1,
    T_K
);

/// `vec_dot_q5_k_q8_k`'s step: as Q4_K, the minimums summed in integers and fused into a
/// scalar sum once per super-block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_k_tile<const RR: usize, const TT: usize>(
    x: [&[BlockQ5K]; RR],
    y: [&[BlockQ8K]; TT],
) -> [[f32; TT]; RR] {
    let acc = tile(
        x,
        y,
        (_mm256_setzero_ps(), 0f32),
        |x| k4(x.d, x.dmin, &x.scales, q5_k_quants(x)),
        |y| q8_k_prep(y),
        |x, p, acc| {
            let d = p.d * x.d;
            let dmin = -p.d * x.dmin;
            let min_sum = hsum_i32x4(_mm_madd_epi16(x.mins, p.pair_sums));
            let fma = _mm_fmadd_ss(
                _mm_set_ss(dmin),
                _mm_set_ss(min_sum as f32),
                _mm_set_ss(acc.1),
            );
            let sumi = k4_sumi(&x.scales, &x.q, p.q8);
            let acc_d = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc.0);
            (acc_d, _mm_cvtss_f32(fma))
        },
    );
    finish_all!(acc, |(a, summs)| hsum_f32x8(a) + summs)
}

matmul_kernel!(
    matmul_q5_k_q8_k,
    q5_k_tile,
    BlockQ5K,
    BlockQ8K,
    "Q5_K weights times Q8_K activations (`vec_dot_q5_k_q8_k` per pair).",
    1,
    T_K
);

/// A Q6_K super-block unpacked: `d`, its sixteen scales as i16 (against the activation's
/// block sums), the 256 quants (0..64) in 32-value pieces, and each piece's two scales spread
/// over its sixteen pair sums.
#[derive(Clone, Copy)]
struct K6 {
    d: f32,
    scales16: __m256i,
    q: [__m256i; 8],
    piece_scales: [__m256i; 8],
}

/// `vec_dot_q6_k_q8_k`'s step: the offset 32 subtracted as `32 * sum(sc * bsums)`, then the
/// eight pieces, one FMA per super-block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_tile<const RR: usize, const TT: usize>(
    x: [&[BlockQ6K]; RR],
    y: [&[BlockQ8K]; TT],
) -> [[f32; TT]; RR] {
    let acc = tile(
        x,
        y,
        _mm256_setzero_ps(),
        |x| {
            let scales = load128(&x.scales);
            let mut piece_scales = [_mm256_setzero_si256(); 8];
            for (i, s) in piece_scales.iter_mut().enumerate() {
                *s = q6_k_piece_scales(scales, i);
            }
            K6 {
                d: fp16(x.d),
                scales16: _mm256_cvtepi8_epi16(scales),
                q: q6_k_quants(x),
                piece_scales,
            }
        },
        |y: &BlockQ8K| (y.d, load256(&y.bsums), q8_pieces(y)),
        |x, p, acc| {
            let d = p.0 * x.d;
            let offsets = _mm256_madd_epi16(p.1, x.scales16);
            let mut sumi =
                _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32::<5>(offsets));
            for i in 0..8 {
                let prod = _mm256_maddubs_epi16(x.q[i], load256(&p.2[i]));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(x.piece_scales[i], prod));
            }
            _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc)
        },
    );
    finish_all!(acc, |a| hsum_f32x8(a))
}

matmul_kernel!(
    matmul_q6_k_q8_k,
    q6_k_tile,
    BlockQ6K,
    BlockQ8K,
    "Q6_K weights times Q8_K activations (`vec_dot_q6_k_q8_k` per pair).",
    1,
    T_K
);
