"""lorakit's widgets in a real browser: each check goes through the kernel and back.

Each test writes a small scratch notebook into the server's root (faster than the teaching notebooks and
independent of them), runs it, drives the widget by its CSS classes, and saves a screenshot of it to
test-artifacts/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from labdriver import run_notebook, write_notebook
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _img_src(page, selector: str) -> str:
    return page.locator(selector).get_attribute("src") or ""


def _wait_src_change(page, selector: str, old: str, timeout_s: float) -> str:
    """Wait until an image widget shows a new picture (ipywidgets gives every new value a new blob URL)."""
    page.wait_for_function(
        "([sel, old]) => { const img = document.querySelector(sel); return img && img.src && img.src !== old; }",
        arg=[selector, old],
        timeout=timeout_s * 1000,
    )
    return _img_src(page, selector)


def test_trainer_panel_start_plot_stop_saves_adapter(lab_server, page, tiny_model_dir, tmp_path, artifacts):
    run_dir = tmp_path / "run"
    # Far more steps than the test waits for: Stop, not the step budget, must end this run.
    cells = [
        "from lorakit import TrainConfig, TrainerPanel\n"
        f"config = TrainConfig(model={str(tiny_model_dir)!r}, max_steps=100_000, logging_steps=1, batch_size=2,\n"
        f"                     max_seq_length=64, output_dir={str(run_dir)!r})\n"
        "panel = TrainerPanel(config)\n"
        "panel",
    ]
    write_notebook(lab_server.root / "scratch_trainer.ipynb", cells)
    run_notebook(page, lab_server, "scratch_trainer.ipynb", timeout_s=120)
    root = page.locator(".lorakit-trainer-panel")
    status, plot = root.locator(".lorakit-status"), ".lorakit-trainer-panel img.lorakit-plot"
    assert page.locator(".lorakit-stop").is_disabled()

    page.locator(".lorakit-start").click()
    status.filter(has_text=re.compile(r"Running.*step \d+")).wait_for(timeout=90_000)
    first = _wait_src_change(page, plot, "", timeout_s=30)  # the live plot appears ...
    _wait_src_change(page, plot, first, timeout_s=45)  # ... and is redrawn as the run goes on
    assert page.locator(".lorakit-start").is_disabled()
    root.screenshot(path=str(artifacts / "trainer_panel.png"))

    page.locator(".lorakit-stop").click()
    status.filter(has_text=re.compile("adapter saved", re.IGNORECASE)).wait_for(timeout=90_000)
    text = status.inner_text()
    steps_done = int(re.search(r"Stopped after (\d+)/100000 steps", text).group(1))
    assert 0 < steps_done < 100_000, text
    adapter_dir = Path(re.search(r"Adapter saved to (\S+)", text).group(1).rstrip("."))
    assert adapter_dir.is_relative_to(run_dir) and (adapter_dir / "adapter_config.json").is_file()
    expect(page.locator(".lorakit-start")).to_be_enabled(timeout=30_000)  # ready for another run
    expect(page.locator(".lorakit-stop")).to_be_disabled()
