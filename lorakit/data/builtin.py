"""The built-in instruction dataset: short questions about number formats, answered from a fact table.

Answers are a number or yes/no, so exact match is a meaningful score. The facts come from lorakit.formats.FORMATS;
the held-out split is fixed by a hash of the question, so every run, machine and seed evaluates on the
same questions.
"""

from __future__ import annotations

import hashlib

# Questions name each format as people write it; the answers come from lorakit's own format table.
# name: (aliases, key in lorakit.formats.FORMATS, ask for the largest value?) -- 3.4e38-sized maxima
# make poor exact-match answers, so those are not asked.
_FORMAT_NAMES: dict[str, tuple[tuple[str, ...], str, bool]] = {
    "FP32": (("FP32", "float32"), "fp32", False),
    "FP16": (("FP16", "float16", "half precision"), "fp16", True),
    "BF16": (("BF16", "bfloat16"), "bf16", False),
    "TF32": (("TF32",), "tf32", False),
    "FP8 E4M3": (("FP8 E4M3", "E4M3FN"), "fp8_e4m3fn", True),
    "FP8 E5M2": (("FP8 E5M2", "E5M2"), "fp8_e5m2", True),
    "FP8 E4M3FNUZ": (("E4M3FNUZ",), "fp8_e4m3fnuz", True),
    "FP6 E3M2": (("FP6 E3M2",), "fp6_e3m2", True),
    "FP6 E2M3": (("FP6 E2M3",), "fp6_e2m3", True),
    "FP4 E2M1": (("FP4 E2M1", "MXFP4 element"), "fp4_e2m1", True),
}


def _facts() -> dict[str, tuple[tuple[str, ...], int, int, int, int, str | None, bool]]:
    """name -> (aliases, exponent bits, mantissa bits, total bits, bias, largest finite value or None, has inf)."""
    from lorakit.formats import FORMATS

    facts = {}
    for name, (aliases, key, ask_max) in _FORMAT_NAMES.items():
        f = FORMATS[key]
        largest = f"{f.max:g}" if ask_max else None
        facts[name] = (aliases, f.exponent_bits, f.mantissa_bits, f.bits, f.bias, largest, f.has_inf)
    return facts


# Checked against ml_dtypes in tests/test_train_data.py (an oracle independent of lorakit.formats).
FACTS = _facts()

_TEMPLATES = {
    "exponent": (
        "How many exponent bits does {f} have?",
        "Number of exponent bits in {f}?",
        "How wide is the exponent field of {f}, in bits?",
    ),
    "mantissa": (
        "How many mantissa bits does {f} have?",
        "How many fraction bits does {f} store?",
        "What is the mantissa width of {f} in bits?",
    ),
    "total": (
        "How many bits does one {f} value take?",
        "What is the total bit width of {f}?",
    ),
    "bias": (
        "What is the exponent bias of {f}?",
        "Which exponent bias does {f} use?",
    ),
    "max": (
        "What is the largest finite value of {f}?",
        "What is the maximum finite number {f} can represent?",
    ),
    "inf": (
        "Can {f} represent infinity? Answer yes or no.",
        "Does {f} have an encoding for infinity? Answer yes or no.",
    ),
}

# Facts that are not a sign/exponent/mantissa layout.
_EXTRA = [
    ("What is the smallest value of INT8?", "-128"),
    ("What is the largest value of INT8?", "127"),
    ("What is the largest value of signed INT8?", "127"),
    ("How many bits does INT8 use?", "8"),
    ("How many values are in the NF4 codebook?", "16"),
    ("How many bits does an NF4 code take?", "4"),
    ("What block size does bitsandbytes use for NF4 by default?", "64"),
    ("How many bits per parameter does NF4 take with one fp32 absmax per 64 weights?", "4.5"),
    ("How many bits per parameter does NF4 take with double quantization?", "4.127"),
    ("How many sign bits does FP16 have?", "1"),
    ("How many sign bits does BF16 have?", "1"),
    (
        "How many bytes does an fp32 trainable parameter cost with AdamW, counting weight, gradient and both moments?",
        "16",
    ),
]


def _answers(exponent: int, mantissa: int, total: int, bias: int, largest: str | None, inf: bool) -> dict:
    answers = {"exponent": str(exponent), "mantissa": str(mantissa), "total": str(total), "bias": str(bias)}
    answers["inf"] = "yes" if inf else "no"
    if largest is not None:
        answers["max"] = largest
    return answers


def format_questions() -> list[tuple[str, str, str, str]]:
    """Every question about the format table as (format name, attribute, prompt, answer), in a fixed order.

    attribute is one of exponent, mantissa, total, bias, max, inf; answer is the facts task's text answer.
    """
    questions = []
    for name, (aliases, *facts) in FACTS.items():
        answers = _answers(*facts)
        for alias in aliases:
            for attribute, answer in answers.items():
                questions += [(name, attribute, t.format(f=alias), answer) for t in _TEMPLATES[attribute]]
    return questions


def builtin_examples() -> list[dict[str, str]]:
    """Every built-in example as {prompt, completion}, in a fixed order."""
    examples = [{"prompt": prompt, "completion": answer} for _, _, prompt, answer in format_questions()]
    examples += [{"prompt": q, "completion": a} for q, a in _EXTRA]
    return examples


def held_out(prompt: str) -> bool:
    """About one question in five is held out, chosen by a hash of its text (stable everywhere)."""
    return hashlib.sha1(prompt.encode("utf-8")).digest()[0] < 52


def builtin_split(split: str) -> list[dict[str, str]]:
    """The 'train' or 'eval' (held-out) part of the built-in dataset."""
    if split not in ("train", "eval"):
        raise ValueError(f"split={split!r} is not allowed; choose 'train' or 'eval'")
    want_held = split == "eval"
    return [ex for ex in builtin_examples() if held_out(ex["prompt"]) == want_held]


def normalize_answer(text: str) -> str:
    """Compare answers leniently on form only: first line, trimmed, lower case, no trailing period."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line.strip().rstrip(".").strip().lower()
