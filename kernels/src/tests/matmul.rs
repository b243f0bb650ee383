//! The matrix-matrix products against the matrix-vector ones (issue #4): on every kernel table
//! this CPU runs (scalar and AVX2 on x86-64; scalar, NEON and NEON with `dotprod` on AArch64),
//! for every weight type, every (row, token) value of `matmul` is **bit-identical** to `matvec`
//! of that row with that token's activation, whatever the row range and the number of tokens
//! (the remainders of every tile shape), on quantized rows, random block bytes and the edge
//! blocks of `accuracy`, and on the matrices `matvec` multiplies in llama.cpp's 8-row
//! interleaved order; then the byte-level refusals.

use super::accuracy::{activation_row, extreme_cases, random_blocks};
use super::*;
use crate::dispatch::{table, Isa};
use crate::{matmul, KernelError, KernelTable, WEIGHT_TYPES};

/// Every kernel table this build has and this CPU runs.
fn tables() -> Vec<&'static KernelTable> {
    Isa::ALL.iter().filter_map(|&isa| table(isa)).collect()
}

/// `xs` quantized with `t`'s quantizer for weights of type `w`, end to end.
fn activations(t: &KernelTable, w: GgmlType, xs: &[Vec<f32>]) -> Aligned {
    let n = xs[0].len();
    let row = activation_bytes(w, n).unwrap();
    let mut acts = Aligned::zeroed(row * xs.len());
    for (x, out) in xs.iter().zip(acts.bytes_mut().chunks_exact_mut(row)) {
        t.quantize_activation(w, x, out).unwrap();
    }
    acts
}

/// `t.matmul` of rows `range` of `m` with `xs` against `t.matvec` of the same rows with each
/// token, bit for bit.
fn check(t: &KernelTable, w: GgmlType, m: &[u8], n: usize, xs: &[Vec<f32>], what: &str) {
    let rows = m.len() / w.row_size(n).unwrap();
    let acts = activations(t, w, xs);
    let row = activation_bytes(w, n).unwrap();
    let isa = t.isa();
    for range in [0..rows, 1..rows - 2, rows / 2..rows / 2 + 1, 3..3] {
        let mut outs: Vec<Vec<f32>> = vec![vec![f32::NAN; range.len()]; xs.len()];
        let mut parts: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
        t.matmul(w, m, range.clone(), n, acts.bytes(), &mut parts)
            .unwrap();
        for (tok, (got, act)) in outs.iter().zip(acts.bytes().chunks_exact(row)).enumerate() {
            let mut want = vec![f32::NAN; range.len()];
            t.matvec(w, m, range.clone(), n, act, &mut want).unwrap();
            for (r, (g, v)) in range.clone().zip(got.iter().zip(&want)) {
                assert_eq!(
                    g.to_bits(),
                    v.to_bits(),
                    "{isa} {w} n={n} {what}: row {r} token {tok} of {}: matmul {g:e}, matvec {v:e}",
                    xs.len()
                );
            }
        }
    }
}

/// Token counts around every tile shape (one token, the remainders of 2 and 4, a full batch).
const TOKENS: &[usize] = &[1, 2, 3, 4, 5, 7, 9, 64];

#[test]
fn matmul_is_matvec_bit_for_bit_on_quantized_rows() {
    let mut rng = Rng::new(41);
    for t in tables() {
        for &w in WEIGHT_TYPES {
            // 13 rows: odd, past every row tile; a long row spans several of `tiled`'s tiles;
            // rows of 260 blocks of 32 are past the AVX-VNNI offset kernels' 256.
            for (n, tokens) in [
                (3 * w.block_size().max(64), TOKENS),
                (4096, &[1, 6][..]),
                ((32 * 260usize).next_multiple_of(w.block_size()), &[7][..]),
            ] {
                let rows = 13;
                let values: Vec<f32> = (0..rows * n).map(|_| rng.normal() as f32).collect();
                let m = formats::quant::quantize(w, &values, n, None).unwrap();
                let m = Aligned::from_bytes(&m);
                for &nt in tokens {
                    let xs: Vec<Vec<f32>> = (0..nt)
                        .map(|i| activation_row(n, i % 2 == 1, &mut rng))
                        .collect();
                    check(t, w, m.bytes(), n, &xs, "quantized rows");
                }
            }
        }
    }
}

#[test]
fn matmul_is_matvec_bit_for_bit_on_random_and_extreme_blocks() {
    let mut rng = Rng::new(43);
    for t in tables() {
        for &w in WEIGHT_TYPES {
            let n = 2 * w.block_size().max(64);
            let rows = 7;
            let mut m = Aligned::zeroed(rows * w.row_size(n).unwrap());
            for row in m.bytes_mut().chunks_exact_mut(w.row_size(n).unwrap()) {
                row.copy_from_slice(random_blocks(w, n, &mut rng).bytes());
            }
            let xs: Vec<Vec<f32>> = (0..5).map(|_| activation_row(n, true, &mut rng)).collect();
            check(t, w, m.bytes(), n, &xs, "random blocks");

            // Each edge case's weight row, four times over, against its activation and three
            // random ones.
            for (row, x) in extreme_cases(w, n, &mut rng) {
                let m = Aligned::from_bytes(&row.bytes().repeat(4));
                let mut xs = vec![x];
                xs.extend((0..3).map(|_| activation_row(n, false, &mut rng)));
                check(t, w, m.bytes(), n, &xs, "extreme blocks");
            }
        }
    }
}

