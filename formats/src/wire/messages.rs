//! The messages of the planner <-> runtime channel.
//!
//! postcard is not self-describing: a value is its fields in declaration order and an enum is
//! its variant index (a varint) followed by the variant's fields. So every enum here is
//! **append-only** (a new variant goes at the end, an old one is never removed or reordered),
//! a struct never changes shape without bumping [`super::PROTOCOL_VERSION`], and `Hello` is
//! variant 0 of both [`Request`] and [`Response`] forever, with the protocol version as its first
//! field, so two programs of different versions can always tell each other which they speak.
//!
//! Tensors never cross the channel: paths, hashes, settings and measurements do.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// What the planner asks of the runtime. One request, then one or more responses: zero or more
/// [`Response::Progress`] (and [`Response::Token`] for generation), then exactly one final
/// response (the result, or [`Response::Error`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Variant 0 forever. Answered by [`Response::Hello`], whatever the version: a runtime that
    /// speaks another protocol answers every later request with
    /// [`ErrorKind::ProtocolMismatch`].
    Hello {
        protocol_version: u32,
        /// The planner's package version, for the runtime's log.
        planner_version: String,
    },
    /// Measure memory bandwidth: stream a buffer of `bytes` with `threads` threads (0: all
    /// cores), best of `repetitions`. Answered by [`Response::MemoryBandwidth`].
    ProbeMemory {
        bytes: u64,
        threads: u32,
        repetitions: u32,
    },
    /// Memory-map a GGUF model that is already on the device (the planner copies it there).
    /// With `sha256`, the runtime hashes the file first and refuses it if it differs.
    /// Answered by [`Response::ModelLoaded`].
    LoadModel {
        path: String,
        sha256: Option<[u8; 32]>,
    },
    /// llama-bench's pp/tg measurement on the loaded model. Answered by [`Response::Bench`].
    Bench(BenchRequest),
    /// llama.cpp's perplexity method on a text sent over the channel. Answered by
    /// [`Response::Perplexity`].
    Perplexity(PerplexityRequest),
    /// Generate a continuation; each piece streams as [`Response::Token`], then
    /// [`Response::Generated`].
    Generate(GenerateRequest),
    /// End the session: the runtime answers [`Response::Bye`] and exits.
    Shutdown,
    /// Collect calibration statistics (importance matrix, block influence) for the loaded
    /// model on a text sent over the channel, and save them to a file on the device. Answered
    /// by [`Response::Calibrated`].
    Calibrate(CalibrateRequest),
    /// Greedy generation with and without speculative decoding on the loaded model (issue
    /// #17): a draft model already on the device, or prompt lookup. Answered by
    /// [`Response::SpecBench`].
    SpecBench(SpecBenchRequest),
}

/// Settings of [`Request::SpecBench`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecBenchRequest {
    /// The draft model on the device (as [`Request::LoadModel`]'s `path`); empty: prompt
    /// lookup, no draft model.
    pub draft_path: String,
    /// The draft's SHA-256: the runtime refuses a file that differs.
    pub draft_sha256: Option<[u8; 32]>,
    /// The prompt, tokenized on the device.
    pub prompt: String,
    /// Tokens generated after it, greedily.
    pub n_gen: u32,
    /// Repetitions of each (plain and speculative, interleaved), at least 1.
    pub repetitions: u32,
    /// Threads; 0: all cores.
    pub threads: u32,
}

/// Settings of [`Request::Calibrate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrateRequest {
    /// The calibration text, tokenized on the device with the model's own tokenizer.
    pub text: String,
    /// A name for the text, recorded in the file (`imatrix.datasets`).
    pub dataset: String,
    /// Window size (`-c`).
    pub n_ctx: u32,
    /// Evaluate at most this many windows (`--chunks`).
    pub max_chunks: Option<u32>,
    /// Threads; 0: all cores.
    pub threads: u32,
    /// Where to save the statistics (an imatrix GGUF file) on the device.
    pub output_path: String,
}

/// Settings of [`Request::Bench`], with llama-bench's meanings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRequest {
    /// Prompt-processing test length (`-p`); 0 skips it.
    pub n_prompt: u32,
    /// Generation test length (`-n`); 0 skips it.
    pub n_gen: u32,
    /// Threads (`-t`); 0: all cores.
    pub threads: u32,
    /// Repetitions (`-r`), at least 1.
    pub repetitions: u32,
    /// Keep the KV cache in f32 instead of f16.
    pub kv_f32: bool,
}

/// Settings of [`Request::Perplexity`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerplexityRequest {
    /// The text, tokenized on the device with the model's own tokenizer.
    pub text: String,
    /// Window size (`-c`).
    pub n_ctx: u32,
    /// Evaluate at most this many windows (`--chunks`).
    pub max_chunks: Option<u32>,
    /// Threads; 0: all cores.
    pub threads: u32,
    pub logits: LogitsMode,
}

