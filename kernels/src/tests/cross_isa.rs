//! The SIMD tables of both ISAs against one golden file: the f32 (and f16, and quantized byte)
//! results of the AVX2 table on fixed pseudo-random inputs, recorded on x86-64
//! (`cross_isa_golden.txt`), which the NEON tables (baseline and `dotprod`, under qemu in CI:
//! `cargo test -p kernels --target aarch64-unknown-linux-musl`) must reproduce **bit for bit**,
//! and the AVX2 table itself too, so the file cannot go stale. This is what lets an AArch64
//! build compute the x86 build's logits exactly (issue #5): every kernel the forward pass
//! calls, each activation quantizer, matrix-vector product and vector step, is here.
//!
//! NEON and AVX2 cannot run in one process, hence the file. The inputs are made with integer
//! and exact f32 arithmetic only (no libm: the x86 test build links glibc, the AArch64 one
//! musl), so both sides see the same bits. Lines are `name: value value ...`: the f32 results
//! as hex bits, or for a long output the FNV-1a hash of its bytes.
//!
//! To re-record after a deliberate change of the AVX2 arithmetic (which moves x86 away from
//! llama.cpp's bits too, `tests/tests/vec_dot_vs_ggml.rs`), on an x86-64 CPU with AVX2:
//! `KERNELS_BLESS_GOLDEN=1 cargo test -p kernels cross_isa`, then run the AArch64 tests.

use super::*;
use crate::dispatch::{table, Isa};
use crate::{KernelTable, WEIGHT_TYPES};
use bytemuck::Zeroable;
use formats::quant::{BlockQ8K, BlockQ8_0, BlockQ8_1, QK_K};

/// The golden results, as recorded by the AVX2 table.
const GOLDEN: &str = include_str!("cross_isa_golden.txt");
/// Where [`GOLDEN`] is re-recorded from (`KERNELS_BLESS_GOLDEN=1`).
const GOLDEN_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/src/tests/cross_isa_golden.txt"
);
/// Weight rows per matrix: one pass of four rows (the row-blocked kernels) and two single ones.
const ROWS: usize = 6;

/// Test data from the bits of [`Rng::next_u64`] with exact arithmetic only.
impl Rng {
    /// Uniform in [0, 1), a multiple of 2^-24 (exact in f32).
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u32 << 24) as f32
    }

    /// Bell-shaped (four uniforms summed, centred, variance 1/3), one value in 32 sixteen
    /// times larger: activations with outliers.
    fn bell(&mut self) -> f32 {
        let s = self.unit() + self.unit() + self.unit() + self.unit() - 2.0;
        if self.next_u64().is_multiple_of(32) {
            16.0 * s
        } else {
            s
        }
    }

    /// A finite half of random sign and mantissa, magnitude in `2^-10 .. 2^5`.
    fn half(&mut self) -> u16 {
        let r = self.next_u64();
        let sign = (r & 1) as u16;
        let exponent = 5 + (r >> 1) % 15;
        let mantissa = (r >> 8) as u16 & 0x3ff;
        sign << 15 | (exponent as u16) << 10 | mantissa
    }
}

/// `n` values of [`Rng::bell`] times `scale`.
fn bells(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.bell() * scale).collect()
}

/// `rows` weight rows of `n` values of type `w`: random bytes (every quant and sub-block
/// scale pattern) with random finite halves for the f16 scales and values.
fn weight_rows(w: GgmlType, n: usize, rows: usize, rng: &mut Rng) -> Aligned {
    let mut a = Aligned::zeroed(rows * w.row_size(n).unwrap());
    for b in a.bytes_mut() {
        *b = rng.next_u64() as u8;
    }
    if w == GgmlType::F32 {
        for v in bytemuck::cast_slice_mut::<u8, f32>(a.bytes_mut()) {
            *v = rng.bell();
        }
    } else {
        // (BF16 values are made from the halves.)
        super::accuracy::set_f16_fields(w, a.bytes_mut(), |rng| rng.half(), rng);
    }
    a
}

/// FNV-1a over `bytes`.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// f32 results as their hex bits.
fn hex(values: &[f32]) -> String {
    let words: Vec<String> = values
        .iter()
        .map(|v| format!("{:08x}", v.to_bits()))
        .collect();
    words.join(" ")
}

