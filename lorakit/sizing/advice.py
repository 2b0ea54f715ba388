"""What to change so that a run fits a GPU: the smallest change found by trying the usual levers."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from lorakit.choices import PRECISIONS
from lorakit.quantization import QUANTIZATIONS, fit_steps
from lorakit.sizing.gpus import GPU, gib_amount, gib_pair
from lorakit.sizing.memory import MemoryEstimate, estimate_memory, planned_run
from lorakit.sizing.settings import split
from lorakit.training.config import canonical

# levers in the order a person would reach for them; the cost ranks equally small changes. Which
# quantizations to try, and what each costs in quality, the quantization records say (fit_order, fit_cost).
FALLBACK_PRECISION = {"bf16": "fp16", "tf32": "fp32"}  # what to use on a GPU without native support
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
        parts.append(QUANTIZATIONS[changes["quantization"]].fit_words or changes["quantization"])
    if changes.get("gradient_checkpointing"):
        parts.append("gradient checkpointing")
    if "batch_size" in changes:
        parts.append(f"batch {changes['batch_size']}")
    return " + ".join(parts)


def _candidates(run: Any, gpu: GPU) -> list[tuple[dict[str, Any], bool]]:
    """Every combination of levers as (changes, checkpointing), cheapest first (fewest changes, then mildest).

    ``run``: the TrainConfig. Checkpointing is given explicitly to every trial: "auto" would turn it on for a
    quantized base without the advice saying so.
    """
    quants = fit_steps(run.quantization)
    checkpointing = run.sizing_kwargs()["gradient_checkpointing"]
    ckpts = (False, True) if not checkpointing else (True,)
    batches = [run.batch_size]
    while batches[-1] > 1:
        batches.append(max(1, batches[-1] // 2))
    fixed: dict[str, Any] = {}
    if gpu.runs_natively(run.precision) is False:
        fixed["precision"] = FALLBACK_PRECISION[run.precision]  # not optional: this GPU cannot run it natively
    options = []
    for q, ck, b in itertools.product(quants, ckpts, batches):
        change = dict(fixed)
        if q != run.quantization:
            change["quantization"] = q
        if ck != checkpointing:
            change["gradient_checkpointing"] = ck
        if b != run.batch_size:
            change["batch_size"] = b
        cost = (len(change), (QUANTIZATIONS[q].fit_cost or 0) + (1 if ck else 0) + batches.index(b) * 1.5)
        options.append((cost, change, ck))
    return [(c, ck) for _, c, ck in sorted(options, key=lambda item: item[0])]


def suggest_fit(model_or_config: Any, gpu: GPU, config: Any = None, **settings: Any) -> FitAdvice:
    """The smallest change of quantization, checkpointing, batch (and fp16 on pre-Ampere) that fits ``gpu``.

    Takes what ``estimate_memory`` takes. The estimates assume the attention kernel torch runs on that GPU
    (flash needs compute capability 8.0).
    """
    model_or_config, config = planned_run(model_or_config, config)
    settings = dict(canonical(settings), finetune="lora")  # the levers below are LoRA/QLoRA levers
    settings.setdefault("compute_capability", gpu.compute_capability)  # which attention kernel runs there
    run, _ = split(settings, config)
    for change, checkpointing in _candidates(run, gpu):
        trial = {**settings, "gradient_checkpointing": checkpointing, **change}
        estimate = estimate_memory(model_or_config, config, **trial)
        if gpu.fits(estimate.total_bytes):
            return FitAdvice(gpu, change, estimate, _sentence(gpu, change, estimate))
    last = fit_steps(run.quantization)[-1]
    worst = estimate_memory(model_or_config, config, **dict(settings, quantization=last,
                                                            gradient_checkpointing=True, batch_size=1))
    need, have = gib_pair(worst.total_bytes, gpu.memory_bytes)  # never "needs 8.0 GiB of 8.0"
    text = (f"Nothing tried fits {_a(gpu.name)}: even {QUANTIZATIONS[last].fit_words or last} + gradient "
            f"checkpointing + batch 1 needs {need} GiB of {have}; use a larger GPU, a shorter sequence or a "
            f"smaller model.")
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
