"""TrainerPanel: start, watch, stop and resume a LoRA fine-tune from a notebook.

Start runs ``lorakit.training.train`` in a background thread (``BackgroundRun``) with a :class:`LiveDashboard`
sink and a ``StopHandle``; the notebook stays responsive. Every Start writes to a new run folder, so a stopped
run's adapter and checkpoint are never overwritten; Resume continues a run from its checkpoint (the last run,
or any run folder typed in), in that run's folder. Stop asks the loop to end after the current step; the loop
then saves the adapter and a resumable checkpoint, and the panel says what happened and where they are. An
exception that escapes the run is shown in the panel (and re-raised by :meth:`TrainerPanel.wait`).

The settings are TrainConfig's own fields, with its names, choices and bounds (``ConfigForm``); showing one
more field is one more name in ``FIELDS``.
"""

from __future__ import annotations

import dataclasses
import html
from datetime import datetime
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from lorakit.training.config import TrainConfig
from lorakit.training.events import StopHandle, TrainSummary
from lorakit.widgets.config_form import ConfigForm
from lorakit.widgets.fit_views import FitLedgerView, LengthSection
from lorakit.widgets.live_dashboard import LiveDashboard, describe_summary
from lorakit.widgets.lora_views import LoraUpdateView
from lorakit.widgets.runtime import BackgroundRun
from lorakit.widgets.what_changed import WhatChanged

__all__ = ["FIELDS", "TrainerPanel", "new_run_dir", "preview_html"]

# The TrainConfig fields the panel shows, in this order (preview_prompts last: it spans the form's width).
FIELDS = ("model", "dataset", "precision", "quantization", "r", "max_steps", "learning_rate", "batch_size",
          "max_seq_length", "gradient_checkpointing", "loss_kernel", "compile", "preview_prompts")

HELP = ("Hover over a field for what it takes: <i>dataset</i> lists the shapes of examples lorakit reads, "
        "<i>max_steps</i> -1 trains for num_train_epochs. <i>preview_prompts</i>: your questions, answered before "
        "and after training; left empty, held-out examples of the dataset are. <i>auto</i> settings are decided "
        "when the run starts; the choice and its reason appear under the status line. Start always writes to a "
        "new run folder; Resume continues the run folder below from its checkpoint.")


def new_run_dir(output_dir: str | Path | None) -> Path:
    """A folder no run has written to: ``output_dir`` while it is missing or empty, else ``output_dir-2``,
    ``-3``, ...; with no output_dir, ``runs/<timestamp>`` (made unique the same way)."""
    base = Path(output_dir) if output_dir else Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, n = base, 1
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.1f} %"


def score_line(summary: TrainSummary, kind: str = "exact_match") -> str:
    """A held-out score ("exact_match" or "format_match") before and after, in words, saying why one is missing."""
    before, after = getattr(summary, f"{kind}_before"), getattr(summary, f"{kind}_after")
    if before is None and after is None:
        return ""
    if before is not None and after is not None:
        return f"{_percent(before)} before &rarr; {_percent(after)} after training"
    if after is None:
        ended = "was stopped" if summary.status == "stopped" else f"ended with status {html.escape(summary.status)}"
        return (f"{_percent(before)} before training; not scored after it: the run {ended} after "
                f"{summary.steps_done} of {summary.total_steps} steps, and answers are scored only when a run "
                "completes")
    return f"{_percent(after)} after training (resumed run: the score before training was taken in its first part)"


SCORES = {  # summary field -> what the score counts
    "format_match": "Format match (answers in the task's form, right or not)",
    "exact_match": "Exact match on held-out questions",
}


def preview_html(summary: TrainSummary) -> str:
    """The generation preview (prompt | held-out answer | before | after) and the held-out scores as an HTML
    fragment; a column the run never reached (answers after a run stopped before them) is left out."""
    parts = []
    for kind, label in SCORES.items():
        line = score_line(summary, kind)
        if line:
            parts.append(f"<p><b>{label}:</b> {line}</p>")
    after = ("after training" if summary.status == "completed"
             else f"after {summary.steps_done} of {summary.total_steps} steps")
    columns = {"prompt": "prompt", "expected": "held-out answer", "before": "before training", "after": after}
    rows = summary.preview
    shown = [key for key in columns if key == "prompt" or any(row.get(key) for row in rows)]
    if rows and len(shown) > 1:
        cell = "<td style='text-align:left;vertical-align:top'>{}</td>"
        body = "".join("<tr>" + "".join(cell.format(html.escape(str(row.get(k, "")))) for k in shown) + "</tr>"
                       for row in rows)
        head = "".join(f"<th style='text-align:left'>{columns[k]}</th>" for k in shown)
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    return "".join(parts)