/// Every golden line of table `t`, in order: `(name, value)`.
fn results(t: &KernelTable) -> Vec<(String, String)> {
    let mut out = Vec::new();
    // Matrix-vector products with the table's own activation quantizer, for every weight
    // type: one to many blocks (odd counts for IQ4_NL's pairs, the SmolLM2 widths).
    for &w in WEIGHT_TYPES {
        let lengths: &[usize] = match w.block_size() {
            1 => &[1, 7, 8, 31, 32, 33, 100, 576],
            32 => &[32, 64, 96, 224, 576, 1536],
            _ => &[QK_K, 2 * QK_K, 3 * QK_K, 6 * QK_K],
        };
        for &n in lengths {
            let mut rng = Rng::new(0xc105_5150 ^ (w as u64) << 32 ^ n as u64);
            let m = weight_rows(w, n, ROWS, &mut rng);
            let x = bells(&mut rng, n, 1.0);
            let mut act = Aligned::zeroed(activation_bytes(w, n).unwrap());
            t.quantize_activation(w, &x, act.bytes_mut()).unwrap();
            let mut y = [0f32; ROWS];
            t.matvec(w, m.bytes(), 0..ROWS, n, act.bytes(), &mut y)
                .unwrap();
            out.push((format!("matvec {w} n={n}"), hex(&y)));
        }
    }
    // The activation quantizers, on rows of every magnitude and with exact ties.
    for (k, scale) in [1e-30f32, 1e-3, 1.0, 3.0, 1e3, 1e30]
        .into_iter()
        .enumerate()
    {
        let mut rng = Rng::new(0x0a7e_0000 + k as u64);
        let n = 2 * QK_K;
        let mut x = bells(&mut rng, n, scale);
        // Halves after scaling by 127 / amax: ties in both directions.
        for (i, v) in x.iter_mut().enumerate().skip(64).take(32) {
            *v = if i == 64 {
                127.0
            } else {
                (i % 32) as f32 - 15.5
            };
        }
        let mut q8_0 = vec![BlockQ8_0::zeroed(); n / 32];
        let mut q8_1 = vec![BlockQ8_1::zeroed(); n / 32];
        let mut q8_k = vec![BlockQ8K::zeroed(); n / QK_K];
        (t.quantize_q8_0)(&x, &mut q8_0);
        (t.quantize_q8_1)(&x, &mut q8_1);
        (t.quantize_q8_k)(&x, &mut q8_k);
        for (name, bytes) in [
            ("Q8_0", bytemuck::cast_slice::<_, u8>(&q8_0)),
            ("Q8_1", bytemuck::cast_slice(&q8_1)),
            ("Q8_K", bytemuck::cast_slice(&q8_k)),
        ] {
            out.push((
                format!("quantize {name} scale={scale:e}"),
                format!("{:016x}", fnv(bytes)),
            ));
        }
    }
    // Attention's f16 steps, bodies and tails.
    let half = formats::quant::fp32_to_fp16_bits;
    for n in [1, 7, 8, 31, 32, 33, 64, 100, 576] {
        let mut rng = Rng::new(0xa77e_0000 + n as u64);
        let x: Vec<u16> = bells(&mut rng, n, 2.0).into_iter().map(half).collect();
        let y: Vec<u16> = bells(&mut rng, n, 2.0).into_iter().map(half).collect();
        let v = rng.bell();
        out.push((format!("vec_dot_f16 n={n}"), hex(&[t.vec_dot_f16(&x, &y)])));
        let mut mad = y.clone();
        t.vec_mad_f16(&mut mad, &x, v);
        out.push((
            format!("vec_mad_f16 n={n}"),
            format!("{:016x}", fnv(bytemuck::cast_slice(&mad))),
        ));
        let mut scaled = y.clone();
        t.vec_scale_f16(&mut scaled, v);
        out.push((
            format!("vec_scale_f16 n={n}"),
            format!("{:016x}", fnv(bytemuck::cast_slice(&scaled))),
        ));
    }
    // SwiGLU on whole steps of eight (the tails are libm's `expf`, glibc's on the x86 test
    // build, musl's on the AArch64 one), gates up to +-200: `expf`'s special paths too.
    for (n, scale) in [(8, 1.0f32), (64, 8.0), (1536, 4.0), (256, 100.0)] {
        let mut rng = Rng::new(0x5e1u64 << 16 ^ n as u64);
        let mut gate = bells(&mut rng, n, scale);
        let up = bells(&mut rng, n, 1.0);
        t.swiglu_f32(&mut gate, &up);
        out.push((
            format!("swiglu_f32 n={n} scale={scale}"),
            format!("{:016x}", fnv(bytemuck::cast_slice(&gate))),
        ));
    }
    out
}

/// The golden file's lines as `(name, value)`, comments and blank lines left out.
fn golden() -> Vec<(String, String)> {
    GOLDEN
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Write the AVX2 results as the new golden file.
fn bless(results: &[(String, String)]) {
    let mut text = String::from(
        "# The AVX2 table's results on cross_isa.rs's inputs; every SIMD table must reproduce\n\
         # them bit for bit. Re-record: KERNELS_BLESS_GOLDEN=1 cargo test -p kernels cross_isa\n",
    );
    for (k, v) in results {
        text.push_str(&format!("{k}: {v}\n"));
    }
    std::fs::write(GOLDEN_PATH, text).unwrap();
    eprintln!("cross_isa: wrote {GOLDEN_PATH}");
}

#[test]
fn simd_tables_reproduce_the_avx2_golden_results() {
    let want = golden();
    let isas: &[Isa] = if cfg!(target_arch = "x86_64") {
        &[
            Isa::Avx2,
            Isa::Avx512Bw,
            Isa::Avx512,
            Isa::Avx2Vnni,
            Isa::Avx512Vnni,
        ]
    } else if cfg!(target_arch = "aarch64") {
        &[Isa::Neon, Isa::NeonDotprodExact]
    } else {
        &[]
    };
    for &isa in isas {
        let Some(t) = table(isa) else {
            eprintln!("cross_isa: this CPU cannot run {isa}, its kernels not compared");
            continue;
        };
        let got = results(t);
        if isa == Isa::Avx2 && std::env::var_os("KERNELS_BLESS_GOLDEN").is_some_and(|v| v == "1") {
            bless(&got);
            continue;
        }
        assert!(
            want.len() > 100,
            "golden file too short: {} lines",
            want.len()
        );
        let names = |v: &[(String, String)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        assert_eq!(names(&got), names(&want), "{isa}: the golden file's cases");
        let wrong: Vec<String> = got
            .iter()
            .zip(&want)
            .filter(|(g, w)| g.1 != w.1)
            .map(|(g, w)| format!("  {}: {isa} {} vs golden {}", g.0, g.1, w.1))
            .collect();
        assert!(
            wrong.is_empty(),
            "{isa}: {} of {} results differ from the AVX2 golden file:\n{}",
            wrong.len(),
            got.len(),
            wrong.join("\n")
        );
        eprintln!(
            "cross_isa: {isa} reproduces all {} golden results",
            got.len()
        );
    }
}
