"""lorakit: a Jupyter workbench for LLM fine-tuning.

Three parts, one package:

* formats  -- how FP32/FP16/BF16/TF32/FP8/FP6/FP4/NF4/INT8 store a value (``FORMATS``, ``explain``,
  ``quantize_array``, the ``FloatExplorer`` widget);
* sizing   -- LoRA/QLoRA parameter counts and a training-memory planner (``count_lora_params``,
  ``estimate_memory``, the ``LoraCalculator`` widget);
* training -- a notebook-side LoRA trainer (``TrainConfig``, ``train``, the ``TrainerPanel`` widget,
  ``LiveDashboardCallback`` for an existing ``transformers.Trainer``), and what an adapter learned
  (``lora_update_stats``: the update's size and spectrum per layer; ``compare_tokens``: the tokens it changed).

Names are imported lazily: ``import lorakit`` loads neither torch nor the widget stack; the heavy
imports happen the first time a name that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from lorakit.quiet import install_filters

__version__ = "0.1.0"

install_filters()  # before anything imports bitsandbytes or peft: see lorakit.quiet

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # formats (pure: numpy + ml_dtypes)
    "FORMATS": "lorakit.formats",
    "FloatFormat": "lorakit.formats",
    "get_format": "lorakit.formats",
    "explain": "lorakit.formats",
    "encode": "lorakit.formats",
    "decode": "lorakit.formats",
    "quantize_array": "lorakit.formats",
    # sizing (pure-ish; torch only to build a module tree on the meta device)
    "count_lora_params": "lorakit.sizing",
    "estimate_memory": "lorakit.sizing",
    "describe_architecture": "lorakit.sizing",
    "PRESETS": "lorakit.sizing",
    "GPUS": "lorakit.sizing",
    # train (torch, transformers, peft, bitsandbytes, accelerate -- imported on use)
    "TrainConfig": "lorakit.training",
    "train": "lorakit.training",
    "compare_runs": "lorakit.training",
    "lora_update_stats": "lorakit.training",
    "compare_tokens": "lorakit.training",
    "token_lengths": "lorakit.training",
    "check_fit": "lorakit.training",
    # widgets (ipywidgets + matplotlib)
    "FloatExplorer": "lorakit.widgets",
    "LoraCalculator": "lorakit.widgets",
    "TrainerPanel": "lorakit.widgets",
    "LiveDashboardCallback": "lorakit.widgets",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lorakit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return __all__
