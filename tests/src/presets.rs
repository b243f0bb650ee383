//! llama.cpp's own quantization presets (`llama-quantize … Q4_K_M`), made by llama.cpp itself
//! through `llama_model_quantize`, from an F32 copy of the test model. These are the files our
//! runtime is benchmarked on and the presets our recipes must beat: made by the reference, so
//! its mixing rules (which tensors get Q6_K in Q4_K_M, the fallbacks for SmolLM2's 576-wide
//! rows) are its own, not our reproduction of them.

use crate::requant;
use formats::quant::GgmlType;
use std::ffi::CString;
use std::path::{Path, PathBuf};

/// A `llama-quantize` preset (`enum llama_ftype`), spelled as llama-quantize spells it.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Q8_0,
    Q6_K,
    Q5_K_M,
    Q4_K_M,
    Q4_1,
    Q4_0,
    Q3_K_M,
    Q2_K,
}

impl Preset {
    pub const ALL: [Preset; 8] = [
        Preset::Q8_0,
        Preset::Q6_K,
        Preset::Q5_K_M,
        Preset::Q4_K_M,
        Preset::Q4_1,
        Preset::Q4_0,
        Preset::Q3_K_M,
        Preset::Q2_K,
    ];

    /// The name `llama-quantize` takes.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Q8_0 => "Q8_0",
            Preset::Q6_K => "Q6_K",
            Preset::Q5_K_M => "Q5_K_M",
            Preset::Q4_K_M => "Q4_K_M",
            Preset::Q4_1 => "Q4_1",
            Preset::Q4_0 => "Q4_0",
            Preset::Q3_K_M => "Q3_K_M",
            Preset::Q2_K => "Q2_K",
        }
    }

    pub fn parse(s: &str) -> Option<Preset> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
    }

    /// `LLAMA_FTYPE_MOSTLY_*` (llama.h).
    fn ftype(self) -> u32 {
        match self {
            Preset::Q4_0 => 2,
            Preset::Q4_1 => 3,
            Preset::Q8_0 => 7,
            Preset::Q2_K => 10,
            Preset::Q3_K_M => 12,
            Preset::Q4_K_M => 15,
            Preset::Q5_K_M => 17,
            Preset::Q6_K => 18,
        }
    }
}

/// Quantize `src` (F32/F16 tensors) to `dst` with llama.cpp's `llama_model_quantize`.
pub fn llama_quantize(src: &Path, dst: &Path, preset: Preset, threads: i32) -> Result<(), String> {
    llama_quantize_imatrix(src, dst, preset, threads, None)
}

/// [`llama_quantize`] with an importance matrix (tensor name -> one weight per column, as
/// llama-quantize's `--imatrix` hands it to the library).
pub fn llama_quantize_imatrix(
    src: &Path,
    dst: &Path,
    preset: Preset,
    threads: i32,
    imatrix: Option<&std::collections::HashMap<String, Vec<f32>>>,
) -> Result<(), String> {
    crate::llama::backend();
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_encoded_bytes())
            .map_err(|_| format!("path {} contains a NUL byte", p.display()))
    };
    let (src_c, dst_c) = (c(src)?, c(dst)?);
    // The entries llama.cpp reads: names kept alive in `names`, data borrowed from `imatrix`,
    // terminated by an entry with a null name.
    let mut names: Vec<CString> = Vec::new();
    let mut entries: Vec<llama_cpp_sys_2::llama_model_imatrix_data> = Vec::new();
    if let Some(m) = imatrix {
        let mut keys: Vec<&String> = m.keys().collect();
        keys.sort();
        for k in &keys {
            names.push(CString::new(k.as_str()).map_err(|_| format!("tensor name {k} has a NUL"))?);
        }
        for (name, k) in names.iter().zip(&keys) {
            let v = &m[*k];
            entries.push(llama_cpp_sys_2::llama_model_imatrix_data {
                name: name.as_ptr(),
                data: v.as_ptr(),
                size: v.len(),
            });
        }
        entries.push(llama_cpp_sys_2::llama_model_imatrix_data {
            name: std::ptr::null(),
            data: std::ptr::null(),
            size: 0,
        });
    }
    // SAFETY: returns a plain struct by value; no preconditions.
    let mut params = unsafe { llama_cpp_sys_2::llama_model_quantize_default_params() };
    params.nthread = threads;
    params.ftype = preset.ftype() as _;
    if !entries.is_empty() {
        params.imatrix = entries.as_ptr();
    }
    // SAFETY: both paths are NUL-terminated strings that outlive the call; `params` comes from
    // llama_model_quantize_default_params, its imatrix pointer (when set) points at a
    // null-name-terminated array whose names and data outlive the call; the other pointers
    // are null.
    let rc =
        unsafe { llama_cpp_sys_2::llama_model_quantize(src_c.as_ptr(), dst_c.as_ptr(), &params) };
    if rc != 0 {
        return Err(format!(
            "llama_model_quantize({} -> {}, {}) failed with {rc}",
            src.display(),
            dst.display(),
            preset.name()
        ));
    }
    Ok(())
}

/// SmolLM2 with every tensor dequantized to F32: the source llama.cpp's presets start from
/// (the published file is Q4_1, so every preset inherits its rounding; ours do too).
pub fn smollm2_f32() -> PathBuf {
    let path = cache_dir().join("SmolLM2-135M-Instruct.F32.from-Q4_1.gguf");
    if !path.is_file() {
        requant::requantize(&crate::smollm2_q4_1(), &path, GgmlType::F32);
    }
    path
}

/// SmolLM2 in one of llama.cpp's presets, made by llama.cpp from [`smollm2_f32`]; cached.
pub fn smollm2_preset(preset: Preset) -> PathBuf {
    let path = cache_dir().join(format!(
        "SmolLM2-135M-Instruct.{}.llama-quantize.gguf",
        preset.name()
    ));
    if !path.is_file() {
        let tmp = path.with_extension("gguf.tmp");
        llama_quantize(&smollm2_f32(), &tmp, preset, 2).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }
    path
}

fn cache_dir() -> PathBuf {
    let dir = crate::repo_root().join("target/test-models");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
