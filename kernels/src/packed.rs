//! Weights repacked at load time into groups of [`GROUP`] rows (issue #14's fast path, as
//! llama.cpp's CPU repack and ik_llama.cpp's `_R4`/`_R8` types): block `b` of a group holds the
//! rows' scales side by side, then their quants interleaved four bytes at a time, so that one
//! load holds four values of each row of the group and one instruction adds each row's products
//! with the activation's values `4k..4k + 4` into that row's lane: an indexed `SDOT` (`sdot
//! v.4s, w.16b, y.4b[k]`, four rows) on AArch64, `vpdpbusd` (or `maddubs` + `madd`) against
//! the activation's word `k` broadcast on x86-64 (eight rows). Where the active table has
//! kernels for a packed type ([`packs`]), the runtime calls [`pack`] once per matrix and
//! [`matvec_packed`] / [`matmul_packed`] on the result; [`unpack_row`] gives one row back in
//! the file's layout (an embedding lookup).
//!
//! - [`GroupQ8_0`]: `d[r]` row `r`'s scale; `qs[4 GROUP k + 4r + j]` its quant `4k + j`, `k` in
//!   0..8, XOR [`Q8_0_FLIP`] (`0x80` on x86-64, so that `vpdpbusd` takes the weights as its
//!   unsigned operand: `q + 128`, corrected by `-128 * sum(y)` per block).
//! - [`GroupQ4_0`]: `d[r]`; `qs[4 GROUP k + 4r + j]` is row `r`'s byte `4k + j` (values `4k + j`
//!   in the low nibble, `16 + 4k + j` in the high one) XOR [`Q4_0_FLIP`]: on AArch64 `0x88`, so
//!   that each nibble is `q - 8` in two's complement (`qs << 4` and `qs & 0xf0` are then
//!   `16 (q - 8)` as signed bytes, two instructions for 32 signed values; the kernels scale by
//!   `d / 16`, exactly); on x86-64 the file's unsigned nibbles, as `vpdpbusd` wants them.
//! - [`GroupQ5_0`] (x86-64 only): as Q4_0's nibbles, plus each row's fifth bits rearranged
//!   ([`spread_high_bits`]) so that a shift and a mask put word `k`'s into its bytes as 16.
//! - [`GroupQ4_1`]: Q4_0's byte order, the file's bytes as they are (unsigned nibbles), plus the
//!   rows' minimums beside their scales.
//!
//! On AArch64 the results are those of the default table's unpacked kernels bit for bit (the
//! same exact integer block sums, the same `fma(d_x * d_y, sum, acc)` per block and row, and
//! for Q4_1 `fma(m_x, s_y, acc)` after it). On x86-64 every row gets `acc = fma(float(sum), fp16(d_x) * fp16(d_y), acc)` per block, with
//! the block's whole integer sum: for Q4_0 that is llama.cpp's own repacked order (its
//! `ggml_gemv_q4_0_8x8_q8_0`), so packed Q4_0 keeps its logits bit for bit; for Q8_0, Q5_0 and
//! Q4_1 it is not ggml's `vec_dot` order (eight partial sums per block), so they are held by
//! tolerances.

use crate::dispatch::{active, KernelTable};
use crate::error::{KernelError, Operand};
use crate::matvec::{cast, vec_dot_type};
use core::ops::Range;
use formats::quant::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ8_0, BlockQ8_1, GgmlType};

/// Rows per group: four on AArch64 (a 128-bit register of f32 or i32 lanes), eight on x86-64
/// (256 bits).
pub const GROUP: usize = if cfg!(target_arch = "x86_64") { 8 } else { 4 };

/// What the packed Q4_0 bytes are XORed with ([`GroupQ4_0`]).
pub const Q4_0_FLIP: u8 = if cfg!(target_arch = "aarch64") {
    0x88
} else {
    0
};

/// What the packed Q8_0 quants are XORed with ([`GroupQ8_0`]).
pub const Q8_0_FLIP: u8 = if cfg!(target_arch = "x86_64") {
    0x80
} else {
    0
};

