"""The "auto" settings of a run, decided once before the model loads, each with the reason in words.

A decision is a ``Choice(value, reason)``; the run reports them at its start (``StartInfo["choices"]``), so
the panel, the CLI and summary.json say what was chosen and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lorakit.training.config import TrainConfig
from lorakit.units import GIB


@dataclass(frozen=True)
class Choice:
    """A resolved setting and why it has that value."""

    value: Any
    reason: str


def free_memory_bytes(device: str) -> int | None:
    """Memory a run may still take: free GPU memory, or the host's available memory; None if unknown."""
    if device == "cuda":
        import torch

        return int(torch.cuda.mem_get_info()[0])
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return None


def decide_checkpointing(config: TrainConfig, device: str, model_config: Any) -> Choice:
    """gradient_checkpointing: as set, or for "auto" on for quantized bases and for runs that would not fit.

    Checkpointing keeps only each decoder layer's input and recomputes the layer in backward: about one
    extra forward pass of time for most of the activation memory.
    """
    if config.gradient_checkpointing != "auto":
        on = bool(config.gradient_checkpointing)
        return Choice(on, "set in the config")
    if config.quant.quantized:
        return Choice(True, f"auto: on for a quantized base ({config.quantization}), as the QLoRA recipe does")
    from lorakit.sizing import estimate_memory

    try:
        settings = dict(config.sizing_kwargs(device), gradient_checkpointing=False)
        need = estimate_memory(model_config, **settings).total_bytes
    except ValueError as exc:  # a setting the planner cannot model: keep the faster choice
        return Choice(False, f"auto: off (no memory prediction: {exc})")
    free = free_memory_bytes(device)
    gib = GIB
    if free is not None and need > free:
        return Choice(True, f"auto: on, the run needs about {need / gib:.1f} GiB without it and "
                            f"{free / gib:.1f} GiB is free")
    room = f" of {free / gib:.1f} GiB free" if free is not None else ""
    return Choice(False, f"auto: off, the run fits without it ({need / gib:.1f} GiB{room})")


def decide_loss_kernel(config: TrainConfig, device: str, model: Any, slices_logits: bool,
                       sharded: bool = False) -> Choice:
    """loss_kernel: "plain" as set; "fused" or "auto": the fused head wherever this model and setup allow it.

    Fused means liger-kernel's fused linear cross-entropy on CUDA when it is installed and the head is a plain
    Linear, else lorakit's chunked head in pure torch; either way the [tokens, vocab] logits never exist at
    once. ``model`` is the adapted model on its device: a few tokens check that its decoder and head give its
    own logits. "fused" where that fails raises ValueError; "auto" falls back to the plain head.
    """
    if config.loss_kernel == "plain":
        return Choice("plain", "set in the config")
    from lorakit.training import fused_head

    if not slices_logits:
        why_not = "the model's forward takes no logits_to_keep, so it would compute every logit anyway"
    elif sharded:
        why_not = "the fused head is not verified with sharded parameters (FSDP, DeepSpeed)"
    else:
        why_not = fused_head.mismatch(model, device)
    if why_not is not None:
        if config.loss_kernel == "fused":
            raise ValueError(f"loss_kernel='fused' cannot run here: {why_not}; use 'auto' or 'plain'")
        return Choice("plain", f"auto: plain, {why_not}")
    _, how = fused_head.choose_backend(model, device)
    said = "set in the config" if config.loss_kernel == "fused" else "auto: fused wherever supported"
    return Choice("fused", f"{said}: {how}")
