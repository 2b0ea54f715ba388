"""Memory pictures for the sizing calculator: stacked bars by component against GPU capacities.

One convention for memory: GiB (2**30 bytes) everywhere in the picture. A GPU line sits at the memory its
driver reports, which is less than the "GB" in its name (a T4 16 GB reports 15.0 GiB); its label says that
number. The chosen GPU is always drawn; the others only where their labels have room.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lorakit.units import GIB
from lorakit.viz.png import figure_to_png

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
LABEL_LEVELS = (-0.78, -1.22)  # y of the two rows of GPU labels, in the band above the first bar


def make_figure(width_in: float = 7.5, height_in: float = 3.4, dpi: int = 80) -> tuple[Figure, Axes]:
    """A pyplot-free figure with one Axes (safe to build outside a notebook and in threads)."""
    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    # fixed margins: tight/constrained layout measures every label and doubles the cost of a redraw
    fig.subplots_adjust(left=0.2, right=0.97, top=0.97, bottom=0.25)
    return fig, fig.add_subplot(1, 1, 1)


def draw_memory_bars(
    ax: Axes,
    bars: Mapping[str, Mapping[str, float]],
    gpu_lines: Sequence[tuple[str, float]] = (),
    highlight: str | None = None,
) -> list[str]:
    """Horizontal stacked bars, one per scenario (label -> component -> bytes), GPU capacities as lines (bytes).

    Each bar's total is in its row label, so no text sits where a line may run. ``highlight`` names the
    chosen GPU: it is always drawn (solid); the other GPUs are drawn (dotted) where their labels fit without
    overlapping. Returns the names of the GPUs drawn.
    """
    labels = list(bars)
    totals = [sum(bars[label].values()) / GIB for label in labels]
    left = [0.0] * len(labels)
    for comp in dict.fromkeys(c for b in bars.values() for c in b):  # one call per component keeps it cheap
        widths = [bars[label].get(comp, 0.0) / GIB for label in labels]
        ax.barh(range(len(labels)), widths, left=left, color=COMPONENT_COLOURS.get(comp, "#999999"), label=comp,
                edgecolor="white", linewidth=0.5)
        left = [a + w for a, w in zip(left, widths, strict=True)]
    chosen = next(((n, c) for n, c in gpu_lines if n == highlight), None)
    right = max([*totals, chosen[1] / GIB if chosen else 0.0, 1e-3]) * 1.15
    ax.set_xlim(0, right)
    ax.set_ylim(len(labels) - 0.5, LABEL_LEVELS[-1] - 0.3)  # inverted: first scenario on top, labels above
    ax.set_yticks(range(len(labels)), [f"{label}\n{total:.1f} GiB" for label, total in zip(labels, totals, strict=True)],
                  fontsize=8)
    ax.set_xlabel("peak training memory (GiB)", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.figure.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=7, fontsize=7, frameon=False,
                     handlelength=1.2, columnspacing=1.0)
    return _draw_gpu_lines(ax, gpu_lines, chosen, right)


def _draw_gpu_lines(ax: Axes, gpu_lines: Sequence[tuple[str, float]], chosen: tuple[str, float] | None,
                    right: float) -> list[str]:
    """The chosen GPU's line and label first, then every other group whose label finds room on a row.

    A line runs from the bottom up to its label, so it crosses the rows below its own: a label may not sit
    where another line crosses its row, and a line may not cross another label.
    """
    renderer = ax.figure.canvas.get_renderer()
    placed = _Placed(ax.get_window_extent(renderer))
    drawn: list[str] = []
    candidates = [([chosen[0]], chosen[1], True)] if chosen else []
    others = [(n, c) for n, c in gpu_lines if chosen is None or (n != chosen[0] and abs(c - chosen[1]) >= 2 * GIB)]
    groups = _group_capacities(others, right * GIB).items()
    if chosen:  # in a crowd, the neighbours of the chosen GPU are the useful comparison
        groups = sorted(groups, key=lambda group: abs(group[0] - chosen[1]))
    candidates += [(names, cap, False) for cap, names in groups]
    for names, cap, strong in candidates:
        text = f"{'/'.join(dict.fromkeys(_short_name(n) for n in names))} {cap / GIB:.1f} GiB"
        row = _place_label(ax, renderer, placed, cap / GIB, text, strong)
        if row is None:
            continue
        colour = "black" if strong else "0.45"
        ax.axvline(cap / GIB, color=colour, linestyle="-" if strong else ":", linewidth=1.4 if strong else 0.9,
                   ymax=_axes_fraction(ax, LABEL_LEVELS[row]))
        drawn += names
    return drawn


class _Placed:
    """Pixel spans of the labels on each row, and where the lines run (x and the row each ends at)."""

    def __init__(self, axes_box) -> None:
        self.axes_box = axes_box
        self.spans: list[list[tuple[float, float]]] = [[] for _ in LABEL_LEVELS]
        self.lines: list[tuple[float, int]] = []

    def free(self, row: int, x0: float, x1: float, line_x: float) -> bool:
        """Whether a label over [x0, x1] on ``row`` and its line at ``line_x`` cross nothing placed."""
        inside = self.axes_box.x0 <= x0 and x1 <= self.axes_box.x1
        clear = all(x1 <= a or x0 >= b for a, b in self.spans[row])
        uncrossed = all(not x0 <= x <= x1 for x, top in self.lines if top > row)
        line_clear = all(not a <= line_x <= b for lower in self.spans[:row] for a, b in lower)
        return inside and clear and uncrossed and line_clear

    def take(self, row: int, x0: float, x1: float, line_x: float) -> None:
        self.spans[row].append((x0, x1))
        self.lines.append((line_x, row))


def _place_label(ax: Axes, renderer, placed: _Placed, x: float, text: str, strong: bool) -> int | None:
    """Put ``text`` at x on the first row where it and its line cross nothing; the row, or None."""
    line_x = ax.transData.transform((x, 0))[0]
    for row, y in enumerate(LABEL_LEVELS):
        label = ax.text(x, y, f" {text} ", fontsize=7.5, va="center", ha="left",
                        color="black" if strong else "0.35", fontweight="bold" if strong else "normal")
        box = label.get_window_extent(renderer)
        if box.x1 > placed.axes_box.x1:  # at the right edge: written leftwards from the line
            label.set_horizontalalignment("right")
            box = label.get_window_extent(renderer)
        if placed.free(row, box.x0, box.x1, line_x):
            placed.take(row, box.x0, box.x1, line_x)
            return row
        label.remove()
    return None


def _axes_fraction(ax: Axes, y: float) -> float:
    """Where data y lies between the bottom (0) and the top (1) of the axes: a line ends at its label."""
    bottom, top = ax.get_ylim()
    return (y - bottom) / (top - bottom)


def _short_name(name: str) -> str:
    """'T4 16 GB' -> 'T4', 'RTX 4090 24 GB' -> '4090', 'my GPU (12 GB)' -> 'my GPU'."""
    if name.startswith("my "):
        return "my GPU"
    words = name.split()
    return words[1] if words[0] == "RTX" else words[0]


def _group_capacities(gpu_lines: Sequence[tuple[str, float]], limit: float) -> dict[float, list[str]]:
    """GPUs within 2 GiB of each other share one line (L4, A10G and RTX 4090 are all ~24 GB): bytes -> names.

    A group is drawn at its smallest member's capacity (what fits there fits them all); GPUs above ``limit``
    bytes are left out.
    """
    groups: dict[float, list[str]] = {}
    for name, cap in sorted(gpu_lines, key=lambda item: item[1]):
        if cap > limit:
            continue
        near = next((g for g in groups if abs(g - cap) < 2 * GIB), None)
        groups.setdefault(near if near is not None else cap, []).append(name)
    return groups


def memory_chart_png(
    bars: Mapping[str, Mapping[str, float]], gpu_lines: Sequence[tuple[str, float]] = (),
    highlight: str | None = None,
) -> bytes:
    """PNG of ``draw_memory_bars`` on a fresh figure."""
    fig, ax = make_figure()
    draw_memory_bars(ax, bars, gpu_lines, highlight)
    return figure_to_png(fig)
