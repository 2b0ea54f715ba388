"""TrainConfig: every knob of a lorakit run, named as transformers and peft name them, validated on creation.

It is lorakit's one settings schema: its fields' names, types, defaults, bounds (``BOUNDS``), allowed values
(``FIELD_CHOICES``) and the rules between fields. The planner (``lorakit.sizing``) validates the settings it
shares with the trainer by building a TrainConfig, and the widgets build their controls from these tables.
The 4-bit fields keep the names peft and transformers users know (``bnb_4bit_use_double_quant``,
``bnb_4bit_compute_dtype``); a quantization record (``lorakit.quantization``) says which options take them.
Pure Python: no torch at import.
"""

from __future__ import annotations

import dataclasses
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorakit.choices import (
    CHECKPOINTING_CHOICES,
    COMPILE_CHOICES,
    COMPUTE_DTYPES,
    DISTRIBUTED,
    LOSS_KERNELS,
    PRECISIONS,
    TRAIN_DEVICES,
    TRAIN_OPTIMIZERS,
    Precision,
    check_choice,
    choose,
)
from lorakit.quantization import QLORA, QUANTIZATIONS, Quantization
from lorakit.training.config_files import read_mapping
from lorakit.training.records import DATASET_HELP

SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")

# Other names of the same fields: transformers' TrainingArguments / SFTConfig, and the planner's earlier names.
FIELD_ALIASES = {
    "per_device_train_batch_size": "batch_size",
    "model_name_or_path": "model",
    "max_length": "max_seq_length",
    "seq_len": "max_seq_length",
    "optim": "optimizer",
    "double_quant": "bnb_4bit_use_double_quant",
}
# Fields with a closed set of values (a name or an alias, normalised on creation), read by widgets and planner.
FIELD_CHOICES: dict[str, tuple[Any, ...]] = {
    "precision": tuple(PRECISIONS),
    "quantization": tuple(QUANTIZATIONS),
    "bnb_4bit_compute_dtype": (None, *COMPUTE_DTYPES),
    "optimizer": TRAIN_OPTIMIZERS,
    "lr_scheduler_type": SCHEDULERS,
    "device": TRAIN_DEVICES,
    "gradient_checkpointing": CHECKPOINTING_CHOICES,
    "loss_kernel": LOSS_KERNELS,
    "compile": COMPILE_CHOICES,
    "distributed": DISTRIBUTED,
    "check_fit": (False, True, "auto"),
}
# Fields that are True or False (1 and 0 pass too: check_choice compares with ==).
FLAGS = ("bnb_4bit_use_double_quant", "use_dora", "use_rslora", "packing", "padding_free", "trust_remote_code",
         "eval_exact_match", "log_lora_stats")
_ALIAS_KIND = {"precision": "precision", "quantization": "quantization", "bnb_4bit_compute_dtype": "compute_dtype"}

# Numeric fields: (lowest, highest or None, type). The widgets take their bounds from here too.
BOUNDS: dict[str, tuple[float, float | None, type | tuple]] = {
    "r": (1, 4096, int),
    "lora_alpha": (1e-6, None, (int, float)),
    "lora_dropout": (0.0, 0.9, (int, float)),
    "learning_rate": (1e-12, 1.0, (int, float)),
    "weight_decay": (0.0, 1.0, (int, float)),
    "max_grad_norm": (0.0, None, (int, float)),
    "warmup_steps": (0, None, int),
    "max_steps": (1, None, int),  # or -1: train for num_train_epochs
    "num_train_epochs": (1e-9, None, (int, float)),
    "batch_size": (1, 65536, int),
    "gradient_accumulation_steps": (1, 65536, int),
    "max_seq_length": (8, 1_048_576, int),
    "eval_split": (0.0, 0.9, (int, float)),
    "eval_steps": (1, None, int),
    "save_steps": (1, None, int),
    "logging_steps": (1, None, int),
    "seed": (0, None, int),
    "max_new_tokens": (1, 4096, int),
    "preview_examples": (0, 64, int),
    "num_processes": (1, 4096, int),
    "target_global_batch_size": (1, None, int),
    "memory_limit_bytes": (1, None, int),
}
OPTIONAL = {"max_grad_norm", "eval_steps", "save_steps", "target_global_batch_size", "memory_limit_bytes"}  # None: off
SPECIAL_VALUES = {"max_steps": ", or -1 to train for num_train_epochs",  # allowed outside BOUNDS
                  "batch_size": ", or 'auto' (the largest batch that fits, measured before step 1)"}
