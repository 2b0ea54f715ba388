"""One process's run, top to bottom: check -> setup -> evaluate before -> train -> save -> evaluate after ->
finish (adapter, summary) -> clean up. Read ``run_process`` first; every phase below it is one function.

The run's state is one typed record (``state.RunState``); the maths of a step is ``step``'s, evaluation is
``evaluation``'s, what it reports is ``report``'s, files are ``checkpoint``'s. The same loop runs in every
process of a multi-process run; what differs there (a slice of each global batch, the stop agreed between
processes, the loss summed over them at logging steps) is in ``distributed.Ranks``, and starting the
processes is ``launch``'s.

Device syncs: the loss is summed on the device and read once per logging interval (and once per evaluation);
with log_lora_stats, the adapter's update statistics (``lora_stats``) are measured on the device and read once
per logging interval too.
Every such read goes through ``RunState.read``, which counts it in the run's ``host_reads`` by reason (the
summary carries the counts), so a benchmark can check that non-logging steps read nothing. (Outside this
loop, transformers' mask builder and an fp16 GradScaler each read the device once per step; on a GPU
``torch.cuda.set_sync_debug_mode("warn")`` reports those too.)

Time: each phase is timed as training, evaluation or saving (``state.Timings``); tokens/s is computed from
the training time alone.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

import torch

from lorakit.training import checkpoint, evaluation, fit, report, step
from lorakit.training.checks import check_run_inputs
from lorakit.training.compile import BlockCompiler, arch_key
from lorakit.training.config import TrainConfig
from lorakit.training.distributed import Ranks
from lorakit.training.events import (
    JsonlSink,
    MetricsSink,
    SinkFanout,
    StepRecord,
    StopHandle,
    TrainSummary,
    atomic_write_json,
    trim_metrics,
)
from lorakit.training.lora_stats import tracker_for_run
from lorakit.training.parts import build_parts, matmul_mode, memory_stats, rss_bytes
from lorakit.training.preflight import check_before_load
from lorakit.training.state import Progress, RunState, Window

__all__ = ["OOM_ADVICE", "run_process"]

OOM_ADVICE = (
    "Out of memory. Try a smaller batch_size (with gradient_accumulation_steps to keep the effective batch), "
    "a shorter max_seq_length, gradient_checkpointing=True, or quantization='nf4' (TrainConfig.qlora())."
)


def run_process(config: TrainConfig, *, sinks: Sequence[MetricsSink] = (), stop: StopHandle | None = None,
                resume_from: str | Path | None = None) -> TrainSummary:
    """This process's part of a run (all of it in a single-process run): see ``launch.train``."""
    run = start(config, sinks, stop, resume_from)
    try:
        with matmul_mode(config):
            status, message = phases(run, resume_from)
    except fit.DoesNotFit:
        refuse(run, resume_from)
        raise
    except torch.OutOfMemoryError as exc:
        status, message, _ = run.ranks.failed("oom", f"{OOM_ADVICE} (at step {run.progress.step})", exc)
    except KeyboardInterrupt as exc:
        message = f"Interrupted at step {run.progress.step}; the adapter and the metrics so far are saved."
        status, message, _ = run.ranks.failed("interrupted", message, exc)
    except Exception as exc:  # noqa: BLE001 -- the summary carries it; the caller decides
        message = f"Error at step {run.progress.step}: {type(exc).__name__}: {exc}"
        status, message, run.traceback = run.ranks.failed("error", message, exc, traceback.format_exc())
    try:
        return finish(run, status, message)
    finally:
        run.ranks.close()


def phases(run: RunState, resume_from) -> tuple[str, str]:
    """setup -> evaluate before -> train -> checkpoint -> evaluate after; returns (status, message).

    A run stopped before its first step trained nothing: it saves nothing and does not evaluate again. Stop
    also ends an evaluation or a preview where it is, and a run stopped during training is not evaluated after.
    """
    setup(run, resume_from)
    announce(run)
    with run.timings.measure("eval"):
        evaluate_before(run)
    train_loop(run)
    status, message = report.outcome(run.stop, run.progress.step, run.total_steps, run.out, run.final_loss)
    if run.progress.step == 0:
        return status, message
    run.events.emit("on_phase", "saving", f"saving a resumable checkpoint to {run.out / 'checkpoint'}")
    save_checkpoint(run)
    if status == "stopped":
        return status, message
    with run.timings.measure("eval"):
        stopped = evaluate_after(run, status)
    return status, message + (" Stop ended the evaluation after training early." if stopped else "")


