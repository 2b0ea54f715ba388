"""Pieces of the FloatExplorer that are not controls: the compare table and the pictures.

``Throttle`` lives in ``lorakit.widgets.runtime``; it is imported here for the explorer's existing imports.
"""

from __future__ import annotations

import html
import math

import numpy as np

from lorakit.formats import FORMATS, Explanation, codebooks, get_format, values_around
from lorakit.viz.formats import (
    RangeRow,
    draw_codebook,
    draw_number_line,
    draw_range_chart,
    figure_png,
    make_panel,
)
from lorakit.widgets.runtime import Throttle  # noqa: F401 -- re-exported for float_explorer

FIELD_COLOURS = {
    "sign": "#f4b6b6", "exponent": "#a9cce3", "mantissa": "#b7e1a1", "index": "#f9d29d", "integer": "#d7bde2",
}  # fmt: skip


def number_text(x: float | None, digits: int = 8) -> str:
    """A float for a table cell: up to ``digits`` significant digits; '—' for None."""
    if x is None:
        return "—"
    return f"{x:.{digits}g}" if math.isfinite(x) else repr(x)


def nowrap(text: str) -> str:
    """HTML that the browser never breaks (a number such as 7.45e-09 otherwise breaks after its '-')."""
    return f'<span style="white-space:nowrap">{text}</span>'


def compare_table_html(rows: dict[str, Explanation | ValueError], current: str, absmax: float = 1.0) -> str:
    """HTML table: every format's stored value, error and class for the same input; the current row in bold.

    The class column says 'saturated' (or 'clamped', block formats) where a value past the format's largest
    was stored as that largest value: the stored value is normal, but the input was not kept.

    Numbers never wrap; a table wider than its column scrolls sideways instead of being cut. The block
    formats' absmax is said under the table, since it applies there whatever format is selected above.
    """
    pad = "padding:0 4px;line-height:1.3"  # notebook CSS pads table cells generously
    cell, number = f'<td style="{pad}">', f'<td style="{pad};white-space:nowrap">'
    head = "".join(f'<th style="{pad}">{h}</th>' for h in ("format", "bits", "stored", "abs error", "rel error",
                                                             "class"))  # fmt: skip
    body = []
    for name, e in rows.items():
        style = ' style="font-weight:bold;background:#fdf2e9"' if name == current else ""
        label = name + (" (compute)" if FORMATS[name].compute_only else "")
        if isinstance(e, ValueError):
            cells = f'<td colspan="4" style="{pad}">{html.escape(str(e).split(";")[0])}</td>'
        else:
            errors = (number_text(e.abs_error, 3), number_text(e.rel_error, 3))
            values = (number_text(e.stored, 10), *errors, e.outcome)
            cells = "".join(f"{number}{v}</td>" for v in values)
        body.append(f"<tr{style}>{cell}{label}</td>{number}{FORMATS[name].bits}</td>{cells}</tr>")
    blocks = [name for name in rows if not FORMATS[name].is_float]
    caption = f"{', '.join(blocks)}: block absmax {absmax:g}" if blocks else ""
    return (
        '<div style="overflow-x:auto;max-width:100%">'
        '<table class="lorakit-compare-table" style="border-collapse:collapse;font-family:monospace;font-size:12px">'
        f'<caption class="lorakit-compare-caption" style="caption-side:bottom;text-align:left;padding:2px 4px">'
        f"{html.escape(caption)}</caption><tr>{head}</tr>{''.join(body)}</table></div>"
    )


def range_rows() -> list[RangeRow]:
    """One RangeRow per catalogued format (block formats in units of their absmax)."""
    return [
        RangeRow(f.name, f.min_subnormal, f.min_normal, f.max, f.decimal_digits, relative=not f.is_float)
        for f in FORMATS.values()
    ]


# CSS pixels of each picture: both fit the narrowest notebook column met so far (JupyterLab at 900 px with
# the file browser open leaves 468 px), so they are shown at exactly the size they were drawn for, side by
# side on a wide screen and one above the other on a narrow one.
LINE_SIZE, RANGE_SIZE = (460, 190), (460, 330)


class FormatPicture:
    """Two matplotlib figures rendered to PNG bytes: the number line (or codebook levels), and the range chart."""

    def __init__(self, pixel_ratio: int = 2) -> None:
        self.line_fig, self.line_ax = make_panel(*LINE_SIZE, (0.11, 0.97, 0.36, 0.84), pixel_ratio)
        self.range_fig, self.range_ax = make_panel(*RANGE_SIZE, (0.26, 0.9, 0.13, 0.93), pixel_ratio)
        self._rows = range_rows()
        self._range: tuple[tuple[str, str], bytes] | None = None  # (what it shows, its PNG): drawn again only on change

    def render(self, e: Explanation) -> tuple[bytes, bytes]:
        """Redraw both pictures for an explanation: (number line PNG, range chart PNG)."""
        fmt = get_format(e.format)
        if fmt.is_float:
            title = f"{fmt.name}: neighbours of the stored value (ULP here: {number_text(e.ulp, 4)})"
            draw_number_line(self.line_ax, values_around(e, 3), e.stored, e.input_value, title)
        else:
            levels = codebooks.level_values(np.arange(2**fmt.bits), fmt) * np.float32(e.absmax)
            draw_codebook(self.line_ax, [float(v) for v in levels], e.code, e.input_value, e.absmax)
        # The range chart shows the format and |value| to 3 digits (its legend); a bit click seldom changes either.
        key = (fmt.name, f"{abs(e.stored):.3g}")
        if self._range is None or self._range[0] != key:
            draw_range_chart(self.range_ax, self._rows, highlight=fmt.name, value=e.stored)
            self._range = key, figure_png(self.range_fig)
        return figure_png(self.line_fig), self._range[1]
