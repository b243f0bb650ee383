//! Flash attention over an f16 cache (`attention.rs`): on every kernel table this CPU runs,
//! several queries attended together give each query's result alone through the table's own
//! vector steps (the portable version; on the fast x86 tables their own kernel, also held to
//! an f64 reference), bit for bit, whatever the head size (with and without
//! SIMD tails), the stride and each query's number of positions; and the shapes are checked.

use super::*;
use crate::attention::{attend_f16_generic, F16Query, MAX_QUERIES};
use crate::dispatch::{table, Isa};
use crate::KernelError;
use formats::quant::fp32_to_fp16_bits;

/// `n` halves of a normal distribution times `scale`.
fn halves(n: usize, scale: f64, rng: &mut Rng) -> Vec<u16> {
    (0..n)
        .map(|_| fp32_to_fp16_bits((rng.normal() * scale) as f32))
        .collect()
}

/// Whether `t` attends in its own order (f32 accumulators: the fast x86 tables of issue #14),
/// not in the portable version's f16 steps.
fn fast(t: &crate::KernelTable) -> bool {
    cfg!(target_arch = "x86_64") && t.isa().exact() != t.isa()
}

/// Attention of one query (`q`, over `n` positions) in f64 from the same f16 values: the
/// softmax of the scaled scores, the weighted sum of the values.
fn reference(
    q: &[u16],
    n: usize,
    k: &[u16],
    v: &[u16],
    (stride, hd): (usize, usize),
    scale: f32,
) -> Vec<f64> {
    let f = |h: u16| f64::from(formats::quant::fp16_bits_to_fp32(h));
    let scores: Vec<f64> = (0..n)
        .map(|p| {
            let dot: f64 = (0..hd).map(|i| f(q[i]) * f(k[p * stride + i])).sum();
            dot * f64::from(scale)
        })
        .collect();
    let m = scores.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let w: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
    let total: f64 = w.iter().sum();
    (0..hd)
        .map(|i| (0..n).map(|p| w[p] * f(v[p * stride + i])).sum::<f64>() / total)
        .collect()
}

/// On a fast table the results are also within 1e-5 of the largest value of an f64 reference
/// (they are the table's own single-query results bit for bit either way).
#[test]
fn queries_together_are_each_query_alone() {
    let mut rng = Rng::new(53);
    for t in Isa::ALL.iter().filter_map(|&isa| table(isa)) {
        // Head sizes: whole 32-value steps (the converted path on AVX2, up to its longest head
        // and past it), an f64 tail in the dot product, a tail of the f16 steps; a key scale
        // that makes new maxima common, and one that makes them rare.
        // Positions: within one tile of the fast kernel, and over many (new maxima in later
        // tiles, queries ending inside a tile and at its end).
        for (hd, key_scale, n_pos) in [
            (64, 1.0, 57),
            (40, 3.0, 57),
            (12, 0.3, 57),
            (128, 1.0, 57),
            (256, 3.0, 57),
            (288, 1.0, 57),
            (64, 3.0, 301),
            (256, 1.0, 300),
            (96, 3.0, 130),
        ] {
            let stride = hd + 8;
            let k = halves(n_pos * stride, key_scale, &mut rng);
            let v = halves(n_pos * stride, 1.0, &mut rng);
            let nq = MAX_QUERIES.min(13);
            let q16 = halves(nq * hd, 1.0, &mut rng);
            let counts: Vec<usize> = (0..nq)
                .map(|g| [1, n_pos, 30, 2, 45, 64, n_pos - 1, 33][g % 8].min(n_pos))
                .collect();
            let scale = 1.0 / (hd as f32).sqrt();

            let mut together = vec![f32::NAN; nq * hd];
            let mut queries: Vec<F16Query<'_>> = q16
                .chunks_exact(hd)
                .zip(together.chunks_exact_mut(hd))
                .zip(&counts)
                .map(|((q16, out), &n_pos)| F16Query { q16, n_pos, out })
                .collect();
            let mut vkq = vec![0u16; nq * hd];
            t.attend_f16(&mut queries, &k, &v, stride, scale, &mut vkq)
                .unwrap();

            for (g, (q, &n)) in q16.chunks_exact(hd).zip(&counts).enumerate() {
                let mut alone = vec![f32::NAN; hd];
                let mut one = [F16Query {
                    q16: q,
                    n_pos: n,
                    out: &mut alone,
                }];
                if fast(t) {
                    t.attend_f16(&mut one, &k, &v, stride, scale, &mut vkq)
                        .unwrap();
                    // Heads the fast kernel takes (others take the f16 steps).
                    let want = match hd % 8 == 0 && hd <= 256 {
                        true => reference(q, n, &k, &v, (stride, hd), scale),
                        false => Vec::new(),
                    };
                    let top = want.iter().fold(0f64, |m, x| m.max(x.abs()));
                    for (i, (a, w)) in one[0].out.iter().zip(&want).enumerate() {
                        assert!(
                            (f64::from(*a) - w).abs() <= 1e-5 * top.max(1e-3),
                            "{} hd={hd} query {g} value {i}: {a} vs f64 {w}",
                            t.isa()
                        );
                    }
                } else {
                    attend_f16_generic(t, &mut one, &k, &v, stride, scale, &mut vkq);
                }
                for (i, (a, b)) in together[g * hd..(g + 1) * hd]
                    .iter()
                    .zip(&alone)
                    .enumerate()
                {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{} hd={hd} query {g} ({n} positions) value {i}: together {a}, alone {b}",
                        t.isa()
                    );
                }
                assert!(alone.iter().all(|x| x.is_finite()));
            }
        }
    }
}

