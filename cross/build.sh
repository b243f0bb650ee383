#!/usr/bin/env bash
# Static, stripped sintra-rt for the boards users copy it to, without docker: rustup's targets,
# linked by the rust-lld that ships with the toolchain (.cargo/config.toml), `dist` profile
# (fat LTO, one codegen unit, panic=abort, stripped).
#
#   bash cross/build.sh                 # every target below that rustup has or can add
#   bash cross/build.sh aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf
#
# armv7 (32-bit Raspberry Pi OS) is glibc's gnueabihf target linked statically (`+crt-static`,
# Debian's gcc-arm-linux-gnueabihf and libc6-dev-armhf-cross; .cargo/config.toml): rustup's
# mirror here carries no rust-std for armv7 musl.
#
# `*-linux-gnu` targets (aarch64-unknown-linux-gnu: the Jetson Orin on JetPack 6; x86_64 desktops)
# build the CUDA runtime instead (issue #21): `--features cuda`, linked against glibc (the NVIDIA
# driver is loaded at run time, which a static binary cannot do), carrying its PTX; not held to
# the static builds' size budget. It needs NVRTC at build time (`bash scripts/setup.sh`) and, for
# aarch64, Debian's gcc-aarch64-linux-gnu.
#
# Prints each binary's path and size; a static binary over the size budget (2 MB) fails the build.
# Without arguments, a target whose standard library rustup cannot install is reported and
# skipped; a target named on the command line must build. Exit status: 0 when every requested
# target built within budget, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."

ALL=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf)
BUDGET=$((2 * 1000 * 1000))
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

explicit=1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  explicit=0
  targets=("${ALL[@]}")
fi

built=() skipped=() failed=()
installed=$(rustup target list --installed 2>/dev/null)
for t in "${targets[@]}"; do
  if ! grep -qx "$t" <<<"$installed"; then
    echo "cross: adding rust target $t" >&2
    if ! out=$(rustup target add "$t" 2>&1); then
      # rustup's first error line, and the HTTP status when the mirror lacks the component.
      reason=$(grep -m1 '^error:' <<<"$out" | sed 's/^error: //')
      http=$(grep -m1 -o 'unsuccessful status code: [0-9]*' <<<"$out" | sed 's/unsuccessful //')
      reason="${reason:-$(tail -n 1 <<<"$out")}${http:+ (HTTP $http from the rustup mirror)}"
      if [ $explicit -eq 1 ]; then
        failed+=("$t: rustup target add failed: $reason")
      else
        skipped+=("$t: rustup target add failed: $reason")
      fi
      continue
    fi
  fi
  features=() cuda=0
  case "$t" in *-linux-gnu) features=(--features cuda) cuda=1 ;; esac
  echo "cross: building $t ${features[*]}" >&2
  if ! cargo build --locked --profile dist --target "$t" -p runtime --bin sintra-rt "${features[@]}"; then
    failed+=("$t: cargo build failed (see above)")
    continue
  fi
  bin="$TARGET_DIR/$t/dist/sintra-rt"
  size=$(stat -c %s "$bin")
  if [ $cuda -eq 1 ]; then
    built+=("$(awk -v t="$t" -v s="$size" -v b="$bin" 'BEGIN { printf "%-34s %9d bytes (%.2f MB)  %s (CUDA, glibc: no budget)", t, s, s / 1e6, b }')")
  elif [ "$size" -gt "$BUDGET" ]; then
    failed+=("$t: $bin is $size bytes, over the budget of $BUDGET")
  else
    built+=("$(awk -v t="$t" -v s="$size" -v b="$bin" 'BEGIN { printf "%-34s %9d bytes (%.2f MB)  %s", t, s, s / 1e6, b }')")
  fi
done

echo
echo "sintra-rt (static, stripped; budget $BUDGET bytes):"
for b in "${built[@]}"; do echo "  built    $b"; done
for s in "${skipped[@]}"; do echo "  skipped  $s"; done
for f in "${failed[@]}"; do echo "  FAILED   $f"; done
[ ${#failed[@]} -eq 0 ]
