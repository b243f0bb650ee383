//! The planner as a library: everything behind the `sintra` binary, also used by the
//! benchmarks in `benches/` (the compression report runs the same executor, calibration and
//! allocator as the agent loop).

pub mod architect;
pub mod calibration;
pub mod checkpoint;
pub mod cli;
pub mod compare;
pub mod convert;
pub mod critic;
pub mod detect;
pub mod device;
pub mod download;
pub mod executor;
pub mod experiment;
pub mod export;
pub mod fit;
pub mod fleet;
pub mod hf_model;
pub mod history;
pub mod home;
#[cfg(test)]
mod http_double;
pub mod inspect;
pub mod llm;
pub mod mcp;
pub mod measure;
pub mod model_info;
pub mod models;
pub mod optimize;
pub mod phase;
pub mod profile;
pub mod recipe;
pub mod report;
pub mod run;
pub mod sensitivity;
pub mod targets;
pub mod texts;
pub mod ui;
