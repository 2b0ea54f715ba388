"""Compare finished runs (e.g. fp32 vs bf16 vs nf4) from what they left on disk: loss, speed, peak memory.

A run directory holds ``metrics.jsonl`` (one record per logged step, ``"kind": "train"|"eval"``),
``summary.json`` (how it ended) and ``config.json``. A run that crashed before writing its summary is still
compared from its metrics.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, NamedTuple

from lorakit.training.events import read_metrics
from lorakit.units import MIB

__all__ = ["compare_runs", "load_run", "format_runs_table", "RunComparison"]



class RunComparison(NamedTuple):
    """The comparison figure (loss curves, tokens/s bars, peak-memory bars) and one row per run."""

    figure: Any  # matplotlib.figure.Figure
    rows: list[dict[str, Any]]


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _last(values: list) -> Any:
    values = [v for v in values if v is not None]
    return values[-1] if values else None


def _peak_from_records(records: list[dict]) -> int | None:
    """Largest GPU peak if measured, else largest process RSS, over the logged steps (bytes)."""
    for key in ("mem_peak_bytes", "rss_bytes"):
        values = [r[key] for r in records if r.get(key) is not None]
        if values:
            return int(max(values))
    return None


def load_run(run_dir: str | Path, name: str | None = None) -> dict[str, Any]:
    """One run's curves and headline numbers from its directory; ValueError if it has no metrics.jsonl."""
    path = Path(run_dir)
    if not (path / "metrics.jsonl").is_file():
        raise ValueError(f"run_dir={str(path)!r} has no metrics.jsonl; pass directories written by lorakit.train")
    records = read_metrics(path)
    train = [r for r in records if r.get("kind", "train") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    summary, config = _read_json(path / "summary.json"), _read_json(path / "config.json")
    speeds = [r["tokens_per_s"] for r in train if r.get("tokens_per_s") is not None]
    row = {
        "name": name or path.name,
        "precision": config.get("precision"),
        "quantization": config.get("quantization"),
        "status": summary.get("status", "no summary"),
        "steps": summary.get("steps_done", _last([r.get("step") for r in train])),
        "final_loss": summary.get("final_loss", _last([r.get("loss") for r in train])),
        "eval_loss": _last([r.get("eval_loss") for r in evals]),
        "tokens_per_s": summary.get("tokens_per_s") or (statistics.median(speeds) if speeds else None),
        "peak_memory_bytes": summary.get("peak_memory_bytes") or _peak_from_records(train),
        "elapsed_s": summary.get("elapsed_s"),
        "exact_match_after": summary.get("exact_match_after"),
    }
    return {
        "row": row,
        "loss": ([r.get("step") for r in train], [r.get("loss") for r in train]),
        "eval_loss": ([r.get("step") for r in evals], [r.get("eval_loss") for r in evals]),
    }


def compare_runs(run_dirs: list[str | Path], *, names: list[str] | None = None, dpi: int = 80) -> RunComparison:
    """Overlay finished runs: loss vs step, tokens/s and peak memory (MiB) bars; returns (figure, rows)."""
    from lorakit.viz.training import draw_bars, draw_loss_curves, make_figure

    run_dirs = list(run_dirs)
    if not run_dirs:
        raise ValueError("run_dirs is empty; pass at least one run directory")
    if names is not None and len(names) != len(run_dirs):
        raise ValueError(f"names has {len(names)} entries but run_dirs has {len(run_dirs)}; give one name per run")
    runs = [load_run(d, names[i] if names else None) for i, d in enumerate(run_dirs)]
    labels = [run["row"]["name"] for run in runs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"run names must be unique, got {labels}; pass names=[...]")
    fig, (loss_ax, speed_ax, mem_ax) = make_figure(1, 3, dpi=dpi)
    draw_loss_curves(loss_ax, {run["row"]["name"]: run["loss"] for run in runs},
                     {run["row"]["name"]: run["eval_loss"] for run in runs})
    rows = [run["row"] for run in runs]
    draw_bars(speed_ax, labels, [r["tokens_per_s"] for r in rows], title="tokens / s", fmt="{:,.0f}")
    peaks = [None if r["peak_memory_bytes"] is None else r["peak_memory_bytes"] / MIB for r in rows]
    draw_bars(mem_ax, labels, peaks, title="peak memory (MiB)", fmt="{:,.0f}")
    return RunComparison(fig, rows)


def format_runs_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of compare_runs rows (loss to 4 decimals, tokens/s, peak memory in MiB)."""
    header = f"{'run':<16} {'status':<10} {'steps':>5} {'final loss':>10} {'eval loss':>9} {'tokens/s':>9} {'peak MiB':>9}"
    lines = [header, "-" * len(header)]
    for r in rows:
        peak = "n/a" if r["peak_memory_bytes"] is None else f"{r['peak_memory_bytes'] / MIB:,.0f}"
        lines.append(
            f"{r['name']:<16} {r['status']:<10} {r['steps'] if r['steps'] is not None else 'n/a':>5} "
            f"{_fmt(r['final_loss'], '.4f'):>10} {_fmt(r['eval_loss'], '.4f'):>9} "
            f"{_fmt(r['tokens_per_s'], ',.0f'):>9} {peak:>9}")
    return "\n".join(lines)


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)
