//! Every SIMD kernel table this CPU runs (AVX2 on x86-64; NEON and NEON with `dotprod` on
//! AArch64, each tested on its own) against its scalar twin (the oracle): the activation
//! quantizers (Q8_K bit for bit; Q8_0 / Q8_1, which the SIMD tables compute as ggml's x86 CPU
//! quantizer, within one rounding), the dot products within a named relative tolerance per
//! weight type, on quantized rows, random block bytes and edge blocks, from one block to
//! thousands. (That NEON computes the AVX2 kernels' bits is `cross_isa.rs`'s to check.)
//!
//! **Tolerances.** Both paths sum the same exact integers per block and scale them with the
//! same f32 products; they differ only in the order of the f32 additions (the scalar code
//! keeps one running sum, or ggml's eight lanes; the SIMD code eight lanes of FMAs per row,
//! in one accumulator or two). So `|simd - scalar|` is bounded by a few roundings
//! of the partial sums, each at most `sum(|w_i| * |x^_i|)` (over the dequantized weights,
//! minimum parts counted apart, times the dequantized activation): that sum is the scale the
//! per-type tolerances ([`tolerance`]) are relative to. The largest relative difference seen
//! per type is printed by `cargo test -p kernels -- --nocapture parity`.
//!
//! A table the CPU cannot run is left out with a note (AVX2 on an x86-64 CPU without AVX2,
//! FMA and F16C; `dotprod` on an AArch64 CPU without the dot-product extension: qemu's
//! default CPU has it). The typed kernels' own tests are per architecture at the end.

use super::accuracy::{activation_row, extreme_cases, random_blocks, weight_parts};
use super::*;
use crate::dispatch::{table, Isa};
use crate::{scalar, KernelTable, WEIGHT_TYPES};
use bytemuck::Zeroable;
// The armv7 tests use the types its kernels cover, the others all of them.
#[cfg_attr(target_arch = "arm", allow(unused_imports))]
use formats::quant::{
    BlockIq4Nl, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1,
    BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1, QK_K,
};
use std::collections::BTreeMap;

/// 32-value block types: only the order of per-block f32 additions differs.
const LEGACY_TOLERANCE: f64 = 1e-5;
/// Types with a minimum part (Q4_1, Q5_1: `m * s` summed apart from the scaled quants).
const WITH_MIN_TOLERANCE: f64 = 1e-5;
/// K-quants: one f32 step per super-block, eight lanes (minimums in their own sum).
const K_QUANT_TOLERANCE: f64 = 1e-5;
/// F16: AVX2 sums in ggml's order (32 f32 lanes of FMAs, then a tree), the oracle in one f64
/// sum: a rounding per lane step, `n / 32` of them, 1e-5 covers rows of 4,096.
const F16_TOLERANCE: f64 = 1e-5;
/// F32 and BF16: the AVX2 table runs the scalar kernel, the NEON one the oracle's arithmetic
/// in the same order: identical results.
const SAME_KERNEL: f64 = 0.0;

/// The largest `|simd - scalar| / sum(|w_i| * |x^_i|)` allowed for weights of type `w`.
fn tolerance(w: GgmlType) -> f64 {
    use GgmlType::*;
    match w {
        Q4_0 | Q5_0 | Q8_0 | IQ4_NL => LEGACY_TOLERANCE,
        Q4_1 | Q5_1 => WITH_MIN_TOLERANCE,
        Q2_K | Q3_K | Q4_K | Q5_K | Q6_K => K_QUANT_TOLERANCE,
        F16 => F16_TOLERANCE,
        _ => SAME_KERNEL,
    }
}

/// The SIMD instruction sets this build has kernels for.
const SIMD: &[Isa] = if cfg!(target_arch = "x86_64") {
    &[
        Isa::Avx2,
        Isa::Avx512Bw,
        Isa::Avx512,
        Isa::Avx2Vnni,
        Isa::Avx512Vnni,
    ]
} else if cfg!(target_arch = "aarch64") {
    &[
        Isa::Neon,
        Isa::NeonDotprodExact,
        Isa::NeonDotprod,
        Isa::NeonI8mm,
    ]
} else if cfg!(target_arch = "arm") {
    &[Isa::Armv7Neon]
} else {
    &[]
};

