"""Notebook widgets: stock ipywidgets composed over lorakit's pure cores (one widget per file)."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FloatExplorer": "lorakit.widgets.float_explorer",
    "LoraCalculator": "lorakit.widgets.lora_calculator",
    "TrainerPanel": "lorakit.widgets.trainer_panel",
    "LiveDashboard": "lorakit.widgets.live_dashboard",
    "LiveDashboardCallback": "lorakit.widgets.hf_callback",
    "LoraUpdateView": "lorakit.widgets.lora_views",
    "WhatChanged": "lorakit.widgets.what_changed",
    "Exercise": "lorakit.widgets.exercise",
    "Quiz": "lorakit.widgets.exercise",
    "NumberAnswer": "lorakit.widgets.answers",
    "ChoiceAnswer": "lorakit.widgets.answers",
    "ManyAnswer": "lorakit.widgets.answers",
    "BitsAnswer": "lorakit.widgets.answers",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lorakit.widgets' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
