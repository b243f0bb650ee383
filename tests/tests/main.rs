//! The one integration-test binary (see STYLE.md): each module is a concern.

mod aarch64;
mod batch;
mod compress;
mod datasette;
mod device;
mod fleet;
mod gemma3;
mod gguf;
mod hf;
mod http;
mod mcp;
mod ollama;
mod planner;
mod quant_vs_ggml;
mod quickstart;
mod report_html;
mod requantize;
mod runtime_errors;
mod runtime_vs_llama;
mod speculative;
mod synthetic;
mod tokenizer;
mod ui;
mod vec_dot_vs_ggml;