/// The scalar table and every SIMD table this CPU runs (a note for each it cannot), or
/// `None` when there is none.
fn tables() -> Option<(&'static KernelTable, Vec<&'static KernelTable>)> {
    let scalar = table(Isa::Scalar).unwrap();
    let mut simd = Vec::new();
    for &isa in SIMD {
        match table(isa) {
            Some(t) => simd.push(t),
            None => eprintln!("parity: this CPU cannot run {isa}, its kernels not tested"),
        }
    }
    (!simd.is_empty()).then_some((scalar, simd))
}

/// `table.vec_dot` through the checked entry point.
fn dot(table: &KernelTable, w: GgmlType, w_row: &[u8], act: &Aligned, n: usize) -> f64 {
    f64::from(table.vec_dot(w, n, w_row, act.bytes()).unwrap())
}

/// `sum(|w_i| * |x^_i|)`: the scale of every f32 rounding in either kernel.
fn magnitude(w: GgmlType, w_row: &[u8], act: &Aligned) -> f64 {
    let (scaled, mins) = weight_parts(w, w_row);
    let xq = activation_values(w, act.bytes());
    (0..xq.len())
        .map(|i| (scaled[i].abs() + mins[i].abs()) * xq[i].abs())
        .sum()
}

/// Worst relative difference of one weight type.
#[derive(Default)]
struct Worst {
    cases: usize,
    relative: f64,
}

/// Check one weight row and activation on the scalar table and every SIMD table.
fn check(w: GgmlType, w_row: &[u8], x: &[f32], what: &str, worst: &mut Worst) {
    let (scalar, simd) = tables().unwrap();
    let n = x.len();
    // All kernels get the same activation (the quantizers are checked bit for bit apart).
    let mut act = Aligned::zeroed(activation_bytes(w, n).unwrap());
    scalar.quantize_activation(w, x, act.bytes_mut()).unwrap();
    let want = dot(scalar, w, w_row, &act, n);
    let scale = magnitude(w, w_row, &act);
    for t in simd {
        let isa = t.isa();
        let got = dot(t, w, w_row, &act, n);
        let diff = (got - want).abs();
        let allowed = tolerance(w) * scale;
        assert!(
            diff <= allowed,
            "{w} n={n} {what}: {isa} {got:e}, scalar {want:e}, difference {diff:e} > \
             {allowed:e} ({} of sum |w x|)",
            tolerance(w)
        );
        assert_eq!(got.is_finite(), want.is_finite(), "{isa} {w} n={n} {what}");
        worst.cases += 1;
        if scale > 0.0 {
            worst.relative = worst.relative.max(diff / scale);
        }
    }
}

/// Row lengths: every block count from 1 to 40 (odd and even, for the two accumulators),
/// the SmolLM2 widths, and thousands of blocks.
fn row_lengths(w: GgmlType) -> Vec<usize> {
    let block = w.block_size();
    let mut blocks: Vec<usize> = (1..=40).collect();
    if block == QK_K {
        blocks.truncate(20);
        blocks.extend([24, 36, 255, 1024]);
    } else {
        blocks.extend([18, 48, 1001, 4096]);
    }
    blocks.into_iter().map(|b| b * block.max(32)).collect()
}