def _button(description: str, style: str, icon: str, css: str) -> widgets.Button:
    button = widgets.Button(description=description, button_style=style, icon=icon)
    button.add_class(css)
    return button


class TrainerPanel(widgets.VBox):
    """Start / Resume / Stop, TrainConfig's main fields, a live dashboard and the before/after preview.

    ``fields`` maps each shown TrainConfig field to its control (``panel.fields["max_steps"].value = 50``).
    """

    def __init__(self, config: TrainConfig | None = None, **overrides: Any) -> None:
        base = config if config is not None else TrainConfig()
        self.config = dataclasses.replace(base, **overrides) if overrides else base
        if self.config.check_fit == "auto":  # a person at the panel wants to know before the run, on any device
            self.config = dataclasses.replace(self.config, check_fit=True)
        self._output_base = self.config.output_dir  # Start makes a new folder from this each time
        self.run_dir: Path | None = None  # the folder of the last run started from this panel
        self.dashboard = LiveDashboard(views=[FitLedgerView(), LoraUpdateView()])
        self.what_changed = WhatChanged()  # after a run: the adapter against its base
        self._runner = BackgroundRun("lorakit-train")
        self._stop: StopHandle | None = None
        super().__init__(children=self._build_controls())
        self.add_class("lorakit-trainer-panel")
        self._refresh()

    # -- widgets ------------------------------------------------------------------------------------------
    def _build_controls(self) -> list[widgets.Widget]:
        """The panel's rows: the fields, help, buttons, message, dashboard and preview."""
        self.form = ConfigForm(self.config, FIELDS)
        self.fields = self.form.controls  # field name -> control
        self.start_button = _button("Start", "success", "play", "lorakit-start")
        self.resume_button = _button("Resume", "info", "forward", "lorakit-resume")
        self.stop_button = _button("Stop", "danger", "stop", "lorakit-stop")
        self.start_button.on_click(self._on_start_click)
        self.resume_button.on_click(self._on_resume_click)
        self.stop_button.on_click(self._on_stop_click)
        self.resume_from = widgets.Text(description="resume from", placeholder="a run folder with a checkpoint",
                                        style={"description_width": "initial"},
                                        layout=widgets.Layout(flex="1 1 12em", min_width="12em"))
        self.resume_from.add_class("lorakit-resume-from")
        help_line = widgets.HTML(f"<div style='line-height:1.35;margin:2px 0 6px'><small>{HELP}</small></div>")
        self.message = widgets.HTML(value="")
        self.message.add_class("lorakit-message")
        self.preview = widgets.HTML(value="")
        self.preview.add_class("lorakit-preview")
        buttons = widgets.HBox([self.start_button, self.resume_button, self.stop_button, self.resume_from],
                               layout=widgets.Layout(flex_flow="row wrap", align_items="center"))
        self.lengths = LengthSection(self.config_from_controls, self.fields)
        return [self.form, self.lengths, help_line, buttons, self.message, self.dashboard, self.preview,
                self.what_changed]

    def _ipython_display_(self) -> None:
        """The live panel, then the output that keeps a static copy of the final figure."""
        from IPython.display import display

        display(self._repr_mimebundle_(), raw=True)
        self.dashboard.display_static_slot()

    # -- control ------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._runner.running

    @property
    def summary(self) -> TrainSummary | None:
        """How the last run ended; None while it runs or if it raised before producing a summary."""
        return None if self._runner.running else self._runner.result

    @property
    def error(self) -> str | None:
        """The traceback of an exception that escaped the last run."""
        return self._runner.traceback

    def config_from_controls(self) -> TrainConfig:
        """The panel's config with the values in the controls; ValueError (naming the field) if one is bad."""
        return self.form.apply(self.config)

    def start(self) -> bool:
        """Launch a new run, in a new folder, in a background thread; False (with a message) if it cannot."""
        config = self._checked_config()
        if config is None:
            return False
        folder = new_run_dir(self._output_base)
        config = dataclasses.replace(config, output_dir=str(folder))
        return self._launch(config, None, f"Starting a new run in {folder}: loading the model and the data")

    def resume(self, run_dir: str | Path | None = None) -> bool:
        """Continue a run from its checkpoint (``run_dir``, else the folder in 'resume from', else the last run).

        The run goes on in its own folder with the settings in the controls; settings that shape the
        adapter (r, target modules, quantization) must be those it started with.
        """
        config = self._checked_config()
        if config is None:
            return False
        folder = run_dir or self.resume_from.value.strip() or self.run_dir
        if not folder:
            self._set_message("Nothing to resume yet: start a run, or type a run folder in 'resume from'.",
                              error=True)
            return False
        from lorakit.training.checkpoint import checkpoint_step  # imports torch: only when resuming

        try:
            step = checkpoint_step(folder)
        except (OSError, ValueError, KeyError) as exc:
            self._set_message(f"Cannot resume from {folder}: {exc}", error=True)
            return False
        if 0 < config.max_steps <= step:
            self._set_message(f"The run in {folder} has already done {step} steps; raise max_steps above {step} "
                              "to train it further.", error=True)
            return False
        run_folder = Path(folder).parent if Path(folder).name == "checkpoint" else Path(folder)
        config = dataclasses.replace(config, output_dir=str(run_folder))
        return self._launch(config, str(folder), f"Resuming {run_folder} from step {step}: loading the model, "
                                                 "the data and the checkpoint")

    def _checked_config(self) -> TrainConfig | None:
        if self.running:
            self._set_message("A run is already in progress: press Stop and wait for it to end before starting "
                              "another.", error=True)
            return None
        try:
            return self.config_from_controls()
        except Exception as exc:  # noqa: BLE001 -- a button callback must show every failure, not drop it
            kind = "" if isinstance(exc, ValueError) else f"{type(exc).__name__}: "
            self._set_message(f"Cannot start: {kind}{exc}", error=True)
            return None

    def _launch(self, config: TrainConfig, resume_from: str | None, status: str) -> bool:
        self.config, self.run_dir = config, Path(config.output_dir)
        self._stop = StopHandle()
        self._set_message("")
        self.preview.value = ""
        self.what_changed.reset()
        self.dashboard.reset(html.escape(status) + "&hellip;")
        self._runner.start(self._train, config, self._stop, resume_from, on_done=self._refresh)
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
        if not self._runner.wait(timeout):
            return None
        # Update the static figure again from the notebook's own thread: its output then belongs to the
        # running cell, which is what nbconvert/nbval record.
        self.dashboard.show_static()
        exc = self._runner.exception
        if exc is not None:
            raise RuntimeError(f"the training run failed: {exc}") from exc
        return self.summary

    def _train(self, config: TrainConfig, stop: StopHandle, resume_from: str | None) -> TrainSummary:
        """Thread body (``BackgroundRun`` keeps the outcome)."""
        import lorakit.training as train_module  # looked up at call time so tests can substitute train()

        summary = train_module.train(config, sinks=(self.dashboard,), stop=stop, resume_from=resume_from)
        self.what_changed.show_run(summary, config)
        return summary

    # -- handlers -----------------------------------------------------------------------------------------
    def _on_start_click(self, _button: widgets.Button) -> None:
        self.start()

    def _on_resume_click(self, _button: widgets.Button) -> None:
        self.resume()

    def _on_stop_click(self, _button: widgets.Button) -> None:
        self.stop()

    def _set_message(self, text: str, *, error: bool = False) -> None:
        escaped = html.escape(text)
        self.message.value = f"<span style='color:#b00020'>{escaped}</span>" if error and text else escaped

    def _refresh(self) -> None:
        """Bring every control in line with the state: buttons, editable fields, messages and preview."""
        running = self.running
        self.start_button.disabled = self.resume_button.disabled = running
        self.stop_button.disabled = not running
        self.form.disabled = self.resume_from.disabled = running
        if running or self._stop is None:  # running, or no run yet
            return
        exc, summary = self._runner.exception, self._runner.result
        if self.run_dir is not None and self.run_dir.exists():  # a refused run made no folder to resume
            self.resume_from.value = str(self.run_dir)
        if isinstance(exc, ValueError):  # train() refuses a configuration before anything loads
            self.dashboard.status.value = html.escape(f"Refused before anything loaded: {exc}")
            self._set_message(f"Cannot start: {exc}", error=True)
        elif exc is not None:
            self.dashboard.status.value = html.escape(f"Failed: {type(exc).__name__}: {exc}")
            self.message.value = ("<details><summary>Traceback</summary><pre>"
                                  f"{html.escape(self.error or '')}</pre></details>")
        elif summary is not None:
            self.dashboard.status.value = html.escape(describe_summary(summary))
            self.preview.value = preview_html(summary)
            self._set_message("Warnings: " + " ".join(summary.warnings) if summary.warnings else "")
