"""Where a run starts: ``train`` runs it in this process (``loop.run_process``), or starts num_processes > 1
processes from a notebook (accelerate's notebook_launcher); from a terminal the CLI re-runs itself under torchrun.
In a multi-process run the caller's process is no rank:

* it checks the config before any process starts (GPU count, resume, model and targets) and fixes the run
  folder, so every rank agrees on it;
* from a notebook, ``launch`` forks the ranks with ``notebook_launcher`` on a helper thread and stays the
  caller's: it feeds the caller's sinks with rank 0's events (a queue), forwards the caller's StopHandle to
  every rank (a shared flag) and returns rank 0's TrainSummary; a rank that fails ends the launch;
* from a terminal, ``torchrun_command`` is the command the CLI re-runs itself under.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import queue
import socket
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from lorakit.training import preflight
from lorakit.training.accelerator import launch_from_notebook
from lorakit.training.checkpoint import check_resume_processes, output_dir_for
from lorakit.training.checks import check_run_inputs
from lorakit.training.config import TrainConfig
from lorakit.training.distributed import launched_world
from lorakit.training.events import (
    MetricsSink,
    SinkFanout,
    StopHandle,
    TrainSummary,
    atomic_write_json,
    read_metrics,
)
from lorakit.training.loop import run_process

_REASON_BYTES = 64


def train(
    config: TrainConfig,
    *,
    sinks: Sequence[MetricsSink] = (),
    stop: StopHandle | None = None,
    resume_from: str | Path | None = None,
) -> TrainSummary:
    """Run a LoRA fine-tune synchronously and return its summary.

    Configuration problems (a precision this machine cannot run, a missing target module, ...) raise
    ValueError before anything loads. Once training starts, a stop request, an exception, out-of-memory or
    KeyboardInterrupt end the run cleanly: the adapter, metrics.jsonl and summary.json are on disk and the
    summary's status and message say what happened.

    With num_processes > 1 this starts the processes (accelerate's notebook_launcher) and returns rank 0's
    summary; the sinks receive rank 0's events. Inside processes started by torchrun or accelerate launch,
    each process calls train() and only rank 0 writes files and feeds its sinks.
    """
    if config.num_processes > 1 and launched_world()[0] == 1:
        return launch(config, sinks=sinks, stop=stop, resume_from=resume_from)
    return run_process(config, sinks=sinks, stop=stop, resume_from=resume_from)


def check_launch(config: TrainConfig, resume_from: str | Path | None) -> str:
    """What a multi-process run must pass before any process starts; returns the device. ValueError with advice.

    Nothing here initialises CUDA: a notebook's processes are forked, and a forked process cannot use CUDA
    once its parent has (GPUs are counted through NVML instead).
    """
    with _env(PYTORCH_NVML_BASED_CUDA_CHECK="1"):
        device = preflight.resolve_device(config)
        gpus = _gpu_count() if device == "cuda" else 0
    n = config.num_processes
    if device == "cuda" and n > gpus:
        raise ValueError(
            f"num_processes={n} but this machine has {gpus} GPU(s): every process drives one GPU. Use "
            f"num_processes <= {gpus}, or device='cpu' to try the same run as {n} CPU processes."
        )
    if device == "cpu":  # every single-process check too (on a GPU machine each process checks its GPU)
        preflight.check_before_load(config)
    if resume_from is not None:
        check_resume_processes(resume_from, n)
    check_run_inputs(config)  # the data and the model; the embedded model is converted here once, not by every rank
    return device


def _gpu_count() -> int:
    return torch.cuda.device_count()  # NVML first: does not initialise CUDA in this process


@contextlib.contextmanager
def _env(**values: str):
    """Set environment variables for the duration of the block (the previous values after)."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def fixed_output_dir(config: TrainConfig, resume_from: str | Path | None) -> TrainConfig:
    """The config with its run folder decided once (runs/<timestamp> read at two moments could differ)."""
    return dataclasses.replace(config, output_dir=str(output_dir_for(config.output_dir, resume_from)))


def threads_per_process(num_processes: int) -> int:
    """CPU threads for each of num_processes processes on this machine (they share its cores)."""
    return max(1, torch.get_num_threads() // num_processes)


# ---- from a terminal ----------------------------------------------------------------------------------------
def torchrun_command(num_processes: int, cli_args: Sequence[str]) -> list[str]:
    """``torchrun`` running ``lorakit <cli_args>`` in num_processes processes on this machine (a free port)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={num_processes}",
            "-m", "lorakit.cli", *cli_args]


# ---- from a notebook ----------------------------------------------------------------------------------------
class SharedStop(StopHandle):
    """A StopHandle every forked process shares (a multiprocessing Event): set in one, seen in all."""

    def __init__(self, event, reason) -> None:  # noqa: D107 -- no threading.Event: the shared one replaces it
        self._event, self._reason = event, reason

    def request_stop(self, reason: str = "user") -> None:
        self._reason.value = reason.encode("utf-8")[: _REASON_BYTES - 1]
        self._event.set()

    @property
    def reason(self) -> str | None:
        return self._reason.value.decode("utf-8") or None


class QueueSink(MetricsSink):
    """Rank 0's sink in a forked run: every event goes to the caller's process, which calls the real sinks."""

    def __init__(self, events) -> None:
        self.events = events

    def on_phase(self, phase, detail):
        self.events.put(("on_phase", (phase, detail)))

    def on_train_start(self, info):
        self.events.put(("on_train_start", (info,)))

    def on_log(self, record):
        self.events.put(("on_log", (record,)))

    def on_eval(self, record):
        self.events.put(("on_eval", (record,)))

    def on_progress(self, record):
        self.events.put(("on_progress", (record,)))

    def on_train_end(self, summary):
        self.events.put(("on_train_end", (summary,)))


class _Channel:
    """What the caller and the forked ranks share: rank 0's events and the stop flag (fork-inherited)."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("fork")
        self.events = context.Queue()
        self.stop = SharedStop(context.Event(), context.Array("c", _REASON_BYTES))


def launch(config: TrainConfig, *, sinks: Sequence[MetricsSink] = (), stop: StopHandle | None = None,
           resume_from: str | Path | None = None) -> TrainSummary:
    """Run ``train`` in config.num_processes forked processes; the caller's sinks see rank 0's events.

    A Stop (or a first KeyboardInterrupt in the caller) ends every rank after the same step, with the adapter
    and checkpoint saved; an error in any rank ends all of them, and the summary carries that rank's message.
    """
    device = check_launch(config, resume_from)
    if device == "cuda":
        _check_fork_safe()
    config = fixed_output_dir(config, resume_from)
    stop = stop or StopHandle()
    channel, outcome = _Channel(), {}
    launcher = threading.Thread(target=_launch_ranks, args=(config, resume_from, channel, device, outcome),
                                name="lorakit-launch", daemon=True)
    launcher.start()
    sink_warnings: list[str] = []
    events = SinkFanout(sinks, report=sink_warnings.append)
    summary = _relay(channel, events, stop, launcher)
    launcher.join()
    if summary is None:  # rank 0 ended without a summary (killed, or failed before training)
        summary = _failed_summary(config, outcome.get("error"))
        atomic_write_json(Path(config.output_dir) / "summary.json", summary.as_dict())
        events.emit("on_train_end", summary)
    summary.warnings.extend(sink_warnings)
    return summary


def _check_fork_safe() -> None:
    if torch.cuda.is_initialized():
        raise ValueError(
            "CUDA is already in use in this Python process (an earlier single-GPU run, or a tensor moved to the "
            "GPU). notebook_launcher starts the processes by fork, and a forked process cannot use CUDA again. "
            "Restart the kernel and start the multi-GPU run before anything touches the GPU, or run it from a "
            "terminal: lorakit train cfg.yaml --num-processes N"
        )


def _launch_ranks(config: TrainConfig, resume_from, channel: _Channel, device: str, outcome: dict) -> None:
    """The launcher thread: notebook_launcher(_rank_main) on a free port; keeps the exception it ends with."""
    threads = str(threads_per_process(config.num_processes))
    try:
        with _quiet_launcher(), _env(OMP_NUM_THREADS=threads):
            launch_from_notebook(_rank_main, (config, resume_from, channel), config.num_processes, _free_port(),
                                 device)
    except Exception as exc:  # noqa: BLE001 -- the caller turns it into the summary
        outcome["error"] = exc


def _rank_main(config: TrainConfig, resume_from, channel: _Channel) -> None:
    """One forked rank: train, rank 0 reporting through the queue; a failed rank fails the launch."""
    world, rank = launched_world()
    if world != config.num_processes:  # notebook_launcher calls the function in-process on Colab without GPUs
        raise RuntimeError(f"notebook_launcher started {world} process(es), not {config.num_processes}: "
                           "on Colab it runs one unless there are 2+ GPUs. Use num_processes=1 there.")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    sinks = [QueueSink(channel.events)] if rank == 0 else []
    summary = run_process(config, sinks=sinks, stop=channel.stop, resume_from=resume_from)
    if summary.status in ("error", "oom"):
        raise RuntimeError(summary.message)  # ends the other ranks (the launcher stops them)


def _relay(channel: _Channel, events: SinkFanout, stop: StopHandle, launcher: threading.Thread):
    """Call the sinks with rank 0's events until the launch ends (then rank 0's summary, or None); forward stop
    requests to the ranks."""
    summary, interrupted = None, False
    while True:
        try:
            if stop.stop_requested and not channel.stop.stop_requested:
                channel.stop.request_stop(stop.reason or "user")
            try:
                method, payload = channel.events.get(timeout=0.1)
            except queue.Empty:
                if launcher.is_alive():
                    continue
                return summary
            if method == "on_train_end":
                summary = payload[0]
            events.emit(method, *payload)
        except KeyboardInterrupt:  # interrupting the kernel: first a clean stop, a second one for real
            if interrupted:
                raise
            interrupted = True
            stop.request_stop("interrupted")


def _failed_summary(config: TrainConfig, error: BaseException | None) -> TrainSummary:
    """The summary of a launch whose rank 0 could not write one, with the failing rank's message."""
    out = Path(config.output_dir)
    logged = [r for r in read_metrics(out) if r.get("kind") == "train"] if (out / "metrics.jsonl").exists() else []
    adapter = out / "checkpoint" / "adapter"
    return TrainSummary(
        status="error", message=f"Error: {_failure_message(error)}", steps_done=logged[-1]["step"] if logged else 0,
        total_steps=0, final_loss=logged[-1]["loss"] if logged else None, output_dir=str(out),
        adapter_dir=str(adapter) if (adapter / "adapter_config.json").exists() else None,
        metrics_path=str(out / "metrics.jsonl"),
    )


def _failure_message(error: BaseException | None) -> str:
    """The first failed rank's own message out of torch's ChildFailedError, else the exception's text."""
    if error is None:
        return "the processes ended without a summary"
    first = getattr(error, "get_first_failure", None)
    if first is None:
        return f"{type(error).__name__}: {error}"
    rank, failure = first()
    message = failure.message
    if isinstance(message, dict):
        message = message.get("message", "")
    lines = [line for line in str(message).strip().splitlines() if line.strip()]
    return f"rank {rank}: {lines[-1].strip() if lines else f'exit code {failure.exitcode}'}"


def _free_port() -> int:
    """A TCP port free now on this machine (several runs on one machine must not share 29500)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _quiet_launcher():
    """torch's elastic agent logs each failed rank's traceback; lorakit reports the error itself, once. And
    Python >= 3.12 warns that forking a process with threads (a Jupyter kernel has several) may deadlock the
    child; forking is how notebook_launcher works (accelerate's documented way to train from a notebook), so
    that warning would only repeat itself on every run."""
    warnings.filterwarnings("ignore", message=r"This process \(pid=\d+\) is multi-threaded, use of fork\(\)",
                            category=DeprecationWarning)
    loggers = [logging.getLogger(name) for name in ("torch.distributed.elastic", "torch.multiprocessing")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