fn report(title: &str, worst: &BTreeMap<GgmlType, Worst>) {
    eprintln!("{title}");
    let names: Vec<&str> = tables()
        .map(|(_, simd)| simd.iter().map(|t| t.isa().name()).collect())
        .unwrap_or_default();
    eprintln!("  ({})", names.join(", "));
    eprintln!("  type     cases  max |simd - scalar| / sum|w x|  tolerance");
    for (w, s) in worst {
        eprintln!(
            "  {:<7} {:>6}  {:>30.3e}  {:>9.0e}",
            w.to_string(),
            s.cases,
            s.relative,
            tolerance(*w)
        );
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn the_detected_isa_is_the_one_std_detects() {
    let std_says = is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c");
    let vnni = std_says && is_x86_feature_detected!("avxvnni");
    let avx512bw = std_says
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl");
    let avx512 = avx512bw && is_x86_feature_detected!("avx512vnni");
    assert_eq!(Isa::Avx2.available(), std_says);
    assert_eq!(Isa::Avx512Bw.available(), avx512bw);
    assert_eq!(Isa::Avx512.available(), avx512);
    assert_eq!(Isa::Avx2Vnni.available(), vnni);
    assert_eq!(Isa::Avx512Vnni.available(), vnni && avx512);
    let best = match (std_says, vnni, avx512) {
        (true, true, true) => Isa::Avx512Vnni,
        (true, true, false) => Isa::Avx2Vnni,
        (true, false, true) => Isa::Avx512,
        (true, false, false) if avx512bw => Isa::Avx512Bw,
        (true, false, false) => Isa::Avx2,
        _ => Isa::Scalar,
    };
    assert_eq!(crate::detect(), best);
}

#[test]
fn vec_dot_matches_scalar_on_quantized_rows() {
    if tables().is_none() {
        return;
    }
    let mut worst = BTreeMap::new();
    for &w in WEIGHT_TYPES {
        let s = worst.entry(w).or_default();
        for (k, n) in row_lengths(w).into_iter().enumerate() {
            let mut rng = Rng::new(0x9a41_0000 ^ (w as u64) << 32 ^ n as u64);
            let weights = activation_row(n, k % 3 == 2, &mut rng);
            let bytes = formats::quant::quantize(w, &weights, n, None).unwrap();
            let w_row = Aligned::from_bytes(&bytes);
            let x = activation_row(n, k % 2 == 1, &mut rng);
            check(w, w_row.bytes(), &x, "quantized row", s);
        }
    }
    report("parity, quantized weight rows:", &worst);
}

#[test]
fn vec_dot_matches_scalar_on_random_blocks() {
    if tables().is_none() {
        return;
    }
    let mut worst = BTreeMap::new();
    for &w in WEIGHT_TYPES {
        let s = worst.entry(w).or_default();
        for (k, n) in row_lengths(w).into_iter().enumerate() {
            let mut rng = Rng::new(0x7a2d_0000 ^ (w as u64) << 32 ^ n as u64);
            let w_row = random_blocks(w, n, &mut rng);
            let x = activation_row(n, k % 2 == 0, &mut rng);
            check(w, w_row.bytes(), &x, "random blocks", s);
        }
    }
    report("parity, random block bytes:", &worst);
}

/// All-zero weights or activations (exactly zero on both paths), and every byte of the
/// blocks at one extreme pattern with the f16 scales at the largest half and activations
/// at +-1000 (every quant +-127): the integer sums at their largest.
#[test]
fn vec_dot_matches_scalar_on_edge_blocks() {
    let Some((scalar, simd)) = tables() else {
        return;
    };
    let mut worst = BTreeMap::new();
    let mut rng = Rng::new(13);
    for &w in WEIGHT_TYPES {
        let s = worst.entry(w).or_default();
        for blocks in [1, 2, 3, 17, 64] {
            let n = blocks * w.block_size().max(32);
            // Zeros: exactly zero, not merely close.
            let zero_w = Aligned::zeroed(w.row_size(n).unwrap());
            let x = activation_row(n, true, &mut rng);
            let mut act = Aligned::zeroed(activation_bytes(w, n).unwrap());
            scalar.quantize_activation(w, &x, act.bytes_mut()).unwrap();
            for &t in &simd {
                let isa = t.isa();
                assert_eq!(dot(t, w, zero_w.bytes(), &act, n), 0.0, "{isa} {w} n={n}");
            }
            let w_row = random_blocks(w, n, &mut rng);
            scalar
                .quantize_activation(w, &vec![0.0; n], act.bytes_mut())
                .unwrap();
            for &t in &simd {
                let isa = t.isa();
                assert_eq!(dot(t, w, w_row.bytes(), &act, n), 0.0, "{isa} {w} n={n}");
            }

            for (w_row, x) in extreme_cases(w, n, &mut rng) {
                check(w, w_row.bytes(), &x, "edge blocks", s);
            }
        }
    }
    report("parity, edge blocks:", &worst);
}

/// Matrices through `matvec` on every table, and every SIMD row bit-identical to the same
/// table's `vec_dot` of that row whatever range it is computed in.
#[test]
fn matvec_matches_scalar_and_its_own_vec_dot() {
    let Some((scalar, simd)) = tables() else {
        return;
    };
    let mut rng = Rng::new(17);
    for &w in WEIGHT_TYPES {
        let n = 3 * w.block_size().max(64);
        let rows = 41;
        let values: Vec<f32> = (0..rows * n).map(|_| rng.normal() as f32).collect();
        let m = Aligned::from_bytes(&formats::quant::quantize(w, &values, n, None).unwrap());
        let x = activation_row(n, false, &mut rng);
        let mut act = Aligned::zeroed(activation_bytes(w, n).unwrap());
        scalar.quantize_activation(w, &x, act.bytes_mut()).unwrap();
        let mut want = vec![0f32; rows];
        scalar
            .matvec(w, m.bytes(), 0..rows, n, act.bytes(), &mut want)
            .unwrap();
        let row_bytes = w.row_size(n).unwrap();
        for (t, range) in simd
            .iter()
            .flat_map(|&t| [(t, 0..rows), (t, 3..4), (t, 7..30)])
        {
            let isa = t.isa();
            let mut got = vec![f32::NAN; range.len()];
            t.matvec(w, m.bytes(), range.clone(), n, act.bytes(), &mut got)
                .unwrap();
            for (r, &g) in range.clone().zip(&got) {
                let row = &m.bytes()[r * row_bytes..(r + 1) * row_bytes];
                let single = t.vec_dot(w, n, row, act.bytes()).unwrap();
                assert_eq!(
                    g.to_bits(),
                    single.to_bits(),
                    "{isa} {w} row {r} of {range:?}"
                );
                let allowed = tolerance(w) * magnitude(w, row, &act);
                let diff = (f64::from(g) - f64::from(want[r])).abs();
                assert!(diff <= allowed, "{isa} {w} row {r}: {g} vs {}", want[r]);
            }
        }
    }
}

/// Rows that exercise the quantizers: random magnitudes over many octaves, exact ties,
/// zeros, constants, the largest f32, infinities and NaNs, in every position of a block.
fn awkward_rows(n: usize) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(0x51de);
    let mut rows = Vec::new();
    for octave in [-140i32, -126, -100, -20, -3, 0, 3, 20, 60, 120, 127] {
        let scale = 2f64.powi(octave);
        rows.push((0..n).map(|_| (rng.normal() * scale) as f32).collect());
    }
    rows.push((0..n).map(|_| rng.heavy() as f32).collect());
    // Halves after scaling by 127 / amax = 1: ties in both directions.
    rows.push(
        (0..n)
            .map(|i| {
                if i % 32 == 0 {
                    127.0
                } else {
                    (i % 64) as f32 - 31.5
                }
            })
            .collect(),
    );
    // The largest magnitude twice with opposite signs (Q8_K keeps the first).
    rows.push(
        (0..n)
            .map(|i| match i % 64 {
                5 => -3.0,
                9 => 3.0,
                _ => (i % 7) as f32 * 0.25,
            })
            .collect(),
    );
    rows.push(vec![0.0; n]);
    rows.push(vec![-0.0; n]);
    rows.push(vec![-3.25; n]);
    rows.push(vec![f32::MAX; n]);
    rows.push(vec![f32::MIN_POSITIVE / 8.0; n]);
    for special in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
        for at in [0, 5, 31, 77, 255] {
            let mut row: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
            row[at % n] = special;
            rows.push(row);
        }
    }
    rows
}

