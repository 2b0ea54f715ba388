"""Bytes a decoder stack keeps for the backward pass, written per layer from the architecture.

Each term below is a tensor we saw saved (``torch.autograd.graph.saved_tensors_hooks``) by a transformers
decoder layer under peft LoRA, deduplicated by storage; parameters are not activations. T = batch x seq.
Measured on transformers 5 / peft 0.21 / torch 2.13 on the CPU (tests and benchmarks/memory_planner.py keep
it honest); the attention core follows the kernel torch dispatches to (``lorakit.sizing.attention``).
Two mechanisms of quantized bases, read from the quantization record (``lorakit.quantization``):

* ``adapters_share_input``: some backends' LoRA layers skip casting the input to the adapters' dtype under
  CUDA autocast: there the adapters of a quantized layer share its input, elsewhere each adapter keeps its own
  cast copy, as on a 16-bit base.
* ``keeps_input``: some base layers keep their input on the autograd context even though backward does not
  use it: memory that saved_tensors_hooks do not see (stage kind "held"). ``copies_input``: others save a copy
  of their input of their own (measured on adapted layers; counted with the adapters' stage). Other quantized
  layers keep only their stored weight; its dequantized copy is a transient.

DoRA's extra saves are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

from lorakit.quantization import QUANTIZATIONS, Quantization
from lorakit.sizing.architecture import Architecture, LinearLayer, per_architecture
from lorakit.sizing.attention import AttentionCall, KernelChoice, backward_bytes, choose_kernel, saved_bytes

FP32 = 4
INT64 = 8


@dataclass(frozen=True)
class ActivationSetup:
    """What decides the saved tensors: shapes, dtypes, adapters, kernels and the base's storage."""

    batch_size: int
    seq_len: int
    dtype: str  # activations (compute dtype): "fp32", "fp16" or "bf16"
    adapter_bytes: int  # LoRA weights; a different dtype makes each adapter save its own cast input
    adapted: frozenset[str]  # suffixes of adapted linear layers in a decoder layer
    lora_ranks: int  # r
    attention: str  # "sdpa" or "eager"
    gradient_checkpointing: bool
    full_finetune: bool = False
    lora_dropout: float = 0.0
    device: str = "cuda"  # dropout keeps a bool mask on CUDA, a mask in the activation dtype on the CPU
    autocast: bool = False  # mixed precision: adapters' matmuls run in the activation dtype
    adapter_weight_elements: int = 0  # LoRA weights, which autocast copies to the activation dtype
    quantization: str = "none"  # the base's linear layers: a lorakit.quantization.QUANTIZATIONS name
    mask: str = "causal"  # what the batch asks of attention (lorakit.choices.ATTENTION_MASKS)
    compute_capability: tuple[int, int] | None = None  # the GPU's; None: Ampere or newer
    fused_head: bool = False  # the loss computes the head's gradients in forward: the head keeps no input
    checkpoint_reentrant: bool = False  # torch.utils.checkpoint's use_reentrant (lorakit.sizing.recompute)
    logit_tokens: int | None = None  # tokens whose logits the head computes; None: every token (batch x seq)

    @property
    def tokens(self) -> int:
        """T = batch x sequence."""
        return self.batch_size * self.seq_len

    @property
    def head_tokens(self) -> int:
        """Tokens whose logits the head computes: all T, or the trainer's targeted positions only."""
        return self.tokens if self.logit_tokens is None else min(self.logit_tokens, self.tokens)

    @property
    def dtype_bytes(self) -> int:
        return FP32 if self.dtype == "fp32" else 2

    @property
    def stream_bytes(self) -> int:
        """Bytes per element of the residual stream. Autocast over fp32 weights (a full fine-tune with fp32
        master weights) leaves it in fp32: the embedding's output is fp32, each residual add promotes to it,
        and the norms' outputs and rope's cos/sin follow; only the matmuls' outputs are in the compute dtype."""
        fp32_weights = self.full_finetune and self.adapter_bytes == FP32
        return FP32 if (fp32_weights and self.autocast) else self.dtype_bytes

    @property
    def mask_bytes(self) -> int:
        """Bytes per element of a saved dropout mask."""
        return 1 if self.device == "cuda" else self.dtype_bytes

    @property
    def adapters_cast_input(self) -> bool:
        """Whether each adapter casts its input to its own dtype (and keeps that copy)."""
        if self.adapter_bytes == self.dtype_bytes:
            return False
        return not (self.quant.adapters_share_input and self.device == "cuda" and self.autocast)

    @property
    def quant(self) -> Quantization:
        """The base's quantization record."""
        return QUANTIZATIONS[self.quantization]

    @property
    def keeps_input(self) -> bool:
        """Whether each quantized base layer keeps its input outside autograd's saved tensors."""
        return self.quant.keeps_input


