//! The Q4_0 GEMM in llama.cpp's 8-row interleaved order, the matrix form of
//! `gemv_q4_0_8x8_q8_0`.

use super::*;

/// Tokens per tile of [`gemm_q4_0_8x8_q8_0`].
const T_8X8: usize = 8;

/// The most blocks per row [`gemm_q4_0_8x8_q8_0`] takes its fast way (rows of up to 16384
/// values); longer rows are tiled over the matrix-vector kernel.
const NB_8X8: usize = 512;

/// The 8x8 transpose of 32-bit lanes: lane `r` of result `k` is lane `k` of `q[r]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn transpose8(q: [__m256i; 8]) -> [__m256i; 8] {
    let t0 = _mm256_unpacklo_epi32(q[0], q[1]);
    let t1 = _mm256_unpackhi_epi32(q[0], q[1]);
    let t2 = _mm256_unpacklo_epi32(q[2], q[3]);
    let t3 = _mm256_unpackhi_epi32(q[2], q[3]);
    let t4 = _mm256_unpacklo_epi32(q[4], q[5]);
    let t5 = _mm256_unpackhi_epi32(q[4], q[5]);
    let t6 = _mm256_unpacklo_epi32(q[6], q[7]);
    let t7 = _mm256_unpackhi_epi32(q[6], q[7]);
    let u0 = _mm256_unpacklo_epi64(t0, t2);
    let u1 = _mm256_unpackhi_epi64(t0, t2);
    let u2 = _mm256_unpacklo_epi64(t1, t3);
    let u3 = _mm256_unpackhi_epi64(t1, t3);
    let u4 = _mm256_unpacklo_epi64(t4, t6);
    let u5 = _mm256_unpackhi_epi64(t4, t6);
    let u6 = _mm256_unpacklo_epi64(t5, t7);
    let u7 = _mm256_unpackhi_epi64(t5, t7);
    [
        _mm256_permute2x128_si256::<0x20>(u0, u4),
        _mm256_permute2x128_si256::<0x20>(u1, u5),
        _mm256_permute2x128_si256::<0x20>(u2, u6),
        _mm256_permute2x128_si256::<0x20>(u3, u7),
        _mm256_permute2x128_si256::<0x31>(u0, u4),
        _mm256_permute2x128_si256::<0x31>(u1, u5),
        _mm256_permute2x128_si256::<0x31>(u2, u6),
        _mm256_permute2x128_si256::<0x31>(u3, u7),
    ]
}

/// `pub unsafe fn $name(w, acts, outs)`: the Q4_0 GEMM in the 8-row interleaved order for the
/// CPU features `$features`, `$isum` the block's integer dot product for the eight rows (lane
/// `r`: row `r`) from the transposed nibbles `$a`, the token's block `$y` and `8 * sum(y)`
/// (`$sy`).
macro_rules! gemm_q4_0_8x8 {
    ($name:ident, $features:literal, $doc:literal, |$a:ident, $y:ident, $sy:ident| $isum:expr) => {
        #[doc = $doc]
        ///
        /// # Safety
        #[doc = concat!("The CPU must support ", $features, ".")]
        #[target_feature(enable = $features)]
        pub unsafe fn $name(w: &[BlockQ4_0], acts: &[BlockQ8_0], outs: &mut [&mut [f32]]) {
            let n_tokens = outs.len();
            let Some((nb, rows)) = shape(w.len(), acts.len(), outs) else {
                return;
            };
            if nb > NB_8X8 {
                crate::matmul::tiled(&w[..rows * nb], acts, outs, |w, a, out| {
                    // SAFETY: the caller guarantees the CPU features.
                    unsafe { crate::x86::avx2::gemv_q4_0_8x8_q8_0(w, a, out) }
                });
                return;
            }
            let groups = rows / 8;
            let ones = _mm256_set1_epi16(1);
            let m4 = _mm256_set1_epi8(0x0f);
            // Per token of a tile and block: 8 * sum(y) and fp16(y.d).
            let mut sy = [[0i32; NB_8X8]; T_8X8];
            let mut dy = [[0f32; NB_8X8]; T_8X8];
            let mut t0 = 0;
            while t0 < n_tokens {
                let tt = (n_tokens - t0).min(T_8X8);
                for k in 0..tt {
                    for b in 0..nb {
                        let y = &acts[(t0 + k) * nb + b];
                        let s = _mm256_madd_epi16(
                            _mm256_maddubs_epi16(_mm256_set1_epi8(8), load256(&y.qs)),
                            ones,
                        );
                        sy[k][b] = hsum_i32x8(s);
                        dy[k][b] = fp16(y.d);
                    }
                }
                for g in 0..groups {
                    let group = &w[g * 8 * nb..(g + 1) * 8 * nb];
                    let mut acc = [_mm256_setzero_ps(); T_8X8];
                    for b in 0..nb {
                        let mut q = [_mm256_setzero_si256(); 8];
                        let mut dx = [0u16; 8];
                        for r in 0..8 {
                            let x = &group[r * nb + b];
                            prefetch_ahead(x);
                            let packed = load128(&x.qs);
                            let both = _mm256_set_m128i(_mm_srli_epi16::<4>(packed), packed);
                            q[r] = _mm256_and_si256(both, m4);
                            dx[r] = x.d;
                        }
                        let a = transpose8(q);
                        let dx = fp16x8(dx);
                        for (k, acc) in acc.iter_mut().enumerate().take(tt) {
                            let y = &acts[(t0 + k) * nb + b];
                            let isum = {
                                let ($a, $y, $sy) = (&a, y, sy[k][b]);
                                $isum
                            };
                            let scale = _mm256_mul_ps(dx, _mm256_set1_ps(dy[k][b]));
                            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, *acc);
                        }
                    }
                    for (k, acc) in acc.iter().enumerate().take(tt) {
                        outs[t0 + k][g * 8..g * 8 + 8].copy_from_slice(&lanes(*acc));
                    }
                }
                t0 += tt;
            }
            // The rows after the last whole group: `gemv_q4_0_8x8_q8_0`'s one-row arithmetic.
            let done = groups * 8;
            if done < rows {
                for (t, out) in outs.iter_mut().enumerate() {
                    let act = &acts[t * nb..(t + 1) * nb];
                    // SAFETY: the caller guarantees the CPU features.
                    unsafe {
                        crate::x86::avx2::gemv_q4_0_8x8_q8_0(
                            &w[done * nb..rows * nb],
                            act,
                            &mut out[done..rows],
                        )
                    };
                }
            }
        }
    };
}