/// Q8_K: both paths write the same bytes, NaN and infinities included. Q8_0 and Q8_1: the
/// SIMD quantizers are ggml's x86 CPU ones (scale by `127 / amax`, round half to even; NEON
/// computes them as AVX2 does), the scalar ones ggml's reference (`1 / d`, half away from
/// zero): on finite rows the scales are the same and a quant differs by at most
/// [`Q8_ROUNDING`]; Q8_1's `s` is `d` times the sum of its own quants.
#[test]
fn simd_quantizers_match_scalar() {
    /// The most a Q8_0 / Q8_1 quant of a SIMD path may differ from the scalar one.
    const Q8_ROUNDING: i32 = 1;
    let Some((scalar_t, simd)) = tables() else {
        return;
    };
    for t in simd {
        let isa = t.isa();
        for n in [256, 512, 2048] {
            for (k, x) in awkward_rows(n).into_iter().enumerate() {
                let mut a = vec![BlockQ8K::zeroed(); n / QK_K];
                let mut b = vec![BlockQ8K::zeroed(); n / QK_K];
                (scalar_t.quantize_q8_k)(&x, &mut a);
                (t.quantize_q8_k)(&x, &mut b);
                assert!(
                    bytemuck::cast_slice::<_, u8>(&a) == bytemuck::cast_slice::<_, u8>(&b),
                    "{isa} Q8_K row {k} (n={n})"
                );
                // Rows with infinities or NaNs, and blocks whose `127 / amax` overflows (amax
                // below ~4e-37: ggml's x86 path then multiplies by infinity), are ggml's
                // undefined corners; the reference and SIMD quantizers part ways there.
                if x.iter().any(|v| !v.is_finite()) {
                    continue;
                }
                let amax = |b: usize| {
                    x[32 * b..32 * b + 32]
                        .iter()
                        .fold(0f32, |m, v| m.max(v.abs()))
                };
                let tame = |b: usize| (127.0 / amax(b)).is_finite();
                let close = |p: &[i8; 32], q: &[i8; 32], what: &str| {
                    for (i, (&p, &q)) in p.iter().zip(q).enumerate() {
                        let diff = (i32::from(p) - i32::from(q)).abs();
                        assert!(
                            diff <= Q8_ROUNDING,
                            "{isa} {what} row {k} (n={n}) value {i}: {p} vs {q}"
                        );
                    }
                };
                let mut a = vec![BlockQ8_0::zeroed(); n / 32];
                let mut b = vec![BlockQ8_0::zeroed(); n / 32];
                (scalar_t.quantize_q8_0)(&x, &mut a);
                (t.quantize_q8_0)(&x, &mut b);
                for (a, b) in a
                    .iter()
                    .zip(&b)
                    .enumerate()
                    .filter(|(i, _)| tame(*i))
                    .map(|(_, p)| p)
                {
                    assert_eq!(a.d, b.d, "{isa} Q8_0 row {k} (n={n}): scales");
                    close(&a.qs, &b.qs, "Q8_0");
                }
                let mut a = vec![BlockQ8_1::zeroed(); n / 32];
                let mut b = vec![BlockQ8_1::zeroed(); n / 32];
                (scalar_t.quantize_q8_1)(&x, &mut a);
                (t.quantize_q8_1)(&x, &mut b);
                for (i, (a, b)) in a.iter().zip(&b).enumerate().filter(|(i, _)| tame(*i)) {
                    assert_eq!(a.d, b.d, "{isa} Q8_1 row {k} (n={n}): scales");
                    close(&a.qs, &b.qs, "Q8_1");
                    let sum: i32 = b.qs.iter().map(|&q| i32::from(q)).sum();
                    // The f32 scale, before its rounding to f16.
                    let d = amax(i) / 127.0;
                    assert_eq!(
                        b.s,
                        formats::quant::fp32_to_fp16_bits(d * sum as f32),
                        "{isa} Q8_1 row {k} (n={n}): s"
                    );
                }
            }
        }
    }
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
/// The typed kernels of the SIMD module `$simd` straight, without the entry points: shorter
/// `y` than `x` (or the other way) reads only the common blocks, and empty slices give zero.
macro_rules! typed_kernels_use_the_common_length {
    ($($simd:ident)::+) => {{
    let mut rng = Rng::new(23);
    macro_rules! common {
        ($wb:ty, $ab:ty, $w:expr, $quantize:path, $scalar:path, $simd_fn:path) => {{
            let blocks = 5;
            let per = $w.block_size();
            let values: Vec<f32> = (0..blocks * per).map(|_| rng.normal() as f32).collect();
            let bytes = formats::quant::quantize($w, &values, per * blocks, None).unwrap();
            let x_bytes = Aligned::from_bytes(&bytes);
            let x: &[$wb] = bytemuck::cast_slice(x_bytes.bytes());
            let mut y = vec![<$ab>::zeroed(); blocks];
            $quantize(&values, &mut y);
            for (nx, ny) in [(5, 3), (2, 5), (0, 5), (5, 0)] {
                let want = $scalar(&x[..nx.min(ny)], &y[..nx.min(ny)]);
                // SAFETY: the caller checked that the CPU runs this module.
                let got = unsafe { $simd_fn(&x[..nx], &y[..ny]) };
                let tol = 1e-5 * f64::from(want.abs()).max(1.0);
                assert!(
                    (f64::from(got) - f64::from(want)).abs() <= tol,
                    "{} {nx}x{ny}: {got} vs {want}",
                    $w
                );
            }
        }};
    }
    use GgmlType::*;
    let q8_0 = scalar::quantize_row_q8_0;
    let q8_1 = scalar::quantize_row_q8_1;
    let q8_k = scalar::quantize_row_q8_k;
    common!(
        BlockQ4_0,
        BlockQ8_0,
        Q4_0,
        q8_0,
        scalar::vec_dot_q4_0_q8_0,
        $($simd)::+::vec_dot_q4_0_q8_0
    );
    common!(
        BlockQ4_1,
        BlockQ8_1,
        Q4_1,
        q8_1,
        scalar::vec_dot_q4_1_q8_1,
        $($simd)::+::vec_dot_q4_1_q8_1
    );
    common!(
        BlockQ5_0,
        BlockQ8_0,
        Q5_0,
        q8_0,
        scalar::vec_dot_q5_0_q8_0,
        $($simd)::+::vec_dot_q5_0_q8_0
    );
    common!(
        BlockQ5_1,
        BlockQ8_1,
        Q5_1,
        q8_1,
        scalar::vec_dot_q5_1_q8_1,
        $($simd)::+::vec_dot_q5_1_q8_1
    );
    common!(
        BlockQ8_0,
        BlockQ8_0,
        Q8_0,
        q8_0,
        scalar::vec_dot_q8_0_q8_0,
        $($simd)::+::vec_dot_q8_0_q8_0
    );
    common!(
        BlockIq4Nl,
        BlockQ8_0,
        IQ4_NL,
        q8_0,
        scalar::vec_dot_iq4_nl_q8_0,
        $($simd)::+::vec_dot_iq4_nl_q8_0
    );
    common!(
        BlockQ2K,
        BlockQ8K,
        Q2_K,
        q8_k,
        scalar::vec_dot_q2_k_q8_k,
        $($simd)::+::vec_dot_q2_k_q8_k
    );
    common!(
        BlockQ3K,
        BlockQ8K,
        Q3_K,
        q8_k,
        scalar::vec_dot_q3_k_q8_k,
        $($simd)::+::vec_dot_q3_k_q8_k
    );
    common!(
        BlockQ4K,
        BlockQ8K,
        Q4_K,
        q8_k,
        scalar::vec_dot_q4_k_q8_k,
        $($simd)::+::vec_dot_q4_k_q8_k
    );
    common!(
        BlockQ5K,
        BlockQ8K,
        Q5_K,
        q8_k,
        scalar::vec_dot_q5_k_q8_k,
        $($simd)::+::vec_dot_q5_k_q8_k
    );
    common!(
        BlockQ6K,
        BlockQ8K,
        Q6_K,
        q8_k,
        scalar::vec_dot_q6_k_q8_k,
        $($simd)::+::vec_dot_q6_k_q8_k
    );
    }};
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;

    #[test]
    fn typed_kernels_use_the_common_length() {
        if table(Isa::Avx2).is_none() {
            return;
        }
        typed_kernels_use_the_common_length!(crate::x86::avx2);
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::*;

    /// NEON is part of AArch64: its table is always there, and the `dotprod` one exactly
    /// where the OS reports the extension (so both are under test wherever the CPU has it).
    #[test]
    fn the_detected_isa_is_the_one_std_detects() {
        assert!(Isa::Neon.available());
        let dotprod = std::arch::is_aarch64_feature_detected!("dotprod");
        let i8mm = dotprod && std::arch::is_aarch64_feature_detected!("i8mm");
        assert_eq!(Isa::NeonDotprod.available(), dotprod);
        assert_eq!(Isa::NeonDotprodExact.available(), dotprod);
        assert_eq!(Isa::NeonI8mm.available(), i8mm);
        let best = match (dotprod, i8mm) {
            (_, true) => Isa::NeonI8mm,
            (true, false) => Isa::NeonDotprod,
            _ => Isa::Neon,
        };
        assert_eq!(crate::detect(), best);
        assert!(!Isa::Avx2.available());
        eprintln!("parity: detected {best}");
    }

    #[test]
    fn baseline_typed_kernels_use_the_common_length() {
        typed_kernels_use_the_common_length!(crate::arm::neon);
    }

    #[test]
    fn dotprod_typed_kernels_use_the_common_length() {
        if table(Isa::NeonDotprod).is_none() {
            eprintln!("parity: no dotprod on this CPU, its typed kernels not tested");
            return;
        }
        typed_kernels_use_the_common_length!(crate::arm::neon::dotprod);
    }

    /// The F32 and BF16 kernels straight: bit-identical to the oracle (which the AVX2 table
    /// runs for them) on every length from 0 to 70 (whole steps of eight and every tail). F16
    /// sums in the AVX2 kernel's order instead, within [`F16_TOLERANCE`] of the oracle
    /// (the parity tests above).
    #[test]
    fn float_kernels_are_bit_identical_to_scalar() {
        use crate::arm::neon as simd;
        let mut rng = Rng::new(29);
        for n in 0..70usize {
            let x: Vec<f32> = (0..n).map(|_| rng.heavy() as f32).collect();
            let y: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
            let xb: Vec<u16> = x.iter().map(|&v| (v.to_bits() >> 16) as u16).collect();
            let yb: Vec<u16> = y.iter().map(|&v| (v.to_bits() >> 16) as u16).collect();
            // SAFETY: every AArch64 CPU has NEON.
            let got = unsafe { [simd::vec_dot_f32(&x, &y), simd::vec_dot_bf16_bf16(&xb, &yb)] };
            let want = [
                scalar::vec_dot_f32(&x, &y),
                scalar::vec_dot_bf16_bf16(&xb, &yb),
            ];
            for (k, (g, w)) in got.iter().zip(want).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "kernel {k} n={n}: {g} vs {w}");
            }
        }
    }
}