/// What a perplexity run does with its log-probabilities. KL divergence needs the base model's
/// log-probabilities at every scored position (49k values per token for SmolLM2): they stay on
/// the device, in a file a base-model run saved there (`sintra-rt perplexity --save-logits`
/// spells the same thing), and are referenced by path. Only one model is mapped at a time, so a
/// device that can hold the candidate can run the comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LogitsMode {
    /// Perplexity only.
    None,
    /// Save this model's log-probabilities to a file on the device (the base run).
    Save { path: String },
    /// KL divergence from the base model whose saved log-probabilities are at `base_path` on
    /// the device (same text, context and chunks).
    KlDivergence { base_path: String },
}

/// Settings of [`Request::Generate`], with llama.cpp's meanings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    pub prompt: String,
    pub n_predict: u32,
    /// Threads; 0: all cores.
    pub threads: u32,
    /// 0: greedy.
    pub temp: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub seed: u64,
    /// Wrap the prompt in the model's chat template.
    pub chat: bool,
}

/// What the runtime answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Variant 0 forever: the handshake.
    Hello(Hello),
    /// Work in progress on the current request (also proves the runtime is alive).
    Progress(Progress),
    MemoryBandwidth(MemoryBandwidth),
    ModelLoaded(ModelInfo),
    Bench(BenchResult),
    Perplexity(PerplexityResult),
    /// A piece of generated text (valid UTF-8; a split character waits for the next piece).
    Token {
        text: String,
    },
    Generated(GenerateResult),
    /// The answer to [`Request::Shutdown`].
    Bye,
    Error(RuntimeError),
    Calibrated(CalibrateResult),
    SpecBench(SpecBenchResult),
}

/// The answer to [`Request::SpecBench`]. The runtime fails the request instead if the two
/// outputs ever differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecBenchResult {
    pub n_prompt: u32,
    /// Tokens generated (fewer than asked when the model ended its text).
    pub n_gen: u32,
    /// Generation without drafts, tokens/s, one per repetition.
    pub plain_tok_s: Vec<f64>,
    /// With drafts, tokens/s, interleaved with the plain repetitions.
    pub spec_tok_s: Vec<f64>,
    /// Tokens drafted and checked, and of those kept, over all repetitions.
    pub drafted: u64,
    pub accepted: u64,
}

/// The runtime introduces itself. `protocol_version` stays the first field forever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u32,
    /// `sintra-rt`'s package version.
    pub runtime_version: String,
    /// The target triple it was built for, e.g. `aarch64-unknown-linux-musl`.
    pub target: String,
    /// The kernel table it chose (`scalar`, `avx2`, `neon`, ...), as `sintra-rt --version`.
    pub isa: String,
    /// CPU features the kernels care about, as the OS reports them (`avx2`, `fma`, `neon`,
    /// `dotprod`, ...).
    pub cpu_features: Vec<String>,
    /// Cores available to the runtime.
    pub cores: u32,
    pub total_ram_bytes: u64,
    /// `MemAvailable`: what can be used without swapping.
    pub available_ram_bytes: u64,
    /// The CPU as the system names it: `/proc/cpuinfo`'s `model name` on x86, the board's
    /// device-tree model on a Raspberry Pi or Jetson, else the ARM implementer and part.
    /// Empty when the system does not say.
    pub cpu_model: String,
    /// The kernel's release (`uname -r`), empty when unknown.
    pub kernel: String,
    /// The GPU the runtime runs models on, or why it does not; `None` from a build without
    /// GPU support (issue #21).
    pub gpu: Option<Gpu>,
}

/// A GPU as the runtime found it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpu {
    /// `cuda`.
    pub backend: String,
    /// The device's name (`Orin`, `NVIDIA H100 80GB HBM3`); empty when none was opened.
    pub name: String,
    /// `major.minor` (`8.7`); empty when none was opened.
    pub compute_capability: String,
    pub memory_bytes: u64,
    /// Whether models run on it.
    pub used: bool,
    /// When used, the kernels loaded (`PTX compute_87`); otherwise why not (`no NVIDIA
    /// driver (libcuda.so.1 could not be loaded)`).
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub done: u32,
    pub total: u32,
    /// What was done, e.g. `pp512 repetition 2/5: 180.2 tok/s`.
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryBandwidth {
    pub bytes: u64,
    pub threads: u32,
    /// Best read bandwidth (summing the buffer), GB/s (1e9 bytes per second).
    pub read_gb_s: f64,
    /// Best write bandwidth (filling the buffer), GB/s.
    pub write_gb_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub path: String,
    /// The file's SHA-256 when the request asked for a check (all zero otherwise).
    pub sha256: [u8; 32],
    pub architecture: String,
    pub n_params: u64,
    pub tensor_bytes: u64,
    pub file_bytes: u64,
    pub n_layers: u32,
    pub n_vocab: u32,
    pub n_ctx_train: u32,
    pub load_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    pub isa: String,
    pub threads: u32,
    /// `f16` or `f32`.
    pub kv_type: String,
    pub runs: Vec<BenchRun>,
    /// Peak resident set size of the runtime process since the model was loaded (where the OS
    /// can reset the high-water mark, as Linux can; else since the process started).
    pub peak_rss_bytes: u64,
    /// What else the machine was doing (protocol 2): `None` where the OS does not say.
    pub load: Option<MachineLoad>,
}