AUTO_NUMBERS = ("batch_size",)  # numeric fields that also take "auto"


def _check_range(name: str, value: Any) -> None:
    low, high, kind = BOUNDS[name]
    ok = isinstance(value, kind) and not isinstance(value, bool) and value >= low
    ok = ok and (high is None or value <= high)
    if not ok:
        upper = f" and <= {high}" if high is not None else ""
        noun = "an integer" if kind is int else "a number"
        special = SPECIAL_VALUES.get(name, "")
        raise ValueError(f"{name}={value!r} is out of range; it must be {noun} >= {low}{upper}{special}")


@dataclass
class TrainConfig:
    """A LoRA / QLoRA fine-tuning run. Lengths in tokens, rates per optimizer step.

    The fields people ask about first (every field keeps the name peft and transformers give it):

    model: "embedded" (SmolLM2-135M-Instruct, built in, works offline), a local Hugging Face model folder, or a
        hub id such as "HuggingFaceTB/SmolLM2-135M-Instruct" (needs a network, or the model in the local cache).
        A name that is none of these is refused before anything loads.
    {dataset}
    max_seq_length: tokens per example, chat template included; longer examples are cut (a run whose every
        example is longer is refused).
    eval_split: the fraction of your examples held out for the eval loss and the preview (built-in tasks have
        their own held-out questions).
    preview_prompts: questions the model answers before and after training, shown side by side. Empty: the
        first ``preview_examples`` held-out examples that ask something (prompt/completion pairs, chats), shown
        with their held-out answer.
    output_dir: the run folder (None: runs/<timestamp>); it is created only once every check has passed.
    """

    # what to train
    model: str = "embedded"  # "embedded" (SmolLM2-135M-Instruct), a local HF folder, or a hub id
    # a built-in task ("builtin": facts, "builtin-json": one JSON line; see lorakit.data.TASKS), a list of str /
    # {prompt, completion} / {messages} / {text}, a .jsonl/.json/.txt path, or a datasets.Dataset (records.py)
    dataset: Any = "builtin"
    # numerics
    precision: str = "fp32"  # a lorakit.choices.PRECISIONS name: fp32 | fp16 | bf16 | tf32
    quantization: str = "none"  # a lorakit.quantization.QUANTIZATIONS name
    bnb_4bit_use_double_quant: bool = False  # for options that offer it (Quantization.double_quant)
    bnb_4bit_compute_dtype: str | None = None  # for options with their own compute dtype; None: `precision`
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
    batch_size: int | str = 4  # per process; "auto": the largest that fits (lorakit.training.fit)
    gradient_accumulation_steps: int = 1
    max_seq_length: int = 256
    packing: bool = False  # fixed blocks of max_seq_length, examples kept apart by position_ids
    padding_free: bool = False  # unpacked: each batch flattened into one row, no pad tokens
    gradient_checkpointing: bool | str = "auto"  # auto: on for quantized bases or when it would not fit
    loss_kernel: str = "auto"  # fused | plain | auto (fused wherever it is supported)
    compile: bool | str = False  # torch.compile each decoder block; auto: on CUDA when the run pays it back
    # evaluation, saving, logging
    eval_split: float = 0.1  # fraction held out (the built-in tasks have their own fixed held-out split)
    eval_steps: int | None = None  # None: evaluate only at the end
    save_steps: int | None = None  # None: checkpoint only at the end
    logging_steps: int = 10
    # at each logging step, how far the adapter moved each layer and its update's spectrum (training.lora_stats)
    log_lora_stats: bool = True
    seed: int = 42
    output_dir: str | None = None  # None: runs/<timestamp>
    trust_remote_code: bool = False
    preview_prompts: list[str] = field(default_factory=list)  # empty: preview_examples held-out examples
    preview_examples: int = 3  # held-out examples the preview answers when preview_prompts is empty (0: none)
    eval_exact_match: bool = False
    max_new_tokens: int = 24  # for previews and exact-match answers
    device: str = "auto"
    # more than one process: data parallel, batch_size per process (see global_batch_size)
    num_processes: int = 1
    distributed: str = "ddp"  # a lorakit.choices.DISTRIBUTED name: ddp | fsdp
    # fit before you run (lorakit.training.fit); check_fit "auto": on a GPU, for batch_size="auto" or a memory limit
    check_fit: bool | str = "auto"
    memory_limit_bytes: int | None = None  # what a step may hold at its peak; None: the device's free memory
    target_global_batch_size: int | None = None  # with batch_size="auto": accumulation keeps this global batch

    def __post_init__(self) -> None:
        for name, allowed in FIELD_CHOICES.items():
            if name in _ALIAS_KIND and getattr(self, name) is not None:
                setattr(self, name, choose(_ALIAS_KIND[name], name, getattr(self, name), allowed))
            check_choice(name, getattr(self, name), allowed)
        for name in FLAGS:
            check_choice(name, getattr(self, name), (False, True))
        if isinstance(self.target_modules, tuple):
            self.target_modules = list(self.target_modules)
        if (
            not isinstance(self.target_modules, (str, list))
            or not self.target_modules
            or not all(isinstance(t, str) for t in self.target_modules)
        ):
            raise ValueError(
                f"target_modules={self.target_modules!r}: give 'all-linear', a regex string or a list of "
                "module names (strings)"
            )
        self._check_numbers()
        if not isinstance(self.preview_prompts, list) or not all(
            isinstance(p, str) for p in self.preview_prompts
        ):
            raise ValueError(f"preview_prompts={self.preview_prompts!r} must be a list of strings")
        if self.bnb_4bit_use_double_quant and not self.quant.double_quant:
            takes = " or ".join(repr(n) for n, q in QUANTIZATIONS.items() if q.double_quant)
            raise ValueError(
                f"bnb_4bit_use_double_quant=True needs quantization {takes}, not {self.quantization!r}"
            )
        if self.distributed == "fsdp" and self.num_processes < 2:
            raise ValueError(
                f"distributed='fsdp' shards the model across processes; it needs num_processes >= 2, not "
                f"{self.num_processes} (one process holds the whole model anyway)"
            )
        self.quant.check(self.bnb_4bit_use_double_quant, fsdp=self.distributed == "fsdp")
        self._check_batch_fields()

    @property
    def global_batch_size(self) -> int | None:
        """Examples per optimizer step over all processes: batch_size x num_processes x accumulation (None while
        batch_size is "auto": the run chooses it)."""
        if self.batch_size == "auto":
            return None
        return self.batch_size * self.num_processes * self.gradient_accumulation_steps

    def _check_numbers(self) -> None:
        for name in BOUNDS:
            value = getattr(self, name)
            if (name in OPTIONAL and value is None) or (name == "max_steps" and value == -1):
                continue
            if name in AUTO_NUMBERS and value == "auto":
                continue
            _check_range(name, value)

    def _check_batch_fields(self) -> None:
        """batch_size="auto" and target_global_batch_size: what they need of the other fields."""
        target, auto = self.target_global_batch_size, self.batch_size == "auto"
        if auto and self.check_fit is False:
            raise ValueError("batch_size='auto' is chosen by measured steps before step 1; it needs check_fit=True "
                             "or 'auto', not False")
        if auto and self.num_processes > 1:
            raise ValueError(f"batch_size='auto' is measured in one process; with num_processes={self.num_processes} "
                             "give batch_size as a number")
        if target is None:
            return
        if auto and self.gradient_accumulation_steps != 1:
            raise ValueError(f"target_global_batch_size={target} with batch_size='auto' decides "
                             "gradient_accumulation_steps itself; leave it at 1, not "
                             f"{self.gradient_accumulation_steps}")
        if not auto and self.global_batch_size != target:
            raise ValueError(f"target_global_batch_size={target} but batch_size x num_processes x "
                             f"gradient_accumulation_steps = {self.global_batch_size}; use batch_size='auto' to let "
                             "the run choose the batch and the accumulation that keep it")

    @property
    def prec(self) -> Precision:
        """The chosen precision's facts (storage dtype, autocast, scaler, hardware it needs)."""
        return PRECISIONS[self.precision]

    @property
    def quant(self) -> Quantization:
        """The chosen quantization's record (lorakit.quantization): storage, backend, what it needs."""
        return QUANTIZATIONS[self.quantization]

    @property
    def double_quant(self) -> bool:
        """Whether the block constants are quantized too (bnb_4bit_use_double_quant, under its plain name)."""
        return self.bnb_4bit_use_double_quant

    @property
    def compute_dtype(self) -> str:
        """The dtype quantized layers compute in: the explicit setting where the option has its own, else the
        run's precision."""
        own = self.bnb_4bit_compute_dtype if self.quant.own_compute_dtype else None
        return own or self.prec.storage

    def with_quantization(self, name: str, double_quant: bool = False) -> TrainConfig:
        """This run on another base quantization; double quantization only where that option offers it."""
        quant = QUANTIZATIONS[choose("quantization", "quantization", name, QUANTIZATIONS)]
        return dataclasses.replace(self, quantization=quant.name,
                                   bnb_4bit_use_double_quant=bool(double_quant and quant.double_quant))

    def lora_config(self):
        """peft's LoraConfig for this run (imports peft)."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            target_modules=self.target_modules,
            use_dora=self.use_dora,
            use_rslora=self.use_rslora,
            task_type="CAUSAL_LM",
        )

    def quantization_config(self):
        """transformers' ``quantization_config`` for the base, every setting explicit, or None (imports it)."""
        from lorakit.choices import torch_dtype

        return self.quant.transformers_config(self.bnb_4bit_use_double_quant, torch_dtype(self.compute_dtype),
                                              sharded=self.distributed == "fsdp")

    bnb_config = quantization_config  # its earlier name

    def sizing_kwargs(self, device: str | None = None, gradient_checkpointing: bool | None = None,
                      loss_kernel: str | None = None) -> dict[str, Any]:
        """This run's settings as keyword arguments of ``lorakit.sizing.estimate_memory`` (one device's peak).

        ``gradient_checkpointing``: the run's resolved choice; by default the setting, with "auto" read as
        on for quantized bases (the part of the rule that needs no memory reading). ``loss_kernel``: the run's
        resolved choice; by default the setting ("auto": the fused head, which runs wherever a single-device
        model slices its logits).
        """
        checkpointing = self.gradient_checkpointing if gradient_checkpointing is None else gradient_checkpointing
        if checkpointing == "auto":
            checkpointing = self.quant.quantized
        if loss_kernel is None:  # "auto" keeps the plain head with sharded parameters (lorakit.training.auto)
            sharded = self.num_processes > 1 and self.distributed == "fsdp"
            loss_kernel = "plain" if self.loss_kernel == "auto" and sharded else self.loss_kernel
        settings = {name: getattr(self, name) for name in PLANNED}
        return dict(settings, gradient_checkpointing=bool(checkpointing), loss_kernel=loss_kernel,
                    device=device or ("cpu" if self.device == "cpu" else "cuda"))

    @classmethod
    def qlora(cls, **overrides: Any) -> TrainConfig:
        """The QLoRA recipe (lorakit.quantization.QLORA): NF4 + double quantization + bf16 compute.

        transformers' BitsAndBytesConfig defaults to fp4, no double quantization and fp32 compute.
        """
        return cls(**{**QLORA, **canonical(overrides)})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a mapping; accepts transformers' spellings (per_device_train_batch_size, optim, ...)."""
        settings = canonical(data)
        known = FIELDS
        for key in settings:
            if key not in known:
                raise ValueError(f"unknown TrainConfig field {key!r}; known fields: {', '.join(sorted(known))}")
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


# help(TrainConfig) says what `dataset` accepts in the words the checks and the TrainerPanel's tooltip use
TrainConfig.__doc__ = TrainConfig.__doc__.replace(
    "{dataset}", textwrap.fill(DATASET_HELP, width=112, initial_indent="", subsequent_indent=" " * 8).lstrip())
FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(TrainConfig)
                            if f.default is not dataclasses.MISSING}
# The fields that decide a training step's memory: what the planner (lorakit.sizing) reads from a TrainConfig.
PLANNED = ("r", "lora_alpha", "lora_dropout", "target_modules", "use_dora", "precision", "quantization",
           "bnb_4bit_use_double_quant", "optimizer", "batch_size", "max_seq_length", "gradient_checkpointing",
           "loss_kernel", "device", "num_processes", "distributed")


def canonical(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with every alias (``FIELD_ALIASES``) replaced by its field's name; ValueError when one field
    is given under two names."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        name = FIELD_ALIASES.get(key, key)
        if name in out:
            raise ValueError(f"{name}: given twice (as {name!r} and as its other name {key!r}); give it once")
        out[name] = value
    return out
