//! The kernels' entry points: each checks its operands' lengths against the shapes the kernel
//! will index with (`Dev::need`), then launches on the GPU's stream ([`Gpu::run`]).

use super::{Arg, Dev, DeviceMatrix, Gpu, GpuError};
use cudarc::driver::LaunchConfig;
use formats::quant::GgmlType;

/// Tokens one `matmul_*` block multiplies at once (`NT` in kernels.cu).
const MATMUL_TOKENS: usize = 8;
/// Weight rows per block of the matrix kernels (`blockDim.y`).
const ROWS_PER_BLOCK: usize = 4;
/// Threads per block of the element-wise kernels.
const THREADS: u32 = 256;
/// `ATT_MAX_PER_LANE * 32` in kernels.cu.
pub const MAX_HEAD_DIM: usize = 256;

impl Gpu {
    /// `y[t] = w x[t]` for the `n_tok` rows of `x` (`n_in` each) into the rows of `y` (`n_out`
    /// each).
    pub fn matmul(
        &self,
        w: &DeviceMatrix,
        x: Dev<f32>,
        y: Dev<f32>,
        n_tok: usize,
    ) -> Result<(), GpuError> {
        let xp = x.need(n_tok * w.n_in, "matmul input")?;
        let yp = y.need(n_tok * w.n_out, "matmul output")?;
        let (f, per_block) = match n_tok {
            1 => (&w.matvec, 1),
            _ => (&w.matmul, MATMUL_TOKENS),
        };
        let cfg = LaunchConfig {
            grid_dim: (
                w.n_out.div_ceil(ROWS_PER_BLOCK) as u32,
                n_tok.div_ceil(per_block) as u32,
                1,
            ),
            block_dim: (32, ROWS_PER_BLOCK as u32, 1),
            shared_mem_bytes: 0,
        };
        self.run(
            f,
            cfg,
            &[
                Arg::Ptr(w.data.ptr),
                Arg::I32(w.row_bytes as i32),
                Arg::Ptr(xp),
                Arg::Ptr(yp),
                Arg::I32(w.n_in as i32),
                Arg::I32(w.n_out as i32),
                Arg::I32(n_tok as i32),
            ],
        )
    }

    /// `x` rounded into `out` as the CPU kernels quantize activations for weights of type `ty`
    /// (its vec_dot type: Q8_0, Q8_1, Q8_K or f16), so that the GPU multiplies the same values;
    /// `false` (nothing launched) where the CPU multiplies f32 activations. `x.len()` must be a
    /// whole number of the type's blocks (the rows of a matrix product are).
    pub fn round_activations(
        &self,
        ty: GgmlType,
        x: Dev<f32>,
        out: Dev<f32>,
    ) -> Result<bool, GpuError> {
        let (kind, len) = match crate::vec_dot_type(ty) {
            GgmlType::Q8_0 | GgmlType::Q8_1 => (0, 32),
            GgmlType::Q8_K => (1, 256),
            GgmlType::F16 => (2, 1),
            _ => return Ok(false),
        };
        let n = x.len;
        if !n.is_multiple_of(len) {
            return Err(GpuError::Shape(format!(
                "{n} activations in blocks of {len}"
            )));
        }
        let op = out.need(n, "rounded activations")?;
        self.run(
            &self.f.round_activations,
            Self::elementwise(n / len),
            &[
                Arg::Ptr(x.ptr),
                Arg::Ptr(op),
                Arg::I32(n as i32),
                Arg::I32(kind),
            ],
        )?;
        Ok(true)
    }

    /// Rows `rows` of `w` as f32 into the rows of `out` (`n_in` each); an id outside the matrix
    /// gives a row of zeros (callers check ids first: the runtime checks every token).
    pub fn get_rows(
        &self,
        w: &DeviceMatrix,
        rows: Dev<i32>,
        out: Dev<f32>,
    ) -> Result<(), GpuError> {
        let n = rows.len;
        let op = out.need(n * w.n_in, "get_rows output")?;
        let cfg = launch_config((n as u32, 1), 64);
        self.run(
            &w.get_rows,
            cfg,
            &[
                Arg::Ptr(w.data.ptr),
                Arg::I32(w.row_bytes as i32),
                Arg::Ptr(rows.ptr),
                Arg::Ptr(op),
                Arg::I32(w.n_in as i32),
                Arg::I32(w.n_out as i32),
            ],
        )
    }