/// The device's load around a benchmark, so that a figure measured on a busy machine can be
/// told apart from one measured on an idle one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MachineLoad {
    /// The 1-minute load average when the benchmark started.
    pub load_avg_1m: f64,
    /// Share of the machine's CPU time (all cores) that other processes used while the
    /// benchmark ran, 0 to 1.
    pub others_cpu_share: f64,
}

/// One llama-bench test: `pp512` (n_prompt 512) or `tg128` (n_gen 128).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRun {
    pub n_prompt: u32,
    pub n_gen: u32,
    /// Tokens per second of each repetition.
    pub samples_tok_s: Vec<f64>,
}

#[cfg(feature = "std")]
impl BenchRun {
    /// Mean and sample standard deviation of the tokens/s samples (llama-bench's `avg_ts` and
    /// `stddev_ts`): one definition for the runtime that prints them and the planner that
    /// records them.
    pub fn mean_std(&self) -> (f64, f64) {
        let v = &self.samples_tok_s;
        let n = v.len() as f64;
        let m = v.iter().sum::<f64>() / n.max(1.0);
        let var = if v.len() > 1 {
            v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        (m, var.sqrt())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerplexityResult {
    pub ppl: f64,
    /// One standard error (llama.cpp's `+/-`).
    pub ppl_err: f64,
    /// Tokens of the text evaluated (windows x context).
    pub n_tokens: u32,
    pub n_scored: u32,
    pub n_chunks: u32,
    pub seconds: f64,
    pub kld: Option<KlDivergence>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KlDivergence {
    pub kld_mean: f64,
    pub kld_err: f64,
    /// Fraction of positions where both models' most likely token is the same.
    pub same_top: f64,
    pub same_top_err: f64,
    pub ppl_base: f64,
}

/// What [`Request::Calibrate`] saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrateResult {
    pub path: String,
    /// Tokens evaluated (windows x context).
    pub n_tokens: u64,
    pub n_chunks: u32,
    pub seconds: f64,
    /// Mean `1 - cos(x_in, x_out)` of each block, also saved in the file.
    pub block_influence: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateResult {
    pub n_prompt: u32,
    pub n_gen: u32,
    pub prompt_tok_s: f64,
    pub gen_tok_s: f64,
    /// The whole continuation (the streamed pieces joined).
    pub text: String,
}

/// A request the runtime could not carry out. The session goes on: the planner may send
/// another request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeError {
    pub kind: ErrorKind,
    /// Lowercase, naming the offending value.
    pub message: String,
}

/// Append-only, like every enum on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The bytes received were not a frame holding a request.
    BadFrame,
    /// The planner speaks another protocol version (the message names both).
    ProtocolMismatch,
    /// A request came before `Hello`.
    NoHello,
    /// The request needs a model and none is loaded.
    NoModel,
    /// The model file could not be opened or is not a model this runtime runs.
    ModelLoad,
    /// The model file's SHA-256 differs from the one requested.
    Checksum,
    /// A setting is out of range (the message names it).
    InvalidRequest,
    /// A file on the device could not be read or written.
    Io,
    /// The evaluation failed (context full, bad token, ...).
    Evaluation,
    /// Refused by the runtime's rules for network clients: a missing or wrong token, a path
    /// outside its work directory, another planner already served (the message says which).
    Refused,
}

impl core::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ErrorKind::BadFrame => "bad frame",
            ErrorKind::ProtocolMismatch => "protocol mismatch",
            ErrorKind::NoHello => "no hello",
            ErrorKind::NoModel => "no model",
            ErrorKind::ModelLoad => "model load",
            ErrorKind::Checksum => "checksum",
            ErrorKind::InvalidRequest => "invalid request",
            ErrorKind::Io => "i/o",
            ErrorKind::Evaluation => "evaluation",
            ErrorKind::Refused => "refused",
        })
    }
}

impl core::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({})", self.message, self.kind)
    }
}
