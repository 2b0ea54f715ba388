"""What a run reports: its set-up when training starts, and how it ended (summary.json and the sinks)."""

from __future__ import annotations

import torch

from lorakit.training import parts as parts_module
from lorakit.training.events import StartInfo, TrainSummary, atomic_write_json
from lorakit.training.modeling import count_params


def start_info(run) -> StartInfo:
    """``on_train_start``'s record: sizes, settings, the planner's peak, the resolved choices, the global batch."""
    p, cfg = run.parts, run.config
    trainable, total = count_params(p.model)
    try:
        predicted = parts_module.predicted_peak_bytes(cfg, p)
    except ValueError as exc:  # a setting the planner does not model: say so, train anyway
        predicted = None
        run.warn(f"no memory prediction for this run: {exc}")
    return StartInfo(
        total_steps=run.total_steps, output_dir=str(run.out), device=run.device,
        precision=cfg.precision, quantization=cfg.quantization, trainable_params=trainable,
        total_params=total, predicted_peak_bytes=predicted, start_step=run.step,
        warnings=list(run.warnings), config=cfg.to_dict(),
        choices=run.choices(), num_processes=cfg.num_processes, distributed=cfg.distributed,
        global_batch_size=cfg.global_batch_size,
    )


def outcome(run) -> tuple[str, str]:
    """(status, message) of a run that ended without an exception: stopped early, or completed."""
    if run.stop.stop_requested and run.step < run.total_steps:
        reason = run.stop.reason or "user"
        return "stopped", (
            f"Stopped ({reason}) after {run.step} of {run.total_steps} steps; the adapter and a resumable "
            f"checkpoint are in {run.out}."
        )
    loss = f"{run.final_loss:.4f}" if run.final_loss is not None else "n/a"
    return "completed", f"Completed {run.step} steps; final training loss {loss}."


def finish(run, status: str, message: str) -> TrainSummary:
    """Save the adapter whatever happened, write summary.json (rank 0), tell the sinks, free memory."""
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
        num_processes=run.config.num_processes,
        global_batch_size=run.config.global_batch_size,
    )
    if run.ranks.is_main:
        atomic_write_json(run.out / "summary.json", summary.as_dict())
    run.emit("on_train_end", summary)
    run.parts = None  # drop the model and optimizer so their memory can go back
    if on_gpu:
        torch.cuda.empty_cache()
    return summary
