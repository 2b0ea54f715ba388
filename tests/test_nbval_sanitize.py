"""tests/nbval_sanitize.cfg: what varies between runs is masked, the facts the notebooks check are not."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from nbval.plugin import get_sanitize_patterns

PATTERNS = get_sanitize_patterns((Path(__file__).parent / "nbval_sanitize.cfg").read_text())


def sanitize(text: str) -> str:
    """What nbval does to both the stored and the fresh output before comparing them."""
    for regex, replace in PATTERNS:
        text = re.sub(regex, replace, text)
    return text


def test_every_section_was_parsed():
    sections = re.findall(r"^\[", (Path(__file__).parent / "nbval_sanitize.cfg").read_text(), flags=re.M)
    assert len(PATTERNS) == len(sections)


@pytest.mark.parametrize(
    ("run1", "run2"),
    [
        ("<Tensor at 0x7f3a2c1b9e50>", "<Tensor at 0x7f11aa00beef>"),
        (
            '{"model_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0"}',
            '{"model_id": "aaaaaaaabbbbbbbbccccccccdddddddd"}',
        ),
        ("saved to runs/2026-11-28_01-02-03/adapter", "saved to runs/2026-11-29_23-59-59/adapter"),
        ("adapter in /tmp/pytest-of-root/pytest-3/run0", "adapter in /tmp/tmpab12cd/run0"),
        ("412 tokens/s", "1,234.5 tokens/s"),
        ("0:09 elapsed, ETA 61:16:09", "1:02:03 elapsed, ETA 0:01"),
        ("took 3.2 s (12 ms per step)", "took 41 s (7.5 ms per step)"),
    ],
)
def test_run_dependent_text_compares_equal(run1, run2):
    assert sanitize(run1) == sanitize(run2)


@pytest.mark.parametrize(
    "fact",
    [
        "fp16    1/5/10     15        65504     6.104e-05      5.96e-08   0.000977    3.3",
        "65520 -> inf; 1 + 2^-8 -> 1.0; 300^2 in FP16: inf",
        "E4M3FN   464: standard (ml_dtypes) -> nan   saturate -> 448.0",
        "trainable params: 1,843,200 || all params: 136,358,784 || trainable%: 1.3517",
        "16 bits, 4.127 bits/param, 8 steps, 2 CPU cores, r=16",
    ],
)
def test_facts_are_left_alone(fact):
    assert sanitize(fact) == fact
