//! Fuzz target `wire_request`: see `checks::wire_request` (shared with the test suite's corpus replay).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::wire_request(data));
