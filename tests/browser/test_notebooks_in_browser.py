"""Every notebook in notebooks/ runs top to bottom in JupyterLab, in a real browser, without an error."""

from __future__ import annotations

from pathlib import Path

import pytest
from labdriver import run_notebook

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOKS = sorted(p.name for p in (Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
# Seconds for a whole run on 2 CPU cores; the training notebooks train on the CPU for minutes.
TIMEOUT_S = {"03_finetune.ipynb": 900, "04_precision_and_quantization_lab.ipynb": 900}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_jupyterlab(lab_server, page, name):
    run_notebook(page, lab_server, name, timeout_s=TIMEOUT_S.get(name, 300))
    assert page.locator(".jp-Notebook .jp-CodeCell").count() > 0
