#!/usr/bin/env bash
# The checks of issue #21 that need an NVIDIA GPU, as one script for a lent GPU machine (see
# docs/issue21/gpu-check.md). Two steps:
#
#   bash scripts/gpu-check.sh prepare    here (after scripts/setup.sh): builds everything into
#                                        .gpu-check/ (git-ignored, 19 MiB): the CUDA sintra-rt,
#                                        the kernel tests, the model maker, SmolLM2's tokenizer,
#                                        an evaluation slice and llama.cpp's sources; and SmolLM2
#                                        Q4_1 itself in two parts, .gpu-check-a/ (56 MiB) and
#                                        .gpu-check/ (the rest): a call carries 64 MiB with the
#                                        working tree (5 MiB) at most
#   bash scripts/gpu-check.sh run        on the GPU machine (x86-64, CUDA driver, nvcc, cmake; no
#                                        Rust, no network), from the repository's root with
#                                        .gpu-check/ beside it; writes its log to $OUT (or /tmp)
#
# GPU_DEVICE=cpu bash scripts/gpu-check.sh run is a dry run anywhere: the "GPU" steps on the CPU
# (and the kernels on the emulator), so every step's plumbing is exercised; its verdicts mean
# nothing about a GPU.
#
# With the device tool: one call carrying .gpu-check-a with the command `true`, then at once
# (the machine stays warm 30 s and keeps ignored paths between calls) one carrying .gpu-check
# with `bash scripts/gpu-check.sh run`. Without the first part, the SmolLM2 steps say so and
# the rest runs.
#
# `run` does, in order (each step's verdict in the log; the exit status is 1 if any failed):
#   1. every CUDA kernel against its CPU reference on the GPU (the suite's emulator tests, with
#      SINTRA_TEST_GPU=cuda);
#   2. the GPU forward pass against the CPU path on the five synthetic architectures and on a
#      SmolLM2-shaped model: mean KL divergence within 3x the CPU scalar oracle's, as the suite
#      holds the emulator (SmolLM2 itself is 98 MiB: more than may travel, so its shape with
#      random weights stands in; top-1 and PPL of random weights mean nothing);
#   3. pp512 / tg128 of the SmolLM2-shaped Q4_0 and Q8_0 models: sintra-rt on the GPU and on the
#      CPU (all cores), interleaved, 5 repetitions each after a warm-up, beside llama.cpp's
#      CUDA backend built there (background build, given up after LLAMA_BUILD_SECONDS).
set -uo pipefail
cd "$(dirname "$0")/.."
D=.gpu-check

prepare() {
  set -e
  mkdir -p "$D"
  echo "gpu-check: building the CUDA sintra-rt (x86_64-unknown-linux-gnu)" >&2
  cargo build --locked --release -p runtime --bin sintra-rt --features cuda --target-dir target/gpu-check
  cp target/gpu-check/release/sintra-rt "$D/sintra-rt"
  echo "gpu-check: building the kernel tests" >&2
  local tests
  tests=$(cargo test --locked --release -p kernels --features cuda-emulator --lib --no-run \
            --target-dir target/gpu-check 2>&1 | sed -n 's/.*Executable unittests src\/lib.rs (\(.*\))/\1/p')
  cp "$tests" "$D/kernel-tests"
  cargo build --locked --release -p sintra-benches --bin gpu-models --target-dir target/gpu-check
  cp target/gpu-check/release/gpu-models "$D/gpu-models"
  "$D/gpu-models" vocab "${SINTRA_MODELS:-.cache/models}/SmolLM2-135M-Instruct.Q4_1.gguf" "$D/vocab.gguf"
  head -c 40000 "${SINTRA_DATA:-.cache/data}/eval.txt" > "$D/eval.txt"
  local ver src
  ver=$(grep -A1 'name = "llama-cpp-sys-2"' Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p')
  src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/llama-cpp-sys-2-"$ver" | head -1)
  tar -C "$src" -cJf "$D/llama.cpp.tar.xz" --exclude=llama.cpp/models --exclude=llama.cpp/docs \
    --exclude=llama.cpp/gguf-py --exclude=llama.cpp/pocs --exclude=llama.cpp/tests \
    --exclude=llama.cpp/ggml/src/ggml-vulkan --exclude=llama.cpp/ggml/src/ggml-sycl \
    --exclude=llama.cpp/ggml/src/ggml-webgpu --exclude=llama.cpp/ggml/src/ggml-hexagon \
    --exclude=llama.cpp/ggml/src/ggml-opencl --exclude=llama.cpp/ggml/src/ggml-cann llama.cpp
  local model="${SINTRA_MODELS:-.cache/models}/SmolLM2-135M-Instruct.Q4_1.gguf"
  mkdir -p "$D-a"
  head -c $((56 << 20)) "$model" > "$D-a/smollm2.part1"
  tail -c +$(((56 << 20) + 1)) "$model" > "$D/smollm2.part2"
  sha256sum "$model" | cut -d' ' -f1 > "$D/smollm2.sha256"
  du -sh "$D" "$D-a"; ls -la "$D" "$D-a"
  echo "gpu-check: ready; on the GPU machine: bash scripts/gpu-check.sh run (carry .gpu-check)" >&2
}

