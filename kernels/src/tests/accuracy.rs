//! `vec_dot(w, quantize_activation(x))` against `sum(dequantize(w) * x)` in f64, for every
//! weight type, on quantized rows, on random block bytes and on extreme blocks.
//!
//! Two checks per case, both with bounds derived from the data rather than one fudge factor:
//!
//! 1. **Kernel arithmetic.** Against the exact (f64) dot product of the dequantized weights
//!    with the dequantized activation, the kernel may only differ by f32 rounding: at most
//!    [`accumulation_bound`] times `sum(|w_i| * |x^_i|)` (with the minimum part of Q4_1,
//!    Q5_1, Q2_K, Q4_K and Q5_K counted separately, as the kernels compute it). This catches
//!    a single wrong quant anywhere in a row.
//! 2. **End to end.** Against `sum(dequantize(w) * x)` the difference is dominated by the
//!    8-bit quantization of the activation: element `i` moves by at most
//!    [`activation_error`]`_i`, so the bound is `sum(|w_i| * activation_error_i)` plus the
//!    arithmetic bound (and, for Q8_1, the f16 rounding of its block sums `s`).
//!
//! The per-type relative tolerance this amounts to on Gaussian data (bound over
//! `sum(|w_i * x_i|)`) and the largest relative error seen are printed by
//! `cargo test -p kernels -- --nocapture accuracy`.

use super::*;
use crate::{vec_dot, WEIGHT_TYPES};
use formats::quant::{
    self, fp16_bits_to_fp32, fp32_to_bf16_bits, fp32_to_fp16_bits, BlockIq4Nl, BlockQ2K, BlockQ3K,
    BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8_0, BlockQ8_1,
    QK_K,
};
use std::collections::BTreeMap;

/// Q8_0 / Q8_1 activations: an element moves by at most this many steps `d = amax / 127` of
/// its block: half a step from rounding, plus the f16 rounding of `d` (relative `2^-11`)
/// times up to 127 steps, plus slack for the f32 `1 / d` the quants are computed with.
const Q8_STEPS: f64 = 0.5 + 127.0 / 2048.0 + 1e-4;
/// Q8_K activations: half a step; the scale is an f32, so only slack on top.
const Q8_K_STEPS: f64 = 0.5 + 1e-4;
/// F16 activations: relative rounding of a normal half (`2^-11`).
const F16_RELATIVE: f64 = 1.0 / 2048.0;
/// BF16 activations: relative rounding of a bfloat16 (`2^-8`).
const BF16_RELATIVE: f64 = 1.0 / 256.0;

/// How far the quantized activation of `x` may be from `x`, per element (the test data stays
/// in the normal range of f16, where the relative bounds hold).
fn activation_error(w: GgmlType, x: &[f32]) -> Vec<f64> {
    let per_block = |block: usize, steps: f64| -> Vec<f64> {
        x.chunks(block)
            .flat_map(|b| {
                let amax = b.iter().fold(0f64, |m, &v| m.max(f64::from(v).abs()));
                std::iter::repeat_n(amax / 127.0 * steps, b.len())
            })
            .collect()
    };
    match vec_dot_type(w) {
        GgmlType::Q8_0 | GgmlType::Q8_1 => per_block(32, Q8_STEPS),
        GgmlType::Q8_K => per_block(QK_K, Q8_K_STEPS),
        GgmlType::F16 => x
            .iter()
            .map(|&v| f64::from(v).abs() * F16_RELATIVE)
            .collect(),
        GgmlType::BF16 => x
            .iter()
            .map(|&v| f64::from(v).abs() * BF16_RELATIVE)
            .collect(),
        _ => vec![0.0; x.len()],
    }
}

/// The kernel's f32 rounding relative to `sum(|w_i| * |x^_i|)`: a few roundings per block
/// (scale products, the int-to-float conversion, the multiply-add) plus one per block of the
/// running sum, `(blocks + 16) * 2^-23`; for F32 and BF16 the products and the final rounding
/// of the f64 sum, `2 * 2^-23`; for F16, whose AVX2 kernel sums 32 f32 lanes as ggml does, one
/// rounding per lane step, `(n / 32 + 16) * 2^-23`.
fn accumulation_bound(w: GgmlType, n: usize) -> f64 {
    let eps = f64::from(f32::EPSILON);
    match w.block_size() {
        1 if w == GgmlType::F16 => (n / 32 + 16) as f64 * eps,
        1 => 2.0 * eps,
        block => (n / block + 16) as f64 * eps,
    }
}

