"""Notebook 05 and its guide agree: the exercises are all there, and docs/workshop.md has every answer."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

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


@pytest.fixture(scope="module")
def live():
    """Notebook 05's exercise cells run here, in-process and without a kernel; exercise 12's training is left out.

    The cells' own code computes the answers, so this is the key the notebook would print today.
    """
    sources = [c.source for c in _cells() if c.cell_type == "code"]
    setup = next(s for s in sources if "quiz = Quiz(" in s)
    exercises = [s for s in sources if re.search(r"quiz\.exercise\(\s*\d+,", s) and "lorakit.train(" not in s]
    namespace: dict = {}
    for source in (setup, *exercises):
        exec(compile(source, str(NOTEBOOK), "exec"), namespace)  # the repository's own notebook, not input
    return namespace


def _why(guide: str, number: int) -> str:
    """The guide's "why" paragraph of one exercise (a numbered list item)."""
    match = re.search(rf"^{number}\. \*\*.*?(?=^\d+\. \*\*|^## |\Z)", guide, re.M | re.S)
    assert match, f"docs/workshop.md has no explanation of exercise {number}"
    return " ".join(match.group(0).split())


def test_the_guide_and_the_saved_key_agree_with_lorakit_now(live):
    key = live["quiz"].answer_key().splitlines()
    assert len(key) >= 10
    guide = GUIDE.read_text(encoding="utf-8")
    assert [line for line in key if line not in guide] == [], "docs/workshop.md is behind lorakit"
    assert key == _answer_key()[: len(key)], "notebook 05's saved answer key is stale: re-execute the notebook"


def test_the_guides_planner_numbers_are_lorakits(live):
    """Exercises 7-9 explain the planner's numbers; they change when the planner does."""
    gib = live["GIB"]
    guide = GUIDE.read_text(encoding="utf-8")
    plan7 = live["plan7"]
    expected = {
        7: [plan7.total_bytes, plan7.weights_bytes, plan7.logits_bytes, plan7.overhead_bytes, live["t4"].memory_bytes],
        8: [p.total_bytes for p in live["plans8"].values()],
        9: [live["saved9"] * gib, live["without9"].activations_bytes, live["with9"].activations_bytes,
            live["without9"].total_bytes, live["with9"].total_bytes],
    }
    for number, sizes in expected.items():
        why = _why(guide, number)
        missing = [f"{size / gib:.1f} GiB" for size in sizes if f"{size / gib:.1f} GiB" not in why]
        assert not missing, f"the guide's exercise {number} does not give the planner's {missing}"
