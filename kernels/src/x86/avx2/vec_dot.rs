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

use super::{dot_i8_i8, dot_u8_i8, fp16, hsum_f32x8, hsum_i32x8, load128, load256, prefetch_ahead};
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

/// ggml's `bytes_from_nibbles_32`: a nibble block's 32 quants (0..16) in order, the low
/// nibbles (values 0..16) in the low half.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn nibbles(qs: &[u8; 16]) -> __m256i {
    let q = load128(qs);
    let both = _mm256_set_m128i(_mm_srli_epi16::<4>(q), q);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// ggml's `bytes_from_bits_32`: byte `i` all ones where bit `i` of `qh` is set.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn bytes_from_bits(qh: [u8; 4]) -> __m256i {
    let pick = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(i32::from_le_bytes(qh)), pick);
    let bits = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
    _mm256_cmpeq_epi8(bits, _mm256_set1_epi64x(-1))
}

/// `fma(m, s, sum)` on lane 0: ggml's `summs += m * s`, which its build contracts into one
/// fused multiply-add.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn fma_ss(m: f32, s: f32, sum: __m128) -> __m128 {
    _mm_fmadd_ss(_mm_set_ss(m), _mm_set_ss(s), sum)
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
    let acc = rows(
        x,
        y,
        _mm256_setzero_ps(),
        |y| (load256(&y.qs), fp16(y.d)),
        |x, p, acc| {
            let d = _mm256_set1_ps(fp16(x.d) * p.1);
            let q = _mm256_sub_epi8(nibbles(&x.qs), _mm256_set1_epi8(8));
            _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8_i8(q, p.0)), acc)
        },
    );
    acc.map(|a| finish(a))
}

entry_points!(
    vec_dot_q4_0_q8_0,
    matvec_q4_0_q8_0,
    q4_0_rows,
    BlockQ4_0,
    BlockQ8_0,
    "Q4_0 weights (`d * (q - 8)`) against Q8_0 activations."
);

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_1_rows<const R: usize>(x: [&[BlockQ4_1]; R], y: &[BlockQ8_1]) -> [f32; R] {
    let acc = rows(
        x,
        y,
        (_mm256_setzero_ps(), _mm_setzero_ps()),
        |y| (load256(&y.qs), fp16(y.d), fp16(y.s)),
        |x, p, acc| {
            let d = _mm256_set1_ps(fp16(x.d) * p.1);
            let sums = dot_u8_i8(nibbles(&x.qs), p.0);
            let scaled = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc.0);
            (scaled, fma_ss(fp16(x.m), p.2, acc.1))
        },
    );
    acc.map(|(a, m)| finish(a) + _mm_cvtss_f32(m))
}

entry_points!(
    vec_dot_q4_1_q8_1,
    matvec_q4_1_q8_1,
    q4_1_rows,
    BlockQ4_1,
    BlockQ8_1,
    "Q4_1 weights (`d * q + m`) against Q8_1 activations: `m` meets the activation sum `s`."
);

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_0_rows<const R: usize>(x: [&[BlockQ5_0]; R], y: &[BlockQ8_0]) -> [f32; R] {
    let acc = rows(
        x,
        y,
        _mm256_setzero_ps(),
        |y| (load256(&y.qs), fp16(y.d)),
        |x, p, acc| {
            let d = _mm256_set1_ps(fp16(x.d) * p.1);
            // q - 16: the nibble with 0xf0 (-16) where the fifth bit is clear.
            let high = _mm256_andnot_si256(bytes_from_bits(x.qh), _mm256_set1_epi8(-16));
            let q = _mm256_or_si256(nibbles(&x.qs), high);
            _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8_i8(q, p.0)), acc)
        },
    );
    acc.map(|a| finish(a))
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
    let acc = rows(
        x,
        y,
        (_mm256_setzero_ps(), _mm_setzero_ps()),
        |y| (load256(&y.qs), fp16(y.d), fp16(y.s)),
        |x, p, acc| {
            let high = _mm256_and_si256(bytes_from_bits(x.qh), _mm256_set1_epi8(0x10));
            let q = _mm256_or_si256(nibbles(&x.qs), high);
            let d = _mm256_set1_ps(fp16(x.d) * p.1);
            let scaled = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_u8_i8(q, p.0)), d, acc.0);
            (scaled, fma_ss(fp16(x.m), p.2, acc.1))
        },
    );
    acc.map(|(a, m)| finish(a) + _mm_cvtss_f32(m))
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
    // As ggml: even and odd blocks in two accumulators (swapped after every block, so the
    // even ones always go to the first), an odd last block added in scalar code.
    let even = y.len() & !1;
    let acc = rows(
        x,
        &y[..even],
        (_mm256_setzero_ps(), _mm256_setzero_ps()),
        |y| (load256(&y.qs), fp16(y.d)),
        |x, p, acc| {
            let q = load128(&x.qs);
            let lo = _mm_shuffle_epi8(values, _mm_and_si128(q, m4));
            let hi = _mm_shuffle_epi8(values, _mm_and_si128(_mm_srli_epi16::<4>(q), m4));
            let sums = dot_i8_i8(_mm256_set_m128i(hi, lo), p.0);
            let d = _mm256_set1_ps(p.1 * fp16(x.d));
            (acc.1, _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc.0))
        },
    );
    let mut out = acc.map(|(a, b)| finish(_mm256_add_ps(a, b)));
    if let Some(yt) = y.get(even) {
        for (o, row) in out.iter_mut().zip(x) {
            if let Some(xt) = row.get(even) {
                let sum: i32 = (0..16)
                    .map(|j| {
                        let (lo, hi) = (xt.qs[j] & 0x0f, xt.qs[j] >> 4);
                        i32::from(yt.qs[j]) * i32::from(KVALUES_IQ4NL[usize::from(lo)])
                            + i32::from(yt.qs[j + 16]) * i32::from(KVALUES_IQ4NL[usize::from(hi)])
                    })
                    .sum();
                let d = fp16(yt.d) * fp16(xt.d);
                *o = _mm_cvtss_f32(fma_ss(d, sum as f32, _mm_set_ss(*o)));
            }
        }
    }
    out
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

