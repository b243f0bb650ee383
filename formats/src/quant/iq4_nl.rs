//! IQ4_NL: blocks of 32 weights as 4-bit indices into a fixed non-linear table
//! ([`KVALUES_IQ4NL`]) times an f16 scale.
//!
//! ggml quantizes IQ4_NL only through `quantize_iq4_nl` (its `quantize_row_iq4_nl_impl` with a
//! super-block of one block and 7 extra scale tries), with or without importance weights;
//! [`quantize_iq4_nl`] is bit-exact with it for every finite input.

use super::k_search::sqrtf;
use super::search::{best_index_int8, signed_absmax, GROUP_MAX_EPS};
use super::{fp16_bits_to_fp32, fp32_to_fp16_bits};

/// Weights per IQ4_NL block.
pub const QK4_NL: usize = 32;

/// The 16 levels of IQ4_NL (ggml's `kvalues_iq4nl`), sorted.
pub const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// IQ4_NL: 32 weights as `d * KVALUES_IQ4NL[q]`; 4.5 bits per weight.
/// Weight `j` is the low nibble of `qs[j]`, weight `j + 16` the high nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockIq4Nl {
    /// Scale (f16 bits).
    pub d: u16,
    /// Nibbles: indices into [`KVALUES_IQ4NL`].
    pub qs: [u8; QK4_NL / 2],
}
const _: () = assert!(size_of::<BlockIq4Nl>() == 18);

/// Extra scales tried on each side of the first guess (ggml's `ntry` in `quantize_iq4_nl`).
const NTRY: i32 = 7;

/// Weighted sums `sum w*q*x` and `sum w*q*q` when `xb` is quantized at inverse scale `id`.
#[inline]
fn weighted_sums(xb: &[f32], weight: &[f32; QK4_NL], id: f32) -> (f32, f32) {
    let (mut sumqx, mut sumq2) = (0f32, 0f32);
    for (&x, &w) in xb.iter().zip(weight) {
        let q = f32::from(KVALUES_IQ4NL[best_index_int8(&KVALUES_IQ4NL, id * x)]);
        sumqx += w * q * x;
        sumq2 += w * q * q;
    }
    (sumqx, sumq2)
}

/// One block of ggml's `quantize_row_iq4_nl_impl(QK4_NL, 32, ..., ntry = 7)`. `qw` are the
/// block's importance weights; `sigma2` is only used with them.
fn quantize_block_iq4_nl(xb: &[f32], qw: Option<&[f32]>) -> BlockIq4Nl {
    let mut sigma2 = 0f32;
    for &v in xb {
        sigma2 += v * v;
    }
    sigma2 *= 2.0 / QK4_NL as f32;

    let weight: [f32; QK4_NL] = match qw {
        Some(qw) => core::array::from_fn(|j| qw[j] * sqrtf(sigma2 + xb[j] * xb[j])),
        None => core::array::from_fn(|j| xb[j] * xb[j]),
    };
    let (amax, max) = signed_absmax(xb);
    let v0 = f32::from(KVALUES_IQ4NL[0]);
    let scale = if amax < GROUP_MAX_EPS {
        0.0
    } else {
        // First guess: the largest magnitude maps onto the most negative level.
        let (sumqx, sumq2) = weighted_sums(xb, &weight, 1.0 / (-max / v0));
        let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
        let mut best = d * sumqx;
        for itry in -NTRY..=NTRY {
            let id = (itry + i32::from(KVALUES_IQ4NL[0])) as f32 / max;
            let (sumqx, sumq2) = weighted_sums(xb, &weight, id);
            if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        d
    };

    // With one block per super-block ggml stores the block scale as is and requantizes at it.
    let id = if scale != 0.0 { 1.0 / scale } else { 0.0 };
    let l: [u8; QK4_NL] =
        core::array::from_fn(|j| best_index_int8(&KVALUES_IQ4NL, id * xb[j]) as u8);
    BlockIq4Nl {
        d: fp32_to_fp16_bits(scale),
        qs: core::array::from_fn(|j| l[j] | (l[j + 16] << 4)),
    }
}

/// Quantize whole rows of `n_per_row` values to IQ4_NL (ggml's `quantize_iq4_nl`), with the
/// importance weights (one per column) when given.
pub fn quantize_iq4_nl(
    src: &[f32],
    dst: &mut [BlockIq4Nl],
    n_per_row: usize,
    quant_weights: Option<&[f32]>,
) {
    for (row, out) in src
        .chunks_exact(n_per_row)
        .zip(dst.chunks_exact_mut(n_per_row / QK4_NL))
    {
        for (ib, (xb, yb)) in row.chunks_exact(QK4_NL).zip(out).enumerate() {
            let qw = quant_weights.map(|w| &w[ib * QK4_NL..(ib + 1) * QK4_NL]);
            *yb = quantize_block_iq4_nl(xb, qw);
        }
    }
}

/// Dequantize IQ4_NL blocks into `y` (32 values per block).
pub fn dequantize_row_iq4_nl(x: &[BlockIq4Nl], y: &mut [f32]) {
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK4_NL)) {
        let d = fp16_bits_to_fp32(xb.d);
        for (j, &q) in xb.qs.iter().enumerate() {
            yb[j] = d * f32::from(KVALUES_IQ4NL[usize::from(q & 0x0f)]);
            yb[j + QK4_NL / 2] = d * f32::from(KVALUES_IQ4NL[usize::from(q >> 4)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn round_trip(x: &[f32], n_per_row: usize, w: Option<&[f32]>) -> (Vec<BlockIq4Nl>, f32) {
        let mut blocks = vec![BlockIq4Nl { d: 0, qs: [0; 16] }; x.len() / QK4_NL];
        quantize_iq4_nl(x, &mut blocks, n_per_row, w);
        let mut y = vec![0f32; x.len()];
        dequantize_row_iq4_nl(&blocks, &mut y);
        (
            blocks,
            x.iter()
                .zip(&y)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max),
        )
    }

    #[test]
    fn round_trip_error_is_bounded() {
        let x: Vec<f32> = (0..128)
            .map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * 0.3)
            .collect();
        let w: Vec<f32> = (0..64).map(|i| 0.5 + (i % 7) as f32).collect();
        for wt in [None, Some(&w[..])] {
            let (_, err) = round_trip(&x, 64, wt);
            // The scale fit trades the extremes for the bulk (weights x^2 or the importance), so
            // allow more than half the widest gap (24 of 127 levels).
            assert!(err <= 0.3 * 0.15, "{err}");
        }
    }

    #[test]
    fn zero_block_is_all_level_eight() {
        let (blocks, err) = round_trip(&[0.0; 32], 32, None);
        assert_eq!(err, 0.0);
        assert_eq!(blocks[0].d, 0);
        // ggml requantizes at id = 0: every value lands on the level nearest 0, index 8.
        assert!(blocks[0].qs.iter().all(|&q| q == 0x88));
    }

    #[test]
    fn non_finite_and_extreme_inputs_do_not_panic() {
        let mut x: Vec<f32> = (0..64).map(|i| i as f32 * 0.01).collect();
        for (i, s) in [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            1e-40,
            -1e-45,
        ]
        .iter()
        .enumerate()
        {
            x[i * 7] = *s;
        }
        let w = [1.0f32; 64];
        for wt in [None, Some(&w[..])] {
            let _ = round_trip(&x, 64, wt);
            let _ = round_trip(&[f32::NAN; 64], 64, wt);
            let _ = round_trip(&[1e-39; 64], 32, wt);
        }
    }
}
