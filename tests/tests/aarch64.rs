//! The aarch64 build end to end (issue #4): the static `sintra-rt` for
//! `aarch64-unknown-linux-musl`, run under qemu-user (`qemu-aarch64-static`), against the
//! static host build (`x86_64-unknown-linux-musl`, the same libc and so the same libm) on the
//! same text.
//!
//! - **The port, within 0.1% (the bar).** With `SINTRA_KERNELS=scalar` both builds
//!   run the same portable code; any difference would be a porting bug outside the SIMD
//!   kernels (model loading, tokenizer, byte order, libm). Measured: identical PPL.
//! - **The NEON kernels.** Under qemu's default CPU (NEON and the dot-product extension) the
//!   `neon+dotprod` table runs. Its kernels are held to the scalar oracle kernel by kernel
//!   (`kernels` parity tests, relative differences below 1e-6); end to end they differ from it
//!   only in the order of f32 additions, as AVX2 does. On a window this short that order moves
//!   the PPL by more than 0.1%: on the host, AVX2 against scalar on this same window is 1.4%
//!   apart. So the NEON run is held to the scalar one within [`SIMD_BOUND`], which a wrong
//!   kernel (a misplaced nibble, a lost scale) exceeds by far.
//!
//! qemu runs the model some 10-50x slower than the host, so the text is one 128-token window
//! (the second half of it scored, as llama.cpp's perplexity does).

use sintra_tests::{dist_runtime, shared_data, smollm2_q4_1};
use std::path::Path;
use std::process::Command;

const TARGET: &str = "aarch64-unknown-linux-musl";
/// The host build compared with: static musl like the aarch64 one.
const HOST_TARGET: &str = "x86_64-unknown-linux-musl";
/// The largest relative PPL difference between the SIMD and the scalar kernels on the window
/// (see the module doc: AVX2 vs scalar is 1.4% on the host).
const SIMD_BOUND: f64 = 0.03;
const RUNNER: &str = "qemu-aarch64-static";
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
    let _alone = sintra_tests::measuring_lock();
    let model = smollm2_q4_1();
    let eval = std::fs::read_to_string(shared_data("eval.txt")).unwrap();
    let mut end = TEXT_BYTES.min(eval.len());
    while !eval.is_char_boundary(end) {
        end -= 1;
    }
    let dir = std::env::temp_dir().join(format!("sintra-aarch64-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("eval-slice.txt");
    std::fs::write(&text, &eval[..end]).unwrap();

    let host = dist_runtime(HOST_TARGET);
    let arm = dist_runtime(TARGET);

    let version = run(Some(RUNNER), "auto", &arm, &["--version"]);
    assert!(
        version.contains(TARGET) && version.contains("kernels: neon"),
        "--version under qemu: {version}"
    );

    let chunks = CHUNKS.to_string();
    let args = [
        "perplexity",
        "-m",
        model.to_str().unwrap(),
        "-f",
        text.to_str().unwrap(),
        "-c",
        "128",
        "--chunks",
        &chunks,
    ];
    let timed = |runner, kernels, program| {
        let start = std::time::Instant::now();
        let ppl = final_ppl(&run(runner, kernels, program, &args));
        (ppl, start.elapsed().as_secs_f64())
    };
    let (host_scalar, host_s) = timed(None, "scalar", &host);
    let (arm_scalar, arm_scalar_s) = timed(Some(RUNNER), "scalar", &arm);
    let (arm_simd, arm_simd_s) = timed(Some(RUNNER), "auto", &arm);
    std::fs::remove_dir_all(&dir).ok();

    let port = (arm_scalar - host_scalar).abs() / host_scalar;
    let simd = (arm_simd - arm_scalar).abs() / arm_scalar;
    eprintln!(
        "host scalar PPL {host_scalar:.4} ({host_s:.1} s); under qemu: scalar {arm_scalar:.4} \
         ({arm_scalar_s:.1} s, {:.4}% apart), {} {arm_simd:.4} ({arm_simd_s:.1} s, {:.3}% from \
         scalar)",
        100.0 * port,
        version.trim(),
        100.0 * simd
    );
    assert!(
        port <= 0.001,
        "aarch64 scalar PPL {arm_scalar} vs host {host_scalar}: {:.4}% apart (more than 0.1%)",
        100.0 * port
    );
    assert!(
        simd <= SIMD_BOUND,
        "aarch64 NEON PPL {arm_simd} vs scalar {arm_scalar}: {:.3}% apart (more than {}%)",
        100.0 * simd,
        100.0 * SIMD_BOUND
    );
}