/// F16 weights against F16 activations as ggml's `ggml_vec_dot_f16` on AVX2: four
/// accumulators of eight lanes over steps of 32 values (one FMA each), folded 0+2, 1+3, then
/// 0+1, the halves added and two horizontal adds; a tail of fewer than 32 values added one
/// product at a time in f64, the sum rounded to f32 at the end. (Flash attention's `K . Q`,
/// issue #3.)
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_f16_f16(x: &[u16], y: &[u16]) -> f32 {
    let n = x.len().min(y.len());
    let body = n / 32 * 32;
    let load = |h: &[u16]| {
        assert!(h.len() >= 8);
        // SAFETY: `h` has at least 16 readable bytes (asserted); `loadu` needs no alignment.
        _mm256_cvtph_ps(unsafe { _mm_loadu_si128(h.as_ptr().cast()) })
    };
    let mut sum = [_mm256_setzero_ps(); 4];
    for (xs, ys) in x[..body].chunks_exact(32).zip(y[..body].chunks_exact(32)) {
        for (j, s) in sum.iter_mut().enumerate() {
            *s = _mm256_fmadd_ps(load(&xs[8 * j..]), load(&ys[8 * j..]), *s);
        }
    }
    let a = _mm256_add_ps(sum[0], sum[2]);
    let b = _mm256_add_ps(sum[1], sum[3]);
    let v = _mm256_add_ps(a, b);
    let t0 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let t1 = _mm_hadd_ps(t0, t0);
    let mut total = f64::from(_mm_cvtss_f32(_mm_hadd_ps(t1, t1)));
    for (&a, &b) in x[body..n].iter().zip(&y[body..n]) {
        total += f64::from(fp16(a) * fp16(b));
    }
    total as f32
}

matvec_of!(matvec_f16_f16, vec_dot_f16_f16, u16, u16);

// ---------------------------------------------------------------------------------------------
// llama.cpp's 8-row interleaved order (issue #3). On AVX2, llama.cpp repacks every Q4_0, Q4_K
// and IQ4_NL matrix whose row count is a multiple of 8 into blocks of eight rows
// (`ggml-cpu/repack.cpp`) and multiplies it by one activation row with `ggml_gemv_*_8x8_*`
// (`arch/x86/repack.cpp`): a block's integer dot product is summed whole for each row (the
// same integer as above), then `acc = fma(isum, dx * dy, acc)`, one f32 lane per row, block
// after block, with no horizontal sum at the end. The `gemv_*` kernels below compute those
// rows on the plain row-major blocks, eight rows at a time (lane `r` is row `r`, as in
// ggml's register), a remainder one row at a time with the same arithmetic.
// ---------------------------------------------------------------------------------------------

