"""Held-out evaluation and previews of a run: the loss on the eval split, exact and format match, answers.

Functions of the running ``_Run`` (lorakit/training/loop.py): they read its parts and report through its
sinks. The loss goes through the run's own ``loss`` (the same head and kernel as training) and is read
from the device once per evaluation.
"""

from __future__ import annotations

import torch

from lorakit.data import builtin_task
from lorakit.training.evaluate import generate_answers, score
from lorakit.training.events import EvalRecord


@torch.no_grad()
def eval_loss(run) -> float | None:
    """Token-weighted mean loss over the held-out batches (one device read)."""
    p = run.parts
    if p.eval_batches is None:
        return None
    p.model.eval()
    total = torch.zeros((), device=p.accelerator.device)
    count = 0
    for indices in p.eval_batches.order(0):
        batch = run.ranks.collate(p.eval_batches, indices)  # this rank's slice; count of the whole batch
        total += run.loss(batch, 1).detach()  # the summed loss
        count += batch["n_targets"]
    p.model.train()
    return run.read(run.ranks.sum(total), "eval") / max(count, 1)


def evaluate(run, with_exact_match: bool = False) -> EvalRecord:
    """Held-out loss (and exact and format match when asked), emitted to the sinks when there is something."""
    batches = run.parts.eval_batches
    if batches is not None or with_exact_match:
        what = f"{len(batches.rows)} held-out examples" if batches is not None else "held-out questions"
        extra = " and answering them for exact match" if with_exact_match else ""
        run.emit("on_phase", "evaluating", f"evaluating the loss on {what}{extra}")
    record = EvalRecord(step=run.step, eval_loss=eval_loss(run))
    if with_exact_match:
        record.update(answer_scores(run))
    if record["eval_loss"] is not None or "exact_match" in record:
        run.emit("on_eval", record)
    return record


def answer_scores(run) -> dict[str, float | None]:
    """Exact match (0..1) of greedy answers on the held-out {prompt, completion} examples, and format match
    for a built-in task (lorakit.data.TASKS); None where there is no score."""
    p = run.parts
    examples = [r for r in p.eval_records if isinstance(r, dict) and {"prompt", "completion"} <= set(r)]
    if not examples:
        run.warn("eval_exact_match needs held-out {prompt, completion} examples; none, so no score")
        return {"exact_match": None, "format_match": None}
    with run.ranks.generating(p) as model:
        return score(model, p.tokenizer, examples, task=builtin_task(run.config.dataset),
                     max_new_tokens=run.config.max_new_tokens, autocast=p.autocast)


def preview(run) -> list[str]:
    """Greedy answers to the config's preview prompts."""
    prompts, p = run.config.preview_prompts, run.parts
    if not prompts:
        return []
    run.emit("on_phase", "generating", f"answering {len(prompts)} preview prompts")
    with run.ranks.generating(p) as model:  # every rank answers (FSDP needs them all); rank 0 reports
        return generate_answers(model, p.tokenizer, prompts, max_new_tokens=run.config.max_new_tokens,
                                autocast=p.autocast)


def before_training(run) -> None:
    """Answers and scores of the untrained adapter (LoRA B starts at zero, so this is the base model)."""
    if run.step > 0:
        return  # resumed: "before" was measured by the first part of the run
    run.summary_extra["preview_before"] = preview(run)
    if run.config.eval_exact_match:
        record = evaluate(run, with_exact_match=True)
        run.summary_extra["exact_match_before"] = record.get("exact_match")
        run.summary_extra["format_match_before"] = record.get("format_match")
    elif run.parts.eval_batches is not None:
        evaluate(run)


def after_training(run, status: str) -> None:
    """The final evaluation (exact match only for a completed run) and the answers after training."""
    wants_score = run.config.eval_exact_match and status == "completed"
    record = evaluate(run, with_exact_match=wants_score)
    run.summary_extra["exact_match_after"] = record.get("exact_match")
    run.summary_extra["format_match_after"] = record.get("format_match")
    run.summary_extra["preview_after"] = preview(run)
