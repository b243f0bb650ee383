//! Where models run (issue #21): on an NVIDIA GPU when this build has the `cuda` feature and
//! the machine a usable GPU, else on the CPU. Decided once per process, like the CPU kernel
//! table, and overridden by `SINTRA_DEVICE`: `auto` (the default), `cpu`, or `cuda` (fail
//! rather than fall back). Every fallback is said once on stderr, with its reason.

use formats::wire;

/// The device choice `SINTRA_DEVICE` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    Auto,
    Cpu,
    Cuda,
    /// The CUDA kernels on the CPU, under the test suite's emulator (builds with the
    /// `cuda-emulator` feature only): the GPU forward pass checked where there is no GPU.
    CudaEmulator,
}

/// `SINTRA_DEVICE`, checked.
pub fn wanted() -> Result<Wanted, String> {
    match std::env::var("SINTRA_DEVICE").as_deref() {
        Err(std::env::VarError::NotPresent) | Ok("") | Ok("auto") => Ok(Wanted::Auto),
        Ok("cpu") => Ok(Wanted::Cpu),
        Ok("cuda") => Ok(Wanted::Cuda),
        Ok("cuda-emulator") if cfg!(feature = "cuda-emulator") => Ok(Wanted::CudaEmulator),
        Ok("cuda-emulator") => Err(
            "SINTRA_DEVICE=cuda-emulator needs a build with the cuda-emulator feature (tests only)"
                .into(),
        ),
        Ok(v) => Err(format!("SINTRA_DEVICE={v} is not auto, cpu or cuda")),
        Err(std::env::VarError::NotUnicode(v)) => {
            Err(format!("SINTRA_DEVICE={v:?} is not valid unicode"))
        }
    }
}

/// The GPU as the handshake, `--version` and `bench` name it; `None` in a build without the
/// `cuda` feature.
pub fn info() -> Option<wire::Gpu> {
    imp::info()
}

/// One line for `--version` and `bench`: `gpu: NVIDIA H100 80GB HBM3 (compute capability 9.0,
/// 79.2 GiB, PTX compute_90)`, or why models run on the CPU.
pub fn describe() -> String {
    match info() {
        None => "gpu: none (built without the cuda feature)".into(),
        Some(g) if g.used => format!(
            "gpu: {} (compute capability {}, {:.1} GiB, {})",
            g.name,
            g.compute_capability,
            g.memory_bytes as f64 / (1u64 << 30) as f64,
            g.note
        ),
        Some(g) => format!("gpu: not used ({}): running on the CPU", g.note),
    }
}

/// Say on stderr why a model runs on the CPU, once per reason (a server loads its model and
/// draft, a planner's session many models).
pub fn say_fallback(why: &str) {
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if !said.iter().any(|w| w == why) {
        eprintln!("sintra-rt: CUDA: {why}: running on the CPU");
        said.push(why.to_string());
    }
}

#[cfg(feature = "cuda")]
mod imp {
    use super::*;
    use kernels::cuda::Gpu;
    use std::sync::{Arc, OnceLock};

    /// The process's GPU, opened at first use, or why there is none.
    pub fn gpu() -> Result<Arc<Gpu>, String> {
        static GPU: OnceLock<Result<Arc<Gpu>, String>> = OnceLock::new();
        GPU.get_or_init(|| match wanted()? {
            Wanted::Cpu => Err("SINTRA_DEVICE=cpu".into()),
            Wanted::Auto | Wanted::Cuda => Gpu::open().map(Arc::new).map_err(|e| e.to_string()),
            #[cfg(feature = "cuda-emulator")]
            Wanted::CudaEmulator => Ok(Arc::new(Gpu::emulated())),
            #[cfg(not(feature = "cuda-emulator"))]
            Wanted::CudaEmulator => Err("built without the cuda-emulator feature".into()),
        })
        .clone()
    }

    pub fn info() -> Option<wire::Gpu> {
        Some(match gpu() {
            Ok(g) => {
                let i = g.info();
                wire::Gpu {
                    backend: "cuda".into(),
                    name: i.name.clone(),
                    compute_capability: format!(
                        "{}.{}",
                        i.compute_capability.0, i.compute_capability.1
                    ),
                    memory_bytes: i.memory_bytes,
                    used: true,
                    note: format!("PTX {}", i.ptx_arch),
                }
            }
            Err(why) => wire::Gpu {
                backend: "cuda".into(),
                name: String::new(),
                compute_capability: String::new(),
                memory_bytes: 0,
                used: false,
                note: why,
            },
        })
    }
}

#[cfg(not(feature = "cuda"))]
mod imp {
    use super::*;

    pub fn info() -> Option<wire::Gpu> {
        None
    }
}

#[cfg(feature = "cuda")]
pub use imp::gpu;
