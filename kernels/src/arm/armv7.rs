//! NEON kernels for 32-bit ARM (armv7: the Raspberry Pi 2 and later on a 32-bit OS, whose
//! Cortex-A7/A53/A72 cores all have NEON and VFPv4 with half-precision conversion), chosen at
//! run time (`dispatch.rs` asks the kernel's `AT_HWCAP`). Rust's `core::arch::arm` NEON
//! intrinsics are not stable, so the integer parts are inline assembly (stable on ARM), with
//! `.fpu neon-vfpv4` so that the plain armv7 target, which assumes neither, assembles them.
//!
//! Every kernel sums each block's products exactly in integers, as the oracle does (widening
//! `vmull.s8`/`vmlal.s8` into 16-bit lanes, at most four products of one lane: within `i16` for
//! every operand the quantizers produce, see each kernel), then scales in f32 with one FMA per
//! block: the float order differs from the oracle's, within the parity tests' tolerances.
//!
//! Types: Q4_0, Q4_1, Q5_0 and Q8_0 one row per call of one assembly loop; Q4_K and Q6_K
//! unpacked to small integers in NEON and summed per 16 values in NEON, scaled in Rust. The
//! rest (IQ4_NL, whose table values overflow 16-bit lanes, Q2_K, Q3_K, Q5_K, Q5_1, floats) are
//! the scalar oracle's.
//!
//! Registers: only `d0`-`d15` (the armv7 target's VFP has sixteen), each one written declared
//! as clobbered, so the compiler saves the callee-saved `d8`-`d15` itself.

use crate::scalar::{fp16, scales_mins_k4};
use core::arch::asm;
use formats::quant::{
    BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1,
};

/// The integer sum of a 32-value block with 4-bit (or 5-bit) values: its low-nibble values in
/// `d2`-`d3`, high-nibble ones in `d0`-`d1`, the activation in `d4`-`d7`: four products a
/// 16-bit lane, the block's sum in `s16`.
macro_rules! nibble_products {
    () => {
        concat!(
            "vmull.s8 q4, d2, d4\n",
            "vmlal.s8 q4, d3, d5\n",
            "vmlal.s8 q4, d0, d6\n",
            "vmlal.s8 q4, d1, d7\n",
            "vpaddl.s16 q4, q4\n",
            "vpadd.i32 d8, d8, d9\n",
            "vpadd.i32 d8, d8, d8",
        )
    };
}

/// A block's float step and the loop's end: `acc (s20) += float(sum in s16) * (fp16({t0}) *
/// fp16({t1}))`, then the next block (label `2`) while `{n}` lasts, the sum's bits in `{bits}`.
macro_rules! scale_block_and_loop {
    () => {
        concat!(
            "vcvt.f32.s32 s16, s16\n",
            "vmov s18, {t0}\n",
            "vmov s19, {t1}\n",
            "vcvtb.f32.f16 s18, s18\n",
            "vcvtb.f32.f16 s19, s19\n",
            "vmul.f32 s18, s18, s19\n",
            "vfma.f32 s20, s16, s18\n",
            "subs {n}, {n}, #1\n",
            "bne 2b\n",
            "vmov {bits}, s20",
        )
    };
}

