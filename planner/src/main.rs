//! `sintra`: the planner. `sintra PROFILE` runs the optimization loop (Architect -> Executor ->
//! Measurer (`sintra-rt serve` over `formats::wire`) -> Critic -> Reporter); subcommands inspect
//! models, execute one recipe, reach devices and list the history. See `cli/` for the command
//! line and `optimize.rs` for the loop.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = planner::cli::Cli::parse();
    init_logging(cli.root.debug);
    match planner::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sintra: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr: `RUST_LOG` filters them; `--debug` means `debug`; the default is `warn`.
fn init_logging(debug: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = if debug {
        EnvFilter::new("debug")
    } else {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"))
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for a person at a terminal, plain text for a file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
