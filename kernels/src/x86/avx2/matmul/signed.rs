//! The signed 32-value types (Q4_0, Q5_0, Q8_0) against Q8_0 activations: `vec_dot`'s
//! `dot_i8_i8` step per (row, token) pair, with `maddubs` + `madd` or AVX-VNNI's `vpdpbusd`.

use super::*;

/// A signed weight block for `dot_i8_i8`: its scale in every lane, its quants and their
/// absolute values (the weight-side half of `_mm256_sign_epi8(x, x)`, `_mm256_sign_epi8(y, x)`).
#[derive(Clone, Copy)]
struct Signed {
    d: __m256,
    q: __m256i,
    abs: __m256i,
}

impl Signed {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn new(d: u16, q: __m256i) -> Self {
        Signed {
            d: _mm256_set1_ps(fp16(d)),
            q,
            abs: _mm256_sign_epi8(q, q),
        }
    }
}

/// The step of `vec_dot_q4_0_q8_0`, `vec_dot_q5_0_q8_0` and `vec_dot_q8_0_q8_0` for every
/// token: `fma(fp16(x.d) * fp16(y.d), dot_i8_i8(q, y), acc)` (the scale products of all tokens
/// in one multiply: lane `t` is the same product).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn signed_step<const T: usize>(x: &Signed, y: &Q8_0s<'_, T>, acc: &mut [__m256; T]) {
    let d = _mm256_mul_ps(x.d, y.d);
    for t in 0..T {
        let sums = dot_u8_i8(x.abs, _mm256_sign_epi8(load256(y.q[t]), x.q));
        acc[t] = _mm256_fmadd_ps(lane(d, t), _mm256_cvtepi32_ps(sums), acc[t]);
    }
}

/// A signed-weight tile's results: the sum of each accumulator's lanes (`vec_dot.rs`'s
/// `finish`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn finish_signed<const R: usize, const T: usize>(
    acc: [[__m256; T]; R],
) -> [[f32; T]; R] {
    let mut out = [[0f32; T]; R];
    for (o, a) in out.iter_mut().zip(acc) {
        for (o, a) in o.iter_mut().zip(a) {
            *o = hsum_f32x8(a);
        }
    }
    out
}

/// [`signed_step`] with AVX-VNNI: `vpdpbusd` gives `dot_u8_i8`'s lanes in one instruction.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
fn signed_step_vnni<const T: usize>(x: &Signed, y: &Q8_0s<'_, T>, acc: &mut [__m256; T]) {
    let d = _mm256_mul_ps(x.d, y.d);
    for t in 0..T {
        let sy = _mm256_sign_epi8(load256(y.q[t]), x.q);
        let sums = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), x.abs, sy);
        acc[t] = _mm256_fmadd_ps(lane(d, t), _mm256_cvtepi32_ps(sums), acc[t]);
    }
}

/// `fn $name::<RR, TT>(x, y)`: the tile of a signed 32-value type (weights unpacked by
/// `$unpack`) against Q8_0 activations through `$step` ([`signed_step`], or
/// [`signed_step_vnni`] with AVX-VNNI), for the CPU features `$features`.
macro_rules! signed_tile {
    ($name:ident, $w:ty, $unpack:ident, $step:ident, $features:literal) => {
        #[inline]
        #[target_feature(enable = $features)]
        fn $name<const RR: usize, const TT: usize>(
            x: [&[$w]; RR],
            y: [&[BlockQ8_0]; TT],
        ) -> [[f32; TT]; RR] {
            let acc = tile32(
                x,
                y,
                [_mm256_setzero_ps(); TT],
                |x| $unpack(x),
                |y| q8_0s(y),
                |x, y, acc| $step(x, y, acc),
            );
            finish_signed(acc)
        }
    };
}

/// A Q4_0 block as signed quants (`q - 8`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn signed_q4_0(x: &BlockQ4_0) -> Signed {
    Signed::new(x.d, _mm256_sub_epi8(nibbles(&x.qs), _mm256_set1_epi8(8)))
}

/// A Q5_0 block as signed quants (`q - 16`: the nibble with 0xf0, -16, where the fifth bit is
/// clear).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn signed_q5_0(x: &BlockQ5_0) -> Signed {
    let high = _mm256_andnot_si256(bytes_from_bits(x.qh), _mm256_set1_epi8(-16));
    Signed::new(x.d, _mm256_or_si256(nibbles(&x.qs), high))
}

/// A Q8_0 block as signed quants.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn signed_q8_0(x: &BlockQ8_0) -> Signed {
    Signed::new(x.d, load256(&x.qs))
}

signed_tile!(
    q4_0_tile,
    BlockQ4_0,
    signed_q4_0,
    signed_step,
    "avx2,fma,f16c"
);
signed_tile!(
    q5_0_tile,
    BlockQ5_0,
    signed_q5_0,
    signed_step,
    "avx2,fma,f16c"
);
signed_tile!(
    q8_0_tile,
    BlockQ8_0,
    signed_q8_0,
    signed_step,
    "avx2,fma,f16c"
);
signed_tile!(
    q4_0_tile_vnni,
    BlockQ4_0,
    signed_q4_0,
    signed_step_vnni,
    "avx2,fma,f16c,avxvnni"
);
signed_tile!(
    q5_0_tile_vnni,
    BlockQ5_0,
    signed_q5_0,
    signed_step_vnni,
    "avx2,fma,f16c,avxvnni"
);
signed_tile!(
    q8_0_tile_vnni,
    BlockQ8_0,
    signed_q8_0,
    signed_step_vnni,
    "avx2,fma,f16c,avxvnni"
);

matmul_kernel!(
    matmul_q4_0_q8_0_vnni,
    q4_0_tile_vnni,
    BlockQ4_0,
    BlockQ8_0,
    "[`matmul_q4_0_q8_0`] with AVX-VNNI.",
    R_VNNI,
    T,
    "avx2,fma,f16c,avxvnni"
);
matmul_kernel!(
    matmul_q5_0_q8_0_vnni,
    q5_0_tile_vnni,
    BlockQ5_0,
    BlockQ8_0,
    "[`matmul_q5_0_q8_0`] with AVX-VNNI.",
    R_VNNI,
    T,
    "avx2,fma,f16c,avxvnni"
);
matmul_kernel!(
    matmul_q8_0_q8_0_vnni,
    q8_0_tile_vnni,
    BlockQ8_0,
    BlockQ8_0,
    "[`matmul_q8_0_q8_0`] with AVX-VNNI.",
    R_VNNI,
    T,
    "avx2,fma,f16c,avxvnni"
);

matmul_kernel!(
    matmul_q4_0_q8_0,
    q4_0_tile,
    BlockQ4_0,
    BlockQ8_0,
    "Q4_0 weights (`d * (q - 8)`) times Q8_0 activations (`vec_dot_q4_0_q8_0` per pair)."
);

matmul_kernel!(
    matmul_q5_0_q8_0,
    q5_0_tile,
    BlockQ5_0,
    BlockQ8_0,
    "Q5_0 weights (`d * (q - 16)`) times Q8_0 activations (`vec_dot_q5_0_q8_0` per pair)."
);

matmul_kernel!(
    matmul_q8_0_q8_0,
    q8_0_tile,
    BlockQ8_0,
    BlockQ8_0,
    "Q8_0 weights times Q8_0 activations (`vec_dot_q8_0_q8_0` per pair)."
);
