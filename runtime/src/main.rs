//! sintra-rt: the on-device runtime. The forward pass lands with issue #3.
use runtime::tokenizer::Tokenizer;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("--version") | Some("-V") => {
            println!("sintra-rt {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("tokenize") => match tokenize(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sintra-rt tokenize: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!(
                "sintra-rt {}: modes: tokenize -m MODEL -p PROMPT [--no-special]; --version",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::from(2)
        }
    }
}

/// `tokenize -m MODEL -p PROMPT [--no-special]`: one `id<TAB>piece` line per token, as
/// llama.cpp's `llama-tokenize` would tokenize the prompt (special tokens parsed, BOS added
/// where the vocabulary says so, unless `--no-special`).
fn tokenize(mut args: impl Iterator<Item = String>) -> Result<(), String> {
    let (mut model, mut prompt, mut special) = (None, None, true);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-m" | "--model" => model = args.next(),
            "-p" | "--prompt" => prompt = args.next(),
            "--no-special" => special = false,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let model = model.ok_or("missing -m MODEL")?;
    let prompt = prompt.ok_or("missing -p PROMPT")?;
    let file = formats::gguf::GgufFile::open(&model).map_err(|e| format!("{model}: {e}"))?;
    let tokenizer = Tokenizer::from_gguf(&file.header).map_err(|e| format!("{model}: {e}"))?;
    for id in tokenizer.encode(&prompt, special, special) {
        let piece = String::from_utf8_lossy(tokenizer.token_to_piece(id));
        println!("{id}\t{piece:?}");
    }
    Ok(())
}
