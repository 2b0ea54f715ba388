"""TrainConfig: every knob of a lorakit run, named as transformers and peft name them, validated on creation."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRECISIONS = ("fp32", "fp16", "bf16")
QUANTIZATIONS = ("none", "int8", "nf4", "fp4")
OPTIMIZERS = ("adamw", "adamw_8bit", "paged_adamw_8bit")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
DEVICES = ("auto", "cpu", "cuda")
COMPUTE_DTYPES = ("fp32", "fp16", "bf16")

# Other spellings people bring from transformers / torch, mapped to ours.
_DTYPE_ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16", "no": "fp32"}
_FIELD_ALIASES = {
    "per_device_train_batch_size": "batch_size",
    "model_name_or_path": "model",
    "max_length": "max_seq_length",
    "optim": "optimizer",
}


def _check_choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}")


def _check_range(
    name: str, value: Any, low: float, high: float | None = None, kind: type | tuple = int
) -> None:
    ok = isinstance(value, kind) and not isinstance(value, bool) and value >= low
    ok = ok and (high is None or value <= high)
    if not ok:
        upper = f" and <= {high}" if high is not None else ""
        noun = "an integer" if kind is int else "a number"
        raise ValueError(f"{name}={value!r} is out of range; it must be {noun} >= {low}{upper}")


@dataclass
class TrainConfig:
    """A LoRA / QLoRA fine-tuning run. Lengths in tokens, rates per optimizer step."""

    # what to train
    model: str = "embedded"  # "embedded" (SmolLM2-135M-Instruct), a local HF folder, or a hub id
    dataset: Any = (
        "builtin"  # "builtin", list of str / {prompt, completion} / {messages}, .jsonl/.txt path, Dataset
    )
    # numerics
    precision: str = "fp32"  # fp32 | fp16 (autocast + GradScaler, fp32 adapters) | bf16 (autocast, no scaler)
    quantization: str = "none"  # none | int8 | nf4 | fp4 (bitsandbytes, base weights only)
    bnb_4bit_use_double_quant: bool = False
    bnb_4bit_compute_dtype: str | None = None  # None: follow `precision`
    # LoRA (peft names)
    r: int = 8
    lora_alpha: float = 16
    lora_dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"
    use_dora: bool = False
    use_rslora: bool = False
    # optimisation (transformers names)
    optimizer: str = "adamw"
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    lr_scheduler_type: str = "linear"
    warmup_steps: int = 0
    max_steps: int = -1  # > 0 overrides num_train_epochs
    num_train_epochs: float = 1.0
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_seq_length: int = 256
    packing: bool = False  # fixed blocks of max_seq_length, examples kept apart by position_ids
    padding_free: bool = False  # unpacked: each batch flattened into one row, no pad tokens
    gradient_checkpointing: bool = False
    # evaluation, saving, logging
    eval_split: float = 0.1  # fraction held out (the built-in dataset has its own fixed held-out split)
    eval_steps: int | None = None  # None: evaluate only at the end
    save_steps: int | None = None  # None: checkpoint only at the end
    logging_steps: int = 10
    seed: int = 42
    output_dir: str | None = None  # None: runs/<timestamp>
    trust_remote_code: bool = False
    preview_prompts: list[str] = field(default_factory=list)
    eval_exact_match: bool = False
    max_new_tokens: int = 24  # for previews and exact-match answers
    device: str = "auto"

    def __post_init__(self) -> None:
        self.precision = _DTYPE_ALIASES.get(self.precision, self.precision)
        if self.bnb_4bit_compute_dtype is not None:
            self.bnb_4bit_compute_dtype = _DTYPE_ALIASES.get(
                self.bnb_4bit_compute_dtype, self.bnb_4bit_compute_dtype
            )
            _check_choice("bnb_4bit_compute_dtype", self.bnb_4bit_compute_dtype, COMPUTE_DTYPES)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("quantization", self.quantization, QUANTIZATIONS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("lr_scheduler_type", self.lr_scheduler_type, SCHEDULERS)
        _check_choice("device", self.device, DEVICES)
        if isinstance(self.target_modules, tuple):
            self.target_modules = list(self.target_modules)
        if not isinstance(self.target_modules, (str, list)) or not self.target_modules:
            raise ValueError(
                f"target_modules={self.target_modules!r}: give 'all-linear' or a list of module names"
            )
        self._check_numbers()
        if not isinstance(self.preview_prompts, list) or not all(
            isinstance(p, str) for p in self.preview_prompts
        ):
            raise ValueError(f"preview_prompts={self.preview_prompts!r} must be a list of strings")
        if self.bnb_4bit_use_double_quant and self.quantization not in ("nf4", "fp4"):
            raise ValueError(
                f"bnb_4bit_use_double_quant=True needs quantization 'nf4' or 'fp4', not {self.quantization!r}"
            )

    def _check_numbers(self) -> None:
        _check_range("r", self.r, 1, 4096)
        _check_range("lora_alpha", self.lora_alpha, 1e-6, None, (int, float))
        _check_range("lora_dropout", self.lora_dropout, 0.0, 0.9, (int, float))
        _check_range("learning_rate", self.learning_rate, 1e-12, 1.0, (int, float))  # > 0
        _check_range("weight_decay", self.weight_decay, 0.0, 1.0, (int, float))
        if self.max_grad_norm is not None:
            _check_range("max_grad_norm", self.max_grad_norm, 0.0, None, (int, float))
        _check_range("warmup_steps", self.warmup_steps, 0)
        if self.max_steps != -1:
            _check_range("max_steps", self.max_steps, 1)
        _check_range("num_train_epochs", self.num_train_epochs, 1e-9, None, (int, float))
        _check_range("batch_size", self.batch_size, 1, 65536)
        _check_range("gradient_accumulation_steps", self.gradient_accumulation_steps, 1, 65536)
        _check_range("max_seq_length", self.max_seq_length, 8, 1_048_576)
        _check_range("eval_split", self.eval_split, 0.0, 0.9, (int, float))
        for name in ("eval_steps", "save_steps"):
            if getattr(self, name) is not None:
                _check_range(name, getattr(self, name), 1)
        _check_range("logging_steps", self.logging_steps, 1)
        _check_range("seed", self.seed, 0)
        _check_range("max_new_tokens", self.max_new_tokens, 1, 4096)

    @property
    def compute_dtype(self) -> str:
        """The dtype 4-bit layers compute in: the explicit setting, else the run's precision."""
        return self.bnb_4bit_compute_dtype or self.precision

    @classmethod
    def qlora(cls, **overrides: Any) -> TrainConfig:
        """The QLoRA recipe: NF4 + double quantization + bf16 compute (transformers defaults to fp4/no DQ/fp32)."""
        settings = {
            "quantization": "nf4",
            "bnb_4bit_use_double_quant": True,
            "bnb_4bit_compute_dtype": "bf16",
            "precision": "bf16",
        }
        settings.update(overrides)
        return cls(**settings)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a mapping; accepts transformers' spellings (per_device_train_batch_size, optim, ...)."""
        known = {f.name for f in dataclasses.fields(cls)}
        settings: dict[str, Any] = {}
        for key, value in data.items():
            name = _FIELD_ALIASES.get(key, key)
            if name not in known:
                raise ValueError(
                    f"unknown TrainConfig field {key!r}; known fields: {', '.join(sorted(known))}"
                )
            settings[name] = value
        return cls(**settings)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """Load from a .yaml/.yml or .json file holding one mapping of fields."""
        return cls.from_dict(read_mapping(path))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields; an in-memory dataset is described, not copied."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if not isinstance(self.dataset, (str, Path)):
            size = len(self.dataset) if hasattr(self.dataset, "__len__") else "?"
            data["dataset"] = f"<in-memory {type(self.dataset).__name__}: {size} examples>"
        else:
            data["dataset"] = str(self.dataset)
        data["target_modules"] = (
            self.target_modules if isinstance(self.target_modules, str) else list(self.target_modules)
        )
        data["preview_prompts"] = list(self.preview_prompts)
        return data


def read_mapping(path: str | Path) -> dict[str, Any]:
    """The mapping of fields in a .yaml/.yml or .json file (not yet validated)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of TrainConfig fields, got {type(data).__name__}")
    return data
