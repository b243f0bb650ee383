//! Dequantize every tensor of SmolLM2 and requantize it to Q8_0 with `formats`; the file we
//! write must load in llama.cpp and generate the same greedy text as the source model.

use formats::gguf::{GgufFile, GgufWriter, Value};
use formats::quant::{self, GgmlType};
use sintra_tests::llama;
use std::io::Write;

/// llama.cpp's `LLAMA_FTYPE_MOSTLY_Q8_0`.
const FTYPE_MOSTLY_Q8_0: u32 = 7;

#[test]
fn smollm2_requantized_to_q8_0_loads_and_generates_in_llama_cpp() {
    let src_path = sintra_tests::smollm2_q4_1();
    let src = GgufFile::open(&src_path).unwrap();
    let mut w = GgufWriter::from_header(&src.header);
    for t in &src.header.tensors {
        if t.dims.len() >= 2 {
            w.set_tensor_type(&t.name, GgmlType::Q8_0).unwrap();
        }
    }
    w.set("general.file_type", Value::U32(FTYPE_MOSTLY_Q8_0));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smollm2-q8_0.gguf");
    w.write_to_path(&out, |_, t, dst| {
        let view = src.tensor(&t.name).expect("tensor from the source");
        let values = quant::dequantize(view.info.ty, view.data).expect("dequantize");
        let bytes = quant::quantize(t.ty, &values, t.row_len() as usize, None).expect("quantize");
        dst.write_all(&bytes)
    })
    .unwrap();

    let q8 = GgufFile::open(&out).unwrap();
    assert!(q8.header.tensors.iter().filter(|t| t.dims.len() >= 2).all(|t| t.ty == GgmlType::Q8_0));

    let prompt = "The capital of France is";
    let (want, want_text) = llama::generate_greedy(&src_path, prompt, 16, 2).unwrap();
    let (got, got_text) = llama::generate_greedy(&out, prompt, 16, 2).unwrap();
    eprintln!("Q4_1: {want_text:?}\nQ8_0: {got_text:?}");
    assert!(got.len() >= 8 && got_text.chars().any(char::is_alphabetic), "generated {got_text:?}");
    // Q8_0 of Q4_1 weights is within rounding of the source: the first tokens agree.
    assert_eq!(&got[..8], &want[..8], "Q8_0 copy diverges early: {got_text:?} vs {want_text:?}");
}
