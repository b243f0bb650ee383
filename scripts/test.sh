#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test (real models, llama.cpp differential tests).
# Run `bash scripts/setup.sh` once first (CI does).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
# --profile test: clippy then shares the test build's dependencies, llama.cpp included (built by
# llama-cpp-sys-2's build script; a dev-profile check would build it a second time, ~15 min).
cargo clippy --workspace --all-targets --profile test --locked -- -D warnings
cargo test --workspace --locked
# The code behind cargo features, off in the default build, linted in one pass: the
# OpenAI-compatible server (`http`) and the CUDA kernels under their CPU emulator
# (`cuda-emulator`, which takes `cuda` with it). The lines above lint the code without them.
cargo clippy -p kernels -p runtime --features runtime/http,runtime/cuda-emulator --all-targets --profile test --locked -- -D warnings
# The server's unit tests (JSON-constrained sampling, chat templates, request parsing); the
# integration tests build and run the real binary with it.
cargo test -p runtime --features http --lib --locked
# The CUDA kernels (issue #21), every one against a CPU reference under the CUDA emulator (no
# GPU here; scripts/gpu-check.sh runs the same tests on one). The integration tests build and
# run the CUDA runtime itself.
cargo test -p kernels --features cuda-emulator --lib --locked cuda::
# The scalar kernels on aarch64, under qemu-user (.cargo/config.toml sets linker and runner).
cargo test -p kernels --target aarch64-unknown-linux-musl --locked
# The armv7 NEON kernels (inline assembly) against the oracle, under qemu-arm.
cargo test -p kernels --target armv7-unknown-linux-gnueabihf --locked
