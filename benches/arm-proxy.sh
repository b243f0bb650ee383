#!/usr/bin/env bash
# The ARM speed proxy (issue #14): guest instructions executed per decoded token, counted by a
# QEMU TCG plugin (benches/arm-proxy/insn_count.c) while the static aarch64 sintra-rt and
# llama.cpp (the sources llama-cpp-sys-2 vendors, cross-compiled by Debian's aarch64 gcc for
# armv8.2-a+dotprod, the Raspberry Pi 5's Cortex-A76, with its CPU repack on as by default)
# decode the same files under `qemu-aarch64 -cpu cortex-a76`, one thread.
#
#   bash benches/arm-proxy.sh [TYPES]        # TYPES: Q4_0,Q4_K_M,Q8_0 (decode-bench's files)
#
# Each engine decodes N = 16 and N = 48 tokens one at a time from an empty cache after the same
# discarded warm-up (min(N, 16) tokens); the difference of the two counts over 32 is the
# instructions of one decode step at positions 16-47, without loading, warm-up or exit. For
# prompts, one batch of P = 64 and of P = 128 tokens after a warm-up batch of 64: the
# difference over 64 is the marginal instructions of a prompt token between 64 and 128. Not a
# speed: instructions differ in cost (a `sdot` against a scalar add), memory stalls are not
# counted, and qemu's `-cpu` model only decides which instructions exist. It is repeatable
# (the counts are exact and deterministic) and says which engine does less work per token on
# the ISA the boards have.
# Needs: qemu-user (the dynamic qemu-aarch64 and qemu-arm: plugins), gcc, g++-aarch64-linux-gnu,
# cmake, and for the armv7 table gcc-arm-linux-gnueabihf.
set -euo pipefail
cd "$(dirname "$0")/.."
TYPES="${1:-Q4_0,Q4_K_M,Q8_0}"
OUT=target/arm-proxy
mkdir -p "$OUT"
log() { echo "arm-proxy: $*" >&2; }

for tool in qemu-aarch64 gcc aarch64-linux-gnu-g++ cmake; do
  command -v "$tool" >/dev/null || { log "needs $tool (apt: qemu-user gcc g++-aarch64-linux-gnu cmake)"; exit 1; }
done

gcc -O2 -shared -fPIC -o "$OUT/insn_count.so" benches/arm-proxy/insn_count.c

LLAMA_SRC=$(cargo metadata --format-version 1 --locked 2>/dev/null | python3 -c '
import json, os, sys
m = json.load(sys.stdin)
p = next(p for p in m["packages"] if p["name"] == "llama-cpp-sys-2")
print(os.path.join(os.path.dirname(p["manifest_path"]), "llama.cpp"))')
if [ ! -x "$OUT/llama/llama-decode" ]; then
  log "cross-compiling llama.cpp for aarch64 (armv8.2-a+dotprod) from $LLAMA_SRC (minutes, once)"
  cmake -S benches/arm-proxy -B "$OUT/llama" -DLLAMA_SRC="$LLAMA_SRC" \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
    -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ \
    -DGGML_NATIVE=OFF -DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod -DGGML_OPENMP=OFF \
    -DCMAKE_EXE_LINKER_FLAGS=-static >"$OUT/cmake.log" 2>&1 || { tail -20 "$OUT/cmake.log"; exit 1; }
  cmake --build "$OUT/llama" --target llama-decode -j "$(nproc)" >>"$OUT/cmake.log" 2>&1 \
    || { tail -20 "$OUT/cmake.log"; exit 1; }
fi
LLAMA="$OUT/llama/llama-decode"

log "building the static aarch64 sintra-rt"
bash cross/build.sh --no-budget aarch64-unknown-linux-musl >&2
RT=target/aarch64-unknown-linux-musl/dist/sintra-rt

log "making the files (decode-bench --files-only)"
FILES=$(cargo run --quiet --release -p sintra-benches --bin decode-bench -- --types "$TYPES" --files-only)

# insns ENV... -- PROGRAM ARGS...: the guest instructions of one run.
insns() {
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  env "${envs[@]}" qemu-aarch64 -cpu cortex-a76 -plugin "$OUT/insn_count.so" -d plugin "$@" 2>&1 >/dev/null \
    | sed -n 's/^insns: //p' | tail -n 1
}
# per_token ENV... -- PROGRAM ARGS-BEFORE-N: (count(N=48) - count(N=16)) / 32, in millions.
per_token() {
  local envs=() prog=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  local kind=$1; shift
  local a b n=32
  case "$kind" in
    sintra)
      a=$(insns "${envs[@]}" -- "$RT" bench -m "$1" -p 0 -n 16 -t 1 -r 1)
      b=$(insns "${envs[@]}" -- "$RT" bench -m "$1" -p 0 -n 48 -t 1 -r 1) ;;
    llama)
      a=$(insns "${envs[@]}" -- "$LLAMA" "$1" 16 1)
      b=$(insns "${envs[@]}" -- "$LLAMA" "$1" 48 1) ;;
    sintra-pp)
      n=64
      a=$(insns "${envs[@]}" -- "$RT" bench -m "$1" -p 64 -n 0 -t 1 -r 1)
      b=$(insns "${envs[@]}" -- "$RT" bench -m "$1" -p 128 -n 0 -t 1 -r 1) ;;
    llama-pp)
      n=64
      a=$(insns "${envs[@]}" -- "$LLAMA" "$1" 64 1 pp)
      b=$(insns "${envs[@]}" -- "$LLAMA" "$1" 128 1 pp) ;;
  esac
  python3 -c "print(f'{($b - $a) / $n / 1e6:.2f}')"
}

