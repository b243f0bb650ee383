//! NVIDIA GPUs through CUDA (issue #21): the driver reached with `cudarc`, loaded at run time,
//! and the kernels of `kernels.cu` (after `dequant.cuh`), compiled to PTX at build time
//! (`build.rs`) and embedded ([`ptx`]).
//!
//! [`Gpu::open`] finds the first GPU and loads the kernels, or says why it cannot: no driver
//! (`libcuda.so.1` absent: checked before any driver call, because `cudarc`'s loader panics
//! without it and the release profile aborts on panic), no device, or a driver too old for the
//! PTX. Callers then run on the CPU. Every entry point (`ops.rs`) checks the lengths of its
//! operands against its shape arguments before launching, so a kernel never reads or writes
//! outside the buffers it was given. The kernels' arithmetic is held to CPU references by
//! `tests.rs`, on the emulator ([`Gpu::emulated`], `emulator.cpp`) in the test suite and on a
//! GPU by `scripts/gpu-check.sh`.

mod ops;
mod ptx;
#[cfg(all(test, feature = "cuda-emulator"))]
mod tests;

use core::marker::PhantomData;
use core::ops::Range;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DeviceRepr,
    LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use formats::quant::GgmlType;
use std::sync::Arc;

pub use ops::{Attention, MAX_HEAD_DIM};

/// Why the GPU is not used.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No NVIDIA driver library on this machine.
    #[error("no NVIDIA driver (libcuda.so.1 could not be loaded)")]
    NoDriver,
    /// The driver is there but found no usable device.
    #[error("no CUDA device: {0}")]
    NoDevice(String),
    /// The driver could not load the embedded PTX (a driver older than CUDA 12.5, such as
    /// JetPack 4's on the Jetson Nano, rejects PTX ISA 8.5).
    #[error("{gpu}: the driver cannot load the kernels' PTX ({arch}, PTX ISA 8.5, which needs a CUDA 12.5 or newer driver): {why}")]
    Ptx {
        gpu: String,
        arch: &'static str,
        why: String,
    },
    /// A weight type with no GPU kernel.
    #[error("no GPU kernel for {0} weights")]
    Unsupported(GgmlType),
    /// An operand shorter than its shape says (a caller's bug, caught before the launch).
    #[error("{0}")]
    Shape(String),
    /// A driver call failed.
    #[error("CUDA: {0}")]
    Driver(String),
}

fn driver_err(e: cudarc::driver::DriverError) -> GpuError {
    GpuError::Driver(e.to_string())
}

/// What the runtime reports about the GPU: `--version`, `bench`, the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    pub name: String,
    /// (major, minor), e.g. (8, 7) for the Jetson Orin.
    pub compute_capability: (u32, u32),
    pub memory_bytes: u64,
    /// The PTX architecture loaded (`compute_87`).
    pub ptx_arch: &'static str,
}

/// Whether weights of type `ty` have GPU kernels: every type the planner writes (Q4_0, Q4_1,
/// Q5_0, Q5_1, Q8_0, IQ4_NL, Q4_K, Q5_K, Q6_K) and F16/F32.
pub fn supported(ty: GgmlType) -> bool {
    type_name(ty).is_some()
}

/// The kernels' name for a weight type (`matvec_q4_k`, `get_rows_q4_k`).
fn type_name(ty: GgmlType) -> Option<&'static str> {
    use GgmlType::*;
    Some(match ty {
        F32 => "f32",
        F16 => "f16",
        Q4_0 => "q4_0",
        Q4_1 => "q4_1",
        Q5_0 => "q5_0",
        Q5_1 => "q5_1",
        Q8_0 => "q8_0",
        IQ4_NL => "iq4_nl",
        Q4_K => "q4_k",
        Q5_K => "q5_k",
        Q6_K => "q6_k",
        _ => return None,
    })
}

/// A typed range of device memory: a pointer and a length in elements. Made from a
/// [`DeviceBuf`] ([`DeviceBuf::at`], [`DeviceBuf::all`]), valid while it lives.
#[derive(Debug, Clone, Copy)]
pub struct Dev<T> {
    ptr: u64,
    len: usize,
    _t: PhantomData<T>,
}

