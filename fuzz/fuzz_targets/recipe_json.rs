//! Fuzz target `recipe_json`: see `checks::recipe_json` (shared with the test suite's corpus replay).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::recipe_json(data));
