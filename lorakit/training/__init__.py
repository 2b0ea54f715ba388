"""The notebook-side LoRA trainer: TrainConfig -> train() -> adapter, metrics and summary on disk.

Names load lazily, so `import lorakit.training` stays cheap until one is used (torch comes with the first).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "TrainConfig": "lorakit.training.config",
    "train": "lorakit.training.launch",
    "StopHandle": "lorakit.training.events",
    "TrainSummary": "lorakit.training.events",
    "MetricsSink": "lorakit.training.events",
    "read_metrics": "lorakit.training.events",
    "exact_match": "lorakit.training.evaluate",
    "generate_answers": "lorakit.training.evaluate",
    "export_merged": "lorakit.training.export",
    "ensure_embedded": "lorakit.training.embedded",
    "compare_runs": "lorakit.training.compare",
    "MetricsCallback": "lorakit.training.hf_callback",
    "lora_update_stats": "lorakit.training.lora_stats",
    "LayerUpdate": "lorakit.training.lora_stats",
    "compare_tokens": "lorakit.training.token_compare",
    "TokenComparison": "lorakit.training.token_compare",
    "load_run": "lorakit.training.token_compare",
    "token_lengths": "lorakit.training.lengths",
    "LengthReport": "lorakit.training.lengths",
    "check_fit": "lorakit.training.fit",
    "FitReport": "lorakit.training.fit",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lorakit.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
