"""A saved notebook still shows every picture of the FloatExplorer and the LoraCalculator without a kernel.

Their pictures are SVG strings in HTML widgets: a notebook saved with its widget state (nbclient, as
scripts/execute_notebooks.py runs it; JupyterLab with "save widget state") keeps them in the state that
JupyterLab, Notebook 7 and nbviewer render when the notebook is opened again. Notebook 02 also keeps the chart
as a plain SVG output, for viewers that render no widget at all (GitHub).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _saved_pictures(name: str) -> dict[str, list[str]]:
    """CSS class -> the values of the HTML widgets of that class in a notebook's saved widget state."""
    nb = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
    state = nb["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    out: dict[str, list[str]] = {}
    for model in state.values():
        if model["model_name"] == "HTMLModel":
            for css in model["state"].get("_dom_classes", []):
                out.setdefault(css, []).append(model["state"].get("value", ""))
    return out


@pytest.mark.parametrize(("name", "pictures"), [
    ("01_number_formats.ipynb", ("lorakit-picture", "lorakit-range-picture")),
    ("02_lora_and_qlora_sizing.ipynb", ("lorakit-chart",)),
])
def test_saved_widget_state_holds_the_pictures(name, pictures):
    saved = _saved_pictures(name)
    for css in pictures:
        assert saved.get(css), f"{name}: no {css} in the saved widget state"
        assert all(value.startswith("<svg") and value.endswith("</svg>") for value in saved[css]), css


def test_notebook_02_keeps_the_chart_as_a_plain_svg_output():
    nb = json.loads((NOTEBOOKS / "02_lora_and_qlora_sizing.ipynb").read_text(encoding="utf-8"))
    svgs = ["".join(out["data"]["image/svg+xml"]) for cell in nb["cells"] for out in cell.get("outputs", [])
            if "image/svg+xml" in out.get("data", {})]
    assert len(svgs) == 1 and "peak training memory" in svgs[0]
    assert svgs[0] in _saved_pictures("02_lora_and_qlora_sizing.ipynb")["lorakit-chart"]  # the widget's own chart
