"""The browser harness itself: a stock widget round trip through the kernel, and errors are caught."""

from __future__ import annotations

import pytest
from labdriver import (
    error_texts,
    open_notebook,
    run_all_cells,
    saved_errors,
    wait_all_cells_done,
    write_notebook,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BUTTON_CELLS = [
    "import ipywidgets as w\n"
    "label = w.Label('not clicked')\n"
    "button = w.Button(description='Click me')\n"
    "button.add_class('probe-button')\n"
    "label.add_class('probe-label')\n"
    "def _on_click(_):\n"
    "    label.value = f'clicked in the kernel, pid {__import__(\"os\").getpid()}'\n"
    "button.on_click(_on_click)\n"
    "w.VBox([button, label])",
]


def test_button_click_changes_label_through_the_kernel(lab_server, page):
    write_notebook(lab_server.root / "scratch_button.ipynb", BUTTON_CELLS)
    open_notebook(page, lab_server, "scratch_button.ipynb")
    run_all_cells(page)
    prompts = wait_all_cells_done(page, lab_server, "scratch_button.ipynb", timeout_s=60)
    assert prompts == ["[1]:"]

    label = page.locator(".probe-label")
    assert label.inner_text() == "not clicked"
    page.locator(".probe-button").click()
    # The new text is made by the kernel (it holds the pid), so this proves the round trip.
    page.locator(".probe-label", has_text="clicked in the kernel, pid").wait_for(timeout=15_000)


@pytest.mark.parametrize(
    ("xmode", "expected"),
    [
        ("Context", "(?s)a cell raised:.*ZeroDivisionError"),  # IPython's usual traceback: caught on sight
        ("Minimal", "the run stopped early"),  # a one-line traceback: caught by the cells left unrun
    ],
)
def test_an_error_output_fails_the_run(lab_server, page, xmode, expected):
    cells = [
        f"%xmode {xmode}\nimport warnings\nwarnings.warn('only a warning')",
        "1 / 0",
        "print('never runs')",
    ]
    name = f"scratch_error_{xmode}.ipynb"
    write_notebook(lab_server.root / name, cells)
    open_notebook(page, lab_server, name)
    run_all_cells(page)
    with pytest.raises(AssertionError, match=expected):
        wait_all_cells_done(page, lab_server, name, timeout_s=60)
    # The warning went to stderr and does not count as an error.
    assert len(error_texts(page)) == (1 if xmode == "Context" else 0)
    assert saved_errors(page, lab_server, name) == [
        "cell 1 raised ZeroDivisionError: division by zero",
        "cell 2 did not run",
    ]


def test_notebook7_serves_the_same_page(lab_server, page):
    write_notebook(lab_server.root / "scratch_nb7.ipynb", BUTTON_CELLS)
    open_notebook(page, lab_server, "scratch_nb7.ipynb", app="notebook")
    run_all_cells(page)
    wait_all_cells_done(page, lab_server, "scratch_nb7.ipynb", timeout_s=60)
    page.locator(".probe-button").click()
    page.locator(".probe-label", has_text="clicked in the kernel").wait_for(timeout=15_000)