/// The vector steps of attention and the FFN, every SIMD table against scalar on odd lengths
/// (tails included): the f16 accumulator steps within one f16 rounding (the SIMD side fuses
/// the multiply-add, so a product's rounding may tip the half), SwiGLU within [`SWIGLU_REL`]
/// (ggml's vectorized `expf` is within 1.5 ulp of libm's), the f16 dot within f32 rounding of
/// the sum of |products| ([`F16_DOT_REL`]: the two sum in different orders).
#[test]
fn vector_steps_match_scalar() {
    /// Relative difference allowed between the SIMD and scalar SwiGLU.
    const SWIGLU_REL: f32 = 4.0 * f32::EPSILON;
    /// F16 dot: relative to the sum of |products|.
    const F16_DOT_REL: f64 = 64.0 * f32::EPSILON as f64;
    let Some((scalar_t, simd)) = tables() else {
        return;
    };
    for simd_t in simd {
        let mut rng = Rng::new(0x5e9);
        let half = formats::quant::fp32_to_fp16_bits;
        let full = formats::quant::fp16_bits_to_fp32;
        for n in [1, 7, 8, 31, 64, 100, 1536] {
            let x: Vec<u16> = (0..n).map(|_| half(rng.heavy() as f32)).collect();
            let y0: Vec<u16> = (0..n).map(|_| half(rng.normal() as f32)).collect();
            let v = rng.normal() as f32;
            let (mut a, mut b) = (y0.clone(), y0.clone());
            scalar_t.vec_mad_f16(&mut a, &x, v);
            simd_t.vec_mad_f16(&mut b, &x, v);
            for (i, (&a, &b)) in a.iter().zip(&b).enumerate() {
                // Adjacent halves of the same sign differ by one in their bits.
                let ulps = (i32::from(a as i16) - i32::from(b as i16)).abs();
                assert!(
                    ulps <= 1 || full(a) == full(b),
                    "vec_mad_f16 n={n} [{i}]: {a:#06x} vs {b:#06x}"
                );
            }
            let (mut a, mut b) = (y0.clone(), y0.clone());
            scalar_t.vec_scale_f16(&mut a, v);
            simd_t.vec_scale_f16(&mut b, v);
            assert_eq!(
                a, b,
                "vec_scale_f16 n={n}: one multiply, one rounding on both"
            );

            let magnitude: f64 = x
                .iter()
                .zip(&y0)
                .map(|(&p, &q)| f64::from(full(p) * full(q)).abs())
                .sum();
            let (da, db) = (scalar_t.vec_dot_f16(&x, &y0), simd_t.vec_dot_f16(&x, &y0));
            assert!(
                f64::from((da - db).abs()) <= F16_DOT_REL * magnitude,
                "vec_dot_f16 n={n}: {da} vs {db}"
            );

            let g0: Vec<f32> = (0..n).map(|_| (rng.heavy() * 4.0) as f32).collect();
            let up: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
            let (mut a, mut b) = (g0.clone(), g0.clone());
            scalar_t.swiglu_f32(&mut a, &up);
            simd_t.swiglu_f32(&mut b, &up);
            for (i, (&a, &b)) in a.iter().zip(&b).enumerate() {
                assert!(
                    (a - b).abs() <= SWIGLU_REL * a.abs().max(f32::MIN_POSITIVE),
                    "swiglu n={n} [{i}] (gate {}): {a} vs {b}",
                    g0[i]
                );
            }
        }
    }
}

