//! AVX2 dot products of the 32-value block types with their Q8_0 / Q8_1 activations (after
//! ggml's `ggml_vec_dot_*` in `arch/x86/quants.c`): a block's 32 products summed into i32
//! lanes, converted and multiplied by the block's scale into an f32 accumulator.
//!
//! Every kernel is written once for `R` rows against one activation (`*_rows::<R>`): the
//! activation side of a block (its quants, scale and, for the unsigned weight types, the
//! sums that undo the weights' offset) is prepared once and used by all `R` rows, each row
//! (or pair of rows) with its own accumulator, so the independent FMA chains hide each
//! other's latency. A row's arithmetic is the same whatever `R` is, so `vec_dot_*`
//! (`R = 1`) and `matvec_*` ([`ROWS`] at a time, then one by one) agree bit for bit.
//!
//! - Q8_0 and IQ4_NL fill a register with one row's block (32 signed quants) and multiply
//!   through [`dot_i8_i8`] into eight lanes.
//! - Q4_0, Q4_1, Q5_0 and Q5_1 store 16 bytes of quants per block, so two rows share a
//!   register ([`pairs`]): row `a` in the low half, row `b` in the high half, against the
//!   activation's two 16-value halves broadcast to both. Their quants stay unsigned (0..16,
//!   0..32) for `maddubs`; Q4_0 and Q5_0 subtract their offset times the activation's sums
//!   (`8 * (y[2i] + y[2i + 1])`, computed once per activation block) before widening: the
//!   same integers as the oracle's `(q - 8) * y`, in four lanes per row.

use super::{dot_i8_i8, fp16, fp16_pair, hsum_f32x4, hsum_f32x8, load128, load256, prefetch_ahead};
use core::arch::x86_64::*;
use formats::quant::{
    BlockIq4Nl, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, KVALUES_IQ4NL,
};

/// Rows per pass of the `matvec_*` kernels.
pub const ROWS: usize = 4;

/// The row-blocked skeleton: blocks `0..n` (the shortest slice); for each, `prep` of the
/// activation block once, then `step(weight block, prepared, accumulator)` for every row,
/// one accumulator per row. Returns the `R` accumulators. (Always inlined into the
/// `#[target_feature]` kernels, whose closures carry the features.)
#[inline(always)]
fn rows<X, Y, P: Copy, A: Copy, const R: usize>(
    xs: [&[X]; R],
    ys: &[Y],
    zero: A,
    prep: impl Fn(&Y) -> P,
    step: impl Fn(&X, P, A) -> A,
) -> [A; R] {
    let n = xs.iter().fold(ys.len(), |n, row| n.min(row.len()));
    let mut rows: [&[X]; R] = [&[]; R];
    for (short, row) in rows.iter_mut().zip(xs) {
        *short = &row[..n];
    }
    let mut acc = [zero; R];
    for (b, y) in ys[..n].iter().enumerate() {
        let p = prep(y);
        for r in 0..R {
            prefetch_ahead(&rows[r][b]);
            acc[r] = step(&rows[r][b], p, acc[r]);
        }
    }
    acc
}

/// The first `R` rows of `n` blocks of `w` (empty where `w` is short).
#[inline(always)]
fn split_rows<X, const R: usize>(w: &[X], n: usize) -> [&[X]; R] {
    let mut rows: [&[X]; R] = [&[]; R];
    for (row, chunk) in rows.iter_mut().zip(w.chunks_exact(n)) {
        *row = chunk;
    }
    rows
}

