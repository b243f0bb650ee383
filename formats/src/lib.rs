//! File formats of the sintra toolkit: GGUF (reader and writer), ggml's quantized block layouts
//! with reference quantizers, and the planner <-> runtime wire protocol ([`wire`]).
//!
//! Everything here treats its input as hostile: lengths, counts, offsets and dimensions read from
//! a file are capped and checked with overflow-checked arithmetic, and errors name the field and
//! the byte offset where it was found.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod gguf;
pub mod quant;
pub mod wire;
