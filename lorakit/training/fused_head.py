"""The fused output head and loss: cross-entropy over the vocabulary without the [tokens, vocab] logits.

The plain head computes ``logits = lm_head(hidden)`` for every targeted token, upcasts them to fp32 and keeps
the log-softmax for backward: tokens x vocab x 4 bytes, the largest activation of a small model. The fused
head walks the tokens in chunks (``lorakit.choices.fused_chunk_tokens`` rows at a time), and for each chunk
computes the logits (through the real head module, so a LoRA-adapted or modules_to_save head, a bias and a
final-logit softcap all count), the summed cross-entropy, and at once the gradients of the chunk's hidden
states and of every trainable head parameter. Backward only scales those stored gradients: what stays in
memory is one gradient per hidden state, not the logits.

Two implementations of one interface:

* ``torch``: the chunked head in pure torch; every device.
* ``liger``: liger-kernel's fused linear cross-entropy (Triton, CUDA only; ``pip install 'lorakit[gpu]'``)
  for a plain Linear head, with liger's RMSNorm / SwiGLU / GeGLU / RoPE kernels in the decoder blocks unless
  they are compiled (``lorakit.training.liger``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lorakit.choices import fused_chunk_tokens
from lorakit.training.data import IGNORE
from lorakit.training.liger import (
    LIGER_HINT,
    apply_liger_kernels,
    base_model,
    liger_cannot,
    liger_head_loss,
    liger_missing_reason,
)
from lorakit.training.logits import LogitTransform, logit_transform

__all__ = ["FusedHead", "LogitTransform", "choose_backend", "chunked_head_loss", "logit_transform",
           "make_fused_head", "mismatch"]



# ---- the pure-torch chunked head ----------------------------------------------------------------------


def _chunk_loss(head, transform: LogitTransform, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of one chunk, its logits in fp32 as the plain head's ``logits.float()``."""
    logits = transform(head(hidden).float())
    return F.cross_entropy(logits, targets, ignore_index=IGNORE, reduction="sum")


class _ChunkedHeadLoss(torch.autograd.Function):
    """Forward: the loss and, chunk by chunk, the gradients; backward: those gradients x grad_output."""

    @staticmethod
    def forward(ctx, hidden, targets, head, transform, rows, *params):
        grad_hidden = torch.empty_like(hidden) if hidden.requires_grad else None
        grad_params = [torch.zeros_like(p, dtype=torch.float32) for p in params]
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], rows):
            chunk = hidden[start : start + rows].detach().requires_grad_(grad_hidden is not None)
            with torch.enable_grad():  # a Function's forward runs without grad; this chunk's graph needs it
                loss = _chunk_loss(head, transform, chunk, targets[start : start + rows])
            wrt = ([chunk] if grad_hidden is not None else []) + list(params)
            grads = torch.autograd.grad(loss, wrt, allow_unused=True)
            if grad_hidden is not None:
                grad_hidden[start : start + rows] = grads[0]
                grads = grads[1:]
            for acc, grad in zip(grad_params, grads, strict=True):
                if grad is not None:
                    acc += grad
            total += loss.detach()
        ctx.has_hidden = grad_hidden is not None
        ctx.save_for_backward(*([grad_hidden] if ctx.has_hidden else []), *grad_params)
        return total

    @staticmethod
    def backward(ctx, grad_output):
        saved = list(ctx.saved_tensors)
        grad_hidden = saved.pop(0) * grad_output if ctx.has_hidden else None
        return (grad_hidden, None, None, None, None, *(g * grad_output for g in saved))


def chunked_head_loss(hidden: torch.Tensor, targets: torch.Tensor, head: torch.nn.Module,
                      transform: LogitTransform | None = None, rows: int | None = None) -> torch.Tensor:
    """Summed fp32 cross-entropy of ``transform(head(hidden))`` against targets, chunk by chunk.

    hidden: [tokens, hidden_size]; targets: [tokens] (IGNORE = no loss). ``rows`` per chunk defaults to
    ``fused_chunk_tokens``. Gradients reach ``hidden`` and every parameter of ``head`` that requires grad.
    """
    transform = transform or LogitTransform()
    tokens, width = hidden.shape
    rows = rows or fused_chunk_tokens(tokens, width, _vocab_size(head), hidden.device.type)
    params = [p for p in head.parameters() if p.requires_grad]
    if not torch.is_grad_enabled() or not (hidden.requires_grad or params):
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, tokens, rows):
            total += _chunk_loss(head, transform, hidden[start : start + rows], targets[start : start + rows])
        return total
    return _ChunkedHeadLoss.apply(hidden, targets, head, transform, rows, *params)


def _vocab_size(head: torch.nn.Module) -> int:
    """Rows of the head's weight (a Linear, a LoRA layer and a modules_to_save wrapper all expose ``weight``)."""
    return int(head.weight.shape[0])


# ---- the run's head -----------------------------------------------------------------------------------


