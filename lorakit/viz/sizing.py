"""The sizing calculator's memory chart as SVG: one stacked bar per run, GPU capacities as lines.

One convention for memory: GiB (2**30 bytes) everywhere in the picture. A GPU line sits at the memory its
driver reports, which is less than the "GB" in its name (a T4 16 GB reports 15.0 GiB); its label says that
number. The chosen GPU is always drawn; the others only where their labels have room. Each run's name and
total are written above its bar across the whole width (so a long name is never cut at the left edge), and
the run that matches the settings as set is marked. The legend uses the words of the calculator's table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lorakit.units import GIB
from lorakit.viz.svg import Scale, Svg, nice_ticks, text_width

WIDTH = 520  # CSS px; the picture shrinks with a narrower column (its labels with it)
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
LABEL_ROWS = (30.0, 15.0)  # baselines of the two rows of GPU labels: row 0 nearer the bars
TOP = 38  # where the first run's name sits
ROW, BAR = 32, 13  # height of one run (name + bar), of its bar
AS_SET = "as set"


def memory_chart_svg(
    bars: Mapping[str, Mapping[str, float]], gpu_lines: Sequence[tuple[str, float]] = (),
    highlight: str | None = None, as_set: str | None = None, legend: Mapping[str, str] | None = None,
    width: float = WIDTH,
) -> str:
    """Stacked bars, one per run (label -> component -> bytes), with GPU capacities (bytes) as vertical lines.

    ``highlight`` names the chosen GPU: always drawn (solid); the others (dotted) where their labels fit.
    ``as_set`` names the run that the settings describe (marked). ``legend`` maps a component to its words.
    """
    legend = legend or {}
    labels = list(bars)
    totals = [sum(bars[label].values()) / GIB for label in labels]
    chosen = next(((n, c) for n, c in gpu_lines if n == highlight), None)
    top_value = max([*totals, chosen[1] / GIB if chosen else 0.0, 1e-3]) * 1.08
    ticks = nice_ticks(top_value)
    left, right = 10.0, width - 14.0
    scale = Scale(0.0, ticks[-1], left, right)
    components = [c for c in dict.fromkeys(c for b in bars.values() for c in b) if any(b.get(c) for b in bars.values())]
    legend_rows = _legend_rows(components, legend, width - 20)
    bottom = TOP + ROW * len(labels)
    height = bottom + 34 + 16 * len(legend_rows)
    svg = Svg(width, height, "peak training memory by component (GiB)")
    for t in ticks:
        svg.line(scale(t), TOP - 4, scale(t), bottom, "#e3e3e3")
        svg.text(scale(t), bottom + 13, f"{t:g}", size=10, anchor="middle")
    svg.line(left, bottom, right, bottom, "#888888")
    svg.text(width / 2, bottom + 27, "peak training memory (GiB)", size=10, anchor="middle")
    for i, label in enumerate(labels):
        _bar(svg, scale, TOP + ROW * i, bars[label], label == as_set, legend)
    _gpu_lines(svg, scale, gpu_lines, chosen, ticks[-1] * GIB, bottom)
    for i, (label, total) in enumerate(zip(labels, totals, strict=True)):  # over the lines, on a halo
        name = f"{label}: {total:.1f} GiB" + (f"  \u25c0 {AS_SET}" if label == as_set else "")
        size = min(11.0, 11.0 * (right - left) / max(text_width(name, 11, bold=label == as_set), 1e-9))
        svg.text(left, TOP + ROW * i + 11, name, size=size, bold=label == as_set, halo=True)
    y = bottom + 44
    for entries in legend_rows:
        x = 10.0
        for comp, words in entries:
            svg.rect(x, y - 9, 10, 10, COMPONENT_COLOURS.get(comp, "#999999"))
            svg.text(x + 14, y, words, size=10)
            x += 14 + text_width(words, 10) + 14
        y += 16
    return svg.render()


def _bar(svg: Svg, scale: Scale, y: float, parts: Mapping[str, float], mine: bool, legend: Mapping[str, str]) -> None:
    """One run's stacked bar, below its name (each part's tooltip says what it holds); outlined when ``mine``."""
    x = 0.0
    for comp, nbytes in parts.items():
        if nbytes <= 0:
            continue
        words = legend.get(comp, comp)
        svg.rect(scale(x), y + 15, scale(x + nbytes / GIB) - scale(x), BAR, COMPONENT_COLOURS.get(comp, "#999999"),
                 title=f"{words}: {nbytes / GIB:.2f} GiB", stroke="#222" if mine else "")
        x += nbytes / GIB


def _legend_rows(components: Sequence[str], legend: Mapping[str, str], room: float) -> list[list[tuple[str, str]]]:
    """The legend's entries (component, words) in rows no wider than ``room`` px."""
    rows: list[list[tuple[str, str]]] = [[]]
    used = 0.0
    for comp in components:
        words = legend.get(comp, comp)
        need = 28 + text_width(words, 10)
        if rows[-1] and used + need > room:
            rows.append([])
            used = 0.0
        rows[-1].append((comp, words))
        used += need
    return [r for r in rows if r]


