"""The calculator and the trainer panel as a person sees them in JupyterLab, at 900 px (a laptop with the file
browser open), at 1,400 px, and (the calculator) at 700 px without the file browser, as narrow as Colab: no
control runs into another or cuts its label, no table, picture, label, dropdown option or placeholder is cut
(a table scrolls in its own box with its first column fixed), the calculator's controls and chart fit on one
screen, numbers line up, r can be set by hand, no broken image, and a run started with the mouse after its
cell has finished leaves its final picture in the saved notebook. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import re

import pytest
from labdriver import (
    LAYOUTS,
    cut_problems,
    layout_problems,
    run_notebook,
    saved_errors,
    saved_notebook,
    screenshot,
    set_width,
    show_file_browser,
    write_notebook,
)
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK_SCROLLER = ".jp-NotebookPanel .jp-WindowedPanel-outer"


@pytest.mark.parametrize(("width", "browser_open"), LAYOUTS)
def test_lora_calculator_fits_and_lines_up(lab_server, page, artifacts, width, browser_open):
    name = f"scratch_calc_{width}.ipynb"
    write_notebook(lab_server.root / name,
                   ["import lorakit\nlorakit.LoraCalculator('Llama-3.1-8B', r=16, gpu='L4 24 GB')"])
    set_width(page, width)
    run_notebook(page, lab_server, name, timeout_s=120)
    show_file_browser(page, browser_open)
    root = page.locator(".lorakit-lora-calculator")
    expect(root.locator(".lorakit-chart svg")).to_be_visible()
    assert layout_problems(root) == []
    assert cut_problems(root) == []  # issue 24: the breakdown ran 583 px past the edge at 900 px

    # The controls and the chart are on screen together: together no taller than the notebook's view.
    root.locator(".lorakit-controls").scroll_into_view_if_needed()
    controls = root.locator(".lorakit-controls").bounding_box()
    chart = root.locator(".lorakit-chart svg").bounding_box()
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

    # The second view of the breakdown: all a step holds; nothing cut there either.
    root.locator(".lorakit-breakdown button", has_text="held in all during a step").click()
    expect(root.locator(".lorakit-comparison")).to_contain_text("GiB held in all during a step")
    assert cut_problems(root) == []
    root.locator(".lorakit-breakdown button", has_text="held at the peak").click()
    expect(root.locator(".lorakit-comparison")).to_contain_text("GiB held at the peak (")

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


def test_r_can_be_set_by_hand_and_by_typing(lab_server, page, artifacts):
    """Issue 24: r's track was 104 px for r = 1..1,024, and a drag from 192 landed on 1. Now each power of two is
    a stop a hand can hit on a laptop screen (900 px, file browser open), and the box takes any value."""
    name = "scratch_calc_r.ipynb"
    write_notebook(lab_server.root / name, ["import lorakit\nlorakit.LoraCalculator('Llama-3.1-8B', r=192)"])
    set_width(page, 900)
    run_notebook(page, lab_server, name, timeout_s=120)
    show_file_browser(page, True)
    root = page.locator(".lorakit-lora-calculator")
    trainable = root.locator(".lorakit-trainable")
    expect(trainable).to_contain_text("r=192")
    track = root.locator(".lorakit-r .noUi-base")
    stops = 11  # 1, 2, 4, ..., 1024 on Llama-3.1-8B (the narrowest adapted layer is 1,024 wide)
    handle = root.locator(".lorakit-r .noUi-handle").bounding_box()
    assert track.bounding_box()["width"] / (stops - 1) >= handle["width"], track.bounding_box()  # stops apart
    for r in (8, 16):  # r = 2**k is stop k
        box = track.bounding_box()
        y = box["y"] + box["height"] / 2
        page.mouse.click(box["x"] + box["width"] * (r.bit_length() - 1) / (stops - 1), y)
        expect(trainable).to_contain_text(f"r={r},")  # the kernel's answer, not the slider's readout
        page.wait_for_timeout(500)  # the handle slides to its stop (noUiSlider ignores a tap while it moves)
    handle, track = root.locator(".lorakit-r .noUi-handle").bounding_box(), track.bounding_box()
    page.mouse.move(handle["x"] + handle["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(handle["x"] + handle["width"] / 2 + track["width"] / (stops - 1), y, steps=5)
    page.mouse.up()
    expect(trainable).to_contain_text("r=32,")  # dragged one stop to the right of 16
    box = root.locator(".lorakit-r-text input")
    box.fill("12")
    box.press("Enter")
    expect(trainable).to_contain_text("r=12,")
    expect(root.locator(".lorakit-r-text input")).to_have_value("12")
    screenshot(page, root, artifacts / "lora_calculator_r.png")


PANEL_CELL = """import lorakit
panel = lorakit.TrainerPanel(lorakit.TrainConfig(output_dir={run!r}, max_steps=30))
panel"""


@pytest.mark.parametrize(("width", "browser_open"), LAYOUTS)
def test_trainer_panel_fields_fit_and_no_broken_image(lab_server, page, artifacts, tmp_path, width, browser_open):
    name = f"scratch_panel_{width}.ipynb"
    write_notebook(lab_server.root / name, [PANEL_CELL.format(run=str(tmp_path / "run"))])
    set_width(page, width)
    run_notebook(page, lab_server, name, timeout_s=120)
    show_file_browser(page, browser_open)
    root = page.locator(".lorakit-trainer-panel")
    expect(root.locator(".lorakit-status")).to_contain_text("Waiting for a run to start")
    # issue 24: "fp16 (autocast + loss scaling)" needed 169 px of 101; the dropdowns show short names now
    assert layout_problems(root) == [] and cut_problems(root) == []
    assert root.locator(".lorakit-field-max_steps .widget-label").inner_text() == "max_steps"
    # before the first run there is no picture, so no <img> may show (an empty one is a broken-image icon)
    expect(root.locator("img.lorakit-plot")).to_be_hidden()
    screenshot(page, root, artifacts / f"trainer_panel_fields_{width}.png")


def test_a_number_typed_wrong_is_refused_on_screen(lab_server, page, tmp_path):
    """Issue 24: "abc" typed into learning_rate silently went back to 0.001 (the browser's number box) and Start
    ran. Typed and left, it stays as typed and the form says it is refused; Start says so too."""
    name = "scratch_panel_abc.ipynb"
    write_notebook(lab_server.root / name, [PANEL_CELL.format(run=str(tmp_path / "run"))])
    set_width(page, 1400)
    run_notebook(page, lab_server, name, timeout_s=120)
    root = page.locator(".lorakit-trainer-panel")
    box = root.locator(".lorakit-field-learning_rate input")
    box.fill("abc")
    box.press("Enter")
    expect(root.locator(".lorakit-form-problems")).to_contain_text("learning_rate='abc' is not a number")
    expect(box).to_have_value("abc")
    root.locator(".lorakit-start").click()
    expect(root.locator(".lorakit-message")).to_contain_text("Cannot start: learning_rate='abc' is not a number")
    expect(root.locator(".lorakit-status")).to_contain_text("Waiting for a run to start")
    box.fill("2e-4")
    box.press("Enter")
    expect(root.locator(".lorakit-form-problems")).to_have_text("")


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
    assert cut_problems(root, options=False) == []  # the live picture inside the panel
    screenshot(page, root, artifacts / "trainer_panel_after_resume.png")

    assert saved_errors(page, lab_server, name) == []
    saved = saved_notebook(lab_server, name)
    pngs = [out["data"]["image/png"] for out in saved["cells"][0]["outputs"] if "image/png" in out.get("data", {})]
    assert len(pngs) == 1 and len(pngs[0]) > 1000  # the final picture, in the file