/// [`GROUP`] Q8_0 rows' block `b`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GroupQ8_0 {
    /// The rows' scales (f16 bits).
    pub d: [u16; GROUP],
    /// `qs[4 GROUP k + 4r + j]`: row `r`'s quant `4k + j`, XOR [`Q8_0_FLIP`].
    pub qs: [i8; 32 * GROUP],
}

/// An activation block of the fast integer kernels (`x86::avx2::packed`, `arm::neon::fast`,
/// `arm::neon::packed`): Q8_0, or Q8_1 (the activations of Q4_1, the type with a minimum), which
/// also carries `d * sum(quants)`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) trait Activation: Copy {
    fn qs(&self) -> &[i8; 32];
    /// The scale (f16 bits).
    fn d(&self) -> u16;
    /// `d * sum(quants)` (f16 bits); Q8_0 has none (0), and only the minimum's term reads it.
    fn s(&self) -> u16;
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
impl Activation for BlockQ8_0 {
    #[inline(always)]
    fn qs(&self) -> &[i8; 32] {
        &self.qs
    }
    #[inline(always)]
    fn d(&self) -> u16 {
        self.d
    }
    #[inline(always)]
    fn s(&self) -> u16 {
        0
    }
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
impl Activation for BlockQ8_1 {
    #[inline(always)]
    fn qs(&self) -> &[i8; 32] {
        &self.qs
    }
    #[inline(always)]
    fn d(&self) -> u16 {
        self.d
    }
    #[inline(always)]
    fn s(&self) -> u16 {
        self.s
    }
}

/// [`GROUP`] Q5_0 rows' block `b` (packed on x86-64 only).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GroupQ5_0 {
    /// The rows' scales (f16 bits).
    pub d: [u16; GROUP],
    /// Row `r`'s fifth bits, rearranged ([`spread_high_bits`]): bit `8j + k` is the fifth bit of
    /// quant `4k + j`, so that shifting by `k` and masking every byte's bit gives word `k`'s.
    pub qh: [u32; GROUP],
    /// `qs[4 GROUP k + 4r + j]`: row `r`'s low-nibble byte `4k + j`.
    pub qs: [u8; 16 * GROUP],
}

/// The fifth bits of a Q5_0 block (bit `i`: quant `i`) as [`GroupQ5_0::qh`] holds them: bit
/// `4k + j` moves to `8j + k`.
pub const fn spread_high_bits(qh: u32) -> u32 {
    let mut out = 0;
    let mut i = 0;
    while i < 32 {
        out |= ((qh >> i) & 1) << (8 * (i % 4) + i / 4);
        i += 1;
    }
    out
}

/// [`spread_high_bits`] undone.
pub const fn gather_high_bits(spread: u32) -> u32 {
    let mut out = 0;
    let mut i = 0;
    while i < 32 {
        out |= ((spread >> (8 * (i % 4) + i / 4)) & 1) << i;
        i += 1;
    }
    out
}

/// [`GROUP`] Q4_1 rows' block `b`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GroupQ4_1 {
    /// The rows' scales (f16 bits).
    pub d: [u16; GROUP],
    /// The rows' minimums (f16 bits).
    pub m: [u16; GROUP],
    /// `qs[4 GROUP k + 4r + j]`: row `r`'s byte `4k + j`.
    pub qs: [u8; 16 * GROUP],
}

/// [`GROUP`] Q4_0 rows' block `b`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GroupQ4_0 {
    /// The rows' scales (f16 bits).
    pub d: [u16; GROUP],
    /// `qs[4 GROUP k + 4r + j]`: row `r`'s byte `4k + j`, XOR [`Q4_0_FLIP`].
    pub qs: [u8; 16 * GROUP],
}