#[cfg(target_arch = "arm")]
mod armv7 {
    use super::*;
    use crate::arm::armv7;

    /// `AT_HWCAP` read from `/proc/self/auxv` (pairs of 32-bit words), not through the C
    /// library the dispatch asks.
    fn hwcap() -> u32 {
        let auxv = std::fs::read("/proc/self/auxv").unwrap();
        let words: Vec<u32> = auxv
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
            .collect();
        words
            .chunks_exact(2)
            .find(|pair| pair[0] == 16)
            .map_or(0, |pair| pair[1])
    }

    /// The armv7 NEON table exactly where the kernel reports NEON, VFPv4 and half-precision
    /// conversion (qemu-arm's CPUs do: so it is under test there).
    #[test]
    fn the_detected_isa_is_the_one_the_kernel_reports() {
        let want = (1 << 1) | (1 << 12) | (1 << 16);
        let has = hwcap() & want == want;
        assert_eq!(Isa::Armv7Neon.available(), has);
        let best = if has { Isa::Armv7Neon } else { Isa::Scalar };
        assert_eq!(crate::detect(), best);
        eprintln!("parity: detected {best}");
    }

    /// The typed kernels straight: shorter `y` than `x` (or the other way) reads only the
    /// common blocks, and empty slices give zero.
    #[test]
    fn typed_kernels_use_the_common_length() {
        if !Isa::Armv7Neon.available() {
            panic!("this CPU has no NEON with VFPv4: the armv7 kernels cannot run here");
        }
        let mut rng = Rng::new(23);
        macro_rules! common {
            ($wb:ty, $ab:ty, $w:expr, $quantize:path, $scalar:path, $simd_fn:path) => {{
                let blocks = 5;
                let per = $w.block_size();
                let values: Vec<f32> = (0..blocks * per).map(|_| rng.normal() as f32).collect();
                let bytes = formats::quant::quantize($w, &values, per * blocks, None).unwrap();
                let x_bytes = Aligned::from_bytes(&bytes);
                let x: &[$wb] = bytemuck::cast_slice(x_bytes.bytes());
                let mut y = vec![<$ab>::zeroed(); blocks];
                $quantize(&values, &mut y);
                for (nx, ny) in [(5, 3), (2, 5), (0, 5), (5, 0)] {
                    let want = $scalar(&x[..nx.min(ny)], &y[..nx.min(ny)]);
                    // SAFETY: checked above that the CPU runs these kernels.
                    let got = unsafe { $simd_fn(&x[..nx], &y[..ny]) };
                    let tol = 1e-5 * f64::from(want.abs()).max(1.0);
                    assert!(
                        (f64::from(got) - f64::from(want)).abs() <= tol,
                        "{} {nx}x{ny}: {got} vs {want}",
                        $w
                    );
                }
            }};
        }
        use GgmlType::*;
        let q8_0 = scalar::quantize_row_q8_0;
        let q8_1 = scalar::quantize_row_q8_1;
        let q8_k = scalar::quantize_row_q8_k;
        common!(
            BlockQ4_0,
            BlockQ8_0,
            Q4_0,
            q8_0,
            scalar::vec_dot_q4_0_q8_0,
            armv7::vec_dot_q4_0_q8_0
        );
        common!(
            BlockQ4_1,
            BlockQ8_1,
            Q4_1,
            q8_1,
            scalar::vec_dot_q4_1_q8_1,
            armv7::vec_dot_q4_1_q8_1
        );
        common!(
            BlockQ5_0,
            BlockQ8_0,
            Q5_0,
            q8_0,
            scalar::vec_dot_q5_0_q8_0,
            armv7::vec_dot_q5_0_q8_0
        );
        common!(
            BlockQ8_0,
            BlockQ8_0,
            Q8_0,
            q8_0,
            scalar::vec_dot_q8_0_q8_0,
            armv7::vec_dot_q8_0_q8_0
        );
        common!(
            BlockQ4K,
            BlockQ8K,
            Q4_K,
            q8_k,
            scalar::vec_dot_q4_k_q8_k,
            armv7::vec_dot_q4_k_q8_k
        );
        common!(
            BlockQ6K,
            BlockQ8K,
            Q6_K,
            q8_k,
            scalar::vec_dot_q6_k_q8_k,
            armv7::vec_dot_q6_k_q8_k
        );
    }
}
