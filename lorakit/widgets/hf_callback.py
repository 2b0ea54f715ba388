"""LiveDashboardCallback: lorakit's live plots and a Stop button for an existing transformers ``Trainer``.

It maps the Trainer's events onto a :class:`LiveDashboard` (``logs['loss']``, ``logs['learning_rate']``,
``logs['eval_loss']``, ``state.global_step``, ``state.max_steps``) and adds memory, measured as lorakit's own
loop measures it: torch.cuda's allocated / reserved / peak on a GPU, the process RSS always. Stop sets ``control.should_training_stop`` at the next
step end.

A button click reaches the kernel only when the kernel is not busy running a cell, so for a working Stop
button run the Trainer in the background with :meth:`LiveDashboardCallback.start_training` (the plots
update either way).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import ipywidgets as widgets
from transformers import TrainerCallback

from lorakit.training.events import TrainSummary
from lorakit.training.modeling import count_params
from lorakit.training.parts import memory_stats
from lorakit.widgets.live_dashboard import LiveDashboard, in_ipython

__all__ = ["LiveDashboardCallback"]


def _precision(args: Any) -> str:
    return "bf16" if getattr(args, "bf16", False) else "fp16" if getattr(args, "fp16", False) else "fp32"


def _quantization(model: Any) -> str:
    qconfig = getattr(getattr(model, "config", None), "quantization_config", None)
    if qconfig is None:
        return "none"
    if isinstance(qconfig, dict):
        return "nf4/fp4" if qconfig.get("load_in_4bit") else "int8" if qconfig.get("load_in_8bit") else "other"
    if getattr(qconfig, "load_in_4bit", False):
        return str(getattr(qconfig, "bnb_4bit_quant_type", "4bit"))
    return "int8" if getattr(qconfig, "load_in_8bit", False) else "other"


def _param_counts(model: Any) -> tuple[int | None, int | None]:
    return (None, None) if model is None else count_params(model)


class LiveDashboardCallback(TrainerCallback):
    """A TrainerCallback that draws live loss / LR / tokens/s / memory plots and offers a Stop button."""

    def __init__(self, dashboard: LiveDashboard | None = None, *, display: bool = True) -> None:
        self.dashboard = dashboard if dashboard is not None else LiveDashboard()
        self.display = display
        self.stop_requested = False
        self.stop_button = widgets.Button(description="Stop", button_style="danger", icon="stop")
        self.stop_button.add_class("lorakit-stop")
        self.stop_button.on_click(self._on_stop_click)
        self.widget = widgets.VBox([self.stop_button, self.dashboard.widget])
        self.widget.add_class("lorakit-hf-dashboard")
        self._displayed = False
        self._start_time = 0.0
        self._tokens_mark: tuple[float, int] | None = None
        self._last_loss: float | None = None
        self._thread: threading.Thread | None = None
        self._exception: BaseException | None = None

    # -- display and control ------------------------------------------------------------------------------
    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
        self.dashboard.display_static_slot()
        self._displayed = True

    def _on_stop_click(self, _button: widgets.Button) -> None:
        self.request_stop()

    def request_stop(self) -> None:
        """Make the Trainer stop at the end of the current optimizer step."""
        self.stop_requested = True
        self.stop_button.disabled = True
        self.dashboard.status.value = "Stop requested: the Trainer stops at the end of this step."

    def start_training(self, trainer: Any, **train_kwargs: Any) -> threading.Thread:
        """Run ``trainer.train(**train_kwargs)`` in a background thread, so the notebook (and Stop) stay live."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("this callback's Trainer is already running; press Stop or call wait() first")
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        self._exception = None
        self._thread = threading.Thread(target=self._train_body, args=(trainer, train_kwargs),
                                        name="lorakit-hf-train", daemon=True)
        self._thread.start()
        return self._thread

    def _train_body(self, trainer: Any, train_kwargs: dict) -> None:
        try:
            trainer.train(**train_kwargs)
        except BaseException as exc:  # noqa: BLE001 -- kept for wait(), shown in the dashboard
            self._exception = exc
            self.dashboard.status.value = f"Failed: {type(exc).__name__}: {exc}"

    def wait(self, timeout: float | None = None) -> TrainSummary | None:
        """Block until a start_training() run ends; re-raise its exception; return the dashboard's summary."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return None
        self.dashboard.show_static()
        if self._exception is not None:
            raise RuntimeError(f"trainer.train() failed: {self._exception}") from self._exception
        return self.dashboard.summary

    # -- TrainerCallback ----------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        """Reset, show the dashboard (once, in IPython) and pass the run's set-up to it."""
        self.stop_requested, self.stop_button.disabled = False, False
        self._start_time, self._tokens_mark, self._last_loss = time.monotonic(), None, None
        if self.display and not self._displayed and in_ipython():
            self._ipython_display_()
        trainable, total = _param_counts(model)
        self.dashboard.on_train_start({
            "total_steps": state.max_steps, "output_dir": args.output_dir, "device": str(args.device),
            "precision": _precision(args), "quantization": _quantization(model), "trainable_params": trainable,
            "total_params": total, "predicted_peak_bytes": None, "config": {"trainer": "transformers.Trainer"},
        })

    def on_step_end(self, args, state, control, **kwargs):
        if self.stop_requested:
            control.should_training_stop = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Train logs (with 'loss') and eval logs (with 'eval_loss') go to the dashboard."""
        logs = logs or {}
        if "eval_loss" in logs:
            self.dashboard.on_eval({"step": state.global_step, "eval_loss": logs["eval_loss"]})
        if "loss" not in logs:
            return
        now = time.monotonic()
        elapsed = now - self._start_time
        steps_left = max(state.max_steps - state.global_step, 0)
        self._last_loss = float(logs["loss"])
        self.dashboard.on_log({
            "step": state.global_step, "epoch": state.epoch, "loss": self._last_loss,
            "learning_rate": logs.get("learning_rate"), "tokens_per_s": self._tokens_per_s(now, state),
            "tokens_seen": state.num_input_tokens_seen or None, "elapsed_s": elapsed,
            "eta_s": elapsed / state.global_step * steps_left if state.global_step else None,
            **memory_stats(args.device.type),
        })

    def _tokens_per_s(self, now: float, state) -> float | None:
        """Input tokens per second since the previous log; needs include_num_input_tokens_seen."""
        seen = state.num_input_tokens_seen or 0
        mark, self._tokens_mark = self._tokens_mark, (now, seen)
        if not seen:
            return None
        since, seen_before = mark if mark else (self._start_time, 0)
        return (seen - seen_before) / (now - since) if now > since else None

    def on_train_end(self, args, state, control, **kwargs):
        stopped = self.stop_requested and state.global_step < state.max_steps
        self.stop_button.disabled = True
        steps = f"{state.global_step}/{state.max_steps} steps"
        self.dashboard.on_train_end(TrainSummary(
            status="stopped" if stopped else "completed",
            message=f"Stopped by the Stop button after {steps}" if stopped else "",
            steps_done=state.global_step, total_steps=state.max_steps, final_loss=self._last_loss,
            output_dir=str(args.output_dir), adapter_dir=None, metrics_path="",
            elapsed_s=time.monotonic() - self._start_time,
        ))
