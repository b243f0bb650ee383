//! Helpers shared by the integration tests: locating test models and data, deterministic test
//! rows, and `ggml`, the oracle: llama.cpp's own quantizers through llama-cpp-sys-2.

pub mod ggml;
pub mod hf_export;
pub mod hub;
pub mod llama;
pub mod original;
pub mod presets;
pub mod requant;
pub mod rows;
pub mod sshd;
pub mod synthetic;
pub mod tolerance;

pub use sshd::Sshd;

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

/// SmolLM2 requantized to Q4_0 (cached by [`requant::smollm2_as`]): the model the tests' qemu
/// "devices" run. The aarch64 build's default table packs its matrices (issue #14's fast path:
/// what a user's board runs), as it packs the Q4_1 file's, and under qemu the Q4_0 file costs
/// three quarters of the Q4_1 file's CPU time (a 128-token window on one thread: 38.6 against
/// 51.2 CPU-s; the exact tables, unpacked, 96 and 110), and the device tests hold Q4_0's fast
/// order (`aarch64::aarch64_fast_kernels_hold_the_tolerances` holds Q4_1's).
pub fn qemu_device_model() -> PathBuf {
    requant::smollm2_as(formats::quant::GgmlType::Q4_0)
}

/// A text of the setup cache (`SINTRA_DATA` or `.cache/data`: `eval.txt`, held out, and
/// `calibration.txt`; written by `scripts/setup.sh` from a pinned rustup `rust-docs`). Panics
/// with the fix when it is missing: tests that need it get it, they never skip.
pub fn data_file(file: &str) -> PathBuf {
    let dir = std::env::var_os("SINTRA_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/data"));
    let path = dir.join(file);
    assert!(
        path.is_file(),
        "text {} is missing: run `bash scripts/setup.sh` first",
        path.display()
    );
    path
}

/// The planner's per-model caches (`SINTRA_CACHE`: calibration, the sensitivity pass, the
/// original's saved logits) shared by the tests that run `sintra`, under the target directory:
/// each is computed once per test run, as a user's first run computes it once.
pub fn model_cache() -> PathBuf {
    let d = repo_root().join("target/test-cache");
    std::fs::create_dir_all(&d).expect("creating target/test-cache");
    d
}

/// Build `sintra-rt` next to the running executable (the planner starts the runtime it finds
/// there), with the same cargo and target directory: the release profile beside a release
/// binary, else the optimized test profile (the one the test suite built llama.cpp with).
pub fn build_runtime_beside_this_binary() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .ok_or_else(|| std::io::Error::other("no directory for this executable"))?;
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let target_dir = profile_dir
        .parent()
        .ok_or_else(|| std::io::Error::other("no target directory"))?;
    let st = std::process::Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()))
        .args([
            "build",
            "--quiet",
            "-p",
            "runtime",
            "--bin",
            "sintra-rt",
            "--profile",
        ])
        .arg(if release { "release" } else { "test" })
        .env("CARGO_TARGET_DIR", target_dir)
        .status()?;
    if !st.success() {
        return Err(std::io::Error::other("building sintra-rt failed"));
    }
    Ok(profile_dir.join("sintra-rt"))
}

/// Gemma 3 270M in Q4_K_M: its SentencePiece-style ("llama") vocabulary tests the tokenizer.
pub fn gemma3_270m_q4_k_m() -> PathBuf {
    model_path("gemma-3-270m-q4_k_m.gguf")
}

/// Path of a binary of this workspace (`sintra-rt`, `sintra`), built on first use with the same
/// cargo and target directory as the running test binary, so tests run the real program. Built
/// as the README's quick start builds them, `cargo build --release` (the default members, both
/// binaries at once): one build serves every test (a second, test-profile build of the planner
/// and the runtime cost CI some 100 s), the tests that run real models through the binaries run
/// them at full speed (a dev build ran perplexity some 100 times slower), and the quick start's
/// test, whose copy of the repository starts from these dependencies, finds every one of them
/// built with the features its own build asks for.
pub fn release_bin_path(package: &str, bin: &str) -> PathBuf {
    use std::sync::Mutex;
    static BUILT: Mutex<bool> = Mutex::new(false);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let dir = target_dir();
    if !*built {
        let what = "cargo build --release (the default members: the planner and the runtime)";
        run_build(cargo_build_command("release", &dir), what).unwrap_or_else(|e| panic!("{e}"));
        *built = true;
    }
    let path = dir.join("release").join(bin);
    assert!(
        path.is_file(),
        "{} was not built by `cargo build --release` (is `{package}` a default member?)",
        path.display()
    );
    path
}

