//! Helpers shared by the integration tests: locating test models and data, deterministic test
//! rows, and `ggml`, the oracle: llama.cpp's own quantizers through llama-cpp-sys-2.

pub mod ggml;
pub mod llama;
pub mod requant;
pub mod rows;

use std::path::{Path, PathBuf};

/// Repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A test model from the setup cache (`SINTRA_MODELS` or `.cache/models`). Panics with the fix
/// when it is missing: tests that need a model get it, they never skip.
pub fn model_path(file: &str) -> PathBuf {
    let dir = std::env::var_os("SINTRA_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/models"));
    let path = dir.join(file);
    assert!(
        path.is_file(),
        "test model {} is missing: run `bash scripts/setup.sh` first",
        path.display()
    );
    path
}

/// SmolLM2-135M-Instruct in Q4_1, the default test model.
pub fn smollm2_q4_1() -> PathBuf {
    model_path("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// A file of `../shared/data` (calibration.txt, eval.txt).
pub fn shared_data(file: &str) -> PathBuf {
    let path = repo_root().join("../shared/data").join(file);
    assert!(
        path.is_file(),
        "shared data file {} is missing",
        path.display()
    );
    path
}

/// Gemma 3 270M in Q4_K_M: its SentencePiece-style ("llama") vocabulary tests the tokenizer.
pub fn gemma3_270m_q4_k_m() -> PathBuf {
    model_path("gemma-3-270m-q4_k_m.gguf")
}

/// Path of a binary of this workspace (`sintra-rt`, `sintra`), built on first use with the same
/// cargo and target directory as the running test binary, so tests run the real program.
pub fn bin_path(package: &str, bin: &str) -> PathBuf {
    build_bin(package, bin, None)
}

/// As [`bin_path`], cross-compiled for `target` (a rustup target triple such as
/// `aarch64-unknown-linux-musl`, whose linker and runner `.cargo/config.toml` sets) in the
/// release profile: such binaries run under qemu-user, where unoptimized code is too slow.
pub fn bin_path_for_target(package: &str, bin: &str, target: &str) -> PathBuf {
    build_bin(package, bin, Some(target))
}

/// Build `bin` of `package` (for the host in the dev profile, or for `target` in release)
/// once per test process and return its path.
fn build_bin(package: &str, bin: &str, target: Option<&str>) -> PathBuf {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let map = built.get_or_insert_with(HashMap::new);
    let key = format!("{}/{bin}", target.unwrap_or("host"));
    if let Some(p) = map.get(&key) {
        return p.clone();
    }
    // current_exe is <target>/<profile>/deps/integration-<hash>.
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("<target>/<profile>");
    let target_dir = profile_dir.parent().expect("<target>");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.args(["build", "--quiet", "-p", package, "--bin", bin]);
    if let Some(target) = target {
        command.args(["--release", "--target", target]);
    }
    let status = command
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(repo_root())
        .status()
        .expect("run cargo build");
    let what = target.map_or(String::new(), |t| format!(" --release --target {t}"));
    assert!(
        status.success(),
        "cargo build -p {package} --bin {bin}{what} failed"
    );
    let path = match target {
        Some(target) => target_dir.join(target).join("release").join(bin),
        None => target_dir.join("debug").join(bin),
    };
    assert!(path.is_file(), "{} was not built", path.display());
    map.insert(key, path.clone());
    path
}
