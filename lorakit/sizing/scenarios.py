"""The sizing calculator's questions, answered here so that widgets only render.

* ``scenarios``: the runs side by side: full fine-tune (each optimizer-state convention that differs at the
  chosen precision), LoRA on a 16-bit base, QLoRA (nf4 + double quant), and yours when it is none of those.
* ``per_gpu``: memory per device for 1, 2, 4 and 8 processes (DDP or FSDP).
* ``fused_head_saving``: the same run with the plain head and the fused one.
"""

from __future__ import annotations

from typing import Any

from lorakit.sizing.memory import MemoryEstimate, estimate_memory
from lorakit.sizing.settings import validate

GPU_COUNTS = (1, 2, 4, 8)
COMPONENT_LABELS = {  # what each component holds, for tables and legends
    "weights": "frozen weights",
    "adapter": "trainable weights",
    "gradients": "gradients",
    "optimizer": "optimizer state",
    "activations": "activations",
    "logits": "logits + loss",
    "overhead": "transients + runtime",
}
LORA, QLORA = "LoRA", "QLoRA (nf4+dq)"


def bytes_per_trainable_param(estimate: MemoryEstimate) -> float:
    """Weights + gradients + optimizer state per trainable parameter (AdamW: 16 with fp32 master weights)."""
    saved = estimate.saved
    return (saved["adapter_bytes"] + saved["gradients_bytes"] + saved["optimizer_bytes"]) / estimate.trainable_params


def full_finetune_label(estimate: MemoryEstimate) -> str:
    """E.g. 'full fine-tune, fp32 master weights (16 B/param)' or 'full fine-tune, pure bf16 (8 B/param)'."""
    setup, per_param = estimate.setup, bytes_per_trainable_param(estimate)
    storage = "fp32" if setup["precision"] in ("fp32", "tf32") else setup["precision"]
    how = "fp32 master weights" if setup["master_weights"] or storage == "fp32" else f"pure {storage}"
    return f"full fine-tune, {how} ({per_param:.0f} B/param)"


def scenarios(model_or_config: Any, **settings: Any) -> dict[str, MemoryEstimate]:
    """Label -> estimate for every run worth comparing with the given settings (ValueError on bad ones)."""
    s = validate(**settings)
    out: dict[str, MemoryEstimate] = {}
    conventions = [True, False] if s.precision == "bf16" else [True]  # fp16 needs fp32 master weights
    for master in conventions:
        full = estimate_memory(model_or_config, **dict(settings, finetune="full", quantization="none",
                                                       master_weights=master))
        out[full_finetune_label(full)] = full
    mine = estimate_memory(model_or_config, **settings)
    lora = dict(settings, quantization="none", finetune="lora")
    out[LORA] = mine if (s.quantization == "none" and not s.full) else estimate_memory(model_or_config, **lora)
    qlora = dict(lora, quantization="nf4", double_quant=True)
    is_qlora = s.quantization == "nf4" and s.double_quant and not s.full
    out[QLORA] = mine if is_qlora else estimate_memory(model_or_config, **qlora)
    if s.quantization not in ("none", "nf4") or (s.quantization == "nf4" and not s.double_quant):
        out[f"yours ({s.quantization}{'' if s.double_quant else ', no dq'})"] = mine
    return out


def per_gpu(model_or_config: Any, counts: tuple[int, ...] = GPU_COUNTS, **settings: Any) -> dict[int, MemoryEstimate]:
    """Processes -> the peak of one device, with ``settings``' distributed strategy and per-process batch."""
    return {n: estimate_memory(model_or_config, **dict(settings, num_processes=n)) for n in counts}


def fused_head_saving(model_or_config: Any, **settings: Any) -> tuple[MemoryEstimate, MemoryEstimate]:
    """(plain head, fused head) estimates of the same run: the fused head never holds [tokens, vocab] logits."""
    plain = estimate_memory(model_or_config, **dict(settings, loss_kernel="plain"))
    fused = estimate_memory(model_or_config, **dict(settings, loss_kernel="fused"))
    return plain, fused
