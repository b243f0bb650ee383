//! Weights packed in groups of [`GROUP`] rows (`crate::packed`): the layout round-trips to the
//! file's rows byte for byte, bad shapes are refused by name, and on a table with packed
//! kernels every row of every range is, bit for bit, the table's own unpacked result (AArch64)
//! or [`x86_order`]'s, a scalar model of the x86-64 kernels' order (one FMA of the block's
//! whole integer sum per block and row). On a table without them `matvec_packed` refuses the
//! call.

use super::{activation, Aligned, Rng};
use crate::packed::{matvec_packed, pack, packed_len, packs, unpack_row, GROUP};
use crate::KernelError;
use formats::quant::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ8_0, BlockQ8_1, GgmlType};

/// The x86-64 packed kernels' arithmetic, one row at a time: per block the exact integer dot
/// product (the scalar oracle's), then `acc = fma(sum, fp16(d_x) * fp16(d_y), acc)` (and for
/// Q4_1 `fma(fp16(m_x), fp16(s_y), acc)`).
fn x86_order(ty: GgmlType, w: &[u8], rows: core::ops::Range<usize>, act: &[u8]) -> Vec<f32> {
    use crate::scalar::{dot_5bit, dot_nibbles};
    let f16 = formats::quant::fp16_bits_to_fp32;
    let cast = |bytes| -> &[BlockQ8_0] { bytemuck::cast_slice(bytes) };
    // Block `i` of the matrix against activation block `b`: its integer sum, the two scales and
    // the type's minimum term (`m_x`, `s_y`), where it has one.
    let block = |i: usize, b: usize| -> (i32, u16, u16, Option<(u16, u16)>) {
        match ty {
            GgmlType::Q4_1 => {
                let (x, y) = (
                    &bytemuck::cast_slice::<u8, BlockQ4_1>(w)[i],
                    &bytemuck::cast_slice::<u8, BlockQ8_1>(act)[b],
                );
                (dot_nibbles(&x.qs, 0, &y.qs), x.d, y.d, Some((x.m, y.s)))
            }
            GgmlType::Q5_0 => {
                let (x, y) = (&bytemuck::cast_slice::<u8, BlockQ5_0>(w)[i], &cast(act)[b]);
                (dot_5bit(&x.qs, x.qh, 16, &y.qs), x.d, y.d, None)
            }
            GgmlType::Q4_0 => {
                let (x, y) = (&bytemuck::cast_slice::<u8, BlockQ4_0>(w)[i], &cast(act)[b]);
                (dot_nibbles(&x.qs, 8, &y.qs), x.d, y.d, None)
            }
            _ => {
                let (x, y) = (&cast(w)[i], &cast(act)[b]);
                let sum = (0..32)
                    .map(|j| i32::from(x.qs[j]) * i32::from(y.qs[j]))
                    .sum();
                (sum, x.d, y.d, None)
            }
        }
    };
    let nb = act.len() / crate::activation_bytes(ty, 32).unwrap();
    rows.map(|r| {
        let mut acc = 0f32;
        for b in 0..nb {
            let (sum, dx, dy, min) = block(r * nb + b, b);
            acc = (sum as f32).mul_add(f16(dx) * f16(dy), acc);
            if let Some((m, s)) = min {
                acc = f16(m).mul_add(f16(s), acc);
            }
        }
        acc
    })
    .collect()
}

/// What `table`'s packed kernels must give for rows `rows` of the file-layout matrix `w`: on
/// x86-64 [`x86_order`], elsewhere the table's own unpacked kernels.
fn want(
    table: &crate::KernelTable,
    ty: GgmlType,
    (w, n): (&[u8], usize),
    rows: core::ops::Range<usize>,
    act: &[u8],
) -> Vec<f32> {
    if cfg!(target_arch = "x86_64") {
        return x86_order(ty, w, rows, act);
    }
    let mut out = vec![0f32; rows.len()];
    table.matvec(ty, w, rows, n, act, &mut out).unwrap();
    out
}

const TYPES: [GgmlType; 4] = [
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q5_0,
    GgmlType::Q4_1,
];

