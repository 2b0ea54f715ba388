"""What a run tells the world: the stop handle, metric sinks and the fan-out to them, the JSONL log and the
final summary."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

STATUSES = ("completed", "stopped", "error", "oom", "interrupted")
PHASES = ("loading", "evaluating", "generating", "training", "saving")


class StopHandle:
    """Thread-safe request to end a run after the current optimizer step."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None

    def request_stop(self, reason: str = "user") -> None:
        self.reason = reason
        self._event.set()

    @property
    def stop_requested(self) -> bool:
        return self._event.is_set()


class StartInfo(TypedDict, total=False):
    """``on_train_start``: the run's set-up."""

    total_steps: int
    output_dir: str
    device: str  # "cpu" or "cuda"
    precision: str
    quantization: str
    trainable_params: int
    total_params: int
    predicted_peak_bytes: int | None  # the planner's peak for this run (None: not modelled)
    start_step: int  # > 0 when resuming
    warnings: list[str]
    config: dict  # TrainConfig.to_dict()
    choices: dict[str, dict]  # each "auto" setting as resolved: {"value": ..., "reason": "..."}
    num_processes: int  # processes training together (data parallel)
    distributed: str  # "ddp" or "fsdp" (how they share the model when num_processes > 1)
    global_batch_size: int  # examples per optimizer step: batch_size x num_processes x accumulation
    fit: dict | None  # lorakit.training.fit.FitReport.as_dict() when the run checked its fit before step 1


class StepRecord(TypedDict, total=False):
    """``on_log``: one logging window (loss averaged over its optimizer steps). Bytes in *_bytes."""

    step: int
    epoch: float
    loss: float
    learning_rate: float
    tokens_per_s: float
    tokens_seen: int
    elapsed_s: float
    eta_s: float
    mem_allocated_bytes: int | None  # torch.cuda counters (None on the CPU)
    mem_reserved_bytes: int | None
    mem_peak_bytes: int | None
    rss_bytes: int | None  # the process's resident memory
    # several processes: each field above is its largest value over them, and this holds every one's
    memory_by_rank: list[dict]
    lora: dict  # log_lora_stats: the adapter's update per block x module type (lora_stats.update_grid)


class EvalRecord(TypedDict, total=False):
    """``on_eval``: the held-out loss (and exact match, 0..1, when computed; format match for built-in tasks)."""

    step: int
    eval_loss: float | None
    exact_match: float | None
    format_match: float | None  # answers in the reference's form (a bare number, one JSON line), right or not


class ProgressRecord(TypedDict, total=False):
    """``on_progress``: how far an evaluation or a preview is, after each of its batches. Seconds in *_s."""

    step: int  # the optimizer steps done (0 before training)
    phase: str  # "evaluating" or "generating" (as in on_phase)
    detail: str  # what is done so far, in words: "16 of 43 answered"
    done: int
    total: int
    elapsed_s: float  # the run's wall time so far (as in StepRecord)
    part_eta_s: float | None  # seconds left of this part, at its rate so far (None before its first batch)
    eta_s: float | None  # seconds left of the whole run (None where not yet known: before training)


class MetricsSink:
    """Receives a run's events on the training thread; override what you need and keep it cheap."""

    def on_phase(self, phase: str, detail: str) -> None:
        """What the run is busy with when it is not taking steps, for a status line.

        ``phase`` is one of PHASES; ``detail`` is a short sentence such as "evaluating 45 held-out questions".
        """

    def on_train_start(self, info: StartInfo) -> None:
        """Once, after set-up: total_steps, output_dir, device, precision, ..., predicted_peak_bytes, config."""

    def on_log(self, record: StepRecord) -> None:
        """Every logging_steps: step, epoch, loss, learning_rate, tokens_per_s, memory (bytes), ..."""

    def on_progress(self, record: ProgressRecord) -> None:
        """During an evaluation or a preview, after each batch: how far it is and the time left."""

    def on_eval(self, record: EvalRecord) -> None:
        """After each evaluation: step, eval_loss (+ exact_match when computed)."""

    def on_train_end(self, summary: TrainSummary) -> None:
        """Once, whatever the outcome (also after an error or a stop)."""


