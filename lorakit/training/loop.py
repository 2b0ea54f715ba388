"""The training loop: setup -> train -> save -> cleanup, in one place.

Device syncs: the loss is summed on the device and read once per logging interval (and once per evaluation
and checkpoint). Every such read goes through `_Run.read`, which counts it in the run's `host_reads` by
reason (the summary carries the counts), so a benchmark can check that non-logging steps read nothing.
(Outside this loop, transformers' mask builder and an fp16 GradScaler each read the device once per step;
on a GPU `torch.cuda.set_sync_debug_mode("warn")` reports those too.)

The same loop runs in every process of a multi-process run; what differs there (a slice of each global batch,
the stop agreed between processes, the loss summed over them at logging steps, files from rank 0 only) is in
``distributed.Ranks``, and starting the processes is in ``launch``.
"""

from __future__ import annotations

import collections
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from lorakit.training import evaluation
from lorakit.training import parts as parts_module
from lorakit.training.checkpoint import (
    check_resume_processes,
    checkpoint_step,
    find_checkpoint,
    output_dir_for,
)
from lorakit.training.compile import BlockCompiler, arch_key
from lorakit.training.config import TrainConfig
from lorakit.training.data import IGNORE
from lorakit.training.distributed import Ranks
from lorakit.training.embedded import resolve_model
from lorakit.training.events import (
    JsonlSink,
    MetricsSink,
    StepRecord,
    StopHandle,
    TrainSummary,
    atomic_write_json,
    trim_metrics,
)
from lorakit.training.modeling import check_model_on_meta
from lorakit.training.parts import Parts, build_parts, matmul_mode
from lorakit.training.preflight import check_before_load
from lorakit.training.report import finish, outcome, start_info

OOM_ADVICE = (
    "Out of memory. Try a smaller batch_size (with gradient_accumulation_steps to keep the effective batch), "
    "a shorter max_seq_length, gradient_checkpointing=True, or quantization='nf4' (TrainConfig.qlora())."
)


