"""Bytes that autograd saves for the backward pass, written per layer from the architecture.

Each term below is a tensor we saw saved (``torch.autograd.graph.saved_tensors_hooks``) by a transformers
decoder layer under peft LoRA, deduplicated by storage; parameters are not activations. T = batch x seq.
Measured on transformers 5 / peft 0.21 / torch 2.13 on the CPU (tests and benchmarks/memory_planner.py keep
it honest). Assumed: no padding mask (SDPA then keeps k, v at kv-head width), CUDA's fused attention
kernels behave like the CPU's flash kernel (q, k, v, out, log-sum-exp), DoRA's extra saves are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

from lorakit.sizing.architecture import Architecture, LinearLayer

FP32 = 4
INT64 = 8


@dataclass(frozen=True)
class ActivationSetup:
    """What decides the saved tensors: shapes, dtypes (bytes/element), adapters and kernels."""

    batch_size: int
    seq_len: int
    dtype_bytes: int  # activations (compute dtype)
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

    @property
    def tokens(self) -> int:
        """T = batch x sequence."""
        return self.batch_size * self.seq_len

    @property
    def mask_bytes(self) -> int:
        """Bytes per element of a saved dropout mask."""
        return 1 if self.device == "cuda" else self.dtype_bytes


ROLES = {  # role of each linear layer in a decoder layer, by the end of its name
    "attn_in": ("q_proj", "k_proj", "v_proj", "qkv_proj", "c_attn"),
    "attn_out": ("o_proj", "attn.c_proj"),
    "mlp_in": ("gate_proj", "up_proj", "gate_up_proj", "c_fc"),
    "mlp_out": ("down_proj", "mlp.c_proj"),
}


def layer_roles(arch: Architecture) -> dict[str, list[LinearLayer]]:
    """Linear layers of the first decoder layer grouped by role (their shapes repeat in every layer)."""
    def compute() -> dict[str, list[LinearLayer]]:
        first = [lin for lin in arch.linears if ".0." in lin.name]
        return {
            role: [lin for lin in first if any(lin.name.endswith("." + e) for e in ends)]
            for role, ends in ROLES.items()
        }

    return arch.memo("roles", compute)


def _norm_bytes(arch: Architecture, s: ActivationSetup) -> int:
    """One norm: RMSNorm saves its input upcast to fp32 and 1/rms; LayerNorm its input, mean and rstd."""
    t, h = s.tokens, arch.hidden_size
    if arch.model_type == "gpt2":
        saved = t * h * s.dtype_bytes + 2 * t * FP32
    else:
        saved = t * h * FP32 + t * FP32
    if arch.model_type == "gemma2":
        saved += h * FP32  # Gemma scales by (1 + weight), a new tensor the multiply keeps
    if s.full_finetune:  # the weight's gradient needs the normalized input as well
        saved += t * h * s.dtype_bytes
    return saved


def _lora_inputs(lins: list[LinearLayer], s: ActivationSetup, input_saved_anyway: bool = False) -> int:
    """Inputs kept for the gradients of A (and B) of the adapted layers fed by one tensor."""
    chosen = [lin for lin in lins if lin.suffix in s.adapted]
    if not chosen:
        return 0
    t = s.tokens
    if s.full_finetune:
        return t * chosen[0].in_features * s.dtype_bytes
    # the copy an adapter keeps: cast to the adapter dtype, and back to the activation dtype by autocast
    copy_bytes = s.dtype_bytes if s.autocast else s.adapter_bytes
    lora_b = sum(t * s.lora_ranks * copy_bytes for _ in chosen)
    if s.lora_dropout > 0:  # each adapter drops out its own copy and keeps the mask
        mask = 1 if s.device == "cuda" else s.adapter_bytes  # the input is already in the adapter dtype
        return lora_b + sum(t * lin.in_features * (copy_bytes + mask) for lin in chosen)
    if s.adapter_bytes != s.dtype_bytes:  # each adapter casts the input to its own dtype and saves the copy
        return lora_b + sum(t * lin.in_features * copy_bytes for lin in chosen)
    shared = 0 if input_saved_anyway else t * chosen[0].in_features * s.dtype_bytes
    return lora_b + shared  # one input tensor, shared by the adapters it feeds


def _attention_bytes(arch: Architecture, s: ActivationSetup) -> int:
    """Attention core: fused SDPA keeps q, k, v, out and an fp32 log-sum-exp; the math path keeps probabilities."""
    b, n, t = s.tokens // s.seq_len, s.seq_len, s.tokens
    nh, nkv, d, dt = arch.num_heads, arch.num_kv_heads, arch.head_dim, s.dtype_bytes
    rope = arch.model_type != "gpt2"
    scores = b * nh * n * n
    # on the CPU, SDPA with dropout falls back to the math path, which saves what eager does
    math_path = s.attention == "eager" or (arch.attention_dropout > 0 and s.device == "cpu")
    if not math_path:
        # GPT-2's q, k, v are views of c_attn's output, kept whole; RoPE models keep rotated q, k and v
        qkv = t * 3 * nh * d * dt if not rope else t * (nh + 2 * nkv) * d * dt
        return qkv + t * nh * d * dt + b * nh * n * FP32
    # q, and k, v repeated to every query head (copies for the batched matmul)
    qkv = t * nh * d * dt + (2 * t * nh * d * dt if (nkv != nh or not rope) else 2 * t * nkv * d * dt)
    softmax = scores * FP32 if rope else scores * dt  # Llama-style models take the softmax in fp32
    if arch.model_type == "gemma2":
        softmax += scores * dt  # tanh soft-capping keeps its output
    if arch.attention_dropout > 0:  # the mask, and the dropped probabilities the matmul keeps
        return qkv + softmax + scores * (s.mask_bytes + dt)
    cast = scores * dt if (rope and dt != FP32) else 0  # the fp32 softmax cast back, kept by the matmul
    return qkv + softmax + cast


def _mlp_bytes(arch: Architecture, s: ActivationSetup, inner: int) -> int:
    """Gated MLP keeps act(gate)'s input, act's output and up; GPT-2's tanh-GELU keeps four tensors."""
    per_element = 4 if arch.model_type == "gpt2" else 3
    return per_element * s.tokens * inner * s.dtype_bytes


