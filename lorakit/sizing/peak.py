"""The moment of a training step that holds the most memory, and what is held at that moment.

``torch.cuda.max_memory_allocated()`` over a step is the largest sum of live tensors at any instant, not the
sum of everything a step ever allocates. These moments compete (weights, trainable weights and optimizer
states are held through all of them; gradients are freed by ``zero_grad(set_to_none=True)``, torch's default,
so the next step starts without them):

* **loss backward** (plain head): every layer's saved activations, the fp32 log-probabilities the loss kept,
  and the two [tokens, vocab] fp32 gradients log-softmax's backward holds at once. The logits themselves
  are gone: the loss kept its fp32 log-softmax, not its input, and a training loop drops the model output.
* **fused head** (``loss_kernel="fused"``): the head walks the tokens in chunks and computes the gradient of
  every hidden state in forward: held are that gradient, the decoder's output and its row copy, the head's
  fp32 parameter gradients, and one chunk's fp32 logits with their gradients.
* **final norm and decoder backward**: the activations still saved plus the transients of one norm's or one
  layer's backward (with gradient checkpointing: one recomputed layer on top of the kept layer inputs).
  With a real vocabulary these lose to the loss; with the fused head or a tiny vocabulary they win.
* **optimizer step**: every gradient plus the optimizer's temporaries (torch's foreach AdamW on CUDA copies
  the second moments once; the CPU's single-tensor AdamW one tensor at a time).
"""

from __future__ import annotations

from dataclasses import dataclass

from lorakit.choices import fused_chunk_tokens
from lorakit.sizing.activations import (
    FP32,
    INT64,
    ActivationSetup,
    StackBytes,
    layer_backward_bytes,
    norm_backward_bytes,
)
from lorakit.sizing.architecture import Architecture
from lorakit.sizing.recompute import layer_moments


@dataclass(frozen=True)
class Phase:
    """Bytes held at one moment of the step, beyond the weights and optimizer states held throughout."""

    name: str
    activations: int = 0  # saved for backward by the decoder stack
    logits: int = 0  # the head and loss: log-probabilities, labels; the fused head's gradients and chunk
    gradients: int = 0  # parameter gradients alive at that moment
    transient: int = 0  # temporaries of the operation running then

    @property
    def total(self) -> int:
        return self.activations + self.logits + self.gradients + self.transient


def loss_phase(arch: Architecture, s: ActivationSetup, stack: StackBytes) -> Phase:
    """Plain head: log-softmax's backward holds its saved output and two [tokens, vocab] fp32 gradients."""
    t, v = s.head_tokens, arch.vocab_size
    softcap = t * v * s.dtype_bytes if arch.model_type == "gemma2" else 0  # tanh keeps its output
    held = t * v * FP32 + softcap + t * INT64 + FP32  # log-probabilities, labels, the loss's weight sum
    return Phase("loss backward", activations=stack.kept, logits=held, transient=2 * t * v * FP32)


def fused_head_phase(arch: Architecture, s: ActivationSetup, stack: StackBytes, head_grad_elements: int) -> Phase:
    """Fused head, at the backward of one chunk inside its forward (lorakit.training.fused_head)."""
    t, h, v, dt = s.tokens, arch.hidden_size, arch.vocab_size, s.dtype_bytes
    n = s.head_tokens  # the targeted rows: their copy and their gradient; the decoder's output has all t
    rows = fused_chunk_tokens(n, h, v, s.device)
    softcap = rows * v * FP32 if arch.model_type == "gemma2" else 0  # the transform runs on fp32 logits
    chunk = 3 * rows * v * FP32 + softcap + rows * INT64  # log-probabilities, their gradient, the logits' gradient
    return Phase("fused head", activations=stack.kept, logits=t * h * dt + chunk,
                 gradients=head_grad_elements * FP32, transient=2 * n * h * dt)


def backward_phases(arch: Architecture, s: ActivationSetup, stack: StackBytes, head_grad_bytes: int,
                    layer_grad_bytes: int) -> list[Phase]:
    """The decoder's backward at its two ends (with checkpointing: a recomputed layer at each).

    At the last layer every activation is still kept and only the head has gradients; at the first layer the
    activations are nearly gone and every layer's gradients exist (a full fine-tune's peak can be there).
    """
    layers = max(arch.num_layers, 1)  # the layers above the first have their gradients
    below = head_grad_bytes + layer_grad_bytes * (layers - 1) // layers
    if s.gradient_checkpointing:  # every moment of the recomputed layer (lorakit.sizing.recompute)
        return [Phase(name, activations=outer + m.saves, gradients=grads + m.grads, transient=m.transient)
                for name, outer, grads in (("layer recompute", stack.kept - stack.tail, head_grad_bytes),
                                           ("layer recompute (first layer)", stack.bottom, below))
                for m in layer_moments(arch, s, stack)]
    transient = layer_backward_bytes(arch, s)
    return [Phase("decoder backward", activations=stack.kept - stack.tail, gradients=head_grad_bytes,
                  transient=transient),
            Phase("decoder backward (first layer)", activations=stack.bottom, gradients=below, transient=transient)]


def final_norm_phase(arch: Architecture, s: ActivationSetup, stack: StackBytes, head_grad_bytes: int) -> Phase:
    """The final norm's backward: the loss's tensors are gone, every activation is still saved."""
    return Phase("final norm backward", activations=stack.kept - stack.head_input, gradients=head_grad_bytes,
                 transient=norm_backward_bytes(arch, s))


def optimizer_phase(gradient_bytes: int, transient: int) -> Phase:
    """optimizer.step(): every gradient, and the optimizer's temporaries."""
    return Phase("optimizer step", gradients=gradient_bytes, transient=transient)


def optimizer_transient(state: str, device: str, tensors: list[tuple[int, int, int]]) -> int:
    """Temporaries of one optimizer step for trainable tensors (elements, bytes per element, how many).

    torch's AdamW takes its foreach path on CUDA: ``_foreach_sqrt`` of every second moment at once; on the CPU
    the single-tensor path holds a square root and a quotient of one tensor. bitsandbytes' 8-bit AdamW and
    SGD update in place.
    """
    if state != "adamw" or not tensors:
        return 0
    if device == "cuda":
        return sum(n * b * k for n, b, k in tensors)
    return 2 * max(n * b for n, b, _ in tensors)


def peak(phases: list[Phase]) -> Phase:
    """The phase holding the most (the first of equals)."""
    return max(phases, key=lambda p: p.total)