#[test]
fn attention_shapes_are_checked() {
    let t = crate::active();
    let (hd, stride) = (16, 16);
    let k = vec![0u16; 4 * stride];
    let mut vkq = vec![0u16; 2 * hd];
    let q = vec![0u16; hd];
    let mut out = vec![0f32; hd];
    let mut short = vec![0f32; hd - 1];
    let bad = |r: Result<(), KernelError>| matches!(r, Err(KernelError::Attention(_)));

    // Keys for 4 positions: a fifth is refused, as is a short output or scratch.
    let mut five = [F16Query {
        q16: &q,
        n_pos: 5,
        out: &mut out,
    }];
    assert!(bad(t.attend_f16(&mut five, &k, &k, stride, 1.0, &mut vkq)));
    let mut wrong_out = [F16Query {
        q16: &q,
        n_pos: 4,
        out: &mut short,
    }];
    assert!(bad(t.attend_f16(
        &mut wrong_out,
        &k,
        &k,
        stride,
        1.0,
        &mut vkq
    )));
    let mut four = [F16Query {
        q16: &q,
        n_pos: 4,
        out: &mut out,
    }];
    assert!(bad(t.attend_f16(
        &mut four,
        &k,
        &k,
        stride,
        1.0,
        &mut vkq[..hd - 1]
    )));
    // Zero positions: zeros.
    let mut none = [F16Query {
        q16: &q,
        n_pos: 0,
        out: &mut out,
    }];
    none[0].out.fill(f32::NAN);
    t.attend_f16(&mut none, &k, &k, stride, 1.0, &mut vkq)
        .unwrap();
    assert!(out.iter().all(|&x| x == 0.0));
}

/// The AVX2 `expf` (eight lanes, glibc's FMA algorithm) against the C library's scalar
/// `expf`, bit for bit: every 61st float from 0 down to past the underflow (attention's
/// arguments are never positive), every 61st up to past the overflow, the thresholds of
/// glibc's slow path and their neighbours, infinities, NaN, zeros and subnormals.
#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_expf_is_the_c_librarys() {
    if table(Isa::Avx2).is_none() {
        return; // No AVX2 here: the kernel cannot run (the x86-64 CI machine has it).
    }
    let mut xs: Vec<f32> = Vec::new();
    let neg_end = (-110f32).to_bits();
    xs.extend((0x8000_0000..=neg_end).step_by(61).map(f32::from_bits));
    xs.extend((0..=90f32.to_bits()).step_by(61).map(f32::from_bits));
    for edge in [
        88.0f32,
        -88.0,
        88.72283,
        -103.97208,
        -103.27892,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
    ] {
        let b = edge.to_bits();
        xs.extend((b - 64..b + 64).map(f32::from_bits));
    }
    xs.extend([
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        0.0,
        -0.0,
        f32::from_bits(1),
        f32::from_bits(0x8000_0001),
    ]);
    let mut got = vec![0f32; xs.len()];
    // SAFETY: the AVX2 table exists, so this CPU has AVX2, FMA and F16C.
    unsafe { crate::x86::avx2::expf_slice(&xs, &mut got) };
    let mut wrong = 0;
    for (&x, &g) in xs.iter().zip(&got) {
        let want = crate::scalar::expf(x);
        if g.to_bits() != want.to_bits() && !(g.is_nan() && want.is_nan()) {
            if wrong < 10 {
                eprintln!(
                    "expf({x:e}) = {want:e} ({:#x}), AVX2 {g:e} ({:#x})",
                    want.to_bits(),
                    g.to_bits()
                );
            }
            wrong += 1;
        }
    }
    assert_eq!(wrong, 0, "{wrong} of {} inputs differ", xs.len());
}