/// As [`rows`] for kernels that take two rows per register (the nibble types, whose 16 bytes
/// of quants per block fill half a register): `step(block of row a, block of row b,
/// prepared, accumulator)` for the pairs of rows `(0, 1), (2, 3), ...`, the last row paired
/// with itself when `R` is odd. Returns the accumulator of each pair at its first row's
/// index (the other indices keep `zero`).
#[inline(always)]
fn pairs<X, Y, P: Copy, A: Copy, const R: usize>(
    xs: [&[X]; R],
    ys: &[Y],
    zero: A,
    prep: impl Fn(&Y) -> P,
    step: impl Fn(&X, &X, P, A) -> A,
) -> [A; R] {
    let n = xs.iter().fold(ys.len(), |n, row| n.min(row.len()));
    let mut rows: [&[X]; R] = [&[]; R];
    for (short, row) in rows.iter_mut().zip(xs) {
        *short = &row[..n];
    }
    let mut acc = [zero; R];
    for (b, y) in ys[..n].iter().enumerate() {
        let p = prep(y);
        for r in (0..R).step_by(2) {
            let other = if r + 1 < R { r + 1 } else { r };
            prefetch_ahead(&rows[r][b]);
            prefetch_ahead(&rows[other][b]);
            acc[r] = step(&rows[r][b], &rows[other][b], p, acc[r]);
        }
    }
    acc
}

/// The results of [`pairs`]: row `r` from half `r % 2` of its pair's accumulator.
#[inline(always)]
fn unpair<A: Copy, const R: usize>(acc: [A; R], half: impl Fn(A, usize) -> f32) -> [f32; R] {
    let mut out = [0f32; R];
    for (r, o) in out.iter_mut().enumerate() {
        *o = half(acc[r & !1], r & 1);
    }
    out
}

/// The quants of two nibble blocks, `a` in the low half and `b` in the high half of each
/// register: `(values 0..16, values 16..32)` as bytes 0..=15.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn nibble_pair(a: &[u8; 16], b: &[u8; 16]) -> (__m256i, __m256i) {
    let q = _mm256_set_m128i(load128(b), load128(a));
    let m4 = _mm256_set1_epi8(0x0f);
    (
        _mm256_and_si256(q, m4),
        _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4),
    )
}

/// The fifth bits of two Q5 blocks in the layout of [`nibble_pair`]: 0x10 where bit `i` of
/// `qh` (value `i`) is set.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn fifth_bit_pair(a: [u8; 4], b: [u8; 4]) -> (__m256i, __m256i) {
    let words = _mm256_set_m128i(
        _mm_cvtsi32_si128(i32::from_le_bytes(b)),
        _mm_cvtsi32_si128(i32::from_le_bytes(a)),
    );
    // Byte i of a half takes byte i / 8 of its word (bytes 2, 3 for values 16..32)...
    let spread = |lo: i64, hi: i64| {
        let pick = _mm256_set_epi64x(hi, lo, hi, lo);
        _mm256_shuffle_epi8(words, pick)
    };
    let low = spread(0, 0x0101_0101_0101_0101);
    let high = spread(0x0202_0202_0202_0202, 0x0303_0303_0303_0303);
    // ...and keeps bit i % 8: 0x10 where it is set.
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
    let m16 = _mm256_set1_epi8(0x10);
    let fifth = |v| _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit), m16);
    (fifth(low), fifth(high))
}

/// An activation block for the pair kernels: its first and second 16 quants, each in both
/// halves of a register.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn activation_halves(qs: &[i8; 32]) -> (__m256i, __m256i) {
    let halves: &[[i8; 16]; 2] = bytemuck::cast_ref(qs);
    let (lo, hi) = (load128(&halves[0]), load128(&halves[1]));
    (_mm256_set_m128i(lo, lo), _mm256_set_m128i(hi, hi))
}

/// The quants of a nibble pair times the activation halves: i16 sums of two products, then
/// of four, into eight i32 lanes (four per row). The products of a pair stay within
/// `2 * 2 * 31 * 127`, an i16.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn pair_sums(q: (__m256i, __m256i), y: (__m256i, __m256i), offsets: __m256i) -> __m256i {
    let p = _mm256_add_epi16(
        _mm256_maddubs_epi16(q.0, y.0),
        _mm256_maddubs_epi16(q.1, y.1),
    );
    _mm256_madd_epi16(_mm256_sub_epi16(p, offsets), _mm256_set1_epi16(1))
}