def _gpu_lines(svg: Svg, scale: Scale, gpu_lines: Sequence[tuple[str, float]], chosen: tuple[str, float] | None,
               limit: float, bottom: float) -> list[str]:
    """The chosen GPU's line and label first, then every other group whose label finds room on a row.

    A line runs from the bottom up to its label, so it crosses the rows below its own: a label may not sit
    where another line crosses its row, and a line may not cross another label. Returns the GPUs drawn.
    """
    placed = _Placed(scale.start, scale.end)
    drawn: list[str] = []
    candidates = [([chosen[0]], chosen[1], True)] if chosen else []
    others = [(n, c) for n, c in gpu_lines if chosen is None or (n != chosen[0] and abs(c - chosen[1]) >= 2 * GIB)]
    groups = _group_capacities(others, limit).items()
    if chosen:  # in a crowd, the neighbours of the chosen GPU are the useful comparison
        groups = sorted(groups, key=lambda group: abs(group[0] - chosen[1]))
    candidates += [(names, cap, False) for cap, names in groups]
    for names, cap, strong in candidates:
        text = f"{'/'.join(dict.fromkeys(short_name(n) for n in names))} {cap / GIB:.1f} GiB"
        x = scale(cap / GIB)
        spot = placed.place(x, text_width(text, 9.5, bold=strong))
        if spot is None:
            continue
        row, x0, anchor = spot
        svg.line(x, LABEL_ROWS[row] + 3, x, bottom, "#111111" if strong else "#777777", 1.4 if strong else 0.9,
                 dash="" if strong else "2,2")
        svg.text(x0, LABEL_ROWS[row], text, size=9.5, anchor=anchor, bold=strong,
                 colour="#111111" if strong else "#555555")
        drawn += names
    return drawn


class _Placed:
    """Pixel spans of the labels on each row, and where the lines run (x and the row each ends at)."""

    def __init__(self, x_min: float, x_max: float) -> None:
        self.x_min, self.x_max = x_min, x_max
        self.spans: list[list[tuple[float, float]]] = [[] for _ in LABEL_ROWS]
        self.lines: list[tuple[float, int]] = []

    def place(self, x: float, width: float) -> tuple[int, float, str] | None:
        """(row, text x, anchor) for a label of ``width`` px at a line at ``x``; None when no row has room."""
        for row in range(len(LABEL_ROWS)):
            x0, x1, at, anchor = x + 2, x + 2 + width, x + 2, "start"
            if x1 > self.x_max:  # at the right edge: written leftwards from the line
                x0, x1, at, anchor = x - 2 - width, x - 2, x - 2, "end"
            if self._free(row, x0, x1, x):
                self.spans[row].append((x0, x1))
                self.lines.append((x, row))
                return row, at, anchor
        return None

    def _free(self, row: int, x0: float, x1: float, line_x: float) -> bool:
        inside = self.x_min - 8 <= x0 and x1 <= self.x_max + 12
        clear = all(x1 + 4 <= a or x0 >= b + 4 for a, b in self.spans[row])
        uncrossed = all(not x0 - 2 <= x <= x1 + 2 for x, top in self.lines if top > row)
        line_clear = all(not a - 2 <= line_x <= b + 2 for lower in self.spans[:row] for a, b in lower)
        return inside and clear and uncrossed and line_clear


def short_name(name: str) -> str:
    """'T4 16 GB' -> 'T4', 'RTX 4090 24 GB' -> '4090', 'my GPU (12 GiB)' -> 'my GPU'."""
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
