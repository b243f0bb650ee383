//! NEON dot products of the 32-value block types with their Q8_0 / Q8_1 activations, in the
//! arithmetic of the AVX2 kernels (`x86/avx2/vec_dot.rs`): a block's 32 products summed
//! exactly into eight i32 lanes (lane `l` the products of values `4l..4l + 4`, by [`dot4`]),
//! converted and multiplied by the block's scale into one eight-lane accumulator per row
//! ([`F32x8`]) with a fused multiply-add, the lanes summed by [`hsum_f32x8`] at the end.
//!
//! As on AVX2, every kernel is written once for `R` rows against one activation
//! (`*_rows::<DOTPROD, R>`): the activation side of a block (its quants, its scale) is
//! loaded once and used by all `R` rows, each row with its own accumulator, so the
//! independent FMA chains hide each other's latency. A row's arithmetic is the same whatever
//! `R` is, so `vec_dot_*` (`R = 1`) and `matvec_*` ([`ROWS`] at a time, then one by one)
//! agree bit for bit. The weights' quants are turned into signed bytes (`q - 8`, `q - 16`, the
//! IQ4_NL table) or kept unsigned below 32 (Q4_1, Q5_1): either way the lane integers are the
//! AVX2 kernels'.

use super::{
    dot4, fma_f32, fma_scaled, fp16, fp16x4, halves, hsum_f32x8, load_i8, load_u8, zero_f32x8,
    F32x8, I32x8,
};
use core::arch::aarch64::*;
use formats::quant::{
    BlockIq4Nl, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, KVALUES_IQ4NL,
};

/// Rows per pass of the `matvec_*` kernels.
pub const ROWS: usize = 4;

/// The row-blocked skeleton (AVX2's `rows`): blocks `0..n` (the shortest slice); for each,
/// `prep` of the activation block once, then `step(weight block, prepared, accumulator)` for
/// every row, one accumulator per row. Returns the `R` accumulators.
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

/// An activation block's quants as two registers (values 0..16, 16..32).
#[inline]
#[target_feature(enable = "neon")]
fn load_q8(qs: &[i8; 32]) -> [int8x16_t; 2] {
    halves(qs).map(|h| load_i8(&h))
}

/// The block's 32 products in AVX2's eight lanes: `q` (values 0..16, 16..32) against the
/// activation's quants `y`.
#[inline]
#[target_feature(enable = "neon")]
fn block_sums<const DOTPROD: bool>(q: [int8x16_t; 2], y: [int8x16_t; 2]) -> I32x8 {
    let zero = vdupq_n_s32(0);
    [
        dot4::<DOTPROD>(zero, q[0], y[0]),
        dot4::<DOTPROD>(zero, q[1], y[1]),
    ]
}

/// A nibble block's quants as bytes (values 0..16 = low nibbles, 16..32 = high nibbles).
#[inline]
#[target_feature(enable = "neon")]
fn nibbles(qs: &[u8; 16]) -> [uint8x16_t; 2] {
    let q = load_u8(qs);
    [vandq_u8(q, vdupq_n_u8(0x0f)), vshrq_n_u8::<4>(q)]
}

/// The fifth bits of a Q5 block in the layout of [`nibbles`]: 0x10 where bit `i` of the
/// little-endian `qh` (value `i`) is set.
#[inline]
#[target_feature(enable = "neon")]
fn fifth_bits(qh: [u8; 4]) -> [uint8x16_t; 2] {
    let bytes = vreinterpretq_u8_u32(vdupq_n_u32(u32::from_le_bytes(qh)));
    // Byte i of a half takes byte i / 8 of the word (bytes 2, 3 for values 16..32)...
    let pick = |lo: u64, hi: u64| vqtbl1q_u8(bytes, vcombine_u8(vcreate_u8(lo), vcreate_u8(hi)));
    let low = pick(0, 0x0101_0101_0101_0101);
    let high = pick(0x0202_0202_0202_0202, 0x0303_0303_0303_0303);
    // ...and keeps bit i % 8: 0x10 where it is set.
    let bit = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
    let m16 = vdupq_n_u8(0x10);
    let fifth = |v| vandq_u8(vtstq_u8(v, bit), m16);
    [fifth(low), fifth(high)]
}

