"""Peak training memory of a (Q)LoRA or full fine-tune, component by component, and inference memory.

Storage of the frozen base: 16/32-bit as given; int8 (LLM.int8) keeps one fp32 scale per output row;
4-bit keeps two values per byte plus a 32-bit absmax per block of 64 (4.5 bits/param), or with double
quantization an 8-bit absmax per 64 and a 32-bit one per 256 blocks (4 + 8/64 + 32/(64*256) ~ 4.127).
Only linear layers are quantized: embeddings, norms and lm_head keep the compute precision.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from lorakit.choices import (
    ATTENTIONS,
    COMPUTE_DTYPES,
    FINETUNES,
    OPTIMIZERS,
    PLANNER_DEVICES,
    PRECISIONS,
    QUANTIZATIONS,
    check_choice,
    choose,
    dtype_bytes,
)
from lorakit.sizing.activations import ActivationSetup, logits_bytes, model_activation_bytes
from lorakit.sizing.architecture import Architecture, LinearLayer, describe_architecture
from lorakit.sizing.lora_count import (
    ALL_LINEAR,
    check_rank,
    count_lora_params,
    select_targets,
    smallest_adapted_dimension,
    targets_key,
)

BLOCK = 64  # bitsandbytes 4-bit block size
DQ_BLOCKS = 256  # blocks per second-level absmax with double quantization
GIB = 1024**3
DEFAULT_RUNTIME_OVERHEAD = GIB // 2  # CUDA context, cuBLAS workspace, allocator slack (not in max_memory_allocated)


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak training memory by component, in bytes; ``total_bytes`` is the sum (the peak)."""

    weights_bytes: int  # frozen base weights in their storage format
    adapter_bytes: int  # trainable weights (LoRA matrices, modules_to_save copies, or all for full fine-tuning)
    gradients_bytes: int
    optimizer_bytes: int
    activations_bytes: int  # saved for backward by the decoder stack
    logits_bytes: int  # logits, fp32 log-probabilities and labels held through backward
    overhead_bytes: int  # backward transients of the loss + runtime allowance
    trainable_params: int
    total_params: int
    setup: dict

    @property
    def total_bytes(self) -> int:
        """Predicted peak, bytes."""
        return sum(getattr(self, f.name) for f in fields(self) if f.name.endswith("_bytes"))

    @property
    def total_gib(self) -> float:
        """Predicted peak, GiB."""
        return self.total_bytes / GIB

    def components(self) -> dict[str, int]:
        """Component name (without ``_bytes``) -> bytes, in stacking order."""
        return {f.name[:-6]: getattr(self, f.name) for f in fields(self) if f.name.endswith("_bytes")}

    def as_dict(self) -> dict:
        """Plain numbers, JSON-ready, with total_bytes."""
        return dict(asdict(self), total_bytes=self.total_bytes)

    def fitting_gpus(self, gpus: Sequence[Any] | None = None) -> list[Any]:
        """GPUs of the catalogue (or the given ones) whose memory holds the peak."""
        from lorakit.sizing.gpus import GPUS

        return [g for g in (gpus or GPUS.values()) if g.fits(self.total_bytes)]


