"""Pieces of the LoraCalculator that are not controls: its tables (HTML), each from the planner's numbers.

* ``comparison_html``: the runs side by side. "held at the peak" is what a step holds at its peak moment
  (``MemoryEstimate.components()``: at the loss backward of a LoRA run the gradients do not exist yet, so they
  read 0.00); "held in all" is every component a step holds at some moment (``MemoryEstimate.saved``), which
  never all coexist.
* ``per_gpu_html``: the peak per GPU for 1, 2, 4 and 8 GPUs.
* ``module_table_html``: LoRA's parameters per module type against the full update.

Every table scrolls sideways in its own box with its first column fixed (``lorakit.widgets.tables``).
"""

from __future__ import annotations

import html
from typing import Any

from lorakit.sizing.gpus import GIB
from lorakit.sizing.memory import MemoryEstimate
from lorakit.sizing.scenarios import COMPONENT_LABELS
from lorakit.widgets.tables import row, scroll_table

PEAK, STEP = "peak", "step"  # the two views of the comparison table
VIEWS = (("held at the peak", PEAK), ("held in all during a step", STEP))
STEP_NOTE = ("A step never holds all of these at once: the gradients appear as backward frees the activations, "
             "and the optimizer's temporaries come after both. The peak is the largest sum at one moment.")


def gib(nbytes: float) -> str:
    """Bytes as GiB with two decimals (the tables' unit)."""
    return f"{nbytes / GIB:.2f}"


def peak_label(estimates: dict[str, MemoryEstimate]) -> str:
    """'held at the peak (loss backward)', or '... (each run's moment below)' when the runs peak at different moments."""
    moments = {e.peak_phase for e in estimates.values()}
    if len(moments) == 1:
        return f"held at the peak ({html.escape(moments.pop())})"
    return "held at the peak (moment below)"


def comparison_html(estimates: dict[str, MemoryEstimate], gpu: Any, view: str = PEAK) -> str:
    """The runs side by side (GiB): what each holds at its peak, or all a step holds; trainable; the GPU verdict."""
    names = list(estimates)
    if view == STEP:
        return _step_html(estimates)
    head = row([f"GiB {peak_label(estimates)}", *(html.escape(n) for n in names)], tag="th")
    comps = next(iter(estimates.values())).components()
    rows = "".join(row([COMPONENT_LABELS.get(c, c), *(gib(estimates[n].components()[c]) for n in names)])
                   for c in comps)
    rows += row(["<b>peak</b>", *(f"<b>{gib(estimates[n].total_bytes)}</b>" for n in names)])
    rows += row(["peak at", *(html.escape(estimates[n].peak_phase) for n in names)], numeric_from=99)
    rows += row(["attention kernel", *(html.escape(estimates[n].attention_kernel) for n in names)], numeric_from=99)
    rows += row(["trainable", *(f"{estimates[n].trainable_params:,}" for n in names)])
    rows += row([html.escape(gpu.name), *("fits" if gpu.fits(estimates[n].total_bytes) else "too big"
                                          for n in names)])
    return scroll_table(head + rows, "lorakit-table lorakit-peak-table")


def _step_html(estimates: dict[str, MemoryEstimate]) -> str:
    """Every component a step holds at some moment (``saved``), their sum, and the peak beside it."""
    names = list(estimates)
    head = row(["GiB held in all during a step", *(html.escape(n) for n in names)], tag="th")
    keys = [k for k in next(iter(estimates.values())).saved]
    words = {"activations_bytes": "activations (saved for backward)"}
    rows = "".join(row([words.get(k, COMPONENT_LABELS.get(k.removesuffix("_bytes"), k)),
                        *(gib(estimates[n].saved[k]) for n in names)]) for k in keys)
    rows += row(["<b>sum</b> (never at once)", *(f"<b>{gib(sum(estimates[n].saved.values()))}</b>" for n in names)])
    rows += row(["peak (one moment)", *(gib(estimates[n].total_bytes) for n in names)])
    return scroll_table(head + rows, "lorakit-table lorakit-step-table", caption=html.escape(STEP_NOTE))


def per_gpu_html(per_device: dict[int, MemoryEstimate], strategy: str, gpu: Any) -> str:
    """Peak per GPU (GiB) for 1, 2, 4 and 8 GPUs with one strategy, and whether each fits the chosen GPU."""
    head = row([f"GPUs ({html.escape(strategy)})", "per GPU (GiB)", html.escape(gpu.name)], numeric_from=0, tag="th")
    rows = "".join(row([str(n), gib(e.total_bytes), "fits" if gpu.fits(e.total_bytes) else "too big"],
                       numeric_from=0) for n, e in per_device.items())
    return scroll_table(head + rows, "lorakit-table lorakit-per-gpu-table")


def module_table_html(count: Any) -> str:
    """Per-module-type table: shape, how many, LoRA r*(d_in+d_out) vs the full d_out*d_in update."""
    head = row(["module", "d_out x d_in", "matrices", "LoRA each", "full update each", "LoRA total",
                "LoRA / full"], tag="th")
    rows = "".join(row([
        html.escape(m.name), f"{m.out_features:,} x {m.in_features:,}", str(m.count), f"{m.lora_params_each:,}",
        f"{m.full_update_params_each:,}", f"{m.lora_params:,}",
        f"{100 * m.lora_params_each / m.full_update_params_each:.2f}%"]) for m in count.modules)
    return scroll_table(head + rows, "lorakit-table lorakit-module-table")


def stale(table: str) -> str:
    """A table greyed out: it shows the last valid settings, not the current ones."""
    if not table or "lorakit-stale" in table:
        return table
    return f"<div class='lorakit-stale' style='opacity:0.35' title='last valid settings'>{table}</div>"