/// `q - offset` as signed bytes.
#[inline]
#[target_feature(enable = "neon")]
fn signed(q: [uint8x16_t; 2], offset: i8) -> [int8x16_t; 2] {
    let o = vdupq_n_s8(offset);
    q.map(|q| vsubq_s8(vreinterpretq_s8_u8(q), o))
}

/// A Q5 block's quants (0..32): the nibbles with the fifth bits on top.
#[inline]
#[target_feature(enable = "neon")]
fn five_bit(qs: &[u8; 16], qh: [u8; 4]) -> [uint8x16_t; 2] {
    let [lo, hi] = nibbles(qs);
    let [h_lo, h_hi] = fifth_bits(qh);
    [vorrq_u8(lo, h_lo), vorrq_u8(hi, h_hi)]
}

/// `pub unsafe fn $vec_dot(x, y)` and `pub unsafe fn $matvec(w, act, out)` from the
/// row-blocked `$rows::<DOTPROD, R>`, in this module (`DOTPROD = false`, feature `neon`) and
/// in a `dotprod` submodule (`DOTPROD = true`, features `neon,dotprod`).
macro_rules! row_blocked_entry_points {
    ($(($vec_dot:ident, $matvec:ident, $rows:ident, $w:ty, $a:ty, $doc:literal)),+ $(,)?) => {
        $(
            #[doc = $doc]
            ///
            /// # Safety
            /// The CPU must support NEON (every AArch64 CPU does).
            #[target_feature(enable = "neon")]
            pub unsafe fn $vec_dot(x: &[$w], y: &[$a]) -> f32 {
                $rows::<false, 1>([x], y)[0]
            }

            #[doc = concat!("[`", stringify!($vec_dot), "`] on every row of a matrix: `out[r]` \
                for row `r` of `w`, which holds `out.len()` rows of `act.len()` blocks ([`ROWS`] \
                rows per pass; a short `w` leaves the last outputs untouched).")]
            ///
            /// # Safety
            /// The CPU must support NEON (every AArch64 CPU does).
            #[target_feature(enable = "neon")]
            pub unsafe fn $matvec(w: &[$w], act: &[$a], out: &mut [f32]) {
                matvec(w, act, out, |r| $rows::<false, ROWS>(r, act), |r| {
                    $rows::<false, 1>(r, act)
                });
            }
        )+

        /// The same kernels with the dot-product extension (`SDOT`).
        pub mod dotprod {
            use super::*;
            $(
                #[doc = $doc]
                ///
                /// # Safety
                /// The CPU must support NEON and the dot-product extension (`dotprod`).
                #[target_feature(enable = "neon,dotprod")]
                pub unsafe fn $vec_dot(x: &[$w], y: &[$a]) -> f32 {
                    $rows::<true, 1>([x], y)[0]
                }

                #[doc = concat!("[`", stringify!($vec_dot), "`] on every row of a matrix.")]
                ///
                /// # Safety
                /// The CPU must support NEON and the dot-product extension (`dotprod`).
                #[target_feature(enable = "neon,dotprod")]
                pub unsafe fn $matvec(w: &[$w], act: &[$a], out: &mut [f32]) {
                    matvec(w, act, out, |r| $rows::<true, ROWS>(r, act), |r| {
                        $rows::<true, 1>(r, act)
                    });
                }
            )+
        }
    };
}

/// The rows of `w` ([`ROWS`] at a time through `many`, the rest through `one`) into `out`;
/// all zero for an empty activation.
#[inline(always)]
pub(super) fn matvec<W, A>(
    w: &[W],
    act: &[A],
    out: &mut [f32],
    many: impl Fn([&[W]; ROWS]) -> [f32; ROWS],
    one: impl Fn([&[W]; 1]) -> [f32; 1],
) {
    let n = act.len();
    if n == 0 {
        out.fill(0.0);
        return;
    }
    let mut done = 0;
    for (o, rows) in out.chunks_exact_mut(ROWS).zip(w.chunks_exact(ROWS * n)) {
        o.copy_from_slice(&many(split_rows(rows, n)));
        done += ROWS;
    }
    for (o, row) in out[done..].iter_mut().zip(w[done * n..].chunks_exact(n)) {
        *o = one([row])[0];
    }
}