    /// RMSNorm of `rows` rows of `x` (`weight.len()` values each) into `out` (may be `x`).
    pub fn rmsnorm(
        &self,
        out: Dev<f32>,
        x: Dev<f32>,
        weight: Dev<f32>,
        rows: usize,
        eps: f32,
    ) -> Result<(), GpuError> {
        let n = weight.len;
        let (op, xp) = (
            out.need(rows * n, "rmsnorm output")?,
            x.need(rows * n, "rmsnorm input")?,
        );
        let cfg = launch_config((rows as u32, 1), THREADS);
        self.run(
            &self.f.rmsnorm,
            cfg,
            &[
                Arg::Ptr(op),
                Arg::Ptr(xp),
                Arg::Ptr(weight.ptr),
                Arg::I32(n as i32),
                Arg::F32(eps),
            ],
        )
    }

    fn elementwise(n: usize) -> LaunchConfig {
        launch_config(((n as u32).div_ceil(THREADS).max(1), 1), THREADS)
    }

    /// `x += d` over `x`'s length.
    pub fn add(&self, x: Dev<f32>, d: Dev<f32>) -> Result<(), GpuError> {
        let n = x.len;
        let dp = d.need(n, "add")?;
        self.run(
            &self.f.add,
            Self::elementwise(n),
            &[Arg::Ptr(x.ptr), Arg::Ptr(dp), Arg::I32(n as i32)],
        )
    }

    /// `x[i] += bias[i % bias.len()]` over `x`'s length.
    pub fn add_bias(&self, x: Dev<f32>, bias: Dev<f32>) -> Result<(), GpuError> {
        let n = x.len;
        if bias.len == 0 || !n.is_multiple_of(bias.len) {
            return Err(GpuError::Shape(format!(
                "a bias of {} over {n} values",
                bias.len
            )));
        }
        self.run(
            &self.f.add_bias,
            Self::elementwise(n),
            &[
                Arg::Ptr(x.ptr),
                Arg::Ptr(bias.ptr),
                Arg::I32(n as i32),
                Arg::I32(bias.len as i32),
            ],
        )
    }

    /// `x *= s`.
    pub fn scale(&self, x: Dev<f32>, s: f32) -> Result<(), GpuError> {
        let n = x.len;
        self.run(
            &self.f.scale,
            Self::elementwise(n),
            &[Arg::Ptr(x.ptr), Arg::F32(s), Arg::I32(n as i32)],
        )
    }

    /// `x = cap * tanh(x / cap)`.
    pub fn softcap(&self, x: Dev<f32>, cap: f32) -> Result<(), GpuError> {
        let n = x.len;
        self.run(
            &self.f.softcap,
            Self::elementwise(n),
            &[Arg::Ptr(x.ptr), Arg::F32(cap), Arg::I32(n as i32)],
        )
    }

    /// `gate = act(gate) * up`: SiLU, or GELU (tanh form) where `gelu`.
    pub fn glu(&self, gate: Dev<f32>, up: Dev<f32>, gelu: bool) -> Result<(), GpuError> {
        let n = gate.len;
        let up = up.need(n, "glu up")?;
        let f = if gelu { &self.f.geglu } else { &self.f.swiglu };
        self.run(
            f,
            Self::elementwise(n),
            &[Arg::Ptr(gate.ptr), Arg::Ptr(up), Arg::I32(n as i32)],
        )
    }

    /// RoPE on the first `rope_dim` values of every head of `n_tok` rows of `n_head` heads of
    /// `head_dim` in `v`, with each row's (cos, sin) pairs in `cache` (`rope_dim` a row).
    #[allow(clippy::too_many_arguments)]
    pub fn rope(
        &self,
        v: Dev<f32>,
        cache: Dev<f32>,
        n_tok: usize,
        n_head: usize,
        head_dim: usize,
        rope_dim: usize,
        neox: bool,
    ) -> Result<(), GpuError> {
        if rope_dim > head_dim || !rope_dim.is_multiple_of(2) {
            return Err(GpuError::Shape(format!(
                "rope_dim {rope_dim} in heads of {head_dim}"
            )));
        }
        let vp = v.need(n_tok * n_head * head_dim, "rope")?;
        let cp = cache.need(n_tok * rope_dim, "rope cache")?;
        let n = n_tok * n_head * rope_dim / 2;
        self.run(
            &self.f.rope,
            Self::elementwise(n),
            &[
                Arg::Ptr(vp),
                Arg::Ptr(cp),
                Arg::I32(n_tok as i32),
                Arg::I32(n_head as i32),
                Arg::I32(head_dim as i32),
                Arg::I32(rope_dim as i32),
                Arg::I32(neox as i32),
            ],
        )
    }