def layer_stages(arch: Architecture, s: ActivationSetup) -> list[tuple[str, int]]:
    """Saved bytes of one decoder layer, stage by stage in forward order ("op" or "lora" stages)."""
    roles = layer_roles(arch)
    # Gemma-2 also normalizes the attention and MLP outputs (four norms per layer)
    extra_norm = _norm_bytes(arch, s) if arch.model_type == "gemma2" else 0
    # GPT-2 drops out the attention and MLP outputs before the residual add: one mask each
    resid_drop = s.tokens * arch.hidden_size * s.mask_bytes if arch.residual_dropout > 0 else 0
    fused_sdpa = s.attention == "sdpa" and not (arch.attention_dropout > 0 and s.device == "cpu")
    # measured: after separate q/k/v projections, o_proj's input is a view of SDPA's output; after a
    # fused qkv_proj (Phi-3) it is a copy
    o_input_is_sdpa_output = fused_sdpa and not any(lin.suffix == "qkv_proj" for lin in roles["attn_in"])
    return [
        ("op", _norm_bytes(arch, s)),
        ("lora", _lora_inputs(roles["attn_in"], s)),
        ("op", _attention_bytes(arch, s)),
        ("lora", _lora_inputs(roles["attn_out"], s, input_saved_anyway=o_input_is_sdpa_output)),
        ("op", resid_drop + extra_norm + _norm_bytes(arch, s)),
        ("lora", _lora_inputs(roles["mlp_in"], s)),
        ("op", _mlp_bytes(arch, s, roles["mlp_out"][0].in_features)),
        ("lora", _lora_inputs(roles["mlp_out"], s)),
        ("op", extra_norm + resid_drop),
    ]


def layer_bytes(arch: Architecture, s: ActivationSetup, input_needs_grad: bool = True) -> int:
    """Saved bytes of one decoder layer; without grad on its input, ops before the first adapter save nothing."""
    total, grad_flows = 0, input_needs_grad or s.full_finetune
    for kind, nbytes in layer_stages(arch, s):
        if kind == "lora" and nbytes:
            grad_flows = True
        if grad_flows:
            total += nbytes
    return total


def model_activation_bytes(arch: Architecture, s: ActivationSetup) -> int:
    """Saved bytes of the decoder stack and final norm (the logits are counted separately)."""
    t, h, dt, n_layers = s.tokens, arch.hidden_size, s.dtype_bytes, arch.num_layers
    rope = 0 if arch.model_type == "gpt2" else 2 * s.seq_len * arch.head_dim * dt  # cos, sin: shared by layers
    final_norm = _norm_bytes(arch, s)
    head_input = t * h * dt if (s.full_finetune or arch.output_head and arch.output_head.rsplit(".", 1)[-1]
                                in s.adapted) else 0
    # autocast keeps a low-precision copy of each fp32 adapter weight for the matmuls that use it
    casts = s.adapter_weight_elements * dt if (s.autocast and s.adapter_bytes != dt) else 0
    if s.gradient_checkpointing:
        # each layer keeps only its input; backward recomputes one layer at a time
        return n_layers * t * h * dt + layer_bytes(arch, s) + rope + final_norm + head_input + casts // n_layers
    # the embedding is frozen, so the first layer's input carries no gradient
    first = layer_bytes(arch, s, input_needs_grad=s.full_finetune)
    return first + (n_layers - 1) * layer_bytes(arch, s) + rope + final_norm + head_input + casts


def logits_bytes(arch: Architecture, s: ActivationSetup) -> int:
    """Logits held through backward: the output (compute dtype), fp32 log-probabilities, int64 labels."""
    t, v = s.tokens, arch.vocab_size
    softcap = t * v * s.dtype_bytes if arch.model_type == "gemma2" else 0  # tanh keeps its output
    return t * v * s.dtype_bytes + t * v * FP32 + softcap + t * INT64 + FP32  # + the loss's fp32 weight sum
