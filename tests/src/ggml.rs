//! The oracle: ggml's own quantizers and dequantizers, called through llama-cpp-sys-2 (which
//! builds the vendored llama.cpp from source). The FFI is confined to this module.

use formats::quant::GgmlType;
use llama_cpp_sys_2 as sys;
use std::ffi::{c_int, c_void};

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

// ---------------------------------------------------------------------------------------------
// Dot products: ggml's CPU backend, for the kernel differential test and benchmarks.

/// ggml's dot-product signature (`ggml_vec_dot_t`): `*s = dot(x, y)` over `n` values, one row
/// (`nrc == 1`, the strides unused).
type VecDotFn = unsafe extern "C" fn(
    n: c_int,
    s: *mut f32,
    bs: usize,
    x: *const c_void,
    bx: usize,
    y: *const c_void,
    by: usize,
    nrc: c_int,
);

extern "C" {
    // ggml-cpu's plain-C kernels (`ggml-cpu/quants.c`), compiled whatever the SIMD level.
    fn ggml_vec_dot_q4_0_q8_0_generic(
        n: c_int,
        s: *mut f32,
        bs: usize,
        x: *const c_void,
        bx: usize,
        y: *const c_void,
        by: usize,
        nrc: c_int,
    );
    fn ggml_vec_dot_q4_1_q8_1_generic(
        n: c_int,
        s: *mut f32,
        bs: usize,
        x: *const c_void,
        bx: usize,
        y: *const c_void,
        by: usize,
        nrc: c_int,
    );
    fn ggml_vec_dot_q5_0_q8_0_generic(
        n: c_int,
        s: *mut f32,
        bs: usize,
        x: *const c_void,
        bx: usize,
        y: *const c_void,
        by: usize,
        nrc: c_int,
    );
    fn ggml_vec_dot_q5_1_q8_1_generic(
        n: c_int,
        s: *mut f32,
        bs: usize,
        x: *const c_void,
        bx: usize,
        y: *const c_void,
        by: usize,
        nrc: c_int,
    );
    fn ggml_vec_dot_q8_0_q8_0_generic(
        n: c_int,
        s: *mut f32,
        bs: usize,
        x: *const c_void,
        bx: usize,
        y: *const c_void,
        by: usize,
        nrc: c_int,
    );
    fn ggml_vec_dot_iq4_nl_q8_0_generic(
        n: c_int,
        s: *mut f32,
        bs: usize,
        x: *const c_void,
        bx: usize,
        y: *const c_void,
        by: usize,
        nrc: c_int,
    );
    fn ggml_vec_dot_q2_K_q8_K_generic(
        n: c_int,
        s: *mut f32,
        bs: usize,
        x: *const c_void,
        bx: usize,
        y: *const c_void,
        by: usize,
        nrc: c_int,
    );
    fn ggml_vec_dot_q3_K_q8_K_generic(
        n: c_int,
        s: *mut f32,
        bs: usize,
        x: *const c_void,
        bx: usize,
        y: *const c_void,
        by: usize,
        nrc: c_int,
    );
    fn ggml_vec_dot_q4_K_q8_K_generic(
        n: c_int,
        s: *mut f32,
        bs: usize,
        x: *const c_void,
        bx: usize,
        y: *const c_void,
        by: usize,
        nrc: c_int,
    );
    fn ggml_vec_dot_q5_K_q8_K_generic(
        n: c_int,
        s: *mut f32,
        bs: usize,
        x: *const c_void,
        bx: usize,
        y: *const c_void,
        by: usize,
        nrc: c_int,
    );
    fn ggml_vec_dot_q6_K_q8_K_generic(
        n: c_int,
        s: *mut f32,
        bs: usize,
        x: *const c_void,
        bx: usize,
        y: *const c_void,
        by: usize,
        nrc: c_int,
    );
}

