"""Pieces of the FloatExplorer that are not controls: the details, the compare table and the pictures."""

from __future__ import annotations

import html
import math

import numpy as np

from lorakit.formats import FORMATS, Explanation, codebooks, get_format, values_around
from lorakit.formats.parse import shorten
from lorakit.viz.format_svg import RangeRow, codebook_svg, number_line_svg, range_chart_svg
from lorakit.widgets.tables import FIRST, scroll_table

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

    Numbers never wrap; a table wider than its column scrolls sideways in its own box, the format names fixed.
    The block formats' absmax is said under the table, since it applies there whatever format is selected above.
    """
    pad = "padding:0 4px;line-height:1.3"  # notebook CSS pads table cells generously
    number = f'<td style="{pad};white-space:nowrap">'
    head = "".join(f'<th style="{pad}{";" + FIRST if i == 0 else ""}">{h}</th>'
                   for i, h in enumerate(("format", "bits", "stored", "abs error", "rel error", "class")))
    body = []
    for name, e in rows.items():
        mine = name == current
        style = ' style="font-weight:bold;background:#fdf2e9"' if mine else ""
        first = f"{FIRST};background:#fdf2e9" if mine else FIRST
        label = name + (" (compute)" if FORMATS[name].compute_only else "")
        if isinstance(e, ValueError):
            cells = f'<td colspan="4" style="{pad}">{html.escape(str(e).split(";")[0])}</td>'
        else:
            errors = (number_text(e.abs_error, 3), number_text(e.rel_error, 3))
            values = (number_text(e.stored, 10), *errors, e.value_class)
            cells = "".join(f"{number}{v}</td>" for v in values)
        body.append(f'<tr{style}><td style="{pad};white-space:nowrap;{first}">{label}</td>'
                    f"{number}{FORMATS[name].bits}</td>{cells}</tr>")
    blocks = [name for name in rows if not FORMATS[name].is_float]
    caption = f"{', '.join(blocks)}: block absmax {absmax:g}" if blocks else ""
    table = scroll_table(f"<tr>{head}</tr>{''.join(body)}", "lorakit-compare-table",
                         "font-family:monospace;font-size:12px")
    return (f"{table}<div class='lorakit-compare-caption' style='font-family:monospace;font-size:12px;"
            f"padding:2px 4px'>{html.escape(caption)}</div>")


def details_html(e: Explanation) -> str:
    """The explanation in lines: stored value, class, hex and bits, formula, input and errors, neighbours, note.

    Each line is a ``div`` with its own class (``lorakit-value``, ``lorakit-hex``, ...), all in one HTML widget,
    so a click sends one update for all of them.
    """
    exact = html.escape(e.stored_exact)  # up to ~150 digits (FP32 subnormals): only those may wrap
    exact = nowrap(exact) if len(exact) <= 40 else f'<span style="overflow-wrap:anywhere">{exact}</span>'
    rounding = " &nbsp; ".join(
        nowrap(f"<b>{name}</b> {text}")
        for name, text in (("input", html.escape(shorten(e.input_text))),
                           ("abs error", number_text(e.abs_error, 6)), ("rel error", number_text(e.rel_error, 6)))
    )  # fmt: skip
    neighbours = " &nbsp; ".join(
        nowrap(f"<b>{name}</b> {number_text(x, digits)}")
        for name, x, digits in (("next down", e.next_down, 10), ("next up", e.next_up, 10), ("ULP", e.ulp, 6))
    )
    lines = [
        ("value", f"<b>stored</b> {exact} <small>(exact decimal)</small>"),
        ("class", f"<b>class</b> {e.value_class}"),
        ("hex", f"<b>hex</b> {e.hex} &nbsp; <b>bits</b> {' '.join(e.field_bits.values())}"),
        ("formula", f"<b>formula</b> {html.escape(e.formula)}"),
        ("rounding", rounding),
        ("neighbours", neighbours),
        ("note", f"<i>{html.escape(e.note)}</i>" if e.note else ""),
    ]
    return "".join(f'<div class="lorakit-{name}" style="line-height:1.6">{text}</div>' for name, text in lines)


def range_rows() -> list[RangeRow]:
    """One RangeRow per catalogued format (block formats in units of their absmax)."""
    return [
        RangeRow(f.name, f.min_subnormal, f.min_normal, f.max, f.decimal_digits, relative=not f.is_float)
        for f in FORMATS.values()
    ]


class FormatPicture:
    """The two pictures of an explanation as SVG strings: the number line (or codebook levels), the range chart."""

    def __init__(self) -> None:
        self._rows = range_rows()
        self._range: tuple[tuple[str, str], str] | None = None  # (what it shows, its SVG): built again only on change

    def render(self, e: Explanation) -> tuple[str, str]:
        """Both pictures for an explanation: (number line SVG, range chart SVG)."""
        fmt = get_format(e.format)
        if fmt.is_float:
            title = f"{fmt.name}: neighbours of the stored value (ULP here: {number_text(e.ulp, 4)})"
            line = number_line_svg(values_around(e, 3), e.stored, e.input_value, title)
        else:
            levels = codebooks.level_values(np.arange(2**fmt.bits), fmt) * np.float32(e.absmax)
            line = codebook_svg([float(v) for v in levels], e.code, e.input_value, e.absmax)
        # The range chart shows the format and |value| to 3 digits (its label); a bit click seldom changes either.
        key = (fmt.name, f"{abs(e.stored):.3g}")
        if self._range is None or self._range[0] != key:
            self._range = key, range_chart_svg(self._rows, highlight=fmt.name, value=e.stored)
        return line, self._range[1]
