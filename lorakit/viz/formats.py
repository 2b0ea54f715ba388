"""Pictures of number formats: a number line around a value, the codebook levels, a range/precision chart.

Every function draws on a matplotlib Axes it is given, from plain numbers; nothing here knows about widgets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

STORED_COLOUR = "#c0392b"
INPUT_COLOUR = "#2c3e50"
GRID_COLOUR = "#7f8c8d"
MINUS = "\u2212"


@dataclass(frozen=True)
class RangeRow:
    """One format in the range chart: smallest positive, smallest normal, largest value, decimal digits."""

    name: str
    min_subnormal: float
    min_normal: float
    max: float
    decimal_digits: float
    relative: bool = False  # block formats: range in units of the block absmax


def make_panel(
    css_width: int, css_height: int, margins: tuple[float, float, float, float], pixel_ratio: int = 2
) -> tuple[Figure, Axes]:
    """A pyplot-free figure with one Axes, for display at ``css_width`` x ``css_height`` CSS pixels.

    The PNG has ``pixel_ratio`` device pixels per CSS pixel (2: sharp on high-DPI screens, and downscaled
    cleanly elsewhere), and a point is 100/72 CSS pixels, so 8-pt text shows 11 px tall. ``margins`` are
    (left, right, bottom, top) as fractions: fixed, because constrained layout measures every tick label and
    doubles the cost of a redraw.
    """
    fig = Figure(figsize=(css_width / 100, css_height / 100), dpi=100 * pixel_ratio)
    ax = fig.add_subplot()
    left, right, bottom, top = margins
    fig.subplots_adjust(left=left, right=right, bottom=bottom, top=top)
    return fig, ax


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


def draw_number_line(
    ax: Axes, values: Sequence[float], stored: float, input_value: float | None = None, title: str = ""
) -> None:
    """Representable ``values`` as ticks on a line, the stored one highlighted, the exact input as a marker."""
    ax.clear()
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_title(title, fontsize=9)
    if not values:
        ax.text(0.5, 0.5, f"stored value {stored!r}: not on the number line", ha="center", transform=ax.transAxes)
        ax.set_xticks([])
        return
    positions, labels, axis_label = tick_labels(values, stored)
    origin = 0.0 if axis_label else stored  # where the stored value sits on this axis
    ax.axhline(0, color=GRID_COLOUR, lw=1)
    ax.vlines(positions, -0.4, 0.4, color=GRID_COLOUR, lw=1.5)
    ax.vlines([origin], -0.7, 0.7, color=STORED_COLOUR, lw=3, label="stored")
    if input_value is not None and math.isfinite(input_value) and input_value != stored:
        where = origin + (input_value - stored)
        ax.plot([where], [0], marker="v", ms=8, color=INPUT_COLOUR, ls="", label="input")
    low, high = min(positions), max(positions)
    pad = (high - low) * 0.06 or abs(origin) * 0.1 or 1.0
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(-1, 1.6)
    ax.set_xticks(positions, labels, rotation=30, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_xlabel(axis_label, fontsize=8)
    ax.legend(loc="upper right", fontsize=8, frameon=False, ncols=2)


def draw_codebook(
    ax: Axes, levels: Sequence[float], chosen: int, value: float | None, absmax: float, title: str = ""
) -> None:
    """The levels (already times ``absmax``) on a line, the one ``value`` lands on highlighted."""
    ax.clear()
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.axhline(0, color=GRID_COLOUR, lw=1)
    ax.vlines(levels, -0.4, 0.4, color=GRID_COLOUR, lw=1.5)
    ax.vlines([levels[chosen]], -0.7, 0.7, color=STORED_COLOUR, lw=3, label=f"level {chosen}: {levels[chosen]:.6g}")
    midpoints = sorted((a + b) / 2 for a, b in zip(sorted(levels)[:-1], sorted(levels)[1:], strict=True))
    ax.vlines(midpoints, -0.2, 0.2, color=GRID_COLOUR, lw=0.8, linestyles=":")
    if value is not None and math.isfinite(value):
        ax.plot([value], [0], marker="v", ms=8, color=INPUT_COLOUR, ls="", label=f"input {value:.6g}")
    ax.set_xlim(-absmax * 1.08, absmax * 1.08)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_ylim(-1, 1.6)
    ax.legend(loc="upper right", fontsize=8, frameon=False, ncols=2)
    ax.set_title(title or f"{len(levels)} levels × absmax {absmax:g} (dotted: rounding boundaries)", fontsize=9)


def draw_range_chart(
    ax: Axes, rows: Sequence[RangeRow], highlight: str | None = None, value: float | None = None
) -> None:
    """One bar per format on a log axis: thin from the smallest subnormal, thick from the smallest normal to max.

    The decimal digits of each format are a column right of the axes; |value| is a dashed line, labelled
    above the bars.
    """
    ax.clear()
    names = [row.name + (" (×absmax)" if row.relative else "") for row in rows]
    beside = ax.get_yaxis_transform()  # x in axes fractions, y in rows
    for y, row in enumerate(rows):
        colour = STORED_COLOUR if row.name == highlight else "#3498db"
        ax.hlines(y, row.min_subnormal, row.min_normal, color=colour, lw=3, alpha=0.5)
        ax.hlines(y, row.min_normal, row.max, color=colour, lw=6)
        ax.text(1.02, y, f"{row.decimal_digits:.1f}", va="center", fontsize=7.5, transform=beside)
    ax.text(1.02, -1.1, "digits", va="center", fontsize=7.5, transform=beside)
    if value is not None and math.isfinite(value) and value != 0:
        ax.axvline(abs(value), color=INPUT_COLOUR, lw=1, ls="--")
        ax.text(abs(value), -1.1, f"|value| = {abs(value):.3g}", ha="center", va="center", fontsize=7.5)
    ax.set_xscale("log", base=10)
    ax.set_xlim(1e-47, 1e45)
    ax.set_ylim(len(rows) - 0.5, -1.6)  # rows top down, with a line above them for the labels
    ax.xaxis.set_major_locator(FixedLocator([10.0**k for k in range(-45, 46, 15)]))
    ax.xaxis.set_minor_locator(NullLocator())  # 92 decades of minor ticks cost more than the rest of the drawing
    ax.set_yticks(range(len(rows)), names, fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel("magnitude (log scale): thin = subnormal, thick = normal range", fontsize=8)
    ax.set_title("Range and precision of every format", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
