//! The CUDA build of sintra-rt on machines without a GPU (issue #21): it builds for x86-64 and
//! for the Jetson's aarch64 glibc with its PTX embedded, runs on the CPU saying why, refuses
//! `SINTRA_DEVICE=cuda` clearly, and its GPU forward pass (run on the CPU by the CUDA emulator,
//! `kernels/src/cuda/emulator.cpp`) agrees with the CPU path on every architecture. The same
//! checks on a real GPU are `scripts/gpu-check.sh`.

use formats::quant::GgmlType;
use sintra_tests::synthetic::{synthetic, Arch};
use sintra_tests::{
    cargo_build, data_file, loading_lock, output_number, release_bin_path, smollm2_q4_1, target_dir,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const JETSON: &str = "aarch64-unknown-linux-gnu";

/// sintra-rt with the `cuda` and `cuda-emulator` features, in a target directory of its own so
/// that the other tests' builds are never rebuilt under them.
fn cuda_runtime() -> PathBuf {
    use std::sync::Mutex;
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.as_ref() {
        return p.clone();
    }
    let dir = target_dir().join("with-cuda");
    let features = ["cuda", "cuda-emulator"];
    let path = cargo_build("runtime", "sintra-rt", "release", None, &features, &dir)
        .unwrap_or_else(|e| panic!("{e} (NVRTC: `bash scripts/setup.sh`)"));
    *built = Some(path.clone());
    path
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    sintra_tests::unpanicked(out, &format!("{cmd:?}"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every architecture's PTX, with the kernels the forward pass launches, is in the binary.
fn assert_ptx_embedded(binary: &Path) {
    let bytes = std::fs::read(binary).unwrap();
    let has = |s: &str| bytes.windows(s.len()).any(|w| w == s.as_bytes());
    for target in ["sm_61", "sm_80", "sm_87", "sm_90"] {
        assert!(
            has(&format!(".target {target}")),
            "{}: no PTX for {target}",
            binary.display()
        );
    }
    for kernel in [
        "matvec_q4_0",
        "matmul_q6_k",
        "attention",
        "round_activations",
    ] {
        assert!(
            has(&format!(".entry {kernel}(")),
            "{}: no kernel {kernel}",
            binary.display()
        );
    }
}

const NO_DRIVER: &str = "no NVIDIA driver (libcuda.so.1 could not be loaded)";

#[test]
fn without_a_gpu_the_cuda_build_runs_on_the_cpu_and_says_why() {
    let cuda = cuda_runtime();
    let plain = release_bin_path("runtime", "sintra-rt");
    assert_ptx_embedded(&cuda);
    let model = smollm2_q4_1();

    let version = |bin: &Path| {
        stdout(&run(Command::new(bin)
            .arg("--version")
            .env_remove("SINTRA_DEVICE")))
    };
    let v = version(&cuda);
    assert_eq!(
        v.lines().nth(1),
        Some(format!("gpu: not used ({NO_DRIVER}): running on the CPU").as_str()),
        "{v}"
    );
    let v = version(&plain);
    assert_eq!(
        v.lines().nth(1),
        Some("gpu: none (built without the cuda feature)"),
        "{v}"
    );

    // The same greedy continuation as the plain build, and the fallback said once.
    let generate = |bin: &Path, device: Option<&str>| {
        let mut cmd = Command::new(bin);
        cmd.args(["generate", "-m"]).arg(&model);
        cmd.args(["-p", "The three primary colours are", "-n", "24", "-t", "2"]);
        match device {
            Some(d) => cmd.env("SINTRA_DEVICE", d),
            None => cmd.env_remove("SINTRA_DEVICE"),
        };
        run(&mut cmd)
    };
    let (on_cuda_build, on_plain) = (generate(&cuda, None), generate(&plain, None));
    assert!(on_cuda_build.status.success(), "{}", stderr(&on_cuda_build));
    assert_eq!(stdout(&on_cuda_build), stdout(&on_plain));
    let said = format!("sintra-rt: CUDA: {NO_DRIVER}: running on the CPU");
    assert_eq!(
        stderr(&on_cuda_build).matches(&said).count(),
        1,
        "{}",
        stderr(&on_cuda_build)
    );
    assert!(!stderr(&on_plain).contains("CUDA"), "{}", stderr(&on_plain));
    let quiet = generate(&cuda, Some("cpu"));
    assert!(
        !stderr(&quiet).contains("CUDA"),
        "SINTRA_DEVICE=cpu: {}",
        stderr(&quiet)
    );
    assert_eq!(stdout(&quiet), stdout(&on_plain));

    // Insisting on the GPU is an error naming why, never a silent CPU run.
    for (bin, why) in [
        (
            &cuda,
            format!("SINTRA_DEVICE=cuda: the model cannot run on the GPU: {NO_DRIVER}"),
        ),
        (
            &plain,
            "SINTRA_DEVICE=cuda: this sintra-rt was built without the cuda feature".into(),
        ),
    ] {
        let out = generate(bin, Some("cuda"));
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains(&why), "{}", stderr(&out));
        // (generate echoes the prompt before it loads the model; nothing follows it.)
        assert!(
            stdout(&out).trim_end() == "The three primary colours are" || stdout(&out).is_empty(),
            "{}",
            stdout(&out)
        );
    }
    let out = generate(&cuda, Some("gpu"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("SINTRA_DEVICE=gpu is not auto, cpu or cuda"),
        "{}",
        stderr(&out)
    );
    let out = generate(&plain, Some("cuda-emulator"));
    assert!(
        stderr(&out).contains("needs a build with the cuda-emulator feature"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_cuda_build_for_the_jetson_builds_for_aarch64_glibc_and_runs_under_qemu() {
    let dir = target_dir().join("with-cuda");
    let arm = cargo_build(
        "runtime",
        "sintra-rt",
        "release",
        Some(JETSON),
        &["cuda"],
        &dir,
    )
    .unwrap_or_else(|e| panic!("{e} (`bash scripts/setup.sh` installs gcc-aarch64-linux-gnu)"));
    assert_ptx_embedded(&arm);
    let _loading = loading_lock(); // qemu loads the machine
    let qemu = |args: &[&str]| {
        let mut cmd = Command::new("qemu-aarch64-static");
        cmd.args(["-L", "/usr/aarch64-linux-gnu"])
            .arg(&arm)
            .args(args)
            .env_remove("SINTRA_DEVICE");
        run(&mut cmd)
    };
    let v = stdout(&qemu(&["--version"]));
    assert!(
        v.starts_with(&format!("sintra-rt 0.1.0 ({JETSON}, kernels: neon")),
        "{v}"
    );
    assert_eq!(
        v.lines().nth(1),
        Some(format!("gpu: not used ({NO_DRIVER}): running on the CPU").as_str()),
        "{v}"
    );
    let model = smollm2_q4_1();
    let out = qemu(&[
        "generate",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "Hello",
        "-n",
        "4",
        "-t",
        "2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("generated 4 tokens"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains(&format!("CUDA: {NO_DRIVER}: running on the CPU")));
}

#[test]
fn the_gpu_forward_pass_under_the_emulator_agrees_with_the_cpu_on_every_architecture() {
    let bin = cuda_runtime();
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("eval.txt");
    let eval = std::fs::read_to_string(data_file("eval.txt")).unwrap();
    std::fs::write(&text, &eval[..3000]).unwrap();
    // The CPU's llama.cpp-exact table is the base; the CPU's scalar oracle, summing in its own
    // order, measures how far two correct CPU paths already are from it. The GPU path (its
    // prompt kernels: perplexity runs in batches) must stay within three times that.
    let perplexity = |model: &Path, device: &str, kernels: &str, logits: (&str, &Path)| {
        let mut cmd = Command::new(&bin);
        cmd.args(["perplexity", "-m"])
            .arg(model)
            .arg("-f")
            .arg(&text);
        cmd.args(["-c", "64", "--chunks", "1", "-t", "2", logits.0])
            .arg(logits.1);
        cmd.env("SINTRA_DEVICE", device)
            .env("SINTRA_KERNELS", kernels);
        let out = run(&mut cmd);
        assert!(out.status.success(), "{device} {kernels}: {}", stderr(&out));
        stdout(&out)
    };
    for (arch, ty) in [
        (Arch::Llama, GgmlType::Q4_K),
        (Arch::Qwen2, GgmlType::Q8_0),
        (Arch::Qwen3, GgmlType::Q4_K),
        (Arch::Gemma3, GgmlType::Q8_0),
        (Arch::Phi3, GgmlType::Q4_K),
    ] {
        let model = synthetic(arch, ty);
        let base = dir.path().join(format!("{}.logits", arch.name()));
        perplexity(&model, "cpu", "avx2-exact", ("--save-logits", &base));
        let against = ("--kl-divergence-base", base.as_path());
        let oracle = output_number(&perplexity(&model, "cpu", "scalar", against), "Mean KLD:");
        let gpu = perplexity(&model, "cuda-emulator", "auto", against);
        let kld = output_number(&gpu, "Mean KLD:");
        eprintln!(
            "{} {ty}: the emulated GPU's mean KLD from the CPU {kld:.6} (the scalar oracle's {oracle:.6}), same top-1 {:.2}%",
            arch.name(),
            output_number(&gpu, "Same top p:")
        );
        assert!(
            kld <= 3.0 * oracle,
            "{} {ty}: GPU KLD {kld} against the oracle's {oracle}",
            arch.name()
        );
    }
}

#[test]
fn the_gpu_decodes_under_the_emulator_what_the_cpu_decodes() {
    // One token at a time: the matrix-vector kernels and the single-row attention, which
    // prompts (in batches) do not run. SmolLM2 itself: a real model's greedy choices are
    // clear, where a random synthetic one's are near ties.
    let bin = cuda_runtime();
    let model = smollm2_q4_1();
    let generate = |device: &str| {
        let mut cmd = Command::new(&bin);
        cmd.args(["generate", "-m"]).arg(&model);
        cmd.args(["-p", "The three primary colours are", "-n", "8", "-t", "2"]);
        let out = run(cmd.env("SINTRA_DEVICE", device));
        assert!(out.status.success(), "{device}: {}", stderr(&out));
        stdout(&out)
    };
    let (cpu, gpu) = (generate("cpu"), generate("cuda-emulator"));
    assert_eq!(
        gpu, cpu,
        "greedy decoding on the emulated GPU and on the CPU"
    );
}