/// `offset * (y[2i] + y[2i + 1])` in the layout of [`pair_sums`]' i16 stage: what undoes an
/// unsigned quant's offset (8 for Q4_0, 16 for Q5_0).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn pair_offsets(offset: i8, y: (__m256i, __m256i)) -> __m256i {
    let o = _mm256_set1_epi8(offset);
    _mm256_add_epi16(_mm256_maddubs_epi16(o, y.0), _mm256_maddubs_epi16(o, y.1))
}

/// The f32 scale of each row of a pair over its four lanes, from `[d_a, d_b, ..]`
/// (`k = 1`) or `[d_a, _, d_b, _]` (`k = 2`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn spread_pair_scales<const K: i32>(s: __m128) -> __m256 {
    let idx = _mm256_setr_epi32(0, 0, 0, 0, K, K, K, K);
    _mm256_permutevar8x32_ps(_mm256_castps128_ps256(s), idx)
}

/// Half `h` of a pair accumulator: the sum of lanes `4h..4h + 4`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn half_sum(acc: __m256, h: usize) -> f32 {
    let half = if h == 0 {
        _mm256_castps256_ps128(acc)
    } else {
        _mm256_extractf128_ps::<1>(acc)
    };
    hsum_f32x4(half)
}

/// `pub unsafe fn $vec_dot(x, y)` and `pub unsafe fn $matvec(w, act, out)` from the
/// row-blocked `$rows`.
macro_rules! entry_points {
    ($vec_dot:ident, $matvec:ident, $rows:ident, $w:ty, $a:ty, $doc:literal) => {
        #[doc = $doc]
        ///
        /// # Safety
        /// The CPU must support AVX2, FMA and F16C.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn $vec_dot(x: &[$w], y: &[$a]) -> f32 {
            $rows::<1>([x], y)[0]
        }

        #[doc = concat!("[`", stringify!($vec_dot), "`] on every row of a matrix: `out[r]` for \
            row `r` of `w`, which holds `out.len()` rows of `act.len()` blocks ([`ROWS`] rows \
            per pass; a short `w` leaves the last outputs untouched).")]
        ///
        /// # Safety
        /// The CPU must support AVX2, FMA and F16C.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn $matvec(w: &[$w], act: &[$a], out: &mut [f32]) {
            let n = act.len();
            if n == 0 {
                out.fill(0.0);
                return;
            }
            let mut done = 0;
            for (o, rows) in out.chunks_exact_mut(ROWS).zip(w.chunks_exact(ROWS * n)) {
                o.copy_from_slice(&$rows::<ROWS>(split_rows(rows, n), act));
                done += ROWS;
            }
            for (o, row) in out[done..].iter_mut().zip(w[done * n..].chunks_exact(n)) {
                *o = $rows::<1>([row], act)[0];
            }
        }
    };
}

/// A row's result: the sum of its accumulator's lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn finish(acc: __m256) -> f32 {
    hsum_f32x8(acc)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_0_rows<const R: usize>(x: [&[BlockQ4_0]; R], y: &[BlockQ8_0]) -> [f32; R] {
    let acc = pairs(
        x,
        y,
        _mm256_setzero_ps(),
        |y| {
            let halves = activation_halves(&y.qs);
            (halves, pair_offsets(8, halves), fp16(y.d))
        },
        |a, b, (halves, offsets, yd), acc| {
            let sums = pair_sums(nibble_pair(&a.qs, &b.qs), halves, offsets);
            let d = _mm_mul_ps(fp16_pair(a.d, b.d), _mm_set1_ps(yd));
            _mm256_fmadd_ps(spread_pair_scales::<1>(d), _mm256_cvtepi32_ps(sums), acc)
        },
    );
    unpair(acc, |acc, h| half_sum(acc, h))
}

entry_points!(
    vec_dot_q4_0_q8_0,
    matvec_q4_0_q8_0,
    q4_0_rows,
    BlockQ4_0,
    BlockQ8_0,
    "Q4_0 weights (`d * (q - 8)`) against Q8_0 activations."
);