/// Q8_0 weights against Q8_0 activations. Products are at most 128 * 127 (a weight of -128
/// can only come from a file; the quantizer's activations stay within +-127): two per 16-bit
/// lane fit.
///
/// # Safety
/// The CPU must have NEON and VFPv4 with half-precision conversion.
pub unsafe fn vec_dot_q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    let n = x.len().min(y.len());
    if n == 0 {
        return 0.0;
    }
    let bits: u32;
    // SAFETY: reads `n` blocks from each slice (34 bytes each, the blocks' `repr(C)` layout:
    // `d` then 32 quants), writes no memory; the caller guarantees NEON and VFPv4.
    unsafe {
        asm!(
            ".fpu neon-vfpv4",
            "vmov.i32 d10, #0",
            "2:",
            "ldrh {t0}, [{x}], #2",
            "vld1.8 {{d0-d3}}, [{x}]!",
            "ldrh {t1}, [{y}], #2",
            "vld1.8 {{d4-d7}}, [{y}]!",
            "vmull.s8 q4, d0, d4",
            "vmlal.s8 q4, d1, d5",
            "vmull.s8 q6, d2, d6",
            "vmlal.s8 q6, d3, d7",
            "vpaddl.s16 q4, q4",
            "vpadal.s16 q4, q6",
            "vpadd.i32 d8, d8, d9",
            "vpadd.i32 d8, d8, d8",
            scale_block_and_loop!(),
            x = inout(reg) x.as_ptr() => _,
            y = inout(reg) y.as_ptr() => _,
            n = inout(reg) n => _,
            t0 = out(reg) _,
            t1 = out(reg) _,
            bits = out(reg) bits,
            out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _, out("d5") _,
            out("d6") _, out("d7") _, out("d8") _, out("d9") _, out("d10") _, out("d12") _,
            out("d13") _,
            options(nostack, readonly),
        );
    }
    f32::from_bits(bits)
}

/// Q4_0 weights (`q - 8`, in -8..=7) against Q8_0 activations: four products of at most
/// 8 * 128 per 16-bit lane.
///
/// # Safety
/// The CPU must have NEON and VFPv4 with half-precision conversion.
pub unsafe fn vec_dot_q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    let n = x.len().min(y.len());
    if n == 0 {
        return 0.0;
    }
    let bits: u32;
    // SAFETY: reads `n` blocks from each slice (18 and 34 bytes, `d` first), writes no
    // memory; the caller guarantees NEON and VFPv4.
    unsafe {
        asm!(
            ".fpu neon-vfpv4",
            "vmov.i8 q7, #15",
            "vmov.i8 q6, #8",
            "vmov.i32 d10, #0",
            "2:",
            "ldrh {t0}, [{x}], #2",
            "vld1.8 {{d0-d1}}, [{x}]!",
            "ldrh {t1}, [{y}], #2",
            "vld1.8 {{d4-d7}}, [{y}]!",
            // Low nibbles are values 0-15 (with y[0..16]), high nibbles 16-31.
            "vand q1, q0, q7",
            "vshr.u8 q0, q0, #4",
            "vsub.i8 q1, q1, q6",
            "vsub.i8 q0, q0, q6",
            nibble_products!(),
            scale_block_and_loop!(),
            x = inout(reg) x.as_ptr() => _,
            y = inout(reg) y.as_ptr() => _,
            n = inout(reg) n => _,
            t0 = out(reg) _,
            t1 = out(reg) _,
            bits = out(reg) bits,
            out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _, out("d5") _,
            out("d6") _, out("d7") _, out("d8") _, out("d9") _, out("d10") _, out("d12") _,
            out("d13") _, out("d14") _, out("d15") _,
            options(nostack, readonly),
        );
    }
    f32::from_bits(bits)
}

