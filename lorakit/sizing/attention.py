"""Which attention kernel a training step runs, and what that kernel keeps for backward.

The choice follows torch's own SDPA dispatch (``aten/src/ATen/native/transformers/cuda/sdp_utils.cpp`` and
``sdp_utils_cpp.cpp``, torch 2.11 to 2.13) after transformers' ``sdpa_attention_forward`` has prepared the
arguments:

* transformers passes ``enable_gqa=True`` only when there is no mask tensor (``use_gqa_in_sdpa``); with a
  padding or packing mask it repeats k and v to every query head first (copies).
* CUDA tries flash (cuDNN first on some Hopper/Blackwell builds: the same saved tensors), then
  memory-efficient, then math. Flash needs fp16/bf16, compute capability 8.0 to 12.1, no mask tensor and a
  head dim <= 256. Memory-efficient takes fp32 as well and masks, but not grouped-query heads (torch <= 2.13
  rejects ``enable_gqa``), and needs a head dim that is a multiple of 8 (half) or 4 (fp32) on Ampere+.
* The CPU runs its flash kernel (fp32, bf16, fp16; masks and GQA allowed) unless there is dropout.
* The math path upcasts fp16/bf16 to fp32 and keeps the [batch, heads, seq, seq] probabilities: a fp32
  Llama with grouped-query heads on CUDA takes it, and that is the matrix the flash assumption missed.

Pure arithmetic: no torch import.
"""

from __future__ import annotations

from dataclasses import dataclass

FP32 = 4

KERNEL_LABELS = {
    "flash": "flash attention (CUDA; cuDNN on some Hopper builds keeps the same)",
    "efficient": "memory-efficient attention (CUDA)",
    "math": "SDPA math path (probabilities kept, fp32)",
    "cpu_flash": "CPU flash attention",
    "eager": "eager attention (transformers' matmul + softmax)",
}
FUSED = ("flash", "efficient", "cpu_flash")


@dataclass(frozen=True)
class AttentionCall:
    """What reaches the attention kernel of one decoder layer: shapes, dtype, mask, device."""

    attention: str  # "sdpa" or "eager" (transformers' attn_implementation)
    device: str  # "cuda" or "cpu"
    dtype: str  # of q, k, v: "fp32", "fp16" or "bf16" (the autocast dtype under mixed precision)
    batch: int
    seq: int
    heads: int
    kv_heads: int
    head_dim: int
    mask: str = "causal"  # "causal", "padded" or "packed" (lorakit.choices.ATTENTION_MASKS)
    dropout: float = 0.0  # attention dropout in training
    compute_capability: tuple[int, int] | None = None  # None: an Ampere or newer GPU

    @property
    def dtype_bytes(self) -> int:
        return FP32 if self.dtype == "fp32" else 2

    @property
    def has_mask(self) -> bool:
        """Whether transformers hands SDPA a mask tensor (padding or packing) instead of is_causal."""
        return self.mask != "causal"

    @property
    def gqa(self) -> bool:
        return self.kv_heads != self.heads

    @property
    def enable_gqa(self) -> bool:
        """transformers' use_gqa_in_sdpa: grouped heads, no mask tensor, head dim <= 256."""
        return self.gqa and not self.has_mask and self.head_dim <= 256

    @property
    def kv_width(self) -> int:
        """Heads of the k and v that reach SDPA: kv heads with enable_gqa, else repeated to every head."""
        return self.kv_heads if self.enable_gqa or not self.gqa else self.heads

    def mask_bytes(self, element_bytes: int) -> int:
        """Bytes per element of a dropout mask: bool on CUDA (fused dropout), the tensor's dtype on the CPU."""
        return 1 if self.device == "cuda" else element_bytes


@dataclass(frozen=True)
class KernelChoice:
    """The kernel torch dispatches to, and why, in a sentence."""

    name: str  # a KERNEL_LABELS key
    reason: str

    @property
    def label(self) -> str:
        return KERNEL_LABELS[self.name]

    @property
    def fused(self) -> bool:
        """Whether it keeps q, k, v, the output and a log-sum-exp rather than the probabilities."""
        return self.name in FUSED