/// The packed kernels of a table: rows of groups against one activation (`out[i]` for row
/// `first + i` of the groups given, `first` in 0..4: a range that starts inside a group).
#[derive(Debug)]
pub(crate) struct PackedKernels {
    pub(crate) q8_0: PackedMatvec<GroupQ8_0>,
    pub(crate) q4_0: PackedMatvec<GroupQ4_0>,
    /// The same rows times several tokens' activations (`acts`: one row of blocks per token,
    /// `outs[token]`), each value the matrix-vector kernel's.
    pub(crate) q8_0_mm: PackedMatmul<GroupQ8_0>,
    pub(crate) q4_0_mm: PackedMatmul<GroupQ4_0>,
    /// Q5_0, where the table packs it: the matrix-vector and matrix-matrix kernels.
    pub(crate) q5_0: Option<(PackedMatvec<GroupQ5_0>, PackedMatmul<GroupQ5_0>)>,
    /// Q4_1 (against Q8_1 activations), where the table packs it.
    pub(crate) q4_1: Option<(
        PackedMatvec<GroupQ4_1, BlockQ8_1>,
        PackedMatmul<GroupQ4_1, BlockQ8_1>,
    )>,
}

/// A packed matrix-vector kernel ([`PackedKernels::q8_0`]).
pub(crate) type PackedMatvec<W, A = BlockQ8_0> =
    fn(w: &[W], first: usize, act: &[A], out: &mut [f32]);

/// A packed matrix-matrix kernel ([`PackedKernels::q8_0_mm`]).
pub(crate) type PackedMatmul<W, A = BlockQ8_0> =
    fn(w: &[W], first: usize, acts: &[A], outs: &mut [&mut [f32]]);

/// Whether the active table multiplies weights of type `ty` packed (then [`pack`] packs them).
pub fn packs(ty: GgmlType) -> bool {
    active().packs(ty)
}

/// Bytes of `rows` rows of `n` values of type `ty` packed (the same as in the file), or `None`
/// for a type without a packed layout or rows that are not whole groups.
pub fn packed_len(ty: GgmlType, rows: usize, n: usize) -> Option<usize> {
    if !matches!(
        ty,
        GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q4_1
    ) || !rows.is_multiple_of(GROUP)
    {
        return None;
    }
    ty.row_size(n)?.checked_mul(rows)
}

/// Check a matrix of `ty` and its packed buffer; returns the row size and the row count.
fn shape(ty: GgmlType, bytes: &[u8], n: usize) -> Result<(usize, usize), KernelError> {
    let (row_bytes, _) = crate::matvec::row_bytes(ty, n)?;
    let rows = crate::matvec::weight_rows(ty, bytes, row_bytes, &(0..0))?;
    match packed_len(ty, rows, n) {
        Some(_) => Ok((row_bytes, rows)),
        None => Err(KernelError::NotPacked { ty, rows }),
    }
}

/// Pack the rows of `src` (a matrix of `ty`, rows of `n` values, a multiple of [`GROUP`] rows) into
/// `dst` ([`packed_len`] bytes, 2-aligned).
pub fn pack(ty: GgmlType, src: &[u8], n: usize, dst: &mut [u8]) -> Result<(), KernelError> {
    let (_, rows) = shape(ty, src, n)?;
    if dst.len() != src.len() {
        return Err(KernelError::OutputLength {
            got: dst.len(),
            need: src.len(),
        });
    }
    match ty {
        GgmlType::Q8_0 => pack_as::<BlockQ8_0>(src, dst, rows, n / 32, ty),
        GgmlType::Q4_0 => pack_as::<BlockQ4_0>(src, dst, rows, n / 32, ty),
        GgmlType::Q5_0 => pack_as::<BlockQ5_0>(src, dst, rows, n / 32, ty),
        GgmlType::Q4_1 => pack_as::<BlockQ4_1>(src, dst, rows, n / 32, ty),
        _ => Err(KernelError::NotPacked { ty, rows }),
    }
}

/// A file block type and its packed group block: where row `r`'s scale and bytes go.
trait Layout: bytemuck::Pod {
    type Group: bytemuck::Pod;
    /// Put `self` as row `r` of `group`.
    fn put(&self, group: &mut Self::Group, r: usize);
    /// Take row `r` of `group` into `self`.
    fn take(&mut self, group: &Self::Group, r: usize);
}

/// Put a row's quant bytes `row` (byte `i` is `4k + j`, `k = i / 4`) as row `r` of a group's
/// `qs` (at `4 GROUP k + 4r + j`), each XOR `flip`.
fn put_bytes(row: &[u8], qs: &mut [u8], r: usize, flip: u8) {
    for (i, &q) in row.iter().enumerate() {
        qs[4 * GROUP * (i / 4) + 4 * r + i % 4] = q ^ flip;
    }
}