/// Q4_1 weights (`d * q + m`, `q` in 0..=15) against Q8_1 activations (`s`: `d` times the sum
/// of the quants): `d_x d_y sum(q y) + m_x s_y` per block.
///
/// # Safety
/// The CPU must have NEON and VFPv4 with half-precision conversion.
pub unsafe fn vec_dot_q4_1_q8_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    let n = x.len().min(y.len());
    if n == 0 {
        return 0.0;
    }
    let bits: u32;
    // SAFETY: reads `n` blocks from each slice (20 and 36 bytes: `d`, `m` or `s`, quants),
    // writes no memory; the caller guarantees NEON and VFPv4.
    unsafe {
        asm!(
            ".fpu neon-vfpv4",
            "vmov.i8 q7, #15",
            "vmov.i32 d10, #0",
            "2:",
            "ldrh {t0}, [{x}], #2",
            "ldrh {t1}, [{y}], #2",
            "vmov s22, {t0}",
            "vmov s23, {t1}",
            "ldrh {t0}, [{x}], #2",
            "ldrh {t1}, [{y}], #2",
            "vmov s24, {t0}",
            "vmov s25, {t1}",
            "vld1.8 {{d0-d1}}, [{x}]!",
            "vld1.8 {{d4-d7}}, [{y}]!",
            "vand q1, q0, q7",
            "vshr.u8 q0, q0, #4",
            nibble_products!(),
            "vcvt.f32.s32 s16, s16",
            "vcvtb.f32.f16 s22, s22",
            "vcvtb.f32.f16 s23, s23",
            "vcvtb.f32.f16 s24, s24",
            "vcvtb.f32.f16 s25, s25",
            "vmul.f32 s22, s22, s23",
            "vfma.f32 s20, s16, s22",
            "vfma.f32 s20, s24, s25",
            "subs {n}, {n}, #1",
            "bne 2b",
            "vmov {bits}, s20",
            x = inout(reg) x.as_ptr() => _,
            y = inout(reg) y.as_ptr() => _,
            n = inout(reg) n => _,
            t0 = out(reg) _,
            t1 = out(reg) _,
            bits = out(reg) bits,
            out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _, out("d5") _,
            out("d6") _, out("d7") _, out("d8") _, out("d9") _, out("d10") _, out("d11") _,
            out("d12") _, out("d14") _, out("d15") _,
            options(nostack, readonly),
        );
    }
    f32::from_bits(bits)
}

/// Q5_0 weights (`q - 16`, `q` a nibble plus bit `j` of `qh` as its fifth bit) against Q8_0
/// activations: four products of at most 16 * 128 per 16-bit lane.
///
/// # Safety
/// The CPU must have NEON and VFPv4 with half-precision conversion.
pub unsafe fn vec_dot_q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    let n = x.len().min(y.len());
    if n == 0 {
        return 0.0;
    }
    const BITS: u64 = u64::from_le_bytes([1, 2, 4, 8, 16, 32, 64, 128]);
    let bits: u32;
    // SAFETY: reads `n` blocks from each slice (22 bytes: `d`, `qh`, quants; and 34), writes
    // no memory; the caller guarantees NEON and VFPv4. `ldr` of the unaligned `qh` is allowed
    // on armv7 Linux (SCTLR.A is clear).
    unsafe {
        asm!(
            ".fpu neon-vfpv4",
            "vmov d12, {lo}, {hi}",
            "vmov d13, {lo}, {hi}",
            "vmov.i8 q7, #16",
            "vmov.i32 d10, #0",
            "2:",
            "ldrh {t0}, [{x}], #2",
            "ldr {t2}, [{x}], #4",
            "vld1.8 {{d0-d1}}, [{x}]!",
            "ldrh {t1}, [{y}], #2",
            "vld1.8 {{d4-d7}}, [{y}]!",
            "vmov.32 d11[0], {t2}",
            // Low nibbles (values 0-15) by shifting the high ones out, high nibbles 16-31.
            "vshl.i8 q1, q0, #4",
            "vshr.u8 q1, q1, #4",
            "vshr.u8 q0, q0, #4",
            // Value j takes 16 off unless bit j of qh (byte j / 8, bit j % 8) is set.
            "vdup.8 d8, d11[0]",
            "vdup.8 d9, d11[1]",
            "vtst.8 q4, q4, q6",
            "vbic q4, q7, q4",
            "vsub.i8 q1, q1, q4",
            "vdup.8 d8, d11[2]",
            "vdup.8 d9, d11[3]",
            "vtst.8 q4, q4, q6",
            "vbic q4, q7, q4",
            "vsub.i8 q0, q0, q4",
            nibble_products!(),
            scale_block_and_loop!(),
            x = inout(reg) x.as_ptr() => _,
            y = inout(reg) y.as_ptr() => _,
            n = inout(reg) n => _,
            lo = in(reg) BITS as u32,
            hi = in(reg) (BITS >> 32) as u32,
            t0 = out(reg) _,
            t1 = out(reg) _,
            t2 = out(reg) _,
            bits = out(reg) bits,
            out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _, out("d5") _,
            out("d6") _, out("d7") _, out("d8") _, out("d9") _, out("d10") _, out("d11") _,
            out("d12") _, out("d13") _, out("d14") _, out("d15") _,
            options(nostack, readonly),
        );
    }
    f32::from_bits(bits)
}

