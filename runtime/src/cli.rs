//! Hand-rolled argument parsing (no clap: the runtime stays small). Flags keep llama.cpp's
//! spellings so users' habits carry over.

use std::path::PathBuf;

pub const HELP: &str = "\
sintra-rt: run a GGUF model (llama, qwen2, qwen3, gemma3, phi3) on this device

USAGE:
  sintra-rt generate   -m MODEL -p PROMPT [-n N] [-t T] [-c CTX] [--temp X] [--top-k K] [--top-p P] [--seed S] [--chat]
                       [--draft DRAFT | --lookup]
  sintra-rt bench      -m MODEL [-p 512] [-n 128] [-t T] [-r 5] [--json]
  sintra-rt bench      -m MODEL (--draft DRAFT | --lookup) -f PROMPT.txt [-n 128] [-t T] [-r 5] [--chat] [--json]
  sintra-rt perplexity -m MODEL -f TEXT [-c 512] [--chunks K] [-t T] [--save-logits F | --kl-divergence-base F]
  sintra-rt calibrate  -m MODEL -f TEXT -o OUT.imatrix.gguf [-c 512] [--chunks K] [-t T]
  sintra-rt tokenize   -m MODEL -p PROMPT [--no-special]
  sintra-rt serve      [--stdio | --listen [HOST:]PORT [--token-file F] [--root DIR] [--idle-timeout S]]
  sintra-rt serve      --http ADDR -m MODEL [-c CTX] [-t T] [--draft DRAFT | --lookup] [--alias NAME]
                       [--api-key-file F] [--queue N]
  sintra-rt --version | --help

