"""Peak memory of one (Q)LoRA or full fine-tuning step per device, component by component, and inference memory.

``estimate_memory`` reads in four steps: validate the settings, list the trainable tensors, describe the
step (``ActivationSetup``), and sum what is held at the step's peak moment (``lorakit.sizing.peak``).
Weights and trainable tensors are exact byte counts (``lorakit.sizing.storage``), activations the tensors
transformers + peft save for backward (``lorakit.sizing.activations``), the attention core the kernel torch
dispatches to (``lorakit.sizing.attention``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from lorakit.choices import OPTIMIZERS, dtype_bytes
from lorakit.sizing import parallel
from lorakit.sizing.activations import ActivationSetup, attention_kernel, logits_bytes, stack_bytes
from lorakit.sizing.architecture import Architecture, describe_architecture, per_architecture
from lorakit.sizing.lora_count import (
    check_rank,
    count_lora_params,
    select_targets,
    smallest_adapted_dimension,
)
from lorakit.sizing.peak import (
    backward_phases,
    final_norm_phase,
    fused_head_phase,
    loss_phase,
    optimizer_phase,
    optimizer_transient,
    peak,
)
from lorakit.sizing.settings import DEFAULT_RUNTIME_OVERHEAD, GIB, Settings, check_positive, split, validate
from lorakit.sizing.storage import (
    base_weight_bytes,
    head_elements,
    linear_weight_bytes,
    optimizer_bytes,
    trainable_tensors,
)

__all__ = ["DEFAULT_RUNTIME_OVERHEAD", "GIB", "MemoryEstimate", "check_positive", "estimate_inference_memory",
           "estimate_memory", "linear_weight_bytes"]


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak training memory of one device by component, in bytes; ``total_bytes`` is their sum (the peak).

    The components are what is held at the peak moment (``peak_phase``): the frozen base, the trainable
    weights (LoRA matrices, modules_to_save copies, or every weight in a full fine-tune), the gradients alive
    then, the optimizer state, the saved activations, the head and loss's tensors, and the transients of the
    running operation plus the runtime allowance. ``saved`` holds every component as
    ``lorakit.sizing.measure.measure_training_step`` counts a step on the CPU: the oracle for the parts.
    """

    weights_bytes: int
    adapter_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    activations_bytes: int
    logits_bytes: int
    overhead_bytes: int
    trainable_params: int
    total_params: int
    setup: dict
    peak_phase: str = ""
    attention_kernel: str = ""  # the kernel the attention core was modelled with (lorakit.sizing.attention)
    attention_reason: str = ""
    saved: dict = None  # type: ignore[assignment]  # component -> bytes, as measure_training_step counts

    @property
    def total_bytes(self) -> int:
        """Predicted peak, bytes."""
        return sum(self.components().values())

    @property
    def total_gib(self) -> float:
        """Predicted peak, GiB."""
        return self.total_bytes / GIB

    def components(self) -> dict[str, int]:
        """Component name (without ``_bytes``) -> bytes held at the peak, in stacking order."""
        return {f.name[:-6]: getattr(self, f.name) for f in fields(self) if f.name.endswith("_bytes")}

    def as_dict(self) -> dict:
        """Plain numbers, JSON-ready, with total_bytes."""
        return dict(asdict(self), total_bytes=self.total_bytes)

    def fitting_gpus(self, gpus: Sequence[Any] | None = None) -> list[Any]:
        """GPUs of the catalogue (or the given ones) whose memory holds the peak."""
        from lorakit.sizing.gpus import GPUS

        return [g for g in (gpus or GPUS.values()) if g.fits(self.total_bytes)]