/// `sums[g] = sum(a[16 g + i] * y[16 g + i])` for the sixteen groups of 16 of a super-block:
/// two products per 16-bit lane, each at most 32 * 128 for the K-quants' values.
///
/// # Safety
/// The CPU must have NEON.
#[inline]
unsafe fn group_sums(a: &[i8; 256], y: &[i8; 256], sums: &mut [i32; 16]) {
    // SAFETY: reads 256 bytes of `a` and `y`, writes the 64 bytes of `sums`; NEON per the
    // caller.
    unsafe {
        asm!(
            ".fpu neon",
            "2:",
            "vld1.8 {{d0-d3}}, [{a}]!",
            "vld1.8 {{d4-d7}}, [{y}]!",
            "vmull.s8 q4, d0, d4",
            "vmlal.s8 q4, d1, d5",
            "vmull.s8 q5, d2, d6",
            "vmlal.s8 q5, d3, d7",
            "vpaddl.s16 q4, q4",
            "vpaddl.s16 q5, q5",
            "vpadd.i32 d8, d8, d9",
            "vpadd.i32 d10, d10, d11",
            "vpadd.i32 d8, d8, d10",
            "vst1.32 {{d8}}, [{s}]!",
            "subs {n}, {n}, #1",
            "bne 2b",
            a = inout(reg) a.as_ptr() => _,
            y = inout(reg) y.as_ptr() => _,
            s = inout(reg) sums.as_mut_ptr() => _,
            n = inout(reg) 8u32 => _,
            out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _, out("d5") _,
            out("d6") _, out("d7") _, out("d8") _, out("d9") _, out("d10") _, out("d11") _,
            options(nostack),
        );
    }
}

/// Q4_K weights (`d sc q - dmin m`, `q` in 0..=15) against Q8_K activations: the quants
/// unpacked in NEON (value `64 j + l` the low nibble of `qs[32 j + l]`, `64 j + 32 + l` its
/// high one), summed per 16 by [`group_sums`], the minimums met by the activation's `bsums`.
///
/// # Safety
/// The CPU must have NEON and VFPv4 with half-precision conversion.
pub unsafe fn vec_dot_q4_k_q8_k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let mut a = [0i8; 256];
    let mut g = [0i32; 16];
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        // SAFETY: reads the 128 quant bytes, writes the 256 of `a`; NEON per the caller.
        unsafe {
            asm!(
                ".fpu neon",
                "vmov.i8 q7, #15",
                "2:",
                "vld1.8 {{d0-d3}}, [{q}]!",
                "vand q2, q0, q7",
                "vand q3, q1, q7",
                "vshr.u8 q0, q0, #4",
                "vshr.u8 q1, q1, #4",
                "vst1.8 {{d4-d7}}, [{a}]!",
                "vst1.8 {{d0-d3}}, [{a}]!",
                "subs {n}, {n}, #1",
                "bne 2b",
                q = inout(reg) x.qs.as_ptr() => _,
                a = inout(reg) a.as_mut_ptr() => _,
                n = inout(reg) 4u32 => _,
                out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _, out("d5") _,
                out("d6") _, out("d7") _, out("d14") _, out("d15") _,
                options(nostack),
            );
            group_sums(&a, &y.qs, &mut g);
        }
        let (sc, m) = scales_mins_k4(&x.scales);
        let (mut sumi, mut summ) = (0i32, 0i32);
        for s in 0..8 {
            sumi += i32::from(sc[s]) * (g[2 * s] + g[2 * s + 1]);
            summ += i32::from(m[s]) * (i32::from(y.bsums[2 * s]) + i32::from(y.bsums[2 * s + 1]));
        }
        sumf += fp16(x.d) * y.d * sumi as f32 - fp16(x.dmin) * y.d * summ as f32;
    }
    sumf
}

