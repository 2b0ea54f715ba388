"""Checks that run before any weights load: each failure names the problem and what to do instead."""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path

import torch

from lorakit.choices import OPTIMIZERS, PRECISIONS, capability_note, torch_dtype
from lorakit.training.config import TrainConfig


def cpu_emulation_warning(precision: str) -> str:
    """The warning for a precision this CPU only emulates."""
    flags = " / ".join(PRECISIONS[precision].cpu_flags)
    return (f"precision={precision!r} on a CPU without native {precision} (no {flags}): every matmul is "
            f"emulated and runs several times slower than fp32 (lorakit.training.preflight.matmul_seconds() "
            f"measures it). Use precision='fp32' on this CPU, or keep {precision} runs tiny.")


BF16_CPU_WARNING = cpu_emulation_warning("bf16")


def resolve_device(config: TrainConfig) -> str:
    """'auto' becomes 'cuda' when a GPU is visible, else 'cpu'; an explicit 'cuda' without one is an error."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA GPU; use device='cpu' or 'auto'")
    if config.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return config.device


def cpu_has_native(precision: str) -> bool:
    """True when the CPU has instructions for the precision (e.g. AVX512-BF16, AMX), read from /proc/cpuinfo."""
    flags = PRECISIONS[precision].cpu_flags
    if not flags:
        return True
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False  # not Linux: we cannot tell, so warn
    return bool(re.search(r"\b(" + "|".join(flags) + r")\b", text))


CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16", "amx_fp16")  # what decides the speeds


def cpu_features(cpuinfo: str | None = None) -> tuple[str, list[str]]:
    """This CPU's model name and which of ``CPU_FLAGS`` it reports, from /proc/cpuinfo (or the text given).

    ("unknown", []) where there is no /proc/cpuinfo (not Linux). Machines of one kind differ: some have AVX2
    only, others AVX512-BF16 or AMX, so a notebook prints what the machine it runs on has.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "unknown", []
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", cpuinfo, re.M)
    present = set(flags.group(1).split()) if flags else set()
    return (model.group(1).strip() if model else "unknown"), [f for f in CPU_FLAGS if f in present]


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 instructions (AVX512-BF16 or AMX-BF16)."""
    return cpu_has_native("bf16")


def matmul_seconds(precisions: tuple[str, ...] = ("fp32", "bf16", "fp16"), device: str = "cpu", *,
                   tokens: int = 256, d_in: int = 576, d_out: int = 1536, r: int = 8, repeats: int = 5,
                   ) -> dict[str, float]:
    """Seconds for one forward and backward of a LoRA-adapted linear layer in each precision (best of repeats).

    Measures what this hardware does with each dtype (native instructions or emulation) rather than assuming
    it. The default shape is one of SmolLM2-135M's MLP projections over 256 tokens; on the CPU it runs on one
    thread, so that other work on a shared machine disturbs the comparison less.
    """
    threads = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(0)
        weight = (torch.randn(d_out, d_in, generator=generator) * 0.02).to(device)
        x = torch.randn(tokens, d_in, generator=generator).to(device)
        lora_a = (torch.randn(r, d_in, generator=generator) * 0.02).to(device).requires_grad_()
        lora_b = torch.zeros(d_out, r, device=device, requires_grad=True)
        seconds = {}
        for name in precisions:
            dtype = PRECISIONS[name].autocast
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                with torch.autocast(device, dtype=torch_dtype(dtype) if dtype else None, enabled=dtype is not None):
                    y = x @ weight.t() + (x @ lora_a.t()) @ lora_b.t()
                y.float().square().mean().backward()
                if device == "cuda":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - start)
            seconds[name] = best
        return seconds
    finally:
        torch.set_num_threads(threads)


def cuda_capability() -> tuple[int, int]:
    """The current GPU's compute capability."""
    return tuple(torch.cuda.get_device_capability())


def _check_precision(config: TrainConfig, device: str) -> list[str]:
    """Refuse what this device cannot compute; warn where it only emulates (bf16 on some CPUs)."""
    uses = {config.precision, config.compute_dtype}
    for name in sorted(uses):
        precision = PRECISIONS[name]
        if precision.cuda_only and device != "cuda":
            raise ValueError(
                f"precision={name!r} is a matmul mode of NVIDIA tensor cores (compute capability >= 8.0); "
                f"the {device.upper()} has no TF32. Use precision='fp32' (the same storage, full-precision "
                "matmuls) or 'bf16'."
            )
        if device == "cuda" and precision.runs_natively_on(cuda_capability()) is False:
            alternative = "'fp32'" if name == "tf32" else "'fp16' (autocast + GradScaler) or 'fp32'"
            raise ValueError(f"precision={name!r}: {capability_note(name, cuda_capability())}. "
                             f"Use precision={alternative}.")
    if device != "cpu":
        return []
    special = [n for n in sorted(uses) if PRECISIONS[n].cpu_flags]  # fp32 runs natively everywhere
    emulated = [n for n in special if not (cpu_has_native_bf16() if n == "bf16" else cpu_has_native(n))]
    return [cpu_emulation_warning(n) for n in emulated]


def _check_quantization(config: TrainConfig, device: str) -> None:
    """The packages the base's quantization and the optimizer need, and the devices they run on."""
    optimizer, quant = OPTIMIZERS[config.optimizer], config.quant
    needs = [(f"quantization={config.quantization!r}", quant.backend, quant.devices)] if quant.quantized else []
    if optimizer.package:
        needs.append((f"optimizer={config.optimizer!r}", optimizer.package, ("cpu", "cuda")))
    for what, package, devices in needs:
        if importlib.util.find_spec(package) is None:
            raise ValueError(f"{what} needs {package}, which is not installed. Install it with `pip install "
                             f"{package}` or use quantization='none' and optimizer='adamw'.")
        if device not in devices:
            raise ValueError(f"{what}: {package} does not run on device {device!r}; use {' or '.join(map(repr, devices))}")
    if device == "cpu" and optimizer.needs_gpu:
        raise ValueError(
            f"optimizer={config.optimizer!r} pages optimizer state between GPU and CPU memory and needs a GPU; "
            "on the CPU use optimizer='adamw' or 'adamw_8bit'."
        )


def check_before_load(config: TrainConfig) -> tuple[str, list[str]]:
    """Validate config against this machine; return (device, warnings) or raise ValueError with advice."""
    device = resolve_device(config)
    warnings = _check_precision(config, device)
    _check_quantization(config, device)
    return device, warnings


def check_target_modules(model: torch.nn.Module, target_modules: str | list[str]) -> None:
    """Raise when a requested target matches no linear layer (the planner's matching, which is peft's)."""
    from lorakit.sizing.architecture import describe_architecture
    from lorakit.sizing.lora_count import select_targets

    select_targets(describe_architecture(model), target_modules)


def check_lengths(config: TrainConfig, model_config) -> None:
    """max_seq_length must fit the model's position table."""
    limit = getattr(model_config, "max_position_embeddings", None)
    if limit is not None and config.max_seq_length > limit:
        raise ValueError(
            f"max_seq_length={config.max_seq_length} is longer than this model supports "
            f"(max_position_embeddings={limit}); use max_seq_length <= {limit}"
        )
