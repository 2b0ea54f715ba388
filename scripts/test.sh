#!/usr/bin/env bash
# Set up (idempotently) and run lorakit's tests. Two tiers:
#   bash scripts/test.sh           the whole suite: unit tests, every notebook once (nbval, notebook 02 in the
#                                  Binder environment), the real browser. What CI (.ci/run) runs.
#   bash scripts/test.sh --quick   the unit tier: formats, sizing, config, the widgets' state, tiny-model training
#                                  steps (-m "not slow", no notebooks, no browser). Run it after every change.
# Extra arguments go to pytest (e.g. bash scripts/test.sh --quick -k planner). pytest prints the 15 slowest tests.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
if [ "${1:-}" = "--quick" ]; then
  quick=1
  shift
fi
if [ "$quick" = 1 ]; then
  bash scripts/setup.sh
else
  bash scripts/setup.sh --browser
fi
export MPLBACKEND=Agg
# One shared cache for the converted embedded model, so it is converted once per machine.
export LORAKIT_CACHE_DIR=${LORAKIT_CACHE_DIR:-$PWD/.cache/lorakit}
export HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-ci}
if [ "$quick" = 1 ]; then
  exec .venv/bin/python -m pytest tests -m "not slow" --durations=15 "$@"
fi
exec .venv/bin/python -m pytest --durations=15 "$@"
