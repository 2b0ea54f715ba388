"""LiveDashboard: a MetricsSink that shows a run live in a notebook -- progress with ETA, a status line and
one figure (loss, learning rate, tokens/s, memory) redrawn in place.

Cost model: ``on_log`` appends the record and returns unless a refresh is due. Text (progress bar, status)
refreshes at most every ``min_interval_s``; the figure at most every ``min_interval_s`` and never more often
than keeps drawing under ``max_overhead`` of wall time (a draw costs 0.1-0.3 s on a 2-core CPU, so with the
default 1.5 % budget the plot updates every 7-20 s there; the text stays live). The figure is rendered to PNG into an
``ipywidgets.Image``: widget traits travel over the kernel's comm, so setting them from the training thread
updates the page in place without touching the cell's other output. When a run ends, the final figure is
also written as a plain PNG output (through a display handle) so the saved notebook shows it without a kernel.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from lorakit.training.events import MetricsSink, TrainSummary
from lorakit.viz.training import draw_dashboard, figure_to_png, make_dashboard_figure

__all__ = ["LiveDashboard", "describe_summary", "format_duration"]

TRAIN_KEYS = ("step", "loss", "learning_rate", "tokens_per_s", "mem_allocated_bytes", "mem_reserved_bytes",
              "mem_peak_bytes", "rss_bytes", "memory_by_rank")
EVAL_KEYS = ("step", "eval_loss")


def format_duration(seconds: float | None) -> str:
    """Seconds as m:ss or h:mm:ss; '?' when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:  # None or NaN or negative
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _adapter_on_disk(adapter_dir: str | None) -> bool:
    return bool(adapter_dir) and (Path(adapter_dir) / "adapter_config.json").is_file()


def describe_summary(summary: TrainSummary) -> str:
    """A short text on how a run ended and where its adapter is ('Adapter saved to ...' only when on disk)."""
    headline = {
        "completed": "Completed",
        "stopped": "Stopped",
        "error": "Failed",
        "oom": "Out of memory",
        "interrupted": "Interrupted",
    }.get(summary.status, summary.status)
    text = f"{headline} after {summary.steps_done}/{summary.total_steps} steps"
    if summary.final_loss is not None:
        text += f", final loss {summary.final_loss:.4f}"
    if summary.message:  # the loop's own account (advice on out-of-memory, the error, who stopped it)
        text = summary.message
    text = text.rstrip(".") + "."
    if _adapter_on_disk(summary.adapter_dir):
        text += f" Adapter saved to {summary.adapter_dir}"
    elif summary.adapter_dir:
        text += " No adapter on disk."
    return text


def _columns(records: list[dict], keys: tuple[str, ...]) -> dict[str, list]:
    return {key: [r.get(key) for r in records] for key in keys}


