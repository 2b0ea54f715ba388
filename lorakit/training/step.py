"""One optimizer step: the loss of a batch, then forward and backward over the micro-batches, clip, step.

Nothing here reads a device value: the loss is summed on the device (``loss_sum``) and read by the loop at
logging steps. The same functions run in every process of a multi-process run; ``Ranks`` supplies what differs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lorakit.training.data import IGNORE
from lorakit.training.distributed import Ranks
from lorakit.training.parts import Parts

__all__ = ["batch_loss", "optimizer_step"]


def batch_loss(parts: Parts, batch: dict, n_targets: int) -> torch.Tensor:
    """Summed cross-entropy of the batch's targets / n_targets (fp32, as transformers computes it)."""
    device = parts.accelerator.device
    inputs = {k: v.to(device, non_blocking=True) for k, v in batch["inputs"].items()}
    if parts.loss_head is not None:  # hidden states, then the fused head: the [tokens, vocab] logits never exist
        with parts.autocast():
            return parts.loss_head(parts.model, inputs, batch["keep"], batch["targets"]) / n_targets
    keep = batch["keep"].to(device, non_blocking=True)
    targets = batch["targets"].to(device, non_blocking=True)
    with parts.autocast():
        if parts.slices_logits:
            logits = parts.model(**inputs, logits_to_keep=keep, use_cache=False).logits
        else:  # a model without logits_to_keep: compute all, keep the needed ones
            logits = parts.model(**inputs, use_cache=False).logits[:, keep]
    flat = logits.float().flatten(0, 1)
    return F.cross_entropy(flat, targets.flatten(), ignore_index=IGNORE, reduction="sum") / n_targets


def optimizer_step(parts: Parts, ranks: Ranks, micro: list[dict], loss_sum: torch.Tensor,
                   max_grad_norm: float) -> int:
    """Forward/backward over the micro-batches, then one optimizer step; adds the loss to ``loss_sum`` (on the
    device) and returns the tokens of the global batch."""
    # Token-weighted mean over the whole accumulated (global) batch, what transformers' Trainer computes too.
    n_targets = max(1, sum(b["n_targets"] for b in micro))
    for i, batch in enumerate(micro):
        loss = batch_loss(parts, batch, n_targets)  # this rank's share of the mean
        # DDP and FSDP average gradients over ranks; x world makes that the sum of the shares.
        scaled = loss * ranks.world
        with ranks.gradient_sync(parts.model, last=i == len(micro) - 1):
            parts.accelerator.backward(parts.scaler.scale(scaled) if parts.scaler else scaled)
        loss_sum += loss.detach()
    if parts.scaler is not None:
        parts.scaler.unscale_(parts.optimizer)  # clip the true gradients, not the scaled ones
    if max_grad_norm:
        parts.accelerator.clip_grad_norm_(parts.params, max_grad_norm)
    if parts.scaler is not None:
        parts.scaler.step(parts.optimizer)  # skips the step when a gradient overflowed (one device read)
        parts.scaler.update()
    else:
        parts.optimizer.step()
    parts.scheduler.step()
    parts.optimizer.zero_grad(set_to_none=True)
    return sum(b["n_tokens"] for b in micro)