ROLES = {  # role of each linear layer in a decoder layer, by the end of its name
    "attn_in": ("q_proj", "k_proj", "v_proj", "qkv_proj", "c_attn"),
    "attn_out": ("o_proj", "attn.c_proj"),
    "mlp_in": ("gate_proj", "up_proj", "gate_up_proj", "c_fc"),
    "mlp_out": ("down_proj", "mlp.c_proj"),
}


@per_architecture
def layer_roles(arch: Architecture) -> dict[str, list[LinearLayer]]:
    """Linear layers of the first decoder layer grouped by role (their shapes repeat in every layer)."""
    first = [lin for lin in arch.linears if ".0." in lin.name]
    return {role: [lin for lin in first if any(lin.name.endswith("." + e) for e in ends)]
            for role, ends in ROLES.items()}


def attention_call(arch: Architecture, s: ActivationSetup) -> AttentionCall:
    """The arguments the attention kernel of every layer receives."""
    return AttentionCall(attention=s.attention, device=s.device, dtype=s.dtype, batch=s.batch_size, seq=s.seq_len,
                         heads=arch.num_heads, kv_heads=arch.num_kv_heads, head_dim=arch.head_dim, mask=s.mask,
                         dropout=arch.attention_dropout, compute_capability=s.compute_capability)


def attention_kernel(arch: Architecture, s: ActivationSetup) -> KernelChoice:
    """The kernel torch dispatches to for this model and setup."""
    return choose_kernel(attention_call(arch, s))


def _norm_bytes(arch: Architecture, s: ActivationSetup) -> int:
    """One norm: RMSNorm saves its input upcast to fp32 and 1/rms; LayerNorm its input, mean and rstd."""
    t, h = s.tokens, arch.hidden_size
    if arch.model_type == "gpt2":
        saved = t * h * s.dtype_bytes + 2 * t * FP32
    else:
        saved = t * h * FP32 + t * FP32
    if arch.model_type == "gemma2":
        saved += h * FP32  # Gemma scales by (1 + weight), a new tensor the multiply keeps
    if s.full_finetune:  # the weight's gradient needs the normalized input as well, in the stream's dtype
        saved += t * h * (s.dtype_bytes if arch.model_type == "gpt2" else s.stream_bytes)
    return saved


def _lora_inputs(lins: list[LinearLayer], s: ActivationSetup, input_saved_anyway: bool = False,
                 from_stream: bool = False) -> list[tuple[str, int]]:
    """What the linear layers fed by one tensor keep, two stages: ("held", an 8-bit base's own) or ("pinned", the
    input adapters share and an 8-bit base keeps, which outlives their backward), then ("lora", adapters).

    ``from_stream``: the tensor is a norm's output, in the residual stream's dtype (``stream_bytes``).
    """
    chosen = [lin for lin in lins if lin.suffix in s.adapted]
    t, dt = s.tokens, s.dtype_bytes
    width = lins[0].in_features if lins else 0
    if s.full_finetune:  # the weight's gradient needs the input
        # autocast casts an fp32 input for each matmul on its own (it caches only casts of weights): q, k and
        # v each keep their own copy
        copies = len(chosen) if (from_stream and s.stream_bytes != dt) else 1
        return [("held", 0), ("lora", copies * t * width * dt if (chosen and not input_saved_anyway) else 0)]
    adapters_share = bool(chosen) and s.lora_dropout == 0 and not s.adapters_cast_input
    # an 8-bit base keeps its input unless that same tensor is kept anyway
    held = t * width * dt if (s.keeps_input and lins and not adapters_share and not input_saved_anyway) else 0
    if not chosen:
        return [("held", held), ("lora", 0)]
    # the copy an adapter keeps: in the adapter dtype, or the activation dtype once autocast cast it back
    copy_bytes = dt if s.autocast else s.adapter_bytes
    if not s.adapters_cast_input:
        copy_bytes = dt
    base_copies = sum(t * lin.in_features * dt for lin in chosen) if s.quant.copies_input else 0
    lora_b = base_copies + sum(t * s.lora_ranks * copy_bytes for _ in chosen)
    if s.lora_dropout > 0:  # each adapter drops out its own copy and keeps the mask
        mask = 1 if s.device == "cuda" else (s.adapter_bytes if s.adapters_cast_input else dt)
        return [("held", held), ("lora", lora_b + sum(t * lin.in_features * (copy_bytes + mask) for lin in chosen))]
    if s.adapters_cast_input:  # each adapter casts the input to its own dtype and saves the copy
        return [("held", held), ("lora", lora_b + sum(t * lin.in_features * copy_bytes for lin in chosen))]
    shared = 0 if input_saved_anyway else t * width * dt
    if s.keeps_input:  # the base layer keeps the tensor the adapters share: it outlives their backward
        return [("pinned", shared), ("lora", lora_b)]
    return [("held", 0), ("lora", lora_b + shared)]  # one input tensor, shared by the adapters it feeds


