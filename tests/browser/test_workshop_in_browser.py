"""Notebook 05's exercises in a real browser: click answers, press Check, read the feedback and the score.

The scratch notebook holds notebook 05's own set-up and first three exercise cells (copied from the file, so
the test follows the notebook), not its training exercise, which would only make the test slower.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from labdriver import run_notebook, screenshot, write_notebook
from playwright.sync_api import expect

import lorakit

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "05_workshop_exercises.ipynb"


def _first_cells(last_exercise: int) -> list[str]:
    """Code cells of notebook 05 from the quiz set-up to the cell that creates exercise ``last_exercise``."""
    cells = [c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"]
    start = next(i for i, s in enumerate(cells) if "Quiz(" in s)
    end = next(i for i, s in enumerate(cells) if f"quiz.exercise(\n    {last_exercise}," in s)
    return cells[start : end + 1]


def test_two_exercises_by_clicking(lab_server, page, artifacts):
    write_notebook(lab_server.root / "scratch_workshop.ipynb", _first_cells(3))
    run_notebook(page, lab_server, "scratch_workshop.ipynb", timeout_s=180)
    score = page.locator(".lorakit-score").first
    expect(score).to_contain_text("0 of 3 solved")

    # Exercise 3, a wrong answer: "both keep it exactly" is wrong in BF16 (8 mantissa bits short of 2^-8).
    third = page.locator(".lorakit-exercise-3")
    third.get_by_text("BF16 keeps it exactly").click()
    third.locator(".lorakit-check-button").click()
    expect(third.locator(".lorakit-feedback")).to_contain_text("✘ Not this one")
    third.locator(".lorakit-hint-button").click()
    expect(third.locator(".lorakit-hint")).to_contain_text("ties to even")

    # Exercise 1, a right answer: click the bits of 0.1 in BF16, after a bad typed pattern first.
    first = page.locator(".lorakit-exercise-1")
    box = first.locator(".lorakit-answer input")
    box.fill("0101")
    first.locator(".lorakit-check-button").click()
    expect(first.locator(".lorakit-feedback")).to_contain_text("That is 4 bits; BF16 has 16")
    box.fill("")
    first.locator(".lorakit-check-button").click()
    expect(first.locator(".lorakit-feedback")).to_contain_text("Type the 16 bits")
    bits = lorakit.explain("0.1", "bf16").bits  # the oracle for what to click
    buttons = first.locator(".lorakit-answer-bit")
    expect(buttons).to_have_count(len(bits))
    for position, bit in enumerate(bits):
        if bit == "1":
            buttons.nth(position).click()
    expect(box).to_have_value(bits)  # the kernel joined the clicked bits into the text box
    first.locator(".lorakit-check-button").click()
    expect(first.locator(".lorakit-feedback")).to_contain_text("✔ Right: 0 01111011 1001101")
    expect(score).to_contain_text("1 of 3 solved")
    screenshot(page, first, artifacts / "workshop_exercise_1_right.png")
    screenshot(page, third, artifacts / "workshop_exercise_3_wrong.png")
