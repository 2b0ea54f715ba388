"""token_lengths against counts made directly with the tokenizer and its chat template, and against the
trainer's own batches; the histogram picture."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lorakit.training.lengths import LengthReport, token_lengths

PAIRS = [{"prompt": "What is the capital of France?", "completion": "Paris."},
         {"prompt": "Name a prime number larger than ten, and explain briefly why it is prime.",
          "completion": "Eleven: no whole number between one and eleven divides it."},
         {"prompt": "2 + 2 = ?", "completion": "4"}]
CHATS = [{"messages": [{"role": "system", "content": "Answer in one word."},
                       {"role": "user", "content": "Colour of the sky?"},
                       {"role": "assistant", "content": "Blue."},
                       {"role": "user", "content": "And of grass?"},
                       {"role": "assistant", "content": "Green."}]}]
TEXTS = ["A short line.", "A somewhat longer line of plain text, with a comma and a full stop at its end."]


@pytest.fixture(scope="module")
def tokenizer(embedded_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_tokenizer_dir)


def _ids(tokenizer, messages, generation_prompt=False):
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def _direct(tokenizer, record):
    """(length, label positions >= 1), counted with the tokenizer and chat template alone."""
    if isinstance(record, str):
        n = len(tokenizer(record)["input_ids"]) + 1  # + EOS
        return n, list(range(1, n))
    messages = record.get("messages") or [{"role": "user", "content": record["prompt"]},
                                          {"role": "assistant", "content": record["completion"]}]
    full, labels = _ids(tokenizer, messages), []
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            start = len(_ids(tokenizer, messages[:i], generation_prompt=True))
            labels += list(range(start, len(_ids(tokenizer, messages[: i + 1]))))
    return len(full), labels


@pytest.mark.parametrize("records", [TEXTS, PAIRS, CHATS, TEXTS + PAIRS + CHATS], ids=["text", "pairs", "chat", "mixed"])
def test_lengths_and_label_tokens_match_a_direct_count(tokenizer, records):
    report = token_lengths(records, tokenizer, max_seq_length=24, batch_size=2)
    direct = [_direct(tokenizer, r) for r in records]
    assert report.lengths.tolist() == [n for n, _ in direct]
    assert report.label_tokens == sum(len(labels) for _, labels in direct)
    assert report.tokens == sum(n for n, _ in direct)
    assert report.truncated == sum(n > 24 for n, _ in direct)
    assert report.lost_label_tokens == sum(p >= 24 for _, labels in direct for p in labels)
    assert report.skipped == sum(not labels or min(labels) >= 24 for _, labels in direct)


def test_files_and_datasets_count_as_lists(tokenizer, tmp_path):
    from datasets import Dataset

    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text("\n".join(json.dumps(p) for p in PAIRS), encoding="utf-8")
    txt = tmp_path / "text.txt"
    txt.write_text("\n\n".join(TEXTS), encoding="utf-8")
    assert token_lengths(jsonl, tokenizer).lengths.tolist() == token_lengths(PAIRS, tokenizer).lengths.tolist()
    assert token_lengths(str(txt), tokenizer).lengths.tolist() == token_lengths(TEXTS, tokenizer).lengths.tolist()
    table = Dataset.from_list(PAIRS)
    assert token_lengths(table, tokenizer).lengths.tolist() == token_lengths(PAIRS, tokenizer).lengths.tolist()


def test_padding_matches_the_trainers_own_batches(tokenizer):
    """Pad tokens of the trainer's padded batches (its seeded order, collated), against the report."""
    from lorakit.training.config import TrainConfig
    from lorakit.training.data import build_batches

    records = (TEXTS + PAIRS + CHATS) * 3
    config = TrainConfig(dataset=records, max_seq_length=40, batch_size=3, eval_split=0.0, seed=7)
    batches = build_batches(config, tokenizer, records, pin=False)
    pad = real = 0
    for indices in batches.order(0):
        batch = batches.collate(indices)
        pad += batch["inputs"]["input_ids"].numel() - batch["n_tokens"]
        real += batch["n_tokens"]
    report = token_lengths(records, tokenizer, max_seq_length=40, batch_size=3, seed=7)
    assert report.padding["padded_pad_tokens"] == pad and report.padding["tokens"] == real
    packed = sum(len(r["input_ids"]) for r in build_batches(
        TrainConfig(dataset=records, max_seq_length=40, packing=True), tokenizer, records, pin=False).rows)
    assert packed == real - report.padding["packed_dropped_tokens"]
    assert report.padding["packed_pad_tokens"] == 0


def test_the_cutoffs_that_keep_examples_whole():
    lengths = np.arange(1, 201)  # 200 examples of 1..200 tokens
    report = LengthReport(lengths, np.ones_like(lengths), np.ones(1, dtype=np.int64), 100, 4)
    assert report.whole_at == {0.95: 190, 0.99: 198, 1.0: 200}
    for share, cut in report.whole_at.items():  # the smallest: one token less keeps fewer whole
        assert (lengths <= cut).mean() >= share > (lengths <= cut - 1).mean()
    assert report.truncated == 100 and report.at(150).truncated == 50
    counts, edges = report.histogram(30)
    assert counts.sum() == 200 and np.all(np.diff(edges) == edges[1] - edges[0]) and edges[1] - edges[0] >= 1
    with pytest.raises(ValueError, match="share=0"):
        report.keeps_whole(0)


def test_bad_cutoff_is_refused_as_a_run_refuses_it(tokenizer):
    with pytest.raises(ValueError, match="max_seq_length=4 is out of range"):
        token_lengths(PAIRS, tokenizer, max_seq_length=4)


def test_the_picture_draws_the_cutoff(tokenizer):
    from lorakit.viz.lengths import length_figure

    report = token_lengths(PAIRS + TEXTS, tokenizer, max_seq_length=20)
    ax = length_figure().axes[0]
    report.plot(ax)
    cut = [line for line in ax.get_lines() if line.get_label().startswith("max_seq_length 20")]
    assert cut and cut[0].get_xdata()[0] == 20
    assert "2 cut" in cut[0].get_label() or f"{report.truncated} cut" in cut[0].get_label()
    assert sum(p.get_height() for p in ax.patches) == report.examples
    assert str(report).startswith(f"{report.examples} examples")
    assert report.png(4, 2).startswith(b"\x89PNG\r\n\x1a\n")  # the same picture as bytes, for Image(...)
