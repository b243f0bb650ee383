use crate::quant::{dequantize, quantize, GgmlType, QK_K};
use alloc::vec::Vec;

const K_TYPES: [GgmlType; 6] = [
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_K,
];

/// Deterministic xorshift values, roughly Gaussian (sum of four uniforms).
fn rows(seed: u32, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761) | 1;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    (0..n)
        .map(|_| (uniform() + uniform() + uniform() + uniform()) * 1.7)
        .collect()
}

fn rel_rmse(x: &[f32], y: &[f32]) -> f32 {
    let err: f64 = x
        .iter()
        .zip(y)
        .map(|(&a, &b)| f64::from(a - b).powi(2))
        .sum();
    let sig: f64 = x.iter().map(|&a| f64::from(a).powi(2)).sum();
    (err / sig) as f32
}

fn round_trip(ty: GgmlType, x: &[f32], n_per_row: usize, w: Option<&[f32]>) -> Vec<f32> {
    let q = quantize(ty, x, n_per_row, w).unwrap();
    assert_eq!(
        q.len(),
        ty.row_size(n_per_row).unwrap() * x.len() / n_per_row
    );
    dequantize(ty, &q).unwrap()
}

/// Relative squared error bounds (error energy over signal energy) for Gaussian rows: about
/// twice what the quantizers reach, so a broken search fails while ordinary changes pass.
fn bound(ty: GgmlType) -> f32 {
    match ty {
        GgmlType::Q2_K => 0.16,
        GgmlType::Q3_K => 0.05,
        GgmlType::Q4_K => 0.012,
        GgmlType::Q5_K => 0.003,
        GgmlType::Q6_K => 0.0008,
        GgmlType::Q8_K => 0.0001,
        _ => unreachable!(),
    }
}

#[test]
fn round_trip_error_is_bounded_with_and_without_importance() {
    let n = 2 * QK_K;
    let x = rows(1, 3 * n);
    let imp: Vec<f32> = rows(2, n).iter().map(|v| v * v + 0.1).collect();
    for ty in K_TYPES {
        let e = rel_rmse(&x, &round_trip(ty, &x, n, None));
        assert!(e < bound(ty), "{ty}: {e}");
        let e = rel_rmse(&x, &round_trip(ty, &x, n, Some(&imp)));
        assert!(e < bound(ty), "{ty} with importance: {e}");
        // Uniform importance is a valid weighting too.
        let e = rel_rmse(&x, &round_trip(ty, &x, n, Some(&alloc::vec![1.0; n])));
        assert!(e < bound(ty), "{ty} with uniform importance: {e}");
    }
}

#[test]
fn more_bits_means_less_error() {
    let x = rows(3, 4 * QK_K);
    let errs: Vec<f32> = K_TYPES
        .iter()
        .map(|&ty| rel_rmse(&x, &round_trip(ty, &x, QK_K, None)))
        .collect();
    assert!(errs.windows(2).all(|w| w[0] > w[1]), "{errs:?}");
}

#[test]
fn zero_rows_stay_zero_and_constant_rows_come_back() {
    for ty in K_TYPES {
        let zero = alloc::vec![0.0f32; QK_K];
        assert!(
            quantize(ty, &zero, QK_K, None)
                .unwrap()
                .iter()
                .all(|&b| b == 0),
            "{ty}"
        );
        assert!(
            round_trip(ty, &zero, QK_K, Some(&[1.0; QK_K]))
                .iter()
                .all(|&v| v == 0.0),
            "{ty}"
        );
        for c in [1.0f32, -0.37, 1000.0] {
            let x = alloc::vec![c; QK_K];
            for w in [None, Some(&[1.0f32; QK_K][..])] {
                let y = round_trip(ty, &x, QK_K, w);
                for &v in &y {
                    assert!((v - c).abs() <= c.abs() * 0.02, "{ty} {c} {w:?}: {v}");
                }
            }
        }
    }
}

#[test]
fn typed_and_byte_entry_points_agree() {
    use super::*;
    let x = rows(4, 2 * QK_K);
    let mut b4 = [BlockQ4K {
        d: 0,
        dmin: 0,
        scales: [0; 12],
        qs: [0; QK_K / 2],
    }; 2];
    quantize_q4_k(&x, &mut b4, QK_K, None);
    assert_eq!(
        bytemuck::cast_slice::<_, u8>(&b4),
        &quantize(GgmlType::Q4_K, &x, QK_K, None).unwrap()[..]
    );
    let mut b8 = [bytemuck::Zeroable::zeroed(); 2];
    quantize_row_q8_k_ref(&x, &mut b8);
    let blk: &BlockQ8K = &b8[1];
    for (s, q) in blk.bsums.iter().zip(blk.qs.chunks_exact(16)) {
        assert_eq!(i32::from(*s), q.iter().map(|&v| i32::from(v)).sum::<i32>());
    }
    let mut y = [0f32; 2 * QK_K];
    dequantize_row_q8_k(&b8, &mut y);
    assert_eq!(y[QK_K + 5], blk.d * f32::from(blk.qs[5]));
}

#[test]
fn hostile_floats_do_not_panic() {
    let specials = [
        f32::NAN,
        -f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        -f32::MAX,
        1e30,
        -3e25,
        1e-30,
        f32::MIN_POSITIVE,
        1e-45,
        -1e-40,
        0.0,
        -0.0,
        1.0,
    ];
    let base = rows(5, QK_K);
    let mut inputs: Vec<Vec<f32>> = Vec::new();
    for &s in &specials {
        inputs.push(alloc::vec![s; QK_K]);
        let mut one = base.clone();
        one[37] = s;
        inputs.push(one);
        let mut half = base.clone();
        for v in half.iter_mut().step_by(2) {
            *v = s;
        }
        inputs.push(half);
        inputs.push(base.iter().map(|v| v * s).collect());
    }
    let mut weights: Vec<Option<Vec<f32>>> = alloc::vec![
        None,
        Some(alloc::vec![1.0; QK_K]),
        Some(alloc::vec![0.0; QK_K])
    ];
    for &s in &specials {
        weights.push(Some(alloc::vec![s; QK_K]));
        let mut w: Vec<f32> = base.iter().map(|v| v * v).collect();
        w[200] = s;
        weights.push(Some(w));
    }
    for ty in K_TYPES {
        for x in &inputs {
            for w in &weights {
                let q = quantize(ty, x, QK_K, w.as_deref()).unwrap();
                let _ = dequantize(ty, &q).unwrap();
            }
        }
    }
}

#[test]
fn any_block_bytes_dequantize_without_panicking() {
    let mut s = 0x9e37_79b9u32;
    for ty in K_TYPES {
        let mut bytes = alloc::vec![0u8; ty.type_size() * 3];
        for b in &mut bytes {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            *b = s as u8;
        }
        assert_eq!(dequantize(ty, &bytes).unwrap().len(), 3 * QK_K);
        // Misaligned source slices are copied, not refused.
        let shifted = [&[0u8][..], &bytes].concat();
        assert_eq!(dequantize(ty, &shifted[1..]).unwrap().len(), 3 * QK_K);
    }
}
