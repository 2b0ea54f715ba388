"""Turn a dataset (strings, prompt/completion pairs, chat messages, a file, a datasets.Dataset) into batches.

Loss is taken only on completion / assistant tokens (labels -100 elsewhere). Batches are deterministic for a
given seed and epoch, so a resumed run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import torch

from lorakit.training.records import record_kind, records_from

IGNORE = -100  # label value that cross-entropy skips


@dataclass
class Example:
    """One tokenized example: ids and labels of equal length (labels -100 where no loss is taken)."""

    input_ids: list[int]
    labels: list[int]


def load_records(dataset: Any) -> list:
    """Normalize the dataset argument to a list of str / dict records (a built-in task: its training split)."""
    from lorakit.data import builtin_task

    task = builtin_task(dataset)
    if task is not None:
        return task.split("train")
    return records_from(dataset)


def _chat_ids(tokenizer, messages: list[dict], add_generation_prompt: bool) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt)
    if hasattr(out, "keys"):  # newer transformers return a BatchEncoding
        out = out["input_ids"]
    return list(out)


def _tokenize_chat(tokenizer, messages: list[dict]) -> Example:
    """Tokenize a conversation; labels cover each assistant turn (its text and end-of-turn marker)."""
    ids = _chat_ids(tokenizer, messages, add_generation_prompt=False)
    labels = [IGNORE] * len(ids)
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        start = len(_chat_ids(tokenizer, messages[:i], add_generation_prompt=True))
        end = len(_chat_ids(tokenizer, messages[: i + 1], add_generation_prompt=False))
        labels[start:end] = ids[start:end]
    return Example(ids, labels)


def _tokenize_plain_pair(tokenizer, prompt: str, completion: str) -> Example:
    """Without a chat template: prompt, newline, completion, EOS; loss on the completion and EOS."""
    head = tokenizer(prompt + "\n", add_special_tokens=True)["input_ids"]
    tail = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return Example(head + tail, [IGNORE] * len(head) + tail)


def tokenize_record(record: Any, tokenizer) -> Example:
    """One record -> Example. Text: loss on every token; {prompt, completion} / {messages}: loss on answers only.

    The shapes are ``records.KINDS``; a record of another shape is a ValueError that says how to fix it.
    """
    kind = record_kind(record)
    if kind == "text":
        text = record if isinstance(record, str) else record["text"]
        ids = tokenizer(text, add_special_tokens=True)["input_ids"] + [tokenizer.eos_token_id]
        return Example(ids, list(ids))
    if kind == "messages":
        if tokenizer.chat_template is None:
            raise ValueError("chat {messages} records need a tokenizer with a chat template")
        return _tokenize_chat(tokenizer, list(record["messages"]))
    if tokenizer.chat_template is None:
        return _tokenize_plain_pair(tokenizer, record["prompt"], record["completion"])
    messages = [
        {"role": "user", "content": record["prompt"]},
        {"role": "assistant", "content": record["completion"]},
    ]
    return _tokenize_chat(tokenizer, messages)


def split_records(records: list, eval_split: float) -> tuple[list, list]:
    """Deterministic held-out split by a hash of each record, independent of order and seed."""
    if eval_split <= 0 or len(records) < 2:
        return list(records), []
    train, held = [], []
    for record in records:
        digest = hashlib.sha1(json.dumps(record, sort_keys=True, default=str).encode()).digest()
        (held if int.from_bytes(digest[:4], "big") / 2**32 < eval_split else train).append(record)
    if not train or not held:  # tiny datasets: fall back to the last records
        cut = max(1, round(len(records) * eval_split))
        return list(records[:-cut]), list(records[-cut:])
    return train, held


def truncate(example: Example, max_len: int) -> Example:
    return Example(example.input_ids[:max_len], example.labels[:max_len])


def pack(examples: list[Example], block: int) -> list[dict]:
    """Concatenate examples into rows of exactly `block` tokens; position_ids restart at each example.

    transformers builds a block-diagonal attention mask from restarting position_ids (when no attention_mask is
    passed), and the first label of every example is masked, so no example attends to or predicts another.
    A trailing partial row is dropped unless it is the only one.
    """
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for ex in examples:
        ids += ex.input_ids
        labels += [IGNORE] + ex.labels[1:]
        positions += list(range(len(ex.input_ids)))
    rows = []
    for start in range(0, len(ids), block):
        if start + block > len(ids) and rows:
            break
        rows.append(
            {
                "input_ids": ids[start : start + block],
                "labels": labels[start : start + block],
                "position_ids": _restart_positions(positions[start : start + block]),
            }
        )
    return rows


def _restart_positions(positions: list[int]) -> list[int]:
    """A row that begins mid-example starts that fragment at position 0."""
    first = positions[0]
    out = []
    for i, p in enumerate(positions):
        if p == 0:
            return out + positions[i:]
        out.append(p - first)
    return out


class Batches:
    """Deterministic batches of CPU tensors: packed rows, padded rows, or one flattened padding-free row.

    A collated batch is {"inputs": model kwargs, "labels", "keep": positions whose logits are needed,
    "targets": the labels those positions predict (-100 = none), "n_tokens", "n_targets"}. Tokens and
    targets are counted here, on the CPU, so the loop never asks the device for them.
    """

    def __init__(
        self, rows: list[dict], batch_size: int, seed: int, mode: str, pad_id: int, pin: bool = False
    ):
        if not rows:
            raise ValueError("no training examples left after tokenization and the eval split")
        self.rows, self.batch_size, self.seed, self.mode = rows, batch_size, seed, mode
        self.pad_id, self.pin = pad_id, pin

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def count(self, indices: list[int]) -> tuple[int, int]:
        """(tokens, targets) of these rows, as ``collate`` counts them, without collating (CPU, no tensors)."""
        if not hasattr(self, "_counts"):  # per row: its tokens, and the labels it predicts (all but the first)
            self._counts = [(len(r["input_ids"]), sum(label != IGNORE for label in r["labels"][1:]))
                            for r in self.rows]
        return sum(self._counts[i][0] for i in indices), sum(self._counts[i][1] for i in indices)

    def order(self, epoch: int) -> list[list[int]]:
        """The batches of one epoch as row indices: a seeded shuffle, the same every time for (seed, epoch)."""
        generator = torch.Generator().manual_seed(self.seed * 1000 + epoch)
        perm = torch.randperm(len(self.rows), generator=generator).tolist()
        return [perm[i : i + self.batch_size] for i in range(0, len(perm), self.batch_size)]

    def collate(self, indices: list[int]) -> dict[str, Any]:
        rows = [self.rows[i] for i in indices]
        if self.mode == "flat":
            batch = _collate_flat(rows)
        elif self.mode == "pack":
            batch = {
                key: torch.tensor([r[key] for r in rows]) for key in ("input_ids", "labels", "position_ids")
            }
        else:
            batch = _collate_padded(rows, self.pad_id)
        labels = batch.pop("labels")
        next_labels = labels[:, 1:]  # position p predicts token p + 1
        # Positions whose next token is a target in some row: logits (hidden x vocab, the largest matmul of a
        # small model) are computed only there. For prompt/completion data that skips most of the sequence.
        keep = next_labels.ne(IGNORE).any(0).nonzero().squeeze(1)
        out = {"inputs": batch, "labels": labels, "keep": keep, "targets": next_labels[:, keep].contiguous()}
        if self.pin:
            out = {
                k: {n: t.pin_memory() for n, t in v.items()} if isinstance(v, dict) else v.pin_memory()
                for k, v in out.items()
            }
        mask = batch.get("attention_mask")
        out["n_tokens"] = int(mask.sum()) if mask is not None else batch["input_ids"].numel()
        out["n_targets"] = int(next_labels.ne(IGNORE).sum())
        return out


def _collate_padded(rows: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n] = torch.tensor(r["input_ids"])
        labels[i, :n] = torch.tensor(r["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def _collate_flat(rows: list[dict]) -> dict[str, torch.Tensor]:
    """Padding-free: the batch as one row; restarting position_ids keep the examples apart."""
    ids, labels, positions = [], [], []
    for r in rows:
        ids += r["input_ids"]
        labels += [IGNORE] + r["labels"][1:]
        positions += list(range(len(r["input_ids"])))
    return {
        "input_ids": torch.tensor([ids]),
        "labels": torch.tensor([labels]),
        "position_ids": torch.tensor([positions]),
    }


def build_batches(config, tokenizer, records: list, pin: bool) -> Batches:
    """Tokenize records and arrange them as the config asks (packing / padding-free / padded)."""
    examples = [truncate(tokenize_record(r, tokenizer), config.max_seq_length) for r in records]
    examples = [ex for ex in examples if any(label != IGNORE for label in ex.labels[1:])]
    if records and not examples:
        raise ValueError(
            f"max_seq_length={config.max_seq_length} cuts off every answer (prompts plus chat template are "
            "longer); raise max_seq_length"
        )
    if config.packing:
        rows, mode = pack(examples, config.max_seq_length), "pack"
    else:
        rows = [{"input_ids": ex.input_ids, "labels": ex.labels} for ex in examples]
        mode = "flat" if config.padding_free else "pad"
    # One batch of the order is the global micro-batch: each of num_processes processes collates its own slice.
    global_batch = config.batch_size * config.num_processes
    return Batches(rows, global_batch, config.seed, mode, tokenizer.pad_token_id, pin)
