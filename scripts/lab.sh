#!/usr/bin/env bash
# Set up (idempotently), make sure the embedded model is converted, and open JupyterLab on notebooks/.
# Extra arguments go to jupyter lab (e.g. --no-browser --port=8890).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m lorakit.cli prepare-model
# As root (a fresh container, a cloud notebook VM) JupyterLab refuses to start without --allow-root.
as_root=()
[ "$(id -u)" = 0 ] && as_root=(--allow-root)
exec .venv/bin/jupyter lab --notebook-dir=notebooks ${as_root[@]+"${as_root[@]}"} "$@"
