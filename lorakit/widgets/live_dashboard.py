"""LiveDashboard: a MetricsSink that shows a run live in a notebook -- progress with ETA, what the run is doing,
its set-up and the choices it made, and one figure (loss, learning rate, tokens/s, memory) redrawn in place.

Threads: the sink methods run on the training thread; they only store what they receive and, when a frame
is due, wake a render thread (``RenderWorker``), where every widget update and drawing happens. So training
never waits for matplotlib, whether ``train()`` runs in the background (TrainerPanel) or in a cell (which
blocks the kernel's event loop, not a thread). The one wait: ``on_train_end`` returns once the final
picture is drawn, so it is in place when ``train()`` returns.

Frames: progress, status line and plots are updated together from one snapshot, so the plots never lag
the numbers beside them. A frame comes at most every ``min_interval_s``, and only while the run's frames
have taken at most ``max_overhead`` of its wall time so far (drawing holds the GIL, which a Python-bound
loop needs; on a busy machine a thread holding it may wait for a CPU). A redraw takes ~0.1 s on a quiet
2-core machine: a frame every ~7 s. Where the budget holds the next frame back more than
``max_plot_lag_s``, progress and status go ahead and say which step the plots show. What the run is busy
with between steps ("evaluating the loss on 45 held-out examples") is shown at once.

The PNG goes into an ``ipywidgets.Image`` (hidden until it has a picture), updated in place over the comm.
When a run ends, the final figure is also written as a plain PNG output (a display handle), so the saved
notebook shows it without a kernel.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets

from lorakit.training.events import MetricsSink, TrainSummary
from lorakit.viz.training import clear_data, draw_dashboard_records, figure_to_png, make_dashboard_figure
from lorakit.widgets.dashboard_views import DashboardView, earlier_records, in_ipython
from lorakit.widgets.run_text import (
    describe_choices,
    describe_setup,
    describe_summary,
    format_duration,
    phase_text,
    progress_text,
    step_line,
)
from lorakit.widgets.runtime import STOP, RenderWorker

__all__ = ["LiveDashboard", "describe_choices", "describe_summary", "format_duration", "in_ipython"]

RENDER_THREAD = "lorakit-dashboard"


class LiveDashboard(widgets.VBox, MetricsSink):
    """Progress bar with ETA, status line and live plots of a run: a widget to display, and a sink for train().

    ``background=False`` draws nothing by itself: call ``tick()`` to do what the render thread would (tests).
    """

    def __init__(self, *, min_interval_s: float = 0.5, max_overhead: float = 0.015,
                 clock: Callable[[], float] = time.monotonic, cost_clock: Callable[[], float] = time.perf_counter,
                 background: bool = True, final_timeout_s: float = 30.0,
                 first_draw_estimate_s: float | None = None, max_plot_lag_s: float = 10.0,
                 text_interval_s: float = 2.0, views: Sequence[DashboardView] = ()) -> None:
        if not 0 < max_overhead <= 1:
            raise ValueError(f"max_overhead={max_overhead!r} must be in (0, 1] (fraction of CPU time)")
        self.min_interval_s, self.max_overhead = float(min_interval_s), float(max_overhead)
        self.background, self.final_timeout_s = background, final_timeout_s
        # the cost budgeted for the first frame; None: what rendering the empty figure once took
        self.first_draw_estimate_s = first_draw_estimate_s
        # when the budget holds the next frame back longer than max_plot_lag_s, the progress and the status go
        # ahead every text_interval_s and say which step the plots show
        self.max_plot_lag_s, self.text_interval_s = max_plot_lag_s, text_interval_s
        self._text: dict[str, Any] = {"counts": (0, 0), "at": float("-inf")}
        self._clock, self._cost_clock = clock, cost_clock
        # what the run has told us (written by the training thread, read by the render thread)
        self.info: dict[str, Any] = {}
        self.history: list[dict] = []  # train records, as received
        self.eval_history: list[dict] = []
        self.phase: tuple[str, str] | None = None  # (phase, detail) of the last on_phase
        self.evaluation: dict | None = None  # the last on_progress of the phase in progress (None: none)
        self.summary: TrainSummary | None = None
        self._run = 0  # counts on_train_start calls, so a frame of an old run is never shown for a new one
        self._state_lock = threading.Lock()  # held for microseconds: never while drawing
        # what is on screen (render thread)
        self._shown: dict[str, Any] = {"run": 0, "phase": None, "evaluation": None, "counts": (0, 0),
                                       "data": ([], []), "final": False}
        self.redraw_count = 0
        self.draw_seconds = 0.0  # total cost of drawing (cost_clock units: wall seconds by default)
        self.draw_threads: set[str] = set()  # names of the threads that drew (tests check the training thread's)
        self._last_frame = float("-inf")
        self._last_draw_cost: float | None = None  # cost_clock seconds of the last draw (None: none yet)
        self._run_started = clock()  # the budget of a run is counted from its start
        self._run_draw_seconds = 0.0  # what this run's frames have cost so far
        self._next_frame_at = float("-inf")  # a record that arrives after this wakes the render thread
        self._draw_lock = threading.Lock()  # the render thread and the notebook thread may both draw
        self._figure = None
        self._final_png: bytes | None = None
        self._final_done = threading.Event()
        self._static_handle = None
        self._worker = RenderWorker(self.tick, RENDER_THREAD, on_error=self._on_render_error)
        self.views = tuple(views)  # widgets under the plots, refreshed with every frame (dashboard_views)
        super().__init__(children=[*self._build_widgets(), *self.views])

    def _build_widgets(self) -> list[widgets.Widget]:
        """The dashboard's rows: progress with its label, status line, set-up, plot."""
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="", bar_style="info",
                                            layout=widgets.Layout(width="60%"))
        self.progress.add_class("lorakit-progress")
        self.progress_label = widgets.Label(value="not started")
        self.status = widgets.HTML(value="Waiting for a run to start.")
        self.status.add_class("lorakit-status")
        self.setup = widgets.HTML(value="")
        self.setup.add_class("lorakit-setup")
        # hidden while it has no picture: an empty <img> shows as a broken-image icon
        self.plot = widgets.Image(format="png", layout=widgets.Layout(max_width="100%", display="none"))
        self.plot.add_class("lorakit-plot")
        return [widgets.HBox([self.progress, self.progress_label]), self.status, self.setup, self.plot]

    # -- MetricsSink: training thread; store and wake, nothing else ------------------------------------------
    def on_train_start(self, info: dict) -> None:
        """A new run: a fresh history (a resumed run's earlier steps read back from its metrics.jsonl); its
        set-up is shown by the render thread."""
        earlier = earlier_records(info)
        with self._state_lock:
            self.info = dict(info)
            self.history, self.eval_history = earlier.get("train", []), earlier.get("eval", [])
            self.summary, self.phase, self.evaluation = None, None, None
            self._final_png = None
            self._final_done.clear()
            self._run += 1
            self._run_started = self._clock()
        self._wake()

    def on_phase(self, phase: str, detail: str) -> None:
        self.phase, self.evaluation = (phase, detail), None
        self._wake()

    def on_progress(self, record: dict) -> None:
        """How far an evaluation or a preview is: shown at once (a few records per evaluation)."""
        self.evaluation = dict(record)
        self._wake()

    def on_log(self, record: dict) -> None:
        self.history.append(dict(record))
        self._wake_if_due()

    def on_eval(self, record: dict) -> None:
        self.eval_history.append(dict(record))
        self._wake_if_due()

    def on_train_end(self, summary: TrainSummary) -> None:
        """Keep the summary, and wait (up to final_timeout_s) for the final frame and the static PNG."""
        self.summary = summary
        if self.background:
            self._wake()
            self._final_done.wait(self.final_timeout_s)

    def _wake(self) -> None:
        if self.background:
            self._worker.wake()

    def _wake_if_due(self) -> None:
        """Wake the render thread only when a frame is allowed: one thread switch per frame, not per record
        (on a busy machine each switch can stall the training thread for a scheduler time slice)."""
        if self._clock() >= self._next_frame_at:
            self._next_frame_at = float("inf")  # until the render thread says when the next one is due
            self._wake()

    # -- render thread ----------------------------------------------------------------------------------------
    def tick(self) -> float | str | None:
        """Bring the screen up to date with what the run has sent; the render thread's only job.

        Returns the seconds until the next frame is allowed, None when one is allowed now (the next record
        wakes the thread), STOP after the final frame of a run.
        """
        with self._state_lock:
            run, info, summary, phase, evaluation = self._run, self.info, self.summary, self.phase, self.evaluation
            counts = (len(self.history), len(self.eval_history))
            history, evals = self.history[: counts[0]], self.eval_history[: counts[1]]
        if run != self._shown["run"]:
            self._show_new_run(run, info)
        if summary is not None:
            if not self._shown["final"]:
                self._final_frame(history, evals, summary)
            return STOP
        if (phase, evaluation) != (self._shown["phase"], self._shown["evaluation"]):
            self._shown.update(phase=phase, evaluation=evaluation)
            self._show_status(*self._shown["data"])
            self._show_progress(self._shown["data"][0])
        if self._figure is None:
            self._prepare_figure()
        if counts != self._shown["counts"] and self.frame_wait() <= 0:
            self._frame(history, evals, counts)
        now, wait = self._clock(), max(self.frame_wait(), 0.0)
        lagging = wait > self.max_plot_lag_s
        if lagging and counts not in (self._shown["counts"], self._text["counts"]) \
                and now - self._text["at"] >= self.text_interval_s:
            self._text_frame(history, evals, counts)
        # Records do not wake this thread before the next frame is allowed (or, while the plots lag, the next
        # text update); it wakes itself when the frame is allowed.
        self._next_frame_at = now + (min(wait, self.text_interval_s) if lagging else wait)
        return wait or None

    def frame_wait(self) -> float:
        """Seconds until the next frame may be drawn (<= 0: now).

        Frames are min_interval_s apart, and the run's frames, the next one included (estimated at the last
        draw's cost), may cost at most max_overhead of the time since the run started: a budget for the whole
        run, so a short run is not slowed by an early frame. Drawing holds the GIL most of the time, so on a
        run whose loop is Python-bound (small models, GPU kernel launches) this bounds the slow-down.
        """
        now = self._clock()
        cost = self._last_draw_cost if self._last_draw_cost is not None else self.first_draw_estimate_s or 0.0
        budget_at = self._run_started + (self._run_draw_seconds + cost) / self.max_overhead
        return max(self._last_frame + self.min_interval_s, budget_at) - now

    def _show_new_run(self, run: int, info: dict) -> None:
        self._shown.update(run=run, phase=None, evaluation=None, counts=(0, 0), data=([], []), final=False)
        self._text = {"counts": (0, 0), "at": float("-inf")}
        self._last_frame, self._run_draw_seconds = float("-inf"), 0.0
        self._next_frame_at = float("-inf")
        self.progress.max = max(int(info.get("total_steps") or 1), 1)
        start = min(int(info.get("start_step") or 0), self.progress.max)  # a resumed run goes on from there
        self.progress.value, self.progress.bar_style = start, "info"
        self.progress_label.value = f"{start}/{self.progress.max}"
        self.setup.value = html.escape(describe_setup(info))
        self.status.value = "Running&hellip;"
        self.plot.layout.display = "none"  # the previous run's picture does not belong to this one
        self.show_static()  # nor does its static copy

    def _frame(self, history: list[dict], evals: list[dict], counts: tuple[int, int]) -> None:
        """Plots, progress and status from one snapshot."""
        self._show_png(self._draw(history, evals))
        self._shown.update(counts=counts, data=(history, evals))
        self._last_frame = self._clock()
        self._show_progress(history)
        self._show_status(history, evals)
        self._show_views(history, evals)

    def _show_views(self, history: list[dict], evals: list[dict]) -> None:
        for view in self.views:
            view.show(history, evals, self.info)

    def _text_frame(self, history: list[dict], evals: list[dict], counts: tuple[int, int]) -> None:
        """Progress and status ahead of the plots, saying which step the plots show (drawing is over budget)."""
        self._text = {"counts": counts, "at": self._clock()}
        self._show_progress(history)
        phase = self._shown["phase"]
        if not history or (phase is not None and phase[0] != "training"):
            return  # what the run is busy with (evaluating before the first step) stays on the status line
        plotted = self._shown["data"][0]
        where = f"step {plotted[-1].get('step')}" if plotted else "none yet"
        self.status.value = html.escape(
            f"{step_line(history, evals)} Plots: {where} (redrawn as often as the live frames stay under "
            f"{self.max_overhead:.1%} of the time since the run started).")

    def _final_frame(self, history: list[dict], evals: list[dict], summary: TrainSummary) -> None:
        self._shown["final"] = True
        try:
            if history or evals:
                self._final_png = self._draw(history, evals)
                self._show_png(self._final_png)
            self.progress.bar_style = "success" if summary.status == "completed" else "warning"
            self.progress.value = min(summary.steps_done, self.progress.max)
            self.progress_label.value = f"{summary.steps_done}/{summary.total_steps}"
            self.status.value = html.escape(describe_summary(summary))
            self._show_views(history, evals)
            self.show_static()
        finally:
            self._final_done.set()

    def _show_progress(self, history: list[dict]) -> None:
        """The bar at the last step shown (or where a resumed run started), and the label with the ETA (during
        an evaluation: how far it is and its time left)."""
        last = history[-1] if history else {}
        step = last.get("step") or self.info.get("start_step") or 0
        self.progress.value = min(int(step), self.progress.max)
        self.progress_label.value = progress_text(self.progress.value, self.progress.max, last,
                                                  self._shown["evaluation"])

    def _show_status(self, history: list[dict], evals: list[dict]) -> None:
        """What the run is busy with (between steps), else where the shown frame is."""
        phase = self._shown["phase"]
        if phase is not None and (phase[0] != "training" or not history):
            evaluation = self._shown["evaluation"]
            self.status.value = html.escape(phase_text(phase[1], evaluation["detail"] if evaluation else ""))
        elif history:
            self.status.value = html.escape(step_line(history, evals))

    def _show_png(self, png: bytes) -> None:
        self.plot.value = png
        self.plot.layout.display = None

    def _on_render_error(self, exc: BaseException) -> None:
        if self.summary is not None:
            self._final_done.set()  # never leave on_train_end waiting for a final frame that failed
        self.status.value = html.escape(f"The live view failed ({type(exc).__name__}: {exc}); training goes on.")

    # -- drawing ----------------------------------------------------------------------------------------------
    def _draw(self, history: list[dict], evals: list[dict]) -> bytes:
        """The figure for these records as PNG (updated in place: the axes keep their ticks)."""
        with self._draw_lock:
            start = self._cost_clock()
            if self._figure is None:
                self._figure = make_dashboard_figure()
            fig, axes = self._figure
            for ax in axes:
                clear_data(ax)
            draw_dashboard_records(axes, history, evals, self.info.get("predicted_peak_bytes"))
            png = figure_to_png(fig)
            self._last_draw_cost = self._cost_clock() - start
            self.draw_seconds += self._last_draw_cost
            self._run_draw_seconds += self._last_draw_cost
            self.redraw_count += 1
            self.draw_threads.add(threading.current_thread().name)
            return png

    def _prepare_figure(self) -> None:
        """Build the figure and render it once, at the first event of a run (the model is still loading).

        The first render loads fonts and costs several times a later one; done here it neither lands in the
        training steps nor counts as a frame, and its cost is the estimate the first frame is budgeted at.
        """
        with self._draw_lock:
            start = self._cost_clock()
            self._figure = make_dashboard_figure()
            figure_to_png(self._figure[0])
            if self.first_draw_estimate_s is None:
                self._last_draw_cost = self._cost_clock() - start
            self.draw_threads.add(threading.current_thread().name)

    def redraw(self) -> bytes:
        """Draw the figure from the whole history now, on the calling thread, and show it; returns the PNG."""
        png = self._draw(list(self.history), list(self.eval_history))
        self._show_png(png)
        return png

    def reset(self, status: str = "Waiting for a run to start.") -> None:
        """Forget the last run and show ``status`` (HTML); for a panel about to start another run."""
        with self._state_lock:
            self.info, self.history, self.eval_history, self.summary, self.phase = {}, [], [], None, None
            self.evaluation = None
            self._final_png = None
            self._run += 1
            self._shown.update(run=self._run, phase=None, evaluation=None, counts=(0, 0), data=([], []),
                               final=False)
        self.plot.layout.display = "none"
        self.progress.value, self.progress.bar_style, self.progress_label.value = 0, "info", "not started"
        self.setup.value, self.status.value = "", status
        for view in self.views:
            view.reset()
        self.show_static()

    # -- notebook display ---------------------------------------------------------------------------------
    def final_png(self) -> bytes | None:
        """The PNG of the finished run's figure; None before a run has ended or when it logged nothing."""
        if self.summary is None or not (self.history or self.eval_history):
            return None
        if self._final_png is None:  # the render thread has not drawn it (background=False, or a timeout)
            self._final_png = self._draw(list(self.history), list(self.eval_history))
        return self._final_png

    def display_static_slot(self) -> None:
        """Add the output that holds the static copy of the final figure (already filled if the run is over)."""
        from IPython.display import display

        content, raw = self._static_content()
        self._static_handle = display(content, raw=raw, display_id=True)

    def show_static(self) -> None:
        """Fill the static output with the final figure, if this dashboard has been displayed in IPython.

        The live picture then hides: the static one stands under the widget, and a front end that shows
        widgets would otherwise show the same plots twice."""
        if self._static_handle is not None and in_ipython():
            content, raw = self._static_content()
            self._static_handle.update(content, raw=raw)
            if not raw:  # the final PNG is in the output
                self.plot.layout.display = "none"

    def _static_content(self) -> tuple[Any, bool]:
        """(object, raw) for display(): the final PNG, or an empty placeholder while no run has ended."""
        from IPython.display import Image

        png = self.final_png()
        if png is None:
            return {"text/plain": ""}, True
        return Image(data=png, format="png"), False

    def _ipython_display_(self) -> None:
        """The live widget, then the output that keeps a static copy of the final figure."""
        from IPython.display import display

        display(self._repr_mimebundle_(), raw=True)
        self.display_static_slot()
