"""What one checkpointed decoder layer holds while backward recomputes it and runs its backward.

transformers' ``GradientCheckpointingLayer`` calls ``torch.utils.checkpoint.checkpoint(partial(forward, self,
**kwargs), hidden_states)``: the layer's input is an argument, everything else (the attention mask, the position
ids, the rotary cos and sin) sits in the ``partial``. Both of torch's implementations keep the input and that
``partial`` of every layer until the layer's backward is done, so the mask and the position ids of the batch
live through the whole backward (without checkpointing they are gone once forward ends). The two differ in
what the recomputation holds:

* **reentrant** (``use_reentrant=True``, ``CheckpointFunction``): forward runs under ``no_grad``; backward reruns
  the layer with grad and calls ``torch.autograd.backward(outputs, args)``: the recomputed output (``outputs``)
  and the incoming gradient (``args``) stay referenced until the layer's backward returns, and so does the
  recomputed graph, with what its nodes keep outside saved tensors (bitsandbytes' 8-bit ``ctx.A``: the input).
* **non-reentrant** (``use_reentrant=False``: transformers' default and lorakit's trainer): forward builds the
  graph with placeholders for its saved tensors; the first unpack in backward reruns the layer until its last
  saved tensor exists, and each recomputed tensor is freed once its node has used it. What nodes keep outside
  saved tensors is the forward's: an 8-bit base keeps the inputs of every layer for the whole step.

Within the layer's backward the moments compete: the recomputed forward's end, the MLP's down projection
(its input's gradient arrives from the base and from the adapter and is summed), the norm between attention
and MLP, and the attention core. Each holds the layer's saves not yet released, the gradients flowing and the
running operation's temporaries; the layer's LoRA gradients accumulate meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass

from lorakit.sizing.activations import (
    AFTER_ATTENTION,
    DOWN_STAGES,
    FP32,
    MLP_STAGES,
    ActivationSetup,
    StackBytes,
    attention_call,
    attention_kernel,
    layer_roles,
    layer_stages,
    norm_backward_bytes,
    released_bytes,
)
from lorakit.sizing.architecture import Architecture, LinearLayer
from lorakit.sizing.attention import backward_bytes, released_before_core_backward


@dataclass(frozen=True)
class Moment:
    """Bytes one checkpointed layer holds at a moment of its recompute and backward (beyond what the stack keeps)."""

    name: str
    saves: int  # the recomputed layer's saved tensors still alive, what its nodes keep, its output (reentrant)
    grads: int  # its parameters' gradients computed by then
    transient: int  # the gradients flowing and the temporaries of the running operation


def layer_moments(arch: Architecture, s: ActivationSetup, stack: StackBytes) -> list[Moment]:
    """The moments of one checkpointed layer's recompute and backward (see the module docstring)."""
    t, dt = s.tokens, s.dtype_bytes
    stream = t * arch.hidden_size * s.stream_bytes  # the layer's output, and the gradient arriving for it
    stages = layer_stages(arch, s)
    reentrant = s.checkpoint_reentrant
    if reentrant:  # the recomputed graph keeps what its nodes pin; its output is referenced
        saves = stack.recomputed_layer + stream
    else:  # the recomputed layer's saves only: what the forward's nodes pin is in the stack
        saves = stack.recomputed_layer - sum(nbytes for kind, nbytes in stages if kind == "held")

    def alive(start: int) -> int:
        return saves - released_bytes(stages, start, pinned_freed=not reentrant)

    down = layer_roles(arch)["mlp_out"]
    inner = down[0].in_features
    mlp = 3 * t * inner * dt  # the down projection's input gradient from the base, from the adapter, their sum
    if s.quant.quantized:  # the dequantized weight lives while the base's input gradient is computed
        mlp = max(mlp, 2 * t * inner * dt + down[0].weight_params * dt)
    call, kernel = attention_call(arch, s), attention_kernel(arch, s)
    attention_saves = alive(AFTER_ATTENTION) - released_before_core_backward(call, kernel,
                                                                             rope=arch.model_type != "gpt2")
    # Gemma-2 ends the layer with a norm: its backward runs first, with every save of the layer still alive
    last_norm = [Moment("output norm backward", saves, 0, stream + norm_backward_bytes(arch, s))
                 ] if arch.model_type == "gemma2" else []
    return [
        *last_norm,
        Moment("recomputed forward", saves - (stream if reentrant else 0), 0, recompute_forward_bytes(arch, s)),
        Moment("down projection backward", alive(DOWN_STAGES), _lora_grads(arch, s, ("mlp_out",)), mlp + stream),
        Moment("norm backward", alive(MLP_STAGES), _lora_grads(arch, s, ("mlp_in", "mlp_out")),
               norm_backward_bytes(arch, s) + stream),
        Moment("attention backward", attention_saves, _lora_grads(arch, s, ("attn_out", "mlp_in", "mlp_out")),
               backward_bytes(call, kernel) + 2 * stream),  # the output's gradient, the residual's
    ]