def in_ipython() -> bool:
    """True inside an IPython kernel or shell (where display() reaches a front end)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


class LiveDashboard(MetricsSink):
    """Progress bar with ETA, status line and live plots of a run; display it, pass it as a sink to train()."""

    def __init__(self, *, min_interval_s: float = 0.5, max_overhead: float = 0.015,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < max_overhead <= 1:
            raise ValueError(f"max_overhead={max_overhead!r} must be in (0, 1] (fraction of wall time)")
        self.min_interval_s = float(min_interval_s)
        self.max_overhead = float(max_overhead)
        self._clock = clock
        self.info: dict[str, Any] = {}
        self.history: list[dict] = []  # train records, as received
        self.eval_history: list[dict] = []
        self.summary: TrainSummary | None = None
        self.redraw_count = 0
        self.draw_seconds = 0.0  # total time spent drawing (clock units)
        self._last_text = self._last_plot = float("-inf")
        self._last_draw_cost = 0.0
        self._draw_lock = threading.Lock()  # the figure is drawn from the training and the notebook thread
        self._figure = None
        self._final_png: bytes | None = None
        self._static_handle = None
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="", bar_style="info",
                                            layout=widgets.Layout(width="60%"))
        self.progress.add_class("lorakit-progress")
        self.progress_label = widgets.Label(value="not started")
        self.status = widgets.HTML(value="Waiting for a run to start.")
        self.status.add_class("lorakit-status")
        self.plot = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.plot.add_class("lorakit-plot")
        self.widget = widgets.VBox([widgets.HBox([self.progress, self.progress_label]), self.status, self.plot])

    # -- MetricsSink --------------------------------------------------------------------------------------
    def on_train_start(self, info: dict) -> None:
        """Reset the history for a new run and show its set-up."""
        self.info = dict(info)
        self.history, self.eval_history, self.summary = [], [], None
        self._final_png = None
        self._last_text = self._last_plot = float("-inf")
        self.progress.max = max(int(info.get("total_steps") or 1), 1)
        self.progress.value, self.progress.bar_style = 0, "info"
        self._refresh(force=True)

    def on_log(self, record: dict) -> None:
        """Keep the record; refresh the text and the plot only when their throttles allow."""
        self.history.append(dict(record))
        self._refresh()

    def on_eval(self, record: dict) -> None:
        self.eval_history.append(dict(record))
        self._refresh()

    def on_train_end(self, summary: TrainSummary) -> None:
        """Final redraw (always), final status, and the static PNG for viewers without a kernel."""
        self.summary = summary
        self.progress.bar_style = "success" if summary.status == "completed" else "warning"
        self._update_text()
        self._final_png = self.redraw()
        self.show_static()

    # -- drawing ------------------------------------------------------------------------------------------
    def _refresh(self, force: bool = False) -> None:
        """Every path that changes what is shown ends here; the throttles decide what is redrawn."""
        now = self._clock()
        if force or now - self._last_text >= self.min_interval_s:
            self._last_text = now
            self._update_text()
        plot_interval = max(self.min_interval_s, self._last_draw_cost / self.max_overhead)
        if force or now - self._last_plot >= plot_interval:
            self.redraw()

    def redraw(self) -> bytes:
        """Draw the figure from the history now and push the PNG to the plot widget; returns the PNG."""
        with self._draw_lock:
            start = self._clock()
            if self._figure is None:
                self._figure = make_dashboard_figure()
            fig, axes = self._figure
            for ax in axes:
                ax.clear()
            draw_dashboard(axes, _columns(self.history, TRAIN_KEYS), _columns(self.eval_history, EVAL_KEYS),
                           self.info.get("predicted_peak_bytes"))
            png = figure_to_png(fig)
            self.plot.value = png
            self.redraw_count += 1
            self._last_plot = self._clock()
            self._last_draw_cost = self._last_plot - start
            self.draw_seconds += self._last_draw_cost
            return png

    def _update_text(self) -> None:
        last = self.history[-1] if self.history else {}
        total = self.progress.max
        self.progress.value = min(int(last.get("step") or 0), total)
        if self.summary is not None:
            self.progress_label.value = f"{self.summary.steps_done}/{self.summary.total_steps}"
            self.status.value = html.escape(describe_summary(self.summary))
            return
        eta = format_duration(last.get("eta_s"))
        elapsed = format_duration(last.get("elapsed_s"))
        self.progress_label.value = f"{self.progress.value}/{total} · {elapsed} elapsed · ETA {eta}"
        self.status.value = html.escape(self._status_line(last))

    def _status_line(self, last: dict) -> str:
        info = self.info
        setup = ", ".join(f"{key} {info[key]}" for key in ("device", "precision", "quantization") if info.get(key))
        if (info.get("num_processes") or 1) > 1:
            setup += (f", {info['num_processes']} processes ({info.get('distributed')}), global batch "
                      f"{info.get('global_batch_size')}")
        if info.get("trainable_params") and info.get("total_params"):
            share = 100 * info["trainable_params"] / info["total_params"]
            setup += f", {info['trainable_params']:,} of {info['total_params']:,} parameters trainable ({share:.2f} %)"
        for warning in info.get("warnings") or ():
            setup += f". Warning: {warning}"
        if not last:
            return f"Running: {setup}." if setup else "Running."
        now = f"step {last.get('step')}"
        if last.get("loss") is not None:
            now += f", loss {last['loss']:.4f}"
        if last.get("tokens_per_s") is not None:
            now += f", {last['tokens_per_s']:,.0f} tokens/s"
        if self.eval_history and self.eval_history[-1].get("eval_loss") is not None:
            now += f", eval loss {self.eval_history[-1]['eval_loss']:.4f}"
        return f"Running ({setup}): {now}." if setup else f"Running: {now}."

    # -- notebook display ---------------------------------------------------------------------------------
    def final_png(self) -> bytes | None:
        """The PNG of the finished run's figure (drawn once, on demand); None before a run has ended."""
        if self.summary is None:
            return None
        if self._final_png is None:
            self._final_png = self.redraw()
        return self._final_png

    def display_static_slot(self) -> None:
        """Add the output that holds the static copy of the final figure (already filled if the run is over)."""
        from IPython.display import display

        content, raw = self._static_content()
        self._static_handle = display(content, raw=raw, display_id=True)

    def show_static(self) -> None:
        """Fill the static output with the final figure, if this dashboard has been displayed in IPython."""
        if self._static_handle is not None and in_ipython():
            content, raw = self._static_content()
            self._static_handle.update(content, raw=raw)

    def _static_content(self) -> tuple[Any, bool]:
        """(object, raw) for display(): the final PNG, or an empty placeholder while no run has ended."""
        from IPython.display import Image

        png = self.final_png()
        if png is None:
            return {"text/plain": ""}, True
        return Image(data=png, format="png"), False

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
        self.display_static_slot()
