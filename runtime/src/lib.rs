//! sintra-rt as a library: the pieces the `sintra-rt` binary is made of, usable from tests and
//! benchmarks.

pub mod tokenizer;
