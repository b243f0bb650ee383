//! Dot products of the K-quants with Q8_K activations (ggml's `ggml_vec_dot_q*_K_q8_K_generic`).
//!
//! Each super-block is first decoded to 256 small signed integers, then multiplied with the
//! activation quants in eight `i32` lanes (lane `l` takes the values `l mod 8`) with the
//! sub-block scales folded in, exactly as ggml's generic code does: integer sums are exact,
//! and the eight lanes are scaled and accumulated in f32 in ggml's order, so the float result
//! matches ggml's generic code wherever its compiler does not contract into FMAs.

use super::fp16;
use formats::quant::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, QK_K};

/// Lanes of the integer accumulators (ggml's `aux32[8]`).
const LANES: usize = 8;

/// `acc[l] += scale * sum over the sub-block of a[8c + l] * q8[8c + l]`: one sub-block of 16
/// or 32 values with its scale, in ggml's eight lanes. ggml multiplies each product by the
/// scale before adding; summing the (at most four) products of a lane first and multiplying
/// once gives the same integers with a quarter of the 32-bit multiplies, which SSE2 lacks.
/// The lane sums fit `i16`: `|a| <= 32`, `|q8| <= 128`, so four products stay within
/// `+-16384`, and a super-block's lanes stay far inside `i32`.
#[inline(always)]
fn scaled_lanes<const SUB: usize>(
    acc: &mut [i32; LANES],
    scale: i32,
    a: &[i8; SUB],
    q8: &[i8; SUB],
) {
    let mut sum = [0i16; LANES];
    for c in 0..SUB / LANES {
        for l in 0..LANES {
            sum[l] += i16::from(a[LANES * c + l]) * i16::from(q8[LANES * c + l]);
        }
    }
    for l in 0..LANES {
        acc[l] += scale * i32::from(sum[l]);
    }
}

/// The decoded values of a super-block, multiplied lane-wise with the activation quants,
/// `SUB` values per sub-block each with its scale from `scales`.
#[inline(always)]
fn super_block_lanes<const SUB: usize>(
    a: &[i8; QK_K],
    q8: &[i8; QK_K],
    scales: impl Iterator<Item = i32>,
) -> [i32; LANES] {
    let mut acc = [0i32; LANES];
    // Whole sub-blocks as arrays, so the inner loops have constant trip counts.
    let a: &[[i8; SUB]] = bytemuck::cast_slice(a);
    let q8: &[[i8; SUB]] = bytemuck::cast_slice(q8);
    for ((a, q), scale) in a.iter().zip(q8).zip(scales) {
        scaled_lanes(&mut acc, scale, a, q);
    }
    acc
}

/// `sums[l] += d * acc[l]`, ggml's per-block float step.
#[inline(always)]
fn accumulate(sums: &mut [f32; LANES], d: f32, acc: &[i32; LANES]) {
    for l in 0..LANES {
        sums[l] += d * acc[l] as f32;
    }
}

/// Q4_K/Q5_K's twelve scale bytes unpacked to eight 6-bit scales and eight 6-bit mins
/// (ggml's `utmp` shuffle with `kmask1..3`, equivalent to `get_scale_min_k4`).
#[inline(always)]
pub(crate) fn scales_mins_k4(packed: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let word = |i: usize| {
        u32::from_le_bytes([
            packed[4 * i],
            packed[4 * i + 1],
            packed[4 * i + 2],
            packed[4 * i + 3],
        ])
    };
    let (u0, u1, u2) = (word(0), word(1), word(2));
    let scales_lo = u0 & KMASK1;
    let scales_hi = (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4);
    let mins_lo = u1 & KMASK1;
    let mins_hi = ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4);
    let join = |lo: u32, hi: u32| {
        let (lo, hi) = (lo.to_le_bytes(), hi.to_le_bytes());
        [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]]
    };
    (join(scales_lo, scales_hi), join(mins_lo, mins_hi))
}

