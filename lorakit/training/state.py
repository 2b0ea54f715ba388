"""The state of one run in one process, as typed records: what the loop reads and writes, and nothing hidden.

``RunState`` holds the settings the run started with, the parts once built (``parts.Parts``), where it is
(``Progress``, saved in every checkpoint), the logging window being filled, where the time went (``Timings``),
the scores and answers before and after training (``Scores``), and what it will report (warnings, device
reads). ``loop.py`` is the only writer; evaluation and reporting are given the pieces they need.
"""

from __future__ import annotations

import collections
import contextlib
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from lorakit.training.config import TrainConfig
from lorakit.training.distributed import Ranks
from lorakit.training.events import SinkFanout, StopHandle

__all__ = ["Progress", "RunState", "Scores", "Timings", "Window"]


@dataclass
class Progress:
    """Where the run is: saved in every checkpoint (with total_steps) and restored by a resume."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    position: int = 0  # batches of this epoch's order consumed
    tokens_seen: int = 0  # tokens trained on, earlier sessions of a resumed run included
    elapsed_s: float = 0.0  # wall seconds of the earlier sessions (0 for a new run)


@dataclass
class Window:
    """The logging window being filled: optimizer steps, tokens and its start (perf_counter seconds)."""

    steps: int = 0
    tokens: int = 0
    start: float = field(default_factory=lambda: time.perf_counter())


@dataclass
class Timings:
    """Seconds this session spent training (steps and logging), evaluating (and previewing) and saving."""

    train_s: float = 0.0
    eval_s: float = 0.0
    save_s: float = 0.0

    @contextlib.contextmanager
    def measure(self, what: str):
        """Add the block's wall time to ``<what>_s`` ("train", "eval" or "save"), whatever it raises."""
        start = time.perf_counter()
        try:
            yield
        finally:
            name = f"{what}_s"
            setattr(self, name, getattr(self, name) + time.perf_counter() - start)


@dataclass
class Scores:
    """Held-out scores (0..1, None: not measured) and preview answers, before and after training.

    ``preview_prompts`` are the preview's questions as shown, ``preview_expected`` the held-out answers where
    the questions are held-out examples (None for the user's own prompts). ``before_s``: the seconds the
    evaluation before training took, the estimate of the one after it.
    """

    exact_match_before: float | None = None
    exact_match_after: float | None = None
    format_match_before: float | None = None
    format_match_after: float | None = None
    preview_prompts: list[str] = field(default_factory=list)
    preview_expected: list[str | None] = field(default_factory=list)
    preview_before: list[str] = field(default_factory=list)
    preview_after: list[str] = field(default_factory=list)
    before_s: float | None = None

    BEFORE = ("exact_match_before", "format_match_before", "preview_prompts", "preview_before", "before_s")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def before(self) -> dict[str, Any]:
        """What was measured before training, for the checkpoint: a resumed run reports it too."""
        return {name: getattr(self, name) for name in self.BEFORE}

    def restore_before(self, saved: dict[str, Any] | None) -> None:
        """Take the scores before training from a checkpoint's ``before()``; the preview's answers only when
        the resumed run asks the same questions."""
        if not saved:
            return
        same_questions = saved.get("preview_prompts") == self.preview_prompts
        for name in self.BEFORE:
            if name in saved and (same_questions or not name.startswith("preview")):
                setattr(self, name, saved[name])


@dataclass
class RunState:
    """One run in this process, from set-up to clean-up."""

    config: TrainConfig
    out: Path  # the run folder
    device: str  # "cpu" or "cuda"
    ranks: Ranks
    stop: StopHandle
    events: SinkFanout  # emit(method, *payload) to every sink
    model_path: str = ""  # the model's folder (or hub id), resolved once
    parts: Any = None  # parts.Parts once built; None again after clean-up
    compiler: Any = None  # compile.BlockCompiler, made with the parts
    update_tracker: Any = None  # lora_stats.UpdateTracker when the run logs its adapter's update (rank 0)
    progress: Progress = field(default_factory=Progress)
    total_steps: int = 0
    first_step: int = 0  # progress.step when this session began (> 0 when resuming)
    window: Window = field(default_factory=Window)
    timings: Timings = field(default_factory=Timings)
    scores: Scores = field(default_factory=Scores)
    loss_sum: torch.Tensor | None = None  # the window's summed loss, on the device until logged
    final_loss: float | None = None  # the last logged window's mean loss
    session_tokens: int = 0  # tokens trained on in this session (tokens_per_s = session_tokens / train_s)
    peak_rss: int = 0  # largest resident memory seen at a logging step (bytes)
    started: float = field(default_factory=lambda: time.perf_counter())  # this session's start
    loop_started: float | None = None  # when the training loop began (the ETA's rate)
    after_started: float | None = None  # when the evaluation after training began
    host_reads: collections.Counter = field(default_factory=collections.Counter)  # device reads by reason
    warnings: list[str] = field(default_factory=list)
    choices: dict[str, dict] = field(default_factory=dict)  # the resolved "auto" settings, once set up
    fit: Any = None  # fit.FitReport when the run checked its fit before step 1
    traceback: str | None = None  # of an error that ended the run
    order: list = field(default_factory=list)  # the batch order of progress.epoch (computed once per epoch)
    order_epoch: int | None = None
    preview: list = field(default_factory=list)  # evaluation.PreviewItem: the preview's questions, once set up

    def read(self, value: torch.Tensor, reason: str) -> float | list:
        """The run's only way to read a device value (a sync on a GPU); counted in host_reads by reason."""
        self.host_reads[reason] += 1
        return value.item() if value.numel() == 1 else value.tolist()

    def warn(self, message: str) -> None:
        """Keep a warning for the summary, and say it (once: every rank has the same warnings, rank 0 says it)."""
        self.warnings.append(message)
        if self.ranks.is_main:
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    def epoch_order(self, batches) -> list:
        """The order of the current epoch's batches (``Batches.order``), computed once per epoch."""
        if self.order_epoch != self.progress.epoch:
            self.order, self.order_epoch = batches.order(self.progress.epoch), self.progress.epoch
        return self.order

    def elapsed_s(self) -> float:
        """Wall seconds of the run so far, the earlier sessions of a resumed run included."""
        return self.progress.elapsed_s + time.perf_counter() - self.started

    def checkpoint_state(self) -> dict:
        """What state.json of a checkpoint records: the progress, with the elapsed time up to now."""
        return {"step": self.progress.step, "epoch": self.progress.epoch, "position": self.progress.position,
                "tokens_seen": self.progress.tokens_seen, "elapsed_s": self.elapsed_s(),
                "total_steps": self.total_steps, "before": self.scores.before()}
