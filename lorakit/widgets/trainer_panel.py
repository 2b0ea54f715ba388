"""TrainerPanel: start, watch and stop a LoRA fine-tune from a notebook.

Start runs ``lorakit.training.train`` in a background thread with a :class:`LiveDashboard` sink and a
``StopHandle``; the notebook stays responsive. Stop asks the loop to end after the current step; the loop
then saves the adapter and the panel says what happened and where the adapter is. An exception that escapes
the run is shown in the panel (and re-raised by :meth:`TrainerPanel.wait`), never lost.
"""

from __future__ import annotations

import dataclasses
import html
import threading
import traceback
from typing import Any

import ipywidgets as widgets

from lorakit.choices import PRECISIONS, QUANTIZATIONS
from lorakit.training.config import BOUNDS, TrainConfig
from lorakit.training.events import StopHandle, TrainSummary
from lorakit.widgets.live_dashboard import LiveDashboard, describe_summary

__all__ = ["TrainerPanel", "preview_html"]

_STYLE = {"description_width": "initial"}


def preview_html(summary: TrainSummary) -> str:
    """The generation preview (prompt | before | after) and the exact-match scores as an HTML fragment."""
    parts = []
    if summary.exact_match_before is not None or summary.exact_match_after is not None:
        parts.append(f"<p><b>Exact match on held-out questions:</b> {_percent(summary.exact_match_before)} before "
                     f"&rarr; {_percent(summary.exact_match_after)} after training</p>")
    if summary.preview:
        rows = "".join(
            "<tr>" + "".join(f"<td style='text-align:left;vertical-align:top'>{html.escape(str(item.get(k, '')))}"
                             "</td>" for k in ("prompt", "before", "after")) + "</tr>"
            for item in summary.preview
        )
        parts.append("<table><thead><tr><th style='text-align:left'>prompt</th><th style='text-align:left'>"
                     "before training</th><th style='text-align:left'>after training</th></tr></thead>"
                     f"<tbody>{rows}</tbody></table>")
    return "".join(parts)


def _percent(fraction: float | None) -> str:
    return "n/a" if fraction is None else f"{100 * fraction:.1f} %"