/// `cargo build --quiet --profile {profile} --target-dir {target_dir}` in this workspace, with
/// the cargo running this build, else `cargo` on the path.
fn cargo_build_command(profile: &str, target_dir: &Path) -> std::process::Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "--quiet", "--profile", profile])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(repo_root());
    cmd
}

/// Runs a build `cmd` (described as `what`): an error unless it ran and succeeded.
fn run_build(mut cmd: std::process::Command, what: &str) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("{what}: cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("{what} failed"));
    }
    Ok(())
}

/// Builds `bin` of `package` with cargo (the one running this build, else `cargo` on the
/// path) into `target_dir`, with a cargo `profile` (`dev`, `release`, `dist`, ...), an
/// optional target triple and features; returns the binary's path. Shared by the tests and the
/// benches, so that every one of them runs a binary built from the tree it is in.
pub fn cargo_build(
    package: &str,
    bin: &str,
    profile: &str,
    triple: Option<&str>,
    features: &[&str],
    target_dir: &Path,
) -> Result<PathBuf, String> {
    let mut cmd = cargo_build_command(profile, target_dir);
    cmd.args(["-p", package, "--bin", bin]);
    if let Some(t) = triple {
        cmd.args(["--target", t]);
    }
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    let what = format!(
        "cargo build --profile {profile} -p {package} --bin {bin}{}{}",
        triple.map(|t| format!(" --target {t}")).unwrap_or_default(),
        if features.is_empty() {
            String::new()
        } else {
            format!(" --features {}", features.join(","))
        }
    );
    run_build(cmd, &what)?;
    // cargo's directory for the dev and test profiles is `debug`; every other profile has its
    // own name.
    let dir = if matches!(profile, "dev" | "test") {
        "debug"
    } else {
        profile
    };
    let mut path = target_dir.to_path_buf();
    if let Some(t) = triple {
        path.push(t);
    }
    path.push(dir);
    path.push(bin);
    if !path.is_file() {
        return Err(format!("{what}: {} was not built", path.display()));
    }
    Ok(path)
}

/// The target directory of the running test binary (`<target>` above `<profile>/deps/`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("<target>/<profile>/deps")
        .to_path_buf()
}

/// The static, stripped `sintra-rt` for `triple` as users build it (`bash cross/build.sh
/// TRIPLE`: `dist` profile, std built without its backtrace symbolizer), built on first use
/// into the test binary's target directory. The size budget is `static_size`'s to hold, not
/// every test's (`--no-budget`). The target's standard library must be installed
/// (`scripts/setup.sh` adds x86_64 and aarch64 musl, armv7 and rust-src).
pub fn dist_runtime(triple: &str) -> PathBuf {
    let dir = target_dir();
    cross_build(&["--no-budget", triple], &dir).unwrap_or_else(|e| panic!("{e}"));
    dir.join(triple).join("dist").join("sintra-rt")
}

/// Runs `bash cross/build.sh ARGS` with `target_dir` as cargo's target directory, one at a time
/// in this process; returns its summary (the built binaries and their sizes), or an error with
/// the summary and the end of cargo's output when it fails (a build error or a binary over its
/// size budget).
pub fn cross_build(args: &[&str], target_dir: &Path) -> Result<String, String> {
    use std::sync::Mutex;
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let what = format!("bash cross/build.sh {}", args.join(" "));
    let out = std::process::Command::new("bash")
        .arg("cross/build.sh")
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(repo_root())
        .output()
        .map_err(|e| format!("{what}: cannot run bash: {e}"))?;
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "{what} failed ({}):\n{summary}\n{}",
            out.status,
            tail.join("\n")
        ));
    }
    Ok(summary)
}

