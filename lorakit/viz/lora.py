"""What a LoRA adapter learned, as pictures: a blocks x module-type heatmap of how far each weight moved, the
spectrum of one update, and a text coloured by how much the adapter changed each token's log-probability.

Plain strings (SVG and HTML) from plain data: the heatmap and the spectrum take the record
``lorakit.training.lora_stats.update_grid`` makes (what a run logs at each logging step); the text takes a
``TokenComparison``'s fields. Nothing here knows about torch or widgets.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from lorakit.viz.svg import Scale, Svg, fmt, nice_ticks, text_width

__all__ = ["change_colour", "heatmap_svg", "short_name", "spectrum_svg", "tokens_html"]

LOW, HIGH = (247, 251, 255), (8, 48, 107)  # the heatmap's scale: no change -> the largest change (blues)
EMPTY = "#eeeeee"  # a block without that module type
CELL_W = 46
PEFT_PREFIX = "base_model.model."


def short_name(name: str) -> str:
    """A module's name without peft's wrapper prefix ("model.layers.3.mlp.up_proj")."""
    return name.removeprefix(PEFT_PREFIX)


def _blend(t: float) -> str:
    t = min(max(t, 0.0), 1.0)
    r, g, b = (round(lo + (hi - lo) * t) for lo, hi in zip(LOW, HIGH, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap_svg(grid: dict, step: int | None = None, key: str = "rel_norm") -> str:
    """One cell per decoder block (rows) and module type (columns), coloured by ``grid[key]`` (0 to its largest
    value); hovering a cell shows its value. ``grid``: ``lora_stats.update_grid``'s record."""
    types, layers, values = grid["module_types"], grid["layers"], grid[key]
    found = [v for row in values for v in row if v is not None]
    high = max(found, default=0.0) or 1.0
    cell_h = 16 if len(layers) <= 12 else 10 if len(layers) <= 32 else 6
    left, top = 44.0, 34.0
    width = left + CELL_W * len(types) + 64
    height = top + cell_h * len(layers) + 34
    what = "‖ΔW‖ / ‖W0‖" if key == "rel_norm" else key.replace("_", " ")
    title = f"{what} per block and module" + (f" at step {step}" if step is not None else "")
    svg = Svg(width, height, title)
    svg.text(4, 13, title, size=12, bold=True)
    for j, kind in enumerate(types):
        label = kind if text_width(kind, 9) <= CELL_W - 2 else kind.split("_")[0][: max(3, CELL_W // 7)]
        svg.text(left + CELL_W * (j + 0.5), top - 5, label, size=9, anchor="middle")
    every = math.ceil(11 / cell_h)  # block labels at least 11 px apart
    for i, layer in enumerate(layers):
        y = top + cell_h * i
        if i % every == 0 or i == len(layers) - 1:
            svg.text(left - 4, y + cell_h - 1.5, "other" if layer is None else str(layer), size=9, anchor="end")
        for j, kind in enumerate(types):
            v = values[i][j]
            tip = f"block {layer} · {kind}: " + ("no such module" if v is None else f"{what} = {v:.4g}")
            svg.rect(left + CELL_W * j, y, CELL_W - 1, cell_h - 1, EMPTY if v is None else _blend(v / high), title=tip)
    svg.text(left - 4, top - 5, "block", size=9, anchor="end")
    _legend(svg, left + CELL_W * len(types) + 10, top, cell_h * len(layers), high)
    svg.text(4, height - 8, f"darkest: {high:.3g} · r = {grid.get('r', '?')}", size=10, colour="#555")
    return svg.render()


def _legend(svg: Svg, x: float, top: float, span: float, high: float) -> None:
    steps = 24
    for k in range(steps):
        svg.rect(x, top + span * k / steps, 10, span / steps + 0.5, _blend(1 - k / (steps - 1)))
    svg.text(x + 14, top + 9, f"{high:.2g}", size=9)
    svg.text(x + 14, top + span, "0", size=9)


def spectrum_svg(top: dict, width: float = 300) -> str:
    """The singular values of one update as bars (σ1 first); ``top``: an update_grid's ``top`` entry."""
    values = list(top["singular_values"])
    name = short_name(top["name"])
    height, left, bottom = 170.0, 40.0, 130.0
    svg = Svg(width, height, f"singular values of ΔW in {name}")
    svg.text(4, 13, "spectrum of the update that moved most", size=12, bold=True)
    svg.text(4, 28, name, size=10, colour="#555")
    ticks = nice_ticks(max(values, default=0.0) or 1.0, most=4)
    scale = Scale(0.0, ticks[-1], bottom, 40.0)
    for t in ticks:
        svg.line(left, scale(t), width - 8, scale(t), "#e3e3e3")
        svg.text(left - 4, scale(t) + 3.5, f"{t:.3g}", size=9, anchor="end")
    slot = (width - 8 - left) / max(len(values), 1)
    for i, v in enumerate(values):
        svg.rect(left + slot * i + slot * 0.15, scale(v), slot * 0.7, bottom - scale(v), "#4c72b0",
                 title=f"σ{i + 1} = {v:.4g}")
        if len(values) <= 16 or i % 4 == 0:
            svg.text(left + slot * (i + 0.5), bottom + 12, str(i + 1), size=9, anchor="middle")
    svg.line(left, bottom, width - 8, bottom, "#888888")
    svg.text(4, height - 6, f"effective rank {top['effective_rank']:.2f} of r = {top['r']} · "
                            f"‖ΔW‖/‖W0‖ = {top['rel_norm']:.3g}", size=10)
    return svg.render()


def change_colour(change: float, scale: float) -> str:
    """A background for a token whose log-probability changed by ``change`` nats: green up, red down, paler
    the smaller |change| / scale."""
    t = min(abs(change) / scale, 1.0) if scale > 0 else 0.0
    base = (26, 150, 65) if change > 0 else (215, 48, 39)
    r, g, b = (round(255 + (c - 255) * 0.75 * t) for c in base)
    return f"#{r:02x}{g:02x}{b:02x}"


def _span(text: str, colour: str, tip: str) -> str:
    shown = html.escape(text).replace("\n", "↵<br>") or "&nbsp;"
    return (f"<span style='background:{colour};border-radius:2px;padding:0 1px;white-space:pre-wrap' "
            f"title='{html.escape(tip, quote=True)}'>{shown}</span>")


def tokens_html(tokens: Sequence[str], with_adapter: Sequence[float], without: Sequence[float],
                scored: Sequence[bool], first: str = "", movers: int = 5) -> str:
    """The text, each predicted token coloured by the change of its log-probability (with the adapter minus
    without), greyed where no loss is taken; then the largest rises and falls, and the loss both ways."""
    change = [w - o for w, o in zip(with_adapter, without, strict=True)]
    scale = max((abs(c) for c, s in zip(change, scored, strict=True) if s), default=0.0) or 1.0
    spans = [_span(first, "transparent", "context (not predicted)")]
    for tok, c, w, o, s in zip(tokens, change, with_adapter, without, scored, strict=True):
        tip = f"log p: {o:.3f} → {w:.3f} ({c:+.3f} nats)" + ("" if s else "; not scored (prompt)")
        spans.append(_span(tok, change_colour(c, scale) if s else "#f4f4f4", tip))
    picked = [i for i, s in enumerate(scored) if s]
    n = max(len(picked), 1)
    loss_with = -sum(with_adapter[i] for i in picked) / n
    loss_without = -sum(without[i] for i in picked) / n
    order = sorted(picked, key=lambda i: change[i])
    rows = [("rose most", list(reversed(order))[:movers]), ("fell most", order[:movers])]
    table = "".join(
        f"<tr><td style='text-align:left'><b>{label}</b></td>" + "".join(
            f"<td style='text-align:left'><code>{html.escape(repr(tokens[i]))}</code> {change[i]:+.2f}</td>"
            for i in items if (change[i] > 0) == (label == "rose most")) + "</tr>"
        for label, items in rows)
    return (f"<div class='lorakit-tokens'><div style='line-height:1.7;font-family:monospace'>{''.join(spans)}</div>"
            f"<p style='margin:4px 0'>loss on the {len(picked)} scored tokens: <b>{loss_without:.3f}</b> without the "
            f"adapter &rarr; <b>{loss_with:.3f}</b> with it. Green: the adapter made the token more likely; red: "
            f"less likely (darkest: {fmt(scale)} nats).</p><table>{table}</table></div>")
