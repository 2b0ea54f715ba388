"""Every training choice lorakit offers, written once: the names, their aliases and what each one implies.

The trainer (``lorakit.training``), the planner (``lorakit.sizing``), the CLI and the widgets all read
their allowed values, labels and derived facts from here, so adding an option is one entry in one table.
Pure Python: no torch at import (``torch_dtype`` imports it when called).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lorakit.quantization import ALIASES as QUANTIZATION_ALIASES
from lorakit.quantization import QUANTIZATIONS, Quantization  # noqa: F401 -- their home is lorakit.quantization

AMPERE = (8, 0)  # the first CUDA compute capability with bf16 and TF32 tensor cores


@dataclass(frozen=True)
class Precision:
    """How a run computes: the dtype of the base weights and activations, autocast, loss scaling."""

    name: str
    label: str
    storage: str  # dtype of the frozen base and the activations (a lorakit.formats name)
    autocast: str | None  # dtype autocast computes in; None: no autocast
    needs_scaler: bool  # fp16's narrow exponent range needs a GradScaler
    min_compute_capability: tuple[int, int] | None  # on CUDA; None: any GPU
    cuda_only: bool = False  # a GPU matmul mode with no CPU counterpart (TF32)
    cpu_flags: tuple[str, ...] = ()  # /proc/cpuinfo flags of native support on x86; () = every CPU

    @property
    def storage_bytes(self) -> int:
        """Bytes per element of the base weights and activations."""
        return dtype_bytes(self.storage)

    @property
    def accelerate_mixed_precision(self) -> str:
        """accelerate's ``mixed_precision`` for this precision ("no", "fp16", "bf16")."""
        return self.autocast or "no"

    def runs_natively_on(self, compute_capability: tuple[int, int] | None) -> bool | None:
        """Whether a GPU of this compute capability runs it natively; None when the capability is unknown."""
        if self.min_compute_capability is None:
            return True
        if compute_capability is None:
            return None
        return tuple(compute_capability) >= self.min_compute_capability


@dataclass(frozen=True)
class Optimizer:
    """An optimizer by what it keeps per trainable parameter."""

    name: str
    label: str
    state: str  # "adamw" (two moments in the parameter dtype), "8bit" (bitsandbytes block-wise), "none"
    package: str = ""  # "" = torch.optim; else the package that implements it (lorakit.quantization builds it)
    needs_gpu: bool = False  # paged state moves between GPU and CPU memory
    in_trainer: bool = True  # False: the planner knows it, the trainer does not offer it


def _table(items: Iterable[Any]) -> dict[str, Any]:
    return {item.name: item for item in items}


TORCH_DTYPE_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}  # the dtypes a run computes in

PRECISIONS: dict[str, Precision] = _table([
    Precision("fp32", "fp32", "fp32", None, False, None),
    Precision("fp16", "fp16 (autocast + loss scaling)", "fp16", "fp16", True, None,
              cpu_flags=("avx512_fp16", "amx_fp16")),
    Precision("bf16", "bf16 (autocast)", "bf16", "bf16", False, AMPERE, cpu_flags=("avx512_bf16", "amx_bf16")),
    Precision("tf32", "tf32 (fp32 storage, TF32 matmuls)", "fp32", None, False, AMPERE, cuda_only=True),
])
OPTIMIZERS: dict[str, Optimizer] = _table([
    Optimizer("adamw", "AdamW", "adamw"),
    Optimizer("adamw_8bit", "AdamW 8-bit (bitsandbytes)", "8bit", package="bitsandbytes"),
    Optimizer("paged_adamw_8bit", "paged AdamW 8-bit (bitsandbytes, GPU)", "8bit", package="bitsandbytes",
              needs_gpu=True),
    Optimizer("sgd", "SGD (no momentum: no state)", "none"),
])
TRAIN_OPTIMIZERS = tuple(name for name, o in OPTIMIZERS.items() if o.in_trainer)
ATTENTIONS = ("sdpa", "eager")
# What a batch asks of attention: "causal" (no padding: SDPA's is_causal, no mask tensor), "padded" (pad
# tokens: transformers builds a [batch, 1, seq, seq] mask), "packed" (examples concatenated and kept apart by
# position_ids, as packing and padding-free batches do: a block-diagonal mask of the same shape, which
# transformers builds only when the forward runs without a kv cache, use_cache=False, as lorakit's trainer does)
ATTENTION_MASKS = ("causal", "padded", "packed")
FINETUNES = ("lora", "full")
PLANNER_DEVICES = ("cuda", "cpu")  # the planner defaults to a GPU
TRAIN_DEVICES = ("auto", "cpu", "cuda")
COMPUTE_DTYPES = tuple(TORCH_DTYPE_NAMES)  # what 4-bit layers (and LoRA adapters) may compute in
# The output head and loss: "fused" never materialises the [tokens, vocab] logits at once (liger-kernel's
# fused linear cross-entropy on CUDA, lorakit's chunked head elsewhere); "auto" = fused where supported.
LOSS_KERNELS = ("auto", "fused", "plain")
COMPILE_CHOICES = (False, True, "auto")  # torch.compile of the repeated decoder block
CHECKPOINTING_CHOICES = (False, True, "auto")  # auto: on for quantized bases or when the run would not fit
# How num_processes > 1 processes share the work: "ddp" keeps a whole copy of the model on every device and
# averages gradients; "fsdp" shards weights, gradients and optimizer states across the devices (torch's FSDP2).
DISTRIBUTED = ("ddp", "fsdp")

