"""The planner's settings, validated once into a frozen record: every bad field is a ValueError naming it.

The names are those of ``lorakit.training.TrainConfig`` and peft where they exist (``r``, ``loss_kernel``,
``gradient_checkpointing``, ``num_processes``, ``distributed``); ``seq_len`` is TrainConfig's
``max_seq_length``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from lorakit.choices import (
    ATTENTION_MASKS,
    ATTENTIONS,
    COMPUTE_DTYPES,
    DISTRIBUTED,
    FINETUNES,
    LOSS_KERNELS,
    OPTIMIZERS,
    PLANNER_DEVICES,
    PRECISIONS,
    QUANTIZATIONS,
    check_choice,
    choose,
    dtype_bytes,
)
from lorakit.sizing.lora_count import ALL_LINEAR, targets_key
from lorakit.units import GIB

# the CUDA context, kernels and the caching allocator's slack: real, but outside torch.cuda.max_memory_allocated
DEFAULT_RUNTIME_OVERHEAD = GIB // 2


@dataclass(frozen=True)
class Settings:
    """One training step as the planner sees it (hashable: lists are stored as tuples)."""

    r: int = 8
    lora_alpha: float = 16
    target_modules: Any = ALL_LINEAR  # "all-linear", a regex string, or a tuple of layer names
    precision: str = "bf16"
    quantization: str = "none"
    double_quant: bool = True
    optimizer: str = "adamw"
    batch_size: int = 1  # per process
    seq_len: int = 512
    gradient_checkpointing: bool = False
    attention: str = "sdpa"
    finetune: str = "lora"
    adapter_precision: str = "fp32"
    lora_dropout: float = 0.0
    lora_bias: bool = False
    modules_to_save: tuple[str, ...] = ()
    use_dora: bool = False
    runtime_overhead_bytes: int = DEFAULT_RUNTIME_OVERHEAD
    device: str = "cuda"
    autocast: bool | None = None  # None: on for fp16/bf16, as the HF Trainer, accelerate and lorakit run them
    loss_kernel: str = "plain"  # "plain" | "fused" | "auto" (= fused: lorakit's chunked head runs everywhere)
    mask: str = "causal"  # lorakit.choices.ATTENTION_MASKS
    master_weights: bool = True  # full fine-tune in fp16/bf16: fp32 weights, gradients and AdamW states
    num_processes: int = 1
    distributed: str = "ddp"
    compute_capability: tuple[int, int] | None = None  # the GPU's; None: Ampere or newer

    @property
    def dtype(self) -> str:
        """Storage dtype of the base and the activations (tf32 stores fp32)."""
        return PRECISIONS[self.precision].storage

    @property
    def dtype_bytes(self) -> int:
        return PRECISIONS[self.precision].storage_bytes

    @property
    def full(self) -> bool:
        return self.finetune == "full"

    @property
    def fused_head(self) -> bool:
        return self.loss_kernel != "plain"

    @property
    def trainable_bytes(self) -> int:
        """Bytes per element of the trainable weights (and their gradients and AdamW states)."""
        if not self.full:
            return dtype_bytes(self.adapter_precision)
        return 4 if self.master_weights else self.dtype_bytes

    def as_dict(self) -> dict[str, Any]:
        """Plain values (tuples as lists), for MemoryEstimate.setup."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("target_modules", "modules_to_save", "compute_capability"):
            if isinstance(out[key], tuple):
                out[key] = list(out[key])
        return out


CHOICES = {"precision": PRECISIONS, "quantization": QUANTIZATIONS, "optimizer": OPTIMIZERS,
           "attention": ATTENTIONS, "finetune": FINETUNES, "adapter_precision": COMPUTE_DTYPES,
           "device": PLANNER_DEVICES, "loss_kernel": LOSS_KERNELS, "mask": ATTENTION_MASKS,
           "distributed": DISTRIBUTED}
BOOLS = ("double_quant", "gradient_checkpointing", "lora_bias", "use_dora", "master_weights")
POSITIVE_INTS = ("batch_size", "seq_len", "num_processes")


def validate(**kwargs: Any) -> Settings:
    """Settings from keyword arguments; ValueError naming the first bad field and what is allowed."""
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ValueError(f"{unknown[0]}: not a planner setting; known: {', '.join(sorted(known))}")
    values = {**{f.name: f.default for f in fields(Settings)}, **kwargs}
    values["precision"] = choose("precision", "precision", values["precision"], PRECISIONS)
    values["quantization"] = choose("quantization", "quantization", values["quantization"], QUANTIZATIONS)
    for field, allowed in CHOICES.items():
        check_choice(field, values[field], allowed)
    for field in BOOLS:
        check_choice(field, values[field], (False, True))
    for field in POSITIVE_INTS:
        check_positive(field, values[field])
    _check_numbers(values)
    _check_combinations(values)
    check_choice("autocast", values["autocast"], (None, False, True))
    if values["autocast"] is None:
        values["autocast"] = PRECISIONS[values["precision"]].autocast is not None
    values["loss_kernel"] = "fused" if values["loss_kernel"] == "auto" else values["loss_kernel"]
    values["target_modules"] = targets_key(values["target_modules"])
    values["modules_to_save"] = _names("modules_to_save", values["modules_to_save"])
    values["compute_capability"] = _capability(values["compute_capability"])
    return Settings(**values)


def check_positive(field: str, value: Any) -> None:
    """Raise ValueError unless ``value`` is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{field}: must be a positive integer, got {value!r}")


def _check_numbers(values: dict[str, Any]) -> None:
    alpha = values["lora_alpha"]
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
        raise ValueError(f"lora_alpha: must be a positive number, got {alpha!r}")
    dropout = values["lora_dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"lora_dropout: must be a number in [0, 1), got {dropout!r}")
    overhead = values["runtime_overhead_bytes"]
    if isinstance(overhead, bool) or not isinstance(overhead, int) or overhead < 0:
        raise ValueError(f"runtime_overhead_bytes: must be an integer >= 0, got {overhead!r}")


def _check_combinations(values: dict[str, Any]) -> None:
    """Settings that are valid alone but not together."""
    if values["finetune"] == "full" and values["quantization"] != "none":
        raise ValueError("quantization: full fine-tuning needs an unquantized base; use 'none' or finetune='lora'")
    if values["finetune"] == "full" and values["precision"] == "fp16" and not values["master_weights"]:
        raise ValueError("master_weights: fp16 training needs fp32 trainable weights (the GradScaler refuses fp16 "
                         "gradients); use master_weights=True or precision='bf16'")
    if values["distributed"] == "fsdp" and values["num_processes"] > 1 and values["quantization"] == "int8":
        raise ValueError("distributed: fsdp cannot shard an 8-bit (int8) base; use 'ddp', or quantization 'nf4'")


def _names(field: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{field}: give a list of module names, got {value!r}")
    return tuple(value)


def _capability(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    ok = isinstance(value, Sequence) and len(value) == 2 and all(isinstance(v, int) and v >= 0 for v in value)
    if not ok:
        raise ValueError(f"compute_capability: give (major, minor) such as (9, 0), or None; got {value!r}")
    return (int(value[0]), int(value[1]))
