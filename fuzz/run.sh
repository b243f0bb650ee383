#!/usr/bin/env bash
# Fuzz every target for RUNS inputs (default 1,000,000) with the allocation and time caps, then
# minimize each corpus into corpus/<target> (checked in; tests/tests/fuzz_corpus.rs replays it).
#   cd fuzz && bash run.sh [RUNS] [TARGET...]
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail
runs=${1:-1000000}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(gguf_parse wire_request wire_response recipe_json profile_yaml inventory hf_config hf_tokenizer)
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "seeds/$t" "/tmp/sintra-fuzz-work/$t"
  start=$(date +%s)
  cargo +nightly fuzz run -O "$t" "/tmp/sintra-fuzz-work/$t" "corpus/$t" "seeds/$t" -- \
    -runs="$runs" -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 -max_len=65536 \
    -print_final_stats=1 2>&1 | grep -E "^(stat::|Done|#[0-9]+ *DONE|==|SUMMARY)" || true
  echo "$t: $runs runs in $(( $(date +%s) - start )) s"
  cargo +nightly fuzz cmin -O "$t" "/tmp/sintra-fuzz-work/$t" -- -rss_limit_mb=2048 >/dev/null 2>&1
  rm -rf "corpus/$t" && cp -r "/tmp/sintra-fuzz-work/$t" "corpus/$t"
  echo "$t: corpus of $(ls "corpus/$t" | wc -l) inputs"
done
