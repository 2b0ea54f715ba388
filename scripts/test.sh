#!/usr/bin/env bash
# Set up (idempotently) and run the whole lorakit test suite: unit tests, notebooks (nbval)
# and the real-browser tests. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
export MPLBACKEND=Agg
# One shared cache for the converted embedded model, so it is converted once per machine.
export LORAKIT_CACHE_DIR=${LORAKIT_CACHE_DIR:-$PWD/.cache/lorakit}
exec .venv/bin/python -m pytest "$@"