def _mlp_bytes(arch: Architecture, s: ActivationSetup, inner: int) -> int:
    """Gated MLP keeps act(gate)'s input, act's output and up; GPT-2's tanh-GELU keeps four tensors."""
    per_element = 4 if arch.model_type == "gpt2" else 3
    return per_element * s.tokens * inner * s.dtype_bytes


@per_architecture
def layer_stages(arch: Architecture, s: ActivationSetup) -> list[tuple[str, int]]:
    """Kept bytes of one decoder layer, stage by stage in forward order ("op", "held", "pinned", "lora")."""
    roles = layer_roles(arch)
    kernel = attention_kernel(arch, s)
    # Gemma-2 also normalizes the attention and MLP outputs (four norms per layer)
    extra_norm = _norm_bytes(arch, s) if arch.model_type == "gemma2" else 0
    # GPT-2 drops out the attention and MLP outputs before the residual add: one mask each
    resid_drop = s.tokens * arch.hidden_size * s.mask_bytes if arch.residual_dropout > 0 else 0
    # measured: after separate q/k/v projections, o_proj's input is a view of a fused kernel's output; after
    # a fused qkv_proj (Phi-3) or the math/eager path's transpose it is a copy
    o_input_kept = _o_input_kept(arch, kernel)
    attention = saved_bytes(attention_call(arch, s), kernel, rope=arch.model_type != "gpt2",
                            softcap=arch.model_type == "gemma2")
    return [
        ("op", _norm_bytes(arch, s)),
        *_lora_inputs(roles["attn_in"], s, from_stream=True),
        ("op", attention),
        *_lora_inputs(roles["attn_out"], s, input_saved_anyway=o_input_kept),
        ("op", resid_drop + extra_norm + _norm_bytes(arch, s)),
        *_lora_inputs(roles["mlp_in"], s, from_stream=True),
        ("op", _mlp_bytes(arch, s, roles["mlp_out"][0].in_features)),
        *_lora_inputs(roles["mlp_out"], s),
        ("op", extra_norm + resid_drop),
    ]


def _o_input_kept(arch: Architecture, kernel: KernelChoice) -> bool:
    """Whether the attention core keeps o_proj's input (a view of a fused kernel's output) among its saves."""
    return kernel.fused and not any(lin.suffix == "qkv_proj" for lin in layer_roles(arch)["attn_in"])


MLP_STAGES = 7  # layer_stages()[7:] are the MLP's: saved after the second norm, released before its backward
AFTER_ATTENTION = 4  # layer_stages()[4:]: saved after the attention core, released before its backward
DOWN_STAGES = 10  # layer_stages()[10:]: the down projection's and what follows it, released before its base's


def layer_bytes(arch: Architecture, s: ActivationSetup, input_needs_grad: bool = True, held: bool = True) -> int:
    """Kept bytes of one decoder layer; without grad on its input, ops before the first adapter keep nothing.

    ``held=False`` leaves out what bitsandbytes keeps outside autograd (what saved_tensors_hooks count).
    """
    total, grad_flows = 0, input_needs_grad or s.full_finetune
    for kind, nbytes in layer_stages(arch, s):
        if kind in ("pinned", "lora") and nbytes:
            grad_flows = True
        if grad_flows and (held or kind != "held"):
            total += nbytes
    return total


@dataclass(frozen=True)
class StackBytes:
    """The decoder stack's activations as the peak model needs them (bytes)."""

    kept: int  # held from the end of forward into backward (with checkpointing: each layer's input)
    tail: int  # the final norm's and the head's saves, freed before the decoder's backward starts
    head_input: int  # the head's saved input (a trainable or adapted head), freed once the head's backward ran
    bottom: int  # still kept when backward reaches the first decoder layer (its saves or its input, the rope)
    recomputed_layer: int  # one layer's activations rebuilt in backward under checkpointing (0 without)
    hook_visible: int  # kept + recomputed_layer as saved_tensors_hooks count them (no bitsandbytes-held input)