def choose_kernel(call: AttentionCall) -> KernelChoice:
    """The kernel of ``call``, by torch's dispatch rules (see the module docstring)."""
    if call.attention == "eager":
        return KernelChoice("eager", "attn_implementation='eager'")
    if call.device == "cpu":
        if call.dropout > 0:
            return KernelChoice("math", "the CPU flash kernel has no dropout")
        return KernelChoice("cpu_flash", "SDPA on the CPU")
    no_flash = _why_not_flash(call)
    if no_flash is None:
        return KernelChoice("flash", f"{call.dtype} on a GPU of compute capability 8.0+ without a mask tensor")
    no_efficient = _why_not_efficient(call)
    if no_efficient is None:
        return KernelChoice("efficient", f"not flash: {no_flash}")
    return KernelChoice("math", f"not flash: {no_flash}; not memory-efficient: {no_efficient}")


def _capability(call: AttentionCall) -> tuple[int, int]:
    return tuple(call.compute_capability) if call.compute_capability else (8, 0)


def _why_not_flash(call: AttentionCall) -> str | None:
    cc = _capability(call)
    if not (8, 0) <= cc <= (12, 1):
        return f"compute capability {cc[0]}.{cc[1]} is outside 8.0-12.1"
    if call.dtype == "fp32":
        return "fp32 inputs"
    if call.has_mask:
        return f"a {call.mask} batch brings a mask tensor"
    if call.head_dim > 256:
        return "head dim > 256"
    consumer = cc in ((8, 6), (8, 7), (8, 8), (8, 9), (12, 0), (12, 1))
    if consumer and (192 < call.head_dim <= 224 or (call.dropout > 0 and call.head_dim > 224)):
        return f"no flash backward for head dim {call.head_dim} on compute capability {cc[0]}.{cc[1]}"
    return None


def _why_not_efficient(call: AttentionCall) -> str | None:
    cc = _capability(call)
    if cc < (5, 0):
        return "compute capability below 5.0"
    if call.dtype == "bf16" and cc < (8, 0):
        return "bf16 below compute capability 8.0"
    half = call.dtype_bytes == 2
    tensor_cores = cc >= (8, 0) or (cc >= (7, 0) and half)  # torch's minimum_gemm_alignment
    alignment = max(4 if cc >= (8, 0) else 1, (8 if half else 4) if tensor_cores else 1)
    if call.head_dim % alignment:
        return f"head dim {call.head_dim} is not a multiple of {alignment}"
    if call.enable_gqa:
        return "grouped-query heads (enable_gqa)"
    return None


