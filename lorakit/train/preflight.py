"""Checks that run before any weights load: each failure names the problem and what to do instead."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import torch

from lorakit.train.config import TrainConfig

BF16_CPU_WARNING = (
    "precision='bf16' on a CPU without native bf16 (no avx512_bf16 / amx_bf16): every matmul is emulated, "
    "and a bf16 step of SmolLM2-135M took about 28x longer than fp32 on such a machine. "
    "Use precision='fp32' on this CPU, or keep bf16 runs tiny."
)


def resolve_device(config: TrainConfig) -> str:
    """'auto' becomes 'cuda' when a GPU is visible, else 'cpu'; an explicit 'cuda' without one is an error."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA GPU; use device='cpu' or 'auto'")
    if config.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return config.device


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 instructions (AVX512-BF16 or AMX-BF16), read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False  # not Linux: we cannot tell, so warn
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def _check_precision(config: TrainConfig, device: str) -> list[str]:
    uses_bf16 = "bf16" in (
        config.precision,
        config.compute_dtype if config.quantization in ("nf4", "fp4") else "",
    )
    if device == "cpu" and "fp16" in (config.precision, config.compute_dtype):
        raise ValueError(
            "precision='fp16' (or bnb_4bit_compute_dtype='fp16') is not supported on the CPU: autocast and the "
            "GradScaler need a GPU for fp16. Use precision='fp32' (fastest here) or 'bf16'."
        )
    if device == "cuda" and uses_bf16 and not torch.cuda.is_bf16_supported(including_emulation=False):
        major, minor = torch.cuda.get_device_capability()
        raise ValueError(
            f"bf16 needs a GPU with compute capability >= 8.0 (Ampere or newer); this one is {major}.{minor}. "
            "Use precision='fp16' (autocast + GradScaler) or 'fp32', and bnb_4bit_compute_dtype='fp16'."
        )
    if device == "cpu" and uses_bf16 and not cpu_has_native_bf16():
        return [BF16_CPU_WARNING]
    return []


def _check_quantization(config: TrainConfig, device: str) -> None:
    quantized = config.quantization != "none"
    wants_bnb_optim = config.optimizer != "adamw"
    if (quantized or wants_bnb_optim) and importlib.util.find_spec("bitsandbytes") is None:
        what = f"quantization={config.quantization!r}" if quantized else f"optimizer={config.optimizer!r}"
        raise ValueError(
            f"{what} needs bitsandbytes, which is not installed. Install it with `pip install bitsandbytes` "
            "or use quantization='none' and optimizer='adamw'."
        )
    if device not in ("cpu", "cuda") and (quantized or wants_bnb_optim):
        raise ValueError(f"bitsandbytes does not run on device {device!r}; use 'cuda' or 'cpu'")
    if device == "cpu" and config.optimizer == "paged_adamw_8bit":
        raise ValueError(
            "optimizer='paged_adamw_8bit' pages optimizer state between GPU and CPU memory and needs a GPU; "
            "on the CPU use optimizer='adamw' or 'adamw_8bit'."
        )


def check_before_load(config: TrainConfig) -> tuple[str, list[str]]:
    """Validate config against this machine; return (device, warnings) or raise ValueError with advice."""
    device = resolve_device(config)
    warnings = _check_precision(config, device)
    _check_quantization(config, device)
    return device, warnings


def linear_module_names(model: torch.nn.Module) -> list[str]:
    """Names of the layers LoRA can target: Linear (and bitsandbytes' Linear subclasses), GPT-2's Conv1D."""
    names = []
    for name, module in model.named_modules():
        kind = type(module).__name__
        if isinstance(module, torch.nn.Linear) or kind in ("Conv1D", "Linear8bitLt", "Linear4bit"):
            names.append(name)
    return names


def check_target_modules(model: torch.nn.Module, target_modules: str | list[str]) -> None:
    """Raise when a requested target matches no layer of the model (peft's matching: suffix, or regex for a str)."""
    names = linear_module_names(model)
    if target_modules == "all-linear":
        if not names:
            raise ValueError("target_modules='all-linear' but the model has no Linear layers")
        return
    if isinstance(target_modules, str):
        if not any(re.fullmatch(target_modules, name) for name in names):
            raise ValueError(
                f"target_modules={target_modules!r} (a regex) matches no Linear layer of the model"
            )
        return
    leaves = sorted({name.rsplit(".", 1)[-1] for name in names})
    missing = [t for t in target_modules if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        raise ValueError(
            f"target_modules={target_modules!r}: the model has no layer named {missing}; "
            f"its Linear layers are {leaves} (or use 'all-linear')"
        )


def check_lengths(config: TrainConfig, model_config) -> None:
    """max_seq_length must fit the model's position table."""
    limit = getattr(model_config, "max_position_embeddings", None)
    if limit is not None and config.max_seq_length > limit:
        raise ValueError(
            f"max_seq_length={config.max_seq_length} is longer than this model supports "
            f"(max_position_embeddings={limit}); use max_seq_length <= {limit}"
        )
