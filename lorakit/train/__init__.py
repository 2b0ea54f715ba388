"""The notebook-side LoRA trainer: TrainConfig -> train() -> adapter, metrics and summary on disk.

Names load lazily, so `import lorakit.train` stays cheap until one is used (torch comes with the first).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_EXPORTS: dict[str, str] = {
    "TrainConfig": "lorakit.train.config",
    "train": "lorakit.train.loop",
    "StopHandle": "lorakit.train.events",
    "TrainSummary": "lorakit.train.events",
    "MetricsSink": "lorakit.train.events",
    "read_metrics": "lorakit.train.events",
    "exact_match": "lorakit.train.evaluate",
    "generate_answers": "lorakit.train.evaluate",
    "export_merged": "lorakit.train.export",
    "ensure_embedded": "lorakit.train.embedded",
    "compare_runs": "lorakit.train.compare",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lorakit.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


class _CallablePackage(types.ModuleType):
    """`lorakit.train(config)` must work however lorakit was imported.

    `lorakit.train` names both this package and the function. Importing any submodule
    (`lorakit.train.config`, ...) makes Python rebind the attribute `lorakit.train` to this package, so
    the package itself forwards calls to the function; `lorakit.train.train` is the same function.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