// Q4_0 weights times Q8_0 activations in llama.cpp's 8-row interleaved order, the matrix
// form of `gemv_q4_0_8x8_q8_0`: `outs[t][r]` is that kernel's result for row `r` of `w` and
// activation `t` of `acts`, bit for bit. Every (row, token) pair's block gets the same float
// step, `acc = fma(float(isum), fp16(x.d) * fp16(y.d), acc)`, with `isum` the block's whole
// integer dot product, which is exact however it is summed. Here it is summed with one row
// per lane, as llama.cpp's repacked layout does, without repacking the file: a group of 8
// rows' unsigned nibbles is unpacked and transposed (lane `r` of register `k`: quants
// `4k..4k + 4` of row `r`) once per block for a tile of [`T_8X8`] tokens; each token then
// multiplies them by its quants `4k..4k + 4` in every lane (`maddubs`, the eight results
// added in i16: at most 16 products of 15 by 128 each, which fits), one `madd` into i32,
// minus `8 * sum(y)` for the nibbles' offset, computed once per token and block.
//
//
// This is the AVX2 version; `gemm_q4_0_8x8_q8_0_vnni` adds up with AVX-VNNI.
gemm_q4_0_8x8!(
    gemm_q4_0_8x8_q8_0,
    "avx2,fma,f16c",
    "Q4_0 weights times Q8_0 activations in llama.cpp's 8-row interleaved order (AVX2).",
    |a, y, sy| {
        let mut s16 = _mm256_maddubs_epi16(a[0], broadcast_word(&y.qs, 0));
        for (j, aj) in a.iter().enumerate().skip(1) {
            let p = _mm256_maddubs_epi16(*aj, broadcast_word(&y.qs, j));
            s16 = _mm256_add_epi16(s16, p);
        }
        let qy = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
        _mm256_sub_epi32(qy, _mm256_set1_epi32(sy))
    }
);

gemm_q4_0_8x8!(
    gemm_q4_0_8x8_q8_0_vnni,
    "avx2,fma,f16c,avxvnni",
    "[`gemm_q4_0_8x8_q8_0`] with AVX-VNNI: the eight `maddubs` become `vpdpbusd`s accumulating \
     in i32 from `-8 * sum(y)`.",
    |a, y, sy| {
        let mut acc = _mm256_set1_epi32(-sy);
        for (j, aj) in a.iter().enumerate() {
            acc = _mm256_dpbusd_avx_epi32(acc, *aj, broadcast_word(&y.qs, j));
        }
        acc
    }
);

gemm_q4_0_8x8!(
    gemm_q4_0_8x8_q8_0_evex,
    "avx2,fma,f16c,avx512f,avx512vl,avx512vnni",
    "[`gemm_q4_0_8x8_q8_0_vnni`] with AVX-512 VNNI's EVEX `vpdpbusd` on 256-bit registers, for \
     CPUs without AVX-VNNI (Ice Lake, Zen 4).",
    |a, y, sy| {
        let mut acc = _mm256_set1_epi32(-sy);
        for (j, aj) in a.iter().enumerate() {
            acc = _mm256_dpbusd_epi32(acc, *aj, broadcast_word(&y.qs, j));
        }
        acc
    }
);