/// Held exclusively by the tests whose outcome depends on measured speed (the planner's loop
/// measures every candidate: speed targets, drafts that must pay) and shared by those that load
/// the machine for minutes without timing anything (qemu runs, see [`loading_lock`]): a qemu
/// run starting or ending in the middle of a planner run would move its tokens/s by 2x and more
/// on a 2-core machine. Lighter tests still run beside them.
static MEASURING: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Taken by a test that times things: no other such test and no [`loading_lock`] holder runs
/// meanwhile.
pub fn measuring_lock() -> std::sync::RwLockWriteGuard<'static, ()> {
    MEASURING.write().unwrap_or_else(|e| e.into_inner())
}

/// Taken by a test that loads the machine for minutes but whose checks do not depend on speed
/// (qemu runs; planner runs killed, starved of disk, or whose every outcome is checked): such
/// tests run beside each other, never beside a [`measuring_lock`] holder. (Under the exclusive
/// lock alone, a test waiting for it holds one of the harness's two slots, and the suite ran
/// one planner run at a time for some 20 minutes.)
pub fn loading_lock() -> std::sync::RwLockReadGuard<'static, ()> {
    MEASURING.read().unwrap_or_else(|e| e.into_inner())
}

/// The kernel table is one per process (`kernels::use_isa`), and the tables no longer agree bit
/// for bit (issue #14: the default ones pack weights and sum in their own order). A test that
/// runs a model in this process and compares results holds [`kernels_as_selected`], so that no
/// test switches the table under it; a test that switches holds [`kernels_switched`] and puts
/// the table back before letting go.
static KERNELS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Run on the table `SINTRA_KERNELS` selects (the best this CPU runs by default), unchanged
/// until the guard is dropped.
pub fn kernels_as_selected() -> std::sync::RwLockReadGuard<'static, ()> {
    let guard = KERNELS.read().unwrap_or_else(|e| e.into_inner());
    runtime::sysinfo::select_kernels().unwrap();
    guard
}

/// Switch tables freely until the guard is dropped (no test runs a model meanwhile).
pub fn kernels_switched() -> std::sync::RwLockWriteGuard<'static, ()> {
    KERNELS.write().unwrap_or_else(|e| e.into_inner())
}

/// The exact form of the selected table (`kernels::Isa::exact`: no packing, ggml's order, the
/// logits of llama.cpp's token-by-token path bit for bit) until the guard is dropped, for the
/// tests whose claim is identity with llama.cpp rather than a tolerance.
#[derive(Debug)]
pub struct ExactKernels {
    before: kernels::Isa,
    _switched: std::sync::RwLockWriteGuard<'static, ()>,
}

/// Switch to [`ExactKernels`].
pub fn exact_kernels() -> ExactKernels {
    let switched = kernels_switched();
    runtime::sysinfo::select_kernels().unwrap();
    let before = kernels::Isa::from_name(kernels::isa_name()).expect("the table has a name");
    kernels::use_isa(before.exact()).unwrap();
    ExactKernels {
        before,
        _switched: switched,
    }
}

impl Drop for ExactKernels {
    fn drop(&mut self) {
        kernels::use_isa(self.before).unwrap();
    }
}

/// The CPU's model name, logical CPU count and the flags that decide kernels (from
/// `/proc/cpuinfo`), for benchmark tables: our machines differ from session to session.
pub fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |k: &str| {
        info.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let flags = field("flags");
    let wanted = [
        "avx2",
        "fma",
        "f16c",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512_vnni",
        "avx_vnni",
        "avx512_bf16",
        "avx512_fp16",
        "amx_int8",
        "asimd",
        "asimddp",
        "i8mm",
    ];
    let have: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|f| flags.split_whitespace().any(|x| x == *f))
        .collect();
    format!(
        "{} ({} logical CPUs; {})",
        field("model name"),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        have.join(" ")
    )
}

