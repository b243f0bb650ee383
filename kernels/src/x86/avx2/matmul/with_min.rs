//! The unsigned 32-value types with a minimum (Q4_1, Q5_1) against Q8_1 activations.

use super::*;

/// An unsigned weight block with a minimum (Q4_1, Q5_1): `d` and `m` in every lane, the
/// quants.
#[derive(Clone, Copy)]
struct WithMin {
    d: __m256,
    m: __m256,
    q: __m256i,
}

impl WithMin {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn new(d: u16, m: u16, q: __m256i) -> Self {
        WithMin {
            d: _mm256_set1_ps(fp16(d)),
            m: _mm256_set1_ps(fp16(m)),
            q,
        }
    }
}

/// One row's accumulators of a tile of unsigned weights with minimums: the eight-lane scaled
/// sums of each token, and the minimum parts of all tokens (lane `t`: token `t`).
type MinAcc<const T: usize> = ([__m256; T], __m256);

/// The step of `vec_dot_q4_1_q8_1` and `vec_dot_q5_1_q8_1` for every token: the scaled sum
/// in eight lanes, and `fma(fp16(x.m), fp16(y.s), acc_m)` (vec_dot's fused lane-0 update) in
/// lane `t` of one register for all tokens. `$d_first`: whether the FMA takes the scale as its
/// first factor (Q4_1) or the sums (Q5_1).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn with_min_step<const T: usize>(
    x: &WithMin,
    y: &Q8_1s<'_, T>,
    acc: &mut MinAcc<T>,
    d_first: bool,
) {
    let d = _mm256_mul_ps(x.d, y.d);
    for t in 0..T {
        let sums = _mm256_cvtepi32_ps(dot_u8_i8(x.q, load256(y.q[t])));
        let dt = lane(d, t);
        acc.0[t] = if d_first {
            _mm256_fmadd_ps(dt, sums, acc.0[t])
        } else {
            _mm256_fmadd_ps(sums, dt, acc.0[t])
        };
    }
    acc.1 = _mm256_fmadd_ps(x.m, y.s, acc.1);
}

/// A tile's results with minimums: each scaled sum's lanes added up, plus the token's minimum
/// part (`vec_dot.rs`: `finish(a) + m`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn finish_with_min<const R: usize, const T: usize>(acc: [MinAcc<T>; R]) -> [[f32; T]; R] {
    let mut out = [[0f32; T]; R];
    for (o, (a, m)) in out.iter_mut().zip(acc) {
        let m = lanes(m);
        for (t, (o, a)) in o.iter_mut().zip(a).enumerate() {
            *o = hsum_f32x8(a) + m[t];
        }
    }
    out
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_1_tile<const RR: usize, const TT: usize>(
    x: [&[BlockQ4_1]; RR],
    y: [&[BlockQ8_1]; TT],
) -> [[f32; TT]; RR] {
    let acc = tile32(
        x,
        y,
        ([_mm256_setzero_ps(); TT], _mm256_setzero_ps()),
        |x| WithMin::new(x.d, x.m, nibbles(&x.qs)),
        |y| q8_1s(y),
        |x, y, acc| with_min_step(x, y, acc, true),
    );
    finish_with_min(acc)
}

matmul_kernel!(
    matmul_q4_1_q8_1,
    q4_1_tile,
    BlockQ4_1,
    BlockQ8_1,
    "Q4_1 weights (`d * q + m`) times Q8_1 activations (`vec_dot_q4_1_q8_1` per pair)."
);

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_1_tile<const RR: usize, const TT: usize>(
    x: [&[BlockQ5_1]; RR],
    y: [&[BlockQ8_1]; TT],
) -> [[f32; TT]; RR] {
    let acc = tile32(
        x,
        y,
        ([_mm256_setzero_ps(); TT], _mm256_setzero_ps()),
        |x| {
            let high = _mm256_and_si256(bytes_from_bits(x.qh), _mm256_set1_epi8(0x10));
            WithMin::new(x.d, x.m, _mm256_or_si256(nibbles(&x.qs), high))
        },
        |y| q8_1s(y),
        |x, y, acc| with_min_step(x, y, acc, false),
    );
    finish_with_min(acc)
}

matmul_kernel!(
    matmul_q5_1_q8_1,
    q5_1_tile,
    BlockQ5_1,
    BlockQ8_1,
    "Q5_1 weights (`d * q + m`) times Q8_1 activations (`vec_dot_q5_1_q8_1` per pair)."
);
