//! sintra-rt as a library: the model, tokenizer and evaluation code behind the `sintra-rt`
//! binary, also used by the integration tests and benchmarks.

pub mod calibrate;
pub mod chat;
pub mod cli;
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