/// ggml's plain-C kernel for weights of type `ty` (`ggml_vec_dot_*_generic`), if it has a
/// separate one (the float types do not).
fn generic_kernel(ty: GgmlType) -> Option<VecDotFn> {
    Some(match ty {
        GgmlType::Q4_0 => ggml_vec_dot_q4_0_q8_0_generic,
        GgmlType::Q4_1 => ggml_vec_dot_q4_1_q8_1_generic,
        GgmlType::Q5_0 => ggml_vec_dot_q5_0_q8_0_generic,
        GgmlType::Q5_1 => ggml_vec_dot_q5_1_q8_1_generic,
        GgmlType::Q8_0 => ggml_vec_dot_q8_0_q8_0_generic,
        GgmlType::IQ4_NL => ggml_vec_dot_iq4_nl_q8_0_generic,
        GgmlType::Q2_K => ggml_vec_dot_q2_K_q8_K_generic,
        GgmlType::Q3_K => ggml_vec_dot_q3_K_q8_K_generic,
        GgmlType::Q4_K => ggml_vec_dot_q4_K_q8_K_generic,
        GgmlType::Q5_K => ggml_vec_dot_q5_K_q8_K_generic,
        GgmlType::Q6_K => ggml_vec_dot_q6_K_q8_K_generic,
        _ => return None,
    })
}

/// The CPU backend's traits for `ty`, after `ggml_cpu_init` (once per process).
fn cpu_traits(ty: GgmlType) -> sys::ggml_type_traits_cpu {
    static INIT: std::sync::Once = std::sync::Once::new();
    // SAFETY: ggml_cpu_init only fills ggml's static tables; Once runs it a single time.
    INIT.call_once(|| unsafe { sys::ggml_cpu_init() });
    // SAFETY: ggml_get_type_traits_cpu returns a pointer into a static table for any valid id.
    unsafe { *sys::ggml_get_type_traits_cpu(ty as sys::ggml_type) }
}

/// A dot-product kernel of ggml's, checked and called on one row.
#[derive(Debug, Clone, Copy)]
pub struct VecDot {
    ty: GgmlType,
    kernel: VecDotFn,
}

impl VecDot {
    /// ggml's plain-C kernel for weights of type `ty`, if it has one apart from the SIMD one.
    pub fn generic(ty: GgmlType) -> Option<Self> {
        generic_kernel(ty).map(|kernel| VecDot { ty, kernel })
    }

    /// The kernel llama.cpp's CPU backend runs for weights of type `ty` on this machine
    /// (`type_traits_cpu[ty].vec_dot`: AVX2 and friends where built with them).
    pub fn cpu(ty: GgmlType) -> Self {
        let kernel = cpu_traits(ty)
            .vec_dot
            .unwrap_or_else(|| panic!("ggml has no CPU vec_dot for {ty}"));
        VecDot { ty, kernel }
    }

    /// `dot(w_row, act)`: one row of `n` weights of the kernel's type and an activation
    /// quantized to its vec_dot type, both exactly one row long.
    pub fn dot(&self, n: usize, w_row: &[u8], act: &[u8]) -> f32 {
        let mut s = [0f32];
        self.matvec(n, w_row, act, &mut s);
        s[0]
    }

    /// `out[i] = dot(row i of w_bytes, act)`, as [`VecDot::dot`] for every row of a matrix
    /// with one row per output.
    pub fn matvec(&self, n: usize, w_bytes: &[u8], act: &[u8], out: &mut [f32]) {
        let ty = self.ty;
        let act_ty = GgmlType::from_id(cpu_traits(ty).vec_dot_type).unwrap();
        let row = ty.row_size(n).expect("whole blocks");
        assert_eq!(w_bytes.len(), row * out.len(), "{ty} weights");
        assert_eq!(Some(act.len()), act_ty.row_size(n), "{act_ty} activation");
        let n = c_int::try_from(n).expect("row length fits a C int");
        for (s, w_row) in out.iter_mut().zip(w_bytes.chunks_exact(row)) {
            // SAFETY: w_row and act each hold exactly one row of n values of their types
            // (checked above), and nrc == 1 reads one row of each.
            unsafe { (self.kernel)(n, s, 0, w_row.as_ptr().cast(), 0, act.as_ptr().cast(), 0, 1) };
        }
    }
}

