//! The ARM builds end to end (issues #4, #5 and #14; the armv7 one, scalar and NEON, at the end): the static `sintra-rt` for
//! `aarch64-unknown-linux-musl`, run under qemu-user (`qemu-aarch64-static`), against the
//! static host build (`x86_64-unknown-linux-musl`, the same libc and so the same libm) on the
//! same text.
//!
//! - **The port and the SIMD kernels: identical logits.** Under qemu's default CPU (NEON and the
//!   dot-product extension) the `neon+dotprod-exact` table runs, on the host the AVX2 one. The NEON
//!   kernels compute the AVX2 kernels' f32 arithmetic (the same lanes, fused multiply-adds,
//!   horizontal-sum tree, quantizers and vector steps; `kernels`' `cross_isa` test holds each
//!   kernel to the AVX2 results bit for bit), so the two builds must give the same
//!   log-probabilities, byte for byte in the `--save-logits` files, and the same PPL.
//!   Measured: PPL 10.5463 on both, identical files (before the NEON kernels took the AVX2
//!   order they summed in ggml's ARM order: 0.31% apart over the device test's 1,000 tokens).
//!   Identical logits hold the port too: a porting bug outside the kernels (model loading,
//!   tokenizer, byte order, libm) would move them. (A run of both builds on their scalar
//!   tables, held to issue #5's 0.1%, checked that separately and measured identical PPLs; it
//!   cost some 90 s of qemu per suite and could find nothing these bytes do not. The scalar
//!   kernels themselves are tested under qemu in `kernels`' own tests.)
//!   The default table differs from the exact one only in Q4_0, Q4_1 and Q8_0 matrices: on a
//!   file with none of them it computes the same logits (`benches/arm-tolerance.sh` measures
//!   those types over 2,040 positions).
//!
//! qemu runs the model some 10-50x slower than the host, so the text is one 128-token window
//! (the second half of it scored, as llama.cpp's perplexity does).

use sintra_tests::{data_file, dist_runtime, output_number, smollm2_q4_1};
use std::path::Path;
use std::process::Command;

const TARGET: &str = "aarch64-unknown-linux-musl";
/// The host build compared with: static musl like the aarch64 one.
const HOST_TARGET: &str = "x86_64-unknown-linux-musl";
/// The largest relative PPL difference between the scalar builds: issue #5's 0.1%.
const PORT_BOUND: f64 = 0.001;
const RUNNER: &str = "qemu-aarch64-static";
/// The NEON table in the AVX2 table's arithmetic (the default `neon+dotprod` table's Q8_0, Q4_0
/// and Q4_1 kernels sum in their own order: held by tolerances below).
const EXACT: &str = "dotprod-exact";
/// Windows of 128 tokens.
const CHUNKS: usize = 1;
/// Bytes of eval.txt given to both builds: comfortably more than `CHUNKS` windows.
const TEXT_BYTES: usize = 2000;