    /// The keys and values of `n_tok` tokens (rows of `width`) into cache rows `row0..` (rows
    /// of `kv_dim`, counted from the cache's start), rounded to f16.
    #[allow(clippy::too_many_arguments)]
    pub fn kv_store(
        &self,
        k: Dev<f32>,
        v: Dev<f32>,
        kc: Dev<u16>,
        vc: Dev<u16>,
        n_tok: usize,
        width: usize,
        row0: usize,
        kv_dim: usize,
    ) -> Result<(), GpuError> {
        let n = n_tok * width;
        let (kp, vp) = (k.need(n, "keys")?, v.need(n, "values")?);
        let end = (row0 + n_tok) * kv_dim;
        let (kcp, vcp) = (kc.need(end, "key cache")?, vc.need(end, "value cache")?);
        if width > kv_dim {
            return Err(GpuError::Shape(format!(
                "keys of {width} in cache rows of {kv_dim}"
            )));
        }
        self.run(
            &self.f.kv_store,
            Self::elementwise(n),
            &[
                Arg::Ptr(kp),
                Arg::Ptr(vp),
                Arg::Ptr(kcp),
                Arg::Ptr(vcp),
                Arg::I32(n_tok as i32),
                Arg::I32(width as i32),
                Arg::I64(row0 as i64),
                Arg::I32(kv_dim as i32),
            ],
        )
    }

    /// Causal attention of `n_tok` query rows (positions `pos0..`) over the f16 cache.
    pub fn attention(
        &self,
        a: &Attention,
        q: Dev<f32>,
        kc: Dev<u16>,
        vc: Dev<u16>,
        out: Dev<f32>,
    ) -> Result<(), GpuError> {
        let hd = a.head_dim;
        if !hd.is_multiple_of(32)
            || hd > MAX_HEAD_DIM
            || a.n_head_kv == 0
            || !a.n_head.is_multiple_of(a.n_head_kv)
        {
            return Err(GpuError::Shape(format!(
                "attention of {} heads over {} of {hd} values",
                a.n_head, a.n_head_kv
            )));
        }
        let n = a.n_tok * a.n_head * hd;
        let (qp, op) = (q.need(n, "queries")?, out.need(n, "attention output")?);
        let end = (a.layer_row0 + a.pos0 + a.n_tok) * a.kv_dim;
        let (kp, vp) = (kc.need(end, "key cache")?, vc.need(end, "value cache")?);
        let cfg = launch_config((a.n_head as u32, a.n_tok as u32), 128);
        self.run(
            &self.f.attention,
            cfg,
            &[
                Arg::Ptr(qp),
                Arg::Ptr(kp),
                Arg::Ptr(vp),
                Arg::Ptr(op),
                Arg::I32(a.pos0 as i32),
                Arg::I32(a.n_head as i32),
                Arg::I32(a.n_head_kv as i32),
                Arg::I32(hd as i32),
                Arg::I32(a.kv_dim as i32),
                Arg::I64(a.layer_row0 as i64),
                Arg::F32(a.kq_scale),
                Arg::I32(a.window.unwrap_or(0) as i32),
            ],
        )
    }
}

/// The shape of one [`Gpu::attention`] call.
#[derive(Debug, Clone, Copy)]
pub struct Attention {
    pub n_tok: usize,
    pub pos0: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    /// Values per cache row.
    pub kv_dim: usize,
    /// The layer's first cache row (`layer * n_ctx`).
    pub layer_row0: usize,
    pub kq_scale: f32,
    pub window: Option<usize>,
}

/// A launch of a `(x, y)` grid of blocks of `threads` threads (one dimension), no dynamic
/// shared memory.
fn launch_config(grid: (u32, u32), threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (grid.0, grid.1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}
