"""The planner's settings: TrainConfig's fields, validated by TrainConfig, plus the few only a planner needs.

The settings a run and a plan share (r, precision, quantization, batch_size, max_seq_length, ...) are
``lorakit.training.TrainConfig`` fields with its defaults, bounds and messages: the planner builds a
TrainConfig from them, so both accept and refuse the same values, and ``estimate_memory(model)`` sizes the run
``TrainConfig(model=model)`` trains. Its "auto" choices resolve as the trainer resolves them before a model
loads: device auto -> cuda (the planner plans for a GPU), gradient_checkpointing auto -> on for a quantized
base, loss_kernel auto -> the fused head (the plain one when FSDP shards the model). Earlier names still work
(``seq_len`` for max_seq_length, ``double_quant`` for bnb_4bit_use_double_quant: ``FIELD_ALIASES``).

Planner-only settings (``PLANNER_DEFAULTS``) describe what a trainer's config does not: another fine-tune,
another attention kernel, a GPU's compute capability, the runtime's allowance, torch's other checkpointing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from lorakit.choices import (
    ATTENTION_MASKS,
    ATTENTIONS,
    COMPUTE_DTYPES,
    FINETUNES,
    PRECISIONS,
    check_choice,
    dtype_bytes,
)
from lorakit.quantization import QUANTIZATIONS, Quantization
from lorakit.sizing.lora_count import targets_key
from lorakit.training.config import FIELDS, TrainConfig, canonical
from lorakit.units import GIB

# the CUDA context, kernels and the caching allocator's slack: real, but outside torch.cuda.max_memory_allocated
DEFAULT_RUNTIME_OVERHEAD = GIB // 2

PLANNER_DEFAULTS: dict[str, Any] = {
    "finetune": "lora",  # or "full": every weight trains (no adapters, an unquantized base)
    "attention": "sdpa",
    "adapter_precision": "fp32",  # the LoRA weights' dtype (lorakit's trainer keeps them fp32)
    "lora_bias": False,
    "modules_to_save": (),
    "runtime_overhead_bytes": DEFAULT_RUNTIME_OVERHEAD,
    "autocast": None,  # None: on for fp16/bf16, as the HF Trainer, accelerate and lorakit run them
    "mask": "causal",  # lorakit.choices.ATTENTION_MASKS
    "master_weights": True,  # full fine-tune in fp16/bf16: fp32 weights, gradients and AdamW states
    "compute_capability": None,  # the GPU's; None: Ampere or newer
    # torch.utils.checkpoint's: False as transformers' default and lorakit's trainer (lorakit.sizing.recompute)
    "use_reentrant": False,
    "logit_tokens": None,  # tokens whose logits the head computes (lorakit's trainer: targeted ones); None: all
}
PLANNER_CHOICES = {"finetune": FINETUNES, "attention": ATTENTIONS, "adapter_precision": COMPUTE_DTYPES,
                   "mask": ATTENTION_MASKS, "lora_bias": (False, True), "master_weights": (False, True),
                   "autocast": (None, False, True), "use_reentrant": (False, True)}


@dataclass(frozen=True)
class Settings:
    """One training step as the planner sees it, every choice resolved (hashable: lists are stored as tuples)."""

    r: int
    lora_alpha: float
    target_modules: Any  # "all-linear", a regex string, or a tuple of layer names
    precision: str
    quantization: str
    double_quant: bool
    optimizer: str
    batch_size: int  # per process
    seq_len: int
    gradient_checkpointing: bool
    attention: str
    finetune: str
    adapter_precision: str
    lora_dropout: float
    lora_bias: bool
    modules_to_save: tuple[str, ...]
    use_dora: bool
    runtime_overhead_bytes: int
    device: str  # "cuda" or "cpu"
    autocast: bool
    loss_kernel: str  # "plain" or "fused"
    mask: str
    master_weights: bool
    num_processes: int
    distributed: str
    compute_capability: tuple[int, int] | None
    use_reentrant: bool  # how gradient checkpointing recomputes a layer
    logit_tokens: int | None = None  # tokens whose logits the head computes; None: every token

    @property
    def quant(self) -> Quantization:
        """The base's quantization record."""
        return QUANTIZATIONS[self.quantization]

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


