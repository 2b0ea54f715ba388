#!/usr/bin/env bash
# Set up (idempotently), make sure the embedded model is converted, and open JupyterLab on notebooks/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m lorakit.cli prepare-model
exec .venv/bin/jupyter lab --notebook-dir=notebooks "$@"