/// Lane `r` of the result: the sum of the eight i32 lanes of `v[r]` (exact, in any order).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn row_sums8(v: [__m256i; 8]) -> __m256i {
    // Each hadd sums neighbouring lanes within 128-bit halves: after two rounds the low half
    // holds the four low lanes' sums of four rows, the high half their four high lanes'.
    let h01 = _mm256_hadd_epi32(v[0], v[1]);
    let h23 = _mm256_hadd_epi32(v[2], v[3]);
    let h45 = _mm256_hadd_epi32(v[4], v[5]);
    let h67 = _mm256_hadd_epi32(v[6], v[7]);
    let h0123 = _mm256_hadd_epi32(h01, h23);
    let h4567 = _mm256_hadd_epi32(h45, h67);
    let low = _mm256_permute2x128_si256::<0x20>(h0123, h4567);
    let high = _mm256_permute2x128_si256::<0x31>(h0123, h4567);
    _mm256_add_epi32(low, high)
}

/// Eight f16 scales as eight f32 lanes (exact).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn fp16x8(d: [u16; 8]) -> __m256 {
    _mm256_cvtph_ps(load128(&d))
}

/// The eight lanes of `v` in order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn lanes8(v: __m256) -> [f32; 8] {
    // SAFETY: both are 32 bytes of plain f32s; every bit pattern is valid for each.
    unsafe { core::mem::transmute::<__m256, [f32; 8]>(v) }
}

/// The interleaved-order skeleton of the 32-value types with one f16 scale per block, against
/// Q8_0 activations: `isum(x, y quants)` gives a block's integer dot product spread over
/// eight i32 lanes, `d(x)` its scale's bits. `w` holds `out.len()` rows of `act.len()` blocks.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn gemv_b32<X>(
    w: &[X],
    act: &[BlockQ8_0],
    out: &mut [f32],
    isum: impl Fn(&X, __m256i) -> __m256i,
    d: impl Fn(&X) -> u16,
) {
    let n = act.len();
    if n == 0 {
        out.fill(0.0);
        return;
    }
    let mut done = 0;
    for (o, rows) in out.chunks_exact_mut(8).zip(w.chunks_exact(8 * n)) {
        let rows: [&[X]; 8] = split_rows(rows, n);
        let mut acc = _mm256_setzero_ps();
        for (b, y) in act.iter().enumerate() {
            let yq = load256(&y.qs);
            // Plain loops, not `array::map`: its closures would not inherit the CPU features
            // and stay calls.
            let (mut sums, mut dx) = ([_mm256_setzero_si256(); 8], [0u16; 8]);
            for r in 0..8 {
                let x = &rows[r][b];
                prefetch_ahead(x);
                sums[r] = isum(x, yq);
                dx[r] = d(x);
            }
            let scale = _mm256_mul_ps(fp16x8(dx), _mm256_set1_ps(fp16(y.d)));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(row_sums8(sums)), scale, acc);
        }
        o.copy_from_slice(&lanes8(acc));
        done += 8;
    }
    for (o, row) in out[done..].iter_mut().zip(w[done * n..].chunks_exact(n)) {
        let mut acc = _mm_setzero_ps();
        for (x, y) in row.iter().zip(act) {
            let sum = hsum_i32x8(isum(x, load256(&y.qs)));
            acc = fma_ss(sum as f32, fp16(d(x)) * fp16(y.d), acc);
        }
        *o = _mm_cvtss_f32(acc);
    }
}

/// Q4_0 weights against Q8_0 activations in llama.cpp's 8-row interleaved order
/// (`ggml_gemv_q4_0_8x8_q8_0`): `out[r]` for row `r` of `w`, which holds `out.len()` rows of
/// `act.len()` blocks. For matrices of a multiple of 8 rows; a row's result does not depend
/// on the rows around it.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemv_q4_0_8x8_q8_0(w: &[BlockQ4_0], act: &[BlockQ8_0], out: &mut [f32]) {
    gemv_b32(
        w,
        act,
        out,
        |x, y| dot_i8_i8(_mm256_sub_epi8(nibbles(&x.qs), _mm256_set1_epi8(8)), y),
        |x| x.d,
    );
}

/// IQ4_NL weights against Q8_0 activations in llama.cpp's 8-row interleaved order
/// (`ggml_gemv_iq4_nl_8x8_q8_0`), as [`gemv_q4_0_8x8_q8_0`].
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemv_iq4_nl_8x8_q8_0(w: &[BlockIq4Nl], act: &[BlockQ8_0], out: &mut [f32]) {
    let values = load128(&KVALUES_IQ4NL);
    let m4 = _mm_set1_epi8(0x0f);
    gemv_b32(
        w,
        act,
        out,
        |x, y| {
            let q = load128(&x.qs);
            let lo = _mm_shuffle_epi8(values, _mm_and_si128(q, m4));
            let hi = _mm_shuffle_epi8(values, _mm_and_si128(_mm_srli_epi16::<4>(q), m4));
            dot_i8_i8(_mm256_set_m128i(hi, lo), y)
        },
        |x| x.d,
    );
}
