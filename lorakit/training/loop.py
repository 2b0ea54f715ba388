"""The training loop: setup -> train -> save -> cleanup, in one place.

Device syncs: the loss is summed on the device and read once per logging interval (and once per evaluation
and checkpoint). Every such read goes through `_Run.read`, which counts it in the run's `host_reads` by
reason (the summary carries the counts), so a benchmark can check that non-logging steps read nothing.
(Outside this loop, transformers' mask builder and an fp16 GradScaler each read the device once per step;
on a GPU `torch.cuda.set_sync_debug_mode("warn")` reports those too.)
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
    checkpoint_step,
    find_checkpoint,
    load_checkpoint,
    output_dir_for,
    save_adapter,
    save_checkpoint,
)
from lorakit.training.compile import BlockCompiler, arch_key
from lorakit.training.config import TrainConfig
from lorakit.training.data import IGNORE
from lorakit.training.embedded import resolve_model
from lorakit.training.events import (
    JsonlSink,
    MetricsSink,
    StartInfo,
    StepRecord,
    StopHandle,
    TrainSummary,
    atomic_write_json,
    trim_metrics,
)
from lorakit.training.modeling import check_model_on_meta, count_params
from lorakit.training.parts import Parts, build_parts, matmul_mode
from lorakit.training.preflight import check_before_load

OOM_ADVICE = (
    "Out of memory. Try a smaller batch_size (with gradient_accumulation_steps to keep the effective batch), "
    "a shorter max_seq_length, gradient_checkpointing=True, or quantization='nf4' (TrainConfig.qlora())."
)


class _Run:
    """One run: its settings and sinks from the start, its parts once built, and its progress counters."""

    def __init__(self, config: TrainConfig, out: Path, device: str, sinks: Sequence[MetricsSink],
                 stop: StopHandle | None):
        self.config, self.out, self.device = config, out, device
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
        self.total_steps = p.total_steps
        key = arch_key(p.model_config, self.device, self.config.precision, self.config.quantization)
        self.compiler = BlockCompiler(self.config.compile, self.device, p.accelerator.unwrap_model(p.model), key,
                                      self.emit)
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()  # the summary's peak is this run's
        if resume_from is not None:
            state = load_checkpoint(find_checkpoint(resume_from), p.model, p.optimizer, p.scheduler, p.scaler)
            self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]
            self.tokens_seen, self.elapsed_before = state["tokens_seen"], state["elapsed_s"]
        self.loss_sum = torch.zeros((), device=p.accelerator.device)
        self.started = time.perf_counter()
        self.first_step = self.step

    def start_info(self) -> StartInfo:
        p, cfg = self.parts, self.config
        trainable, total = count_params(p.model)
        try:
            predicted = parts_module.predicted_peak_bytes(cfg, p)
        except ValueError as exc:  # a setting the planner does not model: say so, train anyway
            predicted = None
            self.warn(f"no memory prediction for this run: {exc}")
        return StartInfo(
            total_steps=self.total_steps, output_dir=str(self.out), device=self.device,
            precision=cfg.precision, quantization=cfg.quantization, trainable_params=trainable,
            total_params=total, predicted_peak_bytes=predicted, start_step=self.step,
            warnings=list(self.warnings), config=cfg.to_dict(),
            choices=self.choices(),
        )

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
        return value.item()

    # ---- train -------------------------------------------------------------------------------------------
    def train_loop(self) -> None:
        cfg = self.config
        self.emit("on_phase", "training", f"training: step {self.step + 1} of {self.total_steps}")
        self.parts.model.train()
        # Previews and evaluations before this point are not training time.
        self.started = self.window["start"] = time.perf_counter()
        while self.step < self.total_steps and not self.stop.stop_requested:
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
            micro.append(batches.collate(self._order[self.position]))
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
        # Token-weighted mean over the whole accumulated batch (what transformers' Trainer computes too).
        n_targets = max(1, sum(b["n_targets"] for b in micro))
        for batch in micro:
            loss = self.loss(batch, n_targets)
            p.accelerator.backward(p.scaler.scale(loss) if p.scaler else loss)
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
        loss = self.read(self.loss_sum, "log") / self.window["steps"]
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
            **parts_module.memory_stats(self.device),
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
        p = self.parts
        model = p.accelerator.unwrap_model(p.model)
        save_checkpoint(self.out / "checkpoint", model, p.optimizer, p.scheduler, p.scaler, self.loop_state())

    def save_adapter(self) -> Path | None:
        if self.parts is None:
            return None
        return save_adapter(self.parts.accelerator.unwrap_model(self.parts.model), self.out / "adapter")

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
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def _outcome(run: _Run) -> tuple[str, str]:
    if run.stop.stop_requested and run.step < run.total_steps:
        reason = run.stop.reason or "user"
        return "stopped", (
            f"Stopped ({reason}) after {run.step} of {run.total_steps} steps; the adapter and a resumable "
            f"checkpoint are in {run.out}."
        )
    loss = f"{run.final_loss:.4f}" if run.final_loss is not None else "n/a"
    return "completed", f"Completed {run.step} steps; final training loss {loss}."


def _finish(run: _Run, status: str, message: str) -> TrainSummary:
    """Save the adapter whatever happened, write summary.json, tell the sinks, free memory."""
    adapter_dir = None
    try:
        adapter_dir = run.save_adapter()
    except Exception as exc:  # noqa: BLE001 -- report, never mask the run's own outcome
        run.warn(f"could not save the adapter: {exc!r}")
    prompts = run.config.preview_prompts
    # "" where the run never got that far
    before = run.summary_extra.get("preview_before") or [""] * len(prompts)
    after = run.summary_extra.get("preview_after") or [""] * len(prompts)
    preview = [{"prompt": p, "before": b, "after": a} for p, b, a in zip(prompts, before, after, strict=True)]
    on_gpu = run.device == "cuda"
    summary = TrainSummary(
        status=status,
        message=message,
        steps_done=run.step,
        total_steps=run.total_steps,
        final_loss=run.final_loss,
        output_dir=str(run.out),
        adapter_dir=str(adapter_dir) if adapter_dir else None,
        metrics_path=str(run.out / "metrics.jsonl"),
        peak_memory_bytes=torch.cuda.max_memory_allocated() if on_gpu else run.peak_rss or parts_module.rss_bytes(),
        tokens_per_s=run.session_tokens / run.train_s if run.train_s else None,
        elapsed_s=run.elapsed_s(),
        preview=preview,
        exact_match_before=run.summary_extra.get("exact_match_before"),
        exact_match_after=run.summary_extra.get("exact_match_after"),
        format_match_before=run.summary_extra.get("format_match_before"),
        format_match_after=run.summary_extra.get("format_match_after"),
        warnings=list(run.warnings),
        traceback=run.traceback,
        host_reads=dict(run.host_reads),
        choices=run.choices(),
        compile_s=run.compiler.compile_s if run.compiler is not None else None,
    )
    atomic_write_json(run.out / "summary.json", summary.as_dict())
    run.emit("on_train_end", summary)
    run.parts = None  # drop the model and optimizer so their memory can go back
    if on_gpu:
        torch.cuda.empty_cache()
    return summary


def _train_phases(run: _Run, path: str, resume_from) -> tuple[str, str]:
    """setup -> evaluate before -> train -> checkpoint -> evaluate after; returns (status, message)."""
    run.setup(path, resume_from)
    run.emit("on_train_start", run.start_info())
    evaluation.before_training(run)
    loop_start = time.perf_counter()
    run.train_loop()
    run.log()  # the last, partial logging window
    run.train_s = time.perf_counter() - loop_start
    status, message = _outcome(run)
    run.emit("on_phase", "saving", f"saving a resumable checkpoint to {run.out / 'checkpoint'}")
    run.save_checkpoint()
    evaluation.after_training(run, status)
    return status, message


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
    """
    device, warns = check_before_load(config)
    path = resolve_model(config.model)
    check_model_on_meta(config, path)
    out = output_dir_for(config.output_dir, resume_from)
    out.mkdir(parents=True, exist_ok=True)
    if resume_from is not None:  # the resumed run logs the steps after its checkpoint again
        trim_metrics(out, checkpoint_step(resume_from))
    run = _Run(config, out, device, [JsonlSink(out / "metrics.jsonl", append=resume_from is not None), *sinks],
               stop)
    for message in warns:
        run.warn(message)
    atomic_write_json(out / "config.json", config.to_dict())
    try:
        with matmul_mode(config):
            status, message = _train_phases(run, path, resume_from)
    except torch.OutOfMemoryError:
        status, message = "oom", f"{OOM_ADVICE} (at step {run.step})"
    except KeyboardInterrupt:
        status = "interrupted"
        message = f"Interrupted at step {run.step}; the adapter and the metrics so far are saved."
    except Exception as exc:  # noqa: BLE001 -- the summary carries it; the caller decides
        status, message = "error", f"Error at step {run.step}: {type(exc).__name__}: {exc}"
        run.traceback = traceback.format_exc()
    return _finish(run, status, message)
