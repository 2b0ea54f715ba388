"""LiveDashboardCallback: lorakit's live plots and a Stop button for an existing transformers ``Trainer``.

The Trainer's events reach a :class:`LiveDashboard` through ``lorakit.training.hf_callback.MetricsCallback``;
this module adds what a notebook shows: the dashboard, a Stop button (which asks the callback's StopHandle,
so the Trainer stops at the end of the current step) and a background runner.

A button click reaches the kernel only when the kernel is not busy running a cell, so for a working Stop
button run the Trainer in the background with :meth:`LiveDashboardCallback.start_training` (the plots
update either way).
"""

from __future__ import annotations

import html
import threading
from typing import Any

import ipywidgets as widgets

from lorakit.training.events import StopHandle, TrainSummary
from lorakit.training.hf_callback import MetricsCallback
from lorakit.widgets.live_dashboard import LiveDashboard, in_ipython
from lorakit.widgets.runtime import BackgroundRun

__all__ = ["LiveDashboardCallback"]

STOP_REASON = "the Stop button"


class LiveDashboardCallback(MetricsCallback, widgets.VBox):
    """A TrainerCallback that draws live loss / LR / tokens/s / memory plots and offers a Stop button; the
    widget it shows is itself (a Stop button above a LiveDashboard)."""

    def __init__(self, dashboard: LiveDashboard | None = None, *, display: bool = True) -> None:
        self.dashboard = dashboard if dashboard is not None else LiveDashboard()
        MetricsCallback.__init__(self, sinks=[self.dashboard])
        self.display = display
        self.stop_button = widgets.Button(description="Stop", button_style="danger", icon="stop")
        self.stop_button.add_class("lorakit-stop")
        self.stop_button.on_click(self._on_stop_click)
        widgets.VBox.__init__(self, children=[self.stop_button, self.dashboard])
        self.add_class("lorakit-hf-dashboard")
        self._displayed = False
        self._run = BackgroundRun("lorakit-hf-train")

    @property
    def stop_requested(self) -> bool:
        return self.stop.stop_requested

    # -- display and control ------------------------------------------------------------------------------
    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self._repr_mimebundle_(), raw=True)
        self.dashboard.display_static_slot()
        self._displayed = True

    def _on_stop_click(self, _button: widgets.Button) -> None:
        self.request_stop()

    def request_stop(self) -> None:
        """Make the Trainer stop at the end of the current optimizer step."""
        self.stop.request_stop(STOP_REASON)
        self.stop_button.disabled = True
        self.dashboard.on_phase("stopping", "stop requested: the Trainer stops at the end of this step")

    def start_training(self, trainer: Any, **train_kwargs: Any) -> threading.Thread:
        """Run ``trainer.train(**train_kwargs)`` in a background thread, so the notebook (and Stop) stay live."""
        if self._run.running:
            raise RuntimeError("this callback's Trainer is already running; press Stop or call wait() first")
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        return self._run.start(trainer.train, on_done=self._show_failure, **train_kwargs)

    def _show_failure(self) -> None:
        exc = self._run.exception
        if exc is not None:
            self.dashboard.status.value = html.escape(f"Failed: {type(exc).__name__}: {exc}")

    def wait(self, timeout: float | None = None) -> TrainSummary | None:
        """Block until a start_training() run ends; re-raise its exception; return the dashboard's summary."""
        if not self._run.wait(timeout):
            return None
        self.dashboard.show_static()
        if self._run.exception is not None:
            raise RuntimeError(f"trainer.train() failed: {self._run.exception}") from self._run.exception
        return self.dashboard.summary

    # -- TrainerCallback ----------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        """A fresh StopHandle, the dashboard shown (once, in IPython), then the run's set-up to it."""
        self.stop = StopHandle()
        self.stop_button.disabled = False
        if self.display and not self._displayed and in_ipython():
            self._ipython_display_()
        return super().on_train_begin(args, state, control, model=model, **kwargs)

    def on_train_end(self, args, state, control, **kwargs):
        self.stop_button.disabled = True
        return super().on_train_end(args, state, control, **kwargs)
