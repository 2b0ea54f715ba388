"""Memory pictures for the sizing calculator: stacked bars by component against GPU capacities."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

GIB = 1024**3
# one colour per memory component, in stacking order (bottom first)
COMPONENT_COLOURS = {
    "weights": "#4c72b0",
    "adapter": "#dd8452",
    "gradients": "#c44e52",
    "optimizer": "#8172b3",
    "activations": "#55a868",
    "logits": "#937860",
    "overhead": "#bab0ac",
}


def make_figure(width_in: float = 7.5, height_in: float = 3.6, dpi: int = 80) -> tuple[Figure, Axes]:
    """A pyplot-free figure with one Axes (safe to build outside a notebook and in threads)."""
    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    # fixed margins: tight/constrained layout measures every label and doubles the cost of a redraw
    fig.subplots_adjust(left=0.2, right=0.97, top=0.96, bottom=0.14)
    return fig, fig.add_subplot(1, 1, 1)


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def draw_memory_bars(
    ax: Axes,
    bars: Mapping[str, Mapping[str, float]],
    gpu_lines: Sequence[tuple[str, float]] = (),
    highlight: str | None = None,
) -> None:
    """Horizontal stacked bars, one per scenario (label -> component -> bytes), GPU capacities as lines (bytes)."""
    labels = list(bars)
    rows = range(len(labels))
    comps = list(dict.fromkeys(c for b in bars.values() for c in b))
    left = [0.0] * len(labels)
    for comp in comps:  # one call per component (stacked across every row) keeps the redraw cheap
        widths = [bars[label].get(comp, 0.0) / GIB for label in labels]
        ax.barh(rows, widths, left=left, color=COMPONENT_COLOURS.get(comp, "#999999"), label=comp,
                edgecolor="white", linewidth=0.5)
        left = [a + w for a, w in zip(left, widths, strict=True)]
    for row, end in zip(rows, left, strict=True):
        ax.text(end, row, f" {end:.1f} GiB", va="center", fontsize=8)
    top = max((sum(b.values()) for b in bars.values()), default=0.0) / GIB
    groups = _group_capacities(gpu_lines, limit=max(top * 1.25, 16.5))
    right = max([top * 1.18] + [cap * 1.02 for cap in groups])
    for i, (cap, names) in enumerate(groups.items()):
        strong = highlight in names
        colour = "black" if strong else "grey"
        ax.axvline(cap, color=colour, linestyle="-" if strong else ":", linewidth=1.4 if strong else 0.8)
        short = dict.fromkeys(_short_name(n) for n in names)
        # labels in the empty band above the bars, on three staggered levels so neighbours do not collide
        near_edge = cap > 0.75 * right  # write those labels leftwards, inside the axes
        ax.text(cap, -0.95 - 0.3 * (i % 3), f" {'/'.join(short)} {cap:.0f}G ", fontsize=7, va="center",
                ha="right" if near_edge else "left", color=colour, fontweight="bold" if strong else "normal")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -1.75)  # inverted: first scenario on top, a band above it for GPU labels
    ax.set_xlabel("peak training memory (GiB)")
    ax.set_xlim(0, right)
    ax.legend(loc="lower right", fontsize=7, ncol=4, frameon=False)


def _short_name(name: str) -> str:
    """'T4 16 GB' -> 'T4', 'RTX 4090 24 GB' -> '4090', 'my GPU (12 GB)' -> 'my GPU'."""
    if name.startswith("my "):
        return "my GPU"
    words = name.split()
    return words[1] if words[0] == "RTX" else words[0]


def _group_capacities(gpu_lines: Sequence[tuple[str, float]], limit: float) -> dict[float, list[str]]:
    """GPUs within 2 GiB of each other share one line (L4, A10G and RTX 4090 are all ~24 GB), GiB -> names."""
    groups: dict[float, list[str]] = {}
    for name, cap in sorted(gpu_lines, key=lambda item: item[1]):
        gib = cap / GIB
        if gib > limit:
            continue
        near = next((g for g in groups if abs(g - gib) < 2.0), None)
        groups.setdefault(near if near is not None else gib, []).append(name)
    return groups


def memory_chart_png(
    bars: Mapping[str, Mapping[str, float]], gpu_lines: Sequence[tuple[str, float]] = (),
    highlight: str | None = None,
) -> bytes:
    """PNG of ``draw_memory_bars`` on a fresh figure."""
    fig, ax = make_figure()
    draw_memory_bars(ax, bars, gpu_lines, highlight)
    return figure_png(fig)
