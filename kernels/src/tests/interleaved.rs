//! The kernels in llama.cpp's 8-row interleaved order (`KernelTable::interleaved`; on AVX2
//! for Q4_0, Q4_K and IQ4_NL, which llama.cpp repacks there): `matvec` of a matrix whose row
//! count is a multiple of 8 must give, for every row, exactly what that order computes (a
//! scalar model of ggml's `ggml_gemv_*_8x8_*` here; against ggml itself in the integration
//! tests, `vec_dot_vs_ggml.rs`), whatever row range it is asked for, and other matrices keep
//! the `vec_dot` order.

use super::accuracy::{activation_row, random_blocks};
use super::*;
use crate::dispatch::{table, Isa};
use crate::scalar::scales_mins_k4;
use formats::quant::{
    fp16_bits_to_fp32, BlockIq4Nl, BlockQ4K, BlockQ4_0, BlockQ8K, BlockQ8_0, KVALUES_IQ4NL,
};

/// The types llama.cpp repacks on AVX2.
const INTERLEAVED: [GgmlType; 3] = [GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::IQ4_NL];

/// One row in ggml's repacked-GEMV order, in scalar code: per block its whole integer dot
/// product `isum`, then `acc = fma(isum, dx * dy, acc)`; Q4_K's minimums likewise in a sum
/// of their own, subtracted at the end.
fn interleaved_order(w: GgmlType, row: &[u8], act: &[u8]) -> f32 {
    let f16 = fp16_bits_to_fp32;
    let mut acc = 0f32;
    match w {
        GgmlType::Q4_0 | GgmlType::IQ4_NL => {
            let value = |q: u8| match w {
                GgmlType::Q4_0 => i32::from(q) - 8,
                _ => i32::from(KVALUES_IQ4NL[usize::from(q)]),
            };
            // Q4_0 and IQ4_NL blocks share their layout: [d][16 bytes of nibbles].
            let blocks: Vec<BlockQ4_0> = bytemuck::cast_slice::<u8, BlockIq4Nl>(row)
                .iter()
                .map(|b| BlockQ4_0 { d: b.d, qs: b.qs })
                .collect();
            for (x, y) in blocks
                .iter()
                .zip(bytemuck::cast_slice::<u8, BlockQ8_0>(act))
            {
                let isum: i32 = (0..16)
                    .map(|j| {
                        value(x.qs[j] & 15) * i32::from(y.qs[j])
                            + value(x.qs[j] >> 4) * i32::from(y.qs[j + 16])
                    })
                    .sum();
                acc = (isum as f32).mul_add(f16(x.d) * f16(y.d), acc);
            }
            acc
        }
        GgmlType::Q4_K => {
            let mut acc_min = 0f32;
            let ys = bytemuck::cast_slice::<u8, BlockQ8K>(act);
            for (x, y) in bytemuck::cast_slice::<u8, BlockQ4K>(row).iter().zip(ys) {
                let (sc, m) = scales_mins_k4(&x.scales);
                let mut isum = 0i32;
                for j in 0..4 {
                    for l in 0..32 {
                        let q = x.qs[32 * j + l];
                        isum +=
                            i32::from(sc[2 * j]) * i32::from(q & 15) * i32::from(y.qs[64 * j + l])
                                + i32::from(sc[2 * j + 1])
                                    * i32::from(q >> 4)
                                    * i32::from(y.qs[64 * j + 32 + l]);
                    }
                }
                let imin: i32 = (0..8)
                    .map(|i| {
                        i32::from(m[i])
                            * (i32::from(y.bsums[2 * i]) + i32::from(y.bsums[2 * i + 1]))
                    })
                    .sum();
                acc = (isum as f32).mul_add(f16(x.d) * y.d, acc);
                acc_min = (imin as f32).mul_add(f16(x.dmin) * y.d, acc_min);
            }
            acc - acc_min
        }
        _ => unreachable!("{w}"),
    }
}