MODES:
  generate    stream a continuation of PROMPT (greedy unless --temp > 0). --chat wraps the prompt
              in the model's chat template (ChatML) when the GGUF has one.
              --draft DRAFT decodes speculatively with a draft model of the same vocabulary
              (`sintra compress --draft` makes one); --lookup drafts from the text so far
              (prompt lookup: pays when the answer repeats the prompt). Greedy output is the
              same token for token; sampled output has the same distribution.
  bench       prompt processing (pp N tokens) and generation (tg N tokens) speed over R
              repetitions: mean and standard deviation of tokens/s, load time, peak RSS.
              --json prints llama-bench-shaped JSON. With --draft or --lookup: greedy
              generation of N tokens after the text of PROMPT.txt, with and without drafts,
              interleaved, checking the two outputs are the same; reports both speeds, their
              ratio and the share of drafted tokens kept.
  perplexity  llama.cpp's method: windows of CTX tokens, the second half of each scored.
              --save-logits F keeps the log-probabilities so that a compressed model run with
              --kl-divergence-base F reports its KL divergence, top-1 agreement and delta-PPL.
  calibrate   compression statistics for the planner: per-column mean squared activations
              entering every matrix (an importance matrix in llama.cpp's imatrix GGUF layout,
              which llama-quantize --imatrix also reads), per-block influence (1 - cos between
              a block's input and output) and, with them, per-neuron FFN activation norms.
              Use a calibration text, never the text you evaluate on.
  tokenize    one `id<TAB>piece` line per token of PROMPT, as llama.cpp's llama-tokenize
              (special tokens parsed and BOS added as the vocabulary says, unless --no-special).
  serve       speak the planner's wire protocol (COBS-framed postcard) on stdin/stdout (--stdio,
              the default) or on a TCP socket; logs go to stderr. --listen PORT binds loopback;
              another address (--listen 0.0.0.0:7878) needs a token the planner also has
              (--token-file F or SINTRA_RT_TOKEN; the planner sends SINTRA_RT_TOKEN). Every
              path a TCP client names stays inside --root (default: the current directory);
              one planner at a time; a session silent for --idle-timeout seconds (900) ends.
              --http ADDR serves MODEL over an OpenAI-compatible HTTP API instead (builds with
              the `http` feature): /v1/models, /v1/completions, /v1/chat/completions (streamed
              or not; response_format json_object/json_schema enforced while sampling; the
              model's chat template), /health. ADDR without a host (`:8080`) is loopback;
              --api-key-file F (or SINTRA_API_KEY; --api-key KEY shows it in the process
              list) requires `Authorization: Bearer KEY`, and is required off loopback.

OPTIONS:
  -m, --model FILE     GGUF model
  -t, --threads N      threads for matrix products (default: all cores)
  -c, --ctx N          context size (generate: default 2048 or the model's; perplexity: 512)
  --kv-f32             keep the KV cache in f32 (default f16)

ENVIRONMENT:
  SINTRA_KERNELS       auto (default: the best this CPU runs), scalar (the portable oracle),
                       avx2, avx512bw (AVX-512 without VNNI), avx512 (AVX-512 VNNI
                       without AVX-VNNI), vnni (avx2+vnni) or avx512+vnni (x86-64: Q4_0,
                       Q4_1, Q5_0 and Q8_0 packed at load time, in a faster order), each
                       also as NAME-exact (avx2-exact, ...: no packing, llama.cpp's logits
                       bit for bit; avx512bw's is avx2-exact),
                       neon, dotprod (aarch64; also spelt neon+dotprod), i8mm
                       (neon+i8mm: SMMLA prompt products) or dotprod-exact
                       (neon+dotprod-exact: the x86 build's logits bit for bit;
                       dotprod and i8mm run Q8_0, Q4_0 and Q4_1 packed, in a
                       faster order),
                       armv7+neon (32-bit ARM with NEON and VFPv4)
  SINTRA_DEVICE        auto (default: an NVIDIA GPU where this build has the cuda feature
                       and the machine a usable GPU, else the CPU, saying why on stderr),
                       cpu, or cuda (an error instead of falling back)
";

/// What `serve --http ADDR` was told (the HTTP server, `crate::http`, built with the `http`
/// feature).
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub addr: String,
    pub model: PathBuf,
    /// The id clients name the model by (default: the file name without `.gguf`).
    pub alias: Option<String>,
    pub draft: Option<PathBuf>,
    pub lookup: bool,
    pub n_ctx: Option<usize>,
    pub threads: u32,
    pub kv_f32: bool,
    /// Jobs waiting beyond the one running.
    pub queue: usize,
    pub api_key: Option<String>,
}

/// Parsed command line.
#[derive(Debug, Clone)]
pub struct Args {
    pub mode: Mode,
    pub model: Option<PathBuf>,
    pub prompt: Option<String>,
    pub n_predict: Option<usize>,
    pub n_prompt: Option<usize>,
    pub threads: Option<usize>,
    pub ctx: Option<usize>,
    pub temp: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub seed: u64,
    pub chat: bool,
    pub reps: usize,
    pub json: bool,
    pub text_file: Option<PathBuf>,
    pub chunks: Option<usize>,
    pub save_logits: Option<PathBuf>,
    pub kld_base: Option<PathBuf>,
    pub kv_f32: bool,
    pub no_special: bool,
    /// `serve --listen ADDR`.
    pub listen: Option<String>,
    /// `serve --listen --token-file FILE`.
    pub token_file: Option<PathBuf>,
    /// `serve --listen --root DIR`.
    pub root: Option<PathBuf>,
    /// `serve --listen --idle-timeout SECS`.
    pub idle_timeout: u64,
    /// `serve --http --api-key-file FILE`.
    pub api_key_file: Option<PathBuf>,
    /// `calibrate -o FILE`.
    pub output: Option<PathBuf>,
    /// `--draft FILE`: speculative decoding with a draft model.
    pub draft: Option<PathBuf>,
    /// `--lookup`: speculative decoding with prompt lookup.
    pub lookup: bool,
    /// `serve --http ADDR`.
    pub http: Option<String>,
    /// `serve --http --alias NAME`.
    pub alias: Option<String>,
    /// `serve --http --api-key KEY` (or `SINTRA_API_KEY`).
    pub api_key: Option<String>,
    /// `serve --http --queue N`.
    pub queue: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Generate,
    Bench,
    Perplexity,
    Tokenize,
    Calibrate,
    Serve,
    Version,
    Help,
}

impl Args {
    pub fn parse(argv: impl IntoIterator<Item = String>) -> Result<Args, String> {
        let mut it = argv.into_iter();
        let mode = match it.next().as_deref() {
            Some("generate") => Mode::Generate,
            Some("bench") => Mode::Bench,
            Some("perplexity") => Mode::Perplexity,
            Some("tokenize") => Mode::Tokenize,
            Some("calibrate") => Mode::Calibrate,
            Some("serve") => Mode::Serve,
            Some("--version") | Some("-V") | Some("version") => Mode::Version,
            Some("--help") | Some("-h") | Some("help") | None => Mode::Help,
            Some(other) => {
                return Err(format!(
                    "unknown mode '{other}' (expected generate, bench, perplexity, calibrate, tokenize, serve; see --help)"
                ))
            }
        };
        let mut a = Args {
            mode,
            model: None,
            prompt: None,
            n_predict: None,
            n_prompt: None,
            threads: None,
            ctx: None,
            temp: 0.0,
            top_k: 40,
            top_p: 0.95,
            seed: 0x5eed,
            chat: false,
            reps: 5,
            json: false,
            text_file: None,
            chunks: None,
            save_logits: None,
            kld_base: None,
            kv_f32: false,
            no_special: false,
            listen: None,
            token_file: None,
            root: None,
            idle_timeout: 900,
            api_key_file: None,
            output: None,
            draft: None,
            lookup: false,
            http: None,
            alias: None,
            api_key: None,
            queue: 32,
        };
        while let Some(flag) = it.next() {
            let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
            match flag.as_str() {
                "-m" | "--model" => a.model = Some(value(&flag)?.into()),
                "-p" | "--prompt" | "--n-prompt" if mode == Mode::Bench => {
                    a.n_prompt = Some(num(&flag, &value(&flag)?)?)
                }
                "-p" | "--prompt" => a.prompt = Some(value(&flag)?),
                "-n" | "--n-predict" | "--n-gen" => a.n_predict = Some(num(&flag, &value(&flag)?)?),
                "-t" | "--threads" => {
                    a.threads = Some(num(&flag, &value(&flag)?)?).filter(|&t| t > 0)
                }
                "-c" | "--ctx" | "--ctx-size" => a.ctx = Some(num(&flag, &value(&flag)?)?),
                "-r" | "--repetitions" => a.reps = num(&flag, &value(&flag)?)?.max(1),
                "-f" | "--file" => a.text_file = Some(value(&flag)?.into()),
                "--chunks" => a.chunks = Some(num(&flag, &value(&flag)?)?),
                "--temp" => a.temp = float(&flag, &value(&flag)?)?,
                "--top-k" => a.top_k = num(&flag, &value(&flag)?)?,
                "--top-p" => a.top_p = float(&flag, &value(&flag)?)?,
                "--seed" => a.seed = num(&flag, &value(&flag)?)? as u64,
                "--save-logits" => a.save_logits = Some(value(&flag)?.into()),
                "--kl-divergence-base" => a.kld_base = Some(value(&flag)?.into()),
                "--chat" => a.chat = true,
                "--json" => a.json = true,
                "--kv-f32" => a.kv_f32 = true,
                "--no-special" => a.no_special = true,
                "-o" | "--output" if mode == Mode::Calibrate => {
                    a.output = Some(value(&flag)?.into())
                }
                "--draft" if matches!(mode, Mode::Generate | Mode::Bench | Mode::Serve) => {
                    a.draft = Some(value(&flag)?.into())
                }
                "--lookup" if matches!(mode, Mode::Generate | Mode::Bench | Mode::Serve) => {
                    a.lookup = true
                }
                "--http" if mode == Mode::Serve => a.http = Some(value(&flag)?),
                "--alias" if mode == Mode::Serve => a.alias = Some(value(&flag)?),
                "--api-key" if mode == Mode::Serve => a.api_key = Some(value(&flag)?),
                "--queue" if mode == Mode::Serve => a.queue = num(&flag, &value(&flag)?)?,
                "--listen" if mode == Mode::Serve => a.listen = Some(value(&flag)?),
                "--token-file" if mode == Mode::Serve => a.token_file = Some(value(&flag)?.into()),
                "--root" if mode == Mode::Serve => a.root = Some(value(&flag)?.into()),
                "--idle-timeout" if mode == Mode::Serve => {
                    a.idle_timeout = num(&flag, &value(&flag)?)?.max(1) as u64
                }
                "--api-key-file" if mode == Mode::Serve => {
                    a.api_key_file = Some(value(&flag)?.into())
                }
                "--stdio" if mode == Mode::Serve => a.listen = None,
                "-h" | "--help" => a.mode = Mode::Help,
                other => {
                    return Err(format!(
                        "unknown option '{other}' for {mode:?} (see --help)"
                    ))
                }
            }
        }
        if mode == Mode::Serve && a.http.is_none() {
            if let Some(flag) = [
                (a.model.is_some(), "-m"),
                (a.draft.is_some(), "--draft"),
                (a.lookup, "--lookup"),
                (a.alias.is_some(), "--alias"),
                (a.api_key.is_some(), "--api-key"),
                (a.api_key_file.is_some(), "--api-key-file"),
            ]
            .iter()
            .find(|(set, _)| *set)
            .map(|(_, f)| f)
            {
                return Err(format!(
                    "{flag} belongs to serve --http; the wire protocol's client loads models itself"
                ));
            }
        }
        if a.listen.is_none() {
            if let Some(flag) = [
                (a.token_file.is_some(), "--token-file"),
                (a.root.is_some(), "--root"),
            ]
            .iter()
            .find(|(set, _)| *set)
            .map(|(_, f)| f)
            {
                return Err(format!("{flag} belongs to serve --listen"));
            }
        }
        if a.http.is_some() && a.listen.is_some() {
            return Err("--http and --listen are exclusive: one server per process".into());
        }
        if a.draft.is_some() && a.lookup {
            return Err("--draft and --lookup are exclusive: choose one source of drafts".into());
        }
        if a.save_logits.is_some() && a.kld_base.is_some() {
            return Err("--save-logits and --kl-divergence-base are exclusive: save the base model's logits first".into());
        }
        Ok(a)
    }
}

fn num(flag: &str, v: &str) -> Result<usize, String> {
    v.parse()
        .map_err(|_| format!("{flag} expects a non-negative integer, got '{v}'"))
}

fn float(flag: &str, v: &str) -> Result<f32, String> {
    v.parse::<f32>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| format!("{flag} expects a number, got '{v}'"))
}
