//! With the `cuda` feature: the GPU kernels (`src/cuda/*.cu`) compiled to PTX with NVRTC, one
//! text per architecture in `ARCHS`, written to `OUT_DIR` and embedded by `src/cuda/ptx.rs`
//! (issue #21). Without the feature this does nothing.
//!
//! NVRTC is loaded at build time from NVIDIA's `nvidia-cuda-nvrtc-cu12==12.6.85` wheel, which
//! `scripts/setup.sh` unpacks into `.cache/cuda` (`SINTRA_CUDA`; or wherever `SINTRA_NVRTC` points
//! to a `libnvrtc.so.12`): no CUDA installation and no GPU are needed. 12.6 is chosen on purpose: its
//! PTX (ISA 8.5) loads on drivers of CUDA 12.5 and later, JetPack 6.1+ on the Jetson Orin
//! included; a CUDA 13 compiler's PTX would need a CUDA 13 driver (docs/issue21/toolchain.md).

fn main() {
    for f in ["src/cuda/dequant.cuh", "src/cuda/kernels.cu", "build.rs"] {
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rerun-if-env-changed=SINTRA_NVRTC");
    println!("cargo:rerun-if-env-changed=SINTRA_CUDA");
    #[cfg(feature = "cuda")]
    cuda::build();
    #[cfg(feature = "cuda-emulator")]
    {
        println!("cargo:rerun-if-changed=src/cuda/emulator.cpp");
        cc::Build::new()
            .cpp(true)
            .std("c++17")
            .file("src/cuda/emulator.cpp")
            .flag_if_supported("-Wno-unknown-pragmas")
            .compile("sintra_cuda_emulator");
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::ffi::{c_char, c_int, CStr, CString};
    use std::path::{Path, PathBuf};

    /// The virtual architectures the PTX is made for. The runtime loads the highest one not above
    /// the GPU's compute capability, and the driver compiles it for the GPU: compute_61 runs on
    /// every GPU from Pascal on, compute_80 on Ampere and Ada desktops, compute_87 is the Jetson
    /// Orin, compute_90 Hopper.
    const ARCHS: [&str; 4] = ["compute_61", "compute_80", "compute_87", "compute_90"];

    /// Sources in order: the device definitions dequant.cuh needs, then dequant.cuh, the kernels.
    const PRELUDE: &str = r#"
#define SINTRA_DEVICE static __device__ __forceinline__
static __device__ __forceinline__ float sintra_f16(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
"#;

    pub fn build() {
        let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .unwrap_or_else(|e| fail(&format!("reading {f}: {e}")))
        };
        let source = format!(
            "{PRELUDE}\n{}\n{}",
            read("src/cuda/dequant.cuh"),
            read("src/cuda/kernels.cu")
        );
        let lib = nvrtc_path(&dir);
        println!("cargo:rerun-if-changed={}", lib.display());
        let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
        for arch in ARCHS {
            let ptx = compile(&lib, &source, arch).unwrap_or_else(|e| fail(&e));
            let file = out.join(format!("sintra_{arch}.ptx"));
            std::fs::write(&file, ptx)
                .unwrap_or_else(|e| fail(&format!("{}: {e}", file.display())));
        }
    }

    fn fail(why: &str) -> ! {
        eprintln!("error: the `cuda` feature's kernels: {why}");
        std::process::exit(1)
    }

    /// `SINTRA_NVRTC`, or the wheel's library in the setup cache (`SINTRA_CUDA`, default the
    /// workspace's `.cache/cuda`).
    fn nvrtc_path(manifest_dir: &Path) -> PathBuf {
        if let Some(p) = std::env::var_os("SINTRA_NVRTC") {
            return PathBuf::from(p);
        }
        let cache = std::env::var_os("SINTRA_CUDA")
            .map(PathBuf::from)
            .unwrap_or_else(|| manifest_dir.join("../.cache/cuda"));
        let cached = cache.join("nvidia/cuda_nvrtc/lib/libnvrtc.so.12");
        if cached.exists() {
            return cached;
        }
        fail(&format!(
            "NVRTC 12.6 compiles them to PTX at build time and was not found at {}: run \
             `bash scripts/setup.sh` (it fetches NVIDIA's nvidia-cuda-nvrtc-cu12 wheel into \
             .cache/cuda) or set SINTRA_NVRTC to a libnvrtc.so.12",
            cached.display()
        ))
    }

    type Program = *mut std::ffi::c_void;
    type CreateProgram = unsafe extern "C" fn(
        *mut Program,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> c_int;
    type CompileProgram = unsafe extern "C" fn(Program, c_int, *const *const c_char) -> c_int;
    type GetSize = unsafe extern "C" fn(Program, *mut usize) -> c_int;
    type GetText = unsafe extern "C" fn(Program, *mut c_char) -> c_int;
    type DestroyProgram = unsafe extern "C" fn(*mut Program) -> c_int;

    /// `source` compiled by NVRTC for `arch`; the compiler's log in the error.
    fn compile(lib: &Path, source: &str, arch: &str) -> Result<String, String> {
        let name = lib.display();
        // SAFETY: loading NVIDIA's NVRTC library runs its initializers, which have no
        // preconditions; the path is the one the user or setup.sh chose.
        let lib =
            unsafe { libloading::Library::new(lib) }.map_err(|e| format!("loading {name}: {e}"))?;
        // SAFETY: the symbol types are NVRTC's C API (nvrtc.h of 12.6) exactly.
        let (create, compile, log_size, log, ptx_size, ptx, destroy) = unsafe {
            (
                *lib.get::<CreateProgram>(b"nvrtcCreateProgram\0")
                    .map_err(|e| e.to_string())?,
                *lib.get::<CompileProgram>(b"nvrtcCompileProgram\0")
                    .map_err(|e| e.to_string())?,
                *lib.get::<GetSize>(b"nvrtcGetProgramLogSize\0")
                    .map_err(|e| e.to_string())?,
                *lib.get::<GetText>(b"nvrtcGetProgramLog\0")
                    .map_err(|e| e.to_string())?,
                *lib.get::<GetSize>(b"nvrtcGetPTXSize\0")
                    .map_err(|e| e.to_string())?,
                *lib.get::<GetText>(b"nvrtcGetPTX\0")
                    .map_err(|e| e.to_string())?,
                *lib.get::<DestroyProgram>(b"nvrtcDestroyProgram\0")
                    .map_err(|e| e.to_string())?,
            )
        };
        let src = CString::new(source).map_err(|e| e.to_string())?;
        let options: Vec<CString> = [format!("--gpu-architecture={arch}"), "--std=c++14".into()]
            .into_iter()
            .map(|o| CString::new(o).expect("no NUL in options"))
            .collect();
        let option_ptrs: Vec<*const c_char> = options.iter().map(|o| o.as_ptr()).collect();
        let mut prog: Program = std::ptr::null_mut();
        // SAFETY: NVRTC's documented calls on a program it created: every pointer is valid for the
        // call (the C strings above outlive it; `prog` is written by create and read after), the
        // buffers are sized by the matching size call, and the program is destroyed once.
        unsafe {
            let rc = create(
                &mut prog,
                src.as_ptr(),
                c"sintra.cu".as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            );
            if rc != 0 {
                return Err(format!("nvrtcCreateProgram failed ({rc})"));
            }
            let rc = compile(prog, option_ptrs.len() as c_int, option_ptrs.as_ptr());
            let mut n = 0usize;
            log_size(prog, &mut n);
            let mut buf = vec![0u8; n.max(1)];
            log(prog, buf.as_mut_ptr().cast());
            let log_text = CStr::from_bytes_until_nul(&buf)
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if rc != 0 {
                destroy(&mut prog);
                return Err(format!(
                    "NVRTC could not compile them for {arch}:\n{log_text}"
                ));
            }
            if !log_text.trim().is_empty() {
                for line in log_text.lines() {
                    println!("cargo:warning={arch}: {line}");
                }
            }
            let mut n = 0usize;
            ptx_size(prog, &mut n);
            let mut buf = vec![0u8; n.max(1)];
            ptx(prog, buf.as_mut_ptr().cast());
            destroy(&mut prog);
            let text = CStr::from_bytes_until_nul(&buf).map_err(|e| e.to_string())?;
            Ok(text.to_string_lossy().into_owned())
        }
    }
}