/// `x` quantized by the CPU backend for weights of type `ty` (`from_float` of the vec_dot
/// type, the SIMD quantizer llama.cpp uses for activations), in 8-byte aligned storage.
pub fn quantize_activation_cpu(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let act_ty = GgmlType::from_id(cpu_traits(ty).vec_dot_type).unwrap();
    let size = act_ty.row_size(x.len()).expect("whole blocks");
    let from_float = cpu_traits(act_ty)
        .from_float
        .unwrap_or_else(|| panic!("ggml has no CPU from_float for {act_ty}"));
    let mut out = vec![0u8; size];
    // SAFETY: x is whole blocks of act_ty (checked) and out holds exactly their bytes.
    unsafe { from_float(x.as_ptr(), out.as_mut_ptr().cast(), x.len() as i64) };
    out
}

// ---------------------------------------------------------------------------------------------
// Repacked GEMV: how llama.cpp multiplies Q4_0, Q4_K and IQ4_NL matrices on AVX2.

/// ggml's GEMV signature for repacked weights (`ggml_gemv_*` in `ggml-cpu/repack.h`): `s[c]`
/// for the `nc` rows (`nc` a multiple of 8) of the interleaved `vx` against `nr` activation
/// rows `vy` of `n` values.
type GemvFn = unsafe extern "C" fn(
    n: c_int,
    s: *mut f32,
    bs: usize,
    vx: *const c_void,
    vy: *const c_void,
    nr: c_int,
    nc: c_int,
);

extern "C" {
    // ggml-cpu's kernels for its 8-row interleaved blocks (`arch/x86/repack.cpp` on AVX2).
    fn ggml_gemv_q4_0_8x8_q8_0(
        n: c_int,
        s: *mut f32,
        bs: usize,
        vx: *const c_void,
        vy: *const c_void,
        nr: c_int,
        nc: c_int,
    );
    fn ggml_gemv_q4_K_8x8_q8_K(
        n: c_int,
        s: *mut f32,
        bs: usize,
        vx: *const c_void,
        vy: *const c_void,
        nr: c_int,
        nc: c_int,
    );
    fn ggml_gemv_iq4_nl_8x8_q8_0(
        n: c_int,
        s: *mut f32,
        bs: usize,
        vx: *const c_void,
        vy: *const c_void,
        nr: c_int,
        nc: c_int,
    );
}

/// Eight blocks of Q4_0 / IQ4_NL (`[d: f16][qs: 16]`) interleaved as `make_block_q4_0x8` and
/// `make_block_iq4_nlx8` do: the eight scales, then the quant bytes eight at a time from each
/// block in turn, Q4_0's XORed with 0x88 (its nibbles become signed, `q - 8`).
fn interleave_b32(blocks: [&[u8]; 8], xor: u8, out: &mut Vec<u8>) {
    for b in blocks {
        out.extend_from_slice(&b[..2]);
    }
    for i in 0..16 {
        let (src, offset) = (i % 8, 2 + (i / 8) * 8);
        out.extend(blocks[src][offset..offset + 8].iter().map(|&q| q ^ xor));
    }
}

/// Eight blocks of Q4_K (`[d][dmin][scales: 12][qs: 128]`) interleaved as
/// `make_block_q4_Kx8` does: the eight `d`, the eight `dmin`, the sub-blocks' 6-bit scales and
/// minimums regrouped by sub-block (12 bytes for eight blocks' sub-block `i`), and the quant
/// bytes eight at a time from each block in turn.
fn interleave_q4_k(blocks: [&[u8]; 8], out: &mut Vec<u8>) {
    for b in blocks {
        out.extend_from_slice(&b[..2]);
    }
    for b in blocks {
        out.extend_from_slice(&b[2..4]);
    }
    let sc = |j: usize, k: usize| blocks[j][4 + k];
    let mut scales = [0u8; 96];
    for i in 0..8 {
        // The 6-bit scale and minimum of sub-block i of block j (ggml's get_scale_min_k4).
        let s: [u8; 8] = std::array::from_fn(|j| {
            if i < 4 {
                sc(j, i) & 63
            } else {
                ((sc(j, i - 4) & 192) >> 2) | (sc(j, i + 4) & 15)
            }
        });
        let m: [u8; 8] = std::array::from_fn(|j| {
            if i < 4 {
                sc(j, i + 4) & 63
            } else {
                ((sc(j, i) & 192) >> 2) | ((sc(j, i + 4) & 240) >> 4)
            }
        });
        let o = &mut scales[12 * (i % 4) + 48 * (i / 4)..][..12];
        for k in 0..4 {
            o[k] = (s[k] & 63) + ((s[k + 4] & 48) << 2);
            o[k + 4] = (m[k] & 63) + ((m[k + 4] & 48) << 2);
            o[k + 8] = (s[k + 4] & 15) + ((m[k + 4] & 15) << 4);
        }
    }
    out.extend_from_slice(&scales);
    for i in 0..128 {
        let (src, offset) = (i % 8, 16 + (i / 8) * 8);
        out.extend_from_slice(&blocks[src][offset..offset + 8]);
    }
}

