#!/usr/bin/env bash
# Static, stripped sintra-rt for the boards users copy it to, without docker: rustup's targets,
# linked by the rust-lld that ships with the toolchain (.cargo/config.toml), `dist` profile
# (fat LTO, one codegen unit, panic=abort, stripped).
#
#   bash cross/build.sh                 # every target below that rustup has or can add
#   bash cross/build.sh aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf
#   bash cross/build.sh --http x86_64-unknown-linux-musl    # and the build with the HTTP server
#   bash cross/build.sh --no-budget ...                     # sizes printed, not enforced
#
# armv7 (32-bit Raspberry Pi OS) is glibc's gnueabihf target linked statically (`+crt-static`,
# Debian's gcc-arm-linux-gnueabihf and libc6-dev-armhf-cross; .cargo/config.toml): rustup's
# mirror here carries no rust-std for armv7 musl.
#
# The size budget (issue #17): 1.5 MB (1,500,000 bytes) for a static build, 2.5 MB for one with
# the OpenAI-compatible server (`--http`: the `dist-http` profile, which is `dist` in its own
# directory, dist-http/sintra-rt). Two things the prebuilt standard library brings are a fifth
# of the x86_64 binary and do nothing in a panic=abort runtime, so these builds leave them out:
# - std's backtrace symbolizer (gimli, addr2line, miniz_oxide and their sorts, some 220 KB):
#   the default panic hook keeps it reachable even with panic=abort and a stripped binary, for a
#   RUST_BACKTRACE that has no symbols to print. std is compiled from the toolchain's own source
#   (rustup's `rust-src` component) without its `backtrace` feature: `-Z build-std=std,panic_abort
#   -Z build-std-features=`. A panic still prints its message, file and line, then aborts.
#   `-Z` flags need RUSTC_BOOTSTRAP=1 on the stable toolchain; it is set for this cargo command
#   only, and the compiler is the same pinned release.
# - unwind tables (`-C force-unwind-tables=no`, some 80 KB): nothing unwinds under panic=abort.
# Where `rust-src` is missing and rustup cannot add it, the prebuilt std is linked instead, with
# a warning: the binary behaves the same but is larger (x86_64: over budget).
#
# `*-linux-gnu` targets (aarch64-unknown-linux-gnu: the Jetson Orin on JetPack 6; x86_64 desktops)
# build the CUDA runtime instead (issue #21): `--features cuda`, linked against glibc (the NVIDIA
# driver is loaded at run time, which a static binary cannot do), carrying its PTX, with the
# prebuilt std; not held to the static builds' size budget. It needs NVRTC at build time (`bash
# scripts/setup.sh`) and, for aarch64, Debian's gcc-aarch64-linux-gnu.
#
# Prints each binary's path and size; a static binary over its budget fails the build. Without
# target arguments, a target whose standard library rustup cannot install is reported and
# skipped; a target named on the command line must build. Exit status: 0 when every requested
# target built within budget, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."

ALL=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf)
BUDGET=1500000
HTTP_BUDGET=2500000
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
CARGO="${CARGO:-cargo}"

http=0 enforce=1
while [ $# -gt 0 ]; do
  case "$1" in
    --http) http=1 ;;
    # Sizes reported, not enforced: the test suite's builds, where `static_size` holds the budget.
    --no-budget) enforce=0 ;;
    *) break ;;
  esac
  shift
done
explicit=1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  explicit=0
  targets=("${ALL[@]}")
fi

# std from source where the toolchain's source is (or rustup can add it).
std_src=(-Z build-std=std,panic_abort -Z build-std-features=)
has_std_source() { [ -d "$(rustc --print sysroot)/lib/rustlib/src/rust/library/std" ]; }
if ! has_std_source; then
  echo "cross: adding rustup component rust-src (std's source, to build std without backtraces)" >&2
  rustup component add rust-src >/dev/null 2>&1
fi
if ! has_std_source; then
  echo "cross: WARNING: no rust-src for $(rustc -V); linking the prebuilt std (larger binaries)" >&2
  std_src=()