impl<T> Dev<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first `n` values.
    pub fn prefix(&self, n: usize) -> Result<Dev<T>, GpuError> {
        self.need(n, "prefix")?;
        Ok(Dev {
            ptr: self.ptr,
            len: n,
            _t: PhantomData,
        })
    }

    fn need(&self, n: usize, what: &str) -> Result<u64, GpuError> {
        if n > self.len {
            return Err(GpuError::Shape(format!(
                "{what}: {n} values needed, the buffer holds {}",
                self.len
            )));
        }
        Ok(self.ptr)
    }
}

/// Device memory holding `len` values of `T`, freed when dropped.
#[derive(Debug)]
pub struct DeviceBuf<T> {
    mem: Mem<T>,
    ptr: u64,
    len: usize,
}

/// Where a buffer's memory is.
#[derive(Debug)]
enum Mem<T> {
    Cuda(CudaSlice<T>),
    /// The emulator's "device" memory: host memory, 16-byte aligned (the kernels load `float4`).
    #[cfg(feature = "cuda-emulator")]
    Host(Vec<u128>, PhantomData<T>),
}

impl<T> DeviceBuf<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Elements `r` (checked).
    pub fn at(&self, r: Range<usize>) -> Result<Dev<T>, GpuError> {
        if r.start > r.end || r.end > self.len() {
            return Err(GpuError::Shape(format!(
                "range {r:?} of a device buffer of {}",
                self.len()
            )));
        }
        Ok(Dev {
            ptr: self.ptr + (r.start * size_of::<T>()) as u64,
            len: r.len(),
            _t: PhantomData,
        })
    }

    pub fn all(&self) -> Dev<T> {
        Dev {
            ptr: self.ptr,
            len: self.len(),
            _t: PhantomData,
        }
    }
}

/// A weight matrix on the device, in its file's layout: `n_out` rows of `row_bytes`.
#[derive(Debug)]
pub struct DeviceMatrix {
    pub ty: GgmlType,
    pub n_in: usize,
    pub n_out: usize,
    pub row_bytes: usize,
    data: DeviceBuf<u8>,
    matvec: Func,
    matmul: Func,
    get_rows: Func,
}

/// A kernel of the loaded module.
#[derive(Debug, Clone)]
enum Func {
    Cuda(CudaFunction),
    /// A kernel of the emulator, by name.
    #[cfg(feature = "cuda-emulator")]
    Emulated(std::ffi::CString),
}

/// The opened GPU (or the emulator): one stream, the loaded kernels.
#[derive(Debug)]
pub struct Gpu {
    backend: Backend,
    info: GpuInfo,
    f: Functions,
}

#[derive(Debug)]
enum Backend {
    Cuda {
        ctx: Arc<CudaContext>,
        stream: Arc<CudaStream>,
        module: Arc<CudaModule>,
    },
    /// `emulator.cpp`: the kernels run on the CPU under an emulation of CUDA's threads.
    #[cfg(feature = "cuda-emulator")]
    Emulated,
}

#[derive(Debug)]
struct Functions {
    rmsnorm: Func,
    add: Func,
    add_bias: Func,
    scale: Func,
    softcap: Func,
    swiglu: Func,
    geglu: Func,
    rope: Func,
    kv_store: Func,
    attention: Func,
    round_activations: Func,
}

impl Functions {
    fn load(get: impl Fn(&str) -> Result<Func, GpuError>) -> Result<Self, GpuError> {
        Ok(Functions {
            rmsnorm: get("rmsnorm")?,
            add: get("add")?,
            add_bias: get("add_bias")?,
            scale: get("scale")?,
            softcap: get("softcap")?,
            swiglu: get("swiglu")?,
            geglu: get("geglu")?,
            rope: get("rope")?,
            kv_store: get("kv_store")?,
            attention: get("attention")?,
            round_activations: get("round_activations")?,
        })
    }
}

#[cfg(feature = "cuda-emulator")]
mod emulator {
    use std::ffi::{c_char, c_int, c_uint, c_void};
    extern "C" {
        pub fn sintra_emu_launch(
            name: *const c_char,
            grid: *const c_uint,
            block: *const c_uint,
            args: *mut *mut c_void,
        ) -> c_int;
        pub fn sintra_emu_error() -> *const c_char;
    }
    /// The emulator runs one launch at a time (its fibers and `__shared__` statics are global).
    pub static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
}