/// Matrices of a multiple of 8 rows, which `matvec` multiplies in llama.cpp's 8-row interleaved
/// order where the table has one (Q4_0, Q4_K and IQ4_NL on AVX2): `matmul` follows it.
#[test]
fn matmul_is_matvec_bit_for_bit_on_interleaved_matrices() {
    let mut rng = Rng::new(53);
    for t in tables() {
        for w in [GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::IQ4_NL] {
            let (rows, n) = (24, 3 * w.block_size().max(64));
            let values: Vec<f32> = (0..rows * n).map(|_| rng.normal() as f32).collect();
            let m = Aligned::from_bytes(&formats::quant::quantize(w, &values, n, None).unwrap());
            for nt in [1, 3, 4, 9] {
                let xs: Vec<Vec<f32>> = (0..nt)
                    .map(|i| activation_row(n, i % 2 == 1, &mut rng))
                    .collect();
                check(t, w, m.bytes(), n, &xs, "interleaved matrix");
            }
        }
        // Rows longer than the AVX2 Q4_0 GEMM's block buffers (512 blocks) take its fallback.
        let (rows, n) = (16, 32 * 520);
        let values: Vec<f32> = (0..rows * n).map(|_| rng.normal() as f32).collect();
        let w = GgmlType::Q4_0;
        let m = Aligned::from_bytes(&formats::quant::quantize(w, &values, n, None).unwrap());
        let xs: Vec<Vec<f32>> = (0..3)
            .map(|i| activation_row(n, i % 2 == 1, &mut rng))
            .collect();
        check(t, w, m.bytes(), n, &xs, "interleaved matrix of long rows");
    }
}

/// Shapes the entry point refuses, each for its variant, and an empty batch, which is no work.
#[test]
fn matmul_refuses_bad_shapes() {
    let mut rng = Rng::new(47);
    let w = GgmlType::Q4_0;
    let (rows, n) = (4, 64);
    let values: Vec<f32> = (0..rows * n).map(|_| rng.normal() as f32).collect();
    let m = Aligned::from_bytes(&formats::quant::quantize(w, &values, n, None).unwrap());
    let xs: Vec<Vec<f32>> = (0..3).map(|_| activation_row(n, false, &mut rng)).collect();
    let acts = activations(crate::active(), w, &xs);
    let mut outs = [[0f32; 4]; 3];
    let mut parts: Vec<&mut [f32]> = outs.iter_mut().map(|o| &mut o[..]).collect();

    assert_eq!(
        matmul(w, m.bytes(), 0..rows, n, &acts.bytes()[..100], &mut parts),
        Err(KernelError::ActivationsSize {
            ty: GgmlType::Q8_0,
            n,
            tokens: 3,
            got: 100,
            need: 204,
        })
    );
    assert_eq!(
        matmul(w, m.bytes(), 0..3, n, acts.bytes(), &mut parts),
        Err(KernelError::ProductOutputLength {
            token: 0,
            got: 4,
            rows: 3,
        })
    );
    assert_eq!(
        matmul(w, m.bytes(), 2..5, n, acts.bytes(), &mut parts),
        Err(KernelError::RowRange {
            ty: w,
            start: 2,
            end: 5,
            rows: 4,
        })
    );
    assert_eq!(
        matmul(w, &m.bytes()[..70], 0..rows, n, acts.bytes(), &mut parts),
        Err(KernelError::WeightMatrixSize {
            ty: w,
            got: 70,
            row_bytes: 36,
        })
    );
    assert_eq!(
        matmul(
            GgmlType::IQ2_XS,
            m.bytes(),
            0..rows,
            256,
            acts.bytes(),
            &mut parts
        ),
        Err(KernelError::Unsupported(GgmlType::IQ2_XS))
    );
    // A misaligned activation buffer.
    let shifted = Aligned::from_bytes(&[&[0u8][..], acts.bytes()].concat());
    assert!(matches!(
        matmul(w, m.bytes(), 0..rows, n, &shifted.bytes()[1..], &mut parts),
        Err(KernelError::Misaligned {
            operand: crate::Operand::Activation,
            ..
        })
    ));
    assert_eq!(matmul(w, m.bytes(), 0..rows, n, &[], &mut []), Ok(()));
    // Nothing was written by any refusal.
    assert!(outs.iter().flatten().all(|&v| v == 0.0));
}
