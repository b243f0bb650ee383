//! Products of weights packed at load time in groups of eight rows (`crate::packed`): one row
//! per i32 lane, so no horizontal sums. Register `k` of a group's block holds four quants of
//! each of the eight rows (bytes `4k..4k + 4` of every row's block); the activation's word `k`
//! broadcast to all lanes multiplies it, by `vpdpbusd` (AVX-VNNI, or AVX-512 VNNI's EVEX form)
//! or `maddubs` + `madd` (AVX2). Eight words (Q8_0) or four registers split into eight nibble
//! registers (Q4_0) make a block's exact integer sum per row; then each row gets
//! `acc = fma(float(sum), fp16(d_x) * fp16(d_y), acc)`, the float step of
//! `gemv_q4_0_8x8_q8_0` (llama.cpp's repacked Q4_0 order), so packed Q4_0 gives the file
//! layout's results bit for bit and packed Q8_0 a different order than ggml's `vec_dot`.
//!
//! The weights are the operand `vpdpbusd` takes unsigned: Q4_0's nibbles as they are (`q + 8`),
//! Q8_0's quants XOR `0x80` (`q + 128`, [`crate::packed::Q8_0_FLIP`]); each block's sum starts
//! from `-8 * sum(y)` or `-128 * sum(y)`, computed once per activation block. Plain AVX2 has
//! no unsigned-by-signed product that takes `q + 128` without saturating, so its Q8_0 kernels
//! flip the quants back and move their signs onto the activation (`dot_i8_i8`).
//!
//! The matrix-vector kernels serve a token's decode step, the matrix-matrix ones a prompt:
//! each weight block is unpacked once for a tile of tokens, and every (row, token) pair gets the
//! matrix-vector kernel's steps in the same order, so both give the same bits.

use super::vec_dot::{fp16x8, lanes8};
use super::{dot_i8_i8, dot_u8_i8, fp16, hsum_i32x8, load256, prefetch_ahead};
use crate::packed::{Activation, GroupQ4_0, GroupQ4_1, GroupQ5_0, GroupQ8_0, GROUP};
use core::arch::x86_64::*;
use formats::quant::{BlockQ8_0, BlockQ8_1};

const _: () = assert!(
    GROUP == 8,
    "the x86-64 kernels take one row per lane of eight"
);

/// The most activation blocks prepared at once (rows of up to 16384 values; longer rows are
/// prepared a pass at a time).
const NB: usize = 512;

/// Tokens per tile of the matrix-matrix kernels.
const TOKENS: usize = 8;

/// The eight weight registers of a group's block, ready for the integer product.
type Quants = [__m256i; 8];

/// Per activation block of a pass: the correction the integer sum starts from (`-offset *
/// sum(y)`), the scale and `s` as f32.
struct Prepared {
    corr: [i32; NB],
    dy: [f32; NB],
    sy: [f32; NB],
}

impl Prepared {
    const fn new() -> Self {
        Prepared {
            corr: [0; NB],
            dy: [0.0; NB],
            sy: [0.0; NB],
        }
    }
}

/// Prepare `act` (at most [`NB`] blocks) for weights stored as `q + offset`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn prepare<A: Activation>(act: &[A], offset: i32, p: &mut Prepared) {
    let ones = _mm256_set1_epi8(1);
    for (b, y) in act.iter().enumerate() {
        if offset != 0 {
            let sum = hsum_i32x8(dot_u8_i8(ones, load256(y.qs())));
            p.corr[b] = -offset * sum;
        }
        p.dy[b] = fp16(y.d());
        p.sy[b] = fp16(y.s());
    }
}

/// Register `k` of a group's quants: bytes `32k..32k + 32`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn word_rows<const N: usize>(qs: &[u8; N], k: usize) -> __m256i {
    assert!(32 * k + 32 <= N);
    // SAFETY: `32k + 32 <= N` bytes of `qs` are readable (asserted); `loadu` needs no alignment.
    unsafe { _mm256_loadu_si256(qs.as_ptr().add(32 * k).cast()) }
}

/// Word `k` (bytes `4k..4k + 4`) of an activation block's quants in every lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn word<A: Activation>(y: &A, k: usize) -> __m256i {
    super::broadcast_word(y.qs(), k)
}

/// A Q4_0 group block's nibbles: register `k` lane `r` holds row `r`'s quants `4k..4k + 4`
/// (`k` in 0..8; the low nibbles are quants 0..16, the high ones 16..32).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn quants_q4_0(x: &GroupQ4_0) -> Quants {
    nibbles(&x.qs)
}