/// Q6_K weights (`d sc (q - 32)`, `q` 6 bits) against Q8_K activations: the quants unpacked in
/// NEON (within each 128, values `l`, `l + 32`, `l + 64`, `l + 96` take the low nibble of
/// `ql[l]`, of `ql[l + 32]`, the high nibble of `ql[l]`, of `ql[l + 32]`, and bits 0-1, 2-3,
/// 4-5, 6-7 of `qh[l]` above them), summed per 16 by [`group_sums`], one scale per 16.
///
/// # Safety
/// The CPU must have NEON and VFPv4 with half-precision conversion.
pub unsafe fn vec_dot_q6_k_q8_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let mut a = [0i8; 256];
    let mut g = [0i32; 16];
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        for half in 0..2 {
            for l in [0, 16] {
                let ql = &x.ql[64 * half + l..];
                let qh = &x.qh[32 * half + l..];
                let out = &mut a[128 * half + l..];
                // SAFETY: reads 16 bytes at `ql[l]`, `ql[l + 32]` and `qh[l]` of this half,
                // writes 16 at `out[0]`, `[32]`, `[64]`, `[96]` (all inside the slices taken
                // above: 64 - l >= 48 bytes of `ql`, 128 - l >= 112 of `out`); NEON per the
                // caller.
                unsafe {
                    asm!(
                        ".fpu neon",
                        "vmov.i8 q7, #15",
                        "vmov.i8 q6, #48",
                        "vmov.i8 q5, #32",
                        "vld1.8 {{d0-d1}}, [{ql0}]",
                        "vld1.8 {{d2-d3}}, [{ql1}]",
                        "vld1.8 {{d4-d5}}, [{qh}]",
                        // Values l (low nibble of ql[l], qh bits 0-1).
                        "vand q3, q0, q7",
                        "vshl.i8 q4, q2, #4",
                        "vand q4, q4, q6",
                        "vorr q3, q3, q4",
                        "vsub.i8 q3, q3, q5",
                        "vst1.8 {{d6-d7}}, [{out}], {stride}",
                        // Values l + 32 (low nibble of ql[l + 32], qh bits 2-3).
                        "vand q3, q1, q7",
                        "vshl.i8 q4, q2, #2",
                        "vand q4, q4, q6",
                        "vorr q3, q3, q4",
                        "vsub.i8 q3, q3, q5",
                        "vst1.8 {{d6-d7}}, [{out}], {stride}",
                        // Values l + 64 (high nibble of ql[l], qh bits 4-5).
                        "vshr.u8 q3, q0, #4",
                        "vand q4, q2, q6",
                        "vorr q3, q3, q4",
                        "vsub.i8 q3, q3, q5",
                        "vst1.8 {{d6-d7}}, [{out}], {stride}",
                        // Values l + 96 (high nibble of ql[l + 32], qh bits 6-7).
                        "vshr.u8 q3, q1, #4",
                        "vshr.u8 q4, q2, #2",
                        "vand q4, q4, q6",
                        "vorr q3, q3, q4",
                        "vsub.i8 q3, q3, q5",
                        "vst1.8 {{d6-d7}}, [{out}]",
                        ql0 = in(reg) ql.as_ptr(),
                        ql1 = in(reg) ql[32..].as_ptr(),
                        qh = in(reg) qh.as_ptr(),
                        out = inout(reg) out.as_mut_ptr() => _,
                        stride = in(reg) 32u32,
                        out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _,
                        out("d5") _, out("d6") _, out("d7") _, out("d8") _, out("d9") _,
                        out("d10") _, out("d11") _, out("d12") _, out("d13") _, out("d14") _,
                        out("d15") _,
                        options(nostack),
                    );
                }
            }
        }
        // SAFETY: NEON per the caller.
        unsafe { group_sums(&a, &y.qs, &mut g) };
        let sumi: i32 = g
            .iter()
            .zip(&x.scales)
            .map(|(&g, &s)| g * i32::from(s))
            .sum();
        sumf += fp16(x.d) * y.d * sumi as f32;
    }
    sumf
}
