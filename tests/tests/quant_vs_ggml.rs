//! Differential test: our reference quantizers against ggml's, byte for byte.
//!
//! For every type, every row family (normal, heavy-tailed, zero, constant, tiny, huge, sparse),
//! with and without importance weights, `formats::quant::quantize` must write the same bytes as
//! `ggml_quantize_chunk`, and dequantizing ggml's bytes must give the same floats (bit for bit).

use formats::quant::{self, GgmlType};
use sintra_tests::ggml;
use sintra_tests::rows::{make_importance, make_row, Rng, RowKind};

/// The types issue #2 requires, all of which must be byte-identical with ggml.
const REQUIRED: [GgmlType; 15] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_K,
    GgmlType::IQ4_NL,
];

#[test]
fn every_required_type_has_a_reference_quantizer() {
    let missing: Vec<_> = REQUIRED.iter().filter(|t| !t.can_quantize()).collect();
    assert!(missing.is_empty(), "no reference quantizer for {missing:?}");
}

fn rmse(a: &[f32], b: &[f32]) -> f64 {
    let s: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    (s / a.len() as f64).sqrt()
}

/// Row lengths to test for a type: whole blocks, at least two per row, and one odd count.
fn row_lengths(ty: GgmlType) -> Vec<usize> {
    match ty.block_size() {
        1 => vec![7, 96],
        32 => vec![96, 576],
        _ => vec![256, 768],
    }
}

#[test]
fn quantizers_match_ggml_byte_for_byte() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for &ty in quant::GgmlType::QUANTIZABLE {
        for n_per_row in row_lengths(ty) {
            for kind in RowKind::ALL {
                for weighted in [false, true] {
                    let mut rng = Rng::new(0x5eed ^ (ty as u64) << 32 ^ n_per_row as u64);
                    let nrows = 3;
                    let src: Vec<f32> = (0..nrows)
                        .flat_map(|_| make_row(kind, n_per_row, &mut rng))
                        .collect();
                    let w = weighted.then(|| make_importance(n_per_row, &mut rng));
                    let theirs = ggml::quantize(ty, &src, n_per_row, w.as_deref());
                    let ours = quant::quantize(ty, &src, n_per_row, w.as_deref())
                        .unwrap_or_else(|e| panic!("{ty} {kind:?}: {e}"));
                    checked += 1;
                    let case = format!("{ty} n={n_per_row} {kind:?} weighted={weighted}");
                    if ours != theirs {
                        let block = ty.type_size();
                        let first = ours
                            .iter()
                            .zip(&theirs)
                            .position(|(a, b)| a != b)
                            .unwrap_or(0);
                        let deq_ours = ggml::dequantize(ty, &ours);
                        let deq_theirs = ggml::dequantize(ty, &theirs);
                        failures.push(format!(
                            "{case}: first differing byte {first} (block {}), RMSE ours {:.6e} ggml {:.6e}",
                            first / block,
                            rmse(&src, &deq_ours),
                            rmse(&src, &deq_theirs)
                        ));
                        continue;
                    }
                    // Dequantization of the same bytes: identical floats.
                    let a = quant::dequantize(ty, &theirs).unwrap();
                    let b = ggml::dequantize(ty, &theirs);
                    if let Some(i) = (0..a.len()).find(|&i| a[i].to_bits() != b[i].to_bits()) {
                        failures.push(format!(
                            "{case}: dequantized value {i} is {} ours, {} ggml",
                            a[i], b[i]
                        ));
                    }
                }
            }
        }
    }
    assert!(checked > 0);
    assert!(
        failures.is_empty(),
        "{} of {checked} cases differ from ggml:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{checked} cases byte-identical with ggml");
}
