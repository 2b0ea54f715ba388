"""The token-length histogram of a dataset with the max_seq_length cutoff drawn on it.

Draws on an Axes it is given, from a ``lorakit.training.lengths.LengthReport`` (read through its attributes
only, so this module imports no torch). Figures use the object-oriented API (no pyplot), like the training plots.
"""

from __future__ import annotations

from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lorakit.viz.png import figure_to_png

__all__ = ["draw_token_lengths", "length_figure", "length_png"]

CUT = "#b00020"  # the cutoff and what it cuts
KEEP = "#4c72b0"


def length_figure(width: float = 6.4, height: float = 2.6, dpi: int = 100) -> Figure:
    """A one-Axes figure for the histogram."""
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    fig.add_subplot(1, 1, 1)
    return fig


def draw_token_lengths(ax: Axes, report: Any, bins: int = 30) -> None:
    """Histogram of the examples' token lengths; bars past the cutoff in red, the cutoff and the 95/99/100 %
    whole-example cutoffs as vertical lines."""
    counts, edges = report.histogram(bins)
    cutoff = report.max_seq_length
    for count, left, right in zip(counts, edges[:-1], edges[1:], strict=True):
        ax.bar(left, count, width=right - left, align="edge", color=CUT if left >= cutoff else KEEP, linewidth=0)
    ax.axvline(cutoff, color=CUT, linewidth=1.5, label=f"max_seq_length {cutoff}: {report.truncated} cut "
                                                       f"({report.truncated_share:.1%})")
    for (share, n), style in zip(report.whole_at.items(), (":", "--", "-."), strict=True):
        ax.axvline(n, color="0.35", linestyle=style, linewidth=1, label=f"{share:.0%} whole at {n}")
    ax.set_xlim(0, 1.04 * max(cutoff, int(edges[-1])))
    ax.set_xlabel("tokens per example (chat template and end-of-sequence included)")
    ax.set_ylabel("examples")
    ax.set_title(f"{report.examples} examples, {report.tokens} tokens", fontsize=10)
    ax.legend(fontsize=8, loc="upper right", frameon=False)


def length_png(report: Any, width: float = 6.4, height: float = 2.6) -> bytes:
    """The histogram as PNG bytes."""
    fig = length_figure(width, height)
    draw_token_lengths(fig.axes[0], report)
    return figure_to_png(fig)
