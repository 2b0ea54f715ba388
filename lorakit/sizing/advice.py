"""What to change so that a run fits a GPU: the smallest change found by trying the usual levers."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from lorakit.choices import PRECISIONS, QUANTIZATIONS, choose
from lorakit.sizing.gpus import GPU, gib_amount, gib_pair
from lorakit.sizing.memory import MemoryEstimate, estimate_memory

# levers in the order a person would reach for them; the cost ranks equally small changes
# quantizations to try from each starting point, and what each costs in quality
QUANT_STEPS = {"none": ("none", "int8", "nf4"), "bnb_fp4": ("bnb_fp4", "nf4"), "int8": ("int8", "nf4"), "nf4": ("nf4",)}
QUANT_COST = {"none": 0, "bnb_fp4": 0, "int8": 2, "nf4": 3}
FALLBACK_PRECISION = {"bf16": "fp16", "tf32": "fp32"}  # what to use on a GPU without native support
assert set(QUANT_STEPS) == set(QUANT_COST) == set(QUANTIZATIONS)
assert set(FALLBACK_PRECISION) == {n for n, p in PRECISIONS.items() if p.min_compute_capability}


@dataclass(frozen=True)
class FitAdvice:
    """The cheapest set of changes that fits, the estimate with them, and a sentence for people."""

    gpu: GPU
    changes: dict[str, Any]  # setting -> new value; empty when it fits as configured
    estimate: MemoryEstimate | None  # None when nothing tried fits
    sentence: str

    @property
    def fits(self) -> bool:
        """Whether some tried setting fits."""
        return self.estimate is not None


def _describe(changes: dict[str, Any]) -> str:
    parts = []
    if "precision" in changes:
        asked = {fallback: p for p, fallback in FALLBACK_PRECISION.items()}[changes["precision"]]
        parts.append(f"{changes['precision']} (no native {asked})")
    if "quantization" in changes:
        parts.append({"int8": "8-bit base", "nf4": "nf4"}.get(changes["quantization"], changes["quantization"]))
    if changes.get("gradient_checkpointing"):
        parts.append("gradient checkpointing")
    if "batch_size" in changes:
        parts.append(f"batch {changes['batch_size']}")
    return " + ".join(parts)


def _candidates(settings: dict[str, Any], gpu: GPU) -> list[dict[str, Any]]:
    """Every combination of levers, cheapest first (fewest changes, then mildest)."""
    quants = QUANT_STEPS[settings.get("quantization", "none")]
    ckpts = (False, True) if not settings.get("gradient_checkpointing") else (True,)
    batch = settings.get("batch_size", 1)
    batches = [batch]
    while batches[-1] > 1:
        batches.append(max(1, batches[-1] // 2))
    fixed: dict[str, Any] = {}
    precision = settings.get("precision", "bf16")
    if gpu.runs_natively(precision) is False:
        fixed["precision"] = FALLBACK_PRECISION[precision]  # not optional: this GPU cannot run it natively
    options = []
    for q, ck, b in itertools.product(quants, ckpts, batches):
        change = dict(fixed)
        if q != settings.get("quantization", "none"):
            change["quantization"] = q
        if ck != bool(settings.get("gradient_checkpointing")):
            change["gradient_checkpointing"] = ck
        if b != batch:
            change["batch_size"] = b
        cost = (len(change), QUANT_COST[q] + (1 if ck else 0) + batches.index(b) * 1.5)
        options.append((cost, change))
    return [c for _, c in sorted(options, key=lambda item: item[0])]


def suggest_fit(model_or_config: Any, gpu: GPU, **settings: Any) -> FitAdvice:
    """The smallest change of quantization, checkpointing, batch (and fp16 on pre-Ampere) that fits ``gpu``.

    The estimates assume the attention kernel torch runs on that GPU (flash needs compute capability 8.0).
    """
    settings = dict(settings, finetune="lora")  # the levers below are LoRA/QLoRA levers
    settings.setdefault("compute_capability", gpu.compute_capability)  # which attention kernel runs there
    for key in ("precision", "quantization"):
        if key in settings:
            settings[key] = choose(key, key, settings[key], PRECISIONS if key == "precision" else QUANTIZATIONS)
    for change in _candidates(settings, gpu):
        trial = dict(settings, **change)
        estimate = estimate_memory(model_or_config, **trial)
        if gpu.fits(estimate.total_bytes):
            return FitAdvice(gpu, change, estimate, _sentence(gpu, change, estimate))
    worst = estimate_memory(model_or_config, **dict(settings, quantization="nf4", gradient_checkpointing=True,
                                                    batch_size=1))
    need, have = gib_pair(worst.total_bytes, gpu.memory_bytes)  # never "needs 8.0 GiB of 8.0"
    text = (f"Nothing tried fits {_a(gpu.name)}: even nf4 + gradient checkpointing + batch 1 needs "
            f"{need} GiB of {have}; use a larger GPU, a shorter sequence or a smaller model.")
    return FitAdvice(gpu, {}, None, text)


def _a(name: str) -> str:
    """'a T4', 'an A100', 'an L4', 'an RTX 4090' (letters read with a vowel sound), 'my GPU'."""
    if name.startswith("my "):
        return name
    return f"{'an' if name[:1].upper() in 'AEFHILMNORSX' else 'a'} {name}"


def _sentence(gpu: GPU, change: dict[str, Any], estimate: MemoryEstimate) -> str:
    peak, _ = gib_pair(estimate.total_bytes, gpu.memory_bytes)  # a peak just under the GPU never reads as over it
    free = gib_amount(gpu.memory_bytes - estimate.total_bytes)
    if not change:
        return f"Fits {_a(gpu.name)} as configured: peak {peak} GiB, {free} GiB to spare."
    return f"{_describe(change)} fits {_a(gpu.name)}: peak {peak} GiB, {free} GiB to spare."