echo
echo "Guest instructions per decoded token (millions; positions 16-47, 1 thread, qemu-aarch64 -cpu cortex-a76)"
echo "llama.cpp: $(qemu-aarch64 -cpu cortex-a76 "$LLAMA" "$(head -n1 <<<"$FILES" | cut -d' ' -f2)" 1 1 | tail -n 1)"
echo "sintra-rt: $(qemu-aarch64 -cpu cortex-a76 "$RT" --version)"
echo
echo "| type | llama.cpp (armv8.2-a+dotprod) | sintra-rt neon+dotprod | ratio | sintra-rt neon (no dotprod) |"
echo "| ---- | ---: | ---: | ---: | ---: |"
while read -r name path; do
  [ -n "$name" ] || continue
  log "$name: llama.cpp"
  l=$(per_token X=1 -- llama "$path")
  log "$name: sintra-rt neon+dotprod"
  d=$(per_token SINTRA_KERNELS=dotprod -- sintra "$path")
  log "$name: sintra-rt neon"
  n=$(per_token SINTRA_KERNELS=neon -- sintra "$path")
  r=$(python3 -c "print(f'{$d / $l:.2f}')")
  echo "| $name | $l | $d | ${r}x | $n |"
done <<<"$FILES"

echo
echo "Guest instructions per prompt token (millions; tokens 64-127 of one batch, 1 thread)"
echo
echo "| type | llama.cpp (armv8.2-a+dotprod) | sintra-rt neon+dotprod | ratio |"
echo "| ---- | ---: | ---: | ---: |"
while read -r name path; do
  [ -n "$name" ] || continue
  log "$name: prompt, llama.cpp"
  l=$(per_token X=1 -- llama-pp "$path")
  log "$name: prompt, sintra-rt neon+dotprod"
  d=$(per_token SINTRA_KERNELS=dotprod -- sintra-pp "$path")
  r=$(python3 -c "print(f'{$d / $l:.2f}')")
  echo "| $name | $l | $d | ${r}x |"
done <<<"$FILES"

# armv7 (32-bit Raspberry Pi OS): the static armv7 build's NEON kernels (inline assembly)
# against its scalar table, under `qemu-arm -cpu cortex-a7` (the Raspberry Pi 2's core).
log "building the static armv7 sintra-rt"
bash cross/build.sh --no-budget armv7-unknown-linux-gnueabihf >&2
RT7=target/armv7-unknown-linux-gnueabihf/dist/sintra-rt
insns7() {
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  env "${envs[@]}" qemu-arm -cpu cortex-a7 -plugin "$OUT/insn_count.so" -d plugin "$@" 2>&1 >/dev/null \
    | sed -n 's/^insns: //p' | tail -n 1
}
per_token7() {
  local a b
  a=$(insns7 "SINTRA_KERNELS=$1" -- "$RT7" bench -m "$2" -p 0 -n 16 -t 1 -r 1)
  b=$(insns7 "SINTRA_KERNELS=$1" -- "$RT7" bench -m "$2" -p 0 -n 48 -t 1 -r 1)
  python3 -c "print(f'{($b - $a) / 32 / 1e6:.2f}')"
}
echo
echo "armv7: guest instructions per decoded token (millions; positions 16-47, 1 thread, qemu-arm -cpu cortex-a7)"
echo "sintra-rt: $(qemu-arm -cpu cortex-a7 "$RT7" --version)"
echo
echo "| type | sintra-rt scalar | sintra-rt armv7+neon | ratio |"
echo "| ---- | ---: | ---: | ---: |"
while read -r name path; do
  [ -n "$name" ] || continue
  log "$name: armv7 scalar"
  s=$(per_token7 scalar "$path")
  log "$name: armv7+neon"
  n=$(per_token7 armv7+neon "$path")
  echo "| $name | $s | $n | $(python3 -c "print(f'{$n / $s:.2f}')")x |"
done <<<"$FILES"
