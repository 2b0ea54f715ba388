"""What a run reports: its set-up when training starts, how it ended, and its summary; built from what it is given.

Plain functions of the run's parts and records (``state``'s Progress, Timings and Scores): nothing here writes a
file, and only ``eval_progress`` calls the sinks (an evaluation's progress, while it runs); the loop reports the
rest, with what these return.
"""

from __future__ import annotations

import time
from pathlib import Path

from lorakit.training import evaluation
from lorakit.training.config import TrainConfig
from lorakit.training.events import ProgressRecord, StartInfo, StopHandle, TrainSummary
from lorakit.training.modeling import count_params
from lorakit.training.parts import Parts, predicted_peak_bytes
from lorakit.training.state import Progress, RunState, Scores, Timings

__all__ = ["eval_progress", "outcome", "predicted_peak", "resolved_choices", "start_info", "summarize"]


def resolved_choices(parts: Parts, compiler) -> dict[str, dict]:
    """The resolved "auto" settings as {name: {"value", "reason"}}: the parts' and the block compiler's."""
    compiled = {"compile": compiler.choice} if compiler is not None else {}
    return {name: {"value": c.value, "reason": c.reason} for name, c in {**parts.choices, **compiled}.items()}


def predicted_peak(config: TrainConfig, parts: Parts) -> tuple[int | None, str | None]:
    """(the planner's peak bytes for this run, None) or (None, why the planner cannot model it)."""
    try:
        return predicted_peak_bytes(config, parts), None
    except ValueError as exc:  # a setting the planner does not model: say so, train anyway
        return None, f"no memory prediction for this run: {exc}"


def start_info(config: TrainConfig, parts: Parts, *, out: Path, total_steps: int, start_step: int,
               predicted_peak_bytes: int | None, warnings: list[str], choices: dict[str, dict]) -> StartInfo:
    """``on_train_start``'s record: sizes, settings, the planner's peak, the resolved choices, the global batch."""
    trainable, total = count_params(parts.model)
    return StartInfo(
        total_steps=total_steps, output_dir=str(out), device=parts.device,
        precision=config.precision, quantization=config.quantization, trainable_params=trainable,
        total_params=total, predicted_peak_bytes=predicted_peak_bytes, start_step=start_step,
        warnings=list(warnings), config=config.to_dict(),
        choices=choices, num_processes=config.num_processes, distributed=config.distributed,
        global_batch_size=config.global_batch_size,
    )


def outcome(stop: StopHandle, step: int, total_steps: int, out: Path, final_loss: float | None) -> tuple[str, str]:
    """(status, message) of a run that ended without an exception: stopped early, or completed."""
    if stop.stop_requested and step < total_steps:
        reason = stop.reason or "user"
        if step == 0:
            return "stopped", (f"Stopped ({reason}) before the first training step: nothing was trained, so no "
                               "adapter or checkpoint was saved.")
        return "stopped", (
            f"Stopped ({reason}) after {step} of {total_steps} steps; the adapter and a resumable "
            f"checkpoint are in {out}."
        )
    loss = f"{final_loss:.4f}" if final_loss is not None else "n/a"
    return "completed", f"Completed {step} steps; final training loss {loss}."


def previews(scores: Scores) -> list[dict]:
    """{prompt, before, after} per preview question ("" where the run never got that far), with "expected",
    the held-out answer, where the question is a held-out example."""
    prompts = scores.preview_prompts
    before = scores.preview_before or [""] * len(prompts)
    after = scores.preview_after or [""] * len(prompts)
    expected = scores.preview_expected or [None] * len(prompts)
    rows = []
    for prompt, answer_before, answer_after, reference in zip(prompts, before, after, expected, strict=True):
        row = {"prompt": prompt, "before": answer_before, "after": answer_after}
        rows.append(row if reference is None else {**row, "expected": reference})
    return rows


def summarize(config: TrainConfig, status: str, message: str, *, out: Path, adapter_dir: Path | None,
              progress: Progress, total_steps: int, final_loss: float | None, session_tokens: int,
              timings: Timings, elapsed_s: float | None, scores: Scores, peak_memory_bytes: int | None,
              warnings: list[str], traceback: str | None, host_reads: dict[str, int], choices: dict[str, dict],
              compile_s: float | None) -> TrainSummary:
    """The run's TrainSummary; tokens_per_s is the session's tokens over its training-loop time."""
    return TrainSummary(
        status=status,
        message=message,
        steps_done=progress.step,
        total_steps=total_steps,
        final_loss=final_loss,
        output_dir=str(out),
        adapter_dir=str(adapter_dir) if adapter_dir else None,
        metrics_path=str(out / "metrics.jsonl"),
        peak_memory_bytes=peak_memory_bytes,
        tokens_per_s=session_tokens / timings.train_s if timings.train_s else None,
        elapsed_s=elapsed_s,
        preview=previews(scores),
        exact_match_before=scores.exact_match_before,
        exact_match_after=scores.exact_match_after,
        format_match_before=scores.format_match_before,
        format_match_after=scores.format_match_after,
        warnings=list(warnings),
        traceback=traceback,
        host_reads=dict(host_reads),
        choices=choices,
        compile_s=compile_s,
        num_processes=config.num_processes,
        global_batch_size=config.global_batch_size,
        train_s=timings.train_s,
        eval_s=timings.eval_s,
        save_s=timings.save_s,
    )


def eval_progress(run: RunState, what: str) -> evaluation.Progress:
    """The progress callable of one part of an evaluation ("loss", "answers", "preview"): it tells the sinks
    how far the part is and how long the run has left, and ends the part when Stop was pressed (every rank
    together)."""
    started, phase = time.perf_counter(), "generating" if what == "preview" else "evaluating"
    noun = {"loss": "held-out examples evaluated", "answers": "answered", "preview": "preview prompts answered"}

    def report_progress(done: int, total: int) -> None:
        now = time.perf_counter()
        part_eta = (now - started) / done * (total - done) if done else None
        eta = None
        if run.after_started is not None:  # after training: this part's rest, or what the one before took
            eta = max(part_eta or 0.0, (run.scores.before_s or 0.0) - (now - run.after_started))
        run.events.emit("on_progress", ProgressRecord(
            step=run.progress.step, phase=phase, detail=f"{done} of {total} {noun[what]}", done=done, total=total,
            elapsed_s=run.elapsed_s(), part_eta_s=part_eta, eta_s=eta))
        if run.ranks.agree_stop(run.stop):
            raise evaluation.Stopped

    return report_progress
