"""Quantization backends as records: one module per backend, and this registry that the rest of lorakit asks.

``QUANTIZATIONS`` maps each option's name to its record (``lorakit.quantization.base.Quantization``); the
trainer, the planner, preflight, the HF callback, the widgets and the notebooks read them and name no backend.
Adding a backend is one module here and one line below. Pure Python: no torch at import.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from lorakit.quantization import bitsandbytes, torchao
from lorakit.quantization.base import NONE, LogNotice, Quantization

__all__ = ["ALIASES", "NONE", "QLORA", "QUANTIZATIONS", "LogNotice", "Quantization", "dequantized_weight", "fit_steps",
           "make_optimizer", "notices", "param_numel", "recognize", "stored_tensors"]

BACKENDS = (bitsandbytes, torchao)  # each module's RECORDS, in the order the dropdowns list them

QUANTIZATIONS: dict[str, Quantization] = {q.name: q for q in (NONE, *(r for b in BACKENDS for r in b.RECORDS))}
ALIASES: dict[str, str] = {alias: q.name for q in QUANTIZATIONS.values() for alias in q.aliases}
QLORA: dict[str, Any] = dict(bitsandbytes.QLORA)  # the QLoRA recipe, as TrainConfig fields


def recognize(quantization_config: Any) -> str:
    """The lorakit name of a model's ``config.quantization_config`` ("none" without one, "other" if unknown)."""
    if quantization_config is None:
        return "none"
    return next((q.name for q in QUANTIZATIONS.values() if q.recognizes(quantization_config)), "other")


def fit_steps(start: str) -> tuple[str, ...]:
    """The quantizations the fit advice tries from ``start``: itself, then each suggested one that saves as much
    or more, mildest first."""
    here = QUANTIZATIONS[start]
    further = sorted((q for q in QUANTIZATIONS.values() if q.fit_cost is not None and q.name != start
                      and q.fit_order >= max(here.fit_order, 1)), key=lambda q: (q.fit_order, q.fit_cost))
    return (start, *(q.name for q in further))


def param_numel(param: Any) -> int:
    """The weights a loaded parameter holds, as the option that stored it counts them."""
    counts = (q.param_numel(param) for q in QUANTIZATIONS.values())
    return next((n for n in counts if n is not None), None) or param.numel()


def stored_tensors(param: Any) -> list[Any]:
    """The tensors whose bytes a loaded parameter takes, its quantization state included."""
    found = (q.stored_tensors(param) for q in QUANTIZATIONS.values())
    return next((t for t in found if t is not None), None) or [param]


def dequantized_weight(layer: Any) -> Any:
    """A linear layer's weight W0 in floating point (de-quantized when a backend stored it), leaving the layer as
    it was; peft's ``dequantize_module_weight`` for the layers no record claims (4-bit, torchao, plain)."""
    found = (q.dequantized(layer) for q in QUANTIZATIONS.values())
    weight = next((w for w in found if w is not None), None)
    if weight is None:
        from peft.utils.integrations import dequantize_module_weight

        weight = dequantize_module_weight(layer)
    return weight


def make_optimizer(name: str, params: Any, **kwargs: Any) -> Any:
    """An optimizer a backend implements (e.g. an 8-bit AdamW), by its lorakit name."""
    backend = next((b for b in BACKENDS if name in getattr(b, "OPTIMIZERS", {})), None)
    if backend is None:
        raise ValueError(f"optimizer: no quantization backend implements {name!r}")
    return backend.make_optimizer(name, params, **kwargs)


def notices() -> Iterator[LogNotice]:
    """Every backend's known, harmless log notices (distinct)."""
    seen: set[LogNotice] = set()
    for q in QUANTIZATIONS.values():
        for notice in q.notices:
            if notice not in seen:
                seen.add(notice)
                yield notice
