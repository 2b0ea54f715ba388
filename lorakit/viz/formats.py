"""Pictures of number formats: a number line around a value, the codebook levels, a range/precision chart.

Every function draws on a matplotlib Axes it is given, from plain numbers; nothing here knows about widgets.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

STORED_COLOUR = "#c0392b"
INPUT_COLOUR = "#2c3e50"
GRID_COLOUR = "#7f8c8d"


@dataclass(frozen=True)
class RangeRow:
    """One format in the range chart: smallest positive, smallest normal, largest value, decimal digits."""

    name: str
    min_subnormal: float
    min_normal: float
    max: float
    decimal_digits: float
    relative: bool = False  # block formats: range in units of the block absmax


def make_figure(width_in: float = 8.0, height_in: float = 5.0, dpi: int = 80) -> tuple[Figure, list[Axes]]:
    """A pyplot-free figure (no global state, no backend) with a short top panel and a taller bottom one."""
    # Fixed margins: constrained layout measures every tick label and doubles the cost of a redraw.
    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    top, bottom = fig.subplots(2, 1, height_ratios=[1, 2.2])
    fig.subplots_adjust(left=0.2, right=0.97, top=0.93, bottom=0.1, hspace=0.55)
    return fig, [top, bottom]


def figure_png(fig: Figure) -> bytes:
    """The figure rendered as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _offset_label(value: float) -> str:
    return f"{value:.6g}"


def draw_number_line(
    ax: Axes, values: Sequence[float], stored: float, input_value: float | None = None, title: str = ""
) -> None:
    """Representable ``values`` as ticks on a line, the stored one highlighted, the exact input as a marker."""
    ax.clear()
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    if not values:
        ax.text(0.5, 0.5, f"stored value {stored!r}: not on the number line", ha="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_title(title, fontsize=10)
        return
    ax.axhline(0, color=GRID_COLOUR, lw=1)
    ax.vlines(values, -0.4, 0.4, color=GRID_COLOUR, lw=1.5)
    ax.vlines([stored], -0.7, 0.7, color=STORED_COLOUR, lw=3, label=f"stored {_offset_label(stored)}")
    if input_value is not None and math.isfinite(input_value) and input_value != stored:
        ax.plot([input_value], [0], marker="v", ms=10, color=INPUT_COLOUR, ls="", label=f"input {input_value:.6g}")
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or abs(stored) * 0.1 or 1.0
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(-1, 1.6)
    ax.set_xticks(list(values), [_offset_label(v) for v in values], rotation=20, fontsize=7)
    ax.legend(loc="upper right", fontsize=8, frameon=False, ncols=2)
    ax.set_title(title, fontsize=10)


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
        ax.plot([value], [0], marker="v", ms=10, color=INPUT_COLOUR, ls="", label=f"input {value:.6g}")
    ax.set_xlim(-absmax * 1.08, absmax * 1.08)
    ax.set_ylim(-1, 1.6)
    ax.legend(loc="upper right", fontsize=8, frameon=False, ncols=2)
    ax.set_title(title or f"{len(levels)} levels × absmax {absmax:g} (dotted: rounding boundaries)", fontsize=10)


def draw_range_chart(
    ax: Axes, rows: Sequence[RangeRow], highlight: str | None = None, value: float | None = None
) -> None:
    """One bar per format on a log axis: thin from the smallest subnormal, thick from the smallest normal to max."""
    ax.clear()
    names = [row.name + (" (×absmax)" if row.relative else "") for row in rows]
    for y, row in enumerate(rows):
        colour = STORED_COLOUR if row.name == highlight else "#3498db"
        ax.hlines(y, row.min_subnormal, row.min_normal, color=colour, lw=3, alpha=0.5)
        ax.hlines(y, row.min_normal, row.max, color=colour, lw=8)
        ax.text(row.max * 4, y, f"{row.decimal_digits:.1f} digits", va="center", fontsize=7)
    if value is not None and math.isfinite(value) and value != 0:
        ax.axvline(abs(value), color=INPUT_COLOUR, lw=1, ls="--", label=f"|value| = {abs(value):.3g}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xscale("log", base=10)
    ax.set_xlim(1e-47, 1e45)
    ax.xaxis.set_major_locator(FixedLocator([10.0**k for k in range(-45, 46, 15)]))
    ax.xaxis.set_minor_locator(NullLocator())  # 92 decades of minor ticks cost more than the rest of the drawing
    ax.set_yticks(range(len(rows)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("magnitude (log scale): thin = subnormal, thick = normal range")
    ax.set_title("Range and precision of every format", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
