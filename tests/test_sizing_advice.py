"""The fit advisor: the change it proposes fits, and no cheaper change does."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lorakit.sizing import GPUS, custom_gpu, estimate_memory
from lorakit.sizing.advice import suggest_fit

WISH = dict(r=16, batch_size=4, seq_len=1024, precision="bf16", loss_kernel="plain", gradient_checkpointing=False)


def _single_changes(settings, gpu):
    """Every one-lever change the advisor may make (fp16 is forced on GPUs without bf16)."""
    forced = {"precision": "fp16"} if gpu.supports_bf16 is False else {}
    yield from ({**forced, "quantization": q} for q in ("int8", "nf4"))
    yield {**forced, "gradient_checkpointing": True}
    b = settings["batch_size"] // 2
    while b >= 1:
        yield {**forced, "batch_size": b}
        b //= 2


@pytest.mark.parametrize("gpu", ["T4 16 GB", "L4 24 GB", "A100 40 GB", "H100 80 GB"])
@pytest.mark.parametrize("model", ["Llama-3.1-8B", "Qwen2.5-7B", "Llama-3.1-70B"])
def test_advice_fits_and_is_minimal(model, gpu):
    g = GPUS[gpu]
    advice = suggest_fit(model, g, **WISH)
    if not advice.fits:
        worst = estimate_memory(model, **dict(WISH, quantization="nf4", gradient_checkpointing=True, batch_size=1,
                                              compute_capability=g.compute_capability))
        assert not g.fits(worst.total_bytes)
        assert "Nothing tried fits" in advice.sentence
        return
    assert g.fits(advice.estimate.total_bytes)
    at = dict(WISH, compute_capability=g.compute_capability)  # the attention kernel that GPU runs
    assert advice.estimate == estimate_memory(model, **dict(at, **advice.changes))
    forced = 1 if g.supports_bf16 is False else 0
    if len(advice.changes) > 1 + forced:  # nothing with fewer levers fits
        for change in _single_changes(WISH, g):
            assert not g.fits(estimate_memory(model, **dict(at, **change)).total_bytes), change


def test_fits_as_configured_changes_nothing():
    advice = suggest_fit("SmolLM2-135M", GPUS["H100 80 GB"], r=8)
    assert advice.changes == {} and advice.sentence.startswith("Fits an H100 80 GB as configured")


def test_t4_needs_fp16():
    advice = suggest_fit("SmolLM2-135M", GPUS["T4 16 GB"], r=8, precision="bf16")
    assert advice.changes == {"precision": "fp16"}
    assert "no native bf16" in advice.sentence


def test_the_example_sentence():
    advice = suggest_fit("Llama-3.1-8B", GPUS["T4 16 GB"], **WISH)
    assert advice.changes == {"precision": "fp16", "quantization": "nf4", "gradient_checkpointing": True}
    assert advice.sentence.startswith("fp16 (no native bf16) + nf4 + gradient checkpointing fits a T4 16 GB")


def test_custom_gpu_sentence():
    advice = suggest_fit("SmolLM2-135M", custom_gpu(4), r=8)
    assert "my GPU (4 GiB)" in advice.sentence


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"\d+\.\d+", text)]


@settings(max_examples=40, deadline=None, database=None)
@given(delta_mib=st.integers(-200, 200))
def test_a_verdict_never_contradicts_its_own_numbers(delta_mib):
    """A GPU a few MiB either side of the run's smallest peak: "needs 8.0 GiB of 8.0" (does not fit, yet
    reads equal) must not happen; the numbers shown keep the order of the true ones, and so does the verdict."""
    worst = estimate_memory("SmolLM2-135M", r=8, quantization="nf4", gradient_checkpointing=True, batch_size=1,
                            seq_len=4096, finetune="lora")
    gpu = custom_gpu((worst.total_bytes + delta_mib * 2**20) / 2**30)
    advice = suggest_fit("SmolLM2-135M", gpu, r=8, seq_len=4096)
    if not advice.fits:
        need, have = _numbers(advice.sentence.split("needs ")[1])[:2]
        assert need > have, advice.sentence
    else:
        peak, free = _numbers(advice.sentence.split(": peak ")[1])[:2]
        assert peak <= float(f"{gpu.memory_gib:.6f}") and free >= 0, advice.sentence
    for total in (worst.total_bytes, gpu.memory_bytes - 2**20, gpu.memory_bytes + 2**20):
        verdict = gpu.verdict(total)
        shown = _numbers(verdict)[-1]
        assert ("short by" in verdict) == (total > gpu.memory_bytes) and (shown > 0 or "fits" in verdict), verdict


def test_gib_pair_keeps_the_order_and_gib_amount_is_never_zero_for_a_shortfall():
    from lorakit.sizing.gpus import GIB, gib_amount, gib_pair

    assert gib_pair(8.004 * GIB, 8.0 * GIB) == ("8.004", "8.000")
    assert gib_pair(7.96 * GIB, 8.0 * GIB) == ("7.96", "8.00")  # fits: never "8.0 of 8.0" either
    assert gib_pair(20.2 * GIB, 22.5 * GIB) == ("20.2", "22.5")  # one decimal where one tells them apart
    assert gib_amount(0.03 * GIB) == "0.03" and gib_amount(2.34 * GIB) == "2.3" and gib_amount(0) == "0.0"
