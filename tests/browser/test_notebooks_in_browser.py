"""Every notebook in notebooks/ runs top to bottom in JupyterLab, in a real browser, without an error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from labdriver import img_src, run_notebook, screenshot, wait_src_settled
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOKS = sorted(p.name for p in (Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
WIDGET_ROOTS = ("lorakit-float-explorer", "lorakit-lora-calculator", "lorakit-trainer-panel")
# Seconds for a whole run on 2 CPU cores; the training notebooks train on the CPU for minutes. 03 took more
# than 900 s here while four training kernels shared the 2 cores: the bound is for hangs, not for speed.
TIMEOUT_S = {"03_finetune.ipynb": 1800, "04_precision_and_quantization_lab.ipynb": 1800,
             "05_workshop_exercises.ipynb": 1800,  # exercise 12's experiment waits for an answer: no training
             "06_more_than_one_gpu.ipynb": 1800}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_jupyterlab(lab_server, page, name, artifacts):
    run_notebook(page, lab_server, name, timeout_s=TIMEOUT_S.get(name, 300))
    assert page.locator(".jp-Notebook .jp-CodeCell").count() > 0
    for css in WIDGET_ROOTS:  # a picture of each lorakit widget as the notebook left it
        for index, widget in enumerate(page.locator(f".{css}").all()):
            screenshot(page, widget, artifacts / f"{Path(name).stem}-{css}-{index}.png")


def test_number_formats_notebook_widgets_work_in_notebook7(lab_server, page, artifacts):
    name = "01_number_formats.ipynb"
    if name not in NOTEBOOKS:
        pytest.fail(f"notebooks/{name} is missing")
    run_notebook(page, lab_server, name, timeout_s=300, app="notebook")
    assert "/notebooks/" in page.url and page.locator("#jp-NotebookPanel, .jp-NotebookPanel").count() > 0
    explorer = page.locator(".lorakit-float-explorer")
    expect(explorer).to_have_count(1)
    picture = ".lorakit-float-explorer img.lorakit-picture"
    before = img_src(page, picture)
    expect(explorer.locator(".lorakit-class")).to_contain_text("inf")  # the notebook opens it on fp16 65520
    expect(explorer.locator(".lorakit-hex")).to_contain_text("0x7C00")
    explorer.locator(".lorakit-bit").nth(1).click()  # clear the top exponent bit: 0x7C00 -> 0x3C00 = 1.0
    expect(explorer.locator(".lorakit-hex")).to_contain_text("0x3C00")
    expect(explorer.locator(".lorakit-value")).to_contain_text(re.compile(r"stored\s+1\s"))
    wait_src_settled(page, picture, before, timeout_s=30)  # the picture follows the click
    screenshot(page, explorer, artifacts / "notebook7_float_explorer.png")