def _target_rows(keep: torch.Tensor, targets: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows of the flattened [batch x seq] hidden states that have a target, those targets).

    keep: [kept positions], targets: [batch, kept positions] (IGNORE = none), both the batch's CPU tensors,
    so finding the targeted rows reads nothing from the device.
    """
    row, column = targets.ne(IGNORE).nonzero(as_tuple=True)
    return row * seq_len + keep[column], targets[row, column]


class FusedHead:
    """The output head and loss of a run: decoder to hidden states, then the fused head on the targeted rows.

    Built once from the (peft) model. ``head(model, inputs, keep, targets)`` returns the summed fp32
    cross-entropy, with ``model`` as the loop calls it (perhaps DDP-wrapped: its forward must run, for the
    gradient sync) and ``keep`` / ``targets`` as the batch holds them on the CPU.
    """

    def __init__(self, model, backend: str = "torch", rows: int | None = None):
        if backend not in ("torch", "liger"):
            raise ValueError(f"backend={backend!r}; choose 'torch' or 'liger'")
        base = base_model(model)
        self.decoder = base.get_decoder()
        self.head = base.get_output_embeddings()
        if self.decoder is base or self.head is None:
            raise ValueError(f"{type(base).__name__} has no separate decoder and output head")
        self.transform = logit_transform(base.config)
        self.backend, self.rows = backend, rows  # rows per chunk of the torch head; None: fused_chunk_tokens

    def __call__(self, model, inputs: dict, keep: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        hidden = self.hidden_states(model, inputs)
        rows, wanted = _target_rows(keep, targets, hidden.shape[1])
        if rows.numel() == 0:
            return hidden.sum() * 0.0  # no target in this batch: a zero that still reaches the graph
        rows = hidden.flatten(0, 1).index_select(0, rows.to(hidden.device, non_blocking=True))
        wanted = wanted.to(hidden.device, non_blocking=True)
        if self.backend == "liger":
            return liger_head_loss(rows, wanted, self.head, self.transform)
        return chunked_head_loss(rows, wanted, self.head, self.transform, self.rows)

    def hidden_states(self, model, inputs: dict) -> torch.Tensor:
        """The decoder's output (the head's input), [batch, seq, hidden], from the model's own forward.

        ``logits_to_keep`` of no positions leaves the model's head nothing to compute; a hook keeps the decoder's
        output. Going through the top-level forward keeps every wrapper in the loop (peft, DDP's gradient sync).
        """
        captured = []
        handle = self.decoder.register_forward_hook(lambda module, args, out: captured.append(out[0]))
        nothing = torch.empty(0, dtype=torch.long, device=inputs["input_ids"].device)
        try:
            model(**inputs, logits_to_keep=nothing, use_cache=False)
        finally:
            handle.remove()
        return captured[-1]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits as the plain head computes them, from hidden states (fp32, transform applied)."""
        return self.transform(self.head(hidden).float())


def mismatch(model, device: str, tokens: int = 8) -> str | None:
    """None when decoder + head + transform reproduce the model's own logits on a few tokens; else why not.

    An architecture that does more between its decoder and the softmax than ``LogitTransform`` knows
    would be trained on a different loss by the fused head; this finds it before the first step.
    """
    base = base_model(model)
    try:
        fused = FusedHead(model)
    except (AttributeError, NotImplementedError, ValueError) as exc:
        return f"lorakit cannot find its decoder and output head ({exc})"
    vocab = _vocab_size(fused.head)
    ids = ((torch.arange(tokens) * 7919 + 3) % vocab).unsqueeze(0).to(device)
    was_training = base.training
    base.eval()  # no dropout: both sides must see the same numbers
    try:
        with torch.no_grad():
            captured = []
            handle = fused.decoder.register_forward_hook(lambda module, args, out: captured.append(out[0]))
            try:
                expected = base(input_ids=ids, use_cache=False).logits.float()
            finally:
                handle.remove()
            got = fused.logits(captured[-1])
    finally:
        base.train(was_training)
    gap = float((got - expected).abs().max())
    if not math.isfinite(gap) or gap > 2e-2 * float(expected.abs().max()) + 1e-5:
        return (f"its logits are not the output head applied to the decoder's output (max difference {gap:.3g}): "
                "the architecture does something lorakit's fused head does not know")
    return None


def choose_backend(model, device: str) -> tuple[str, str]:
    """("liger" or "torch", what runs in words) for this model's fused head on this device."""
    torch_head = "lorakit's chunked head in pure torch"
    if device != "cuda":
        return "torch", f"{torch_head} (liger-kernel is CUDA-only)"
    if liger_missing_reason() is not None:
        return "torch", f"{torch_head} (liger-kernel is not installed: {LIGER_HINT})"
    fused = FusedHead(model)
    why_not = liger_cannot(fused.head, fused.transform)
    if why_not is not None:
        return "torch", f"{torch_head} ({why_not})"
    return "liger", "liger-kernel's fused linear cross-entropy"


def make_fused_head(model, device: str, compile_blocks: bool = False) -> tuple[FusedHead, list[str]]:
    """The run's fused head, and notes for the run's warnings (the fallback it took, once).

    With liger, its kernels inside the decoder blocks are applied too, unless the blocks will be compiled.
    """
    backend, _ = choose_backend(model, device)
    notes = []
    if device == "cuda" and backend == "torch" and liger_missing_reason() is not None:
        notes.append("liger-kernel is missing, so the fused loss runs as lorakit's pure-torch chunked head "
                     f"(slower on a GPU); {LIGER_HINT}")
    if backend == "liger" and not compile_blocks:
        apply_liger_kernels(model, device)
    return FusedHead(model, backend), notes
