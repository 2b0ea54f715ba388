"""Data: the built-in dataset's facts, its split, tokenization masks, packing without cross-talk."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest

from lorakit.data import FACTS, builtin_examples, builtin_split, normalize_answer

# FACTS name -> the ml_dtypes type with that layout (the independent oracle)
ORACLES = {
    "FP32": np.float32,
    "FP16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "FP8 E4M3": ml_dtypes.float8_e4m3fn,
    "FP8 E5M2": ml_dtypes.float8_e5m2,
    "FP8 E4M3FNUZ": ml_dtypes.float8_e4m3fnuz,
    "FP6 E3M2": ml_dtypes.float6_e3m2fn,
    "FP6 E2M3": ml_dtypes.float6_e2m3fn,
    "FP4 E2M1": ml_dtypes.float4_e2m1fn,
}


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_builtin_facts_match_ml_dtypes(name):
    _, exponent, mantissa, total, bias, largest, has_inf = FACTS[name]
    info = ml_dtypes.finfo(ORACLES[name])
    assert (info.nexp, info.nmant, info.bits) == (exponent, mantissa, total)
    # bias = 1 - (smallest normal exponent)
    assert bias == 1 - int(np.log2(float(info.smallest_normal)))
    if largest is not None:
        assert float(largest) == float(info.max)
    with np.errstate(over="ignore"):
        overflowed = (
            np.array([float(info.max) * 4], dtype=np.float32).astype(ORACLES[name]).astype(np.float32)[0]
        )
    assert bool(np.isinf(overflowed)) == has_inf


def test_tf32_is_fp32_range_with_fp16_precision():
    _, exponent, mantissa, total, bias, _, _ = FACTS["TF32"]
    assert (exponent, mantissa, total, bias) == (8, 10, 19, 127)


def test_split_is_fixed_disjoint_and_complete():
    train, held = builtin_split("train"), builtin_split("eval")
    assert len(builtin_examples()) >= 200
    assert len(held) >= 30
    assert {json.dumps(e) for e in train}.isdisjoint({json.dumps(e) for e in held})
    assert len(train) + len(held) == len(builtin_examples())
    assert builtin_split("eval") == held  # deterministic
    assert all(
        len(e["completion"]) <= 6 for e in builtin_examples()
    )  # short answers: exact match is meaningful


def test_bad_split_name():
    with pytest.raises(ValueError, match="split='test' is not allowed"):
        builtin_split("test")


def test_normalize_answer():
    assert normalize_answer(" Yes.\nbecause ...") == "yes"
    assert normalize_answer("") == ""


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_prompt_completion_loss_only_on_answer(tokenizer):
    from lorakit.training.data import IGNORE, tokenize_record

    ex = tokenize_record({"prompt": "How many exponent bits does BF16 have?", "completion": "8"}, tokenizer)
    taught = [i for i, label in zip(ex.input_ids, ex.labels, strict=True) if label != IGNORE]
    assert tokenizer.decode(taught) == "8<|im_end|>\n"
    assert ex.labels[: len(ex.labels) - len(taught)] == [IGNORE] * (len(ex.labels) - len(taught))


def test_chat_messages_loss_on_every_assistant_turn(tokenizer):
    from lorakit.training.data import IGNORE, tokenize_record

    messages = [
        {"role": "user", "content": "Bits in FP16?"},
        {"role": "assistant", "content": "16"},
        {"role": "user", "content": "And BF16?"},
        {"role": "assistant", "content": "16 too"},
    ]
    ex = tokenize_record({"messages": messages}, tokenizer)
    taught = tokenizer.decode(
        [i for i, label in zip(ex.input_ids, ex.labels, strict=True) if label != IGNORE]
    )
    assert taught == "16<|im_end|>\n16 too<|im_end|>\n"


def test_plain_text_is_all_loss(tokenizer):
    from lorakit.training.data import tokenize_record

    ex = tokenize_record("a plain sentence", tokenizer)
    assert ex.labels == ex.input_ids and ex.input_ids[-1] == tokenizer.eos_token_id


def test_unknown_record_shape_is_explained(tokenizer):
    from lorakit.training.data import tokenize_record

    with pytest.raises(ValueError, match="dataset record has keys 'question'; lorakit reads a string"):
        tokenize_record({"question": "x"}, tokenizer)


def test_files_are_read(tmp_path):
    from lorakit.training.data import load_records

    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"prompt": "a", "completion": "b"}\n\n{"text": "c"}\n')
    assert load_records(jsonl) == [{"prompt": "a", "completion": "b"}, {"text": "c"}]
    txt = tmp_path / "d.txt"
    txt.write_text("first para\nline two\n\nsecond\n")
    assert load_records(txt) == ["first para\nline two", "second"]
    with pytest.raises(ValueError, match="missing.jsonl' does not exist"):
        load_records(tmp_path / "missing.jsonl")


def test_datasets_dataset_is_accepted():
    from datasets import Dataset

    from lorakit.training.data import load_records

    ds = Dataset.from_list([{"prompt": "a", "completion": "b"}])
    assert load_records(ds) == [{"prompt": "a", "completion": "b"}]


def test_packing_keeps_examples_apart(tiny_model_dir, tokenizer):
    """A packed row gives each example the same logits as running it alone (block-diagonal attention)."""
    import torch
    from transformers import AutoModelForCausalLM

    from lorakit.training.data import IGNORE, pack, tokenize_record

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    examples = [tokenize_record(t, tokenizer) for t in ("one two three", "four five", "six seven eight nine")]
    total = sum(len(e.input_ids) for e in examples)
    (row,) = pack(examples, total)
    with torch.no_grad():
        # use_cache=False as in training: transformers only reads packing from position_ids without a cache
        packed = model(
            input_ids=torch.tensor([row["input_ids"]]),
            position_ids=torch.tensor([row["position_ids"]]),
            use_cache=False,
        ).logits[0]
        start = 0
        for ex in examples:
            alone = model(input_ids=torch.tensor([ex.input_ids])).logits[0]
            torch.testing.assert_close(packed[start : start + len(ex.input_ids)], alone, atol=1e-5, rtol=1e-4)
            assert (
                row["labels"][start] == IGNORE
            )  # nothing predicts an example's first token from the previous one
            start += len(ex.input_ids)


def test_pack_rows_are_full_and_positions_restart():
    from lorakit.training.data import Example, pack

    examples = [Example(list(range(10, 10 + n)), list(range(10, 10 + n))) for n in (5, 7, 6)]
    rows = pack(examples, 8)
    assert [len(r["input_ids"]) for r in rows] == [8, 8]  # 18 tokens: the partial third row is dropped
    assert rows[0]["position_ids"] == [0, 1, 2, 3, 4, 0, 1, 2]
    assert rows[1]["position_ids"] == [0, 1, 2, 3, 0, 1, 2, 3]  # a row starting mid-example restarts at 0


def test_batches_are_deterministic_and_count_tokens_on_cpu(tokenizer):
    from lorakit.training.config import TrainConfig
    from lorakit.training.data import build_batches

    records = [f"sentence number {i} " * (1 + i % 3) for i in range(10)]
    config = TrainConfig(batch_size=3, max_seq_length=64)
    batches = build_batches(config, tokenizer, records, pin=False)
    assert len(batches) == 4
    assert batches.order(0) == batches.order(0) and batches.order(0) != batches.order(1)
    batch = batches.collate(batches.order(0)[0])
    assert batch["n_tokens"] == int(batch["inputs"]["attention_mask"].sum())
    labels = batch["labels"]
    assert batch["n_targets"] == int((labels[:, 1:] != -100).sum())
    # every target is kept, and every kept position has a target in some row
    assert int((batch["targets"] != -100).sum()) == batch["n_targets"]
    assert bool((batch["targets"] != -100).any(0).all())
    assert "labels" not in batch["inputs"]
    flat = build_batches(TrainConfig(batch_size=3, padding_free=True), tokenizer, records, pin=False)
    fb = flat.collate(flat.order(0)[0])
    assert fb["inputs"]["input_ids"].shape[0] == 1 and fb["n_tokens"] == batch["n_tokens"]
