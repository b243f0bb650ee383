//! Weights packed in groups of four rows (`crate::packed`): the layout round-trips to the
//! file's rows byte for byte, bad shapes are refused by name, and on a table with packed
//! kernels every row of every range is the table's own unpacked result bit for bit (and so
//! within the parity tests' tolerance of the scalar oracle). On a table without them (x86 for
//! now) `matvec_packed` refuses the call.

use super::{activation, Aligned, Rng};
use crate::packed::{matvec_packed, pack, packed_len, packs, unpack_row};
use crate::KernelError;
use formats::quant::GgmlType;

const TYPES: [GgmlType; 2] = [GgmlType::Q8_0, GgmlType::Q4_0];

fn matrix(ty: GgmlType, rows: usize, n: usize, rng: &mut Rng) -> Aligned {
    let values: Vec<f32> = (0..rows * n).map(|_| rng.normal() as f32).collect();
    Aligned::from_bytes(&formats::quant::quantize(ty, &values, n, None).unwrap())
}

#[test]
fn packing_round_trips_and_bad_shapes_are_refused() {
    let mut rng = Rng::new(41);
    for ty in TYPES {
        let (rows, n) = (12, 96);
        let m = matrix(ty, rows, n, &mut rng);
        let len = packed_len(ty, rows, n).unwrap();
        assert_eq!(len, m.bytes().len());
        let mut p = Aligned::zeroed(len);
        pack(ty, m.bytes(), n, p.bytes_mut()).unwrap();
        assert_ne!(p.bytes(), m.bytes(), "{ty}: packing moved nothing");
        let row_bytes = ty.row_size(n).unwrap();
        let mut row = Aligned::zeroed(row_bytes);
        for r in 0..rows {
            unpack_row(ty, p.bytes(), r, n, row.bytes_mut()).unwrap();
            assert_eq!(
                row.bytes(),
                &m.bytes()[r * row_bytes..][..row_bytes],
                "{ty} row {r}"
            );
        }
        // Ten rows are not whole groups; a K-quant has no packed layout.
        let ten = &m.bytes()[..10 * row_bytes];
        assert_eq!(
            pack(ty, ten, n, &mut vec![0u8; ten.len()]),
            Err(KernelError::NotPacked { ty, rows: 10 })
        );
        assert_eq!(packed_len(ty, 10, n), None);
        assert_eq!(
            unpack_row(ty, p.bytes(), rows, n, row.bytes_mut()),
            Err(KernelError::RowRange {
                ty,
                start: rows,
                end: rows + 1,
                rows
            })
        );
    }
    assert_eq!(packed_len(GgmlType::Q4_K, 16, 256), None);
}

#[test]
fn packed_rows_are_the_tables_own_results() {
    let mut rng = Rng::new(43);
    let t = crate::active();
    for ty in TYPES {
        let (rows, n) = (20, 160);
        let m = matrix(ty, rows, n, &mut rng);
        let mut p = Aligned::zeroed(m.bytes().len());
        pack(ty, m.bytes(), n, p.bytes_mut()).unwrap();
        let x: Vec<f32> = (0..n).map(|_| rng.normal() as f32 * 3.0).collect();
        let act = activation(ty, &x);
        if !packs(ty) {
            let mut out = vec![0f32; rows];
            assert_eq!(
                matvec_packed(ty, p.bytes(), 0..rows, n, act.bytes(), &mut out),
                Err(KernelError::NotPacked { ty, rows }),
                "{}",
                t.isa()
            );
            eprintln!("packed: {} has no packed {ty} kernel (refused)", t.isa());
            continue;
        }
        let mut want = vec![0f32; rows];
        t.matvec(ty, m.bytes(), 0..rows, n, act.bytes(), &mut want)
            .unwrap();
        for range in [0..rows, 0..4, 1..3, 3..17, 5..20, 19..20, 8..8] {
            let mut got = vec![f32::NAN; range.len()];
            matvec_packed(ty, p.bytes(), range.clone(), n, act.bytes(), &mut got).unwrap();
            for (r, g) in range.clone().zip(&got) {
                assert_eq!(
                    g.to_bits(),
                    want[r].to_bits(),
                    "{} {ty} row {r} of {range:?}: {g} vs {}",
                    t.isa(),
                    want[r]
                );
            }
        }
        let mut short = vec![0f32; 3];
        assert!(matvec_packed(ty, p.bytes(), 0..4, n, act.bytes(), &mut short).is_err());
        assert!(matvec_packed(ty, p.bytes(), 18..21, n, act.bytes(), &mut short).is_err());
    }
}

/// Several tokens through `matmul_packed`: every (row, token) value is `matvec_packed`'s for
/// that token, bit for bit, on ranges that start and end inside groups and for 1 to 7 tokens
/// (whole passes of four and the tail), on every table this CPU runs (`SMMLA` pairs of tokens
/// on `neon+i8mm`, under qemu's default CPU).
#[test]
fn packed_matmul_is_packed_matvec_per_token() {
    let mut rng = Rng::new(47);
    for ty in TYPES {
        let (rows, n) = (24, 96);
        let m = matrix(ty, rows, n, &mut rng);
        let mut p = Aligned::zeroed(m.bytes().len());
        pack(ty, m.bytes(), n, p.bytes_mut()).unwrap();
        let row_act = crate::activation_bytes(ty, n).unwrap();
        for tokens in 1..=7usize {
            let mut acts = Aligned::zeroed(row_act * tokens);
            for t in 0..tokens {
                let x: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
                let a = activation(ty, &x);
                acts.bytes_mut()[t * row_act..(t + 1) * row_act].copy_from_slice(a.bytes());
            }
            for (table, range) in crate::Isa::ALL
                .iter()
                .filter_map(|&isa| crate::table(isa))
                .flat_map(|t| [(t, 0..rows), (t, 2..23), (t, 4..8), (t, 5..6)])
            {
                let mut outs: Vec<Vec<f32>> = vec![vec![f32::NAN; range.len()]; tokens];
                let mut views: Vec<&mut [f32]> =
                    outs.iter_mut().map(|o| o.as_mut_slice()).collect();
                let r =
                    table.matmul_packed(ty, p.bytes(), range.clone(), n, acts.bytes(), &mut views);
                if !table.packs(ty) {
                    assert_eq!(r, Err(KernelError::NotPacked { ty, rows }));
                    continue;
                }
                r.unwrap();
                for (t, got) in outs.iter().enumerate() {
                    let act = &acts.bytes()[t * row_act..(t + 1) * row_act];
                    let mut want = vec![0f32; range.len()];
                    table
                        .matvec_packed(ty, p.bytes(), range.clone(), n, act, &mut want)
                        .unwrap();
                    let same = got
                        .iter()
                        .zip(&want)
                        .all(|(g, w)| g.to_bits() == w.to_bits());
                    assert!(
                        same,
                        "{} {ty} {tokens} tokens, token {t}, rows {range:?}: {got:?} vs {want:?}",
                        table.isa()
                    );
                }
            }
        }
    }
}