pub(super) fn dequantized(w: GgmlType, bytes: &[u8]) -> Vec<f64> {
    quant::dequantize(w, bytes)
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

/// The dequantized weights split into the part multiplied with the activation quants and the
/// per-block minimum part (zero for types without one), each exact in f32 (up to Q6_K's
/// 25-bit products), obtained by zeroing the other part's f16 scale.
pub(super) fn weight_parts(w: GgmlType, bytes: &[u8]) -> (Vec<f64>, Vec<f64>) {
    let mut no_min = Aligned::from_bytes(bytes);
    let mut only_min = Aligned::from_bytes(bytes);
    macro_rules! split {
        ($block:ty, $scale:ident, $min:ident) => {{
            for b in bytemuck::cast_slice_mut::<u8, $block>(no_min.bytes_mut()) {
                b.$min = 0;
            }
            for b in bytemuck::cast_slice_mut::<u8, $block>(only_min.bytes_mut()) {
                b.$scale = 0;
            }
        }};
    }
    match w {
        GgmlType::Q4_1 => split!(BlockQ4_1, d, m),
        GgmlType::Q5_1 => split!(BlockQ5_1, d, m),
        GgmlType::Q2_K => split!(BlockQ2K, d, dmin),
        GgmlType::Q4_K => split!(BlockQ4K, d, dmin),
        GgmlType::Q5_K => split!(BlockQ5K, d, dmin),
        _ => {
            return (
                dequantized(w, bytes),
                vec![0.0; bytes.len() / w.type_size() * w.block_size()],
            )
        }
    }
    (
        dequantized(w, no_min.bytes()),
        dequantized(w, only_min.bytes()),
    )
}

/// Q4_1 / Q5_1 meet the activation through `m * s`, where `s` is `d * sum(q)` rounded to f16
/// on its own: the difference to `m * f16(d) * sum(q)` (what the dequantized values give).
fn q8_1_sum_correction(w: GgmlType, w_row: &[u8], act: &[u8]) -> f64 {
    let mins: Vec<f64> = match w {
        GgmlType::Q4_1 => bytemuck::cast_slice::<u8, BlockQ4_1>(w_row)
            .iter()
            .map(|b| b.m)
            .map(|m| f64::from(fp16_bits_to_fp32(m)))
            .collect(),
        GgmlType::Q5_1 => bytemuck::cast_slice::<u8, BlockQ5_1>(w_row)
            .iter()
            .map(|b| f64::from(fp16_bits_to_fp32(b.m)))
            .collect(),
        _ => return 0.0,
    };
    let f16 = |h| f64::from(fp16_bits_to_fp32(h));
    mins.iter()
        .zip(bytemuck::cast_slice::<u8, BlockQ8_1>(act))
        .map(|(m, y)| {
            let sum: i32 = y.qs.iter().map(|&q| i32::from(q)).sum();
            m * (f16(y.s) - f16(y.d) * f64::from(sum))
        })
        .sum()
}

/// Worst observed error and tolerance of one weight type, relative to `sum(|w_i * x_i|)`.
#[derive(Default)]
struct Stats {
    cases: usize,
    max_error: f64,
    max_tolerance: f64,
    max_error_over_bound: f64,
}

/// Check one weight row against one activation row (both checks of the module docs).
fn check(w: GgmlType, w_row: &[u8], x: &[f32], what: &str, stats: &mut Stats) {
    let n = x.len();
    let act = activation(w, x);
    let got = vec_dot(w, n, w_row, act.bytes()).unwrap();
    let got = f64::from(got);
    let (scaled, mins) = weight_parts(w, w_row);
    let xq = activation_values(w, act.bytes());
    let s_fix = q8_1_sum_correction(w, w_row, act.bytes());

    // 1. Kernel arithmetic against the exact product of what the bytes stand for.
    let mut model = s_fix;
    let mut magnitude = 0f64;
    for i in 0..n {
        model += (scaled[i] + mins[i]) * xq[i];
        magnitude += (scaled[i].abs() + mins[i].abs()) * xq[i].abs();
    }
    let arithmetic = accumulation_bound(w, n) * magnitude;
    assert!(
        (got - model).abs() <= arithmetic,
        "{w} n={n} {what}: kernel {got:e}, exact product of the quantized operands {model:e}, \
         allowed rounding {arithmetic:e}"
    );

    // 2. End to end against the dequantized weights times the f32 activation.
    let full = dequantized(w, w_row);
    let err = activation_error(w, x);
    let eps = f64::from(f32::EPSILON);
    let mut reference = 0f64;
    let mut scale = 0f64;
    let mut bound = arithmetic + s_fix.abs();
    for i in 0..n {
        let xi = f64::from(x[i]);
        reference += full[i] * xi;
        scale += (full[i] * xi).abs();
        // The activation's error, and the f32 rounding of formats' dequantized value.
        bound += (scaled[i] + mins[i]).abs() * err[i];
        bound += eps * (scaled[i].abs() + mins[i].abs()) * xi.abs();
    }
    let diff = (got - reference).abs();
    assert!(
        diff <= bound,
        "{w} n={n} {what}: kernel {got:e}, sum(dequantize(w) * x) {reference:e}, \
         difference {diff:e} > bound {bound:e}"
    );
    assert!(got.is_finite(), "{w} n={n} {what}: {got}");
    if scale > 0.0 {
        stats.cases += 1;
        stats.max_error = stats.max_error.max(diff / scale);
        stats.max_tolerance = stats.max_tolerance.max(bound / scale);
    }
    if bound > 0.0 {
        stats.max_error_over_bound = stats.max_error_over_bound.max(diff / bound);
    }
}

/// Row lengths to test: 1 to 40 blocks and 576, 1536 for the 32-value blocks, 256 to 4096
/// for the K-quants, 1 to 40 and some long odd ones for the float types.
fn row_lengths(w: GgmlType) -> Vec<usize> {
    match w.block_size() {
        1 => (1..=40).chain([576, 1536, 4097]).collect(),
        32 => (1..=40).map(|b| 32 * b).chain([576, 1536]).collect(),
        _ => (1..=16).map(|b| QK_K * b).collect(),
    }
}

/// An activation row: Gaussian, or Student-t with outliers (large block maxima).
pub(super) fn activation_row(n: usize, heavy: bool, rng: &mut Rng) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let v = if heavy { rng.heavy() } else { rng.normal() };
            v as f32
        })
        .collect()
}

