"""Sizing: LoRA/QLoRA parameter counts and a training-memory planner, from a config, without weights.

torch and transformers are imported only when a module tree has to be built (on the meta device).
"""

from __future__ import annotations

from lorakit.sizing.architecture import PRESETS, Architecture, LinearLayer, describe_architecture
from lorakit.sizing.gpus import GPU, GPUS, custom_gpu, smallest_fitting_gpu
from lorakit.sizing.lora_count import LoraCount, ModuleTypeCount, count_lora_params
from lorakit.sizing.memory import MemoryEstimate, estimate_inference_memory, estimate_memory

__all__ = [
    "GPU",
    "GPUS",
    "PRESETS",
    "Architecture",
    "LinearLayer",
    "LoraCount",
    "MemoryEstimate",
    "ModuleTypeCount",
    "count_lora_params",
    "custom_gpu",
    "describe_architecture",
    "estimate_inference_memory",
    "estimate_memory",
    "smallest_fitting_gpu",
]
