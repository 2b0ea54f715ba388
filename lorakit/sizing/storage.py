"""What a run stores for the whole step: the frozen base, the trainable tensors and the optimizer state.

Storage of the frozen base: 16/32-bit as given; a quantized linear layer takes what its quantization record
says (``lorakit.quantization``: codes, scales, zero points, codebooks). Only linear layers are quantized:
embeddings, norms and lm_head keep the compute precision.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from lorakit.choices import OPTIMIZERS
from lorakit.quantization import NONE, QUANTIZATIONS, Quantization
from lorakit.sizing.architecture import Architecture, LinearLayer, per_architecture
from lorakit.sizing.lora_count import adapted_groups

LAYER_INDEX = re.compile(r"\.\d+\.")  # a decoder layer's parameters carry its index: model.layers.3.mlp...


def in_decoder_layer(name: str) -> bool:
    """Whether a parameter or module name belongs to a repeated decoder layer (not embeddings, head, final norm)."""
    return bool(LAYER_INDEX.search(name))


@per_architecture
def trainable_tensors(arch: Architecture, finetune: str, target_modules: object, r: int, lora_bias: bool,
                      use_dora: bool, modules_to_save: tuple[str, ...]) -> Counter[tuple[int, bool]]:
    """How many trainable tensors there are of each (elements, is a copy of a base weight)."""
    if finetune == "full":
        weights = [(lin.weight_params, True) for lin in arch.linears if not lin.tied]
        biases = [(lin.out_features, True) for lin in arch.linears if lin.bias]
        return Counter(weights + biases + [(n, True) for _, n in arch.other_params])
    tensors: Counter[tuple[int, bool]] = Counter()
    for (_, _, d_in, d_out), count in adapted_groups(arch, target_modules, modules_to_save).items():
        tensors[(r * d_in, False)] += count  # A: r x d_in
        tensors[(r * d_out, False)] += count  # B: d_out x r
        tensors[(d_out, False)] += count * (int(lora_bias) + int(use_dora))
    return +(tensors + Counter(_saved_copies(arch, modules_to_save)))


def _saved_copies(arch: Architecture, modules_to_save: Sequence[str]) -> list[tuple[int, bool]]:
    """The trainable copies peft makes of modules_to_save (weights, biases, other parameters)."""
    if not modules_to_save:
        return []
    owners = [n for n in arch.module_names() if any(n.endswith(m) for m in modules_to_save)]
    copies: list[tuple[int, bool]] = []
    for lin in arch.linears:
        if any(lin.name == o or lin.name.startswith(o + ".") for o in owners):
            copies += [(lin.weight_params, True)] + [(lin.out_features, True)] * lin.bias
    return copies + [(n, True) for p, n in arch.other_params if any(p.startswith(o + ".") for o in owners)]


@per_architecture
def head_elements(arch: Architecture, finetune: str, modules_to_save: tuple[str, ...]) -> int:
    """Trainable elements of the output head (its weight in a full fine-tune or a modules_to_save copy)."""
    head = next((lin for lin in arch.linears if lin.name == arch.output_head), None)
    if head is None:
        return 0
    saved = any(head.name == m or head.name.endswith("." + m) for m in modules_to_save)
    if finetune == "full" or saved:
        return head.weight_params + (head.out_features if head.bias else 0)
    return 0


def linear_weight_bytes(lin: LinearLayer, quantization: str | Quantization, double_quant: bool,
                        dtype_bytes: int) -> int:
    """Storage of one linear layer's weight and bias (bias stays in the compute dtype)."""
    quant = quantization if isinstance(quantization, Quantization) else QUANTIZATIONS[quantization]
    bias = lin.out_features * dtype_bytes if lin.bias else 0
    return quant.linear_bytes(lin.out_features, lin.in_features, double_quant, dtype_bytes) + bias


@per_architecture
def base_weight_bytes(arch: Architecture, quant: Quantization, double_quant: bool, dtype_bytes: int,
                      part: str = "all") -> int:
    """Frozen base: quantized linear layers (never lm_head), everything else in the compute dtype.

    ``part``: "all", "layers" (the repeated decoder layers) or "root" (embeddings, head, final norm).
    """
    def wanted(name: str) -> bool:
        return part == "all" or in_decoder_layer(name) == (part == "layers")

    total = sum(n for p, n in arch.other_params if wanted(p)) * dtype_bytes
    for lin in arch.linears:
        if not wanted(lin.name):
            continue
        if lin.tied:
            total += lin.out_features * dtype_bytes if lin.bias else 0
            continue
        total += linear_weight_bytes(lin, quant if lin.name != arch.output_head else NONE, double_quant, dtype_bytes)
    return total


def optimizer_bytes(optimizer: str, tensors: Sequence[tuple[int, int, int]]) -> int:
    """Optimizer state for trainable tensors given as (elements, bytes per element, how many such tensors)."""
    state = OPTIMIZERS[optimizer].state
    if state == "none":  # plain SGD (no momentum) keeps no state
        return 0
    if state == "adamw":  # torch AdamW: exp_avg, exp_avg_sq in the parameter dtype, an fp32 step
        return sum((2 * n * b + 4) * k for n, b, k in tensors)
    # bitsandbytes 8-bit Adam: uint8 states + fp32 absmax per 256, fp32 below 4096 elements,
    # and two shared 256-entry fp32 quantization maps once any tensor is stored in 8 bits
    total = 2 * 256 * 4 if any(n >= 4096 for n, _, _ in tensors) else 0
    for n, _, k in tensors:
        total += k * (2 * n + 2 * 4 * -(-n // 256) if n >= 4096 else 2 * n * 4)
    return total