#[inline]
#[target_feature(enable = "neon")]
fn q4_0_rows<const DOTPROD: bool, const R: usize>(
    x: [&[BlockQ4_0]; R],
    y: &[BlockQ8_0],
) -> [f32; R] {
    let acc = rows(
        x,
        y,
        zero_f32x8(),
        |y| (load_q8(&y.qs), fp16(y.d)),
        |x, p, acc| {
            let d = fp16(x.d) * p.1;
            let q = signed(nibbles(&x.qs), 8);
            fma_scaled(acc, block_sums::<DOTPROD>(q, p.0), d)
        },
    );
    acc.map(|a| hsum_f32x8(a))
}

/// A Q4_1 / Q5_1 row's accumulators: the scaled quant sums, and `m * s` in lane 0.
type WithMin = (F32x8, f32);

/// One Q4_1 / Q5_1 block: `(x.d * y.d) * sums` into the lanes (AVX2's
/// `fmadd(d, cvtepi32(sums), acc)`), `fma(x.m, y.s, min)` apart.
#[inline]
#[target_feature(enable = "neon")]
fn step_with_min(acc: WithMin, sums: I32x8, (d, m): (u16, u16), (yd, ys): (f32, f32)) -> WithMin {
    let s = fp16x4([d, m, 0, 0]);
    let (xd, xm) = (vgetq_lane_f32::<0>(s), vgetq_lane_f32::<1>(s));
    (fma_scaled(acc.0, sums, xd * yd), fma_f32(xm, ys, acc.1))
}

/// An activation block of Q8_1: its quants, `d` and `s`.
#[inline]
#[target_feature(enable = "neon")]
fn prep_q8_1(y: &BlockQ8_1) -> ([int8x16_t; 2], (f32, f32)) {
    let s = fp16x4([y.d, y.s, 0, 0]);
    (
        load_q8(&y.qs),
        (vgetq_lane_f32::<0>(s), vgetq_lane_f32::<1>(s)),
    )
}

#[inline]
#[target_feature(enable = "neon")]
fn q4_1_rows<const DOTPROD: bool, const R: usize>(
    x: [&[BlockQ4_1]; R],
    y: &[BlockQ8_1],
) -> [f32; R] {
    let acc = rows(
        x,
        y,
        (zero_f32x8(), 0.0),
        |y| prep_q8_1(y),
        |x, p, acc| {
            let q = signed(nibbles(&x.qs), 0);
            step_with_min(acc, block_sums::<DOTPROD>(q, p.0), (x.d, x.m), p.1)
        },
    );
    acc.map(|(a, m)| hsum_f32x8(a) + m)
}

#[inline]
#[target_feature(enable = "neon")]
fn q5_0_rows<const DOTPROD: bool, const R: usize>(
    x: [&[BlockQ5_0]; R],
    y: &[BlockQ8_0],
) -> [f32; R] {
    let acc = rows(
        x,
        y,
        zero_f32x8(),
        |y| (load_q8(&y.qs), fp16(y.d)),
        |x, p, acc| {
            let d = fp16(x.d) * p.1;
            let q = signed(five_bit(&x.qs, x.qh), 16);
            fma_scaled(acc, block_sums::<DOTPROD>(q, p.0), d)
        },
    );
    acc.map(|a| hsum_f32x8(a))
}