def stack_bytes(arch: Architecture, s: ActivationSetup) -> StackBytes:
    """Activations of the decoder stack and final norm (the logits are counted separately)."""
    t, h, dt, n_layers = s.tokens, arch.hidden_size, s.dtype_bytes, arch.num_layers
    stream = t * h * s.stream_bytes  # one layer's input
    rope = 0 if arch.model_type == "gpt2" else 2 * s.seq_len * arch.head_dim * s.stream_bytes  # cos, sin: shared
    head = arch.output_head.rsplit(".", 1)[-1] if arch.output_head else None
    head_keeps_input = (s.full_finetune or head in s.adapted) and not s.fused_head
    head_input = s.head_tokens * h * dt if head_keeps_input else 0
    layer_casts, head_cast = _full_finetune_casts(arch, s)
    tail = _norm_bytes(arch, s) + head_input + head_cast
    # autocast keeps a low-precision copy of each fp32 LoRA matrix for the matmuls that use it
    casts = s.adapter_weight_elements * dt if (s.autocast and s.adapter_bytes != dt and not s.full_finetune) else 0
    if s.gradient_checkpointing:
        # each layer keeps only its input and its call's keyword arguments; backward recomputes one layer at a
        # time (its weight copies with it); without reentry the forward's nodes keep what they pin
        kept = n_layers * stream + rope + tail + casts // n_layers
        layer, visible = layer_bytes(arch, s) + layer_casts, layer_bytes(arch, s, held=False) + layer_casts
        extra = checkpoint_kwargs_bytes(arch, s) + (0 if s.checkpoint_reentrant else n_layers * pinned_bytes(arch, s))
        if s.checkpoint_reentrant and arch.model_type == "gpt2" and arch.residual_dropout > 0:
            # reentry makes the embedding output require grad: GPT-2's embedding dropout keeps its mask, and the
            # embedding output stays alive as well (measured on the CPU tracker; its holder not traced)
            extra += t * h * s.mask_bytes + stream
        bottom = stream + rope + casts // n_layers + extra
        return StackBytes(kept + extra, tail, head_input, bottom, layer - input_kept_twice(arch, s), kept + visible)
    # the embedding is frozen, so the first layer's input carries no gradient
    first = layer_bytes(arch, s, input_needs_grad=s.full_finetune) + layer_casts
    first_visible = layer_bytes(arch, s, input_needs_grad=s.full_finetune, held=False) + layer_casts
    rest, rest_visible = layer_bytes(arch, s) + layer_casts, layer_bytes(arch, s, held=False) + layer_casts
    kept = first + (n_layers - 1) * rest + rope + tail + casts
    visible = first_visible + (n_layers - 1) * rest_visible + rope + tail + casts
    return StackBytes(kept, tail, head_input, first + rope + casts // n_layers, 0, visible)


def _full_finetune_casts(arch: Architecture, s: ActivationSetup) -> tuple[int, int]:
    """(one decoder layer's, the head's) compute-dtype weight copies that autocast keeps for backward in a full
    fine-tune with fp32 weights: every linear layer's weight, the head's too (tied or not). Not the embedding,
    whose lookup autocast does not cast, nor the norms' weights, whose multiply it leaves in fp32."""
    if not (s.full_finetune and s.autocast and s.adapter_bytes != s.dtype_bytes):
        return 0, 0
    head = sum(lin.weight_params for lin in arch.linears if lin.name == arch.output_head)
    layers = sum(lin.weight_params for lin in arch.linears) - head
    return layers * s.dtype_bytes // max(arch.num_layers, 1), head * s.dtype_bytes


def checkpoint_kwargs_bytes(arch: Architecture, s: ActivationSetup) -> int:
    """What checkpointing keeps in each layer's ``partial(forward, **kwargs)`` until the first layer's backward.

    Eager attention gets an additive [batch, 1, seq, seq] mask in the model's dtype (one tensor for every layer;
    Gemma-2 two, global and sliding), SDPA a boolean one only for a padded or packed batch (``is_causal``
    otherwise); models with rotary embeddings also get the position ids. The rotary cos and sin are counted with
    the stack.
    """
    b, n = s.batch_size, s.seq_len
    masks = 2 if arch.model_type == "gemma2" else 1  # Gemma-2: one for its global layers, one for its sliding ones
    if s.attention == "eager":
        mask = b * n * n * s.stream_bytes
    else:
        mask = b * n * n if s.mask != "causal" else 0
    return masks * mask + (n * INT64 if arch.model_type != "gpt2" else 0)


def pinned_bytes(arch: Architecture, s: ActivationSetup) -> int:
    """One layer's inputs that its base layers keep on their autograd nodes (8-bit: ``ctx.A``), not as saved
    tensors: they live as long as the graph, whatever checkpointing does (o_proj's input too, which the attention
    core's saves hold as well without checkpointing)."""
    pinned = sum(nbytes for kind, nbytes in layer_stages(arch, s) if kind in ("held", "pinned"))
    o_proj = layer_roles(arch)["attn_out"]
    if s.keeps_input and o_proj and _o_input_kept(arch, attention_kernel(arch, s)):
        pinned += s.tokens * o_proj[0].in_features * s.dtype_bytes
    return pinned


def input_kept_twice(arch: Architecture, s: ActivationSetup) -> int:
    """A recomputed layer's first norm keeps the checkpointed input itself: LayerNorm always, RMSNorm its input
    "upcast" to fp32 when it is fp32 already."""
    if arch.model_type == "gpt2":
        return s.tokens * arch.hidden_size * s.dtype_bytes
    return s.tokens * arch.hidden_size * FP32 if s.stream_bytes == FP32 else 0


def model_activation_bytes(arch: Architecture, s: ActivationSetup) -> int:
    """Saved bytes of the decoder stack as saved_tensors_hooks count them (with one recomputed layer)."""
    return stack_bytes(arch, s).hook_visible


def norm_backward_bytes(arch: Architecture, s: ActivationSetup) -> int:
    """Transients of one norm's backward, the incoming gradient included.

    RMSNorm runs in fp32 (``x.float() * rsqrt(mean(x^2) + eps)``): its backward holds g * r, g * x, their
    reduction's expansion, pow's 2x and its product with the gradient, five [T, hidden] fp32 tensors.
    LayerNorm's fused backward holds the incoming gradient and grad_input.
    """
    t, h = s.tokens, arch.hidden_size
    if arch.model_type == "gpt2":
        return 2 * t * h * s.dtype_bytes
    return 5 * t * h * FP32


def layer_backward_bytes(arch: Architecture, s: ActivationSetup) -> int:
    """The most one decoder layer's backward holds beyond its saved activations (may be negative).

    In the MLP: the down projection's input gradient arrives from the base and from the adapter and is summed,
    three [T, intermediate] tensors, next to the gradient of the layer's output and its copy scaled by
    alpha / r for the adapter; the adapter has released the input it kept by then, and a quantized base
    dequantizes its weight meanwhile. At the norm between attention and MLP, the MLP's saves are gone and
    the norm's backward transients are there; at the attention, the attention's backward transients.
    """
    t, dt, h = s.tokens, s.dtype_bytes, arch.hidden_size
    stages = layer_stages(arch, s)
    down = layer_roles(arch)["mlp_out"]
    inner = down[0].in_features
    grads = 3 * t * inner * dt
    if s.quant.quantized:  # the dequantized weight lives while the base's input gradient is computed
        grads = max(grads, 2 * t * inner * dt + down[0].weight_params * dt)
    mlp = grads + 2 * t * h * dt - released_bytes(stages, DOWN_STAGES)
    norm = norm_backward_bytes(arch, s) + t * h * dt - released_bytes(stages, MLP_STAGES)
    attention = backward_bytes(attention_call(arch, s), attention_kernel(arch, s)) + 2 * t * h * dt
    return max(mlp, norm, attention - released_bytes(stages, AFTER_ATTENTION))


def released_bytes(stages: list[tuple[str, int]], start: int, pinned_freed: bool = False) -> int:
    """What the stages from ``start`` on give back once their backward ran: never a "held" stage (its node outlives
    the backward), a "pinned" input only where it is a recomputed copy (``pinned_freed``)."""
    kinds = ("op", "lora", "pinned") if pinned_freed else ("op", "lora")
    return sum(nbytes for kind, nbytes in stages[start:] if kind in kinds)


def logits_bytes(arch: Architecture, s: ActivationSetup) -> int:
    """Logits as saved_tensors_hooks see them: the output (compute dtype), fp32 log-probabilities, labels."""
    t, v = s.head_tokens, arch.vocab_size
    softcap = t * v * s.dtype_bytes if arch.model_type == "gemma2" else 0  # tanh keeps its output
    return t * v * s.dtype_bytes + t * v * FP32 + softcap + t * INT64 + FP32  # + the loss's fp32 weight sum
