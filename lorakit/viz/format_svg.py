"""The FloatExplorer's pictures as SVG: the number line around a value, a codebook's levels, the range chart.

Each function takes plain numbers and returns one ``<svg>`` string (see ``lorakit.viz.svg``): a few dozen
elements, about a millisecond to build, so a picture can follow every click. The layout is computed from
estimated text widths so that every label lies inside the picture.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from lorakit.viz.svg import Scale, Svg, power_of_ten, text_width

STORED_COLOUR = "#c0392b"
INPUT_COLOUR = "#2c3e50"
GRID_COLOUR = "#7f8c8d"
BAR_COLOUR = "#3498db"
MINUS = "\u2212"
WIDTH = 460  # CSS px: fits the narrowest notebook column met (JupyterLab at 900 px with the file browser open)
COS30, SIN30 = math.cos(math.radians(30)), 0.5


@dataclass(frozen=True)
class RangeRow:
    """One format in the range chart: smallest positive, smallest normal, largest value, decimal digits."""

    name: str
    min_subnormal: float
    min_normal: float
    max: float
    decimal_digits: float
    relative: bool = False  # block formats: range in units of the block absmax


def tick_labels(values: Sequence[float], stored: float) -> tuple[list[float], list[str], str]:
    """(positions, labels, axis label) that tell every tick apart.

    The values themselves with 6 significant digits when that shows them all different; otherwise (fp32
    near 0.1: every neighbour reads 0.1) each tick's offset from the stored value, with as few digits as
    tell the offsets apart, on an axis that says so.
    """
    plain = [f"{v:.6g}" for v in values]
    if len(set(plain)) == len(plain):
        return list(values), plain, ""
    offsets = [float(Fraction(v) - Fraction(stored)) for v in values]  # exact differences, then rounded once
    for digits in range(3, 18):
        labels = ["0" if o == 0 else f"{o:+.{digits}g}".replace("-", MINUS) for o in offsets]
        if len(set(labels)) == len(labels):
            break
    return offsets, labels, f"offset from the stored value {stored!r}"


def _fitted_size(text: str, size: float, room: float) -> float:
    """The font size (at most ``size``) at which ``text`` fits ``room`` px."""
    return min(size, size * room / max(text_width(text, size), 1e-9))


def _header(svg: Svg, title: str, legend: list[tuple[str, str, str]]) -> None:
    """Title centred on top; legend entries (mark, words, colour) right-aligned below it."""
    svg.text(svg.width / 2, 14, title, size=_fitted_size(title, 12, svg.width - 8), anchor="middle")
    x = svg.width - 6
    for mark, words, colour in reversed(legend):
        svg.text(x, 31, words, size=10, anchor="end")
        x -= text_width(words, 10) + 3
        svg.text(x, 31, mark, size=10, anchor="end", colour=colour)
        x -= text_width(mark, 10) + 10


def _marker(svg: Svg, x: float, axis_y: float) -> None:
    """The exact input: a triangle pointing down at the axis."""
    svg.polygon([(x - 5, axis_y - 11), (x + 5, axis_y - 11), (x, axis_y - 1)], INPUT_COLOUR)


def number_line_svg(values: Sequence[float], stored: float, input_value: float | None = None, title: str = "",
                    width: float = WIDTH) -> str:
    """Representable ``values`` as ticks on a line, the stored one highlighted, the exact input as a marker."""
    axis_y, label_y = 62, 80
    if not values:
        svg = Svg(width, 70, title)
        _header(svg, title, [])
        svg.text(width / 2, 50, f"stored value {stored!r}: not on the number line", size=11, anchor="middle")
        return svg.render()
    positions, labels, axis_label = tick_labels(values, stored)
    origin = 0.0 if axis_label else stored  # where the stored value sits on this axis
    widths = [text_width(label, 10) for label in labels]
    # rotated labels hang down and to the left of their tick: room for the first one, and below the longest
    left = max(14.0, widths[0] * COS30 + 6)
    right = width - 14
    low, high = min(positions), max(positions)
    pad = (high - low) * 0.04 or abs(origin) * 0.1 or 1.0
    scale = Scale(low - pad, high + pad, left, right)
    height = label_y + max(widths) * SIN30 + (22 if axis_label else 8)
    shows_input = input_value is not None and math.isfinite(input_value) and input_value != stored
    legend = [("▮", "stored", STORED_COLOUR)] + ([("▼", "input", INPUT_COLOUR)] if shows_input else [])
    svg = Svg(width, height, title)
    _header(svg, title, legend)
    svg.line(left - 6, axis_y, right + 6, axis_y, GRID_COLOUR)
    for x, label in zip(positions, labels, strict=True):
        svg.line(scale(x), axis_y - 8, scale(x), axis_y + 8, GRID_COLOUR, 1.5)
        svg.text(scale(x) + 3, label_y, label, size=10, anchor="end", rotate=-30)
    svg.line(scale(origin), axis_y - 15, scale(origin), axis_y + 15, STORED_COLOUR, 3)
    if shows_input:
        where = origin + (input_value - stored)
        if low - pad <= where <= high + pad:
            _marker(svg, scale(where), axis_y)
    if axis_label:
        svg.text(width / 2, height - 6, axis_label, size=_fitted_size(axis_label, 10, width - 8), anchor="middle")
    return svg.render()


def codebook_svg(levels: Sequence[float], chosen: int, value: float | None, absmax: float, title: str = "",
                 width: float = WIDTH) -> str:
    """The levels (already times ``absmax``) on a line, the one ``value`` lands on highlighted."""
    axis_y, label_y, height = 62, 88, 100
    title = title or f"{len(levels)} levels × absmax {absmax:g} (dotted: rounding boundaries)"
    ticks = [-absmax, -absmax / 2, 0.0, absmax / 2, absmax]
    tick_text = [f"{t:g}".replace("-", MINUS) for t in ticks]
    edge = max(text_width(tick_text[0], 10), text_width(tick_text[-1], 10)) / 2 + 6
    scale = Scale(-absmax * 1.08, absmax * 1.08, edge, width - edge)
    shows_input = value is not None and math.isfinite(value)
    legend = [("▮", f"level {chosen}: {levels[chosen]:.6g}", STORED_COLOUR)]
    if shows_input:
        legend.append(("▼", f"input {value:.6g}", INPUT_COLOUR))
    svg = Svg(width, height, title)
    _header(svg, title, legend)
    svg.line(scale(-absmax * 1.08), axis_y, scale(absmax * 1.08), axis_y, GRID_COLOUR)
    ordered = sorted(levels)
    for a, b in zip(ordered[:-1], ordered[1:], strict=True):
        mid = scale((a + b) / 2)
        svg.line(mid, axis_y - 4, mid, axis_y + 4, GRID_COLOUR, 0.8, dash="1.5,1.5")
    for level in levels:
        svg.line(scale(level), axis_y - 8, scale(level), axis_y + 8, GRID_COLOUR, 1.5)
    svg.line(scale(levels[chosen]), axis_y - 15, scale(levels[chosen]), axis_y + 15, STORED_COLOUR, 3)
    if shows_input and abs(value) <= absmax * 1.08:
        _marker(svg, scale(value), axis_y)
    for t, text in zip(ticks, tick_text, strict=True):
        svg.line(scale(t), axis_y + 15, scale(t), axis_y + 18, GRID_COLOUR)
        svg.text(scale(t), label_y, text, size=10, anchor="middle")
    return svg.render()


def range_chart_svg(rows: Sequence[RangeRow], highlight: str | None = None, value: float | None = None,
                    width: float = WIDTH) -> str:
    """One bar per format on a log axis: thin from the smallest subnormal, thick from the smallest normal to max.

    The decimal digits of each format are a column on the right; |value| is a dashed line, labelled above.
    """
    names = [row.name + (" (×absmax)" if row.relative else "") for row in rows]
    top, step = 44, 17
    bottom = top + step * len(rows)
    left = max(text_width(n, 10.5, bold=True) for n in names) + 10
    right = width - 36
    scale = Scale(1e-47, 1e45, left, right, log=True)
    title = "Range and precision of every format"
    svg = Svg(width, bottom + 42, title)
    svg.text(width / 2, 14, title, size=12, anchor="middle")
    svg.text(right + 6, top - 6, "digits", size=10)
    for k in range(-45, 46, 15):
        x = scale(10.0**k)
        svg.line(x, top - 2, x, bottom, "#dddddd")
        svg.text(x, bottom + 14, power_of_ten(k), size=10, anchor="middle")
    for i, (row, name) in enumerate(zip(rows, names, strict=True)):
        y = top + step * i + step / 2
        mine = row.name == highlight
        colour = STORED_COLOUR if mine else BAR_COLOUR
        svg.text(left - 6, y + 4, name, size=10.5, anchor="end", bold=mine)
        lo, mid, hi = (min(max(v, 1e-47), 1e45) for v in (row.min_subnormal, row.min_normal, row.max))
        if mid > lo:
            svg.rect(scale(lo), y - 2, scale(mid) - scale(lo), 4, colour, opacity=0.5,
                     title=f"{row.name}: subnormals from {row.min_subnormal:.3g}")
        svg.rect(scale(mid), y - 4.5, max(scale(hi) - scale(mid), 1.5), 9, colour,
                 title=f"{row.name}: normal range {row.min_normal:.3g} to {row.max:.3g}")
        svg.text(right + 6, y + 4, f"{row.decimal_digits:.1f}", size=10, bold=mine)
    if value is not None and math.isfinite(value) and 1e-47 < abs(value) < 1e45:
        x = scale(abs(value))
        svg.line(x, top - 4, x, bottom, INPUT_COLOUR, dash="4,3")
        label = f"|value| = {abs(value):.3g}"
        half = text_width(label, 10) / 2
        svg.text(min(max(x, half + 4), right - half), top - 8, label, size=10, anchor="middle", halo=True)
    axis = "magnitude (log scale): thin = subnormal, thick = normal range"
    svg.text(width / 2, bottom + 32, axis, size=_fitted_size(axis, 10, width - 8), anchor="middle")
    return svg.render()