# ---- check and set up ------------------------------------------------------------------------------------------
def start(config: TrainConfig, sinks: Sequence[MetricsSink], stop: StopHandle | None, resume_from) -> RunState:
    """Check everything that can be checked before loading (ValueError), open the run folder, make the state."""
    began = time.perf_counter()
    ranks = Ranks.from_launch()
    if config.num_processes != ranks.world:
        raise ValueError(f"this process is one of {ranks.world} launched processes but num_processes="
                         f"{config.num_processes}; set num_processes={ranks.world}")
    if resume_from is not None:
        checkpoint.check_resume_processes(resume_from, config.num_processes)
    device, warns = check_before_load(config)
    # the data and the model's name, architecture and tokenizer; the embedded model is converted here, once
    path = check_run_inputs(config)
    fit.check_limit(config, path, device)
    out = checkpoint.output_dir_for(config.output_dir, resume_from)
    if ranks.is_main:  # the run folder is rank 0's alone
        sinks = open_run_folder(config, out, resume_from, sinks)
    events = SinkFanout(sinks, report=lambda message: run.warn(message))  # a failing sink: a run warning
    run = RunState(config, out, device, ranks, stop or StopHandle(), events, model_path=path, started=began)
    for message in warns:
        run.warn(message)
    ranks.watch_sigterm(run.stop)
    return run


def open_run_folder(config: TrainConfig, out: Path, resume_from, sinks: Sequence[MetricsSink]) -> list:
    """Create the run folder with config.json; the sinks with the metrics.jsonl writer first."""
    out.mkdir(parents=True, exist_ok=True)
    if resume_from is not None:  # the resumed run logs the steps after its checkpoint again
        trim_metrics(out, checkpoint.checkpoint_step(resume_from))
    atomic_write_json(out / "config.json", config.to_dict())
    return [JsonlSink(out / "metrics.jsonl", append=resume_from is not None), *sinks]


def setup(run: RunState, resume_from) -> None:
    """Load and assemble the parts, connect the ranks, restore a checkpoint when resuming."""
    config = run.config
    run.events.emit("on_phase", "loading", f"loading {config.model} and tokenizing the data")
    run.parts = parts = build_parts(fit.provisional(config), run.device, run.model_path)
    for note in parts.notes:
        run.warn(note)
    if fit.wanted(config, run.device, run.ranks.world):  # before step 1; it may choose the batch
        run.events.emit("on_phase", "loading", fit.CHECKING)
        config, parts, run.fit = fit.fit_run(config, parts)
        run.config, run.parts = config, parts
    run.ranks.connect(parts)
    run.total_steps = parts.total_steps
    key = arch_key(parts.model_config, run.device, config.precision, config.quantization)
    run.compiler = BlockCompiler(config.compile, run.device, parts.accelerator.unwrap_model(parts.model), key,
                                 run.events.emit)
    if run.device == "cuda":
        torch.cuda.reset_peak_memory_stats()  # the summary's peak is this run's
    run.preview = evaluation.preview_items(config, parts.eval_records)
    run.scores.preview_prompts = [item.shown for item in run.preview]
    run.scores.preview_expected = [item.expected for item in run.preview]
    if resume_from is not None:
        saved = checkpoint.load_run_checkpoint(parts, checkpoint.find_checkpoint(resume_from), run.ranks)
        run.progress = Progress(saved["step"], saved["epoch"], saved["position"], saved["tokens_seen"],
                                saved["elapsed_s"])
        run.scores.restore_before(saved.get("before"))  # the preview and scores its first part measured
    run.first_step = run.progress.step
    run.update_tracker = tracker_for_run(config.log_lora_stats, parts.accelerator.unwrap_model(parts.model),
                                         main=run.ranks.is_main, sharded=run.ranks.fsdp, warn=run.warn)
    run.loss_sum = torch.zeros((), device=parts.accelerator.device)


def announce(run: RunState) -> None:
    """``on_train_start``: the set-up, the planner's peak and the resolved choices."""
    predicted, why_not = report.predicted_peak(run.config, run.parts)
    if why_not:
        run.warn(why_not)
    run.choices = report.resolved_choices(run.parts, run.compiler)
    info = report.start_info(
        run.config, run.parts, out=run.out, total_steps=run.total_steps, start_step=run.progress.step,
        predicted_peak_bytes=predicted, warnings=run.warnings, choices=run.choices)
    info["fit"] = run.fit.as_dict() if run.fit is not None else None
    run.events.emit("on_train_start", info)