def _lora_grads(arch: Architecture, s: ActivationSetup, roles: tuple[str, ...]) -> int:
    """Gradients of the trainable tensors of the given roles in one layer (LoRA's A: r x in and B: out x r)."""
    lins = [lin for role in roles for lin in layer_roles(arch)[role] if lin.suffix in s.adapted]
    if s.full_finetune:
        return sum(lin.weight_params + (lin.out_features if lin.bias else 0) for lin in lins) * s.adapter_bytes
    return sum(s.lora_ranks * (lin.in_features + lin.out_features) for lin in lins) * s.adapter_bytes


def recompute_forward_bytes(arch: Architecture, s: ActivationSetup) -> int:
    """Beyond its saves, what a layer recomputed in backward holds when its last projection runs forward.

    The gradient of the layer's output waits; the residual and the MLP's input are still referenced by the
    layer's frame (counted here only where no saved tensor is that same tensor: a norm that upcasts saves its
    fp32 copy, adapters that cast their input save their copies); the down projection returns its base output,
    the adapter's output and that scaled by alpha / r. An adapter that casts its input keeps the argument alive
    next to the cast (unless the base keeps it anyway); under autocast the cast in the adapters' dtype as well.
    """
    t, dt, h = s.tokens, s.dtype_bytes, arch.hidden_size
    roles = layer_roles(arch)
    down = roles["mlp_out"]
    adapted = not s.full_finetune and any(lin.suffix in s.adapted for lin in down)  # LoRA on the down projection
    stream = t * h * s.stream_bytes
    residual = 0 if _norm_saves_its_input(arch, s) else stream
    mlp_input = 0 if _keeps_the_input(roles["mlp_in"], s, from_stream=True) else stream
    outputs = (3 if adapted else 1) * t * h * dt
    cast = 0
    if adapted and s.adapters_cast_input and s.lora_dropout == 0:
        argument = 0 if s.keeps_input else t * down[0].in_features * dt
        cast = argument + (t * down[0].in_features * s.adapter_bytes if s.autocast else 0)
    return stream + residual + mlp_input + outputs + cast


def _norm_saves_its_input(arch: Architecture, s: ActivationSetup) -> bool:
    """Whether the norm before the MLP saves the residual itself: LayerNorm does, RMSNorm its fp32 upcast, which
    is the residual itself when the stream is fp32."""
    return arch.model_type == "gpt2" or s.stream_bytes == FP32


def _keeps_the_input(lins: list[LinearLayer], s: ActivationSetup, from_stream: bool = False) -> bool:
    """Whether the linear layers fed by one tensor keep that tensor itself (as ``layer_stages`` counts it)."""
    chosen = [lin for lin in lins if lin.suffix in s.adapted]
    if s.full_finetune:  # autocast casts an input wider than the compute dtype: copies are kept
        return bool(chosen) and not (from_stream and s.stream_bytes != s.dtype_bytes)
    if s.keeps_input and lins:  # an 8-bit base keeps its input ("held" or "pinned")
        return True
    return bool(chosen) and s.lora_dropout == 0 and not s.adapters_cast_input
