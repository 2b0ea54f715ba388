"""Execute notebooks in place, top to bottom, and stamp each code cell with the source its outputs came from.

    .venv/bin/python scripts/execute_notebooks.py                      # every notebook in notebooks/
    .venv/bin/python scripts/execute_notebooks.py notebooks/03_finetune.ipynb

Saved outputs are teaching material: ``tests/test_notebook_facts.py`` checks that every code cell's stamp
(``metadata.lorakit.source_sha``) matches its current source, so a cell edited without re-running the notebook
fails the suite instead of showing the output of older code. Prints the wall time of each notebook; run it on
a quiet machine, since the notebooks print the tokens/s they measure.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAMP_KEY = "lorakit"


def source_sha(source: str) -> str:
    """The stamp of a cell's source: 16 hex digits of its SHA-256 (trailing whitespace ignored)."""
    return hashlib.sha256(source.rstrip().encode("utf-8")).hexdigest()[:16]


def execute(path: Path, timeout_s: int) -> float:
    """Run ``path`` in a fresh kernel (working directory: its folder), stamp it, save it; the seconds taken."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout_s, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.metadata.setdefault(STAMP_KEY, {})["source_sha"] = source_sha(cell.source)
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    # The kernels inherit this environment: matplotlib's inline backend, so that plt.show() saves its chart in the
    # notebook (under MPLBACKEND=Agg, which the test scripts export, it would save nothing).
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    for path in paths:
        print(f"{path.name}: {execute(path.resolve(), args.timeout):.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