/// A Q4_1 group block's nibbles, as [`quants_q4_0`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn quants_q4_1(x: &GroupQ4_1) -> Quants {
    nibbles(&x.qs)
}

/// Eight rows' nibble bytes unpacked (see [`quants_q4_0`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn nibbles(qs: &[u8; 128]) -> Quants {
    let m4 = _mm256_set1_epi8(0x0f);
    let mut a = [_mm256_setzero_si256(); 8];
    for k in 0..4 {
        let p = word_rows(qs, k);
        a[k] = _mm256_and_si256(p, m4);
        a[k + 4] = _mm256_and_si256(_mm256_srli_epi16::<4>(p), m4);
    }
    a
}

/// A Q5_0 group block's quants plus 16 (0..32): the nibbles as Q4_0's, each with its fifth
/// bit as 16. Register `k`'s fifth bits lie at bits `8j + k` of the rearranged `qh`
/// (`crate::packed::spread_high_bits`): shifted to `8j + 4`, masked, added.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn quants_q5_0(x: &GroupQ5_0) -> Quants {
    let mut a = nibbles(&x.qs);
    let h = load256(&x.qh);
    let bits = [
        _mm256_slli_epi32::<4>(h),
        _mm256_slli_epi32::<3>(h),
        _mm256_slli_epi32::<2>(h),
        _mm256_slli_epi32::<1>(h),
        h,
        _mm256_srli_epi32::<1>(h),
        _mm256_srli_epi32::<2>(h),
        _mm256_srli_epi32::<3>(h),
    ];
    let m = _mm256_set1_epi8(0x10);
    for (a, b) in a.iter_mut().zip(bits) {
        *a = _mm256_or_si256(*a, _mm256_and_si256(b, m));
    }
    a
}

/// A Q8_0 group block's quants as stored (`q + 128`, unsigned).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn quants_q8_0(x: &GroupQ8_0) -> Quants {
    let qs: &[u8; 256] = bytemuck::cast_ref(&x.qs);
    let mut a = [_mm256_setzero_si256(); 8];
    for (k, a) in a.iter_mut().enumerate() {
        *a = word_rows(qs, k);
    }
    a
}

/// A Q8_0 group block's quants signed again (for AVX2's `dot_i8_i8`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn quants_q8_0_signed(x: &GroupQ8_0) -> Quants {
    let flip = _mm256_set1_epi8(0x80u8 as i8);
    let mut a = quants_q8_0(x);
    for a in &mut a {
        *a = _mm256_xor_si256(*a, flip);
    }
    a
}

/// A block's integer sums (lane `r`: row `r`) for unsigned quants of at most 15 (Q4_0), AVX2:
/// the eight `maddubs` added in i16 (at most 16 products of 15 by 127 each: it fits), one
/// `madd`, plus the correction.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn isum_nibbles<A: Activation>(a: &Quants, y: &A, corr: i32) -> __m256i {
    let mut s16 = _mm256_maddubs_epi16(a[0], word(y, 0));
    for (k, a) in a.iter().enumerate().skip(1) {
        s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(*a, word(y, k)));
    }
    let s = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
    _mm256_add_epi32(s, _mm256_set1_epi32(corr))
}

/// A block's integer sums for unsigned quants of at most 31 (Q5_0), AVX2: two sums of four
/// `maddubs` in i16 (at most 8 products of 31 by 127 each), two `madd`s.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn isum_five_bits<A: Activation>(a: &Quants, y: &A, corr: i32) -> __m256i {
    let ones = _mm256_set1_epi16(1);
    let mut s = _mm256_set1_epi32(corr);
    for half in 0..2 {
        let mut s16 = _mm256_maddubs_epi16(a[4 * half], word(y, 4 * half));
        for k in 4 * half + 1..4 * half + 4 {
            s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(a[k], word(y, k)));
        }
        s = _mm256_add_epi32(s, _mm256_madd_epi16(s16, ones));
    }
    s
}

/// A block's integer sums for signed quants, AVX2 (`dot_i8_i8` per word).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn isum_signed<A: Activation>(a: &Quants, y: &A, _corr: i32) -> __m256i {
    let mut s = dot_i8_i8(a[0], word(y, 0));
    for (k, a) in a.iter().enumerate().skip(1) {
        s = _mm256_add_epi32(s, dot_i8_i8(*a, word(y, k)));
    }
    s
}