LOG="${OUT:-/tmp}/gpu-check.log"
failed=()
say() { echo "$*" | tee -a "$LOG"; }
step() { say; say "=== $*"; }
verdict() { # verdict NAME STATUS
  if [ "$2" -eq 0 ]; then say "PASS $1"; else say "FAIL $1"; failed+=("$1"); fi
}

field() { sed -n "s/^$1 *\([-0-9.e+]*\).*/\1/p" | head -1; }

run() {
  : > "$LOG"
  local W=/tmp/gpu-check; mkdir -p "$W"
  local threads; threads=$(nproc)
  LLAMA_BUILD_SECONDS=${LLAMA_BUILD_SECONDS:-360}
  local gpu=${GPU_DEVICE:-cuda} test_gpu=""
  [ "$gpu" = cuda ] && test_gpu=cuda
  [ "$gpu" = cuda ] || say "DRY RUN: GPU_DEVICE=$gpu stands in for the GPU"
  step "machine"
  { date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv;
    lscpu | grep -E 'Model name|^CPU\(s\)'; nvcc --version | tail -1; } 2>&1 | tee -a "$LOG"
  "$D/sintra-rt" --version 2>&1 | tee -a "$LOG"

  # llama.cpp's CUDA backend builds in the background while sintra-rt is checked.
  ( set -e; mkdir -p "$W/llama"; tar -C "$W/llama" -xJf "$D/llama.cpp.tar.xz"
    cmake -S benches/gpu -B "$W/llama/build" -DLLAMA_SRC="$W/llama/llama.cpp" -DGGML_CUDA=ON \
      -DGGML_NATIVE=ON -DCMAKE_CUDA_ARCHITECTURES=native -DCMAKE_BUILD_TYPE=Release
    timeout "$LLAMA_BUILD_SECONDS" cmake --build "$W/llama/build" --target llama-pp-tg -j "$threads"
  ) > "$W/llama-build.log" 2>&1 &
  local llama_build=$!

  step "1. every CUDA kernel against its CPU reference, on the GPU"
  SINTRA_TEST_GPU=$test_gpu "$D/kernel-tests" cuda:: --test-threads 1 2>&1 | tee -a "$LOG"
  verdict "kernels on the GPU" "${PIPESTATUS[0]}"

  # SmolLM2, if both parts came (see the header).
  local smol=""
  if [ -f "$D-a/smollm2.part1" ] && [ -f "$D/smollm2.part2" ]; then
    cat "$D-a/smollm2.part1" "$D/smollm2.part2" > "$W/smollm2-q4_1.gguf"
    if [ "$(sha256sum "$W/smollm2-q4_1.gguf" | cut -d' ' -f1)" = "$(cat "$D/smollm2.sha256")" ]; then
      smol="$W/smollm2"
      "$D/gpu-models" requant "$W/smollm2-q4_1.gguf" q4_0 "$W/smollm2-q4_0.gguf"
      "$D/gpu-models" requant "$W/smollm2-q4_1.gguf" q8_0 "$W/smollm2-q8_0.gguf"
    else
      say "SmolLM2's parts do not make the published file (sha256): its steps are skipped"
    fi
  else
    say "SmolLM2's first part (.gpu-check-a) did not come: its steps are skipped"
  fi

  step "2. the GPU forward pass against the CPU path (mean KLD within 3x the CPU scalar oracle's)"
  for m in llama:q4_K qwen2:q8_0 qwen3:q4_K gemma3:q8_0 phi3:q4_K shaped:q4_0 shaped:q8_0; do
    local arch=${m%%:*} ty=${m#*:}
    local f="$W/$arch-$ty.gguf"
    if [ "$arch" = shaped ]; then "$D/gpu-models" shaped "$D/vocab.gguf" "$ty" "$f"
    else "$D/gpu-models" synthetic "$D/vocab.gguf" "$arch" "$ty" "$f"; fi
    local args=(perplexity -m "$f" -f "$D/eval.txt" -c 512 --chunks 8 -t "$threads")
    SINTRA_DEVICE=cpu SINTRA_KERNELS=avx2-exact "$D/sintra-rt" "${args[@]}" --save-logits "$W/base.logits" > "$W/base.out" 2>&1
    local oracle kld top ppl
    oracle=$(SINTRA_DEVICE=cpu SINTRA_KERNELS=scalar "$D/sintra-rt" "${args[@]}" --kl-divergence-base "$W/base.logits" 2>&1 | field "Mean KLD:")
    SINTRA_DEVICE=$gpu "$D/sintra-rt" "${args[@]}" --kl-divergence-base "$W/base.logits" > "$W/gpu.out" 2>&1
    kld=$(field "Mean KLD:" < "$W/gpu.out"); top=$(field "Same top p:" < "$W/gpu.out")
    ppl=$(grep -E "PPL\(Q\)-PPL\(base\)|scored" "$W/gpu.out" | tr '\n' ' ')
    say "$arch $ty: GPU mean KLD ${kld:-?} (CPU scalar oracle ${oracle:-?}), same top-1 ${top:-?}%; $ppl"
    [ -n "$kld" ] || tail -n 2 "$W/gpu.out" | tee -a "$LOG"
    awk -v g="${kld:-inf}" -v o="${oracle:-0}" 'BEGIN { exit !(g <= 3 * o) }'
    verdict "forward pass $arch $ty" $?
  done
  if [ -n "$smol" ]; then
    say "issue #21's tolerance on SmolLM2: top-1 >= 99%, |delta PPL| <= 0.3% against the CPU path, 2,048 positions"
    for ty in q4_1 q4_0 q8_0; do
      local f="$smol-$ty.gguf"
      local args=(perplexity -m "$f" -f "$D/eval.txt" -c 512 --chunks 8 -t "$threads")
      SINTRA_DEVICE=cpu "$D/sintra-rt" "${args[@]}" --save-logits "$W/base.logits" > "$W/base.out" 2>&1
      SINTRA_DEVICE=$gpu "$D/sintra-rt" "${args[@]}" --kl-divergence-base "$W/base.logits" > "$W/gpu.out" 2>&1
      local top kld base_ppl dppl
      top=$(field "Same top p:" < "$W/gpu.out"); kld=$(field "Mean KLD:" < "$W/gpu.out")
      base_ppl=$(field "PPL(base):" < "$W/gpu.out"); dppl=$(field "PPL(Q)-PPL(base):" < "$W/gpu.out")
      say "SmolLM2 $ty: same top-1 ${top:-?}%, mean KLD ${kld:-?}, PPL(CPU) ${base_ppl:-?}, delta ${dppl:-?}"
      [ -n "$top" ] || tail -n 2 "$W/gpu.out" | tee -a "$LOG"
      awk -v t="${top:-0}" -v b="${base_ppl:-1}" -v d="${dppl:-inf}" \
        'BEGIN { r = d / b; if (r < 0) r = -r; exit !(t >= 99 && r <= 0.003) }'
      verdict "tolerance SmolLM2 $ty" $?
    done
  fi

  step "3. pp512 / tg128: sintra-rt on the GPU and the CPU, interleaved; llama.cpp CUDA"
  wait "$llama_build"; local built=$?
  tail -3 "$W/llama-build.log" | tee -a "$LOG"
  for ty in q4_0 q8_0; do
    local f="$W/shaped-$ty.gguf"
    [ -z "$smol" ] || f="$smol-$ty.gguf"
    for rep in 1 2; do
      for device in "$gpu" cpu; do
        SINTRA_DEVICE=$device "$D/sintra-rt" bench -m "$f" -p 512 -n 128 -r 5 -t "$threads" > "$W/bench.out" 2>&1
        local rc=$?
        grep "|" "$W/bench.out" | tail -2 | tee -a "$LOG"
        [ $rc -eq 0 ] || { say "sintra-rt bench on $device failed:"; tail -n 2 "$W/bench.out" | tee -a "$LOG"; }
      done
      if [ "$built" -eq 0 ]; then
        "$W/llama/build/llama-pp-tg" "$f" 512 128 5 99 "$threads" 2>/dev/null | sed "s/^/$ty /" | tee -a "$LOG"
      fi
    done
  done
  [ "$built" -eq 0 ] || say "llama.cpp's CUDA build did not finish within ${LLAMA_BUILD_SECONDS}s (log: its last lines above)"

  say; say "failed: ${#failed[@]} (${failed[*]:-none})"
  [ ${#failed[@]} -eq 0 ]
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: bash scripts/gpu-check.sh prepare|run" >&2; exit 2 ;;
esac
