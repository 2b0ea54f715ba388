"""Held-out evaluation and previews of a run: the loss on the eval split, exact and format match, answers.

Each function is given what it uses: the run's parts (``parts.Parts``), its ranks, its settings, and the
callables it reports through (``emit`` to the sinks, ``read`` for the one counted device read, ``warn``). The
loss goes through ``step.batch_loss`` (the same head and kernel as training) and is read from the device once
per evaluation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lorakit.data import builtin_task
from lorakit.training import step
from lorakit.training.config import TrainConfig
from lorakit.training.distributed import Ranks
from lorakit.training.evaluate import generate_answers, score
from lorakit.training.events import EvalRecord
from lorakit.training.parts import Parts

__all__ = ["answer_scores", "eval_loss", "evaluate", "preview"]


@torch.no_grad()
def eval_loss(parts: Parts, ranks: Ranks, read: Callable) -> float | None:
    """Token-weighted mean loss over the held-out batches (one device read); None without held-out batches."""
    if parts.eval_batches is None:
        return None
    parts.model.eval()
    total = torch.zeros((), device=parts.accelerator.device)
    count = 0
    for indices in parts.eval_batches.order(0):
        batch = ranks.collate(parts.eval_batches, indices)  # this rank's slice; count of the whole batch
        total += step.batch_loss(parts, batch, 1).detach()  # the summed loss
        count += batch["n_targets"]
    parts.model.train()
    return read(ranks.sum(total), "eval") / max(count, 1)


def evaluate(parts: Parts, ranks: Ranks, config: TrainConfig, at_step: int, *, emit: Callable, read: Callable,
             warn: Callable, with_exact_match: bool = False) -> EvalRecord:
    """Held-out loss (and exact and format match when asked) at ``at_step``, emitted when there is something."""
    batches = parts.eval_batches
    if batches is not None or with_exact_match:
        what = f"{len(batches.rows)} held-out examples" if batches is not None else "held-out questions"
        extra = " and answering them for exact match" if with_exact_match else ""
        emit("on_phase", "evaluating", f"evaluating the loss on {what}{extra}")
    record = EvalRecord(step=at_step, eval_loss=eval_loss(parts, ranks, read))
    if with_exact_match:
        record.update(answer_scores(parts, ranks, config, warn))
    if record["eval_loss"] is not None or "exact_match" in record:
        emit("on_eval", record)
    return record


def answer_scores(parts: Parts, ranks: Ranks, config: TrainConfig, warn: Callable) -> dict[str, float | None]:
    """Exact match (0..1) of greedy answers on the held-out {prompt, completion} examples, and format match
    for a built-in task (lorakit.data.TASKS); None where there is no score."""
    examples = [r for r in parts.eval_records if isinstance(r, dict) and {"prompt", "completion"} <= set(r)]
    if not examples:
        warn("eval_exact_match needs held-out {prompt, completion} examples; none, so no score")
        return {"exact_match": None, "format_match": None}
    with ranks.generating(parts) as model:
        return score(model, parts.tokenizer, examples, task=builtin_task(config.dataset),
                     max_new_tokens=config.max_new_tokens, autocast=parts.autocast)


def preview(parts: Parts, ranks: Ranks, config: TrainConfig, emit: Callable) -> list[str]:
    """Greedy answers to the config's preview prompts."""
    prompts = config.preview_prompts
    if not prompts:
        return []
    emit("on_phase", "generating", f"answering {len(prompts)} preview prompts")
    with ranks.generating(parts) as model:  # every rank answers (FSDP needs them all); rank 0 reports
        return generate_answers(model, parts.tokenizer, prompts, max_new_tokens=config.max_new_tokens,
                                autocast=parts.autocast)