# Other spellings people bring from transformers, torch and bitsandbytes, mapped to ours.
ALIASES: dict[str, dict[str, str]] = {
    "precision": {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16", "no": "fp32"},
    "quantization": QUANTIZATION_ALIASES,
}
ALIASES["compute_dtype"] = ALIASES["precision"]


def normalize(kind: str, value: Any) -> Any:
    """The canonical spelling of a choice (an alias becomes its name); anything else is returned unchanged."""
    aliases = ALIASES.get(kind, {})
    return aliases.get(value, value) if isinstance(value, str) else value


def check_choice(field: str, value: Any, allowed: Iterable[Any]) -> None:
    """Raise ValueError naming the field, the value and the allowed values (any type of value is fine)."""
    allowed = tuple(allowed)  # a tuple compares with ==, so unhashable values (a list) get this message too
    if value not in allowed:
        raise ValueError(f"{field}: {value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}")


def choose(kind: str, field: str, value: Any, table: Mapping[str, Any] | Iterable[str]) -> Any:
    """normalize + check_choice: the canonical name of a valid choice, else ValueError naming ``field``."""
    name = normalize(kind, value)
    check_choice(field, name, table)
    return name


CPU_CHUNK_ROWS = 256  # at most this many rows per fused-head chunk on a CPU (see fused_chunk_tokens)
CPU_CHUNK_ELEMENTS = 1 << 24  # and at most this many logits per chunk (64 MiB in fp32), for large vocabularies


def fused_chunk_tokens(tokens: int, hidden_size: int, vocab_size: int, device: str = "cuda") -> int:
    """Rows of logits the fused head computes at a time, between 1 and ``tokens``.

    On a GPU, liger-kernel's rule: a power of two near tokens / ceil(vocab / hidden), so a chunk's logits
    take about as many bytes as the hidden states. On a CPU that is slow: every chunk streams the whole
    vocab x hidden weight through the caches twice, so small chunks pay for it (8 rows took 3.2x the plain
    head's time), while chunks much larger than the caches lose the fused head's locality. There a chunk
    has min(2 x hidden, CPU_CHUNK_ROWS) rows (a power of two), fewer when its logits would exceed
    CPU_CHUNK_ELEMENTS. Measured on a 2-core x86 CPU against the plain head (time ratio, lower is better):
    hidden 64 / vocab 49152: 0.53 at 128 rows (0.82 at 256); hidden 256 / 32000 and 576 / 49152: 0.84 and
    0.80 at 256 rows (0.89 and 0.90 at 128, 0.99 and 0.88 at 512). The planner and the trainer both use
    this rule, so the predicted transient is the one that runs.
    """
    if tokens <= 0:
        return 1
    if device == "cpu":
        rows = min(CPU_CHUNK_ROWS, 2 * max(1, hidden_size), max(1, CPU_CHUNK_ELEMENTS // max(1, vocab_size)))
        return min(tokens, 1 << (rows.bit_length() - 1))
    rows = -(-tokens // max(1, -(-vocab_size // hidden_size)))
    return min(tokens, 1 << max(0, (rows - 1).bit_length()))


def dtype_bytes(name: str) -> int:
    """Bytes per element of a storage dtype (fp32, fp16, bf16, int8, ...), from its lorakit.formats record."""
    from lorakit.formats import FORMATS  # numpy + ml_dtypes only

    return FORMATS[name].bits // 8


def torch_dtype(name: str) -> Any:
    """The torch dtype of a dtype name (fp32, fp16, bf16); imports torch."""
    import torch

    return getattr(torch, TORCH_DTYPE_NAMES[name])


def capability_note(precision: str, compute_capability: tuple[int, int] | None) -> str:
    """Why a precision does not run natively on a GPU of this capability, in one sentence."""
    need = PRECISIONS[precision].min_compute_capability or (0, 0)
    have = ".".join(map(str, compute_capability)) if compute_capability else "unknown"
    return (f"{precision} needs a GPU with compute capability >= {need[0]}.{need[1]} (Ampere or newer); "
            f"this one is {have}")
