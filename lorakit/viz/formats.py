"""The range/precision chart of every format drawn with matplotlib, for a static figure in a notebook.

It draws on a matplotlib Axes it is given, from plain numbers; nothing here knows about widgets. The
FloatExplorer's own pictures (number line, codebook levels, this chart) are SVG: ``lorakit.viz.format_svg``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.ticker import FixedLocator, NullLocator

from lorakit.viz.format_svg import INPUT_COLOUR, STORED_COLOUR, RangeRow

__all__ = ["RangeRow", "draw_range_chart"]


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