/// A block's integer sums for unsigned quants, AVX-VNNI: `vpdpbusd` from the correction.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
fn isum_vnni<A: Activation>(a: &Quants, y: &A, corr: i32) -> __m256i {
    // Two chains of four (even and odd words), so that a block waits on four `vpdpbusd`
    // latencies, not eight.
    let mut s = [_mm256_set1_epi32(corr), _mm256_setzero_si256()];
    for (k, a) in a.iter().enumerate() {
        s[k % 2] = _mm256_dpbusd_avx_epi32(s[k % 2], *a, word(y, k));
    }
    _mm256_add_epi32(s[0], s[1])
}

/// [`isum_vnni`] with AVX-512 VNNI's EVEX `vpdpbusd` on 256-bit registers.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
fn isum_evex<A: Activation>(a: &Quants, y: &A, corr: i32) -> __m256i {
    let mut s = [_mm256_set1_epi32(corr), _mm256_setzero_si256()];
    for (k, a) in a.iter().enumerate() {
        s[k % 2] = _mm256_dpbusd_epi32(s[k % 2], *a, word(y, k));
    }
    _mm256_add_epi32(s[0], s[1])
}

/// The float step of every kernel here: `acc + float(sum) * (fp16(d_x) * fp16(d_y))`, one FMA,
/// then for a type with minimums `+ fp16(m_x) * fp16(s_y)`, another.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn step<G: Group>(acc: __m256, sum: __m256i, x: &G, p: &Prepared, b: usize) -> __m256 {
    let scale = _mm256_mul_ps(fp16x8(x.d()), _mm256_set1_ps(p.dy[b]));
    let acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), scale, acc);
    match x.m() {
        Some(m) => _mm256_fmadd_ps(fp16x8(m), _mm256_set1_ps(p.sy[b]), acc),
        None => acc,
    }
}

/// A group block: its scales, and its minimums where the type has them.
trait Group: Sized {
    fn d(&self) -> [u16; 8];
    fn m(&self) -> Option<[u16; 8]> {
        None
    }
}

impl Group for GroupQ4_1 {
    #[inline(always)]
    fn d(&self) -> [u16; 8] {
        self.d
    }
    #[inline(always)]
    fn m(&self) -> Option<[u16; 8]> {
        Some(self.m)
    }
}

impl Group for GroupQ4_0 {
    #[inline(always)]
    fn d(&self) -> [u16; 8] {
        self.d
    }
}

impl Group for GroupQ5_0 {
    #[inline(always)]
    fn d(&self) -> [u16; 8] {
        self.d
    }
}

impl Group for GroupQ8_0 {
    #[inline(always)]
    fn d(&self) -> [u16; 8] {
        self.d
    }
}

/// The matrix-vector driver: rows `first..first + out.len()` of the groups `w` (`act.len()`
/// blocks per row) times `act`; `quants` unpacks a group block, `isum` gives its integer sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn matvec<G: Group, A: Activation>(
    w: &[G],
    first: usize,
    act: &[A],
    out: &mut [f32],
    offset: i32,
    quants: impl Fn(&G) -> Quants,
    isum: impl Fn(&Quants, &A, i32) -> __m256i,
) {
    let nb = act.len();
    if nb == 0 || out.is_empty() {
        out.fill(0.0);
        return;
    }
    let groups = (first + out.len()).div_ceil(GROUP);
    // Rows of at most `NB` blocks (all we know of) are prepared once for every group; longer
    // ones a pass of `NB` blocks at a time, again for each group.
    let mut p = Prepared::new();
    let once = nb <= NB;
    if once {
        prepare(act, offset, &mut p);
    }
    // One group's blocks `c0..c1` into its accumulator.
    let blocks = |acc: __m256, g: usize, c0: usize, c1: usize, p: &Prepared| {
        let group = &w[g * nb + c0..g * nb + c1];
        let mut acc = acc;
        for (b, (x, y)) in group.iter().zip(&act[c0..c1]).enumerate() {
            prefetch_ahead(x);
            acc = step(acc, isum(&quants(x), y, p.corr[b]), x, p, b);
        }
        acc
    };
    for g in 0..groups {
        let acc = if once {
            blocks(_mm256_setzero_ps(), g, 0, nb, &p)
        } else {
            let mut acc = _mm256_setzero_ps();
            for c0 in (0..nb).step_by(NB) {
                let c1 = (c0 + NB).min(nb);
                prepare(&act[c0..c1], offset, &mut p);
                acc = blocks(acc, g, c0, c1, &p);
            }
            acc
        };
        // Rows `GROUP g..GROUP (g + 1)`, as far as they lie in `first..first + out.len()`.
        let (lo, hi) = (
            (GROUP * g).max(first),
            (GROUP * (g + 1)).min(first + out.len()),
        );
        if hi - lo == GROUP {
            let o: &mut [f32; GROUP] = (&mut out[lo - first..hi - first]).try_into().unwrap();
            *o = lanes8(acc);
        } else {
            out[lo - first..hi - first]
                .copy_from_slice(&lanes8(acc)[lo - GROUP * g..hi - GROUP * g]);
        }
    }
}