/// A Q8_1 block's `[d, s, d, s]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn y_scales(y: &BlockQ8_1) -> __m128 {
    let ds = fp16_pair(y.d, y.s);
    _mm_movelh_ps(ds, ds)
}

/// Two Q4_1 / Q5_1 blocks' `[d_a, m_a, d_b, m_b]`, with one F16C conversion.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn x_scales(da: u16, ma: u16, db: u16, mb: u16) -> __m128 {
    let word = |d: u16, m: u16| (u32::from(d) | (u32::from(m) << 16)) as i32;
    _mm_cvtph_ps(_mm_setr_epi32(word(da, ma), word(db, mb), 0, 0))
}

/// One Q4_1 / Q5_1 block of a pair of rows: the products of the scales (`[d_a * d_y,
/// m_a * s_y, d_b * d_y, m_b * s_y]`), the `d` times the quant sums into the eight lanes,
/// and the whole product into the minimum accumulator (lanes 1 and 3 are the rows' `m * s`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn step_with_min(
    sums: __m256i,
    x_scales: __m128,
    y_scales: __m128,
    acc: (__m256, __m128),
) -> (__m256, __m128) {
    let scales = _mm_mul_ps(x_scales, y_scales);
    let d = spread_pair_scales::<2>(scales);
    let scaled = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc.0);
    (scaled, _mm_add_ps(acc.1, scales))
}

/// Row `h` of a Q4_1 / Q5_1 pair: its four lanes of scaled quants plus its `m * s` sum
/// (lane `2h + 1` of the minimum accumulator).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn finish_with_min(acc: (__m256, __m128), h: usize) -> f32 {
    let mins = if h == 0 {
        _mm_movehdup_ps(acc.1)
    } else {
        _mm_shuffle_ps::<0b11_11_11_11>(acc.1, acc.1)
    };
    half_sum(acc.0, h) + _mm_cvtss_f32(mins)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_1_rows<const R: usize>(x: [&[BlockQ4_1]; R], y: &[BlockQ8_1]) -> [f32; R] {
    let acc = pairs(
        x,
        y,
        (_mm256_setzero_ps(), _mm_setzero_ps()),
        |y| (activation_halves(&y.qs), y_scales(y)),
        |a, b, (halves, ys), acc| {
            let sums = pair_sums(nibble_pair(&a.qs, &b.qs), halves, _mm256_setzero_si256());
            step_with_min(sums, x_scales(a.d, a.m, b.d, b.m), ys, acc)
        },
    );
    unpair(acc, |acc, h| finish_with_min(acc, h))
}

entry_points!(
    vec_dot_q4_1_q8_1,
    matvec_q4_1_q8_1,
    q4_1_rows,
    BlockQ4_1,
    BlockQ8_1,
    "Q4_1 weights (`d * q + m`) against Q8_1 activations: `m` meets the activation sum `s`."
);

/// The five-bit quants (0..32) of two Q5 blocks, in the layout of [`nibble_pair`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn five_bit_pair_of(qa: &[u8; 16], ha: [u8; 4], qb: &[u8; 16], hb: [u8; 4]) -> (__m256i, __m256i) {
    let (lo, hi) = nibble_pair(qa, qb);
    let (h_lo, h_hi) = fifth_bit_pair(ha, hb);
    (_mm256_or_si256(lo, h_lo), _mm256_or_si256(hi, h_hi))
}

