//! Unit tests: every value type round-trips, hostile headers are refused with errors that name
//! the field and offset.

use super::*;
use crate::quant::GgmlType;
use alloc::vec;

fn sample() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String("llama".into()))
        .set("u8", Value::U8(7))
        .set("i8", Value::I8(-7))
        .set("u16", Value::U16(65535))
        .set("i16", Value::I16(-32768))
        .set("u32", Value::U32(1 << 31))
        .set("i32", Value::I32(-5))
        .set("f32", Value::F32(f32::from_bits(0x7fc0_1234))) // NaN payload must survive
        .set("bool", Value::Bool(true))
        .set("u64", Value::U64(u64::MAX))
        .set("i64", Value::I64(i64::MIN))
        .set("f64", Value::F64(-0.0))
        .set("str", Value::String("héllo ▁ 🦀".into()))
        .set("arr.f32", Value::Array(Array::F32(vec![1.0, -2.5])))
        .set(
            "arr.str",
            Value::Array(Array::String(vec!["a".into(), String::new()])),
        )
        .set("arr.bool", Value::Array(Array::Bool(vec![true, false])))
        .set("arr.empty", Value::Array(Array::I64(vec![])))
        .set(
            "arr.nested",
            Value::Array(Array::Array(vec![
                Array::U8(vec![1, 2, 3]),
                Array::String(vec!["x".into()]),
                Array::Array(vec![]),
            ])),
        );
    w.add_tensor("a", &[32, 3], GgmlType::F32).unwrap();
    w.add_tensor("b", &[64], GgmlType::Q8_0).unwrap();
    w
}

fn write_sample(w: &GgufWriter) -> Vec<u8> {
    let mut out = Vec::new();
    w.write_to(&mut out, |i, t, dst| {
        dst.write_all(&vec![i as u8 + 1; t.n_bytes as usize])
    })
    .unwrap();
    out
}

#[test]
fn every_value_type_round_trips_byte_for_byte() {
    let bytes = write_sample(&sample());
    let g = parse(&bytes).unwrap();
    assert_eq!(g.version, 3);
    // Value's PartialEq treats NaN as unequal, so the NaN entry is compared by bits below.
    let expect = sample();
    assert_eq!(g.metadata.len(), expect.metadata().len());
    for ((k, v), (ek, ev)) in g.metadata.iter().zip(expect.metadata()) {
        assert_eq!(k, ek);
        if k != "f32" {
            assert_eq!(v, ev, "{k}");
        }
    }
    let Some(Value::F32(f)) = g.get("f32") else {
        panic!()
    };
    assert_eq!(f.to_bits(), 0x7fc0_1234);
    assert_eq!(g.tensors.len(), 2);
    assert_eq!(g.tensors[1].offset, 384); // 32*3*4 = 384, already aligned
    assert_eq!(g.data_offset % 32, 0);
    let again = write_sample(&GgufWriter::from_header(&g));
    assert_eq!(bytes, again);
}

#[test]
fn hostile_headers_are_refused_with_field_and_offset() {
    let good = write_sample(&sample());
    // Every truncation of the header is an error, never a panic.
    let g = parse(&good).unwrap();
    for n in 0..g.header_len as usize {
        assert!(parse(&good[..n]).is_err(), "truncation at {n} parsed");
    }
    // Flipping any header byte either still parses or gives an error; it never panics.
    for i in 0..g.header_len as usize {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut b = good.clone();
            b[i] ^= mask;
            let _ = parse(&b);
        }
    }
    // A tiny file claiming a huge tensor count is refused before allocating.
    let mut b = good[..24].to_vec();
    b[8..16].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    let e = parse(&b).unwrap_err().to_string();
    assert!(e.contains("tensor count") || e.contains("metadata"), "{e}");
    let mut b = good.clone();
    b[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let e = parse(&b).unwrap_err().to_string();
    assert!(
        e.contains("metadata entry count") && e.contains("byte offset 16"),
        "{e}"
    );
    assert!(matches!(
        parse(b"GGML\x03\0\0\0"),
        Err(GgufError::BadMagic { .. })
    ));
    let e = parse(b"GGUF\0\0\0\x03").unwrap_err().to_string();
    assert!(e.contains("big-endian"), "{e}");
}

#[test]
fn bad_alignment_and_tensor_bounds_are_errors() {
    let mut w = sample();
    w.set(KEY_ALIGNMENT, Value::U32(24));
    assert!(matches!(w.layout(), Err(WriteError::BadMetadata { .. })));
    let mut w = sample();
    w.set(KEY_ALIGNMENT, Value::U32(64));
    let bytes = write_sample(&w);
    let g = parse(&bytes).unwrap();
    assert_eq!(g.alignment, 64);
    assert_eq!(g.data_offset % 64, 0);
    // Cut the data section: the last tensor now runs past the end.
    let e = parse(&bytes[..bytes.len() - 64]).unwrap_err().to_string();
    assert!(
        e.contains("tensor 'b' data") && e.contains("past the end"),
        "{e}"
    );
}

#[test]
fn writer_checks_tensor_shapes_and_data_sizes() {
    let mut w = GgufWriter::new();
    assert!(w.add_tensor("x", &[33], GgmlType::Q4_0).is_err());
    assert!(w.add_tensor("x", &[], GgmlType::F32).is_err());
    assert!(w.add_tensor("x", &[1, 1, 1, 1, 1], GgmlType::F32).is_err());
    w.add_tensor("x", &[4], GgmlType::F32).unwrap();
    assert!(w.add_tensor("x", &[4], GgmlType::F32).is_err());
    let e = w
        .write_to(&mut Vec::new(), |_, _, dst| dst.write_all(&[0; 15]))
        .unwrap_err();
    assert!(
        matches!(
            e,
            WriteError::WrongDataSize {
                wrote: 15,
                expected: 16,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn deep_nesting_is_refused() {
    let mut a = Array::U8(vec![]);
    for _ in 0..MAX_ARRAY_DEPTH + 1 {
        a = Array::Array(vec![a]);
    }
    let mut w = GgufWriter::new();
    w.set("deep", Value::Array(a));
    let mut bytes = Vec::new();
    w.write_to(&mut bytes, |_, _, _| Ok(())).unwrap();
    let e = parse(&bytes).unwrap_err().to_string();
    assert!(e.contains("nested deeper"), "{e}");
}

#[test]
fn version_2_files_parse_and_round_trip() {
    let mut bytes = write_sample(&sample());
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let g = parse(&bytes).unwrap();
    assert_eq!(g.version, 2);
    assert_eq!(write_sample(&GgufWriter::from_header(&g)), bytes);
    bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
    let e = parse(&bytes).unwrap_err().to_string();
    assert!(e.contains("v1") && e.contains("byte offset 4"), "{e}");
}
