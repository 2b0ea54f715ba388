"""Comparisons 4 and 5 as result rows, from the benchmarks other parts of lorakit ship:

* `memory_planner.run(quick) -> list[dict]` (sizing): predicted vs measured bytes over a grid;
* `bench_float_explorer.measure(repeats) -> dict` and `bench_lora_calculator.measure(repeats) -> dict`
  (widgets): Python-side latency in ms.
"""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Row, Target, skipped_row  # noqa: E402

WIDGETS = {  # module -> (benchmark name, target in ms from issue 6)
    "bench_float_explorer": ("5 FloatExplorer bit click", 20.0),
    "bench_lora_calculator": ("5 LoraCalculator update (Llama-3.1-70B)", 50.0),
}


def _latency_rows(bench: str, result: dict[str, Any], target_ms: float) -> list[Row]:
    """One row per scalar '*_ms' statistic; the target applies to the handler-only figures (not with drawing)."""
    rows = []
    target_ms = float(result.get("target_ms", target_ms))
    for key, value in result.items():
        if not key.endswith("_ms") or key == "target_ms" or not isinstance(value, (int, float)):
            continue
        drawn = "draw" in key or "render" in key
        target = None if drawn else Target("<=", target_ms, on="lorakit")
        note = "includes drawing the picture; the target excludes rendering" if drawn else ""
        rows.append(Row(bench, key.removesuffix("_ms"), "ms", [float(value)], target=target, note=note,
                        higher_is_better=False).finish())
    return rows


def _measure(module: str, measure, quick: bool) -> dict[str, Any]:
    """Full: the widget benchmark's own repeat count; quick: a few updates (FloatExplorer: one format)."""
    if not quick:
        return measure(200)
    if module == "bench_float_explorer":
        return measure(5, formats=("fp16",))
    return measure(5)


def widget_rows(quick: bool = False) -> list[Row]:
    """Latency rows of each widget benchmark that is present; a missing one becomes a 'skipped' row."""
    rows: list[Row] = []
    for module, (bench, target_ms) in WIDGETS.items():
        try:
            measure = importlib.import_module(module).measure
        except ImportError as exc:
            rows.append(skipped_row(bench, f"benchmarks/{module}.py not available: {exc}"))
            continue
        rows += _latency_rows(bench, _measure(module, measure, quick), target_ms)
    return rows


def _pct(record: dict[str, Any], key: str) -> float | None:
    """|error| in percent from a record's '*_error_pct' field; None when absent or not finite."""
    value = record.get(key)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return abs(float(value))
    return None


def planner_rows(quick: bool = False) -> list[Row]:
    """Median and max |error| % of the planner over the sizing engineer's grid (total and per component)."""
    bench = "4 memory planner"
    try:
        records = importlib.import_module("memory_planner").run(quick)
    except ImportError as exc:
        return [skipped_row(bench, f"benchmarks/memory_planner.py not available: {exc}")]
    if not records:
        return [skipped_row(bench, "memory_planner.run returned no grid points")]
    keys = sorted({k for r in records for k in r if k.endswith("error_pct")}, key=lambda k: "total" not in k)
    rows = []
    for key in keys:
        errors = [e for e in (_pct(r, key) for r in records) if e is not None]
        if not errors:
            continue
        name = key.removesuffix("_error_pct")
        on_total = "total" in name  # the targets are on the total; components are shown for insight
        rows.append(Row(bench, f"{name}: median abs error", "%", [_median(errors)],
                        target=Target("<=", 5.0, on="lorakit") if on_total else None,
                        note=f"{len(errors)} grid points (batch/seq/r/quantization/checkpointing/attention)"
                        if on_total else "", higher_is_better=False).finish())
        rows.append(Row(bench, f"{name}: max abs error", "%", [max(errors)],
                        target=Target("<=", 10.0, on="lorakit") if on_total else None,
                        higher_is_better=False).finish())
    return rows or [skipped_row(bench, f"no '*error_pct' fields in the planner's records: {sorted(records[0])}")]


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