/// A finite f16 of random sign and magnitude in about `2^-10 .. 2^4`.
pub(super) fn random_f16(rng: &mut Rng) -> u16 {
    let v = (rng.uniform() * 14.0 - 10.0).exp2() * if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
    fp32_to_fp16_bits(v as f32)
}

/// `rows` rows of random bytes for `w`: every quant and sub-block scale bit pattern, with the
/// f16 scales replaced by [`random_f16`] (and, for the float types, values finite).
pub(super) fn random_blocks(w: GgmlType, n: usize, rng: &mut Rng) -> Aligned {
    let len = w.row_size(n).unwrap();
    let mut a = Aligned::zeroed(len);
    for b in a.bytes_mut() {
        *b = rng.next_u64() as u8;
    }
    set_f16_fields(w, a.bytes_mut(), random_f16, rng);
    a
}

/// Rows at the extremes: every byte of the blocks one of six patterns, the f16 scales at the
/// largest half of either sign (F32 weights at +-1e30), each against activations at +-1000
/// (every quant +-127) all equal or alternating in sign: the integer sums at their largest.
pub(super) fn extreme_cases(w: GgmlType, n: usize, rng: &mut Rng) -> Vec<(Aligned, Vec<f32>)> {
    let same: Vec<f32> = vec![1000.0; n];
    let alternating: Vec<f32> = (0..n)
        .map(|i| if i % 2 == 0 { 1000.0 } else { -1000.0 })
        .collect();
    let mut cases = Vec::new();
    for fill in [0x00u8, 0xff, 0x80, 0x7f, 0x55, 0xaa] {
        for sign in [1.0f32, -1.0] {
            let mut w_row = Aligned::zeroed(w.row_size(n).unwrap());
            w_row.bytes_mut().fill(fill);
            let max_half = fp32_to_fp16_bits(65504.0 * sign);
            set_f16_fields(w, w_row.bytes_mut(), |_| max_half, rng);
            if w == GgmlType::F32 {
                for v in bytemuck::cast_slice_mut::<u8, f32>(w_row.bytes_mut()) {
                    *v = 1e30 * sign;
                }
            }
            for x in [&same, &alternating] {
                cases.push((Aligned::from_bytes(w_row.bytes()), x.clone()));
            }
        }
    }
    cases
}