/// Row lengths: one block, a few, SmolLM2's 576 (1,536 for the K-quant).
fn lengths(w: GgmlType) -> [usize; 3] {
    match w {
        GgmlType::Q4_K => [256, 768, 1536],
        _ => [32, 96, 576],
    }
}

#[test]
fn matrices_of_multiples_of_8_rows_take_ggml_repacked_order() {
    let Some(t) = table(Isa::Avx2) else {
        eprintln!("no AVX2 on this CPU: no interleaved kernels to test");
        return;
    };
    let mut rng = Rng::new(0x8a8);
    for w in INTERLEAVED {
        for n in lengths(w) {
            let rows = 40;
            let values: Vec<f32> = (0..rows * n).map(|_| rng.heavy() as f32).collect();
            let quantized =
                Aligned::from_bytes(&formats::quant::quantize(w, &values, n, None).unwrap());
            for (what, m) in [
                ("quantized", quantized),
                ("random blocks", random_blocks(w, rows * n, &mut rng)),
            ] {
                let x = activation_row(n, true, &mut rng);
                let mut act = Aligned::zeroed(activation_bytes(w, n).unwrap());
                t.quantize_activation(w, &x, act.bytes_mut()).unwrap();
                let row_bytes = w.row_size(n).unwrap();
                for range in [0..rows, 0..8, 5..21, 39..40] {
                    let mut got = vec![f32::NAN; range.len()];
                    t.matvec(w, m.bytes(), range.clone(), n, act.bytes(), &mut got)
                        .unwrap();
                    for (r, g) in range.clone().zip(&got) {
                        let row = &m.bytes()[r * row_bytes..(r + 1) * row_bytes];
                        let want = interleaved_order(w, row, act.bytes());
                        assert_eq!(
                            g.to_bits(),
                            want.to_bits(),
                            "{w} n={n} {what} row {r} of {range:?}: {g:e}, the interleaved order {want:e}"
                        );
                    }
                }
            }
        }
    }
}

/// A matrix of another row count (and a single row through `vec_dot`) keeps ggml's `vec_dot`
/// order, as llama.cpp leaves such matrices unpacked: the two orders round differently on
/// most rows, so at least one of these rows tells them apart.
#[test]
fn other_matrices_keep_the_vec_dot_order() {
    let Some(t) = table(Isa::Avx2) else {
        return;
    };
    let mut rng = Rng::new(0x0dd5);
    for w in INTERLEAVED {
        let n = lengths(w)[2];
        let (rows, row_bytes) = (41, w.row_size(n).unwrap());
        let m = random_blocks(w, rows * n, &mut rng);
        let x = activation_row(n, true, &mut rng);
        let mut act = Aligned::zeroed(activation_bytes(w, n).unwrap());
        t.quantize_activation(w, &x, act.bytes_mut()).unwrap();
        let mut odd = vec![0f32; rows];
        t.matvec(w, m.bytes(), 0..rows, n, act.bytes(), &mut odd)
            .unwrap();
        let mut even = vec![0f32; rows - 1];
        t.matvec(
            w,
            &m.bytes()[..(rows - 1) * row_bytes],
            0..rows - 1,
            n,
            act.bytes(),
            &mut even,
        )
        .unwrap();
        let mut differ = 0;
        for r in 0..rows - 1 {
            let row = &m.bytes()[r * row_bytes..(r + 1) * row_bytes];
            let single = t.vec_dot(w, n, row, act.bytes()).unwrap();
            assert_eq!(odd[r].to_bits(), single.to_bits(), "{w} row {r} of 41");
            assert_eq!(
                even[r].to_bits(),
                interleaved_order(w, row, act.bytes()).to_bits(),
                "{w} row {r} of 40"
            );
            differ += usize::from(odd[r].to_bits() != even[r].to_bits());
        }
        assert!(differ > 0, "{w}: the two orders agree on every row");
    }
}
