//! Compute kernels for the sintra runtime. Filled in by the kernels issue (#4); the scalar
//! oracle lands with the runtime (#3).
#![no_std]