/// [`five_bit_pair_of`] for two Q5_0 blocks.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn five_bit_pair(a: &BlockQ5_0, b: &BlockQ5_0) -> (__m256i, __m256i) {
    five_bit_pair_of(&a.qs, a.qh, &b.qs, b.qh)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_0_rows<const R: usize>(x: [&[BlockQ5_0]; R], y: &[BlockQ8_0]) -> [f32; R] {
    let acc = pairs(
        x,
        y,
        _mm256_setzero_ps(),
        |y| {
            let halves = activation_halves(&y.qs);
            (halves, pair_offsets(16, halves), fp16(y.d))
        },
        |a, b, (halves, offsets, yd), acc| {
            let sums = pair_sums(five_bit_pair(a, b), halves, offsets);
            let d = _mm_mul_ps(fp16_pair(a.d, b.d), _mm_set1_ps(yd));
            _mm256_fmadd_ps(spread_pair_scales::<1>(d), _mm256_cvtepi32_ps(sums), acc)
        },
    );
    unpair(acc, |acc, h| half_sum(acc, h))
}

entry_points!(
    vec_dot_q5_0_q8_0,
    matvec_q5_0_q8_0,
    q5_0_rows,
    BlockQ5_0,
    BlockQ8_0,
    "Q5_0 weights (`d * (q - 16)`) against Q8_0 activations."
);

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_1_rows<const R: usize>(x: [&[BlockQ5_1]; R], y: &[BlockQ8_1]) -> [f32; R] {
    let acc = pairs(
        x,
        y,
        (_mm256_setzero_ps(), _mm_setzero_ps()),
        |y| (activation_halves(&y.qs), y_scales(y)),
        |a, b, (halves, ys), acc| {
            let q = five_bit_pair_of(&a.qs, a.qh, &b.qs, b.qh);
            let sums = pair_sums(q, halves, _mm256_setzero_si256());
            step_with_min(sums, x_scales(a.d, a.m, b.d, b.m), ys, acc)
        },
    );
    unpair(acc, |acc, h| finish_with_min(acc, h))
}

entry_points!(
    vec_dot_q5_1_q8_1,
    matvec_q5_1_q8_1,
    q5_1_rows,
    BlockQ5_1,
    BlockQ8_1,
    "Q5_1 weights (`d * q + m`) against Q8_1 activations."
);

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q8_0_rows<const R: usize>(x: [&[BlockQ8_0]; R], y: &[BlockQ8_0]) -> [f32; R] {
    let acc = rows(
        x,
        y,
        _mm256_setzero_ps(),
        |y| (load256(&y.qs), fp16(y.d)),
        |x, p, acc| {
            let sums = dot_i8_i8(load256(&x.qs), p.0);
            let d = _mm256_set1_ps(fp16(x.d) * p.1);
            _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc)
        },
    );
    acc.map(|a| finish(a))
}

entry_points!(
    vec_dot_q8_0_q8_0,
    matvec_q8_0_q8_0,
    q8_0_rows,
    BlockQ8_0,
    BlockQ8_0,
    "Q8_0 weights against Q8_0 activations."
);

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn iq4_nl_rows<const R: usize>(x: [&[BlockIq4Nl]; R], y: &[BlockQ8_0]) -> [f32; R] {
    let values = load128(&KVALUES_IQ4NL);
    let m4 = _mm_set1_epi8(0x0f);
    let acc = rows(
        x,
        y,
        _mm256_setzero_ps(),
        |y| (load256(&y.qs), fp16(y.d)),
        |x, p, acc| {
            let q = load128(&x.qs);
            let lo = _mm_shuffle_epi8(values, _mm_and_si128(q, m4));
            let hi = _mm_shuffle_epi8(values, _mm_and_si128(_mm_srli_epi16::<4>(q), m4));
            let sums = dot_i8_i8(_mm256_set_m128i(hi, lo), p.0);
            let d = _mm256_set1_ps(p.1 * fp16(x.d));
            _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc)
        },
    );
    acc.map(|a| finish(a))
}

entry_points!(
    vec_dot_iq4_nl_q8_0,
    matvec_iq4_nl_q8_0,
    iq4_nl_rows,
    BlockIq4Nl,
    BlockQ8_0,
    "IQ4_NL weights (`d * KVALUES_IQ4NL[q]`) against Q8_0 activations: the nibbles index \
     the sixteen values with one byte shuffle per half."
);
