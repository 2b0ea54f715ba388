"""LoraUpdateView: what the adapter has learned so far, under the LiveDashboard's plots (a dashboard view).

At each logging step a run with ``log_lora_stats`` logs its adapter's update per decoder block and module type
(``lorakit.training.lora_stats.update_grid``: ||ΔW|| / ||W0|| and the effective rank, and the spectrum of the
module that moved most). This view draws the latest of those records as two SVG pictures: the blocks x
module-type heatmap and that spectrum. SVG strings cost about a millisecond, so the view fits in the
dashboard's frames; it redraws only when a newer record arrived.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from lorakit.viz.lora import heatmap_svg, short_name, spectrum_svg

__all__ = ["LoraUpdateView", "latest_update", "update_caption"]


def latest_update(history: list[dict]) -> dict | None:
    """The last train record that carries the adapter's update statistics (its "lora" entry), or None."""
    return next((r for r in reversed(history) if r.get("lora")), None)


def update_caption(grid: dict) -> str:
    """One sentence on the grid: where the update is largest, by module type and by block, and its rank."""
    types, layers, rel = grid["module_types"], grid["layers"], grid["rel_norm"]
    by_type = {t: [row[j] for row in rel if row[j] is not None] for j, t in enumerate(types)}
    by_layer = {layer: [v for v in row if v is not None] for layer, row in zip(layers, rel, strict=True)}
    kind = max(by_type, key=lambda t: sum(by_type[t]) / max(len(by_type[t]), 1))
    block = max(by_layer, key=lambda b: sum(by_layer[b]) / max(len(by_layer[b]), 1))
    ranks = [v for row in grid["effective_rank"] for v in row if v is not None]
    top = grid["top"]
    return (f"Largest relative change on average: module type {kind}, block {block}. Most moved: "
            f"{short_name(top['name'])} ({top['rel_norm']:.3g}). Mean effective rank of the updates: "
            f"{sum(ranks) / max(len(ranks), 1):.2f} of r = {grid['r']}.")


class LoraUpdateView(widgets.VBox):
    """The heatmap of ||ΔW|| / ||W0|| (blocks x module types) and the spectrum of the update that moved most,
    from the latest logged record; hidden until a run logs one."""

    def __init__(self) -> None:
        self.heatmap = widgets.HTML(layout=widgets.Layout(flex="1 1 auto", min_width="14em"))
        self.spectrum = widgets.HTML(layout=widgets.Layout(flex="1 1 auto", min_width="12em", margin="0 0 0 12px"))
        self.caption = widgets.HTML()
        self.shown_step: int | None = None
        super().__init__(children=[widgets.HBox([self.heatmap, self.spectrum],
                                                layout=widgets.Layout(flex_flow="row wrap")),
                                   self.caption], layout=widgets.Layout(display="none"))
        self.add_class("lorakit-lora-view")

    def show(self, history: list[dict], evals: list[dict], info: dict[str, Any]) -> None:
        """Draw the latest record with update statistics, if it is newer than the one shown (render thread)."""
        record = latest_update(history)
        if record is None or record.get("step") == self.shown_step:
            return
        self.show_grid(record["lora"], record.get("step"))

    def show_grid(self, grid: dict, step: int | None = None) -> None:
        """Draw one ``update_grid`` record."""
        self.heatmap.value = heatmap_svg(grid, step)
        self.spectrum.value = spectrum_svg(grid["top"])
        self.caption.value = f"<small>{html.escape(update_caption(grid))}</small>"
        self.shown_step = step
        self.layout.display = None

    def reset(self) -> None:
        self.heatmap.value = self.spectrum.value = self.caption.value = ""
        self.shown_step = None
        self.layout.display = "none"