def check_positive(field: str, value: Any) -> None:
    """Raise ValueError unless ``value`` is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{field}: must be a positive integer, got {value!r}")


def estimate_memory(
    model_or_config: Any,
    *,
    r: int = 8,
    lora_alpha: float = 16,
    target_modules: str | Sequence[str] = ALL_LINEAR,
    precision: str = "bf16",
    quantization: str = "none",
    double_quant: bool = True,
    optimizer: str = "adamw",
    batch_size: int = 1,
    seq_len: int = 512,
    gradient_checkpointing: bool = False,
    attention: str = "sdpa",
    finetune: str = "lora",
    adapter_precision: str = "fp32",
    lora_dropout: float = 0.0,
    lora_bias: bool = False,
    modules_to_save: Sequence[str] | None = None,
    use_dora: bool = False,
    runtime_overhead_bytes: int = DEFAULT_RUNTIME_OVERHEAD,
    device: str = "cuda",
    autocast: bool | None = None,
) -> MemoryEstimate:
    """Peak memory of one training step (forward + backward + optimizer step), component by component.

    The components are summed, so the total slightly overstates a peak where gradients and activations do not
    coexist; for LoRA the gradients are tiny. ``device`` only changes the size of saved dropout masks.
    ``autocast`` (default: on for bf16/fp16, as the HF Trainer, accelerate and lorakit's trainer run them)
    means the forward runs under ``torch.autocast``, with the base loaded in ``precision``.
    """
    precision = choose("precision", "precision", precision, PRECISIONS)
    quantization = choose("quantization", "quantization", quantization, QUANTIZATIONS)
    _check_settings(precision=precision, quantization=quantization, optimizer=optimizer, attention=attention,
                    finetune=finetune, adapter_precision=adapter_precision, device=device, batch_size=batch_size,
                    seq_len=seq_len, lora_alpha=lora_alpha)
    if autocast is None:  # as the HF Trainer, accelerate and lorakit's trainer run each precision
        autocast = PRECISIONS[precision].autocast is not None
    arch = describe_architecture(model_or_config)
    dt = PRECISIONS[precision].storage_bytes
    adapted = arch.linears if finetune == "full" else select_targets(arch, target_modules, modules_to_save or ())
    if finetune == "lora":
        check_rank(r, smallest_adapted_dimension(arch, target_modules, modules_to_save or ()))
    trainable_tensors = arch.memo(
        ("tensors", targets_key(target_modules), r, finetune, lora_bias, use_dora, tuple(modules_to_save or ())),
        lambda: _trainable_tensors(arch, adapted, r, finetune, lora_bias, use_dora, modules_to_save))
    ab = dt if finetune == "full" else dtype_bytes(adapter_precision)
    sized = [(n, dt if is_copy else ab, how_many) for (n, is_copy), how_many in trainable_tensors.items()]
    adapter = sum(n * nbytes * how_many for n, nbytes, how_many in sized)
    setup = ActivationSetup(
        batch_size=batch_size, seq_len=seq_len, dtype_bytes=dt, adapter_bytes=ab,
        adapted=arch.memo(("suffixes", finetune, targets_key(target_modules), tuple(modules_to_save or ())),
                          lambda: frozenset(lin.suffix for lin in adapted)),
        lora_ranks=r, attention=attention,
        gradient_checkpointing=gradient_checkpointing, full_finetune=finetune == "full", lora_dropout=lora_dropout,
        device=device, autocast=bool(autocast),
        adapter_weight_elements=sum(n * k for (n, is_copy), k in trainable_tensors.items() if not is_copy),
    )
    tokens_vocab = batch_size * seq_len * arch.vocab_size
    weights = 0 if finetune == "full" else arch.memo(
        ("weights", quantization, double_quant, dt), lambda: base_weight_bytes(arch, quantization, double_quant, dt))
    count = count_lora_params(arch, r=r, target_modules=target_modules, lora_bias=lora_bias,
                              modules_to_save=modules_to_save, use_dora=use_dora) if finetune == "lora" else None
    return MemoryEstimate(
        weights_bytes=weights,
        adapter_bytes=adapter,
        gradients_bytes=adapter,  # a gradient has its parameter's shape and dtype
        optimizer_bytes=optimizer_bytes(optimizer, sized),
        activations_bytes=model_activation_bytes(arch, setup),
        logits_bytes=logits_bytes(arch, setup),
        # backward of the loss allocates the gradient of the fp32 log-probabilities and of the logits
        overhead_bytes=tokens_vocab * (4 + dt) + runtime_overhead_bytes,
        trainable_params=count.trainable_params if count else arch.total_params,
        total_params=count.total_params if count else arch.total_params,
        setup=dict(model=arch.name, r=r, lora_alpha=lora_alpha, target_modules=target_modules, precision=precision,
                   quantization=quantization, double_quant=double_quant, optimizer=optimizer, batch_size=batch_size,
                   seq_len=seq_len, gradient_checkpointing=gradient_checkpointing, attention=attention,
                   finetune=finetune, adapter_precision=adapter_precision, device=device,
                   autocast=bool(autocast)),
    )


def _check_settings(*, batch_size: int, seq_len: int, lora_alpha: float, **choices: str) -> None:
    """Raise ValueError naming the first bad setting and what is allowed."""
    allowed = {"precision": PRECISIONS, "quantization": QUANTIZATIONS, "optimizer": OPTIMIZERS,
               "attention": ATTENTIONS, "finetune": FINETUNES, "adapter_precision": COMPUTE_DTYPES,
               "device": PLANNER_DEVICES}
    for field, value in choices.items():
        check_choice(field, value, allowed[field])
    check_positive("batch_size", batch_size)
    check_positive("seq_len", seq_len)
    if isinstance(lora_alpha, bool) or not isinstance(lora_alpha, (int, float)) or lora_alpha <= 0:
        raise ValueError(f"lora_alpha: must be a positive number, got {lora_alpha!r}")
    if choices["finetune"] == "full" and choices["quantization"] != "none":
        raise ValueError("quantization: full fine-tuning needs an unquantized base; use 'none' or finetune='lora'")


def _trainable_tensors(arch: Architecture, adapted: Sequence[LinearLayer], r: int, finetune: str,
                       lora_bias: bool, use_dora: bool, modules_to_save: Sequence[str] | None
                       ) -> Counter[tuple[int, bool]]:
    """How many trainable tensors there are of each (elements, is a copy in the base dtype)."""
    return Counter(_trainable_tensor_list(arch, adapted, r, finetune, lora_bias, use_dora, modules_to_save))


def _trainable_tensor_list(arch: Architecture, adapted: Sequence[LinearLayer], r: int, finetune: str,
                           lora_bias: bool, use_dora: bool, modules_to_save: Sequence[str] | None
                           ) -> list[tuple[int, bool]]:
    """(elements, is a copy in the base dtype) of every trainable tensor, one entry per tensor."""
    if finetune == "full":
        weights = [(lin.weight_params, True) for lin in arch.linears if not lin.tied]
        biases = [(lin.out_features, True) for lin in arch.linears if lin.bias]
        return weights + biases + [(n, True) for _, n in arch.other_params]
    tensors: list[tuple[int, bool]] = []
    for lin in adapted:
        tensors += [(r * lin.in_features, False), (r * lin.out_features, False)]
        tensors += [(lin.out_features, False)] * (int(lora_bias) + int(use_dora))
    if modules_to_save:
        owners = [n for n in arch.module_names() if any(n.endswith(m) for m in modules_to_save)]
        for lin in arch.linears:
            if any(lin.name == o or lin.name.startswith(o + ".") for o in owners):
                tensors += [(lin.weight_params, True)] + [(lin.out_features, True)] * lin.bias
        tensors += [(n, True) for p, n in arch.other_params if any(p.startswith(o + ".") for o in owners)]
    return tensors


def linear_weight_bytes(lin: LinearLayer, quantization: str, double_quant: bool, dtype_bytes: int) -> int:
    """Storage of one linear layer's weight and bias (bias stays in the compute dtype)."""
    n, bias = lin.weight_params, lin.out_features * dtype_bytes if lin.bias else 0
    if quantization == "int8":  # int8 weight + one fp32 scale per output row
        return n + 4 * lin.out_features + bias
    if QUANTIZATIONS[quantization].is_4bit:
        blocks = -(-n // BLOCK)
        packed = -(-n // 2)  # two 4-bit codes per byte
        code = 16 * 4  # the 16-entry codebook each layer's quant state carries (fp32)
        if not double_quant:
            return packed + blocks * 4 + code + bias
        # 8-bit absmax per block, fp32 absmax per 256 blocks, its 256-entry fp32 code and an fp32 offset
        return packed + blocks + -(-blocks // DQ_BLOCKS) * 4 + 256 * 4 + 4 + code + bias
    return n * dtype_bytes + bias


def base_weight_bytes(arch: Architecture, quantization: str, double_quant: bool, dtype_bytes: int) -> int:
    """Frozen base: quantized linear layers (never lm_head), everything else in the compute dtype."""
    total = sum(n for _, n in arch.other_params) * dtype_bytes
    for lin in arch.linears:
        if lin.tied:
            total += lin.out_features * dtype_bytes if lin.bias else 0
            continue
        quant = quantization if lin.name != arch.output_head else "none"
        total += linear_weight_bytes(lin, quant, double_quant, dtype_bytes)
    return total


def optimizer_bytes(optimizer: str, tensors: Sequence[tuple[int, int, int]]) -> int:
    """Optimizer state for trainable tensors given as (elements, bytes per element, how many such tensors)."""
    if optimizer == "sgd":  # plain SGD (no momentum) keeps no state
        return 0
    if optimizer == "adamw":  # torch AdamW: exp_avg, exp_avg_sq in the parameter dtype, an fp32 step
        return sum((2 * n * b + 4) * k for n, b, k in tensors)
    # bitsandbytes 8-bit Adam: uint8 states + fp32 absmax per 256, fp32 below 4096 elements,
    # and two shared 256-entry fp32 quantization maps once any tensor is stored in 8 bits
    total = 2 * 256 * 4 if any(n >= 4096 for n, _, _ in tensors) else 0
    for n, _, k in tensors:
        total += k * (2 * n + 2 * 4 * -(-n // 256) if n >= 4096 else 2 * n * 4)
    return total


def estimate_inference_memory(
    model_or_config: Any, *, precision: str = "bf16", quantization: str = "none", double_quant: bool = True,
    batch_size: int = 1, seq_len: int = 2048, kv_cache_precision: str | None = None,
) -> dict[str, int]:
    """Generation memory: weights + KV cache (2 x layers x kv_heads x head_dim x batch x seq), bytes."""
    precision = choose("precision", "precision", precision, PRECISIONS)
    quantization = choose("quantization", "quantization", quantization, QUANTIZATIONS)
    check_positive("batch_size", batch_size)
    check_positive("seq_len", seq_len)
    arch = describe_architecture(model_or_config)
    dt = PRECISIONS[precision].storage_bytes
    kv_dt = dtype_bytes(kv_cache_precision) if kv_cache_precision else dt  # a lorakit.formats name, e.g. fp8_e4m3fn
    weights = base_weight_bytes(arch, quantization, double_quant, dt)
    kv = 2 * arch.num_layers * arch.num_kv_heads * arch.head_dim * batch_size * seq_len * kv_dt
    logits = batch_size * arch.vocab_size * 4  # the last position's logits, fp32
    return {"weights_bytes": weights, "kv_cache_bytes": kv, "logits_bytes": logits,
            "total_bytes": weights + kv + logits}