def estimate_memory(model_or_config: Any = None, config: Any = None, **settings: Any) -> MemoryEstimate:
    """Peak memory of one training step (forward, backward, optimizer step) on one device, by component.

    ``model_or_config``: a preset name, a config (dict, path, transformers config), an nn.Module, or a
    ``TrainConfig`` (its ``model`` is planned). ``config``: a TrainConfig whose run is planned (default:
    ``TrainConfig()``'s defaults, so ``estimate_memory(model)`` sizes what ``TrainConfig(model=model)`` trains).
    ``settings``: TrainConfig fields that override it (r, precision, quantization, bnb_4bit_use_double_quant,
    optimizer, batch_size per process, max_seq_length, gradient_checkpointing, loss_kernel, device,
    num_processes, distributed, ...) and the planner's own (``lorakit.sizing.settings.PLANNER_DEFAULTS``:
    finetune, attention, adapter_precision, lora_bias, modules_to_save, runtime_overhead_bytes, autocast, mask,
    master_weights, compute_capability, use_reentrant). A bad one raises ValueError naming it, TrainConfig's
    message for a TrainConfig field.
    """
    model_or_config, config = planned_run(model_or_config, config)
    s = validate(config, **settings)
    arch = describe_architecture(model_or_config)
    if not s.full:
        check_rank(s.r, smallest_adapted_dimension(arch, s.target_modules, s.modules_to_save))
    tensors = _sized_tensors(arch, s)
    setup = activation_setup(arch, s, tensors)
    return _estimate(arch, s, setup, tensors)


def planned_run(model_or_config: Any, config: Any) -> tuple[Any, Any]:
    """(the model to describe, the TrainConfig or None) from estimate_memory's first two arguments."""
    from lorakit.training.config import TrainConfig

    if isinstance(model_or_config, TrainConfig):
        if config is not None:
            raise ValueError("config: give the TrainConfig once, as the first argument or as config=")
        config, model_or_config = model_or_config, model_or_config.model
    if config is not None and not isinstance(config, TrainConfig):
        raise ValueError(f"config: expected a lorakit TrainConfig, got {type(config).__name__}")
    if model_or_config is None:
        raise ValueError("model_or_config: give a model (a preset name, a config, a module) or a TrainConfig")
    if model_or_config == "embedded":  # the trainer's default model: SmolLM2-135M-Instruct
        model_or_config = "SmolLM2-135M"
    return model_or_config, config


def _sized_tensors(arch: Architecture, s: Settings) -> list[tuple[int, int, int]]:
    """Trainable tensors as (elements, bytes per element, how many): LoRA in its dtype, base copies in theirs."""
    counts = trainable_tensors(arch, s.finetune, s.target_modules, s.r, s.lora_bias, s.use_dora, s.modules_to_save)
    copy_bytes = s.trainable_bytes if s.full else s.dtype_bytes
    return [(n, copy_bytes if is_copy else s.trainable_bytes, k) for (n, is_copy), k in counts.items()]


def activation_setup(arch: Architecture, s: Settings, tensors: list[tuple[int, int, int]]) -> ActivationSetup:
    """What decides the activations of this step."""
    # autocast casts every trainable weight stored wider than the compute dtype, once per step
    cast_elements = sum(n * k for n, b, k in tensors if b != s.dtype_bytes)
    return ActivationSetup(
        batch_size=s.batch_size, seq_len=s.seq_len, dtype=s.dtype, adapter_bytes=s.trainable_bytes,
        adapted=adapted_suffixes(arch, s.full, s.target_modules, s.modules_to_save), lora_ranks=s.r, attention=s.attention,
        gradient_checkpointing=s.gradient_checkpointing, full_finetune=s.full, lora_dropout=s.lora_dropout,
        device=s.device, autocast=s.autocast, adapter_weight_elements=cast_elements, quantization=s.quantization,
        mask=s.mask, compute_capability=s.compute_capability, fused_head=s.fused_head,
        checkpoint_reentrant=s.use_reentrant,
        logit_tokens=s.logit_tokens,
    )


@per_architecture
def adapted_suffixes(arch: Architecture, full: bool, target_modules: Any, modules_to_save: tuple) -> frozenset[str]:
    """Names (last component) of the layers that train: every linear layer in a full fine-tune."""
    adapted = arch.linears if full else select_targets(arch, target_modules, modules_to_save)
    return frozenset(lin.suffix for lin in adapted)


