"""The pieces the loop is assembled from: accelerator, optimizer, schedule, data, memory readings."""

from __future__ import annotations

import math
import os

import torch

from lorakit.train.config import TrainConfig
from lorakit.train.data import Batches, build_batches, load_records, split_records

_MIXED_PRECISION = {"fp32": "no", "fp16": "fp16", "bf16": "bf16"}


def make_accelerator(config: TrainConfig, device: str):
    """An accelerate.Accelerator for the run's device and mixed precision.

    accelerate keeps one process-wide state; a notebook that runs fp32 then bf16 would hit "already
    initialized", so in a single process we reset it (a multi-process launch keeps its state).
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    kwargs = {"mixed_precision": _MIXED_PRECISION[config.precision], "cpu": device == "cpu"}
    try:
        return Accelerator(**kwargs)
    except ValueError:
        if PartialState().num_processes > 1:
            raise
        AcceleratorState._reset_state(reset_partial_state=True)
        return Accelerator(**kwargs)


def make_optimizer(config: TrainConfig, params: list, device: str):
    """AdamW over the trainable parameters: torch's fused kernel where it exists, or bitsandbytes' 8-bit ones."""
    kwargs = {"lr": config.learning_rate, "weight_decay": config.weight_decay}
    if config.optimizer == "adamw_8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, **kwargs)
    if config.optimizer == "paged_adamw_8bit":
        import bitsandbytes as bnb

        return bnb.optim.PagedAdamW8bit(params, **kwargs)
    try:
        # one kernel for all parameters instead of a Python loop of small ops
        return torch.optim.AdamW(params, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, foreach=True, **kwargs)


def make_scheduler(config: TrainConfig, optimizer, total_steps: int):
    """transformers' schedules (the same ones Trainer uses), stepped once per optimizer step."""
    from transformers import get_scheduler

    return get_scheduler(
        config.lr_scheduler_type,
        optimizer,
        num_warmup_steps=config.warmup_steps,
        num_training_steps=total_steps,
    )


def make_data(config: TrainConfig, tokenizer, device: str) -> tuple[Batches, Batches | None, list]:
    """(train batches, eval batches or None, eval records); the built-in dataset brings its own held-out split."""
    from lorakit.data import builtin_split

    records = load_records(config.dataset)
    if isinstance(config.dataset, str) and config.dataset == "builtin":
        eval_records = builtin_split("eval") if config.eval_split > 0 else []
    else:
        records, eval_records = split_records(records, config.eval_split)
    pin = device == "cuda"  # pinned host memory only helps copies to a GPU
    train_batches = build_batches(config, tokenizer, records, pin)
    eval_batches = build_batches(config, tokenizer, eval_records, pin) if eval_records else None
    return train_batches, eval_batches, eval_records


def total_steps_for(config: TrainConfig, batches_per_epoch: int) -> int:
    """Optimizer steps in the run: max_steps, else epochs x batches / accumulation (rounded up)."""
    if config.max_steps > 0:
        return config.max_steps
    return max(1, math.ceil(batches_per_epoch * config.num_train_epochs / config.gradient_accumulation_steps))


def rss_bytes() -> int | None:
    """This process's resident memory in bytes (one syscall; call at logging time only)."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        try:
            with open("/proc/self/statm", encoding="ascii") as handle:
                return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return None


def memory_stats(device: str) -> dict[str, int | None]:
    """GPU allocated / reserved / peak bytes from torch.cuda (host-side counters, no sync) and process RSS."""
    stats: dict[str, int | None] = {
        "mem_allocated_bytes": None,
        "mem_reserved_bytes": None,
        "mem_peak_bytes": None,
        "rss_bytes": rss_bytes(),
    }
    if device == "cuda":
        stats["mem_allocated_bytes"] = torch.cuda.memory_allocated()
        stats["mem_reserved_bytes"] = torch.cuda.memory_reserved()
        stats["mem_peak_bytes"] = torch.cuda.max_memory_allocated()
    return stats


def predicted_peak_bytes(config: TrainConfig, model_config) -> int | None:
    """The sizing planner's prediction, when lorakit.sizing provides it; None otherwise."""
    try:
        from lorakit.sizing import estimate_memory

        estimate = estimate_memory(
            model_config,
            r=config.r,
            lora_alpha=config.lora_alpha,
            target_modules=config.target_modules,
            precision=config.precision,
            quantization=config.quantization,
            double_quant=config.bnb_4bit_use_double_quant,
            optimizer=config.optimizer,
            batch_size=config.batch_size,
            seq_len=config.max_seq_length,
            gradient_checkpointing=config.gradient_checkpointing,
        )
        return int(estimate.total_bytes)
    except (ImportError, AttributeError, TypeError, ValueError, KeyError):
        return None