class SinkFanout:
    """Calls every sink that has an event's method, in order. A sink that raises is detached and its error
    reported once through ``report`` (a sentence); the run goes on, since a display bug must not end it.

    The one fan-out of lorakit: the training loop, the multi-process launcher (the caller's sinks fed with rank
    0's events) and the transformers callback all send their events through one.
    """

    def __init__(self, sinks: Sequence[MetricsSink], report: Callable[[str], None]) -> None:
        self.sinks = list(sinks)
        self.report = report

    def emit(self, method: str, *payload: Any) -> None:
        for sink in list(self.sinks):
            handler = getattr(sink, method, None)
            if handler is None:  # a duck-typed sink without this (newer) event
                continue
            try:
                handler(*payload)
            except Exception as exc:  # noqa: BLE001 -- a display bug must not kill a training run
                self.sinks.remove(sink)
                self.report(f"metrics sink {type(sink).__name__} failed in {method} and was detached: {exc!r}")


@dataclass
class TrainSummary:
    """How a run ended. Bytes in *_bytes, seconds in *_s.

    Where the time went, this process's session of the run: ``train_s`` in the training loop's steps and
    logging (``tokens_per_s`` = the tokens trained in this session / ``train_s``), ``eval_s`` evaluating and
    answering the preview prompts (before, during and after training), ``save_s`` writing checkpoints and the
    adapter. ``elapsed_s`` is the run's wall time from the start (loading included) to its end, with the earlier
    sessions of a resumed run; so train_s + eval_s + save_s <= elapsed_s, and the rest is loading, set-up and
    compiling.
    """

    status: str
    message: str
    steps_done: int
    total_steps: int
    final_loss: float | None
    output_dir: str
    adapter_dir: str | None
    metrics_path: str
    peak_memory_bytes: int | None = None
    tokens_per_s: float | None = None
    elapsed_s: float | None = None
    preview: list[dict] = field(default_factory=list)
    exact_match_before: float | None = None
    exact_match_after: float | None = None
    format_match_before: float | None = None  # built-in tasks only: answers in the expected form
    format_match_after: float | None = None
    warnings: list[str] = field(default_factory=list)
    traceback: str | None = None  # for status "error": where it happened
    host_reads: dict[str, int] = field(default_factory=dict)  # device->host reads of the loop, by reason
    choices: dict[str, dict] = field(default_factory=dict)  # the resolved "auto" settings and why
    compile_s: float | None = None  # seconds compiling the decoder blocks took (None: not compiled)
    num_processes: int = 1
    global_batch_size: int | None = None  # examples per optimizer step over all processes
    train_s: float | None = None  # seconds in the training loop (steps and logging)
    eval_s: float | None = None  # seconds evaluating and answering previews
    save_s: float | None = None  # seconds writing checkpoints and the adapter

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a file so readers see the old or the new content, never half of it (temp file + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


class JsonlSink(MetricsSink):
    """Appends every record to metrics.jsonl, one flushed line per record, so a crash loses at most one line."""

    def __init__(self, path: str | Path, append: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115 -- closed at end

    def _write(self, record: dict) -> None:
        if self._file.closed:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def on_log(self, record: dict) -> None:
        self._write({"kind": "train", **record})

    def on_eval(self, record: dict) -> None:
        self._write({"kind": "eval", **record})

    def on_train_end(self, summary: TrainSummary) -> None:
        self.close()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The records of a run's metrics.jsonl (a run directory or the file itself); a torn last line is skipped."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / "metrics.jsonl"
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # only a crash mid-write produces this, and only on the last line
    return records


def trim_metrics(run_dir: str | Path, last_step: int) -> None:
    """Keep only the records up to last_step (a resumed run logs the later steps again), atomically."""
    path = Path(run_dir) / "metrics.jsonl"
    if path.exists():
        kept = [r for r in read_metrics(path) if r.get("step", 0) <= last_step]
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