class TrainerPanel:
    """Start / Stop buttons, the main TrainConfig fields, a live dashboard and the before/after preview."""

    def __init__(self, config: TrainConfig | None = None, **overrides: Any) -> None:
        base = config if config is not None else TrainConfig()
        self.config = dataclasses.replace(base, **overrides) if overrides else base
        self.dashboard = LiveDashboard()
        self.error: str | None = None  # traceback of an exception that escaped the last run
        self._exception: BaseException | None = None
        self._summary: TrainSummary | None = None
        self._thread: threading.Thread | None = None
        self._running = False  # True from start() until the thread has recorded the outcome
        self._stop: StopHandle | None = None
        self._build_controls()
        self._refresh()

    # -- widgets ------------------------------------------------------------------------------------------
    def _build_controls(self) -> None:
        c = self.config
        self.model = widgets.Text(value=str(c.model), description="model", style=_STYLE)
        self.precision = widgets.Dropdown(options=[(p.label, n) for n, p in PRECISIONS.items()],
                                          value=c.precision, description="precision", style=_STYLE)
        self.quantization = widgets.Dropdown(options=[(q.label, n) for n, q in QUANTIZATIONS.items()],
                                             value=c.quantization, description="quantization", style=_STYLE)
        self.r = widgets.BoundedIntText(value=c.r, min=BOUNDS["r"][0], max=BOUNDS["r"][1], description="r",
                                        style=_STYLE)
        self.max_steps = widgets.IntText(value=c.max_steps, description="max_steps (-1: epochs)", style=_STYLE)
        self.learning_rate = widgets.FloatText(value=c.learning_rate, description="learning_rate", style=_STYLE)
        self.batch_size = widgets.BoundedIntText(value=c.batch_size, min=BOUNDS["batch_size"][0],
                                                 max=BOUNDS["batch_size"][1], description="batch_size", style=_STYLE)
        self.max_seq_length = widgets.BoundedIntText(value=c.max_seq_length, min=BOUNDS["max_seq_length"][0],
                                                     max=BOUNDS["max_seq_length"][1], description="max_seq_length",
                                                     style=_STYLE)
        self.start_button = widgets.Button(description="Start", button_style="success", icon="play")
        self.start_button.add_class("lorakit-start")
        self.stop_button = widgets.Button(description="Stop", button_style="danger", icon="stop")
        self.stop_button.add_class("lorakit-stop")
        self.start_button.on_click(self._on_start_click)
        self.stop_button.on_click(self._on_stop_click)
        self.message = widgets.HTML(value="")
        self.message.add_class("lorakit-message")
        self.preview = widgets.HTML(value="")
        self.preview.add_class("lorakit-preview")
        fields = [self.model, self.precision, self.quantization, self.r, self.max_steps, self.learning_rate,
                  self.batch_size, self.max_seq_length]
        grid = widgets.GridBox(fields, layout=widgets.Layout(grid_template_columns="repeat(3, minmax(0, 1fr))"))
        self._fields = fields
        self.widget = widgets.VBox([grid, widgets.HBox([self.start_button, self.stop_button]), self.message,
                                    self.dashboard.widget, self.preview])
        self.widget.add_class("lorakit-trainer-panel")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
        self.dashboard.display_static_slot()

    # -- control ------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._running

    @property
    def summary(self) -> TrainSummary | None:
        """How the last run ended; None while it runs or if it raised before producing a summary."""
        return self._summary

    def config_from_controls(self) -> TrainConfig:
        """The panel's config with the values in the controls; ValueError (naming the field) if one is bad."""
        return dataclasses.replace(
            self.config, model=self.model.value.strip(), precision=self.precision.value,
            quantization=self.quantization.value, r=self.r.value, max_steps=self.max_steps.value,
            learning_rate=self.learning_rate.value, batch_size=self.batch_size.value,
            max_seq_length=self.max_seq_length.value)

    def start(self) -> bool:
        """Launch a run in a background thread; False (with a message) if one runs or the settings are bad."""
        if self.running:
            self._set_message("A run is already in progress: press Stop and wait for it to end before starting "
                              "another.", error=True)
            return False
        try:
            config = self.config_from_controls()
        except Exception as exc:  # noqa: BLE001 -- a button callback must show every failure, not drop it
            kind = "" if isinstance(exc, ValueError) else f"{type(exc).__name__}: "
            self._set_message(f"Cannot start: {kind}{exc}", error=True)
            return False
        self.config, self._summary, self._exception, self.error = config, None, None, None
        self._stop = StopHandle()
        self._thread = threading.Thread(target=self._run, args=(config, self._stop), name="lorakit-train",
                                        daemon=True)
        self._set_message("")
        self.dashboard.status.value = "Starting: loading the model and the data&hellip;"
        self._running = True
        self._thread.start()
        self._refresh()
        return True

    def stop(self) -> None:
        """Ask the run to end after the current step; the loop then saves the adapter."""
        if not self.running or self._stop is None:
            self._set_message("No run in progress.")
            return
        self._stop.request_stop("user")
        self._set_message("Stop requested: the run ends after the current step and saves the adapter.")

    def wait(self, timeout: float | None = None) -> TrainSummary | None:
        """Block until the run ends (or timeout seconds pass); re-raise an exception that escaped the run."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self._thread is not None and self._thread.is_alive():
            return None
        # Update the static figure again from the notebook's own thread: its output then belongs to the
        # running cell, which is what nbconvert/nbval record.
        self.dashboard.show_static()
        if self._exception is not None:
            raise RuntimeError(f"the training run failed: {self._exception}") from self._exception
        return self._summary

    def _run(self, config: TrainConfig, stop: StopHandle) -> None:
        """Thread body: run, then record the outcome; any exception is kept for the panel and wait()."""
        import lorakit.training as train_module  # looked up at call time so tests can substitute train()

        try:
            self._summary = train_module.train(config, sinks=(self.dashboard,), stop=stop)
        except BaseException as exc:  # noqa: BLE001 -- everything must reach the panel, nothing may be lost
            self._exception = exc
            self.error = traceback.format_exc()
        finally:
            self._running = False
            self._refresh()

    # -- handlers -----------------------------------------------------------------------------------------
    def _on_start_click(self, _button: widgets.Button) -> None:
        self.start()

    def _on_stop_click(self, _button: widgets.Button) -> None:
        self.stop()

    def _set_message(self, text: str, *, error: bool = False) -> None:
        escaped = html.escape(text)
        self.message.value = f"<span style='color:#b00020'>{escaped}</span>" if error and text else escaped

    def _refresh(self) -> None:
        """Bring every control in line with the state: buttons, editable fields, status and preview."""
        running = self.running
        self.start_button.disabled = running
        self.stop_button.disabled = not running
        for field in self._fields:
            field.disabled = running
        if running:
            self.preview.value = ""
            return
        if self._exception is not None:
            self.dashboard.status.value = html.escape(
                f"Failed: {type(self._exception).__name__}: {self._exception}")
            self.message.value = ("<details><summary>Traceback</summary><pre>"
                                  f"{html.escape(self.error or '')}</pre></details>")
        elif self._summary is not None:
            self.dashboard.status.value = html.escape(describe_summary(self._summary))
            self.preview.value = preview_html(self._summary)
            if self._summary.warnings:
                self._set_message("Warnings: " + " ".join(self._summary.warnings))