# ---- evaluate --------------------------------------------------------------------------------------------------
def evaluate(run: RunState, with_exact_match: bool = False) -> dict:
    return evaluation.evaluate(run.parts, run.ranks, run.config, run.progress.step, emit=run.events.emit,
                               read=run.read, warn=run.warn, with_exact_match=with_exact_match,
                               progress=lambda what: report.eval_progress(run, what))


def preview(run: RunState) -> list[str]:
    return evaluation.preview(run.parts, run.ranks, run.config, run.events.emit, run.preview,
                              report.eval_progress(run, "preview"))


def evaluate_before(run: RunState) -> None:
    """Answers and scores of the untrained adapter (LoRA B starts at zero, so this is the base model); a
    resumed run has them from its checkpoint."""
    if run.progress.step > 0:
        return
    started = time.perf_counter()
    try:
        run.scores.preview_before = preview(run)
        if run.config.eval_exact_match:
            record = evaluate(run, with_exact_match=True)
            run.scores.exact_match_before = record.get("exact_match")
            run.scores.format_match_before = record.get("format_match")
        elif run.parts.eval_batches is not None:
            evaluate(run)
    except evaluation.Stopped:
        return  # the training loop sees the stop too, and takes no step
    run.scores.before_s = time.perf_counter() - started


def evaluate_after(run: RunState, status: str) -> bool:
    """The final evaluation (exact match only for a completed run) and the answers after training; True when
    Stop ended it early."""
    run.after_started = time.perf_counter()
    try:
        record = evaluate(run, with_exact_match=run.config.eval_exact_match and status == "completed")
        run.scores.exact_match_after = record.get("exact_match")
        run.scores.format_match_after = record.get("format_match")
        run.scores.preview_after = preview(run)
    except evaluation.Stopped:
        return True
    return False


# ---- train -----------------------------------------------------------------------------------------------------
def train_loop(run: RunState) -> None:
    """Optimizer steps until total_steps or an agreed stop; logs, evaluations and checkpoints on their steps."""
    cfg = run.config
    announce_training(run)
    run.parts.model.train()
    # Previews and evaluations before this point are not training time.
    run.loop_started = run.window.start = time.perf_counter()
    while True:
        with run.timings.measure("train"):
            if run.progress.step >= run.total_steps or run.ranks.agree_stop(run.stop):
                break
            run.compiler.before_step()
            guarded_step(run, next_micro_batches(run))
            run.progress.step += 1
            run.compiler.after_step(run.total_steps - run.progress.step)
            if run.progress.step % cfg.logging_steps == 0 or run.progress.step == run.total_steps:
                log(run)
        at = run.progress.step
        if cfg.eval_steps and at % cfg.eval_steps == 0 and at < run.total_steps:
            with paused_window(run), run.timings.measure("eval"), contextlib.suppress(evaluation.Stopped):
                evaluate(run)  # a Stop ends it, and then the loop
            announce_training(run)
        if cfg.save_steps and at % cfg.save_steps == 0:
            with paused_window(run):
                save_checkpoint(run)
    with run.timings.measure("train"):
        log(run)  # the last, partial logging window


def announce_training(run: RunState) -> None:
    run.events.emit("on_phase", "training", f"training: step {run.progress.step + 1} of {run.total_steps}")


@contextlib.contextmanager
def paused_window(run: RunState):
    """Leave the time of the block (an evaluation, a checkpoint) out of the logging window's tokens/s."""
    start = time.perf_counter()
    try:
        yield
    finally:
        run.window.start += time.perf_counter() - start


def next_micro_batches(run: RunState) -> list[dict]:
    """The next gradient_accumulation_steps batches, continuing into the next epoch when one ends."""
    batches, progress, micro = run.parts.batches, run.progress, []
    while len(micro) < run.config.gradient_accumulation_steps:
        order = run.epoch_order(batches)
        micro.append(run.ranks.collate(batches, order[progress.position]))
        progress.position += 1
        if progress.position == len(order):
            progress.epoch, progress.position = progress.epoch + 1, 0
    return micro


def guarded_step(run: RunState, micro: list[dict]) -> None:
    """One optimizer step; if compiling the decoder blocks fails, the same step again in eager mode."""
    if not run.compiler.compiled:
        return optimizer_step(run, micro)
    loss_sum = run.loss_sum.clone()  # a device copy, not a read
    try:
        optimizer_step(run, micro)
    except Exception as exc:
        if not run.compiler.recover(exc):
            raise
        run.warn(run.compiler.choice.reason)
        run.parts.optimizer.zero_grad(set_to_none=True)
        run.loss_sum.copy_(loss_sum)
        optimizer_step(run, micro)