/// `w_bytes` (rows of `n` values of `ty`, a multiple of 8 of them) times the activation row
/// `act` (quantized for `ty`) as llama.cpp computes it on this machine after repacking the
/// matrix into 8-row interleaved blocks: the matrix is repacked here as `ggml-cpu/repack.cpp`
/// does and handed to ggml's `ggml_gemv_*_8x8_*`. `None` for the types it does not repack.
pub fn gemv_repacked(ty: GgmlType, n: usize, w_bytes: &[u8], act: &[u8]) -> Option<Vec<f32>> {
    let (kernel, block): (GemvFn, usize) = match ty {
        GgmlType::Q4_0 => (ggml_gemv_q4_0_8x8_q8_0, 18),
        GgmlType::Q4_K => (ggml_gemv_q4_K_8x8_q8_K, 144),
        GgmlType::IQ4_NL => (ggml_gemv_iq4_nl_8x8_q8_0, 18),
        _ => return None,
    };
    assert_eq!(block, ty.type_size());
    let row = ty.row_size(n).expect("whole blocks");
    let rows = w_bytes.len() / row;
    assert!(
        rows * row == w_bytes.len() && rows % 8 == 0,
        "{ty}: {rows} rows"
    );
    let act_ty = GgmlType::from_id(cpu_traits(ty).vec_dot_type).unwrap();
    assert_eq!(Some(act.len()), act_ty.row_size(n), "{act_ty} activation");
    let nblocks = n / ty.block_size();
    let mut packed = Vec::with_capacity(w_bytes.len());
    for group in w_bytes.chunks_exact(8 * row) {
        for x in 0..nblocks {
            let blocks: [&[u8]; 8] =
                std::array::from_fn(|i| &group[i * row + x * block..][..block]);
            match ty {
                GgmlType::Q4_0 => interleave_b32(blocks, 0x88, &mut packed),
                GgmlType::IQ4_NL => interleave_b32(blocks, 0, &mut packed),
                _ => interleave_q4_k(blocks, &mut packed),
            }
        }
    }
    assert_eq!(packed.len(), w_bytes.len());
    // ggml reads the interleaved blocks and the activation through typed pointers: give both
    // 8-byte aligned storage.
    let words = |b: &[u8]| {
        let mut w = vec![0u64; b.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut w)[..b.len()].copy_from_slice(b);
        w
    };
    let (packed, act) = (words(&packed), words(act));
    let mut out = vec![0f32; rows];
    let (n, nc) = (
        c_int::try_from(n).expect("row length fits a C int"),
        c_int::try_from(rows).expect("row count fits a C int"),
    );
    // SAFETY: `packed` holds rows / 8 groups of nblocks interleaved blocks (the bytes of
    // `rows` rows, checked above), `act` one activation row of n values of the vec_dot type,
    // and `out` one float per row: what ggml_gemv_* reads and writes for nr = 1 and nc = rows.
    unsafe {
        kernel(
            n,
            out.as_mut_ptr(),
            0,
            packed.as_ptr().cast(),
            act.as_ptr().cast(),
            1,
            nc,
        )
    };
    Some(out)
}
