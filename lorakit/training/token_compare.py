"""Which tokens the adapter changed: each token's log-probability with the adapter and without it.

``compare_tokens(model_or_run, text)`` runs one text through a peft model twice, as it is and inside peft's
``disable_adapter()`` (the base model alone), and returns a ``TokenComparison``: per predicted token its
log-probability both ways and the change, the loss both ways over the tokens that count, the biggest movers,
and a coloured rendering in a notebook (``_repr_html_``).

``model_or_run`` is a live peft model (with ``tokenizer=``), a finished run's folder (its base is loaded as
the run loaded it, from config.json, and its saved ``adapter/`` put on top: ``load_run``), a ``TrainSummary``,
or what ``load_run`` returned (load once, compare many texts). ``text`` is a string (every token after the
first is scored) or a dataset record ({prompt, completion}, {messages}, {text}: tokenized as the trainer
tokenizes it and scored where the trainer takes its loss, so a run's held-out records give its eval loss).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lorakit.training.config import TrainConfig
from lorakit.training.data import IGNORE, tokenize_record
from lorakit.training.lora_stats import lora_layers

__all__ = ["RunModel", "TokenComparison", "compare_tokens", "context_length", "load_run", "pooled_loss"]

_CHUNK = 512  # positions per log-softmax: the [positions, vocab] fp32 block stays small
CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


@dataclass(frozen=True)
class TokenComparison:
    """Per predicted token (positions 1..n-1 of the text): its text, id, log-probability (natural log) with the
    adapter and without it, and whether it counts in the loss."""

    first: str  # the first token's text: context only, nothing predicts it
    tokens: list[str]
    token_ids: list[int]
    logprob_with: list[float]
    logprob_without: list[float]
    scored: list[bool]

    @property
    def change(self) -> list[float]:
        """log p with the adapter minus log p without it, per token (nats; > 0: the adapter made it likelier)."""
        return [w - o for w, o in zip(self.logprob_with, self.logprob_without, strict=True)]

    @property
    def n_scored(self) -> int:
        return sum(self.scored)

    def _loss(self, logprobs: list[float]) -> float:
        return -sum(p for p, s in zip(logprobs, self.scored, strict=True) if s) / max(self.n_scored, 1)

    @property
    def loss_with(self) -> float:
        """Mean negative log-likelihood (nats per token) of the scored tokens, with the adapter."""
        return self._loss(self.logprob_with)

    @property
    def loss_without(self) -> float:
        """The same without the adapter (the base model)."""
        return self._loss(self.logprob_without)

    def biggest_movers(self, k: int = 5) -> list[tuple[int, str, float]]:
        """The k scored tokens whose log-probability changed most either way: (position, token, change)."""
        change = self.change
        picked = sorted((i for i, s in enumerate(self.scored) if s), key=lambda i: -abs(change[i]))[:k]
        return [(i + 1, self.tokens[i], change[i]) for i in picked]

    def to_html(self, movers: int = 5) -> str:
        from lorakit.viz.lora import tokens_html

        return tokens_html(self.tokens, self.logprob_with, self.logprob_without, self.scored, self.first, movers)

    def _repr_html_(self) -> str:
        return self.to_html()


def pooled_loss(comparisons: list[TokenComparison]) -> tuple[float, float]:
    """(loss with, loss without) over every scored token of several comparisons (token-weighted, as the
    trainer's eval loss)."""
    count = max(sum(c.n_scored for c in comparisons), 1)
    with_ = sum(c.loss_with * c.n_scored for c in comparisons) / count
    return with_, sum(c.loss_without * c.n_scored for c in comparisons) / count


@dataclass(frozen=True)
class RunModel:
    """A finished run's base with its adapter, its tokenizer and its autocast (``load_run``)."""

    model: Any
    tokenizer: Any
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    run_dir: Path | None = None


def load_run(run_dir: str | Path, device: str | None = None) -> RunModel:
    """The base a run trained (as config.json loads it: precision, quantization) with its saved adapter on top.

    ``run_dir``: a run folder (or its ``adapter/``); ``device``: "cpu", "cuda" (default: a GPU when there is one
    and the run did not ask for the CPU).
    """
    from peft import PeftModel

    from lorakit.training.modeling import load_base
    from lorakit.training.parts import autocast_for

    folder = Path(run_dir)
    if (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file():
        folder = folder.parent  # the adapter folder itself was given
    if not (folder / "config.json").is_file():
        raise ValueError(f"run_dir={str(run_dir)!r} is not a run folder: it has no config.json")
    adapter = folder / "adapter"
    weights = ("adapter_model.safetensors", "adapter_model.bin")
    if not (adapter / "adapter_config.json").is_file() or not any((adapter / w).is_file() for w in weights):
        raise ValueError(f"run_dir={str(run_dir)!r} has no saved adapter (adapter/ with adapter_config.json and "
                         "adapter_model.safetensors): the run ended before saving one; train it (or resume it) first")
    config = TrainConfig.from_dict(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    if device is None:
        device = "cuda" if torch.cuda.is_available() and config.device != "cpu" else "cpu"
    base, tokenizer = load_base(config, device)
    if not config.quant.quantized:  # a quantized base is placed by its loader
        base = base.to(device)
    model = PeftModel.from_pretrained(base, adapter).eval()
    return RunModel(model, tokenizer, autocast_for(config, device), folder)


def context_length(model) -> int | None:
    """The longest input the model's position embeddings cover (its config's max_position_embeddings or kin)."""
    config = getattr(model, "config", None)
    return next((int(v) for v in (getattr(config, f, None) for f in CONTEXT_FIELDS) if isinstance(v, int)), None)


def _resolve(model_or_run, tokenizer) -> RunModel:
    if isinstance(model_or_run, RunModel):
        return model_or_run
    if isinstance(model_or_run, (str, Path)):
        return load_run(model_or_run)
    if hasattr(model_or_run, "output_dir") and not hasattr(model_or_run, "forward"):  # a TrainSummary
        return load_run(model_or_run.output_dir)
    if tokenizer is None:
        raise ValueError("compare_tokens(model, text) needs tokenizer=... with a live model (a run folder brings "
                         "its own)")
    return RunModel(model_or_run, tokenizer)


def _encode(text: Any, tokenizer) -> tuple[list[int], list[bool]]:
    """(ids, scored per predicted position) of a string or a dataset record."""
    if isinstance(text, str):
        if not text.strip():
            raise ValueError("text is empty: give a sentence or a dataset record to compare")
        ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
        scored = [True] * (len(ids) - 1)
    else:
        example = tokenize_record(text, tokenizer)
        ids, scored = example.input_ids, [label != IGNORE for label in example.labels[1:]]
        if not any(scored):
            raise ValueError(f"text={str(text)[:60]!r}: the record has no answer tokens to score")
    if len(ids) < 2:
        raise ValueError(f"text={str(text)[:60]!r} is a single token: there is nothing to predict")
    return ids, scored


@torch.no_grad()
def _logprobs(model, ids: torch.Tensor, autocast) -> list[float]:
    """log p(token i | tokens before it) for i = 1..n-1, from one forward pass."""
    with autocast():
        logits = model(input_ids=ids, use_cache=False).logits[0, :-1]
    targets = ids[0, 1:]
    out = [logits[s : s + _CHUNK].float().log_softmax(-1).gather(1, targets[s : s + _CHUNK, None])
           for s in range(0, len(targets), _CHUNK)]
    return torch.cat(out).squeeze(1).tolist()


def compare_tokens(model_or_run, text: Any, *, tokenizer=None) -> TokenComparison:
    """Each token's log-probability with the adapter and without it (peft's ``disable_adapter``): see the module."""
    run = _resolve(model_or_run, tokenizer)
    model, tokenizer = run.model, run.tokenizer
    lora_layers(model)  # ValueError for a model without LoRA layers
    if not hasattr(model, "disable_adapter"):
        raise ValueError(f"{type(model).__name__} has LoRA layers but no disable_adapter(): give the PeftModel "
                         "(peft.get_peft_model / PeftModel.from_pretrained), not the model inside it")
    ids, scored = _encode(text, tokenizer)
    limit = context_length(model)
    if limit is not None and len(ids) > limit:
        raise ValueError(f"text is {len(ids)} tokens, longer than the model's context of {limit} tokens "
                         "(max_position_embeddings): shorten it or compare it in parts")
    device = next(model.parameters()).device
    batch = torch.tensor([ids], device=device)
    training = model.training
    model.eval()
    try:
        with_adapter = _logprobs(model, batch, run.autocast)
        with model.disable_adapter():
            without = _logprobs(model, batch, run.autocast)
    finally:
        model.train(training)
    pieces = [tokenizer.decode([i]) for i in ids]
    return TokenComparison(pieces[0], pieces[1:], ids[1:], with_adapter, without, scored)
