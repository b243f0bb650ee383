//! Decode kernels for weights packed in groups of four rows (`crate::packed`): one 16-byte load
//! holds four values of each of four rows, and one indexed `SDOT` adds each row's four products
//! into its own lane, so a block of four rows is 8 `SDOT`s into one register, one conversion,
//! one scale product (the four rows' f16 scales are one 8-byte load) and one `FMLA`: no
//! pairwise folds, no per-row address arithmetic. The arithmetic is [`super::fast`]'s, bit
//! for bit: the same exact integer block sums, `fma(d_x * d_y, sum, acc)` per block and row
//! (Q4_0's `16 (q - 8)` products are scaled back by `d / 16`, exactly), and for Q4_1 (against
//! Q8_1 activations) its minimum after it, `fma(m_x, s_y, acc)` (the four rows' minimums one
//! more 8-byte load). Two groups (eight rows) share each activation block's loads.

use super::{fcvtl, fp16, halves, load_i8, load_u8, nibbles};
use crate::packed::{Activation, GroupQ4_0, GroupQ4_1, GroupQ8_0, GROUP};
use core::arch::aarch64::*;
use core::arch::asm;
use formats::quant::{BlockQ8_0, BlockQ8_1};

/// `SDOT acc.4s, a.16b, b.4b[L]`: lane `r` of `acc` adds the products of `a`'s bytes
/// `4r..4r + 4` with `b`'s bytes `4L..4L + 4`.
///
/// # Safety
/// The CPU must support the dot-product extension (`dotprod`).
#[inline]
#[target_feature(enable = "neon")]
unsafe fn sdot_lane<const L: i32>(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: the caller guarantees the instruction exists; it reads and writes only the three
    // vector registers named.
    unsafe {
        asm!(
            ".arch_extension dotprod",
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.4b[{l}]",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            l = const L,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// The four rows' scales (f16 bits) as f32.
#[inline]
#[target_feature(enable = "neon")]
fn scales(d: [u16; GROUP]) -> float32x4_t {
    fcvtl(vcreate_u16(u64::from_le_bytes(bytemuck::cast(d))))
}

/// An activation block as the packed kernels take it: its quants, its scale and (for Q4_1's
/// minimum) `d * sum(quants)`.
#[derive(Clone, Copy)]
struct Y {
    q: [int8x16_t; 2],
    d: f32,
    s: f32,
}

/// A packed block type: its quants as eight registers of signed bytes, register `k < 4` holding
/// the four rows' values `4k..4k + 4` and register `4 + k` their values `16 + 4k..16 + 4k + 4`
/// (possibly times a power of two, undone by [`Packed::SCALE`]).
trait Packed: Copy {
    /// The activation blocks it is multiplied with.
    type Y: Activation;
    /// What the activation's scale is multiplied by (exactly: a power of two).
    const SCALE: f32;
    /// Whether each block adds `m_x * s_y` (Q4_1's minimum).
    const MIN: bool = false;
    fn d(&self) -> [u16; GROUP];
    /// The four rows' minimums (f16 bits), where [`Self::MIN`].
    fn m(&self) -> [u16; GROUP] {
        [0; GROUP]
    }
    /// # Safety
    /// The CPU must support NEON (every AArch64 CPU does).
    unsafe fn quants(&self) -> [int8x16_t; 8];
}

impl Packed for GroupQ8_0 {
    type Y = BlockQ8_0;
    const SCALE: f32 = 1.0;
    #[inline(always)]
    fn d(&self) -> [u16; GROUP] {
        self.d
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn quants(&self) -> [int8x16_t; 8] {
        let q: &[[i8; 16]; 8] = bytemuck::cast_ref(&self.qs);
        q.map(|v| load_i8(&v))
    }
}

impl Packed for GroupQ4_0 {
    type Y = BlockQ8_0;
    /// The products are `16 (q - 8) * y`.
    const SCALE: f32 = 0.0625;
    #[inline(always)]
    fn d(&self) -> [u16; GROUP] {
        self.d
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn quants(&self) -> [int8x16_t; 8] {
        let q: &[[u8; 16]; 4] = bytemuck::cast_ref(&self.qs);
        let high = vdupq_n_u8(0xf0);
        // `16 (q - 8)` as signed bytes: the low nibbles shifted up, the high ones masked.
        let lo = q.map(|v| vreinterpretq_s8_u8(vshlq_n_u8::<4>(load_u8(&v))));
        let hi = q.map(|v| vreinterpretq_s8_u8(vandq_u8(load_u8(&v), high)));
        [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]]
    }
}

impl Packed for GroupQ4_1 {
    type Y = BlockQ8_1;
    const SCALE: f32 = 1.0;
    const MIN: bool = true;
    #[inline(always)]
    fn d(&self) -> [u16; GROUP] {
        self.d
    }
    #[inline(always)]
    fn m(&self) -> [u16; GROUP] {
        self.m
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn quants(&self) -> [int8x16_t; 8] {
        let q: &[[u8; 16]; 4] = bytemuck::cast_ref(&self.qs);
        // The file's unsigned nibbles (0..16): the low ones are values `4k + j`, the high ones
        // `16 + 4k + j`.
        let [a, b, c, d] = q.map(|v| nibbles(load_u8(&v)));
        [a[0], b[0], c[0], d[0], a[1], b[1], c[1], d[1]]
    }
}

/// The four rows' exact integer block sums of `q` ([`Packed::quants`]) against `y`.
///
/// # Safety
/// The CPU must support the dot-product extension.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn sums(q: &[int8x16_t; 8], y: &Y) -> int32x4_t {
    let [y0, y1] = y.q;
    let mut s = vdupq_n_s32(0);
    // SAFETY: the caller guarantees the dot-product extension (every `sdot_lane` here).
    unsafe {
        s = sdot_lane::<0>(s, q[0], y0);
        s = sdot_lane::<1>(s, q[1], y0);
        s = sdot_lane::<2>(s, q[2], y0);
        s = sdot_lane::<3>(s, q[3], y0);
        s = sdot_lane::<0>(s, q[4], y1);
        s = sdot_lane::<1>(s, q[5], y1);
        s = sdot_lane::<2>(s, q[6], y1);
        s = sdot_lane::<3>(s, q[7], y1);
    }
    s
}

/// An activation block for the packed kernels.
#[inline]
#[target_feature(enable = "neon")]
fn y_block<P: Packed>(yb: &P::Y) -> Y {
    Y {
        q: halves(yb.qs()).map(|h| load_i8(&h)),
        d: fp16(yb.d()) * P::SCALE,
        s: if P::MIN { fp16(yb.s()) } else { 0.0 },
    }
}

/// `G` groups (`w[g]`, each `y.len()` blocks) against `y`: each group's four row sums. An
/// activation block is loaded once for all `G` groups; each group's lanes are
/// `fma(d_x * (d_y * SCALE), sums, acc)` block after block (then `fma(m_x, s_y, acc)` where
/// [`Packed::MIN`]).
///
/// # Safety
/// The CPU must support the dot-product extension.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn groups<P: Packed, const G: usize>(w: [&[P]; G], y: &[P::Y]) -> [float32x4_t; G] {
    let mut acc = [vdupq_n_f32(0.0); G];
    // Every slice cut to the shortest: the indexing below needs no bounds checks.
    let n = w.iter().fold(y.len(), |n, g| n.min(g.len()));
    let (w, y) = (w.map(|g| &g[..n]), &y[..n]);
    for (b, yb) in y.iter().enumerate() {
        let a = y_block::<P>(yb);
        for g in 0..G {
            let blk = &w[g][b];
            // SAFETY: the caller guarantees the dot-product extension (and NEON is there).
            let s = unsafe { sums(&blk.quants(), &a) };
            let d = vmulq_n_f32(scales(blk.d()), a.d);
            acc[g] = vfmaq_f32(acc[g], vcvtq_f32_s32(s), d);
            if P::MIN {
                acc[g] = vfmaq_n_f32(acc[g], scales(blk.m()), a.s);
            }
        }
    }
    acc
}

/// The rows `first..first + out.len()` of the groups `w` (`act.len()` blocks per row) against
/// `act`: two whole groups at a time, then one (the rows of a partial group are computed and
/// the others dropped: each lane is its own row's arithmetic).
///
/// # Safety
/// The CPU must support the dot-product extension.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn rows<P: Packed>(w: &[P], first: usize, act: &[P::Y], out: &mut [f32]) {
    let nb = act.len();
    if nb == 0 {
        out.fill(0.0);
        return;
    }
    let mut gs = w.chunks_exact(nb);
    let mut done = 0;
    let store = |v: float32x4_t, lo: usize, out: &mut [f32]| {
        let mut lanes = [0f32; GROUP];
        // SAFETY: `lanes` has room for the four f32 the store writes.
        unsafe { vst1q_f32(lanes.as_mut_ptr(), v) };
        out.copy_from_slice(&lanes[lo..lo + out.len()]);
    };
    // A range that starts inside a group: that group alone.
    if first > 0 {
        let Some(g) = gs.next() else { return };
        // SAFETY: the caller guarantees the dot-product extension.
        let [v] = unsafe { groups::<P, 1>([g], act) };
        let n = (GROUP - first).min(out.len());
        store(v, first, &mut out[..n]);
        done = n;
    }
    while out.len() - done >= 2 * GROUP {
        let (Some(g0), Some(g1)) = (gs.next(), gs.next()) else {
            return;
        };
        // SAFETY: the caller guarantees the dot-product extension.
        let v = unsafe { groups::<P, 2>([g0, g1], act) };
        let o: &mut [f32; 2 * GROUP] = (&mut out[done..done + 2 * GROUP]).try_into().unwrap();
        // SAFETY: `o` has room for the eight f32 the two stores write.
        unsafe {
            vst1q_f32(o.as_mut_ptr(), v[0]);
            vst1q_f32(o.as_mut_ptr().add(GROUP), v[1]);
        }
        done += 2 * GROUP;
    }
    while done < out.len() {
        let Some(g) = gs.next() else { return };
        // SAFETY: the caller guarantees the dot-product extension.
        let [v] = unsafe { groups::<P, 1>([g], act) };
        let n = GROUP.min(out.len() - done);
        store(v, 0, &mut out[done..done + n]);
        done += n;
    }
}

/// One group (`w`, `y[t].len()` blocks) against `T` tokens' activations: each token's four row
/// sums. A weight block is loaded (and Q4_0's unpacked) once for the `T` tokens; each (row,
/// token) is [`groups`]'s arithmetic, so prompt and decode agree bit for bit.
///
/// # Safety
/// The CPU must support the dot-product extension.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn tokens<P: Packed, const T: usize>(w: &[P], y: [&[P::Y]; T]) -> [float32x4_t; T] {
    let mut acc = [vdupq_n_f32(0.0); T];
    // Every slice cut to the shortest: the indexing below needs no bounds checks.
    let n = y.iter().fold(w.len(), |n, t| n.min(t.len()));
    let (w, y) = (&w[..n], y.map(|t| &t[..n]));
    for (b, blk) in w.iter().enumerate() {
        // SAFETY: every AArch64 CPU has NEON.
        let q = unsafe { blk.quants() };
        let (xd, xm) = (scales(blk.d()), scales(blk.m()));
        for t in 0..T {
            let a = y_block::<P>(&y[t][b]);
            // SAFETY: the caller guarantees the dot-product extension.
            let s = unsafe { sums(&q, &a) };
            acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(s), vmulq_n_f32(xd, a.d));
            if P::MIN {
                acc[t] = vfmaq_n_f32(acc[t], xm, a.s);
            }
        }
    }
    acc
}

