"""lorakit's widgets in a real browser: each check goes through the kernel and back.

Each test writes a small scratch notebook into the server's root (faster than the teaching notebooks and
independent of them), runs it, drives the widget by its CSS classes, and saves a screenshot of it to
test-artifacts/.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from labdriver import run_notebook, screenshot, wait_src_change, write_notebook
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _fp16_after_flip(value: float, bit: int) -> tuple[str, float]:
    """Oracle: the hex and value numpy gives when ``bit`` (0 = least significant) of an fp16 is flipped."""
    code = int(np.array(value, dtype=np.float16).view(np.uint16)) ^ (1 << bit)
    return f"0x{code:04X}", float(np.array(code, dtype=np.uint16).view(np.float16))


def test_float_explorer_bits_and_typed_values_round_trip(lab_server, page, artifacts):
    cells = ["from lorakit import FloatExplorer\nFloatExplorer(fmt='bf16', value='1')"]
    write_notebook(lab_server.root / "scratch_float.ipynb", cells)
    run_notebook(page, lab_server, "scratch_float.ipynb", timeout_s=120)
    root = page.locator(".lorakit-float-explorer")
    hex_label, value_label = root.locator(".lorakit-hex"), root.locator(".lorakit-value")
    expect(hex_label).to_contain_text("0x3F80")  # 1.0 in bf16
    picture = root.locator(".lorakit-picture svg")
    expect(picture).to_have_attribute("aria-label", re.compile(r"^bf16: neighbours"))
    assert root.locator(".lorakit-bit").count() == 16

    root.locator("select").first.select_option("fp16")  # the kernel rebuilds the bits for fp16
    expect(hex_label).to_contain_text("0x3C00")
    expect(root.locator(".lorakit-bit")).to_have_count(16)

    want_hex, want_value = _fp16_after_flip(1.0, bit=0)
    root.locator(".lorakit-bit").last.click()  # the least significant mantissa bit
    expect(hex_label).to_contain_text(want_hex)
    expect(value_label).to_contain_text(repr(want_value))  # 1.0009765625, exact
    expect(picture).to_have_attribute("aria-label", re.compile(r"^fp16: neighbours"))  # the picture follows
    expect(picture.locator("text").filter(has_text="1.00098")).to_have_count(1)  # its tick at the stored value
    screenshot(page, root, artifacts / "float_explorer.png")

    value_box = root.get_by_role("textbox", name="value", exact=True)
    with np.errstate(over="ignore"):
        assert np.isinf(np.float16(65520))  # the oracle agrees: 65520 rounds up past 65504 to inf
    value_box.fill("65520")
    value_box.press("Enter")
    expect(root.locator(".lorakit-class")).to_contain_text("inf")
    expect(hex_label).to_contain_text("0x7C00")

    value_box.fill("abc")  # bad input: a visible message, and the widget keeps working
    value_box.press("Enter")
    expect(root.locator(".lorakit-error")).to_contain_text("not a number")
    value_box.fill("2")
    value_box.press("Enter")
    expect(hex_label).to_contain_text("0x4000")
    expect(root.locator(".lorakit-error")).to_have_text("")


# SmolLM2-135M (published config): hidden 576, MLP 1536, 30 layers, 9 query heads and 3 KV heads of 64.
# LoRA on every linear layer but the head adds r * (d_in + d_out) per matrix.
SMOLLM2_135M_LINEARS = [(576, 576), (576, 192), (576, 192), (576, 576), (576, 1536), (576, 1536), (1536, 576)]
SMOLLM2_LORA_PER_RANK = 30 * sum(d_in + d_out for d_in, d_out in SMOLLM2_135M_LINEARS)


def _trainable(text: str) -> int:
    return int(re.search(r"trainable ([\d,]+)", text).group(1).replace(",", ""))


def test_lora_calculator_r_changes_trainable_count(lab_server, page, artifacts):
    cells = ["from lorakit import LoraCalculator\nLoraCalculator(model='SmolLM2-135M', r=8)"]
    write_notebook(lab_server.root / "scratch_lora.ipynb", cells)
    run_notebook(page, lab_server, "scratch_lora.ipynb", timeout_s=120)
    root = page.locator(".lorakit-lora-calculator")
    trainable = root.locator(".lorakit-trainable")
    expect(trainable).to_contain_text(f"trainable {8 * SMOLLM2_LORA_PER_RANK:,}")

    track = root.locator(".lorakit-r .noUi-base")
    box = track.bounding_box()
    page.mouse.click(box["x"] + 0.75 * box["width"], box["y"] + box["height"] / 2)  # stops 1, 2, ..., 128, 192
    # Wait for the kernel's answer, not the slider (it moves before the kernel has the value).
    expect(trainable).not_to_contain_text(f"trainable {8 * SMOLLM2_LORA_PER_RANK:,}", timeout=30_000)
    r = int(root.locator(".lorakit-r-text input").input_value())
    assert r in (32, 64, 128), r  # a power of two: the slider's stops
    expect(trainable).to_contain_text(f"trainable {r * SMOLLM2_LORA_PER_RANK:,}")
    expect(trainable).to_contain_text(f"r={r}")
    expect(root.locator(".lorakit-error")).to_have_text("")
    screenshot(page, root, artifacts / "lora_calculator.png")


def test_trainer_panel_start_plot_stop_saves_adapter(lab_server, page, tiny_model_dir, tmp_path, artifacts):
    run_dir = tmp_path / "run"
    # Far more steps than the test waits for: Stop, not the step budget, must end this run.
    cells = [
        "from lorakit import TrainConfig, TrainerPanel\n"
        f"config = TrainConfig(model={str(tiny_model_dir)!r}, max_steps=100_000, logging_steps=1, batch_size=2,\n"
        f"                     max_seq_length=64, output_dir={str(run_dir)!r})\n"
        "panel = TrainerPanel(config)\n"
        "panel.dashboard.max_overhead = 0.25  # frames often: this test waits for two (the budget is tested elsewhere)\n"
        "panel",
    ]
    write_notebook(lab_server.root / "scratch_trainer.ipynb", cells)
    run_notebook(page, lab_server, "scratch_trainer.ipynb", timeout_s=120)
    root = page.locator(".lorakit-trainer-panel")
    status, plot = root.locator(".lorakit-status"), ".lorakit-trainer-panel img.lorakit-plot"
    assert page.locator(".lorakit-stop").is_disabled()

    page.locator(".lorakit-start").click()
    status.filter(has_text=re.compile(r"Running.*step \d+")).wait_for(timeout=90_000)
    # The live plot appears and is redrawn as the run goes on (the cell above raised the dashboard's drawing budget
    # from 1.5 % to 25 % of the run's time, so frames come seconds apart instead of half a minute).
    first = wait_src_change(page, plot, "", timeout_s=120)
    wait_src_change(page, plot, first, timeout_s=120)
    assert page.locator(".lorakit-start").is_disabled()
    screenshot(page, root, artifacts / "trainer_panel.png")

    page.locator(".lorakit-stop").click()
    status.filter(has_text=re.compile("adapter saved", re.IGNORECASE)).wait_for(timeout=90_000)
    text = status.inner_text()
    assert re.search(r"\bstopped\b", text, re.IGNORECASE), text
    done = re.search(r"(\d+)\s*(?:/|of)\s*100000 steps", text)  # "12/100000 steps" or "12 of 100000 steps"
    assert done and 0 < int(done.group(1)) < 100_000, text
    saved = re.search(r"Adapter saved to (\S+)", text)
    assert saved, text
    adapter_dir = Path(saved.group(1).rstrip("."))
    assert adapter_dir.is_relative_to(run_dir) and (adapter_dir / "adapter_config.json").is_file()
    expect(page.locator(".lorakit-start")).to_be_enabled(timeout=30_000)  # ready for another run
    expect(page.locator(".lorakit-stop")).to_be_disabled()