impl Gpu {
    /// The first CUDA device with the kernels loaded, or why not.
    pub fn open() -> Result<Gpu, GpuError> {
        // SAFETY: only tries to dlopen the driver library (no symbol is called); cudarc's
        // loader would panic where it is missing, hence this check first.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(GpuError::NoDriver);
        }
        let ctx = CudaContext::new(0).map_err(|e| GpuError::NoDevice(e.to_string()))?;
        let name = ctx.name().map_err(driver_err)?;
        let (major, minor) = ctx.compute_capability().map_err(driver_err)?;
        let memory_bytes = ctx.total_mem().map_err(driver_err)? as u64;
        let cc = (major.max(0) as u32, minor.max(0) as u32);
        let (arch, text) = ptx::for_capability(cc).ok_or_else(|| {
            GpuError::NoDevice(format!(
                "{name} (compute capability {major}.{minor}) is older than the oldest PTX built, {}",
                ptx::OLDEST
            ))
        })?;
        let module = ctx
            .load_module(cudarc::nvrtc::Ptx::from_src(text))
            .map_err(|e| GpuError::Ptx {
                gpu: name.clone(),
                arch,
                why: e.to_string(),
            })?;
        // One stream, used by one thread at a time: the per-buffer events cudarc would record
        // to order several streams are pure overhead here.
        // SAFETY: every buffer and kernel of this context is used on `stream` alone.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let f = Functions::load(|n| module.load_function(n).map(Func::Cuda).map_err(driver_err))?;
        let info = GpuInfo {
            name,
            compute_capability: cc,
            memory_bytes,
            ptx_arch: arch,
        };
        Ok(Gpu {
            backend: Backend::Cuda {
                ctx,
                stream,
                module,
            },
            info,
            f,
        })
    }

    /// The emulator (`emulator.cpp`): the same kernels on the CPU, for tests without a GPU.
    #[cfg(feature = "cuda-emulator")]
    pub fn emulated() -> Gpu {
        let name = |n: &str| {
            Ok(Func::Emulated(
                std::ffi::CString::new(n).expect("kernel names have no NUL"),
            ))
        };
        Gpu {
            backend: Backend::Emulated,
            info: GpuInfo {
                name: "CUDA emulator (CPU)".into(),
                compute_capability: (0, 0),
                memory_bytes: 0,
                ptx_arch: "none (emulated)",
            },
            f: Functions::load(name).expect("names only"),
        }
    }

    /// The kernel `name` of the loaded module.
    fn function(&self, name: &str) -> Result<Func, GpuError> {
        match &self.backend {
            Backend::Cuda { module, .. } => module
                .load_function(name)
                .map(Func::Cuda)
                .map_err(driver_err),
            #[cfg(feature = "cuda-emulator")]
            Backend::Emulated => Ok(Func::Emulated(
                std::ffi::CString::new(name).map_err(|e| GpuError::Shape(e.to_string()))?,
            )),
        }
    }

    pub fn info(&self) -> &GpuInfo {
        &self.info
    }

    /// Make this GPU's context current on the calling thread (the runtime's forward pass may
    /// run on another thread than the one that opened it).
    pub fn bind(&self) -> Result<(), GpuError> {
        match &self.backend {
            Backend::Cuda { ctx, .. } => ctx.bind_to_thread().map_err(driver_err),
            #[cfg(feature = "cuda-emulator")]
            Backend::Emulated => Ok(()),
        }
    }

    fn wrap<T>(slice: CudaSlice<T>, stream: &CudaStream) -> DeviceBuf<T> {
        let ptr = slice.device_ptr(stream).0;
        let len = slice.len();
        DeviceBuf {
            mem: Mem::Cuda(slice),
            ptr,
            len,
        }
    }

    /// `n` zeroed values of `T` in the emulator's memory.
    #[cfg(feature = "cuda-emulator")]
    fn host_zeros<T>(n: usize) -> DeviceBuf<T> {
        let words = vec![0u128; (n * size_of::<T>()).div_ceil(16).max(1)];
        let ptr = words.as_ptr() as u64;
        DeviceBuf {
            mem: Mem::Host(words, PhantomData),
            ptr,
            len: n,
        }
    }

    /// A copy of `host` on the device.
    pub fn upload<T: DeviceRepr>(&self, host: &[T]) -> Result<DeviceBuf<T>, GpuError> {
        match &self.backend {
            Backend::Cuda { stream, .. } => {
                let s = stream.clone_htod(host).map_err(driver_err)?;
                Ok(Self::wrap(s, stream))
            }
            #[cfg(feature = "cuda-emulator")]
            Backend::Emulated => {
                let mut b = Self::host_zeros::<T>(host.len());
                self.write(&mut b, 0, host)?;
                Ok(b)
            }
        }
    }

    /// `n` zeros on the device.
    pub fn zeros<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        n: usize,
    ) -> Result<DeviceBuf<T>, GpuError> {
        match &self.backend {
            Backend::Cuda { stream, .. } => {
                let s = stream.alloc_zeros::<T>(n.max(1)).map_err(driver_err)?;
                let mut b = Self::wrap(s, stream);
                b.len = n;
                Ok(b)
            }
            #[cfg(feature = "cuda-emulator")]
            Backend::Emulated => Ok(Self::host_zeros(n)),
        }
    }

    /// `host` copied into `dst[at..]`.
    pub fn write<T: DeviceRepr>(
        &self,
        dst: &mut DeviceBuf<T>,
        at: usize,
        host: &[T],
    ) -> Result<(), GpuError> {
        if at + host.len() > dst.len() {
            return Err(GpuError::Shape(format!(
                "writing {} values at {at} into a buffer of {}",
                host.len(),
                dst.len()
            )));
        }
        match (&self.backend, &mut dst.mem) {
            (Backend::Cuda { stream, .. }, Mem::Cuda(slice)) => {
                let mut view = slice.slice_mut(at..at + host.len());
                stream.memcpy_htod(host, &mut view).map_err(driver_err)
            }
            #[cfg(feature = "cuda-emulator")]
            (Backend::Emulated, Mem::Host(words, _)) => {
                // SAFETY: `words` holds at least `dst.len` values of `T` (`host_zeros`) and
                // `at + host.len() <= dst.len` was checked; the regions are distinct
                // allocations; `T` is a plain value type (DeviceRepr: copied bit for bit).
                unsafe {
                    let base = words.as_mut_ptr().cast::<T>().add(at);
                    core::ptr::copy_nonoverlapping(host.as_ptr(), base, host.len());
                }
                Ok(())
            }
            #[allow(unreachable_patterns)]
            _ => Err(GpuError::Shape("a buffer of another backend".into())),
        }
    }

    /// `src[at..at + out.len()]` copied into `out` (waits for the work before it).
    pub fn read(&self, src: &DeviceBuf<f32>, at: usize, out: &mut [f32]) -> Result<(), GpuError> {
        if at + out.len() > src.len() {
            return Err(GpuError::Shape(format!(
                "reading {} values at {at} from a buffer of {}",
                out.len(),
                src.len()
            )));
        }
        match (&self.backend, &src.mem) {
            (Backend::Cuda { stream, .. }, Mem::Cuda(slice)) => {
                let view = slice.slice(at..at + out.len());
                stream.memcpy_dtoh(&view, out).map_err(driver_err)?;
                stream.synchronize().map_err(driver_err)
            }
            #[cfg(feature = "cuda-emulator")]
            (Backend::Emulated, Mem::Host(words, _)) => {
                // SAFETY: as in `write`: in bounds (checked above), distinct allocations.
                unsafe {
                    let base = words.as_ptr().cast::<f32>().add(at);
                    core::ptr::copy_nonoverlapping(base, out.as_mut_ptr(), out.len());
                }
                Ok(())
            }
            #[allow(unreachable_patterns)]
            _ => Err(GpuError::Shape("a buffer of another backend".into())),
        }
    }

    /// A weight matrix (`n_out` rows of `n_in` values of type `ty`, the file's bytes) on the
    /// device.
    pub fn upload_matrix(
        &self,
        ty: GgmlType,
        data: &[u8],
        n_in: usize,
        n_out: usize,
    ) -> Result<DeviceMatrix, GpuError> {
        let name = type_name(ty).ok_or(GpuError::Unsupported(ty))?;
        let row_bytes = ty
            .row_size(n_in)
            .filter(|_| n_in.is_multiple_of(32))
            .ok_or_else(|| GpuError::Shape(format!("{ty} rows of {n_in} values")))?;
        if data.len() != row_bytes * n_out {
            return Err(GpuError::Shape(format!(
                "{ty} matrix of {n_out} rows of {n_in}: {} bytes, expected {}",
                data.len(),
                row_bytes * n_out
            )));
        }
        let get = |k: &str| self.function(&format!("{k}_{name}"));
        Ok(DeviceMatrix {
            ty,
            n_in,
            n_out,
            row_bytes,
            data: self.upload(data)?,
            matvec: get("matvec")?,
            matmul: get("matmul")?,
            get_rows: get("get_rows")?,
        })
    }

    fn run(&self, f: &Func, cfg: LaunchConfig, args: &[Arg]) -> Result<(), GpuError> {
        match (&self.backend, f) {
            (Backend::Cuda { stream, .. }, Func::Cuda(f)) => {
                let mut b = stream.launch_builder(f);
                for a in args {
                    match a {
                        Arg::Ptr(p) => b.arg(p),
                        Arg::I32(v) => b.arg(v),
                        Arg::I64(v) => b.arg(v),
                        Arg::F32(v) => b.arg(v),
                    };
                }
                // SAFETY: every caller passes the kernel's parameters in its declared order
                // and types (kernels.cu), and device pointers whose ranges it checked against
                // the shapes the kernel will index with (`Dev::need`).
                unsafe { b.launch(cfg) }.map(|_| ()).map_err(driver_err)
            }
            #[cfg(feature = "cuda-emulator")]
            (Backend::Emulated, Func::Emulated(name)) => {
                let mut values: Vec<[u8; 8]> = args
                    .iter()
                    .map(|a| {
                        let mut v = [0u8; 8];
                        match *a {
                            Arg::Ptr(p) => v.copy_from_slice(&p.to_ne_bytes()),
                            Arg::I64(x) => v.copy_from_slice(&x.to_ne_bytes()),
                            Arg::I32(x) => v[..4].copy_from_slice(&x.to_ne_bytes()),
                            Arg::F32(x) => v[..4].copy_from_slice(&x.to_ne_bytes()),
                        }
                        v
                    })
                    .collect();
                let mut ptrs: Vec<*mut core::ffi::c_void> =
                    values.iter_mut().map(|v| v.as_mut_ptr().cast()).collect();
                let grid = [cfg.grid_dim.0, cfg.grid_dim.1, cfg.grid_dim.2];
                let block = [cfg.block_dim.0, cfg.block_dim.1, cfg.block_dim.2];
                let _one = emulator::LOCK.lock().unwrap_or_else(|e| e.into_inner());
                // SAFETY: as for the GPU: the parameters in the kernel's order and types, each
                // pointed to as cuLaunchKernel takes them (`values` outlives the call), and the
                // device pointers (host memory of `Mem::Host` buffers) checked against the shapes.
                let rc = unsafe {
                    emulator::sintra_emu_launch(
                        name.as_ptr(),
                        grid.as_ptr(),
                        block.as_ptr(),
                        ptrs.as_mut_ptr(),
                    )
                };
                if rc == 0 {
                    return Ok(());
                }
                // SAFETY: the emulator returns a NUL-terminated string it owns, valid until
                // its next launch (which the lock above keeps out).
                let why = unsafe { std::ffi::CStr::from_ptr(emulator::sintra_emu_error()) };
                Err(GpuError::Driver(format!(
                    "emulated {}: {}",
                    name.to_string_lossy(),
                    why.to_string_lossy()
                )))
            }
            #[allow(unreachable_patterns)]
            _ => Err(GpuError::Shape("a kernel of another backend".into())),
        }
    }
}

/// A kernel argument.
#[derive(Debug, Clone, Copy)]
enum Arg {
    Ptr(u64),
    I32(i32),
    I64(i64),
    F32(f32),
}
