"""Held-out evaluation and previews of a run: the loss on the eval split, exact and format match, answers.

Each function is given what it uses: the run's parts (``parts.Parts``), its ranks, its settings, and the
callables it reports through (``emit`` to the sinks, ``read`` for the one counted device read, ``warn``,
``progress``). The loss goes through ``step.batch_loss`` (the same head and kernel as training) and is read from
the device once per evaluation.

``progress(done, total)`` is called after every batch (of examples, or of answers); the loop's progress says
how far the evaluation is and raises ``Stopped`` when Stop was pressed, which ends the evaluation there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lorakit.data import builtin_task
from lorakit.training import step
from lorakit.training.config import TrainConfig
from lorakit.training.distributed import Ranks
from lorakit.training.evaluate import generate_answers, score
from lorakit.training.events import EvalRecord
from lorakit.training.parts import Parts
from lorakit.training.records import record_kind

__all__ = ["PreviewItem", "Stopped", "answer_scores", "eval_loss", "evaluate", "preview", "preview_items"]

Progress = Callable[[int, int], None]


class Stopped(Exception):  # noqa: N818 -- a stop request, not an error
    """Stop was pressed during an evaluation or a preview: the rest of it is skipped."""


def _no_progress(done: int, total: int) -> None:
    """Where no one watches: nothing to report, nothing to stop."""


@torch.no_grad()
def eval_loss(parts: Parts, ranks: Ranks, read: Callable, progress: Progress = _no_progress) -> float | None:
    """Token-weighted mean loss over the held-out batches (one device read); None without held-out batches."""
    if parts.eval_batches is None:
        return None
    parts.model.eval()
    total = torch.zeros((), device=parts.accelerator.device)
    count = done = 0
    try:
        for indices in parts.eval_batches.order(0):
            batch = ranks.collate(parts.eval_batches, indices)  # this rank's slice; count of the whole batch
            total += step.batch_loss(parts, batch, 1).detach()  # the summed loss
            count += batch["n_targets"]
            done += len(indices)
            progress(done, len(parts.eval_batches.rows))
    finally:
        parts.model.train()
    return read(ranks.sum(total), "eval") / max(count, 1)


def evaluate(parts: Parts, ranks: Ranks, config: TrainConfig, at_step: int, *, emit: Callable, read: Callable,
             warn: Callable, with_exact_match: bool = False,
             progress: Callable[[str], Progress] = lambda what: _no_progress) -> EvalRecord:
    """Held-out loss (and exact and format match when asked) at ``at_step``, emitted when there is something.

    ``progress(what)`` gives the progress callable of one part ("loss" or "answers")."""
    batches = parts.eval_batches
    if batches is not None or with_exact_match:
        what = f"{len(batches.rows)} held-out examples" if batches is not None else "held-out questions"
        extra = " and answering them for exact match" if with_exact_match else ""
        emit("on_phase", "evaluating", f"evaluating the loss on {what}{extra}")
    record = EvalRecord(step=at_step, eval_loss=eval_loss(parts, ranks, read, progress("loss")))
    if with_exact_match:
        record.update(answer_scores(parts, ranks, config, warn, progress("answers")))
    if record["eval_loss"] is not None or "exact_match" in record:
        emit("on_eval", record)
    return record


def answer_scores(parts: Parts, ranks: Ranks, config: TrainConfig, warn: Callable,
                  progress: Progress = _no_progress) -> dict[str, float | None]:
    """Exact match (0..1) of greedy answers on the held-out {prompt, completion} examples, and format match
    for a built-in task (lorakit.data.TASKS); None where there is no score."""
    examples = [r for r in parts.eval_records if isinstance(r, dict) and {"prompt", "completion"} <= set(r)]
    if not examples:
        warn("eval_exact_match needs held-out {prompt, completion} examples; none, so no score")
        return {"exact_match": None, "format_match": None}
    with ranks.generating(parts) as model:
        return score(model, parts.tokenizer, examples, task=builtin_task(config.dataset),
                     max_new_tokens=config.max_new_tokens, autocast=parts.autocast, progress=progress)


@dataclass(frozen=True)
class PreviewItem:
    """One question of the before/after preview: what the model is asked (a prompt, or a chat's turns up to
    its last answer), what the table shows, and the held-out answer (None for the user's own prompts)."""

    ask: str | list[dict]
    shown: str
    expected: str | None = None


def preview_items(config: TrainConfig, eval_records: list) -> list[PreviewItem]:
    """The preview's questions: the config's preview_prompts, else its first ``preview_examples`` held-out
    examples that ask something (prompt/completion pairs and chats; plain text asks nothing)."""
    if config.preview_prompts:
        return [PreviewItem(p, p) for p in config.preview_prompts]
    items = []
    for record in eval_records:
        if len(items) == config.preview_examples:
            break
        kind = record_kind(record)
        if kind == "pair":
            items.append(PreviewItem(record["prompt"], record["prompt"], record["completion"]))
        elif kind == "messages":
            turns = list(record["messages"])
            last = max(i for i, turn in enumerate(turns) if turn["role"] == "assistant")
            if last > 0:
                items.append(PreviewItem(turns[:last], str(turns[last - 1]["content"]), str(turns[last]["content"])))
    return items


def preview(parts: Parts, ranks: Ranks, config: TrainConfig, emit: Callable, items: list[PreviewItem],
            progress: Progress = _no_progress) -> list[str]:
    """Greedy answers to the preview's questions."""
    if not items:
        return []
    emit("on_phase", "generating", f"answering {len(items)} preview prompts")
    with ranks.generating(parts) as model:  # every rank answers (FSDP needs them all); rank 0 reports
        return generate_answers(model, parts.tokenizer, [item.ask for item in items],
                                max_new_tokens=config.max_new_tokens, autocast=parts.autocast, progress=progress)