/// Tokens per pass of [`mm`].
const TOKENS: usize = 4;

/// Rows `first..first + n` of the groups `w` (`n` the outputs' length) times every token's
/// activation (`acts`, one row of blocks each) into `outs[token]`, group by group (the group's
/// blocks stay in cache while `tile(group, tokens from t)` computes up to [`TOKENS`] tokens' four
/// row sums at a time; it returns how many it did).
#[inline(always)]
fn by_group<P, A>(
    w: &[P],
    first: usize,
    acts: &[A],
    outs: &mut [&mut [f32]],
    tile: impl Fn(&[P], Rows<'_, A>) -> (usize, [float32x4_t; TOKENS]),
) {
    let Some(n) = outs.first().map(|o| o.len()) else {
        return;
    };
    let nt = outs.len();
    let nb = acts.len() / nt;
    if nb == 0 {
        outs.iter_mut().for_each(|o| o.fill(0.0));
        return;
    }
    let ys = &acts[..nb * nt];
    let mut done = 0;
    for (g, gw) in w.chunks_exact(nb).enumerate() {
        if done == n {
            break;
        }
        let lo = if g == 0 { first } else { 0 };
        let take = (GROUP - lo).min(n - done);
        let mut t = 0;
        while t < nt {
            let (k, v) = tile(gw, Rows(ys[t * nb..].chunks_exact(nb)));
            for (i, v) in v.into_iter().take(k).enumerate() {
                let out = &mut outs[t + i][done..done + take];
                if take == GROUP {
                    let o: &mut [f32; GROUP] = out.try_into().unwrap();
                    // SAFETY: `o` has room for the four f32 the store writes.
                    unsafe { vst1q_f32(o.as_mut_ptr(), v) };
                } else {
                    let mut lanes = [0f32; GROUP];
                    // SAFETY: `lanes` has room for the four f32 the store writes.
                    unsafe { vst1q_f32(lanes.as_mut_ptr(), v) };
                    out.copy_from_slice(&lanes[lo..lo + take]);
                }
            }
            t += k;
        }
        done += take;
    }
}

/// The activation rows of the tokens left, in order.
#[derive(Clone)]
struct Rows<'a, A>(core::slice::ChunksExact<'a, A>);

