"""Your data in tokens, counted exactly as the trainer counts them: ``token_lengths(dataset, model)``.

Every example goes through the trainer's own path (``lorakit.training.data``: ``load_records``, then
``tokenize_record`` with the model's tokenizer, its chat template and the prompt/completion masking), so a length
here is the length the trainer sees: special tokens, the chat template and the end-of-sequence token included.
From those lengths and the positions of each example's label tokens (the tokens the loss is taken on), the
report answers what ``max_seq_length`` does to the data: how many examples it cuts, how many label tokens are
lost, which examples lose every label token (the trainer skips those), how much padding padded batches carry
against packing, and the smallest cutoff that keeps 95 %, 99 % or every example whole.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lorakit.training.config import DEFAULTS, TrainConfig
from lorakit.training.data import IGNORE, Batches, load_records, tokenize_record

__all__ = ["KEEP_SHARES", "LengthReport", "token_lengths"]

KEEP_SHARES = (0.95, 0.99, 1.0)  # shares of examples kept whole that the report gives a cutoff for


@dataclass(frozen=True, eq=False)
class LengthReport:
    """Token lengths of a dataset as the trainer tokenizes it, and what a ``max_seq_length`` cutoff does to them.

    ``lengths``: tokens per example, untruncated. ``first_target``: per example, the position of its first label
    token that the loss can use (positions >= 1: the first token predicts nothing); ``NO_TARGET`` when it has none.
    ``target_positions``: the positions of every such label token, all examples together. ``at(n)`` gives the
    same data under another cutoff without tokenizing again.
    """

    lengths: np.ndarray
    first_target: np.ndarray
    target_positions: np.ndarray
    max_seq_length: int
    batch_size: int
    seed: int = 42

    NO_TARGET = np.iinfo(np.int64).max

    def at(self, max_seq_length: int | None = None, batch_size: int | None = None) -> LengthReport:
        """This data under another cutoff or batch size."""
        return dataclasses.replace(self, max_seq_length=max_seq_length or self.max_seq_length,
                                   batch_size=batch_size or self.batch_size)

    # -- the data ----------------------------------------------------------------------------------------------
    @property
    def examples(self) -> int:
        return int(self.lengths.size)

    @property
    def tokens(self) -> int:
        """Tokens of every example, untruncated."""
        return int(self.lengths.sum())

    @property
    def label_tokens(self) -> int:
        """Label tokens the loss can be taken on (untruncated)."""
        return int(self.target_positions.size)

    def keeps_whole(self, share: float) -> int:
        """The smallest max_seq_length that keeps ``share`` (0..1] of the examples whole."""
        if not 0 < share <= 1:
            raise ValueError(f"share={share!r}: give a fraction of the examples in (0, 1]")
        ordered = np.sort(self.lengths)
        return int(ordered[max(0, math.ceil(share * ordered.size - 1e-9) - 1)])

    @property
    def whole_at(self) -> dict[float, int]:
        """{0.95: cutoff, 0.99: cutoff, 1.0: cutoff}: the smallest max_seq_length keeping that share whole."""
        return {share: self.keeps_whole(share) for share in KEEP_SHARES}

    def histogram(self, bins: int = 30) -> tuple[np.ndarray, np.ndarray]:
        """(counts, edges) of the untruncated lengths, in at most ``bins`` bins of a whole number of tokens."""
        low, high = int(self.lengths.min()), int(self.lengths.max()) + 1
        width = max(1, math.ceil((high - low) / bins))
        return np.histogram(self.lengths, bins=np.arange(low, high + width, width))

    # -- what the cutoff does ----------------------------------------------------------------------------------
    @property
    def truncated(self) -> int:
        """Examples longer than max_seq_length (the trainer cuts their end)."""
        return int((self.lengths > self.max_seq_length).sum())

    @property
    def truncated_share(self) -> float:
        return self.truncated / max(1, self.examples)

    @property
    def lost_label_tokens(self) -> int:
        """Label tokens beyond the cutoff: the loss never sees them."""
        return int((self.target_positions >= self.max_seq_length).sum())

    @property
    def lost_label_share(self) -> float:
        return self.lost_label_tokens / max(1, self.label_tokens)

    @property
    def skipped(self) -> int:
        """Examples left without any label token after the cutoff: the trainer drops them."""
        return int((self.first_target >= self.max_seq_length).sum())

    def _kept_lengths(self) -> np.ndarray:
        return np.minimum(self.lengths, self.max_seq_length)[self.first_target < self.max_seq_length]

    @property
    def padding(self) -> dict[str, int]:
        """Pad tokens of one epoch of padded batches of batch_size (the trainer's seeded shuffle), against packing.

        {"tokens": real tokens trained on, "padded_pad_tokens": pad tokens the padded batches carry,
        "packed_pad_tokens": 0 (packing fills rows of max_seq_length), "packed_dropped_tokens": the trailing
        partial row that packing drops}.
        """
        kept = self._kept_lengths()
        real = int(kept.sum())
        if kept.size == 0:
            return {"tokens": 0, "padded_pad_tokens": 0, "packed_pad_tokens": 0, "packed_dropped_tokens": 0}
        order = Batches([None] * kept.size, self.batch_size, self.seed, "pad", 0).order(0)
        pad = sum(len(b) * int(kept[b].max()) - int(kept[b].sum()) for b in order)
        rows = real // self.max_seq_length
        dropped = real - rows * self.max_seq_length if rows >= 1 else 0
        return {"tokens": real, "padded_pad_tokens": pad, "packed_pad_tokens": 0, "packed_dropped_tokens": dropped}

    @property
    def padded_share(self) -> float:
        """Share of the padded batches' tokens that are padding."""
        pad = self.padding
        return pad["padded_pad_tokens"] / max(1, pad["padded_pad_tokens"] + pad["tokens"])

    # -- in words ----------------------------------------------------------------------------------------------
    def lines(self) -> list[str]:
        """The report as short sentences."""
        whole = ", ".join(f"{share:.0%} at {n}" for share, n in self.whole_at.items())
        pad = self.padding
        return [
            f"{self.examples} examples, {self.tokens} tokens (median {int(np.median(self.lengths))}, longest "
            f"{int(self.lengths.max())}), {self.label_tokens} label tokens",
            f"max_seq_length {self.max_seq_length}: {self.truncated} examples longer ({self.truncated_share:.1%}), "
            f"{self.lost_label_tokens} label tokens lost ({self.lost_label_share:.1%}), {self.skipped} examples "
            "left without a label token (skipped)",
            f"smallest max_seq_length keeping examples whole: {whole}",
            f"batches of {self.batch_size}: padding {pad['padded_pad_tokens']} tokens ({self.padded_share:.1%} of "
            f"the padded batches); packing pads none and drops a last partial row of "
            f"{pad['packed_dropped_tokens']} tokens",
        ]

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def png(self, width: float = 6.4, height: float = 2.6) -> bytes:
        """The histogram with the cutoff as PNG bytes (``IPython.display.Image(report.png())``)."""
        from lorakit.viz.lengths import length_png

        return length_png(self, width, height)

    def plot(self, ax: Any = None, bins: int = 30) -> Any:
        """The histogram with the cutoff drawn (``lorakit.viz.lengths.draw_token_lengths``); returns the Axes."""
        from lorakit.viz.lengths import draw_token_lengths, length_figure

        if ax is None:
            ax = length_figure().axes[0]
        draw_token_lengths(ax, self, bins=bins)
        return ax


def _tokenizer(model: Any, trust_remote_code: bool) -> Any:
    """The tokenizer of ``model`` (a model name as TrainConfig.model takes it), or ``model`` itself if it is one."""
    if not isinstance(model, (str, Path)):
        return model
    from lorakit.training.embedded import resolve_model
    from lorakit.training.modeling import tokenizer_at

    return tokenizer_at(resolve_model(str(model)), trust_remote_code)


def token_lengths(dataset: Any, model: Any = None, max_seq_length: int | None = None, batch_size: int | None = None,
                  *, seed: int | None = None, trust_remote_code: bool | None = None) -> LengthReport:
    """Tokenize ``dataset`` as the trainer does and report its lengths under ``max_seq_length``.

    ``dataset``: what ``TrainConfig.dataset`` takes (a built-in task, a list of strings / {prompt, completion} /
    {messages} / {text}, a .jsonl/.txt path, a datasets.Dataset), or a whole ``TrainConfig`` (its dataset,
    model, max_seq_length, batch_size and seed). ``model``: a model name as ``TrainConfig.model`` takes it, or a
    tokenizer. ``max_seq_length`` and ``batch_size`` default to the config's, else TrainConfig's defaults. Every
    record is counted (a built-in task: its training split); the trainer also holds out eval_split of them.
    """
    config = dataset if isinstance(dataset, TrainConfig) else None
    if config is not None:
        dataset, model = config.dataset, model if model is not None else config.model
    pick = lambda given, name: given if given is not None else getattr(config, name, DEFAULTS[name])  # noqa: E731
    max_seq_length, seed, trust = pick(max_seq_length, "max_seq_length"), pick(seed, "seed"), pick(
        trust_remote_code, "trust_remote_code")
    batch_size = pick(batch_size, "batch_size")
    if batch_size == "auto":
        batch_size = DEFAULTS["batch_size"]
    TrainConfig(max_seq_length=max_seq_length, batch_size=batch_size, seed=seed)  # the same bounds as a run
    tokenizer = _tokenizer(model if model is not None else DEFAULTS["model"], trust)
    lengths, first, positions = [], [], []
    for record in load_records(dataset):
        example = tokenize_record(record, tokenizer)
        targets = [i for i, label in enumerate(example.labels) if i >= 1 and label != IGNORE]
        lengths.append(len(example.input_ids))
        first.append(targets[0] if targets else LengthReport.NO_TARGET)
        positions.extend(targets)
    return LengthReport(np.asarray(lengths, dtype=np.int64), np.asarray(first, dtype=np.int64),
                        np.asarray(positions, dtype=np.int64), max_seq_length, batch_size, seed)
