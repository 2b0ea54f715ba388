"""The calculator and the trainer panel as a person sees them in JupyterLab, at 900 px (a laptop with the file
browser open) and at 1,400 px: no control runs into another or cuts its label, the calculator's controls and
chart fit on one screen, numbers line up, no broken image, and a run started with the mouse after its cell
has finished leaves its final picture in the saved notebook. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import re

import pytest
from labdriver import (
    layout_problems,
    run_notebook,
    saved_errors,
    saved_notebook,
    screenshot,
    set_width,
    wait_src_change,
    write_notebook,
)
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTHS = [900, 1400]
NOTEBOOK_SCROLLER = ".jp-NotebookPanel .jp-WindowedPanel-outer"


@pytest.mark.parametrize("width", WIDTHS)
def test_lora_calculator_fits_and_lines_up(lab_server, page, artifacts, width):
    name = f"scratch_calc_{width}.ipynb"
    write_notebook(lab_server.root / name,
                   ["import lorakit\nlorakit.LoraCalculator('Llama-3.1-8B', r=16, gpu='L4 24 GB')"])
    set_width(page, width)
    run_notebook(page, lab_server, name, timeout_s=120)
    root = page.locator(".lorakit-lora-calculator")
    wait_src_change(page, ".lorakit-lora-calculator img.lorakit-chart", "", timeout_s=60)
    assert layout_problems(root) == []

    # The controls and the chart are on screen together: together no taller than the notebook's view.
    controls = root.locator(".lorakit-controls").bounding_box()
    chart = root.locator("img.lorakit-chart").bounding_box()
    view = page.locator(NOTEBOOK_SCROLLER).first.bounding_box()
    assert chart["y"] + chart["height"] - controls["y"] <= view["height"], (controls, chart, view)
    if width >= 1400:  # room for both columns: the results sit beside the controls
        assert chart["x"] >= controls["x"] + controls["width"] - 1

    # Numbers are right-aligned in both tables; names stay left.
    for table in (".lorakit-comparison", ".lorakit-modules"):
        aligns = root.locator(f"{table} tr:nth-child(2) td").evaluate_all(
            "cells => cells.map(c => getComputedStyle(c).textAlign)")
        assert aligns[0] == "left" and set(aligns[1:]) == {"right"}, (table, aligns)
    screenshot(page, root, artifacts / f"lora_calculator_{width}.png")

    # After bad input the results are withdrawn, not left standing as if they answered it.
    batch = root.locator(".widget-inline-hbox", has_text="batch").locator("input")
    batch.fill("0")
    batch.press("Enter")
    expect(root.locator(".lorakit-error")).to_contain_text("batch_size")
    expect(root.locator(".lorakit-trainable")).to_contain_text("No results for these settings")
    expect(root.locator(".lorakit-advice")).to_have_text("")
    batch.fill("1")
    batch.press("Enter")
    expect(root.locator(".lorakit-trainable")).to_contain_text("trainable 41,943,040")
    expect(root.locator(".lorakit-error")).to_have_text("")


PANEL_CELL = """import lorakit
panel = lorakit.TrainerPanel(lorakit.TrainConfig(output_dir={run!r}, max_steps=30))
panel"""


@pytest.mark.parametrize("width", WIDTHS)
def test_trainer_panel_fields_fit_and_no_broken_image(lab_server, page, artifacts, tmp_path, width):
    name = f"scratch_panel_{width}.ipynb"
    write_notebook(lab_server.root / name, [PANEL_CELL.format(run=str(tmp_path / "run"))])
    set_width(page, width)
    run_notebook(page, lab_server, name, timeout_s=120)
    root = page.locator(".lorakit-trainer-panel")
    expect(root.locator(".lorakit-status")).to_contain_text("Waiting for a run to start")
    assert layout_problems(root) == []
    assert root.locator(".lorakit-field-max_steps .widget-label").inner_text() == "max_steps"
    # before the first run there is no picture, so no <img> may show (an empty one is a broken-image icon)
    expect(root.locator("img.lorakit-plot")).to_be_hidden()
    screenshot(page, root, artifacts / f"trainer_panel_fields_{width}.png")


FAKE_TRAIN = """import json, time
from pathlib import Path

