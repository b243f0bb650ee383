//! sintra-rt as a library: the model, tokenizer and evaluation code behind the `sintra-rt`
//! binary, also used by the integration tests and benchmarks.

pub mod calibrate;
pub mod chat;
pub mod cli;
pub mod gpu;
#[cfg(feature = "http")]
pub mod http;
/// Built without the `http` feature: `serve --http` says how to get it.
#[cfg(not(feature = "http"))]
pub mod http {
    pub fn serve(_: &crate::cli::HttpOptions) -> Result<(), String> {
        Err("this sintra-rt was built without the HTTP server: build it with `cargo build --release -p runtime --features http`".into())
    }
}
#[cfg(feature = "http")]
pub mod json_constraint;
pub mod membw;
pub mod model;
pub mod perplexity;
pub mod sampler;
pub mod serve;
pub mod speculative;
pub mod sysinfo;
pub mod tasks;
pub mod threads;
pub mod tokenizer;
