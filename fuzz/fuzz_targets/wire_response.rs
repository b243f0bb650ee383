//! Fuzz target `wire_response`: see `checks::wire_response` (shared with the test suite's corpus replay).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::wire_response(data));
