//! The aarch64 build end to end (issue #4): the static `sintra-rt` for
//! `aarch64-unknown-linux-musl`, run under qemu-user (`qemu-aarch64-static`, whose default CPU
//! has NEON and the dot-product extension, so the `neon+dotprod` kernels run), computes the
//! same perplexity as the host build on the same text, within 0.1%.
//!
//! Both builds sum the same integers per block; they differ only in the order of f32
//! additions (NEON against AVX2 lanes) and so agree far inside 0.1% unless a kernel is
//! wrong. qemu runs the model some 10-50x slower than the host, so the text is one
//! 128-token window (the second half of it scored, as llama.cpp's perplexity does).

use sintra_tests::{bin_path, bin_path_for_target, shared_data, smollm2_q4_1};
use std::path::Path;
use std::process::Command;

const TARGET: &str = "aarch64-unknown-linux-musl";
const RUNNER: &str = "qemu-aarch64-static";
/// Windows of 128 tokens.
const CHUNKS: usize = 1;
/// Bytes of eval.txt given to both builds: comfortably more than `CHUNKS` windows.
const TEXT_BYTES: usize = 2000;

/// `program args...` (under `runner` when given): its stdout, or a panic with its stderr.
fn run(runner: Option<&str>, program: &Path, args: &[&str]) -> String {
    let mut command = match runner {
        Some(runner) => {
            let mut c = Command::new(runner);
            c.arg(program);
            c
        }
        None => Command::new(program),
    };
    let out = command
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

    let host = bin_path("runtime", "sintra-rt");
    let arm = bin_path_for_target("runtime", "sintra-rt", TARGET);

    let version = run(Some(RUNNER), &arm, &["--version"]);
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
    let start = std::time::Instant::now();
    let ppl_host = final_ppl(&run(None, &host, &args));
    let host_s = start.elapsed().as_secs_f64();
    let start = std::time::Instant::now();
    let ppl_arm = final_ppl(&run(Some(RUNNER), &arm, &args));
    let arm_s = start.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&dir).ok();

    let relative = (ppl_arm - ppl_host).abs() / ppl_host;
    eprintln!(
        "aarch64 ({}) under qemu: PPL {ppl_arm:.4} in {arm_s:.1} s; host: PPL {ppl_host:.4} in \
         {host_s:.1} s; difference {:.4}%",
        version.trim(),
        100.0 * relative
    );
    assert!(
        relative <= 0.001,
        "aarch64 PPL {ppl_arm} vs host {ppl_host}: {:.4}% apart (more than 0.1%)",
        100.0 * relative
    );
}
