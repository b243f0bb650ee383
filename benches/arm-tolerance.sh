#!/usr/bin/env bash
# The aarch64 fast path's tolerances over 2,040 positions (issue #14): the static aarch64
# sintra-rt under qemu-aarch64 (`-cpu max`: NEON, dotprod, i8mm; its default table,
# `neon+i8mm`) against the host's exact AVX2 table, on 8 windows of 512 tokens of the eval text
# (the second half of each scored, as llama.cpp's perplexity does: 8 * 255 = 2,040 positions).
# The exact table is llama.cpp's token-by-token arithmetic, bit for bit over a context's first
# 256 positions (tests/tests/runtime_vs_llama.rs); from there llama.cpp's CPU flash attention
# splits the cache between its threads, an order no table reproduces, so the column headed
# "llama.cpp" is the exact table's: llama.cpp's arithmetic but for that split.
# The host's scalar oracle is measured the same way, as the distance any other summation order
# has from llama.cpp's on this model.
#
#   bash benches/arm-tolerance.sh [TYPES]     # default Q4_0,Q8_0,Q4_1 (decode-bench's files)
#
# Only Q4_0, Q4_1 and Q8_0 matrices take the fast order on aarch64 (packed, `arm::neon::fast`);
# every other type runs the exact kernels, whose logits are the x86 build's bit for bit
# (tests/tests/aarch64.rs checks that on a Q4_K file with the default table). A type's file
# with none of those matrices therefore agrees 100%. Under qemu a window of 512 takes about
# three minutes on one host core: about 25 minutes a type.
set -euo pipefail
cd "$(dirname "$0")/.."
TYPES="${1:-Q4_0,Q8_0,Q4_1}"
OUT=target/arm-tolerance
mkdir -p "$OUT"
log() { echo "arm-tolerance: $*" >&2; }
command -v qemu-aarch64-static >/dev/null || { log "needs qemu-aarch64-static (apt: qemu-user-static)"; exit 1; }

log "building the static runtimes (host and aarch64)"
bash cross/build.sh --no-budget x86_64-unknown-linux-musl aarch64-unknown-linux-musl >&2
HOST=target/x86_64-unknown-linux-musl/dist/sintra-rt
ARM=target/aarch64-unknown-linux-musl/dist/sintra-rt
FILES=$(cargo run --quiet --release -p sintra-benches --bin decode-bench -- --types "$TYPES" --files-only)
TEXT=.cache/data/eval.txt
[ -f "$TEXT" ] || { log "no $TEXT: run bash scripts/setup.sh first"; exit 1; }
ARGS=(-f "$TEXT" -c 512 --chunks 8)

field() { sed -n "s/^$1 *//p" <<<"$2" | awk '{print $1}' | head -n 1; }
ppl() { sed -n 's/^Final estimate: PPL = //p' <<<"$1" | awk '{print $1}'; }

echo "aarch64 fast path against the host's exact table (llama.cpp's arithmetic), 2,040 positions (8 x 512), $(date -u +%F)"
echo "host: $(lscpu | sed -n 's/^Model name: *//p'); $($HOST --version)"
echo "aarch64: $(qemu-aarch64-static "$ARM" --version) under qemu-aarch64-static"
echo
echo "| file | exact table PPL | aarch64 default PPL | ΔPPL | top-1 agreement | mean KLD | host scalar oracle: ΔPPL, top-1 |"
echo "| ---- | ---: | ---: | ---: | ---: | ---: | ---: |"
while read -r name path; do
  [ -n "$name" ] || continue
  base="$OUT/$name.logits"
  log "$name: host avx2-exact (llama.cpp's arithmetic)"
  exact=$(SINTRA_KERNELS=avx2-exact "$HOST" perplexity -m "$path" "${ARGS[@]}" --save-logits "$base" 2>/dev/null)
  log "$name: host scalar oracle"
  oracle=$(SINTRA_KERNELS=scalar "$HOST" perplexity -m "$path" "${ARGS[@]}" --kl-divergence-base "$base" 2>/dev/null)
  log "$name: aarch64 default table under qemu (about 25 minutes)"
  arm=$(qemu-aarch64-static "$ARM" perplexity -m "$path" "${ARGS[@]}" -t 1 --kl-divergence-base "$base" 2>/dev/null)
  rm -f "$base"
  e=$(ppl "$exact"); a=$(ppl "$arm"); o=$(ppl "$oracle")
  python3 - "$name" "$e" "$a" "$o" "$(field 'Same top p:' "$arm")" "$(field 'Mean KLD:' "$arm")" \
    "$(field 'Same top p:' "$oracle")" "$(field scored "$arm")" <<'PY'
import sys
name, e, a, o, top, kld, otop, scored = sys.argv[1:]
e, a, o = float(e), float(a), float(o)
print(f"| {name} ({scored} positions) | {e:.4f} | {a:.4f} | {100 * (a / e - 1):+.3f}% | {top}% | {kld} | {100 * (o / e - 1):+.3f}%, {otop}% |")
PY
done <<<"$FILES"
