"""The sizing calculator's questions, answered here so that widgets only render.

* ``scenarios``: the runs side by side: full fine-tune (each optimizer-state convention that differs at the
  chosen precision), LoRA on a 16-bit base, QLoRA (the recipe's quantization + double quant), and yours when it
  is none of those.
* ``per_gpu``: memory per device for 1, 2, 4 and 8 processes (DDP or FSDP).
* ``fused_head_saving``: the same run with the plain head and the fused one.

Each takes what ``estimate_memory`` takes: a model, a TrainConfig and/or settings.
"""

from __future__ import annotations

from typing import Any

from lorakit.quantization import NONE, QLORA
from lorakit.sizing.memory import MemoryEstimate, estimate_memory, planned_run
from lorakit.sizing.settings import PLANNER_DEFAULTS, split, validate
from lorakit.training.config import canonical

GPU_COUNTS = (1, 2, 4, 8)
COMPONENT_LABELS = {  # what each component holds, for tables and legends
    "weights": "frozen weights",
    "adapter": "trainable weights",
    "gradients": "gradients",
    "optimizer": "optimizer state",
    "activations": "activations",
    "logits": "logits + loss",
    "overhead": "transients + runtime",
}
QLORA_QUANT = QLORA["quantization"]
LORA, QLORA_LABEL = "LoRA", f"QLoRA ({QLORA_QUANT}+dq)"


def bytes_per_trainable_param(estimate: MemoryEstimate) -> float:
    """Weights + gradients + optimizer state per trainable parameter (AdamW: 16 with fp32 master weights)."""
    saved = estimate.saved
    return (saved["adapter_bytes"] + saved["gradients_bytes"] + saved["optimizer_bytes"]) / estimate.trainable_params


def full_finetune_label(estimate: MemoryEstimate) -> str:
    """E.g. 'full fine-tune, fp32 master weights (16 B/param)' or 'full fine-tune, pure bf16 (8 B/param)'."""
    setup, per_param = estimate.setup, bytes_per_trainable_param(estimate)
    storage = "fp32" if setup["precision"] in ("fp32", "tf32") else setup["precision"]
    how = "fp32 master weights" if setup["master_weights"] or storage == "fp32" else f"pure {storage}"
    return f"full fine-tune, {how} ({per_param:.0f} B/param)"


def scenarios(model_or_config: Any, config: Any = None, **settings: Any) -> dict[str, MemoryEstimate]:
    """Label -> estimate for every run worth comparing with the given settings (ValueError on bad ones)."""
    model_or_config, config = planned_run(model_or_config, config)
    run, _ = split(settings, config)
    s = validate(run, **{k: v for k, v in canonical(settings).items() if k in PLANNER_DEFAULTS})
    own = {k: v for k, v in canonical(settings).items() if k in PLANNER_DEFAULTS}

    def plan(cfg: Any, **extra: Any) -> MemoryEstimate:
        return estimate_memory(model_or_config, cfg, **{**own, **extra})

    out: dict[str, MemoryEstimate] = {}
    unquantized = run.with_quantization(NONE.name)
    for master in ([True, False] if s.precision == "bf16" else [True]):  # fp16 needs fp32 master weights
        full = plan(unquantized, finetune="full", master_weights=master)
        out[full_finetune_label(full)] = full
    mine = plan(run)
    out[LORA] = mine if (not s.quant.quantized and not s.full) else plan(unquantized, finetune="lora")
    is_qlora = s.quantization == QLORA_QUANT and s.double_quant and not s.full
    out[QLORA_LABEL] = mine if is_qlora else plan(run.with_quantization(QLORA_QUANT, True), finetune="lora")
    if s.quant.quantized and not is_qlora and not s.full:
        no_dq = ", no dq" if s.quant.double_quant and not s.double_quant else ""
        out[f"yours ({s.quantization}{no_dq})"] = mine
    return out


def per_gpu(model_or_config: Any, counts: tuple[int, ...] = GPU_COUNTS, config: Any = None,
            **settings: Any) -> dict[int, MemoryEstimate]:
    """Processes -> the peak of one device, with ``settings``' distributed strategy and per-process batch.

    One process is one whole model whatever the strategy (TrainConfig refuses FSDP in one process).
    """
    model_or_config, config = planned_run(model_or_config, config)
    strategy = canonical(settings).get("distributed", config.distributed if config is not None else "ddp")
    return {n: estimate_memory(model_or_config, config, **dict(settings, num_processes=n,
                                                               distributed=strategy if n > 1 else "ddp"))
            for n in counts}


def fused_head_saving(model_or_config: Any, config: Any = None, **settings: Any) -> tuple[MemoryEstimate, MemoryEstimate]:
    """(plain head, fused head) estimates of the same run: the fused head never holds [tokens, vocab] logits."""
    model_or_config, config = planned_run(model_or_config, config)
    plain = estimate_memory(model_or_config, config, **dict(settings, loss_kernel="plain"))
    fused = estimate_memory(model_or_config, config, **dict(settings, loss_kernel="fused"))
    return plain, fused