def _ceil_to(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def saved_bytes(call: AttentionCall, kernel: KernelChoice, *, rope: bool, softcap: bool = False) -> int:
    """Bytes the attention core of one layer keeps for backward (from q, k, v to its output).

    ``rope``: q and k are new tensors after rotary embeddings; without it (GPT-2) q, k and v are views of one
    projection output, kept whole. ``softcap``: Gemma-2's tanh soft-capping of the scores (eager only).
    """
    if kernel.name == "eager":
        return _eager_bytes(call, rope, softcap)
    if kernel.name == "math":
        return _math_bytes(call)
    b, n, t, nh, dt = call.batch, call.seq, call.batch * call.seq, call.heads, call.dtype_bytes
    d = _ceil_to(call.head_dim, 8) if kernel.name == "flash" else call.head_dim  # torch pads it for flash
    qkv = t * 3 * nh * d * dt if not rope else t * (nh + 2 * call.kv_width) * d * dt
    lse_rows = _ceil_to(n, 32) if kernel.name == "efficient" else n  # memory-efficient pads it to 32 rows
    kept = qkv + t * nh * d * dt + b * nh * lse_rows * FP32
    if call.has_mask:
        kept += _mask_bias_bytes(call, kernel)
    return kept


def _mask_bias_bytes(call: AttentionCall, kernel: KernelChoice) -> int:
    """The additive mask a fused kernel keeps: the bool mask converted to the input dtype, in every layer.

    Memory-efficient attention pads the key dimension to a multiple of 16; when it has to, the padding
    materialises the mask expanded to every head.
    """
    b, n, dt = call.batch, call.seq, call.dtype_bytes
    if kernel.name == "efficient" and n % 16:
        return b * call.heads * n * _ceil_to(n, 16) * dt
    return b * n * n * dt


def _math_bytes(call: AttentionCall) -> int:
    """SDPA's math path: q and k scaled, v, and the probabilities, fp16/bf16 upcast to fp32 first."""
    b, n, t, nh, d = call.batch, call.seq, call.batch * call.seq, call.heads, call.head_dim
    acc = FP32  # fp32 stays fp32; fp16 and bf16 are upcast (torch's default math precision)
    # q and k scaled, and v as the batched matmul takes it: upcast, repeated to every head, or made contiguous
    probs = b * nh * n * n * acc
    kept = 3 * t * nh * d * acc + probs
    if call.dropout > 0:  # the dropout mask and the dropped probabilities the second matmul keeps
        kept += b * nh * n * n * (call.mask_bytes(acc) + acc)
    return kept


def _eager_bytes(call: AttentionCall, rope: bool, softcap: bool) -> int:
    """transformers' eager attention: q, k and v repeated to every head, fp32 softmax, cast back."""
    b, n, t, nh, d, dt = call.batch, call.seq, call.batch * call.seq, call.heads, call.head_dim, call.dtype_bytes
    scores = b * nh * n * n
    qkv = t * nh * d * dt + (2 * t * nh * d * dt if (call.gqa or not rope) else 2 * t * call.kv_heads * d * dt)
    softmax = scores * FP32 if rope else scores * dt  # Llama-style models take the softmax in fp32
    if softcap:
        softmax += scores * dt  # tanh soft-capping keeps its output
    if call.dropout > 0:  # the mask, and the dropped probabilities the matmul keeps
        return qkv + softmax + scores * (call.mask_bytes(dt) + dt)
    cast = scores * dt if (rope and dt != FP32) else 0  # the fp32 softmax cast back, kept by the matmul
    return qkv + softmax + cast


def released_before_core_backward(call: AttentionCall, kernel: KernelChoice, *, rope: bool) -> int:
    """Of the attention's saves, what eager attention has given back when softmax's backward runs.

    The probabilities-times-v matmul's backward ran first and released what only it kept: v as it took it
    (repeated to every head, or made contiguous) and, in half precision, the probabilities cast back (with
    dropout, the dropped probabilities and their mask). The probabilities softmax returned stay: it keeps them
    (``rope``: a Llama-style model, whose softmax runs in fp32 and is cast back, as ``saved_bytes`` says).
    """
    if kernel.name != "eager":
        return 0
    t, nh, d, dt = call.batch * call.seq, call.heads, call.head_dim, call.dtype_bytes
    scores = call.batch * nh * call.seq * call.seq
    if call.dropout > 0:
        return t * nh * d * dt + scores * (call.mask_bytes(dt) + dt)
    return t * nh * d * dt + (scores * dt if (rope and dt != FP32) else 0)


def backward_bytes(call: AttentionCall, kernel: KernelChoice) -> int:
    """Transients of the attention core's backward.

    Eager and SDPA math: the second matmul's backward returns the gradients of the probabilities and of v;
    softmax's backward adds the gradient of the scores (eager in half precision also the probabilities'
    fp32 gradient, through the cast back); fused kernels: dq, dk, dv and an fp32 dq accumulator.
    """
    b, n, t, nh, d, dt = call.batch, call.seq, call.batch * call.seq, call.heads, call.head_dim, call.dtype_bytes
    scores = b * nh * n * n
    if kernel.name == "eager":
        cast = scores * FP32 if dt != FP32 else 0
        return 2 * scores * dt + cast + t * nh * d * dt + (scores * dt if call.dropout > 0 else 0)
    if kernel.name == "math":
        return scores * FP32 * (3 if call.dropout > 0 else 2) + t * nh * d * FP32
    return t * (nh + 2 * call.kv_width) * d * dt + t * nh * d * FP32
