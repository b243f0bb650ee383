#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test (real models, llama.cpp differential tests).
# Run `bash scripts/setup.sh` once first (CI does).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
# --profile test: clippy then shares the test build's dependencies, llama.cpp included (built by
# llama-cpp-sys-2's build script; a dev-profile check would build it a second time, ~15 min).
cargo clippy --workspace --all-targets --profile test --locked -- -D warnings
# (The kernels' own tests run at the end, with the standard library's debug checks on.)
cargo test --workspace --exclude kernels --locked
# The code behind cargo features, off in the default build, linted in one pass: the
# OpenAI-compatible server (`http`) and the CUDA kernels under their CPU emulator
# (`cuda-emulator`, which takes `cuda` with it). The lines above lint the code without them.
cargo clippy -p kernels -p runtime --features runtime/http,runtime/cuda-emulator --all-targets --profile test --locked -- -D warnings
# The server's unit tests (JSON-constrained sampling, chat templates, request parsing); the
# integration tests build and run the real binary with it.
cargo test -p runtime --features http --lib --locked
# The kernels' own tests with the standard library's debug checks on (raw pointers' and
# iterators' preconditions; the test profile leaves them off in the kernels for the integration
# tests' model runs, see Cargo.toml): on x86-64 with the CUDA kernels (issue #21), every one
# against a CPU reference under the CUDA emulator (no GPU here; scripts/gpu-check.sh runs the
# same tests on one; the integration tests build and run the CUDA runtime itself); on aarch64,
# scalar and NEON, under qemu-user (.cargo/config.toml sets linker and runner); the armv7 NEON
# kernels (inline assembly) against the oracle, under qemu-arm.
checked=(--locked --config 'profile.test.package.kernels.debug-assertions=true')
cargo test -p kernels --features cuda-emulator --lib "${checked[@]}"
cargo test -p kernels --target aarch64-unknown-linux-musl "${checked[@]}"
cargo test -p kernels --target armv7-unknown-linux-gnueabihf "${checked[@]}"