#[inline]
#[target_feature(enable = "neon")]
fn q5_1_rows<const DOTPROD: bool, const R: usize>(
    x: [&[BlockQ5_1]; R],
    y: &[BlockQ8_1],
) -> [f32; R] {
    let acc = rows(
        x,
        y,
        (zero_f32x8(), 0.0),
        |y| prep_q8_1(y),
        |x, p, acc| {
            let q = signed(five_bit(&x.qs, x.qh), 0);
            step_with_min(acc, block_sums::<DOTPROD>(q, p.0), (x.d, x.m), p.1)
        },
    );
    acc.map(|(a, m)| hsum_f32x8(a) + m)
}

#[inline]
#[target_feature(enable = "neon")]
fn q8_0_rows<const DOTPROD: bool, const R: usize>(
    x: [&[BlockQ8_0]; R],
    y: &[BlockQ8_0],
) -> [f32; R] {
    let acc = rows(
        x,
        y,
        zero_f32x8(),
        |y| (load_q8(&y.qs), fp16(y.d)),
        |x, p, acc| {
            let d = fp16(x.d) * p.1;
            fma_scaled(acc, block_sums::<DOTPROD>(load_q8(&x.qs), p.0), d)
        },
    );
    acc.map(|a| hsum_f32x8(a))
}

#[inline]
#[target_feature(enable = "neon")]
fn iq4_nl_rows<const DOTPROD: bool, const R: usize>(
    x: [&[BlockIq4Nl]; R],
    y: &[BlockQ8_0],
) -> [f32; R] {
    let values = load_i8(&KVALUES_IQ4NL);
    // As AVX2 (and ggml): even and odd blocks in two accumulators (swapped after every block,
    // so the even ones always go to the first), an odd last block added in scalar code.
    let even = y.len() & !1;
    let acc = rows(
        x,
        &y[..even],
        (zero_f32x8(), zero_f32x8()),
        |y| (load_q8(&y.qs), fp16(y.d)),
        |x, p, acc: (F32x8, F32x8)| {
            let [lo, hi] = nibbles(&x.qs);
            let q = [vqtbl1q_s8(values, lo), vqtbl1q_s8(values, hi)];
            let d = p.1 * fp16(x.d);
            (acc.1, fma_scaled(acc.0, block_sums::<DOTPROD>(q, p.0), d))
        },
    );
    let mut out = acc.map(|(a, b)| hsum_f32x8([vaddq_f32(a[0], b[0]), vaddq_f32(a[1], b[1])]));
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
                *o = fma_f32(d, sum as f32, *o);
            }
        }
    }
    out
}

row_blocked_entry_points!(
    (
        vec_dot_q4_0_q8_0,
        matvec_q4_0_q8_0,
        q4_0_rows,
        BlockQ4_0,
        BlockQ8_0,
        "Q4_0 weights (`d * (q - 8)`) against Q8_0 activations."
    ),
    (
        vec_dot_q4_1_q8_1,
        matvec_q4_1_q8_1,
        q4_1_rows,
        BlockQ4_1,
        BlockQ8_1,
        "Q4_1 weights (`d * q + m`) against Q8_1 activations: `m` meets the activation sum `s`."
    ),
    (
        vec_dot_q5_0_q8_0,
        matvec_q5_0_q8_0,
        q5_0_rows,
        BlockQ5_0,
        BlockQ8_0,
        "Q5_0 weights (`d * (q - 16)`) against Q8_0 activations."
    ),
    (
        vec_dot_q5_1_q8_1,
        matvec_q5_1_q8_1,
        q5_1_rows,
        BlockQ5_1,
        BlockQ8_1,
        "Q5_1 weights (`d * q + m`) against Q8_1 activations."
    ),
    (
        vec_dot_q8_0_q8_0,
        matvec_q8_0_q8_0,
        q8_0_rows,
        BlockQ8_0,
        BlockQ8_0,
        "Q8_0 weights against Q8_0 activations."
    ),
    (
        vec_dot_iq4_nl_q8_0,
        matvec_iq4_nl_q8_0,
        iq4_nl_rows,
        BlockIq4Nl,
        BlockQ8_0,
        "IQ4_NL weights (`d * KVALUES_IQ4NL[q]`) against Q8_0 activations: the nibbles index \
         the sixteen values with one table lookup (`TBL`) per half."
    ),
);
