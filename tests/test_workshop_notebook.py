"""Notebook 05 and its guide agree: the exercises are all there, and docs/workshop.md has every answer."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "05_workshop_exercises.ipynb"
GUIDE = REPO / "docs" / "workshop.md"


def _cells():
    return nbformat.read(NOTEBOOK, as_version=4).cells


def _answer_key() -> list[str]:
    """The answer key as the executed notebook printed it (nbval checks that it is still what lorakit computes)."""
    cell = next(c for c in _cells() if c.cell_type == "code" and "quiz.answer_key()" in c.source)
    assert cell.source.startswith("# NBVAL_CHECK_OUTPUT"), "the answer key must be compared when nbval runs"
    text = "".join(out.get("text", "") for out in cell.outputs if out.output_type == "stream")
    return [line for line in text.splitlines() if line.strip()]


def test_each_exercise_has_a_markdown_heading_and_a_widget_cell():
    cells = _cells()
    headings = [int(n) for c in cells if c.cell_type == "markdown" for n in re.findall(r"^### Exercise (\d+)", c.source, re.M)]
    created = [int(n) for c in cells if c.cell_type == "code" for n in re.findall(r"quiz\.exercise\(\s*(\d+),", c.source)]
    assert len(headings) >= 10 and headings == list(range(1, len(headings) + 1))
    assert created == headings


def test_the_guide_lists_every_answer_of_the_executed_notebook():
    key = _answer_key()
    assert [line.split(":")[0] for line in key] == [f"Exercise {n}" for n in range(1, len(key) + 1)]
    guide = GUIDE.read_text(encoding="utf-8")
    missing = [line for line in key if line not in guide]
    assert not missing, f"docs/workshop.md lacks these answers of the executed notebook 05: {missing}"