class _Run:
    """One run: its settings and sinks from the start, its parts once built, and its progress counters."""

    def __init__(self, config: TrainConfig, out: Path, device: str, sinks: Sequence[MetricsSink],
                 stop: StopHandle | None, ranks: Ranks):
        self.config, self.out, self.device, self.ranks = config, out, device, ranks
        self.stop = stop or StopHandle()
        self.sinks = list(sinks)
        self.warnings: list[str] = []
        self.parts: Parts | None = None  # set once by setup(); None again after cleanup
        self.compiler: BlockCompiler | None = None  # set by setup() with the parts
        self._choices: dict[str, dict] = {}  # kept from parts for the summary
        self.host_reads: collections.Counter = collections.Counter()  # device->host value reads by reason
        # progress: where the run is (saved in checkpoints) and what it has done in this session
        self.step = self.epoch = self.position = self.tokens_seen = 0
        self.total_steps = 0
        self.elapsed_before = 0.0  # seconds trained before a resume
        self.final_loss: float | None = None
        self.peak_rss = 0  # largest RSS seen at a logging step (bytes)
        self.session_tokens, self.train_s = 0, 0.0
        self.started: float | None = None
        self.first_step = 0
        self.summary_extra: dict = {}
        self.traceback: str | None = None
        self._order: list = []
        self._order_epoch: int | None = None
        self.loss_sum: torch.Tensor | None = None
        self.window = {"steps": 0, "tokens": 0, "start": time.perf_counter()}

    # ---- setup -------------------------------------------------------------------------------------------
    def setup(self, path: str, resume_from) -> None:
        self.emit("on_phase", "loading", f"loading {self.config.model} and tokenizing the data")
        self.parts = p = build_parts(self.config, self.device, path)
        for note in p.notes:
            self.warn(note)
        self.ranks.connect(p)
        self.total_steps = p.total_steps
        key = arch_key(p.model_config, self.device, self.config.precision, self.config.quantization)
        self.compiler = BlockCompiler(self.config.compile, self.device, p.accelerator.unwrap_model(p.model), key,
                                      self.emit)
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()  # the summary's peak is this run's
        if resume_from is not None:
            state = self.ranks.load_checkpoint(p, find_checkpoint(resume_from))
            self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]
            self.tokens_seen, self.elapsed_before = state["tokens_seen"], state["elapsed_s"]
        self.loss_sum = torch.zeros((), device=p.accelerator.device)
        self.started = time.perf_counter()
        self.first_step = self.step

    def choices(self) -> dict[str, dict]:
        """The resolved "auto" settings as {name: {"value", "reason"}} ({} before setup)."""
        if self.parts is None:
            return self._choices
        compiled = {"compile": self.compiler.choice} if self.compiler is not None else {}
        choices = {**self.parts.choices, **compiled}
        self._choices = {name: {"value": c.value, "reason": c.reason} for name, c in choices.items()}
        return self._choices

    def read(self, value: torch.Tensor, reason: str) -> float:
        """The loop's only way to read a device value (a sync on a GPU); counted in host_reads."""
        self.host_reads[reason] += 1
        return value.item() if value.numel() == 1 else value.tolist()

    # ---- train -------------------------------------------------------------------------------------------
    def train_loop(self) -> None:
        cfg = self.config
        self.emit("on_phase", "training", f"training: step {self.step + 1} of {self.total_steps}")
        self.parts.model.train()
        # Previews and evaluations before this point are not training time.
        self.started = self.window["start"] = time.perf_counter()
        while self.step < self.total_steps and not self.ranks.agree_stop(self.stop):
            self.compiler.before_step()
            self._guarded_step(self._next_micro_batches())
            self.step += 1
            self.compiler.after_step(self.total_steps - self.step)
            if self.step % cfg.logging_steps == 0 or self.step == self.total_steps:
                self.log()
            if cfg.eval_steps and self.step % cfg.eval_steps == 0 and self.step < self.total_steps:
                evaluation.evaluate(self)
                self.emit("on_phase", "training", f"training: step {self.step + 1} of {self.total_steps}")
            if cfg.save_steps and self.step % cfg.save_steps == 0:
                self.save_checkpoint()

    def _next_micro_batches(self) -> list[dict]:
        """The next gradient_accumulation_steps batches, continuing into the next epoch when one ends."""
        batches, micro = self.parts.batches, []
        while len(micro) < self.config.gradient_accumulation_steps:
            if self._order_epoch != self.epoch:
                self._order, self._order_epoch = batches.order(self.epoch), self.epoch
            micro.append(self.ranks.collate(batches, self._order[self.position]))
            self.position += 1
            if self.position == len(self._order):
                self.epoch, self.position = self.epoch + 1, 0
        return micro

    def _guarded_step(self, micro: list[dict]) -> None:
        """One optimizer step; if compiling the decoder blocks fails, the same step again in eager mode."""
        if not self.compiler.compiled:
            return self._optimizer_step(micro)
        loss_sum, window = self.loss_sum.clone(), dict(self.window)  # a device copy, not a read
        try:
            self._optimizer_step(micro)
        except Exception as exc:
            if not self.compiler.recover(exc):
                raise
            self.warn(self.compiler.choice.reason)
            self.parts.optimizer.zero_grad(set_to_none=True)
            self.loss_sum.copy_(loss_sum)
            self.window = window
            self._optimizer_step(micro)

    def loss(self, batch: dict, n_targets: int) -> torch.Tensor:
        """Summed cross-entropy of the batch's targets / n_targets (fp32, as transformers computes it)."""
        p = self.parts
        device = p.accelerator.device
        inputs = {k: v.to(device, non_blocking=True) for k, v in batch["inputs"].items()}
        if p.loss_head is not None:  # hidden states, then the fused head: the [tokens, vocab] logits never exist
            with p.autocast():
                return p.loss_head(p.model, inputs, batch["keep"], batch["targets"]) / n_targets
        keep = batch["keep"].to(device, non_blocking=True)
        targets = batch["targets"].to(device, non_blocking=True)
        with p.autocast():
            if p.slices_logits:
                logits = p.model(**inputs, logits_to_keep=keep, use_cache=False).logits
            else:  # a model without logits_to_keep: compute all, keep the needed ones
                logits = p.model(**inputs, use_cache=False).logits[:, keep]
        flat = logits.float().flatten(0, 1)
        return F.cross_entropy(flat, targets.flatten(), ignore_index=IGNORE, reduction="sum") / n_targets

    def _optimizer_step(self, micro: list[dict]) -> None:
        """Forward/backward over the micro-batches, then one optimizer step. Nothing here reads the device."""
        p = self.parts
        # Token-weighted mean over the whole accumulated (global) batch, what transformers' Trainer computes too.
        n_targets = max(1, sum(b["n_targets"] for b in micro))
        for i, batch in enumerate(micro):
            loss = self.loss(batch, n_targets)  # this rank's share of the mean
            # DDP and FSDP average gradients over ranks; x world makes that the sum of the shares.
            scaled = loss * self.ranks.world
            with self.ranks.gradient_sync(p.model, last=i == len(micro) - 1):
                p.accelerator.backward(p.scaler.scale(scaled) if p.scaler else scaled)
            self.loss_sum += loss.detach()
            self.window["tokens"] += batch["n_tokens"]
        if p.scaler is not None:
            p.scaler.unscale_(p.optimizer)  # clip the true gradients, not the scaled ones
        if self.config.max_grad_norm:
            p.accelerator.clip_grad_norm_(p.params, self.config.max_grad_norm)
        if p.scaler is not None:
            p.scaler.step(p.optimizer)  # skips the step when a gradient overflowed (one device read)
            p.scaler.update()
        else:
            p.optimizer.step()
        p.scheduler.step()
        p.optimizer.zero_grad(set_to_none=True)
        self.window["steps"] += 1

    def log(self) -> None:
        """Read the summed loss (the sync), emit one record, start a new window."""
        if self.window["steps"] == 0:
            return
        loss_sum, memory = self.ranks.read_log(self.loss_sum, parts_module.memory_stats(self.device), self.read)
        loss = loss_sum / self.window["steps"]
        now = time.perf_counter()
        window_s = max(now - self.window["start"], 1e-9)
        self.tokens_seen += self.window["tokens"]
        self.session_tokens += self.window["tokens"]
        done_here = max(self.step - self.first_step, 1)
        record = StepRecord(
            step=self.step,
            epoch=self.epoch + self.position / len(self.parts.batches),
            loss=loss,
            learning_rate=self.parts.scheduler.get_last_lr()[0],
            tokens_per_s=self.window["tokens"] / window_s,
            tokens_seen=self.tokens_seen,
            elapsed_s=self.elapsed_before + now - self.started,
            eta_s=(now - self.started) / done_here * (self.total_steps - self.step),
            **memory,
        )
        self.final_loss = loss
        self.peak_rss = max(self.peak_rss, record["rss_bytes"] or 0)
        self.loss_sum.zero_()
        self.window = {"steps": 0, "tokens": 0, "start": time.perf_counter()}
        self.emit("on_log", record)

    # ---- save and report ---------------------------------------------------------------------------------
    def loop_state(self) -> dict:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "position": self.position,
            "tokens_seen": self.tokens_seen,
            "elapsed_s": self.elapsed_s(),
            "total_steps": self.total_steps,
        }

    def elapsed_s(self) -> float | None:
        """Training seconds so far, a resumed run's earlier part included; None before training started."""
        return None if self.started is None else self.elapsed_before + time.perf_counter() - self.started

    def save_checkpoint(self) -> None:
        self.ranks.save_checkpoint(self.parts, self.out / "checkpoint", self.loop_state())

    def save_adapter(self) -> Path | None:
        if self.parts is None:
            return None
        return self.ranks.save_adapter(self.parts, self.out / "adapter")

    def emit(self, method: str, *payload) -> None:
        """Call every sink that has the method; a failing sink is reported once and dropped, the run goes on."""
        for sink in list(self.sinks):
            handler = getattr(sink, method, None)
            if handler is None:  # a duck-typed sink without this (newer) event
                continue
            try:
                handler(*payload)
            except Exception as exc:  # noqa: BLE001 -- a display bug must not kill a training run
                self.sinks.remove(sink)
                self.warn(f"metrics sink {type(sink).__name__} failed in {method} and was detached: {exc!r}")

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        if self.ranks.is_main:  # every rank has the same warnings; one says them
            warnings.warn(message, RuntimeWarning, stacklevel=3)