/// Greedy continuation of `prompt` by sintra-rt's forward pass, token by token on 2 threads with
/// the active kernels (token ids; stops after `n` or at an end-of-generation token).
pub fn sintra_greedy(path: &Path, prompt: &str, n: usize) -> Vec<u32> {
    use runtime::model::{KvType, Llama};
    let file = formats::gguf::GgufFile::open(path).unwrap();
    let tok = runtime::tokenizer::Tokenizer::from_gguf(&file.header).unwrap();
    let pool = runtime::threads::Pool::new(2);
    let tokens = tok.encode(prompt, tok.add_bos(), true);
    let mut model = Llama::new(&file, 128, KvType::F16).unwrap();
    let mut logits = Vec::new();
    for (pos, &t) in tokens.iter().enumerate() {
        logits = model.forward(t, pos, &pool).unwrap().to_vec();
    }
    let mut got = Vec::new();
    for i in 0..n {
        let next = runtime::sampler::argmax(&logits);
        got.push(next);
        if tok.is_eog(next) {
            break;
        }
        logits = model
            .forward(next, tokens.len() + i, &pool)
            .unwrap()
            .to_vec();
    }
    got
}

/// A command's output, checked not to hold a panic (hostile input must never panic a binary
/// of ours): `what` names the command in the failure.
pub fn unpanicked(out: std::process::Output, what: &str) -> std::process::Output {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{what} panicked:\n{stderr}");
    out
}

/// Every file under `dir`, recursively (none when it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The stdout of a command that succeeded; otherwise the test fails with both streams.
pub fn succeeded(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "the command failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `sintra-rt` built with the `http` feature (the OpenAI-compatible server, issue #17), in a
/// target directory of its own (`<target>/with-http`) so that the plain build the other tests
/// run is never rebuilt under them.
pub fn http_runtime() -> PathBuf {
    use std::sync::Mutex;
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.as_ref() {
        return p.clone();
    }
    let dir = target_dir().join("with-http");
    let path = cargo_build("runtime", "sintra-rt", "release", None, &["http"], &dir)
        .unwrap_or_else(|e| panic!("{e}"));
    *built = Some(path.clone());
    path
}

/// `python3` with the setup script's Python clients on its path (`SINTRA_PYTHON` or
/// `.cache/python`: the official `openai` client and MCP SDK, datasette). Panics with the fix when they are missing:
/// tests that need them get them, they never skip.
pub fn python() -> std::process::Command {
    let dir = std::env::var_os("SINTRA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/python"));
    assert!(
        dir.join("openai").is_dir() && dir.join("mcp").is_dir() && dir.join("datasette").is_dir(),
        "the Python clients in {} are missing: run `bash scripts/setup.sh` first",
        dir.display()
    );
    let mut cmd = std::process::Command::new("python3");
    cmd.env("PYTHONPATH", dir);
    cmd
}

/// A running `sintra-rt serve --http` on a free loopback port: its address, and its stderr
/// as collected so far. Killed when dropped.
#[derive(Debug)]
pub struct HttpServer {
    child: std::process::Child,
    pub addr: String,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl HttpServer {
    /// Start the server on `model` with extra arguments; waits until it listens.
    pub fn start(model: &Path, extra: &[&str]) -> HttpServer {
        use std::io::BufRead;
        let mut child = std::process::Command::new(http_runtime())
            .args(["serve", "--http", "127.0.0.1:0", "-m"])
            .arg(model)
            .args(extra)
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start sintra-rt serve --http");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(rest) = line.split(" at http://").nth(1) {
                    let _ = tx.send(rest.trim_end_matches("/v1").to_string());
                }
                let mut l = sink.lock().unwrap_or_else(|e| e.into_inner());
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the server did not start: {}", log.lock().unwrap()));
        HttpServer { child, addr, log }
    }

    /// `http://ADDR/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Everything the server wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the server process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The number after `label` at the start of a line of `out` (`sintra-rt perplexity`'s `Mean
/// KLD:`, `Same top p:`, `scored`); panics naming the label and the output when there is none.
pub fn output_number(out: &str, label: &str) -> f64 {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no `{label}` in:\n{out}"))
}
