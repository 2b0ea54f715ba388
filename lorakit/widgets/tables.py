"""HTML tables as the widgets show them: compact rows, numbers that never break, and nothing cut.

A table wider than its column scrolls sideways inside its own box instead of running past the widget's edge:
its first column (the row names) stays where it is, and a shadow at the box's edge shows that more columns
lie that way (pure CSS, so it works in every front end and in a saved notebook: scroll shadows drawn by
``background-attachment: local`` covers that scroll away with the content).
"""

from __future__ import annotations

BACKGROUND = "var(--jp-layout-color0, #fff)"
# Notebook CSS pads table cells generously and lets them wrap: keep rows compact and numbers whole.
CELL = "padding:1px 8px;line-height:1.35;white-space:nowrap"
NUM = f"{CELL};text-align:right;font-variant-numeric:tabular-nums"  # numbers line up on their last digit
TEXT = f"{CELL};text-align:left"
# the first column: fixed while the others scroll, on an opaque background, with a line at its edge
FIRST = f"position:sticky;left:0;z-index:1;background:{BACKGROUND};box-shadow:inset -1px 0 0 #ccc"
_SHADOWS = (
    f"linear-gradient(to right, {BACKGROUND} 40%, transparent) left / 24px 100% no-repeat local,"
    f"linear-gradient(to left, {BACKGROUND} 40%, transparent) right / 24px 100% no-repeat local,"
    "radial-gradient(farthest-side at 100% 50%, rgba(0,0,0,.28), transparent) right / 12px 100% no-repeat scroll,"
    "radial-gradient(farthest-side at 0 50%, rgba(0,0,0,.28), transparent) left / 12px 100% no-repeat scroll"
)


def row(cells: list[str], numeric_from: int = 1, tag: str = "td", style: str = "") -> str:
    """A table row whose first cell stays put and whose cells from ``numeric_from`` on are right-aligned numbers."""
    out = []
    for i, cell in enumerate(cells):
        css = NUM if i >= numeric_from else TEXT
        if tag == "th":  # a run's long name wraps over a few lines instead of widening its column
            css += ";white-space:normal;vertical-align:bottom;min-width:5em;max-width:11em"
        if i == 0:
            css = f"{css};{FIRST}"
        out.append(f"<{tag} style='{css}'>{cell}</{tag}>")
    return f"<tr style='{style}'>" + "".join(out) + "</tr>" if style else "<tr>" + "".join(out) + "</tr>"


def scroll_table(rows: str, css_class: str = "lorakit-table", table_style: str = "", caption: str = "") -> str:
    """``rows`` (``<tr>`` elements) in a table that scrolls sideways in its own box when its column is narrower."""
    cap = (f"<caption style='caption-side:bottom;text-align:left;padding:2px 4px;white-space:normal'>{caption}"
           "</caption>") if caption else ""
    # width 0 + min-width 100%: the box takes its column's width and never widens it (a flex item grows to fit
    # its content's widest line otherwise, and runs past the widget's edge)
    return (f"<div class='lorakit-scroll' style='overflow-x:auto;width:0;min-width:100%;background:{_SHADOWS}'>"
            f"<table class='{css_class}' style='border-collapse:collapse;{table_style}'>{cap}{rows}</table></div>")