fi

built=() skipped=() failed=()

# `cargo build` of the runtime for target $1 with profile $2; the rest are cargo arguments.
build() {
  local t=$1 profile=$2
  shift 2
  # Appended to the target's rustflags in .cargo/config.toml (a `--config` array joins them;
  # RUSTFLAGS would replace armv7's +crt-static). It only takes effect with std from source:
  # with the prebuilt std, fat LTO keeps std's module-wide unwind-table flag for every function.
  local flags=(--config "target.$t.rustflags=['-C', 'force-unwind-tables=no']")
  local boot=()
  [ ${#std_src[@]} -eq 0 ] || boot=(env RUSTC_BOOTSTRAP=1)
  "${boot[@]}" "$CARGO" build --locked --profile "$profile" --target "$t" -p runtime --bin sintra-rt \
    "${flags[@]}" "${std_src[@]}" "$@"
}

# Records the size of binary $2 of target $1 against budget $3 (0: none), described by $4.
check() {
  local t=$1 bin=$2 budget=$3 what=$4 size
  if ! size=$(stat -c %s "$bin" 2>/dev/null); then
    failed+=("$t: cargo built no $bin")
    return
  fi
  local line
  line=$(awk -v t="$t" -v s="$size" -v b="$bin" -v w="$what" \
    'BEGIN { printf "%-34s %9d bytes (%.2f MB)  %s%s", t, s, s / 1e6, b, w }')
  if [ $enforce -eq 1 ] && [ "$budget" -gt 0 ] && [ "$size" -gt "$budget" ]; then
    failed+=("$t: $bin is $size bytes, over the budget of $budget")
  else
    built+=("$line")
  fi
}

installed=$(rustup target list --installed 2>/dev/null)
for t in "${targets[@]}"; do
  if ! grep -qx "$t" <<<"$installed"; then
    echo "cross: adding rust target $t" >&2
    if ! out=$(rustup target add "$t" 2>&1); then
      # rustup's first error line, and the HTTP status when the mirror lacks the component.
      reason=$(grep -m1 '^error:' <<<"$out" | sed 's/^error: //')
      http_status=$(grep -m1 -o 'unsuccessful status code: [0-9]*' <<<"$out" | sed 's/unsuccessful //')
      reason="${reason:-$(tail -n 1 <<<"$out")}${http_status:+ (HTTP $http_status from the rustup mirror)}"
      if [ $explicit -eq 1 ]; then
        failed+=("$t: rustup target add failed: $reason")
      else
        skipped+=("$t: rustup target add failed: $reason")
      fi
      continue
    fi
  fi
  bin="$TARGET_DIR/$t/dist/sintra-rt"
  case "$t" in
    *-linux-gnu)
      echo "cross: building $t --features cuda" >&2
      if "$CARGO" build --locked --profile dist --target "$t" -p runtime --bin sintra-rt --features cuda; then
        check "$t" "$bin" 0 "  (CUDA, glibc: no budget)"
      else
        failed+=("$t: cargo build failed (see above)")
      fi
      continue
      ;;
  esac
  if [ $http -eq 1 ]; then
    echo "cross: building $t --features http" >&2
    if build "$t" dist-http --features http; then
      check "$t" "$TARGET_DIR/$t/dist-http/sintra-rt" "$HTTP_BUDGET" "  (with the HTTP server)"
    else
      failed+=("$t: cargo build --features http failed (see above)")
    fi
  fi
  echo "cross: building $t" >&2
  if build "$t" dist; then
    check "$t" "$bin" "$BUDGET" ""
  else
    failed+=("$t: cargo build failed (see above)")
  fi
done

echo
echo "sintra-rt (static, stripped; budget $BUDGET bytes, $HTTP_BUDGET with the HTTP server${std_src:+; std built without backtraces}):"
for b in "${built[@]}"; do echo "  built    $b"; done
for s in "${skipped[@]}"; do echo "  skipped  $s"; done
for f in "${failed[@]}"; do echo "  FAILED   $f"; done
[ ${#failed[@]} -eq 0 ]