def optimizer_step(run: RunState, micro: list[dict]) -> None:
    tokens = step.optimizer_step(run.parts, run.ranks, micro, run.loss_sum, run.config.max_grad_norm)
    run.window.steps += 1
    run.window.tokens += tokens


def log(run: RunState) -> None:
    """Read the summed loss (the sync), emit one record, start a new window."""
    window, progress = run.window, run.progress
    if window.steps == 0:
        return
    loss_sum, memory = run.ranks.read_log(run.loss_sum, memory_stats(run.device), run.read)
    loss = loss_sum / window.steps
    now = time.perf_counter()
    progress.tokens_seen += window.tokens
    run.session_tokens += window.tokens
    done_here = max(progress.step - run.first_step, 1)
    record = StepRecord(
        step=progress.step,
        epoch=progress.epoch + progress.position / len(run.parts.batches),
        loss=loss,
        learning_rate=run.parts.scheduler.get_last_lr()[0],
        tokens_per_s=window.tokens / max(now - window.start, 1e-9),
        tokens_seen=progress.tokens_seen,
        elapsed_s=run.elapsed_s(),
        # the steps left at this session's rate, and the evaluation after training as long as the one before
        eta_s=(now - run.loop_started) / done_here * (run.total_steps - progress.step) + (run.scores.before_s or 0.0),
        **memory,
    )
    if run.update_tracker is not None:  # the adapter's update per layer: one more read, at logging steps only
        record["lora"] = run.update_tracker.record(run.read(run.update_tracker.measure(), "lora"))
    run.final_loss = loss
    run.peak_rss = max(run.peak_rss, record["rss_bytes"] or 0)
    run.loss_sum.zero_()
    run.window = Window()
    run.events.emit("on_log", record)


# ---- save, finish and clean up ---------------------------------------------------------------------------------
def save_checkpoint(run: RunState) -> None:
    with run.timings.measure("save"):
        checkpoint.save_run_checkpoint(run.parts, run.out / "checkpoint", run.checkpoint_state(), run.ranks)


def refuse(run: RunState, resume_from) -> None:
    """A run refused before step 1 (it would not fit): nothing trained, so a new run leaves no folder behind."""
    run.ranks.close()
    run.parts = None
    for sink in (s for s in run.events.sinks if isinstance(s, JsonlSink)):
        sink.close()
    if resume_from is None and run.ranks.is_main:
        checkpoint.discard_new_run_folder(run.out)
    if run.device == "cuda":
        torch.cuda.empty_cache()


def finish(run: RunState, status: str, message: str) -> TrainSummary:
    """Save the adapter whatever happened, write summary.json (rank 0), tell the sinks, free memory."""
    adapter_dir = None
    try:
        if run.parts is not None and run.progress.step > 0:  # nothing trained: no adapter to keep
            with run.timings.measure("save"):
                adapter_dir = checkpoint.save_run_adapter(run.parts, run.out / "adapter", run.ranks)
    except Exception as exc:  # noqa: BLE001 -- report, never mask the run's own outcome
        run.warn(f"could not save the adapter: {exc!r}")
    if run.parts is not None:
        run.choices = report.resolved_choices(run.parts, run.compiler)  # "auto" compile decides mid-run
    on_gpu = run.device == "cuda"
    summary = report.summarize(
        run.config, status, message, out=run.out, adapter_dir=adapter_dir, progress=run.progress,
        total_steps=run.total_steps, final_loss=run.final_loss, session_tokens=run.session_tokens,
        timings=run.timings, elapsed_s=run.elapsed_s(), scores=run.scores,
        peak_memory_bytes=torch.cuda.max_memory_allocated() if on_gpu else run.peak_rss or rss_bytes(),
        warnings=run.warnings, traceback=run.traceback, host_reads=run.host_reads, choices=run.choices,
        compile_s=run.compiler.compile_s if run.compiler is not None else None)
    if run.ranks.is_main:
        atomic_write_json(run.out / "summary.json", summary.as_dict())
    run.events.emit("on_train_end", summary)
    run.parts = None  # drop the model and optimizer so their memory can go back
    if on_gpu:
        torch.cuda.empty_cache()
    return summary
