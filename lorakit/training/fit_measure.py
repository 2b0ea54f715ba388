"""Measuring a run's training step before the run: its worst batch, one step's peak and its components, the
memory the run may use, and the run's state put back afterwards.

The step measured is the trainer's own (``step.batch_loss``: the run's head, loss, autocast and batch layout),
on the run's own model and optimizer, then the trainable weights, the optimizer state and the random number
generators are put back as they were, so the run that follows takes exactly the steps it would have taken.
Peaks come from ``lorakit.sizing.measure.measure_step_peak``: ``torch.cuda.max_memory_allocated`` on a GPU,
lorakit's tensor-by-tensor tracker on the CPU (not the process's RSS, which holds the interpreter and libraries).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from lorakit.sizing.measure import measure_step_peak, unique_bytes, weight_tensors
from lorakit.training.data import Batches
from lorakit.training.step import batch_loss

__all__ = ["Measured", "StepMeter", "WorstBatch", "memory_limit", "preserved", "worst_batch", "worst_first"]


@dataclass(frozen=True)
class WorstBatch:
    """The batch of ``rows`` examples that holds the most memory: the longest rows padded together, or the
    packed rows with the most label tokens. ``batch`` is what ``Batches.collate`` returns for it."""

    batch: dict
    rows: int
    width: int  # tokens per row as the model sees them (a padding-free batch: all of them in one row)
    tokens: int  # real tokens (no padding)
    targets: int  # label tokens the loss is taken on
    layout: str  # "padded", "packed" or "padding-free"

    @property
    def mask(self) -> str:
        """What the batch asks of attention, as the planner names it (``lorakit.choices.ATTENTION_MASKS``)."""
        inputs = self.batch["inputs"]
        positions = inputs.get("position_ids")
        if positions is not None and not bool((positions[:, 1:] != 0).all()):
            return "packed"  # a row restarts its positions: several examples in one row
        # one example per row: transformers builds the plain causal mask from its position ids
        mask = inputs.get("attention_mask")
        return "causal" if mask is None or bool(mask.all()) else "padded"

    @property
    def model_rows(self) -> int:
        """Rows as the model sees them: a padding-free batch is one row holding every example."""
        return int(self.batch["inputs"]["input_ids"].shape[0])

    def logit_tokens(self, loss_kernel: str) -> int:
        """Tokens whose logits the head computes: the fused head only the targeted ones; the plain head every row
        at each position that is a target in some row."""
        if loss_kernel == "fused":
            return max(1, self.targets)
        ids = self.batch["inputs"]["input_ids"]
        return max(1, ids.shape[0] * self.batch["keep"].numel())


def worst_first(batches: Batches) -> list[int]:
    """Row indices, the rows that make a batch largest first: longest, then most label tokens."""
    counts = [batches.count([i]) for i in range(len(batches.rows))]
    return sorted(range(len(counts)), key=lambda i: (-counts[i][0], -counts[i][1], i))


def worst_batch(batches: Batches, rows: int, order: list[int]) -> WorstBatch:
    """The worst batch of ``rows`` rows (``order``: ``worst_first(batches)``)."""
    chosen = order[: min(rows, len(order))]
    batch = batches.collate(chosen)
    layout = {"pad": "padded", "pack": "packed", "flat": "padding-free"}[batches.mode]
    return WorstBatch(batch, len(chosen), int(batch["inputs"]["input_ids"].shape[1]), batch["n_tokens"],
                      batch["n_targets"], layout)


@dataclass(frozen=True)
class Measured:
    """One measured step: the peak, and bytes by component (None where it cannot be measured)."""

    peak_bytes: int
    components: dict[str, int | None]


class StepMeter:
    """Takes the trainer's step on a batch, with the component counts and, when asked, the peak."""

    def __init__(self, parts: Any) -> None:
        self.parts = parts
        self.model = parts.model
        self.optimizer = getattr(parts.optimizer, "optimizer", parts.optimizer)  # accelerate's wrapper, or not
        self.head = self.model.get_output_embeddings()
        self.checkpointing = bool(parts.choices["gradient_checkpointing"].value)

    def step(self, worst: WorstBatch, counts: dict[str, int | None]) -> None:
        """Forward, backward, optimizer step, zero_grad; fills ``counts`` with the saved activations and the
        gradients (bytes)."""
        params = {p.untyped_storage().data_ptr() for p in self.model.parameters()}
        saved, phase = [], {"decoder": True}

        def pack(t: torch.Tensor) -> torch.Tensor:
            if phase["decoder"] and t.untyped_storage().data_ptr() not in params:
                saved.append(t)
            return t

        def after_head(*_: Any) -> None:
            phase["decoder"] = False

        def before_step(optimizer: Any, *_: Any) -> None:
            counts["gradients"] = unique_bytes([p.grad for g in optimizer.param_groups for p in g["params"]
                                                if p.grad is not None])

        hooks = [self.head.register_forward_hook(after_head), self.optimizer.register_step_pre_hook(before_step)]
        try:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                loss = batch_loss(self.parts, worst.batch, max(1, worst.batch["n_targets"]))
            # with non-reentrant checkpointing the layers' tensors never pass through these hooks
            counts["activations"] = None if self.checkpointing else unique_bytes(saved)
            saved.clear()
            loss.backward()
            self.optimizer.step()
        finally:
            for hook in hooks:
                hook.remove()
        self.optimizer.zero_grad(set_to_none=True)

    def measure(self, worst: WorstBatch) -> Measured:
        """The peak of one step on ``worst`` and its components (call after one warm-up step)."""
        counts: dict[str, int | None] = {}
        peak = measure_step_peak(self.model, self.optimizer, lambda: self.step(worst, counts),
                                 known=_batch_tensors(worst.batch))
        counts["weights"] = unique_bytes(weight_tensors(self.model, trainable=False))
        counts["adapter"] = unique_bytes(weight_tensors(self.model, trainable=True))
        counts["optimizer"] = unique_bytes([v for s in self.optimizer.state.values() for v in s.values()
                                            if torch.is_tensor(v)])
        return Measured(peak, counts)