/// Overwrite every f16 field (scales, minimums) of the blocks in `bytes` with `f16()`; for the
/// float types, make every value finite.
pub(super) fn set_f16_fields(
    w: GgmlType,
    bytes: &mut [u8],
    mut f16: impl FnMut(&mut Rng) -> u16,
    rng: &mut Rng,
) {
    macro_rules! set {
        ($block:ty, $($field:ident),+) => {
            for b in bytemuck::cast_slice_mut::<u8, $block>(bytes) {
                $( b.$field = f16(rng); )+
            }
        };
    }
    match w {
        GgmlType::Q4_0 => set!(BlockQ4_0, d),
        GgmlType::Q4_1 => set!(BlockQ4_1, d, m),
        GgmlType::Q5_0 => set!(BlockQ5_0, d),
        GgmlType::Q5_1 => set!(BlockQ5_1, d, m),
        GgmlType::Q8_0 => set!(BlockQ8_0, d),
        GgmlType::IQ4_NL => set!(BlockIq4Nl, d),
        GgmlType::Q2_K => set!(BlockQ2K, d, dmin),
        GgmlType::Q3_K => set!(BlockQ3K, d),
        GgmlType::Q4_K => set!(BlockQ4K, d, dmin),
        GgmlType::Q5_K => set!(BlockQ5K, d, dmin),
        GgmlType::Q6_K => set!(BlockQ6K, d),
        GgmlType::F16 => {
            for h in bytemuck::cast_slice_mut::<u8, u16>(bytes) {
                *h = f16(rng);
            }
        }
        GgmlType::BF16 => {
            for h in bytemuck::cast_slice_mut::<u8, u16>(bytes) {
                *h = fp32_to_bf16_bits(fp16_bits_to_fp32(f16(rng)));
            }
        }
        GgmlType::F32 => {
            for v in bytemuck::cast_slice_mut::<u8, f32>(bytes) {
                *v = rng.normal() as f32;
            }
        }
        _ => unreachable!("{w}"),
    }
}

fn report(title: &str, stats: &BTreeMap<GgmlType, Stats>) {
    eprintln!("{title}");
    eprintln!("  type     cases  max rel. error  max rel. tolerance  max error/bound");
    for (w, s) in stats {
        eprintln!(
            "  {:<7} {:>6}  {:>14.3e}  {:>18.3e}  {:>15.3}",
            w.to_string(),
            s.cases,
            s.max_error,
            s.max_tolerance,
            s.max_error_over_bound
        );
    }
}

#[test]
fn vec_dot_matches_dequantized_weights_on_quantized_rows() {
    let mut stats = BTreeMap::new();
    for &w in WEIGHT_TYPES {
        let s: &mut Stats = stats.entry(w).or_default();
        for (k, n) in row_lengths(w).into_iter().enumerate() {
            let mut rng = Rng::new(0x5eed_0000 ^ (w as u64) << 32 ^ n as u64);
            let weights = activation_row(n, k % 3 == 2, &mut rng);
            let bytes = quant::quantize(w, &weights, n, None).unwrap();
            let w_row = Aligned::from_bytes(&bytes);
            let x = activation_row(n, k % 2 == 1, &mut rng);
            check(w, w_row.bytes(), &x, "quantized row", s);
        }
    }
    report(
        "quantized weight rows, Gaussian / Student-t activations:",
        &stats,
    );
}

#[test]
fn vec_dot_matches_dequantized_weights_on_random_blocks() {
    let mut stats = BTreeMap::new();
    for &w in WEIGHT_TYPES {
        let s: &mut Stats = stats.entry(w).or_default();
        for (k, n) in row_lengths(w).into_iter().enumerate() {
            let mut rng = Rng::new(0xb10c_0000 ^ (w as u64) << 32 ^ n as u64);
            let w_row = random_blocks(w, n, &mut rng);
            let x = activation_row(n, k % 2 == 0, &mut rng);
            check(w, w_row.bytes(), &x, "random blocks", s);
        }
    }
    report("random block bytes:", &stats);
}

/// Every byte of the blocks set to one pattern (quants and sub-block scales at their extremes:
/// 0x00, 0xff, 0x80, 0x7f, alternating bits), the f16 scales at the largest finite half,
/// with activations at their extremes too (every quant +-127): the integer accumulators
/// reach their largest values.
#[test]
fn extreme_blocks_stay_exact_and_finite() {
    let mut stats = BTreeMap::new();
    let mut rng = Rng::new(7);
    for &w in WEIGHT_TYPES {
        let s: &mut Stats = stats.entry(w).or_default();
        let n = if w.block_size() == 1 {
            4096
        } else {
            16 * w.block_size()
        };
        for (w_row, x) in extreme_cases(w, n, &mut rng) {
            check(w, w_row.bytes(), &x, "extreme blocks", s);
        }
    }
    report("extreme blocks:", &stats);
}

#[test]
fn zero_weights_or_zero_activations_give_exactly_zero() {
    let mut rng = Rng::new(11);
    for &w in WEIGHT_TYPES {
        for n in [w.block_size().max(32), 8 * w.block_size().max(32)] {
            let zero_w = Aligned::zeroed(w.row_size(n).unwrap());
            let x = activation_row(n, true, &mut rng);
            let act = activation(w, &x);
            assert_eq!(
                vec_dot(w, n, zero_w.bytes(), act.bytes()).unwrap(),
                0.0,
                "{w}"
            );

            let w_row = random_blocks(w, n, &mut rng);
            let act = activation(w, &vec![0.0; n]);
            assert_eq!(
                vec_dot(w, n, w_row.bytes(), act.bytes()).unwrap(),
                0.0,
                "{w}"
            );
        }
    }
}