fn matrix(ty: GgmlType, rows: usize, n: usize, rng: &mut Rng) -> Aligned {
    let values: Vec<f32> = (0..rows * n).map(|_| rng.normal() as f32).collect();
    Aligned::from_bytes(&formats::quant::quantize(ty, &values, n, None).unwrap())
}

#[test]
fn packing_round_trips_and_bad_shapes_are_refused() {
    let mut rng = Rng::new(41);
    for ty in TYPES {
        let (rows, n) = (3 * GROUP, 96);
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
        // Rows that are not whole groups; a K-quant has no packed layout.
        let part = GROUP + 2;
        let cut = &m.bytes()[..part * row_bytes];
        assert_eq!(
            pack(ty, cut, n, &mut vec![0u8; cut.len()]),
            Err(KernelError::NotPacked { ty, rows: part })
        );
        assert_eq!(packed_len(ty, part, n), None);
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

/// Every range of rows (starting and ending inside groups, empty, whole), for rows of 160 values
/// and of 16,640 (520 blocks: more than the x86-64 kernels prepare in one pass).
#[test]
fn packed_rows_are_the_tables_own_results() {
    let mut rng = Rng::new(43);
    for (ty, n) in TYPES.iter().flat_map(|&ty| [(ty, 160), (ty, 32 * 520)]) {
        let rows = 5 * GROUP;
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
            );
        }
        for t in crate::Isa::ALL.iter().filter_map(|&isa| crate::table(isa)) {
            if !t.packs(ty) {
                eprintln!("packed: {} has no packed {ty} kernel", t.isa());
                continue;
            }
            let want = want(t, ty, (m.bytes(), n), 0..rows, act.bytes());
            let g = GROUP;
            let ranges = [
                0..rows,
                0..g,
                1..3,
                3..rows - 3,
                g + 1..rows,
                rows - 1..rows,
                g..g,
            ];
            for range in ranges {
                let mut got = vec![f32::NAN; range.len()];
                t.matvec_packed(ty, p.bytes(), range.clone(), n, act.bytes(), &mut got)
                    .unwrap();
                for (r, g) in range.clone().zip(&got) {
                    assert_eq!(
                        g.to_bits(),
                        want[r].to_bits(),
                        "{} {ty} n {n} row {r} of {range:?}: {g} vs {}",
                        t.isa(),
                        want[r]
                    );
                }
            }
            let mut short = vec![0f32; 3];
            assert!(t
                .matvec_packed(ty, p.bytes(), 0..4, n, act.bytes(), &mut short)
                .is_err());
            let past = rows - 2..rows + 1;
            assert!(t
                .matvec_packed(ty, p.bytes(), past, n, act.bytes(), &mut short)
                .is_err());
        }
    }
}

/// On x86-64, packed Q4_0 is llama.cpp's repacked order, which the unpacked tables reproduce
/// for matrices of a multiple of 8 rows: both give the same bits.
#[cfg(target_arch = "x86_64")]
#[test]
fn packed_q4_0_is_the_interleaved_order_on_x86() {
    let mut rng = Rng::new(53);
    let ty = GgmlType::Q4_0;
    let (rows, n) = (32, 256);
    let m = matrix(ty, rows, n, &mut rng);
    let mut p = Aligned::zeroed(m.bytes().len());
    pack(ty, m.bytes(), n, p.bytes_mut()).unwrap();
    let x: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    let act = activation(ty, &x);
    for table in crate::Isa::ALL.iter().filter_map(|&isa| crate::table(isa)) {
        if !table.packs(ty) {
            continue;
        }
        let exact = crate::table(table.isa().exact()).unwrap();
        let (mut got, mut want) = (vec![0f32; rows], vec![0f32; rows]);
        table
            .matvec_packed(ty, p.bytes(), 0..rows, n, act.bytes(), &mut got)
            .unwrap();
        exact
            .matvec(ty, m.bytes(), 0..rows, n, act.bytes(), &mut want)
            .unwrap();
        let same = got
            .iter()
            .zip(&want)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{}: {got:?} vs {want:?}", table.isa());
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
        let (rows, n) = (6 * GROUP, 96);
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
                .flat_map(|t| {
                    let g = GROUP;
                    [
                        (t, 0..rows),
                        (t, 2..rows - 1),
                        (t, g..2 * g),
                        (t, g + 1..g + 2),
                    ]
                })
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