/// `program args...` (under `runner` when given) with `SINTRA_KERNELS=kernels`: its stdout,
/// or a panic with its stderr.
fn run(runner: Option<&str>, kernels: &str, program: &Path, args: &[&str]) -> String {
    let mut command = match runner {
        Some(runner) => {
            let mut c = Command::new(runner);
            c.arg(program);
            c
        }
        None => Command::new(program),
    };
    let out = command
        .env("SINTRA_KERNELS", kernels)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {runner:?} {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{runner:?} {} {args:?} failed ({}):\n{stdout}\n{}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The first [`TEXT_BYTES`] of eval.txt (to a character boundary) in `eval-slice.txt` of a new
/// temporary directory named after `what`: `(directory, file)`.
fn eval_slice(what: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    eval_slice_of(what, TEXT_BYTES)
}

/// [`eval_slice`] of the first `bytes`.
fn eval_slice_of(what: &str, bytes: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let eval = std::fs::read_to_string(data_file("eval.txt")).unwrap();
    let mut end = bytes.min(eval.len());
    while !eval.is_char_boundary(end) {
        end -= 1;
    }
    let dir = std::env::temp_dir().join(format!("sintra-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("eval-slice.txt");
    std::fs::write(&text, &eval[..end]).unwrap();
    (dir, text)
}

/// `perplexity` of `model` on `text` in [`CHUNKS`] windows of 128 tokens.
fn perplexity_args(model: &Path, text: &Path) -> Vec<String> {
    let mut args: Vec<String> = ["perplexity", "-m"].map(String::from).to_vec();
    args.push(model.display().to_string());
    args.push("-f".into());
    args.push(text.display().to_string());
    args.extend(["-c", "128", "--chunks"].map(String::from));
    args.push(CHUNKS.to_string());
    args
}

/// The `Final estimate: PPL = X +/- E` of a perplexity run.
fn final_ppl(stdout: &str) -> f64 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Final estimate: PPL = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no final PPL in:\n{stdout}"))
}

#[test]
fn aarch64_build_under_qemu_matches_the_host_perplexity() {
    let _loading = sintra_tests::loading_lock();
    let model = smollm2_q4_1();
    let (dir, text) = eval_slice("aarch64");

    let host = dist_runtime(HOST_TARGET);
    let arm = dist_runtime(TARGET);

    let version = run(Some(RUNNER), EXACT, &arm, &["--version"]);
    assert!(
        version.contains(TARGET) && version.contains("kernels: neon+dotprod-exact"),
        "--version under qemu: {version}"
    );

    // The host's exact AVX2 table (no packing: ggml's order throughout), whatever table it
    // would pick: the claim below is that table's.
    let host_version = run(None, "avx2-exact", &host, &["--version"]);
    assert!(
        host_version.contains("kernels: avx2-exact"),
        "the NEON = AVX2 claim needs a host that runs the AVX2 table: {host_version}"
    );

    let perplexity = |runner, kernels, program, logits: &Path| {
        let mut args = perplexity_args(&model, &text);
        args.extend(["--save-logits".to_string(), logits.display().to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let start = std::time::Instant::now();
        let ppl = final_ppl(&run(runner, kernels, program, &args));
        let bytes = std::fs::read(logits).unwrap();
        (ppl, bytes, start.elapsed().as_secs_f64())
    };
    let logits = |name: &str| dir.join(format!("{name}.logits"));
    let (host_simd, host_simd_logits, host_s) =
        perplexity(None, "avx2-exact", &host, &logits("host"));
    let (arm_simd, arm_simd_logits, arm_simd_s) =
        perplexity(Some(RUNNER), EXACT, &arm, &logits("arm"));
    // The default table differs from the exact one only in Q4_0, Q4_1 and Q8_0 matrices (all
    // of this file's): on a file with none of them (Q4_K, with Q5_0 for the 576-wide rows) it
    // must compute the exact table's logits. (Those are not the x86 build's for Q4_K: llama.cpp
    // repacks Q4_K on AVX2 and sums it in that order, which the x86 exact table reproduces.)
    let k_file = sintra_tests::requant::smollm2_as(formats::quant::GgmlType::Q4_K);
    // Which table runs Q4_K needs no long text: one window of 32 (15 scored positions, every
    // log-probability compared) instead of 128 saves two thirds of two qemu runs.
    let k_logits = |runner, kernels, program, name: &str| {
        let path = logits(name);
        let mut args = perplexity_args(&k_file, &text);
        let c = args.iter().position(|a| a == "-c").unwrap() + 1;
        args[c] = "32".to_string();
        args.extend(["--save-logits".to_string(), path.display().to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(runner, kernels, program, &args);
        std::fs::read(path).unwrap()
    };
    let arm_exact_k = k_logits(Some(RUNNER), EXACT, &arm, "arm-exact-k");
    let arm_default_k = k_logits(Some(RUNNER), "auto", &arm, "arm-default-k");
    std::fs::remove_dir_all(&dir).ok();

    let simd = (arm_simd - host_simd).abs() / host_simd;
    // f16 log-probabilities that differ, of the scored positions' whole vocabulary.
    let differing = host_simd_logits
        .chunks(2)
        .zip(arm_simd_logits.chunks(2))
        .filter(|(a, b)| a != b)
        .count();
    eprintln!(
        "host {} PPL {host_simd:.4} ({host_s:.1} s); under qemu {} {arm_simd:.4} ({arm_simd_s:.1} \
         s, {:.4}% from the host's run, {differing} of {} saved log-probabilities differ)",
        host_version.trim(),
        version.trim(),
        100.0 * simd,
        host_simd_logits.len() / 2
    );
    assert_eq!(
        arm_simd, host_simd,
        "aarch64 NEON PPL vs host AVX2 PPL: the kernels compute the same f32 values"
    );
    assert!(
        arm_simd_logits == host_simd_logits,
        "aarch64 NEON vs host AVX2: {differing} saved log-probabilities differ (sizes {} and {})",
        arm_simd_logits.len(),
        host_simd_logits.len()
    );
    assert!(
        arm_default_k == arm_exact_k,
        "aarch64's default table on a file without Q4_0, Q4_1 or Q8_0 matrices (Q4_K and Q5_0) must \
         compute the exact table's logits"
    );
}

/// Windows of 128 tokens for the fast kernels' tolerances (63 scored positions each).
const FAST_CHUNKS: usize = 4;
/// Issue #14's bars for a fast path: top-1 agreement with llama.cpp's arithmetic and the
/// relative perplexity difference (the armv7 test eases each to the scalar oracle's own).
const FAST_TOP1: f64 = 0.99;
const FAST_PPL: f64 = 0.003;

/// The default table of the cores without i8mm (`neon+dotprod`: the Cortex-A76 of the
/// Raspberry Pi 5, the A78AE of the Jetson Orin), whose Q8_0, Q4_0 and Q4_1 kernels sum in their
/// own order (issue #14's fast path: weights packed in four-row groups at load time, exact
/// integer block sums by indexed `SDOT`, one fused multiply-add per block, row and token, and
/// one more for Q4_1's minimum), on the default model (Q4_1 matrices, Q8_0 classifier), 4
/// windows of 128 tokens under qemu (252 scored positions: qemu decodes some 20x slower than
/// the host), against the host's exact AVX2 run, whose logits are llama.cpp's bit for bit
/// (`runtime_vs_llama`).
///
/// **The bars are the scalar oracle's distance from that run**, as for the x86 fast path
/// (`sintra_tests::tolerance`): 8-bit activations turn an ulp of difference in any sum into
/// activation-quantization noise, so every order of sums but llama.cpp's own lands at about the
/// same distance from it (`docs/issue14/tolerance.md`). The mean KL divergence must be within
/// 1.5 times the host scalar oracle's on the same windows, and top-1 agreement within two
/// points of the oracle's (a token is 0.4 points here). The perplexities are printed, not held:
/// over 252 positions a change of order moves them by up to 1% either way (measured: the
/// oracle -0.26%, this table -0.95%, the x86 fast path +0.04%, at mean KLDs of 0.00344, 0.00325
/// and 0.00334), while over 2,040 positions (`benches/arm-tolerance.sh`) this table is +0.066%
/// with 96.13% top-1 agreement and the oracle -0.020% with 95.98%.
///
/// Q4_0's packed order keeps the exact table's sums (nothing moves: 100% agreement over 2,040
/// positions); it is held over 1,000 tokens to 0.1% by
/// `device::ssh_aarch64_runtime_deploys_benchmarks_and_matches_host_perplexity`, on the table
/// qemu's default CPU picks, `neon+i8mm`, whose logits are this table's bit for bit (its
/// `SMMLA` prompt products are the same kernels' values: `kernels`' packed tests).
#[test]
fn aarch64_fast_kernels_hold_the_tolerances() {
    const DOTPROD: &str = "neon+dotprod";
    let _loading = sintra_tests::loading_lock();
    let model = smollm2_q4_1();
    let (dir, text) = eval_slice_of("aarch64-fast", 4 * TEXT_BYTES);
    let host = dist_runtime(HOST_TARGET);
    let arm = dist_runtime(TARGET);
    let version = run(Some(RUNNER), DOTPROD, &arm, &["--version"]);
    assert!(
        version.contains(&format!("kernels: {DOTPROD})")),
        "the dot-product table under qemu: {version}"
    );
    let base = dir.join("host.logits");
    let args = |extra: [&str; 2]| {
        let mut args = perplexity_args(&model, &text);
        let n = args.len();
        args[n - 1] = FAST_CHUNKS.to_string();
        args.extend(extra.map(String::from));
        args
    };
    let host_args = args(["--save-logits", base.to_str().unwrap()]);
    let host_args: Vec<&str> = host_args.iter().map(String::as_str).collect();
    let host_out = run(None, "avx2-exact", &host, &host_args);
    let kld_args = args(["--kl-divergence-base", base.to_str().unwrap()]);
    let kld_args: Vec<&str> = kld_args.iter().map(String::as_str).collect();
    let out = run(Some(RUNNER), DOTPROD, &arm, &kld_args);
    let oracle = run(None, "scalar", &host, &kld_args);
    std::fs::remove_dir_all(&dir).ok();
    let scored = output_number(&out, "scored");
    let same_top = output_number(&out, "Same top p:");
    let kld = output_number(&out, "Mean KLD:");
    let (oracle_top, oracle_kld) = (
        output_number(&oracle, "Same top p:"),
        output_number(&oracle, "Mean KLD:"),
    );
    let host_ppl = final_ppl(&host_out);
    let change = |ppl: f64| 100.0 * (ppl - host_ppl) / host_ppl;
    eprintln!(
        "fast path under qemu ({}) against the host's exact AVX2 run (PPL {host_ppl:.4}), {scored} \
         positions: PPL {:+.3}%, top-1 agreement {same_top:.2}%, mean KLD {kld:.6}; the host's \
         scalar oracle: PPL {:+.3}%, top-1 {oracle_top:.2}%, mean KLD {oracle_kld:.6}",
        version.lines().next().unwrap_or_default(),
        change(final_ppl(&out)),
        change(final_ppl(&oracle)),
    );
    assert!(
        scored >= (FAST_CHUNKS * 63) as f64,
        "{scored} positions scored, {FAST_CHUNKS} windows asked:\n{out}"
    );
    assert!(
        kld > 0.0 && kld <= 1.5 * oracle_kld,
        "mean KLD {kld} against the scalar oracle's {oracle_kld}"
    );
    assert!(
        same_top >= oracle_top - 2.0,
        "top-1 agreement {same_top}% against the scalar oracle's {oracle_top}%"
    );
}

/// The 32-bit build (issue #14): 32-bit Raspberry Pi OS runs `armv7-unknown-linux-gnueabihf`
/// linked statically (`+crt-static`: no dynamic loader asked for, so it runs on any armv7 Linux
/// whatever its glibc), under `qemu-arm-static`, whose CPU has NEON and VFPv4:
///
/// - **The port**: its scalar table must give the host scalar build's perplexity, held to
///   [`PORT_BOUND`] (one window of the Q4_1 file). Measured: 34.4112 against the static musl
///   host build's 34.4377, 0.077% apart: glibc's libm against musl's (the x86-64 glibc build
///   gives 34.4112 too).
/// - **Its NEON kernels** (`armv7+neon`, the table it picks: Q4_0, Q4_1, Q5_0, Q8_0, Q4_K and
///   Q6_K in inline assembly, summing in their own order) against the host's exact AVX2 run
///   (llama.cpp's logits), over [`FAST_CHUNKS`] windows of llama.cpp's Q4_K_M preset of
///   SmolLM2 (Q5_0, Q8_0, Q4_K and Q6_K matrices): top-1 agreement >= 99% and |ΔPPL| <= 0.3%,
///   each bar eased to what the host's scalar oracle itself reaches against that run where it
///   reaches less (as the x86 teacher-forced tests ease them to llama.cpp's own consistency:
///   any other summation order flips some 5% of this model's top tokens). Measured: armv7+neon
///   94.84% and +0.29%; the oracle 94.84% and +0.81%.
#[test]
fn armv7_build_under_qemu_matches_the_host_perplexity() {
    const ARMV7: &str = "armv7-unknown-linux-gnueabihf";
    const RUNNER: &str = "qemu-arm-static";
    let _loading = sintra_tests::loading_lock();
    let model = smollm2_q4_1();
    let (dir, text) = eval_slice_of("armv7", 4 * TEXT_BYTES);

    let arm = dist_runtime(ARMV7);
    let bytes = std::fs::read(&arm).unwrap();
    assert!(
        !has_interpreter(&bytes),
        "{} asks for a dynamic loader (PT_INTERP): it is not static",
        arm.display()
    );
    let version = run(Some(RUNNER), "auto", &arm, &["--version"]);
    assert!(
        version.contains(ARMV7) && version.contains("kernels: armv7+neon"),
        "--version under qemu: {version}"
    );
    let host = dist_runtime(HOST_TARGET);
    let args = perplexity_args(&model, &text);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let host_ppl = final_ppl(&run(None, "scalar", &host, &args));
    let start = std::time::Instant::now();
    let arm_ppl = final_ppl(&run(Some(RUNNER), "scalar", &arm, &args));
    let scalar_s = start.elapsed().as_secs_f64();
    let apart = (arm_ppl - host_ppl).abs() / host_ppl;

    let preset = sintra_tests::presets::smollm2_preset(sintra_tests::presets::Preset::Q4_K_M);
    let base = dir.join("host.logits");
    let fast_args = |extra: [&str; 2]| {
        let mut args = perplexity_args(&preset, &text);
        let n = args.len();
        args[n - 1] = FAST_CHUNKS.to_string();
        args.extend(extra.map(String::from));
        args
    };
    let host_args = fast_args(["--save-logits", base.to_str().unwrap()]);
    let host_args: Vec<&str> = host_args.iter().map(String::as_str).collect();
    let exact_ppl = final_ppl(&run(None, "avx2-exact", &host, &host_args));
    let against_exact = fast_args(["--kl-divergence-base", base.to_str().unwrap()]);
    let against_exact: Vec<&str> = against_exact.iter().map(String::as_str).collect();
    let oracle = Agreement::of(&run(None, "scalar", &host, &against_exact));
    let start = std::time::Instant::now();
    let neon = Agreement::of(&run(Some(RUNNER), "auto", &arm, &against_exact));
    let neon_s = start.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&dir).ok();
    let dppl = |a: &Agreement| (a.ppl - exact_ppl).abs() / exact_ppl;
    let top1_bar = FAST_TOP1.min(oracle.same_top - 0.01);
    let ppl_bar = FAST_PPL.max(dppl(&oracle));
    eprintln!(
        "armv7 under qemu: {}; Q4_1 scalar PPL {arm_ppl:.4} ({scalar_s:.1} s), host scalar \
         {host_ppl:.4} ({:.4}% apart); Q4_K_M against the host's exact AVX2 (PPL {exact_ppl:.4}) \
         over {} positions: armv7+neon PPL {:.4} ({:+.4}%, {neon_s:.1} s), top-1 {:.2}%; the \
         host's scalar oracle PPL {:.4} ({:+.4}%), top-1 {:.2}%",
        version.trim(),
        100.0 * apart,
        neon.scored,
        neon.ppl,
        100.0 * (neon.ppl - exact_ppl) / exact_ppl,
        100.0 * neon.same_top,
        oracle.ppl,
        100.0 * (oracle.ppl - exact_ppl) / exact_ppl,
        100.0 * oracle.same_top
    );
    assert!(
        apart <= PORT_BOUND,
        "armv7 PPL {arm_ppl} vs host scalar {host_ppl}: {:.4}% apart (more than {}%)",
        100.0 * apart,
        100.0 * PORT_BOUND
    );
    assert!(
        neon.scored >= (FAST_CHUNKS * 63) as f64,
        "{} positions scored, {FAST_CHUNKS} windows asked",
        neon.scored
    );
    assert!(
        neon.same_top >= top1_bar,
        "armv7+neon top-1 agreement {} < {top1_bar}",
        neon.same_top
    );
    assert!(
        dppl(&neon) <= ppl_bar,
        "armv7+neon PPL {} vs {exact_ppl}: {:.4}% apart (bar {:.4}%)",
        neon.ppl,
        100.0 * dppl(&neon),
        100.0 * ppl_bar
    );
}

/// What a `perplexity --kl-divergence-base` run printed: its PPL, the fraction of positions
/// whose top token is the base's, and how many positions it scored.
struct Agreement {
    ppl: f64,
    same_top: f64,
    scored: f64,
}

impl Agreement {
    fn of(out: &str) -> Agreement {
        let field = |label: &str| output_number(out, label);
        Agreement {
            ppl: final_ppl(out),
            same_top: field("Same top p:") / 100.0,
            scored: field("scored"),
        }
    }
}

/// Whether a 32-bit little-endian ELF file has a `PT_INTERP` program header (asks for a dynamic
/// loader). Panics on a file that is not one.
fn has_interpreter(elf: &[u8]) -> bool {
    assert!(
        elf.len() > 0x34 && elf[..4] == *b"\x7fELF" && elf[4] == 1 && elf[5] == 1,
        "not a 32-bit little-endian ELF file"
    );
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u32_at(0x1c), u16_at(0x2a), u16_at(0x2c));
    (0..phnum).any(|i| u32_at(phoff + i * phentsize) == 3)
}

/// The new architectures on the aarch64 build (issue #15): the synthetic qwen3 and gemma3
/// models (Q8_0; gemma3's sliding window of 32 inside the 128-token window) and the real
/// gemma-3-270m (its Q4_K_M file and a Q8_0 requantization) under qemu. On the Q8_0 files the
/// exact NEON table computes the x86 build's exact logits byte for byte (Q8_0 is one of the
/// types whose AVX2 order NEON reproduces; on AVX2 llama.cpp repacks Q4_K, whose order NEON's
/// exact table does not take, so the Q4_K_M file's exact table is not run: under qemu a pass
/// of gemma's 262,144-token classifier costs minutes, and nothing would be held); the default table
/// (packed Q8_0, its own order) stays within three times the host scalar oracle's mean KL
/// divergence from the host's exact run (any other order of sums lands near the oracle's
/// distance: 8-bit activations amplify an ulp). The real gemma runs each table once, not both
/// on both files: the exact one on the Q8_0 file, the default one on the Q4_K_M file (whose
/// Q8_0, Q6_K and Q4_K matrices it packs or sums in its own order; the packed Q8_0 kernels are
/// held on SmolLM2 by `aarch64_fast_kernels_hold_the_tolerances` and the device test). Top-1
/// agreement is printed, not held: over 63 positions one token is 1.6 points, and a random
/// model's top two tokens are often near-ties.
#[test]
fn aarch64_runs_the_new_architectures() {
    use sintra_tests::synthetic::{synthetic, Arch};
    let _loading = sintra_tests::loading_lock();
    let (dir, text) = eval_slice("aarch64-archs");
    let host = dist_runtime(HOST_TARGET);
    let arm = dist_runtime(TARGET);
    use formats::quant::GgmlType::Q8_0;
    // (name, file, whether NEON's exact table reproduces the AVX2 one on all its types (run and
    // held to it), whether the default table runs)
    let models = [
        ("qwen3 Q8_0", synthetic(Arch::Qwen3, Q8_0), true, true),
        ("gemma3 Q8_0", synthetic(Arch::Gemma3, Q8_0), true, true),
        (
            "gemma-3-270m Q8_0",
            sintra_tests::requant::gemma3_as(Q8_0),
            true,
            false,
        ),
        (
            "gemma-3-270m Q4_K_M",
            sintra_tests::gemma3_270m_q4_k_m(),
            false,
            true,
        ),
    ];
    for (name, model, identical, default_table) in models {
        let logits = |what: &str| dir.join(format!("{name}-{what}.logits"));
        let saved = |runner, kernels, program, what: &str| {
            let mut args = perplexity_args(&model, &text);
            args.extend([
                "--save-logits".to_string(),
                logits(what).display().to_string(),
            ]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let ppl = final_ppl(&run(runner, kernels, program, &args));
            (ppl, std::fs::read(logits(what)).unwrap())
        };
        let (host_ppl, host_logits) = saved(None, "avx2-exact", &host, "host");
        let exact = identical.then(|| saved(Some(RUNNER), EXACT, &arm, "arm"));
        let arm_ppl = exact.as_ref().map(|(ppl, _)| format!("{ppl:.4}"));
        eprintln!(
            "{name} under qemu: exact table PPL {} (host {host_ppl:.4})",
            arm_ppl.as_deref().unwrap_or("not run")
        );
        if let Some((_, arm_logits)) = exact {
            assert!(
                arm_logits == host_logits,
                "{name}: the aarch64 exact table's logits differ from the x86 build's"
            );
        }
        if !default_table {
            continue;
        }
        let mut args = perplexity_args(&model, &text);
        args.extend([
            "--kl-divergence-base".to_string(),
            logits("host").display().to_string(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(Some(RUNNER), "auto", &arm, &args);
        let (same_top, kld) = (
            output_number(&out, "Same top p:"),
            output_number(&out, "Mean KLD:"),
        );
        let oracle = output_number(&run(None, "scalar", &host, &args), "Mean KLD:");
        eprintln!(
            "{name} under qemu, default table against the host's exact run: mean KLD {kld:.6} \
             (the host's scalar oracle {oracle:.6}), top-1 agreement {same_top:.2}%"
        );
        assert!(
            kld <= 3.0 * oracle,
            "{name}: mean KLD {kld} > 3 x the oracle's {oracle}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
