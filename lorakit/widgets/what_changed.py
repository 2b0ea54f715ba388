"""WhatChanged: after a run, what its adapter changed -- the update per block and module type, and the tokens
of the run's own held-out examples that the adapter made more or less likely.

``show_run(summary, config)`` loads the run's base with its saved adapter (``token_compare.load_run``),
measures the update (``lora_stats``: the heatmap and spectrum of ``LoraUpdateView``), and compares every
held-out example (up to ``max_examples``) with the adapter and without it (``compare_tokens``): the held-out
loss both ways over those examples, and one example at a time in colour, picked from a dropdown. It runs on the
caller's thread (the TrainerPanel's run thread, after the run); what fails is said in the view, never raised.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from lorakit.widgets.lora_views import LoraUpdateView

__all__ = ["WhatChanged", "example_label"]

WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def example_label(record: Any, width: int = 60) -> str:
    """A dataset record in a few words: its prompt, its first user message, or its text."""
    if isinstance(record, dict):
        if "prompt" in record:
            text = record["prompt"]
        elif "messages" in record:
            text = next((m.get("content", "") for m in record["messages"] if m.get("role") == "user"), "")
        else:
            text = record.get("text", "")
    else:
        text = str(record)
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


class WhatChanged(widgets.VBox):
    """The adapter's update (heatmap, spectrum) and a per-token comparison on the held-out examples, after a run;
    hidden until ``show_run``."""

    def __init__(self, max_examples: int = 48) -> None:
        self.max_examples = max_examples
        self.status = widgets.HTML()
        self.updates = LoraUpdateView()
        self.loss = widgets.HTML()
        self.example = widgets.Dropdown(description="held-out example", options=[],
                                        style={"description_width": "initial"},
                                        layout=widgets.Layout(width="100%", display="none"))
        self.example.observe(self._on_example_change, names="value")
        self.tokens = widgets.HTML()
        self.comparisons: list = []
        self.grid: dict | None = None
        title = widgets.HTML("<b>What changed</b> <small>(the run's adapter against its base model)</small>")
        super().__init__(children=[title, self.status, self.updates, self.loss, self.example, self.tokens],
                         layout=widgets.Layout(display="none"))
        self.add_class("lorakit-what-changed")

    def show_run(self, summary, config) -> None:
        """Measure and compare the finished run (``summary``: its TrainSummary; ``config``: its TrainConfig, for
        the held-out examples). Errors end up in the status line."""
        self.reset()
        self.layout.display = None
        adapter = Path(summary.adapter_dir) if summary.adapter_dir else None
        if adapter is None or not any((adapter / name).is_file() for name in WEIGHTS):
            self.status.value = "No adapter was saved, so there is nothing to compare."
            return
        self.status.value = "Loading the base model with the run's adapter&hellip;"
        try:
            self._measure_run(summary, config)
        except Exception as exc:  # noqa: BLE001 -- the run is over; a failure here is shown, not raised
            self.status.value = html.escape(f"What changed could not be shown: {type(exc).__name__}: {exc}")

    def _measure_run(self, summary, config) -> None:
        from lorakit.training.data import split_dataset
        from lorakit.training.lora_stats import lora_update_stats, update_grid
        from lorakit.training.token_compare import load_run

        run = load_run(summary.output_dir)
        notes = []
        try:
            self.grid = update_grid(lora_update_stats(run.model))
            self.updates.show_grid(self.grid, summary.steps_done)
        except ValueError as exc:  # DoRA, for one: said, and the tokens are still compared
            notes.append(f"No update statistics: {exc}.")
        held = split_dataset(config)[1]
        self.status.value = f"Comparing {min(len(held), self.max_examples)} held-out examples with and without the adapter&hellip;"
        notes.append(self._compare_examples(run, held))
        self.status.value = html.escape(" ".join(n for n in notes if n))

    def _compare_examples(self, run, held: list) -> str:
        """Compare the held-out examples; returns a note on what was left out."""
        from lorakit.training.token_compare import compare_tokens, pooled_loss

        if not held:
            return "The run has no held-out examples (eval_split=0), so no tokens are compared."
        pairs, skipped = [], 0
        for record in held[: self.max_examples]:
            try:
                pairs.append((record, compare_tokens(run, record)))
            except ValueError:  # an example without answer tokens, or longer than the context
                skipped += 1
        if not pairs:
            return f"None of the {len(held)} held-out examples could be compared."
        self.comparisons = [c for _, c in pairs]
        with_, without = pooled_loss(self.comparisons)
        tokens = sum(c.n_scored for c in self.comparisons)
        self.loss.value = (f"Held-out loss over {len(pairs)} of {len(held)} examples ({tokens} answer tokens): "
                           f"<b>{without:.3f}</b> without the adapter &rarr; <b>{with_:.3f}</b> with it.")
        self.example.options = [(f"{example_label(r)}  (loss {c.loss_without:.2f} → {c.loss_with:.2f})", i)
                                for i, (r, c) in enumerate(pairs)]
        self.example.layout.display = None
        self.example.value = 0
        self._show_example(0)
        return f"{skipped} held-out examples could not be compared." if skipped else ""

    def _on_example_change(self, change: dict) -> None:
        if change["new"] is not None:
            self._show_example(change["new"])

    def _show_example(self, index: int) -> None:
        self.tokens.value = self.comparisons[index].to_html()

    def reset(self) -> None:
        """Hide and forget the last run's comparison."""
        self.comparisons, self.grid = [], None
        self.updates.reset()
        self.example.options = []
        self.example.layout.display = "none"
        self.status.value = self.loss.value = self.tokens.value = ""
        self.layout.display = "none"