/// Q3_K's twelve scale bytes unpacked to sixteen 6-bit scales, still offset by 32.
#[inline(always)]
pub(crate) fn scales_q3_k(packed: &[u8; 12]) -> [u8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let word = |i: usize| {
        u32::from_le_bytes([
            packed[4 * i],
            packed[4 * i + 1],
            packed[4 * i + 2],
            packed[4 * i + 3],
        ])
    };
    let (a0, a1, tmp) = (word(0), word(1), word(2));
    let words = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    let mut out = [0u8; 16];
    for (o, w) in out.chunks_exact_mut(4).zip(words) {
        o.copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// Q2_K weights (`d * sc * q - dmin * m`, 2-bit `q`) against Q8_K activations.
pub fn vec_dot_q2_k_q8_k(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let mut summs = 0i32;
        for (&bsum, &sc) in y.bsums.iter().zip(&x.scales) {
            summs += i32::from(bsum) * i32::from(sc >> 4);
        }
        let dall = y.d * fp16(x.d);
        let dmin = y.d * fp16(x.dmin);

        // Sub-block `is` (16 values) of 128-value half `k` takes bits `2 * (is / 2 % 4)` of
        // bytes `32 * k + 16 * (is % 2)..` of the quants.
        let mut isum = 0i32;
        for (is, (q8, &sc)) in y.qs.chunks_exact(16).zip(&x.scales).enumerate() {
            let shift = 2 * ((is / 2) % 4);
            let start = 32 * (is / 8) + 16 * (is % 2);
            let q2 = &x.qs[start..start + 16];
            let mut isuml = 0i32;
            for l in 0..16 {
                isuml += i32::from(q8[l]) * i32::from((q2[l] >> shift) & 3);
            }
            isum += i32::from(sc & 0xf) * isuml;
        }
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}

/// Q3_K weights (`d * (sc - 32) * (q - 4)`, 3-bit `q`) against Q8_K activations.
pub fn vec_dot_q3_k_q8_k(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut sums = [0f32; LANES];
    for (x, y) in x.iter().zip(y) {
        // Value 128 * h + 32 * s + l: bits 2s..2s+2 of qs[32 * h + l], minus 4 unless bit
        // 4h + s of hmask[l] is set.
        let mut a = [0i8; QK_K];
        for (h, (a, q3)) in a
            .chunks_exact_mut(128)
            .zip(x.qs.chunks_exact(32))
            .enumerate()
        {
            for (s, a) in a.chunks_exact_mut(32).enumerate() {
                let m = 1u8 << (4 * h + s);
                for l in 0..32 {
                    let low = ((q3[l] >> (2 * s)) & 3) as i8;
                    a[l] = low - if x.hmask[l] & m != 0 { 0 } else { 4 };
                }
            }
        }
        let scales = scales_q3_k(&x.scales);
        let acc = super_block_lanes::<16>(&a, &y.qs, scales.iter().map(|&s| i32::from(s) - 32));
        accumulate(&mut sums, fp16(x.d) * y.d, &acc);
    }
    let mut sumf = 0f32;
    for s in sums {
        sumf += s;
    }
    sumf
}

/// Q4_K/Q5_K's tail: mins against the activation block sums, scaled sub-blocks in lanes.
#[inline(always)]
fn finish_k4(
    a: &[i8; QK_K],
    y: &BlockQ8K,
    packed: &[u8; 12],
    d: u16,
    dmin: u16,
    sums: &mut [f32; LANES],
    sumf: &mut f32,
) {
    let (scales, mins) = scales_mins_k4(packed);
    let mut sumi = 0i32;
    for (j, &bsum) in y.bsums.iter().enumerate() {
        sumi += i32::from(bsum) * i32::from(mins[j / 2]);
    }
    let acc = super_block_lanes::<32>(a, &y.qs, scales.iter().map(|&s| i32::from(s)));
    accumulate(sums, fp16(d) * y.d, &acc);
    *sumf -= fp16(dmin) * y.d * sumi as f32;
}

/// Q4_K weights (`d * sc * q - dmin * m`, 4-bit `q`) against Q8_K activations.
pub fn vec_dot_q4_k_q8_k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut sums = [0f32; LANES];
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        // Value 64 * j + l is the low nibble of qs[32 * j + l], 64 * j + 32 + l the high one.
        let mut a = [0i8; QK_K];
        for (a, q4) in a.chunks_exact_mut(64).zip(x.qs.chunks_exact(32)) {
            for l in 0..32 {
                a[l] = (q4[l] & 0x0f) as i8;
                a[l + 32] = (q4[l] >> 4) as i8;
            }
        }
        finish_k4(&a, y, &x.scales, x.d, x.dmin, &mut sums, &mut sumf);
    }
    for s in sums {
        sumf += s;
    }
    sumf
}

/// Q5_K weights (`d * sc * q - dmin * m`, 5-bit `q`) against Q8_K activations.
pub fn vec_dot_q5_k_q8_k(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut sums = [0f32; LANES];
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        // As Q4_K, plus 16 where bit 2j (low nibbles) or 2j + 1 (high) of qh[l] is set.
        let mut a = [0i8; QK_K];
        for (j, (a, q4)) in a
            .chunks_exact_mut(64)
            .zip(x.qs.chunks_exact(32))
            .enumerate()
        {
            let (m0, m1) = (1u8 << (2 * j), 1u8 << (2 * j + 1));
            for l in 0..32 {
                let h0 = if x.qh[l] & m0 != 0 { 16 } else { 0 };
                let h1 = if x.qh[l] & m1 != 0 { 16 } else { 0 };
                a[l] = (q4[l] & 0x0f) as i8 + h0;
                a[l + 32] = (q4[l] >> 4) as i8 + h1;
            }
        }
        finish_k4(&a, y, &x.scales, x.d, x.dmin, &mut sums, &mut sumf);
    }
    for s in sums {
        sumf += s;
    }
    sumf
}

/// Q6_K weights (`d * sc * (q - 32)`, 6-bit `q`, signed 8-bit `sc`) against Q8_K activations.
pub fn vec_dot_q6_k_q8_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut sums = [0f32; LANES];
    for (x, y) in x.iter().zip(y) {
        // Within each 128: values l, l + 32, l + 64, l + 96 take the low nibble of ql[l],
        // of ql[l + 32], the high nibble of ql[l], of ql[l + 32], and bits 0-1, 2-3, 4-5,
        // 6-7 of qh[l] on top.
        let mut a = [0i8; QK_K];
        for ((a, ql), qh) in a
            .chunks_exact_mut(128)
            .zip(x.ql.chunks_exact(64))
            .zip(x.qh.chunks_exact(32))
        {
            for l in 0..32 {
                let h = qh[l];
                a[l] = ((ql[l] & 0x0f) | ((h & 3) << 4)) as i8 - 32;
                a[l + 32] = ((ql[l + 32] & 0x0f) | (((h >> 2) & 3) << 4)) as i8 - 32;
                a[l + 64] = ((ql[l] >> 4) | (((h >> 4) & 3) << 4)) as i8 - 32;
                a[l + 96] = ((ql[l + 32] >> 4) | (((h >> 6) & 3) << 4)) as i8 - 32;
            }
        }
        let acc = super_block_lanes::<16>(&a, &y.qs, x.scales.iter().map(|&s| i32::from(s)));
        accumulate(&mut sums, fp16(x.d) * y.d, &acc);
    }
    let mut sumf = 0f32;
    for s in sums {
        sumf += s;
    }
    sumf
}