/// [`put_bytes`] undone: row `r` of a group's `qs` into `row`.
fn take_bytes(row: &mut [u8], qs: &[u8], r: usize, flip: u8) {
    for (i, q) in row.iter_mut().enumerate() {
        *q = qs[4 * GROUP * (i / 4) + 4 * r + i % 4] ^ flip;
    }
}

impl Layout for BlockQ8_0 {
    type Group = GroupQ8_0;
    fn put(&self, group: &mut GroupQ8_0, r: usize) {
        group.d[r] = self.d;
        let qs: &mut [u8; 32 * GROUP] = bytemuck::cast_mut(&mut group.qs);
        put_bytes(bytemuck::cast_slice(&self.qs), qs, r, Q8_0_FLIP);
    }
    fn take(&mut self, group: &GroupQ8_0, r: usize) {
        self.d = group.d[r];
        let row: &mut [u8; 32] = bytemuck::cast_mut(&mut self.qs);
        take_bytes(row, bytemuck::cast_slice(&group.qs), r, Q8_0_FLIP);
    }
}

impl Layout for BlockQ4_0 {
    type Group = GroupQ4_0;
    fn put(&self, group: &mut GroupQ4_0, r: usize) {
        group.d[r] = self.d;
        put_bytes(&self.qs, &mut group.qs, r, Q4_0_FLIP);
    }
    fn take(&mut self, group: &GroupQ4_0, r: usize) {
        self.d = group.d[r];
        take_bytes(&mut self.qs, &group.qs, r, Q4_0_FLIP);
    }
}

impl Layout for BlockQ4_1 {
    type Group = GroupQ4_1;
    fn put(&self, group: &mut GroupQ4_1, r: usize) {
        (group.d[r], group.m[r]) = (self.d, self.m);
        put_bytes(&self.qs, &mut group.qs, r, 0);
    }
    fn take(&mut self, group: &GroupQ4_1, r: usize) {
        (self.d, self.m) = (group.d[r], group.m[r]);
        take_bytes(&mut self.qs, &group.qs, r, 0);
    }
}

impl Layout for BlockQ5_0 {
    type Group = GroupQ5_0;
    fn put(&self, group: &mut GroupQ5_0, r: usize) {
        group.d[r] = self.d;
        group.qh[r] = spread_high_bits(u32::from_le_bytes(self.qh));
        put_bytes(&self.qs, &mut group.qs, r, 0);
    }
    fn take(&mut self, group: &GroupQ5_0, r: usize) {
        self.d = group.d[r];
        self.qh = gather_high_bits(group.qh[r]).to_le_bytes();
        take_bytes(&mut self.qs, &group.qs, r, 0);
    }
}

/// [`pack`] for the file blocks `B` (`nb` per row).
fn pack_as<B: Layout>(
    src: &[u8],
    dst: &mut [u8],
    rows: usize,
    nb: usize,
    ty: GgmlType,
) -> Result<(), KernelError> {
    let s = cast::<B>(src, Operand::Weights, ty)?;
    let d = cast_mut::<B::Group>(dst, ty)?;
    for g in 0..rows / GROUP {
        for b in 0..nb {
            for r in 0..GROUP {
                s[(g * GROUP + r) * nb + b].put(&mut d[g * nb + b], r);
            }
        }
    }
    Ok(())
}

/// [`unpack_row`] for the file blocks `B`: row `r` of group `g` (`nb` blocks per row).
fn unpack_as<B: Layout>(
    packed: &[u8],
    out: &mut [u8],
    (g, r, nb): (usize, usize, usize),
    ty: GgmlType,
) -> Result<(), KernelError> {
    let p = cast::<B::Group>(packed, Operand::Weights, ty)?;
    for (b, blk) in cast_mut::<B>(out, ty)?.iter_mut().enumerate() {
        blk.take(&p[g * nb + b], r);
    }
    Ok(())
}

