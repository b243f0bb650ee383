//! The byte-level entry points: row ranges, threads, and every refusal.

use super::*;
use crate::{matvec, supported, vec_dot, KernelError, Operand, WEIGHT_TYPES};
use formats::quant::QK_K;

/// A matrix of `rows` random rows of `n` values of `w`, quantized with `formats`.
fn matrix(w: GgmlType, rows: usize, n: usize, rng: &mut Rng) -> Aligned {
    let values: Vec<f32> = (0..rows * n).map(|_| rng.normal() as f32).collect();
    Aligned::from_bytes(&formats::quant::quantize(w, &values, n, None).unwrap())
}

fn row_len(w: GgmlType) -> usize {
    if w.block_size() == QK_K {
        2 * QK_K
    } else {
        96
    }
}

#[test]
fn matvec_over_a_row_range_equals_vec_dot_per_row() {
    let mut rng = Rng::new(3);
    for &w in WEIGHT_TYPES {
        let (rows, n) = (37, row_len(w));
        let m = matrix(w, rows, n, &mut rng);
        let x: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        let act = activation(w, &x);
        let row_bytes = w.row_size(n).unwrap();
        let per_row: Vec<f32> = m
            .bytes()
            .chunks_exact(row_bytes)
            .map(|r| vec_dot(w, n, r, act.bytes()).unwrap())
            .collect();
        for range in [0..rows, 5..17, 36..37, 20..20] {
            let mut out = vec![f32::NAN; range.len()];
            matvec(w, m.bytes(), range.clone(), n, act.bytes(), &mut out).unwrap();
            let want = &per_row[range.clone()];
            assert!(
                out.iter()
                    .zip(want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{w} {range:?}: {out:?} vs {want:?}"
            );
        }
    }
}

#[test]
fn threads_on_disjoint_ranges_agree_with_one_call() {
    let mut rng = Rng::new(5);
    let w = GgmlType::Q4_K;
    let (rows, n) = (64, 4 * QK_K);
    let m = matrix(w, rows, n, &mut rng);
    let x: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    let act = activation(w, &x);
    let mut whole = vec![0f32; rows];
    matvec(w, m.bytes(), 0..rows, n, act.bytes(), &mut whole).unwrap();
    let mut split = vec![0f32; rows];
    std::thread::scope(|s| {
        for (i, out) in split.chunks_mut(24).enumerate() {
            let (m, act) = (&m, &act);
            s.spawn(move || {
                let start = 24 * i;
                matvec(w, m.bytes(), start..start + out.len(), n, act.bytes(), out).unwrap();
            });
        }
    });
    assert_eq!(whole, split);
}

#[test]
fn activation_sizes_follow_the_vec_dot_type() {
    let cases = [
        (GgmlType::F32, 7, 28),
        (GgmlType::F16, 7, 14),
        (GgmlType::BF16, 7, 14),
        (GgmlType::Q4_0, 64, 68),
        (GgmlType::Q4_1, 64, 72),
        (GgmlType::Q5_0, 64, 68),
        (GgmlType::Q5_1, 64, 72),
        (GgmlType::Q8_0, 64, 68),
        (GgmlType::IQ4_NL, 64, 68),
        (GgmlType::Q2_K, 512, 584),
        (GgmlType::Q6_K, 512, 584),
    ];
    for (w, n, bytes) in cases {
        assert_eq!(activation_bytes(w, n), Ok(bytes), "{w}");
    }
    assert_eq!(vec_dot_type(GgmlType::Q4_1), GgmlType::Q8_1);
    assert_eq!(vec_dot_type(GgmlType::IQ4_NL), GgmlType::Q8_0);
    assert_eq!(vec_dot_type(GgmlType::Q3_K), GgmlType::Q8_K);
    assert!(supported(GgmlType::Q5_K) && !supported(GgmlType::IQ2_XS));
    assert!(!supported(GgmlType::Q8_K) && !supported(GgmlType::Q8_1));
}

/// Every refusal, each checked for its variant: sizes, ranges, alignment, types.
#[test]
fn bad_sizes_and_alignments_are_errors_not_panics() {
    let mut rng = Rng::new(9);
    let w = GgmlType::Q4_0;
    let n = 64;
    let m = matrix(w, 4, n, &mut rng);
    let x: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    let act = activation(w, &x);
    let row = &m.bytes()[..36];
    let mut out = [0f32; 4];

    // Types and row lengths.
    let unsupported = GgmlType::IQ2_XXS;
    assert_eq!(
        vec_dot(unsupported, 256, &[], &[]),
        Err(KernelError::Unsupported(unsupported))
    );
    for bad_n in [0, 48, 65] {
        let want = Err(KernelError::RowLength {
            ty: w,
            n: bad_n,
            block: 32,
        });
        assert_eq!(activation_bytes(w, bad_n), want.clone().map(|()| 0));
        assert_eq!(
            vec_dot(w, bad_n, row, act.bytes()),
            want.clone().map(|()| 0.0)
        );
        assert_eq!(
            matvec(w, m.bytes(), 0..4, bad_n, act.bytes(), &mut out),
            want
        );
        let mut buf = Aligned::zeroed(68);
        assert_eq!(
            quantize_activation(w, &vec![1.0; bad_n], buf.bytes_mut()),
            want
        );
    }
    let huge = usize::MAX / 32 * 32;
    assert_eq!(
        activation_bytes(w, huge),
        Err(KernelError::RowTooLong { ty: w, n: huge })
    );
    assert!(matches!(
        activation_bytes(GgmlType::F32, usize::MAX / 2),
        Err(KernelError::RowTooLong { .. })
    ));

    // Weight sizes.
    assert_eq!(
        vec_dot(w, n, &m.bytes()[..35], act.bytes()),
        Err(KernelError::WeightRowSize {
            ty: w,
            n,
            got: 35,
            need: 36
        })
    );
    assert_eq!(
        vec_dot(w, n, &m.bytes()[..72], act.bytes()),
        Err(KernelError::WeightRowSize {
            ty: w,
            n,
            got: 72,
            need: 36
        })
    );
    assert_eq!(
        matvec(w, &m.bytes()[..100], 0..2, n, act.bytes(), &mut out[..2]),
        Err(KernelError::WeightMatrixSize {
            ty: w,
            got: 100,
            row_bytes: 36
        })
    );

    // Row ranges and outputs.
    for (start, end) in [(0, 5), (3, 2), (5, 5), (usize::MAX, usize::MAX)] {
        assert_eq!(
            matvec(w, m.bytes(), start..end, n, act.bytes(), &mut out[..0]),
            Err(KernelError::RowRange {
                ty: w,
                start,
                end,
                rows: 4
            })
        );
    }
    assert_eq!(
        matvec(w, m.bytes(), 0..3, n, act.bytes(), &mut out),
        Err(KernelError::OutputLength { got: 4, need: 3 })
    );

    // Activation sizes.
    for bad in [0, 67, 69] {
        let buf = Aligned::zeroed(bad);
        let want = KernelError::ActivationSize {
            ty: GgmlType::Q8_0,
            n,
            got: bad,
            need: 68,
        };
        assert_eq!(vec_dot(w, n, row, buf.bytes()), Err(want.clone()));
        let mut buf = Aligned::zeroed(bad);
        assert_eq!(quantize_activation(w, &x, buf.bytes_mut()), Err(want));
    }

    // Alignment: activations one byte off, Q8_K activations two bytes off, weights one off.
    let mut buf = Aligned::zeroed(69);
    let shifted = &mut buf.bytes_mut()[1..];
    let misaligned = KernelError::Misaligned {
        operand: Operand::Activation,
        ty: GgmlType::Q8_0,
        align: 2,
    };
    assert_eq!(quantize_activation(w, &x, shifted), Err(misaligned.clone()));
    assert_eq!(vec_dot(w, n, row, shifted), Err(misaligned));

    let wk = GgmlType::Q4_K;
    let xk: Vec<f32> = (0..QK_K).map(|_| rng.normal() as f32).collect();
    let mut buf = Aligned::zeroed(292 + 2);
    let shifted = &mut buf.bytes_mut()[2..];
    let misaligned = KernelError::Misaligned {
        operand: Operand::Activation,
        ty: GgmlType::Q8_K,
        align: 4,
    };
    assert_eq!(
        quantize_activation(wk, &xk, shifted),
        Err(misaligned.clone())
    );
    let mk = matrix(wk, 1, QK_K, &mut rng);
    assert_eq!(vec_dot(wk, QK_K, mk.bytes(), shifted), Err(misaligned));

    let shifted_w = Aligned::from_bytes(&[&[0u8][..], row].concat());
    assert_eq!(
        vec_dot(w, n, &shifted_w.bytes()[1..], act.bytes()),
        Err(KernelError::Misaligned {
            operand: Operand::Weights,
            ty: w,
            align: 2
        })
    );
    // F32 weights need 4 bytes; 2 is not enough.
    let wf = GgmlType::F32;
    let mf = Aligned::zeroed(4 * 8 + 2);
    let actf = activation(wf, &x[..8]);
    assert!(matches!(
        vec_dot(wf, 8, &mf.bytes()[2..], actf.bytes()),
        Err(KernelError::Misaligned {
            operand: Operand::Weights,
            align: 4,
            ..
        })
    ));

    // Nothing was written on any refusal.
    assert_eq!(out, [0.0; 4]);
}

#[test]
fn errors_name_the_offending_values() {
    let e = KernelError::ActivationSize {
        ty: GgmlType::Q8_K,
        n: 512,
        got: 580,
        need: 584,
    };
    assert_eq!(
        e.to_string(),
        "Q8_K activation for a row of 512 needs 584 bytes, got 580"
    );
    let e = KernelError::Misaligned {
        operand: Operand::Weights,
        ty: GgmlType::F32,
        align: 4,
    };
    assert_eq!(
        e.to_string(),
        "weights buffer of type F32 is not aligned to 4 bytes"
    );
}
