"""Greedy answers to prompts, and the exact-match score: "did the fine-tune work" as one number."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch

from lorakit.data import Task, score_answers


def _prompt_text(tokenizer, prompt: str | list[dict]) -> str:
    """A prompt (or a chat's turns so far) as the model reads it before answering: its chat template applied."""
    if tokenizer.chat_template is None:
        turns = [prompt] if isinstance(prompt, str) else [str(turn["content"]) for turn in prompt]
        return "\n".join(turns) + "\n"
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@torch.no_grad()
def generate_answers(
    model,
    tokenizer,
    prompts: Sequence[str | list[dict]],
    *,
    max_new_tokens: int = 24,
    batch_size: int = 16,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    progress: Callable[[int, int], None] | None = None,
) -> list[str]:
    """Greedy completions (special tokens dropped) for user prompts, chat template applied when there is one.

    A prompt is a string (one user turn) or a chat's turns so far. ``progress(answered, len(prompts))`` is
    called after every batch of ``batch_size`` answers (it may raise to end the answering there).
    """
    was_training = model.training
    model.eval()
    device = next(p.device for p in model.parameters())
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # decoder-only batches pad on the left
    answers = []
    try:
        for start in range(0, len(prompts), batch_size):
            texts = [_prompt_text(tokenizer, p) for p in prompts[start : start + batch_size]]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            with autocast():
                out = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    use_cache=True,
                    pad_token_id=tokenizer.pad_token_id,
                )
            new_tokens = out[:, enc["input_ids"].shape[1] :]
            answers += [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
            if progress is not None:
                progress(len(answers), len(prompts))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return answers


def score(
    model,
    tokenizer,
    examples: Sequence[dict],
    *,
    task: Task | None = None,
    max_new_tokens: int = 16,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float | None]:
    """{"exact_match", "format_match"} (fractions 0..1) of greedy answers to {prompt, completion} examples.

    A built-in task brings its own rules (the JSON task compares parsed objects); without one, both sides go
    through `normalize_answer` (first line, trimmed, case and trailing period ignored) and format_match is None.
    """
    if not examples:
        raise ValueError("scoring answers needs at least one {prompt, completion} example")
    answers = generate_answers(
        model, tokenizer, [ex["prompt"] for ex in examples], max_new_tokens=max_new_tokens, autocast=autocast,
        progress=progress,
    )
    return score_answers(task, answers, [ex["completion"] for ex in examples])


def exact_match(
    model,
    tokenizer,
    examples: Sequence[dict],
    *,
    max_new_tokens: int = 16,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> float:
    """Fraction (0..1) of {prompt, completion} examples whose greedy answer equals the completion.

    Both sides go through `normalize_answer` (first line, trimmed, case and trailing period ignored).
    """
    scores = score(model, tokenizer, examples, max_new_tokens=max_new_tokens, autocast=autocast)
    return scores["exact_match"]
