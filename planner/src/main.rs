//! `sintra`: the planner. For now it inspects GGUF files; the agent loop lands with issue #6.

mod cli;
mod device;
mod download;
#[cfg(test)]
mod http_double;
mod inspect;
mod llm;
mod models;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Fit large language models onto edge devices, with measurements taken on the device.
#[derive(Debug, Parser)]
#[command(name = "sintra", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    /// Reach a device: deploy the runtime, shake hands, probe.
    #[command(subcommand)]
    Device(cli::device::DeviceCommand),
    /// Benchmark a model on a device (llama-bench's pp/tg, optionally perplexity).
    Bench(cli::device::BenchArgs),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sintra: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect {
            model,
            json,
            metadata,
        } => {
            let path = match model {
                Some(p) => p,
                None => models::default_model()?,
            };
            inspect::run(&path, json, metadata)
        }
        Command::Device(cli::device::DeviceCommand::Check(a)) => cli::device::check(&a),
        Command::Bench(a) => cli::device::bench(&a),
    }
}