/// The matrix-matrix driver: [`matvec`] for every token of `acts` (`outs[t]`), each group
/// block unpacked once per tile of [`TOKENS`] tokens.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn matmul<G: Group, A: Activation>(
    w: &[G],
    first: usize,
    acts: &[A],
    outs: &mut [&mut [f32]],
    offset: i32,
    quants: impl Fn(&G) -> Quants,
    isum: impl Fn(&Quants, &A, i32) -> __m256i,
) {
    let n_tokens = outs.len();
    let rows = outs.first().map_or(0, |o| o.len());
    if n_tokens == 0 || rows == 0 {
        return;
    }
    let nb = acts.len() / n_tokens;
    if nb == 0 || nb > NB || first != 0 || !rows.is_multiple_of(GROUP) {
        // Long rows and ranges that cut groups: token by token (the same steps).
        for (t, out) in outs.iter_mut().enumerate() {
            matvec(
                w,
                first,
                &acts[t * nb..(t + 1) * nb],
                out,
                offset,
                &quants,
                &isum,
            );
        }
        return;
    }
    let groups = rows / GROUP;
    let mut p: [Prepared; TOKENS] = core::array::from_fn(|_| Prepared::new());
    for t0 in (0..n_tokens).step_by(TOKENS) {
        let tt = (n_tokens - t0).min(TOKENS);
        for (k, p) in p.iter_mut().enumerate().take(tt) {
            prepare(&acts[(t0 + k) * nb..(t0 + k + 1) * nb], offset, p);
        }
        // Each token's row of blocks (empty past the tile's last token).
        let ys: [&[A]; TOKENS] = core::array::from_fn(|k| match k < tt {
            true => &acts[(t0 + k) * nb..(t0 + k + 1) * nb],
            false => &[],
        });
        for g in 0..groups {
            let group = &w[g * nb..(g + 1) * nb];
            let mut acc = [_mm256_setzero_ps(); TOKENS];
            for (b, x) in group.iter().enumerate() {
                prefetch_ahead(x);
                let a = quants(x);
                for ((acc, y), p) in acc.iter_mut().zip(ys).zip(&p).take(tt) {
                    *acc = step(*acc, isum(&a, &y[b], p.corr[b]), x, p, b);
                }
            }
            for (k, acc) in acc.iter().enumerate().take(tt) {
                outs[t0 + k][g * GROUP..(g + 1) * GROUP].copy_from_slice(&lanes8(*acc));
            }
        }
    }
}

/// A packed type's two entry points for one instruction set: `$mv` (one activation) and `$mm`
/// (several), on groups `$group` against activations `$act` stored as `q + $offset`, unpacked
/// by `$quants`, summed by `$isum`.
macro_rules! packed_pair {
    ($features:literal, $what:literal, $ty:literal, $mv:ident, $mm:ident,
     $group:ty, $act:ty, $offset:expr, $quants:ident, $isum:ident) => {
        #[doc = concat!("Packed ", $ty, " rows times an activation (", $what, "): `out[i]` for row `first + i` of the groups `w`.")]
        ///
        /// # Safety
        #[doc = concat!("The CPU must support ", $features, ".")]
        #[target_feature(enable = $features)]
        pub unsafe fn $mv(w: &[$group], first: usize, act: &[$act], out: &mut [f32]) {
            matvec(w, first, act, out, $offset, |x| $quants(x), |a, y, c| $isum(a, y, c));
        }

        #[doc = concat!("[`", stringify!($mv), "`] for several tokens (`acts`, one row each; `outs[t]`).")]
        ///
        /// # Safety
        #[doc = concat!("The CPU must support ", $features, ".")]
        #[target_feature(enable = $features)]
        pub unsafe fn $mm(w: &[$group], first: usize, acts: &[$act], outs: &mut [&mut [f32]]) {
            matmul(w, first, acts, outs, $offset, |x| $quants(x), |a, y, c| $isum(a, y, c));
        }
    };
}