def _batch_tensors(batch: dict) -> list[torch.Tensor]:
    out = []
    for value in batch.values():
        out += list(value.values()) if isinstance(value, dict) else [value] if torch.is_tensor(value) else []
    return out


@contextlib.contextmanager
def preserved(parts: Any):
    """Train mode for the block (as the run's steps take it: checkpointing and dropout are on only then); put the
    trainable weights, the optimizer state, the random generators and the model's mode back after it."""
    was_training = parts.model.training
    parts.model.train()
    params = [p for p in parts.model.parameters() if p.requires_grad]
    weights = [p.detach().to("cpu", copy=True) for p in params]  # host copies: no device memory in the peak
    optimizer = getattr(parts.optimizer, "optimizer", parts.optimizer)
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if parts.device == "cuda" else None
    try:
        yield
    finally:
        with torch.no_grad():
            for param, saved in zip(params, weights, strict=True):
                param.copy_(saved)
        optimizer.zero_grad(set_to_none=True)
        optimizer.state.clear()  # the first real step creates it again, as it would have
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        parts.model.train(was_training)


def memory_limit(config: Any, parts: Any) -> tuple[int, str]:
    """(bytes the run's step may hold at its peak, where that number comes from).

    ``memory_limit_bytes`` when set; on a GPU the free memory (``torch.cuda.mem_get_info``) plus what this
    process's allocator already holds (the loaded model); on the CPU the host's available memory plus the model's
    weights, which are already resident.
    """
    if config.memory_limit_bytes is not None:
        return int(config.memory_limit_bytes), "memory_limit_bytes"
    if parts.device == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return int(free + torch.cuda.memory_reserved()), "free GPU memory"
    from lorakit.training.auto import free_memory_bytes

    held = unique_bytes(weight_tensors(parts.model, False) + weight_tensors(parts.model, True))
    available = free_memory_bytes("cpu")
    if available is None:
        return 2**62, "no limit known (psutil missing)"
    return int(available + held), "available host memory"