/// Row `row` of a packed matrix (`packed`, rows of `n` values) in the file's layout, into `out`
/// (one row's bytes).
pub fn unpack_row(
    ty: GgmlType,
    packed: &[u8],
    row: usize,
    n: usize,
    out: &mut [u8],
) -> Result<(), KernelError> {
    let (row_bytes, rows) = shape(ty, packed, n)?;
    if row >= rows {
        return Err(KernelError::RowRange {
            ty,
            start: row,
            end: row + 1,
            rows,
        });
    }
    if out.len() != row_bytes {
        return Err(KernelError::OutputLength {
            got: out.len(),
            need: row_bytes,
        });
    }
    let at = (row / GROUP, row % GROUP, n / 32);
    match ty {
        GgmlType::Q8_0 => unpack_as::<BlockQ8_0>(packed, out, at, ty),
        GgmlType::Q4_0 => unpack_as::<BlockQ4_0>(packed, out, at, ty),
        GgmlType::Q5_0 => unpack_as::<BlockQ5_0>(packed, out, at, ty),
        GgmlType::Q4_1 => unpack_as::<BlockQ4_1>(packed, out, at, ty),
        _ => Err(KernelError::NotPacked { ty, rows }),
    }
}

fn cast_mut<B: bytemuck::Pod>(bytes: &mut [u8], ty: GgmlType) -> Result<&mut [B], KernelError> {
    bytemuck::try_cast_slice_mut(bytes).map_err(|_| KernelError::Misaligned {
        operand: Operand::Weights,
        ty,
        align: core::mem::align_of::<B>(),
    })
}

/// A checked call on a packed matrix: the table's kernels, the groups the rows touch, where the
/// rows start in the first of them, and the activation row size.
struct Call<'k, 'w> {
    kernels: &'k PackedKernels,
    groups: &'w [u8],
    first: usize,
    act_bytes: usize,
    nrows: usize,
}

/// Where a packed product's results go: one activation's, or several tokens'.
enum Outs<'o, 'p> {
    One(&'o mut [f32]),
    Many(&'o mut [&'p mut [f32]]),
}

impl Call<'_, '_> {
    /// Run the kernel of `ty` (checked by [`KernelTable::packed_call`]) on activations `act`.
    fn run(&self, ty: GgmlType, act: &[u8], outs: Outs<'_, '_>) -> Result<(), KernelError> {
        let k = self.kernels;
        let not_packed = KernelError::NotPacked {
            ty,
            rows: self.nrows,
        };
        match ty {
            GgmlType::Q8_0 => self.pair((k.q8_0, k.q8_0_mm), ty, act, outs),
            GgmlType::Q4_0 => self.pair((k.q4_0, k.q4_0_mm), ty, act, outs),
            GgmlType::Q5_0 => self.pair(k.q5_0.ok_or(not_packed)?, ty, act, outs),
            GgmlType::Q4_1 => self.pair(k.q4_1.ok_or(not_packed)?, ty, act, outs),
            _ => Err(not_packed),
        }
    }

    /// One type's kernels on these groups, the activation blocks `A` cast from `act`.
    fn pair<W: bytemuck::Pod, A: bytemuck::Pod>(
        &self,
        (matvec, matmul): (PackedMatvec<W, A>, PackedMatmul<W, A>),
        ty: GgmlType,
        act: &[u8],
        outs: Outs<'_, '_>,
    ) -> Result<(), KernelError> {
        let w = cast::<W>(self.groups, Operand::Weights, ty)?;
        let a = cast::<A>(act, Operand::Activation, vec_dot_type(ty))?;
        match outs {
            Outs::One(out) => matvec(w, self.first, a, out),
            Outs::Many(outs) => matmul(w, self.first, a, outs),
        }
        Ok(())
    }
}