import lorakit
import lorakit.training
from lorakit.training.events import TrainSummary


def fake_train(config, *, sinks=(), stop=None, resume_from=None):
    # 30 steps that honour Stop and resume from checkpoint/state.json, as the loop does. A fresh run holds at
    # step 3 until Stop is pressed, so the test never races the machine's speed; a resumed run goes to the end.
    out = Path(config.output_dir)
    (out / "checkpoint").mkdir(parents=True, exist_ok=True)
    state = out / "checkpoint" / "state.json"
    step = json.loads(state.read_text())["step"] if resume_from else 0
    for sink in sinks:
        sink.on_train_start({{"total_steps": 30, "device": "cpu", "precision": "fp32", "quantization": "none",
                             "choices": {{"gradient_checkpointing": {{"value": False, "reason": "auto: fits"}}}}}})
    while step < 30 and not stop.stop_requested:
        time.sleep(0.1)
        if step >= 3 and not resume_from:
            continue  # held until Stop
        step += 1
        for sink in sinks:
            sink.on_log({{"step": step, "loss": 1 / step, "learning_rate": 1e-3, "rss_bytes": 2**30}})
    state.write_text(json.dumps({{"step": step, "resumed_from": resume_from}}))
    (out / "adapter").mkdir(exist_ok=True)
    (out / "adapter" / "adapter_config.json").write_text("{{}}")
    status = "completed" if step == 30 else "stopped"
    summary = TrainSummary(status, "", step, 30, 1 / step, str(out), str(out / "adapter"), str(out / "m"))
    for sink in sinks:
        sink.on_train_end(summary)
    return summary


lorakit.training.train = fake_train
panel = lorakit.TrainerPanel(lorakit.TrainConfig(output_dir={run!r}, max_steps=30))
panel"""


def test_mouse_runs_stop_resume_and_leave_their_picture(lab_server, page, artifacts, tmp_path):
    """Start, Stop and Resume pressed with the mouse after the cell has finished: the stopped run is resumed in
    its own folder, and each run's final picture is written under the panel and saved with the notebook."""
    run = tmp_path / "run"
    name = "scratch_panel_mouse.ipynb"
    write_notebook(lab_server.root / name, [FAKE_TRAIN.format(run=str(run))])
    set_width(page, 1400)
    run_notebook(page, lab_server, name, timeout_s=120)
    root = page.locator(".lorakit-trainer-panel")
    status = root.locator(".lorakit-status")
    static_png = page.locator('.jp-OutputArea-output[data-mime-type="image/png"] img')

    root.locator(".lorakit-start").click()
    expect(root.locator(".lorakit-setup")).to_contain_text("gradient checkpointing: off (auto: fits)")
    status.filter(has_text=re.compile(r"Running: step \d+")).wait_for(timeout=30_000)
    root.locator(".lorakit-stop").click()
    status.filter(has_text=re.compile(r"^Stopped after \d+/30 steps")).wait_for(timeout=30_000)
    expect(root.locator(".lorakit-message")).to_have_text("")  # "Stop requested" is gone with the run
    expect(static_png).to_have_count(1, timeout=15_000)  # the stopped run's picture, without showing it again
    stopped_at = json.loads((run / "checkpoint" / "state.json").read_text())["step"]
    assert 1 <= stopped_at <= 3  # a fresh run holds at step 3 until Stop
    expect(root.locator(".lorakit-resume-from input")).to_have_value(str(run))

    root.locator(".lorakit-resume").click()
    status.filter(has_text="Completed after 30/30 steps").wait_for(timeout=60_000)
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state == {"step": 30, "resumed_from": str(run)}
    expect(static_png).to_have_count(1)  # one output, updated in place
    screenshot(page, root, artifacts / "trainer_panel_after_resume.png")

    assert saved_errors(page, lab_server, name) == []
    saved = saved_notebook(lab_server, name)
    pngs = [out["data"]["image/png"] for out in saved["cells"][0]["outputs"] if "image/png" in out.get("data", {})]
    assert len(pngs) == 1 and len(pngs[0]) > 1000  # the final picture, in the file