def split(settings: dict[str, Any], config: TrainConfig | None = None) -> tuple[TrainConfig, dict[str, Any]]:
    """(the TrainConfig of the shared settings, the planner-only ones with their defaults); ValueError naming
    the first bad field, with TrainConfig's message for a shared one."""
    settings = canonical(settings)
    unknown = sorted(set(settings) - set(FIELDS) - set(PLANNER_DEFAULTS))
    if unknown:
        known = sorted({*FIELDS, *PLANNER_DEFAULTS})
        raise ValueError(f"{unknown[0]}: not a TrainConfig field or planner setting; known: {', '.join(known)}")
    shared = {k: v for k, v in settings.items() if k in FIELDS}
    config = dataclasses.replace(config, **shared) if config is not None else TrainConfig(**shared)
    return config, {**PLANNER_DEFAULTS, **{k: v for k, v in settings.items() if k in PLANNER_DEFAULTS}}


def validate(config: TrainConfig | None = None, **settings: Any) -> Settings:
    """Settings from a TrainConfig and/or keyword arguments; ValueError naming the first bad field."""
    config, planner = split(settings, config)
    for field, allowed in PLANNER_CHOICES.items():
        check_choice(field, planner[field], allowed)
    _check_planner(config, planner)
    kwargs = config.sizing_kwargs()
    autocast = planner.pop("autocast")
    return Settings(
        r=config.r, lora_alpha=config.lora_alpha, target_modules=targets_key(config.target_modules),
        precision=config.precision, quantization=config.quantization,
        double_quant=config.double_quant, optimizer=config.optimizer, batch_size=config.batch_size,
        seq_len=config.max_seq_length, gradient_checkpointing=kwargs["gradient_checkpointing"],
        lora_dropout=config.lora_dropout, use_dora=config.use_dora, device=kwargs["device"],
        autocast=config.prec.autocast is not None if autocast is None else autocast,
        loss_kernel="plain" if kwargs["loss_kernel"] == "plain" else "fused",
        num_processes=config.num_processes, distributed=config.distributed,
        **dict(planner, modules_to_save=_names("modules_to_save", planner["modules_to_save"]),
               compute_capability=_capability(planner["compute_capability"])),
    )


def check_positive(field: str, value: Any) -> None:
    """Raise ValueError unless ``value`` is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{field}: must be a positive integer, got {value!r}")


def _check_planner(config: TrainConfig, planner: dict[str, Any]) -> None:
    """Planner-only values, and the rules between them and the shared fields."""
    if config.batch_size == "auto":
        raise ValueError("batch_size: 'auto' is chosen by measured steps before a run (lorakit.check_fit); the "
                         "planner needs a number of rows")
    overhead = planner["runtime_overhead_bytes"]
    if isinstance(overhead, bool) or not isinstance(overhead, int) or overhead < 0:
        raise ValueError(f"runtime_overhead_bytes: must be an integer >= 0, got {overhead!r}")
    full = planner["finetune"] == "full"
    if full and config.quant.quantized:
        raise ValueError("quantization: full fine-tuning needs an unquantized base; use 'none' or finetune='lora'")
    if full and config.precision == "fp16" and not planner["master_weights"]:
        raise ValueError("master_weights: fp16 training needs fp32 trainable weights (the GradScaler refuses fp16 "
                         "gradients); use master_weights=True or precision='bf16'")
    tokens = planner["logit_tokens"]
    if tokens is not None:
        check_positive("logit_tokens", tokens)
    if planner["lora_bias"] and config.use_dora:  # peft refuses this combination
        raise ValueError("lora_bias: True is not supported together with use_dora=True (peft refuses it)")


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