impl KernelTable {
    /// The checks common to [`Self::matvec_packed`] and [`Self::matmul_packed`]: the packed
    /// matrix's shape, a kernel for it, the row range.
    fn packed_call<'k, 'w>(
        &'k self,
        ty: GgmlType,
        packed: &'w [u8],
        rows: &Range<usize>,
        n: usize,
    ) -> Result<Call<'k, 'w>, KernelError> {
        let (row_bytes, nrows) = shape(ty, packed, n)?;
        let Some(kernels) = self.packed.as_ref().filter(|_| self.packs(ty)) else {
            return Err(KernelError::NotPacked { ty, rows: nrows });
        };
        let (_, act_bytes) = crate::matvec::row_bytes(ty, n)?;
        if rows.start > rows.end || rows.end > nrows {
            return Err(KernelError::RowRange {
                ty,
                start: rows.start,
                end: rows.end,
                rows: nrows,
            });
        }
        let (g0, g1) = (rows.start / GROUP, rows.end.div_ceil(GROUP));
        let group_bytes = GROUP * row_bytes;
        Ok(Call {
            kernels,
            groups: &packed[g0 * group_bytes..g1 * group_bytes],
            first: rows.start % GROUP,
            act_bytes,
            nrows,
        })
    }
}

impl KernelTable {
    /// Whether this table multiplies weights of type `ty` packed.
    pub fn packs(&self, ty: GgmlType) -> bool {
        match (&self.packed, ty) {
            (Some(_), GgmlType::Q8_0 | GgmlType::Q4_0) => true,
            (Some(k), GgmlType::Q5_0) => k.q5_0.is_some(),
            (Some(k), GgmlType::Q4_1) => k.q4_1.is_some(),
            _ => false,
        }
    }

    /// [`crate::KernelTable::matvec`] on a matrix packed by [`pack`]: rows `rows` of it (any
    /// range) times one activation row quantized for `ty`.
    pub fn matvec_packed(
        &self,
        ty: GgmlType,
        packed: &[u8],
        rows: Range<usize>,
        n: usize,
        act: &[u8],
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        let c = self.packed_call(ty, packed, &rows, n)?;
        if act.len() != c.act_bytes {
            return Err(KernelError::ActivationSize {
                ty: vec_dot_type(ty),
                n,
                got: act.len(),
                need: c.act_bytes,
            });
        }
        if out.len() != rows.len() {
            return Err(KernelError::OutputLength {
                got: out.len(),
                need: rows.len(),
            });
        }
        if rows.is_empty() {
            return Ok(());
        }
        c.run(ty, act, Outs::One(out))
    }
}

/// [`KernelTable::matvec_packed`] with the kernels in use.
pub fn matvec_packed(
    ty: GgmlType,
    packed: &[u8],
    rows: Range<usize>,
    n: usize,
    act: &[u8],
    out: &mut [f32],
) -> Result<(), KernelError> {
    active().matvec_packed(ty, packed, rows, n, act, out)
}

/// [`crate::matmul`] on a packed matrix: rows `rows` times each token's activation (`acts`,
/// one row each) into `outs[token]`, each value the one [`matvec_packed`] gives.
pub fn matmul_packed(
    ty: GgmlType,
    packed: &[u8],
    rows: Range<usize>,
    n: usize,
    acts: &[u8],
    outs: &mut [&mut [f32]],
) -> Result<(), KernelError> {
    active().matmul_packed(ty, packed, rows, n, acts, outs)
}

impl KernelTable {
    /// [`matmul_packed`] on this table.
    pub fn matmul_packed(
        &self,
        ty: GgmlType,
        packed: &[u8],
        rows: Range<usize>,
        n: usize,
        acts: &[u8],
        outs: &mut [&mut [f32]],
    ) -> Result<(), KernelError> {
        let c = self.packed_call(ty, packed, &rows, n)?;
        let need = c
            .act_bytes
            .checked_mul(outs.len())
            .ok_or(KernelError::RowTooLong { ty, n })?;
        if acts.len() != need {
            return Err(KernelError::ActivationsSize {
                ty: vec_dot_type(ty),
                n,
                tokens: outs.len(),
                got: acts.len(),
                need,
            });
        }
        if let Some((t, o)) = outs.iter().enumerate().find(|(_, o)| o.len() != rows.len()) {
            return Err(KernelError::ProductOutputLength {
                token: t,
                got: o.len(),
                rows: rows.len(),
            });
        }
        if rows.is_empty() || outs.is_empty() {
            return Ok(());
        }
        c.run(ty, acts, Outs::Many(outs))
    }
}