impl<'a, A> Rows<'a, A> {
    /// The next `K` tokens' rows, or `None` (taking nothing) when fewer are left.
    fn take<const K: usize>(&self) -> Option<[&'a [A]; K]> {
        let mut it = self.0.clone();
        let mut out = [&[][..]; K];
        for o in out.iter_mut() {
            *o = it.next()?;
        }
        Some(out)
    }

    /// The next token's row (`by_group` calls a tile only while one is left; empty otherwise).
    fn one(&self) -> [&'a [A]; 1] {
        self.take::<1>().unwrap_or([&[]])
    }
}

/// [`by_group`] with indexed `SDOT`: [`TOKENS`] tokens per weight block, then one by one.
///
/// # Safety
/// The CPU must support the dot-product extension.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn mm<P: Packed>(w: &[P], first: usize, acts: &[P::Y], outs: &mut [&mut [f32]]) {
    by_group(w, first, acts, outs, |gw, ys| {
        match (ys.take::<TOKENS>(), ys.take::<1>()) {
            // SAFETY: the caller guarantees the dot-product extension.
            (Some(y), _) => (TOKENS, unsafe { tokens::<P, TOKENS>(gw, y) }),
            (None, Some(y)) => {
                // SAFETY: as above.
                let [v] = unsafe { tokens::<P, 1>(gw, y) };
                (1, [v; TOKENS])
            }
            (None, None) => (usize::MAX, [vdupq_n_f32(0.0); TOKENS]),
        }
    });
}

