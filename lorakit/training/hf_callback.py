"""MetricsCallback: a ``transformers.TrainerCallback`` that forwards a Trainer's events to lorakit MetricsSinks.

Whatever watches lorakit's own loop (a LiveDashboard, a JsonlSink, your own sink) can then watch an existing
``Trainer`` run too: ``logs['loss']``, ``logs['learning_rate']``, ``logs['eval_loss']``, ``state.global_step``
and ``state.max_steps`` become the same StartInfo / StepRecord / EvalRecord / TrainSummary the loop emits,
with memory measured as the loop measures it (torch.cuda's allocated / reserved / peak on a GPU, the process
RSS always). A StopHandle works as in ``lorakit.train``: the Trainer stops at the end of the current
optimizer step. No widgets here; ``lorakit.widgets.hf_callback`` adds the dashboard and a Stop button.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

from transformers import TrainerCallback

from lorakit.quantization import recognize
from lorakit.training.events import (
    EvalRecord,
    MetricsSink,
    SinkFanout,
    StartInfo,
    StepRecord,
    StopHandle,
    TrainSummary,
)
from lorakit.training.modeling import count_params
from lorakit.training.parts import memory_stats

__all__ = ["MetricsCallback"]


def precision_of(args: Any) -> str:
    """The lorakit precision name of TrainingArguments (bf16 / fp16 / tf32 / fp32)."""
    if getattr(args, "bf16", False):
        return "bf16"
    if getattr(args, "fp16", False):
        return "fp16"
    return "tf32" if getattr(args, "tf32", None) else "fp32"


def quantization_of(model: Any) -> str:
    """The lorakit quantization name of a model's quantization config ('none' without one, 'other' if unknown)."""
    return recognize(getattr(getattr(model, "config", None), "quantization_config", None))


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=4)


class MetricsCallback(TrainerCallback):
    """Send a Trainer's begin / log / eval / end events to lorakit sinks; stop when ``stop`` asks.

    A sink that raises is reported once (a RuntimeWarning) and detached; the training goes on.
    """

    def __init__(self, sinks: Sequence[MetricsSink] = (), stop: StopHandle | None = None) -> None:
        self._events = SinkFanout(sinks, report=_warn)
        self.stop = stop if stop is not None else StopHandle()
        self._start_time = 0.0
        self._tokens_mark: tuple[float, int] | None = None
        self._last_loss: float | None = None

    @property
    def sinks(self) -> list[MetricsSink]:
        """The sinks still attached (one that raised is detached)."""
        return self._events.sinks

    def emit(self, method: str, *payload: Any) -> None:
        """Call every sink that has the method; a failing sink is dropped with a warning."""
        self._events.emit(method, *payload)

    # -- TrainerCallback ----------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._start_time, self._tokens_mark, self._last_loss = time.monotonic(), None, None
        trainable, total = (None, None) if model is None else count_params(model)
        self.emit("on_train_start", StartInfo(
            total_steps=state.max_steps, output_dir=str(args.output_dir), device=str(args.device),
            precision=precision_of(args), quantization=quantization_of(model), trainable_params=trainable,
            total_params=total, predicted_peak_bytes=None, start_step=state.global_step, warnings=[],
            config={"trainer": "transformers.Trainer"}, choices={},
        ))
        self.emit("on_phase", "training", f"training: step {state.global_step + 1} of {state.max_steps}")

    def on_step_end(self, args, state, control, **kwargs):
        if self.stop.stop_requested:
            control.should_training_stop = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Train logs (with 'loss') become StepRecords, eval logs (with 'eval_loss') EvalRecords."""
        logs = logs or {}
        if "eval_loss" in logs:
            self.emit("on_eval", EvalRecord(step=state.global_step, eval_loss=logs["eval_loss"]))
        if "loss" not in logs:
            return
        now = time.monotonic()
        elapsed = now - self._start_time
        steps_left = max(state.max_steps - state.global_step, 0)
        self._last_loss = float(logs["loss"])
        self.emit("on_log", StepRecord(
            step=state.global_step, epoch=state.epoch, loss=self._last_loss,
            learning_rate=logs.get("learning_rate"), tokens_per_s=self._tokens_per_s(now, state),
            tokens_seen=state.num_input_tokens_seen or None, elapsed_s=elapsed,
            eta_s=elapsed / state.global_step * steps_left if state.global_step else None,
            **memory_stats(args.device.type),
        ))

    def _tokens_per_s(self, now: float, state) -> float | None:
        """Input tokens per second since the previous log; needs include_num_input_tokens_seen."""
        seen = state.num_input_tokens_seen or 0
        mark, self._tokens_mark = self._tokens_mark, (now, seen)
        if not seen:
            return None
        since, seen_before = mark if mark else (self._start_time, 0)
        return (seen - seen_before) / (now - since) if now > since else None

    def on_train_end(self, args, state, control, **kwargs):
        stopped = self.stop.stop_requested and state.global_step < state.max_steps
        steps = f"{state.global_step}/{state.max_steps} steps"
        self.emit("on_train_end", TrainSummary(
            status="stopped" if stopped else "completed",
            message=f"Stopped by {self.stop.reason or 'user'} after {steps}" if stopped else "",
            steps_done=state.global_step, total_steps=state.max_steps, final_loss=self._last_loss,
            output_dir=str(args.output_dir), adapter_dir=None, metrics_path="",
            elapsed_s=time.monotonic() - self._start_time,
        ))