def _estimate(arch: Architecture, s: Settings, setup: ActivationSetup,
              tensors: list[tuple[int, int, int]]) -> MemoryEstimate:
    """Sum what is held at the peak moment of the step."""
    weights = 0 if s.full else base_weight_bytes(arch, s.quant, s.double_quant, s.dtype_bytes)
    trainable = sum(n * b * k for n, b, k in tensors)
    state = optimizer_bytes(s.optimizer, tensors)
    stack = stack_bytes(arch, setup)
    head_grads = head_elements(arch, s.finetune, s.modules_to_save)
    phases = [
        fused_head_phase(arch, setup, stack, head_grads) if s.fused_head else loss_phase(arch, setup, stack),
        final_norm_phase(arch, setup, stack, head_grads * s.trainable_bytes),
        *backward_phases(arch, setup, stack, head_grads * s.trainable_bytes, _layer_gradient_bytes(arch, s, trainable)),
        optimizer_phase(trainable, optimizer_transient(OPTIMIZERS[s.optimizer].state, s.device, tensors)),
    ]
    device = parallel.per_device(arch, s, weights, trainable, state)
    top = peak([parallel.shard_phase(p, s, device) for p in phases])
    kernel = attention_kernel(arch, setup)
    count = None if s.full else count_lora_params(arch, r=s.r, target_modules=s.target_modules,
                                                  lora_bias=s.lora_bias, modules_to_save=s.modules_to_save,
                                                  use_dora=s.use_dora)
    return MemoryEstimate(
        weights_bytes=device.weights, adapter_bytes=device.trainable, gradients_bytes=top.gradients,
        optimizer_bytes=device.optimizer, activations_bytes=top.activations, logits_bytes=top.logits,
        overhead_bytes=top.transient + cublas_workspace_bytes(s) + s.runtime_overhead_bytes,
        trainable_params=count.trainable_params if count else arch.total_params,
        total_params=count.total_params if count else arch.total_params,
        setup=dict(s.as_dict(), model=arch.name), peak_phase=top.name,
        attention_kernel=kernel.name, attention_reason=kernel.reason,
        saved=_saved(arch, setup, stack, weights, trainable, state),
    )


def _layer_gradient_bytes(arch: Architecture, s: Settings, trainable: int) -> int:
    """Gradients of the decoder layers' trainable tensors (LoRA lives in the layers; a full fine-tune's root,
    the embeddings, head and final norm, gets its gradients elsewhere)."""
    if not s.full:
        return trainable
    return trainable - parallel.root_elements(arch) * s.trainable_bytes


def cublas_workspace_bytes(s: Settings) -> int:
    """cuBLAS workspaces a CUDA step allocates through torch's caching allocator (so max_memory_allocated sees them).

    torch gives each (cuBLAS handle, stream) one workspace: 32 MiB from compute capability 9.0 on, else
    2 x 4 MiB + 8 x 16 KiB (``CUBLAS_WORKSPACE_CONFIG``'s default). Handles are per thread, and autograd runs
    CUDA backward on its own device thread: forward and backward hold one each.
    """
    if s.device != "cuda":
        return 0
    hopper = s.compute_capability is not None and s.compute_capability >= (9, 0)
    return 2 * (32 * 1024**2 if hopper else 2 * 4096 * 1024 + 8 * 16 * 1024)


def _saved(arch: Architecture, setup: ActivationSetup, stack: Any, weights: int, trainable: int,
           state: int) -> dict[str, int]:
    """Every component as measure_training_step counts one step (the CPU oracle for the parts)."""
    return {"weights_bytes": weights, "adapter_bytes": trainable, "gradients_bytes": trainable,
            "optimizer_bytes": state, "activations_bytes": stack.hook_visible,
            "logits_bytes": 0 if setup.fused_head else logits_bytes(arch, setup)}


def estimate_inference_memory(
    model_or_config: Any, *, precision: str = "bf16", quantization: str = "none", double_quant: bool = False,
    batch_size: int = 1, seq_len: int = 2048, kv_cache_precision: str | None = None,
) -> dict[str, int]:
    """Generation memory: weights + KV cache (2 x layers x kv_heads x head_dim x batch x seq), bytes.

    The settings it shares with training are validated as TrainConfig validates them.
    """
    config, _ = split(dict(precision=precision, quantization=quantization, double_quant=double_quant,
                           batch_size=batch_size, seq_len=seq_len))
    arch = describe_architecture(model_or_config)
    dt = config.prec.storage_bytes
    kv_dt = dtype_bytes(kv_cache_precision) if kv_cache_precision else dt  # a lorakit.formats name, e.g. fp8_e4m3fn
    weights = base_weight_bytes(arch, config.quant, config.double_quant, dt)
    kv = 2 * arch.num_layers * arch.num_kv_heads * arch.head_dim * batch_size * seq_len * kv_dt
    logits = batch_size * arch.vocab_size * 4  # the last position's logits, fp32
    return {"weights_bytes": weights, "kv_cache_bytes": kv, "logits_bytes": logits,
            "total_bytes": weights + kv + logits}
