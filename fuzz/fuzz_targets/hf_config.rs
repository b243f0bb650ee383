//! Fuzz target `hf_config`: see `checks::hf_config` (shared with the test suite's corpus replay).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::hf_config(data));