/// `SMMLA acc.4s, a.16b, b.16b`: `acc` (2 x 2, row-major) += `a` (2 x 8 bytes, row-major) times
/// `b` (2 x 8 bytes, one row per column) transposed: lane `2i + j` adds row `i` of `a` dotted
/// with row `j` of `b`.
///
/// # Safety
/// The CPU must support the int8 matrix multiplication extension (`i8mm`).
#[inline]
#[target_feature(enable = "neon")]
unsafe fn smmla(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: the caller guarantees the instruction exists; it reads and writes only the three
    // vector registers named.
    unsafe {
        asm!(
            ".arch_extension i8mm",
            "smmla {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// One group (`w`) against `P2` pairs of tokens' activations with `SMMLA`: per pair, the four
/// rows' sums for its first token and for its second. A 2 x 8 operand of rows is one
/// `ZIP1`/`ZIP2` of two of [`Packed::quants`]' registers (four bytes of each row from each),
/// made once per block for all pairs; a 2 x 8 operand of tokens one `ZIP` of the tokens' 64-bit
/// halves. The integer sums are exact, and each (row, token) gets
/// `fma(d_x * (d_y * SCALE), sum, acc)` (and `fma(m_x, s_y, acc)`) as in [`tokens`]: the same
/// values bit for bit.
///
/// # Safety
/// The CPU must support the dot-product and int8 matrix multiplication extensions.
#[inline]
#[target_feature(enable = "neon,dotprod,i8mm")]
unsafe fn token_pairs<P: Packed, const P2: usize>(
    w: &[P],
    y: [[&[P::Y]; 2]; P2],
) -> [[float32x4_t; 2]; P2] {
    // Per pair: rows 0-1 and rows 2-3, lanes `[r t0, r t1, r' t0, r' t1]`.
    let mut acc = [[vdupq_n_f32(0.0); 2]; P2];
    // Every slice cut to the shortest: the indexing below needs no bounds checks.
    let n = y.iter().flatten().fold(w.len(), |n, t| n.min(t.len()));
    let (w, y) = (&w[..n], y.map(|p| p.map(|t| &t[..n])));
    for (b, blk) in w.iter().enumerate() {
        // SAFETY: every AArch64 CPU has NEON.
        let q = unsafe { blk.quants() }.map(|v| vreinterpretq_s32_s8(v));
        let rows01: [int8x16_t; 4] =
            core::array::from_fn(|m| vreinterpretq_s8_s32(vzip1q_s32(q[2 * m], q[2 * m + 1])));
        let rows23: [int8x16_t; 4] =
            core::array::from_fn(|m| vreinterpretq_s8_s32(vzip2q_s32(q[2 * m], q[2 * m + 1])));
        let (xd, xm) = (scales(blk.d()), scales(blk.m()));
        let (x01, x23) = (vzip1q_f32(xd, xd), vzip2q_f32(xd, xd));
        let (m01, m23) = (vzip1q_f32(xm, xm), vzip2q_f32(xm, xm));
        for (acc, y) in acc.iter_mut().zip(&y) {
            let (a0, a1) = (y_block::<P>(&y[0][b]), y_block::<P>(&y[1][b]));
            let half = |h: usize, hi: bool| {
                let (x, z) = (vreinterpretq_s64_s8(a0.q[h]), vreinterpretq_s64_s8(a1.q[h]));
                vreinterpretq_s8_s64(if hi {
                    vzip2q_s64(x, z)
                } else {
                    vzip1q_s64(x, z)
                })
            };
            let toks = [half(0, false), half(0, true), half(1, false), half(1, true)];
            let (mut s01, mut s23) = (vdupq_n_s32(0), vdupq_n_s32(0));
            for m in 0..4 {
                // SAFETY: the caller guarantees the i8mm extension.
                unsafe {
                    s01 = smmla(s01, rows01[m], toks[m]);
                    s23 = smmla(s23, rows23[m], toks[m]);
                }
            }
            let yd2 = vset_lane_f32::<1>(a1.d, vdup_n_f32(a0.d));
            let yd = vcombine_f32(yd2, yd2);
            acc[0] = vfmaq_f32(acc[0], vcvtq_f32_s32(s01), vmulq_f32(x01, yd));
            acc[1] = vfmaq_f32(acc[1], vcvtq_f32_s32(s23), vmulq_f32(x23, yd));
            if P::MIN {
                let ys2 = vset_lane_f32::<1>(a1.s, vdup_n_f32(a0.s));
                let ys = vcombine_f32(ys2, ys2);
                acc[0] = vfmaq_f32(acc[0], m01, ys);
                acc[1] = vfmaq_f32(acc[1], m23, ys);
            }
        }
    }
    // Lanes `[r0 t, r1 t, r2 t, r3 t]` for each token of a pair.
    acc.map(|[a01, a23]| [vuzp1q_f32(a01, a23), vuzp2q_f32(a01, a23)])
}

/// [`by_group`] with `SMMLA`: two pairs of tokens per weight block, then a pair, then an odd
/// last token through [`tokens`].
///
/// # Safety
/// The CPU must support the dot-product and int8 matrix multiplication extensions.
#[inline]
#[target_feature(enable = "neon,dotprod,i8mm")]
unsafe fn mm_i8mm<P: Packed>(w: &[P], first: usize, acts: &[P::Y], outs: &mut [&mut [f32]]) {
    by_group(w, first, acts, outs, |gw, ys| {
        if let Some([a, b, c, d]) = ys.take::<4>() {
            // SAFETY: the caller guarantees the dot-product and i8mm extensions.
            let [[v0, v1], [v2, v3]] = unsafe { token_pairs::<P, 2>(gw, [[a, b], [c, d]]) };
            (4, [v0, v1, v2, v3])
        } else if let Some([a, b]) = ys.take::<2>() {
            // SAFETY: as above.
            let [[v0, v1]] = unsafe { token_pairs::<P, 1>(gw, [[a, b]]) };
            (2, [v0, v1, v0, v1])
        } else {
            // SAFETY: the caller guarantees the dot-product extension.
            let [v] = unsafe { tokens::<P, 1>(gw, ys.one()) };
            (1, [v; TOKENS])
        }
    });
}

/// `pub unsafe fn $name(w, first, act(s), out(s))` for each packed type: `$body` (one of
/// [`rows`], [`mm`], [`mm_i8mm`]) with the target features `$features`.
macro_rules! entry_points {
    ($features:literal, $body:ident, $act:ident: $at:ty, $out:ident: $ot:ty,
     $(($name:ident, $w:ty, $doc:literal)),+ $(,)?) => {
        $(
            #[doc = $doc]
            ///
            /// # Safety
            #[doc = concat!("The CPU must support the target features `", $features, "`.")]
            #[target_feature(enable = $features)]
            pub unsafe fn $name(w: &[$w], first: usize, $act: $at, $out: $ot) {
                // SAFETY: the caller guarantees the target features.
                unsafe { $body(w, first, $act, $out) }
            }
        )+
    };
}

entry_points!(
    "neon,dotprod", rows, act: &[BlockQ8_0], out: &mut [f32],
    (matvec_q8_0x4_q8_0, GroupQ8_0,
     "Rows `first..first + out.len()` of packed Q8_0 groups against Q8_0 activations."),
    (matvec_q4_0x4_q8_0, GroupQ4_0,
     "Rows `first..first + out.len()` of packed Q4_0 groups against Q8_0 activations."),
);

entry_points!(
    "neon,dotprod", rows, act: &[BlockQ8_1], out: &mut [f32],
    (matvec_q4_1x4_q8_1, GroupQ4_1,
     "Rows `first..first + out.len()` of packed Q4_1 groups against Q8_1 activations."),
);

entry_points!(
    "neon,dotprod", mm, acts: &[BlockQ8_0], outs: &mut [&mut [f32]],
    (matmul_q8_0x4_q8_0, GroupQ8_0,
     "Rows `first..first + n` of packed Q8_0 groups times several tokens' Q8_0 activations \
      (`outs[token]`, each `n` long)."),
    (matmul_q4_0x4_q8_0, GroupQ4_0,
     "Rows `first..first + n` of packed Q4_0 groups times several tokens' Q8_0 activations."),
);

entry_points!(
    "neon,dotprod", mm, acts: &[BlockQ8_1], outs: &mut [&mut [f32]],
    (matmul_q4_1x4_q8_1, GroupQ4_1,
     "Rows `first..first + n` of packed Q4_1 groups times several tokens' Q8_1 activations."),
);

entry_points!(
    "neon,dotprod,i8mm", mm_i8mm, acts: &[BlockQ8_0], outs: &mut [&mut [f32]],
    (matmul_q8_0x4_q8_0_i8mm, GroupQ8_0, "[`matmul_q8_0x4_q8_0`] with `SMMLA`."),
    (matmul_q4_0x4_q8_0_i8mm, GroupQ4_0, "[`matmul_q4_0x4_q8_0`] with `SMMLA`."),
);

entry_points!(
    "neon,dotprod,i8mm", mm_i8mm, acts: &[BlockQ8_1], outs: &mut [&mut [f32]],
    (matmul_q4_1x4_q8_1_i8mm, GroupQ4_1, "[`matmul_q4_1x4_q8_1`] with `SMMLA`."),
);