def _train_phases(run: _Run, path: str, resume_from) -> tuple[str, str]:
    """setup -> evaluate before -> train -> checkpoint -> evaluate after; returns (status, message)."""
    run.setup(path, resume_from)
    run.emit("on_train_start", start_info(run))
    evaluation.before_training(run)
    loop_start = time.perf_counter()
    run.train_loop()
    run.log()  # the last, partial logging window
    run.train_s = time.perf_counter() - loop_start
    status, message = outcome(run)
    run.emit("on_phase", "saving", f"saving a resumable checkpoint to {run.out / 'checkpoint'}")
    run.save_checkpoint()
    evaluation.after_training(run, status)
    return status, message


def _open_run_folder(config: TrainConfig, out: Path, resume_from, sinks: Sequence[MetricsSink]) -> list:
    """Create the run folder with config.json; the sinks with the metrics.jsonl writer first."""
    out.mkdir(parents=True, exist_ok=True)
    if resume_from is not None:  # the resumed run logs the steps after its checkpoint again
        trim_metrics(out, checkpoint_step(resume_from))
    atomic_write_json(out / "config.json", config.to_dict())
    return [JsonlSink(out / "metrics.jsonl", append=resume_from is not None), *sinks]


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
    ranks = Ranks.from_launch()
    if config.num_processes > 1 and not ranks.multi:
        from lorakit.training.launch import launch

        return launch(config, sinks=sinks, stop=stop, resume_from=resume_from)
    if config.num_processes != ranks.world:
        raise ValueError(f"this process is one of {ranks.world} launched processes but num_processes="
                         f"{config.num_processes}; set num_processes={ranks.world}")
    if resume_from is not None:
        check_resume_processes(resume_from, config.num_processes)
    device, warns = check_before_load(config)
    path = resolve_model(config.model)
    check_model_on_meta(config, path)
    out = output_dir_for(config.output_dir, resume_from)
    if ranks.is_main:  # the run folder is rank 0's alone
        sinks = _open_run_folder(config, out, resume_from, sinks)
    run = _Run(config, out, device, sinks, stop, ranks)
    for message in warns:
        run.warn(message)
    ranks.watch_sigterm(run.stop)
    try:
        with matmul_mode(config):
            status, message = _train_phases(run, path, resume_from)
    except torch.OutOfMemoryError as exc:
        status, message, _ = ranks.failed("oom", f"{OOM_ADVICE} (at step {run.step})", exc)
    except KeyboardInterrupt as exc:
        message = f"Interrupted at step {run.step}; the adapter and the metrics so far are saved."
        status, message, _ = ranks.failed("interrupted", message, exc)
    except Exception as exc:  # noqa: BLE001 -- the summary carries it; the caller decides
        message = f"Error at step {run.step}: {type(exc).__name__}: {exc}"
        status, message, run.traceback = ranks.failed("error", message, exc, traceback.format_exc())
    try:
        return finish(run, status, message)
    finally:
        ranks.close()
