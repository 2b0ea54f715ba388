"""The widgets work in Notebook 7 as well as in JupyterLab.

The teaching notebooks themselves run once per suite, under nbval (and notebook 02 in the Binder environment,
tests/test_binder.py); here a scratch notebook builds the FloatExplorer as notebook 01 opens it, so that the
browser checks only what a browser can show: the widget renders in Notebook 7 and a click reaches the kernel.
"""

from __future__ import annotations

import re

import pytest
from labdriver import run_notebook, screenshot, write_notebook
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FLOAT_EXPLORER = "import lorakit\nlorakit.FloatExplorer(value='65520', fmt='fp16')"


def test_float_explorer_works_in_notebook7(lab_server, page, artifacts):
    name = "scratch_notebook7.ipynb"
    write_notebook(lab_server.root / name, [FLOAT_EXPLORER])
    run_notebook(page, lab_server, name, timeout_s=300, app="notebook")
    assert "/notebooks/" in page.url and page.locator("#jp-NotebookPanel, .jp-NotebookPanel").count() > 0
    explorer = page.locator(".lorakit-float-explorer")
    expect(explorer).to_have_count(1)
    picture = explorer.locator(".lorakit-picture")
    expect(explorer.locator(".lorakit-class")).to_contain_text("inf")  # fp16 65520 rounds to inf
    expect(explorer.locator(".lorakit-hex")).to_contain_text("0x7C00")
    explorer.locator(".lorakit-bit").nth(1).click()  # clear the top exponent bit: 0x7C00 -> 0x3C00 = 1.0
    expect(explorer.locator(".lorakit-hex")).to_contain_text("0x3C00")
    expect(explorer.locator(".lorakit-value")).to_contain_text(re.compile(r"stored\s+1\s"))
    # the picture follows the click: the number line around 1 (at inf there is none to draw)
    expect(picture.locator("svg")).to_have_attribute("aria-label", re.compile(r"^fp16: neighbours"))
    expect(picture.locator("text").filter(has_text=re.compile(r"^1$"))).to_have_count(1)
    screenshot(page, explorer, artifacts / "notebook7_float_explorer.png")
