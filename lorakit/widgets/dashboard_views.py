"""Views a LiveDashboard shows under its plots, refreshed with every frame: the extension point for what a run
shows beside loss, learning rate, tokens/s and memory (a memory ledger, what the adapter learned, ...).

A view is an ipywidgets widget with ``show(history, evals, info)`` and ``reset()``. The dashboard calls them on
its render thread, in the same frame as the plots and the status line, and once more for the final frame:
``history`` and ``evals`` are that frame's snapshot of the train and eval records, ``info`` the run's start
info. A view draws from those alone (cheap: it runs inside the drawing budget) and never blocks.

Also here, what the dashboard reads besides its own records: the records a resumed run logged before its
checkpoint, and whether display() reaches a front end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from lorakit.training.events import read_metrics

__all__ = ["DashboardView", "earlier_records", "in_ipython"]


@runtime_checkable
class DashboardView(Protocol):
    """A widget under the dashboard's plots (an ipywidgets widget that also has these two methods)."""

    def show(self, history: list[dict], evals: list[dict], info: dict[str, Any]) -> None:
        """Draw from one frame's records (render thread)."""

    def reset(self) -> None:
        """Forget the last run (a new run is about to start)."""


def earlier_records(info: dict) -> dict[str, list[dict]]:
    """The train and eval records a resumed run logged before its checkpoint (by kind), from metrics.jsonl."""
    start, out = info.get("start_step") or 0, info.get("output_dir")
    path = Path(out) / "metrics.jsonl" if out else None
    if not start or path is None or not path.is_file():
        return {}
    kept: dict[str, list[dict]] = {}
    for record in read_metrics(path):
        if record.get("step", 0) <= start:
            kept.setdefault(record.pop("kind", "train"), []).append(record)
    return kept


def in_ipython() -> bool:
    """True inside an IPython kernel or shell (where display() reaches a front end)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None
