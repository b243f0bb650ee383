//! The command line. The root command keeps the original Sintra's flags (`sintra [PROFILE]
//! --model-id ... --max-iters ... --resume ... --mock`); the subcommands are sintra's own.
//! Add a subcommand by adding a variant to [`Command`] and a module here.

mod compress;
mod convert;
pub mod device;
pub mod fleet;
mod history;
mod root;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Fit large language models onto edge devices, with measurements taken on the device.
/// `--draft`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DraftMode {
    /// Only drafts a recipe names itself.
    Off,
    /// A draft for every candidate.
    Auto,
}

#[derive(Debug, Parser)]
#[command(
    name = "sintra",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub root: RootArgs,
}

/// The optimizer (the root command): Sintra's flags.
#[derive(Debug, Args)]
pub struct RootArgs {
    /// Hardware profile: a name (rpi4, rpi5, jetson-nano, jetson-orin-nano, x86-laptop,
    /// qemu-aarch64) or a YAML file.
    pub profile: Option<String>,
    /// Model: a Hugging Face repository `owner/name` (its safetensors checkpoint downloaded
    /// and converted to GGUF once; that conversion is the reference and the source of every
    /// recipe), a local GGUF path, or a file in the model cache (default: SmolLM2-135M-Instruct
    /// from the setup cache).
    #[arg(long)]
    pub model_id: Option<String>,
    /// With a Hugging Face `--model-id owner/repo`: start from this GGUF file in it instead of
    /// the safetensors checkpoint (downloaded, resumable, sha256-checked, cached; `HF_TOKEN`
    /// and `HF_ENDPOINT` honoured).
    #[arg(long)]
    pub model_file: Option<String>,
    /// With a Hugging Face `--model-id owner/repo`: the branch, tag or commit (default main).
    #[arg(long)]
    pub revision: Option<String>,
    /// Output format; sintra writes GGUF.
    #[arg(long, default_value = "gguf", value_parser = ["gguf"])]
    pub backend: String,
    /// Where each run's directory is written.
    #[arg(long, default_value = "./outputs")]
    pub output_dir: PathBuf,
    /// Describe this machine instead of reading a profile.
    #[arg(long)]
    pub auto_detect: bool,
    /// Minimum generation speed, tokens/s (overrides the profile).
    #[arg(long)]
    pub target_tps: Option<f64>,
    /// Minimum generation speed as a multiple of the original model's, measured on the
    /// device at the start of the run (e.g. 1.5: "make it 50% faster").
    #[arg(long, conflicts_with = "target_tps", value_parser = parse_speedup)]
    pub target_speedup: Option<f64>,
    /// Minimum top-1 agreement with the original, 0..1 (overrides the profile).
    #[arg(long)]
    pub target_accuracy: Option<f64>,
    /// Write and measure nothing: speed and quality from a documented formula (marked mock).
    #[arg(long)]
    pub mock: bool,
    /// Most recipes to try (default 5; with --resume, raises or lowers the run's limit).
    #[arg(long)]
    pub max_iters: Option<u32>,
    /// Print the resolved profile, targets, model and first candidates; touch nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Continue a run: the latest, or the one with this id.
    #[arg(long, num_args = 0..=1, default_missing_value = "latest", value_name = "RUN_ID")]
    pub resume: Option<String>,
    /// List the runs that can be resumed.
    #[arg(long)]
    pub list_checkpoints: bool,
    /// Who proposes recipes.
    #[arg(long, default_value = "heuristic", value_parser = ["heuristic", "openai", "anthropic", "ollama"])]
    pub provider: String,
    /// The language model for an LLM provider.
    #[arg(long)]
    pub model: Option<String>,
    /// Debug logging (same as RUST_LOG=debug).
    #[arg(long)]
    pub debug: bool,
    /// Held-out text for quality (default: $SINTRA_EVAL_TEXT, else eval.txt from the setup
    /// script's cache, .cache/data).
    #[arg(long)]
    pub eval_text: Option<PathBuf>,
    /// Calibration text for importance matrices and pruning statistics (default:
    /// $SINTRA_CALIB_TEXT, else calibration.txt from the setup script's cache, .cache/data).
    /// Never the held-out text.
    #[arg(long)]
    pub calib_text: Option<PathBuf>,
    /// Skip the sensitivity pass. By default each weight matrix's sensitivity is measured
    /// (KL divergence of lowering it, on the calibration text; minutes on first use, cached per
    /// model in $SINTRA_CACHE) and the bit allocator proposes the mixes that reach the accuracy
    /// target with the fewest bytes.
    #[arg(long)]
    pub no_sensitivity: bool,
    /// Speculative decoding (issue #17): with `auto`, each candidate gets a draft made from the
    /// same source (Q4_0, the quarter of the blocks with the least influence dropped), written
    /// beside it and measured on the device with and without it; the draft is kept only when
    /// it makes greedy generation faster. A recipe's own `draft` is measured either way.
    #[arg(long, value_enum, default_value_t = DraftMode::Off)]
    pub draft: DraftMode,
    /// Also measure this GGUF file beside the candidates, the same way (speed on the device,
    /// quality against the original): llama.cpp's presets from `llama-quantize`, say. It must
    /// be a quantization of the same model; the report puts it beside the recipes (size against
    /// KL divergence, speed against accuracy). Never the run's result. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub compare: Vec<PathBuf>,
    /// The sensitivity pass (the default; kept so that older command lines still work).
    #[arg(long, hide = true, conflicts_with = "no_sensitivity")]
    pub sensitivity: bool,
    /// 512-token windows of the held-out text scored per candidate (each scores 255 positions;
    /// more windows, steadier top-1 and KLD, slower iterations).
    #[arg(long, default_value_t = 2)]
    pub eval_chunks: u32,
    /// Iterations without improvement after the targets are met before stopping.
    #[arg(long, default_value_t = 3)]
    pub patience: u32,
    /// With a profile whose `connection` is ssh: an ssh config file instead of ~/.ssh/config
    /// (`ssh -F`).
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// With a profile whose `connection` is ssh: the directory on the device for the runtime
    /// and the candidates (relative: under the home directory; default .sintra).
    #[arg(long, value_name = "DIR")]
    pub remote_dir: Option<String>,
    /// Threads for benchmarks and evaluation (default: the profile's cores, at most this host's;
    /// with --fleet, all of each device's).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Measure each candidate's speed on every device of an Ansible inventory (quality once,
    /// here): targets must hold on every device; the end of the run names each device class's
    /// best recipe.
    #[command(flatten)]
    pub fleet: fleet::FleetOpts,
    /// When the run ends, export its best model to Ollama under this name (a Modelfile beside
    /// it; `ollama create` when ollama is on PATH). Same as `sintra export ollama RUN NAME`.
    #[arg(long, value_name = "NAME")]
    pub export_ollama: Option<String>,
    /// With --fleet: measure one device per class (`sintra_class`, else its profile, else its
    /// runtime target); when it drops out, the class's next device takes its place.
    #[arg(long, requires = "fleet")]
    pub per_class: bool,
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// A Modelfile beside the model (FROM, the chat template in Ollama's syntax, the default
    /// system prompt, stop strings, num_ctx) and `ollama create NAME` when ollama is on PATH.
    Ollama {
        /// A run id, `latest`, or a GGUF file.
        run: String,
        /// The Ollama model's name (`smollm2-rpi5`, `me/smollm2:q4`).
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show a GGUF model: architecture, hyper-parameters, tokenizer, tensors, size.
    Inspect {
        /// The GGUF file (default: SmolLM2-135M-Instruct from the setup cache).
        model: Option<PathBuf>,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Also print every metadata key (long: includes the vocabulary sizes, not the tokens).
        #[arg(long)]
        metadata: bool,
    },
    /// Convert a Hugging Face checkpoint (a directory, or a repository `owner/name` downloaded
    /// into the model cache) to GGUF, as llama.cpp's convert_hf_to_gguf.py writes it.
    Convert {
        /// A checkpoint directory (config.json, tokenizer files, safetensors) or `owner/name`.
        source: String,
        /// The GGUF file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Type of the weight matrices (norms and biases stay F32); auto: BF16 for a BF16
        /// checkpoint, else F16.
        #[arg(long, value_enum, default_value = "auto")]
        outtype: crate::convert::OutType,
        /// With a repository: the branch, tag or commit (default main).
        #[arg(long)]
        revision: Option<String>,
    },
    /// Write one recipe: `sintra compress MODEL --recipe FILE -o OUT.gguf`.
    Compress {
        /// The source GGUF file.
        model: PathBuf,
        /// The recipe (JSON).
        #[arg(long)]
        recipe: PathBuf,
        /// The file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Calibration statistics to use (an imatrix GGUF from `sintra-rt calibrate` or
        /// llama-imatrix) instead of computing them on the calibration text.
        #[arg(long)]
        imatrix: Option<PathBuf>,
        /// Calibration text when the recipe needs statistics and no --imatrix is given.
        #[arg(long)]
        calib_text: Option<PathBuf>,
        /// Threads for calibration.
        #[arg(short, long)]
        threads: Option<u32>,
    },
    /// Reach a device: deploy the runtime, shake hands, probe.
    #[command(subcommand)]
    Device(device::DeviceCommand),
    /// Benchmark a model on a device (llama-bench's pp/tg, optionally perplexity).
    Bench(device::BenchArgs),
    /// Put a run's best model into another tool.
    #[command(subcommand)]
    Export(ExportCommand),
    /// A Model Context Protocol server on stdin/stdout: inspect, compress, bench, optimize and
    /// history as tools for agents (configure your MCP client to run `sintra mcp`).
    Mcp,
    /// A read-only web dashboard over the history: runs, their experiments and plots (a run
    /// in progress updates live), two recipes side by side.
    Ui {
        /// Address to listen on; anything but loopback needs --allow-remote.
        #[arg(long, default_value = crate::ui::DEFAULT_LISTEN)]
        listen: String,
        /// Serve on a non-loopback address (anyone who reaches it sees the whole history).
        #[arg(long)]
        allow_remote: bool,
        /// The history database (default: $SINTRA_HOME/history.db).
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// List runs and the best recipe per device and model.
    History {
        /// Most runs to list.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Fleet devices instead (issue #18): each device by host and hardware fingerprint,
        /// then each model or recipe measured on several, side by side.
        #[arg(long)]
        fleet: bool,
        /// With --fleet: only models or recipes whose name contains this.
        #[arg(long, requires = "fleet", value_name = "TEXT")]
        model: Option<String>,
        /// With --fleet: only this run's measurements.
        #[arg(long, requires = "fleet", value_name = "RUN_ID")]
        run: Option<String>,
        /// Write datasette's metadata (every table and column described, canned queries)
        /// beside the database and print the command that serves it.
        #[arg(long, conflicts_with = "fleet")]
        datasette: bool,
    },
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Inspect {
            model,
            json,
            metadata,
        }) => {
            let path = match model {
                Some(p) => p,
                None => crate::models::default_model()?,
            };
            crate::inspect::run(&path, json, metadata)
        }
        Some(Command::Compress {
            model,
            recipe,
            output,
            imatrix,
            calib_text,
            threads,
        }) => compress::run(
            &model,
            &recipe,
            &output,
            imatrix.as_deref(),
            calib_text.as_deref(),
            threads.unwrap_or(0),
        ),
        Some(Command::Convert {
            source,
            output,
            outtype,
            revision,
        }) => convert::run(&source, &output, outtype, revision.as_deref()),
        Some(Command::Device(device::DeviceCommand::Check(a))) => device::check(&a),
        Some(Command::Bench(a)) => device::bench(&a),
        Some(Command::Mcp) => crate::mcp::serve(),
        Some(Command::Ui {
            listen,
            allow_remote,
            db,
        }) => {
            let db = match db {
                Some(d) => d,
                None => crate::home::sintra_home()?.join("history.db"),
            };
            crate::ui::serve(&db, &listen, allow_remote)
        }
        Some(Command::Export(ExportCommand::Ollama { run, name })) => {
            let (model, note) = crate::export::run_model(&run)?;
            println!("{}", crate::export::ollama::export(&model, &name, &note)?);
            Ok(())
        }
        Some(Command::History {
            datasette: true, ..
        }) => history::datasette(),
        Some(Command::History {
            limit,
            fleet: false,
            ..
        }) => history::run(limit),
        Some(Command::History {
            fleet: true,
            model,
            run,
            ..
        }) => history::fleet(model.as_deref(), run.as_deref()),
        None => root::run(cli.root),
    }
}

/// `--target-speedup`: a finite multiple above zero.
fn parse_speedup(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!("'{s}' is not a positive multiple such as 1.5")),
    }
}