/// The packed entry points for one instruction set: `$features`, the Q8_0 quants and their
/// offset (`$q8`, `$offset8`), the integer sums of each type.
macro_rules! packed_kernels {
    ($features:literal, $what:literal,
     [$mv8:ident, $mv4:ident, $mm8:ident, $mm4:ident, $mv5:ident, $mm5:ident, $mv41:ident, $mm41:ident],
     q8: ($q8:ident, $offset8:expr, $isum8:ident), q4: $isum4:ident, q5: $isum5:ident) => {
        packed_pair!(
            $features, $what, "Q8_0", $mv8, $mm8, GroupQ8_0, BlockQ8_0, $offset8, $q8, $isum8
        );
        packed_pair!(
            $features,
            $what,
            "Q4_0",
            $mv4,
            $mm4,
            GroupQ4_0,
            BlockQ8_0,
            8,
            quants_q4_0,
            $isum4
        );
        packed_pair!(
            $features,
            $what,
            "Q5_0",
            $mv5,
            $mm5,
            GroupQ5_0,
            BlockQ8_0,
            16,
            quants_q5_0,
            $isum5
        );
        packed_pair!(
            $features,
            $what,
            "Q4_1",
            $mv41,
            $mm41,
            GroupQ4_1,
            BlockQ8_1,
            0,
            quants_q4_1,
            $isum4
        );
    };
}

packed_kernels!(
    "avx2,fma,f16c",
    "AVX2",
    [
        matvec_q8_0x8_q8_0,
        matvec_q4_0x8_q8_0,
        matmul_q8_0x8_q8_0,
        matmul_q4_0x8_q8_0,
        matvec_q5_0x8_q8_0,
        matmul_q5_0x8_q8_0,
        matvec_q4_1x8_q8_1,
        matmul_q4_1x8_q8_1
    ],
    q8: (quants_q8_0_signed, 0, isum_signed),
    q4: isum_nibbles,
    q5: isum_five_bits
);

packed_kernels!(
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl",
    "AVX2's kernels in EVEX encoding: 32 registers",
    [
        matvec_q8_0x8_q8_0_bw,
        matvec_q4_0x8_q8_0_bw,
        matmul_q8_0x8_q8_0_bw,
        matmul_q4_0x8_q8_0_bw,
        matvec_q5_0x8_q8_0_bw,
        matmul_q5_0x8_q8_0_bw,
        matvec_q4_1x8_q8_1_bw,
        matmul_q4_1x8_q8_1_bw
    ],
    q8: (quants_q8_0_signed, 0, isum_signed),
    q4: isum_nibbles,
    q5: isum_five_bits
);

packed_kernels!(
    "avx2,fma,f16c,avxvnni",
    "AVX-VNNI",
    [
        matvec_q8_0x8_q8_0_vnni,
        matvec_q4_0x8_q8_0_vnni,
        matmul_q8_0x8_q8_0_vnni,
        matmul_q4_0x8_q8_0_vnni,
        matvec_q5_0x8_q8_0_vnni,
        matmul_q5_0x8_q8_0_vnni,
        matvec_q4_1x8_q8_1_vnni,
        matmul_q4_1x8_q8_1_vnni
    ],
    q8: (quants_q8_0, 128, isum_vnni),
    q4: isum_vnni,
    q5: isum_vnni
);

packed_kernels!(
    "avx2,fma,f16c,avx512f,avx512vl,avx512vnni",
    "AVX-512 VNNI on 256-bit registers",
    [
        matvec_q8_0x8_q8_0_evex,
        matvec_q4_0x8_q8_0_evex,
        matmul_q8_0x8_q8_0_evex,
        matmul_q4_0x8_q8_0_evex,
        matvec_q5_0x8_q8_0_evex,
        matmul_q5_0x8_q8_0_evex,
        matvec_q4_1x8_q8_1_evex,
        matmul_q4_1x8_q8_1_evex
    ],
    q8: (quants_q8_0, 128, isum_evex),
    q4: isum_evex,
    q5: isum_evex
);
