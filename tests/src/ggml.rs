//! The oracle: ggml's own quantizers and dequantizers, called through llama-cpp-sys-2 (which
//! builds the vendored llama.cpp from source). The FFI is confined to this module.

use formats::quant::GgmlType;
use llama_cpp_sys_2 as sys;
use std::ffi::c_void;

extern "C" {
    // Q8_K and Q8_1 are activation formats: ggml_quantize_chunk does not take them, but
    // ggml-base exports their reference quantizers (ggml-quants.h).
    fn quantize_row_q8_K_ref(x: *const f32, y: *mut c_void, k: i64);
    fn dequantize_row_q8_K(x: *const c_void, y: *mut f32, k: i64);
    fn quantize_row_q8_1_ref(x: *const f32, y: *mut c_void, k: i64);
}

/// Quantize `src` (rows of `n_per_row`) with ggml, as `llama-quantize` does
/// (`ggml_quantize_chunk`), optionally with importance weights.
pub fn quantize(ty: GgmlType, src: &[f32], n_per_row: usize, imatrix: Option<&[f32]>) -> Vec<u8> {
    assert!(n_per_row > 0 && src.len() % n_per_row == 0 && n_per_row % ty.block_size() == 0);
    if let Some(w) = imatrix {
        assert_eq!(w.len(), n_per_row);
    }
    let nrows = src.len() / n_per_row;
    let size = src.len() / ty.block_size() * ty.type_size();
    let mut dst = vec![0u8; size];
    if ty == GgmlType::Q8_K {
        // SAFETY: src holds src.len() floats, a whole number of 256-value blocks (checked
        // above), and dst has room for exactly that many 292-byte blocks.
        unsafe { quantize_row_q8_K_ref(src.as_ptr(), dst.as_mut_ptr().cast(), src.len() as i64) };
        return dst;
    }
    if ty == GgmlType::Q8_1 {
        // SAFETY: as for Q8_K: whole 32-value blocks in, room for as many 36-byte blocks out.
        unsafe { quantize_row_q8_1_ref(src.as_ptr(), dst.as_mut_ptr().cast(), src.len() as i64) };
        return dst;
    }
    let w = imatrix.map_or(std::ptr::null(), |w| w.as_ptr());
    // SAFETY: src is nrows * n_per_row floats; dst holds nrows rows of ggml_row_size bytes;
    // imatrix is null or n_per_row floats, as ggml_quantize_chunk requires.
    let written = unsafe {
        sys::ggml_quantize_chunk(
            ty as sys::ggml_type,
            src.as_ptr(),
            dst.as_mut_ptr().cast(),
            0,
            nrows as i64,
            n_per_row as i64,
            w,
        )
    };
    assert_eq!(
        written, size,
        "ggml wrote {written} bytes for {ty}, expected {size}"
    );
    dst
}

/// Dequantize whole blocks of `ty` with ggml's `to_float`.
pub fn dequantize(ty: GgmlType, src: &[u8]) -> Vec<f32> {
    assert_eq!(src.len() % ty.type_size(), 0);
    let n = src.len() / ty.type_size() * ty.block_size();
    let mut out = vec![0f32; n];
    if ty == GgmlType::F32 {
        // ggml has no to_float for F32: its values are the bytes.
        for (o, b) in out.iter_mut().zip(src.chunks_exact(4)) {
            *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        return out;
    }
    if ty == GgmlType::Q8_K {
        // SAFETY: src is n/256 whole blocks, out holds n floats.
        unsafe { dequantize_row_q8_K(src.as_ptr().cast(), out.as_mut_ptr(), n as i64) };
        return out;
    }
    if ty == GgmlType::Q8_1 {
        // ggml declares no to_float for Q8_1 (its dequantize_row_q8_1 is commented out); use
        // dequantize_row_q8_0's formula, q * d, with ggml's f16 conversion. The s field is
        // checked by the byte comparison of the quantizer.
        for (b, o) in src.chunks_exact(36).zip(out.chunks_exact_mut(32)) {
            // SAFETY: ggml_fp16_to_fp32 is a pure conversion of a 16-bit value.
            let d = unsafe { sys::ggml_fp16_to_fp32(u16::from_le_bytes([b[0], b[1]])) };
            for (o, &q) in o.iter_mut().zip(&b[4..]) {
                *o = f32::from(q as i8) * d;
            }
        }
        return out;
    }
    // SAFETY: ggml_get_type_traits returns a pointer into ggml's static table for any valid
    // type id; ty comes from GgmlType, whose ids are ggml's.
    let traits = unsafe { &*sys::ggml_get_type_traits(ty as sys::ggml_type) };
    let to_float = traits
        .to_float
        .unwrap_or_else(|| panic!("ggml has no to_float for {ty}"));
    // SAFETY: src holds n/block_size whole blocks and out n floats.
    unsafe { to_float(src.as_ptr().cast(), out.as_mut_ptr(), n as i64) };
    out
}
