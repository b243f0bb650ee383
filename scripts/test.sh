#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test (real models, llama.cpp differential tests).
# Run `bash scripts/setup.sh` once first (CI does).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# The scalar kernels on aarch64, under qemu-user (.cargo/config.toml sets linker and runner).
cargo test -p kernels --target aarch64-unknown-linux-musl --locked
