"""The pieces the loop is assembled from: accelerator, model, optimizer, schedule, data, memory readings.

``build_parts`` makes them once, in order, and returns them as one read-only ``Parts``.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from lorakit.choices import OPTIMIZERS, torch_dtype
from lorakit.training.accelerator import make_accelerator
from lorakit.training.auto import Choice, decide_checkpointing, decide_loss_kernel
from lorakit.training.config import TrainConfig
from lorakit.training.data import Batches, build_batches, split_dataset
from lorakit.training.modeling import add_lora, load_base


@dataclass(frozen=True)
class Parts:
    """Everything a run trains with, built once by ``build_parts`` and never reassigned."""

    device: str
    accelerator: Any
    model: Any  # the PeftModel, prepared by accelerate
    tokenizer: Any
    model_config: Any
    params: list  # the trainable parameters
    optimizer: Any
    scheduler: Any
    scaler: Any  # a torch.amp.GradScaler under fp16, else None
    batches: Batches
    eval_batches: Batches | None
    eval_records: list
    total_steps: int
    slices_logits: bool  # the model accepts logits_to_keep (logits only where a target is)
    autocast: Callable[[], contextlib.AbstractContextManager]
    choices: dict[str, Choice]  # the resolved "auto" settings, each with its reason
    loss_head: Any = None  # a fused_head.FusedHead when loss_kernel resolved to "fused", else None
    notes: tuple[str, ...] = ()  # for the run's warnings: fallbacks taken while building


def build_parts(config: TrainConfig, device: str, path: str) -> Parts:
    """Load the base, add LoRA, tokenize the data and make the optimizer, schedule and loss scaler."""
    accelerator = make_accelerator(config, device)
    torch.manual_seed(config.seed)  # LoRA A is randomly initialised: same seed, same adapter
    model, tokenizer = load_base(config, device, path)
    model_config = model.config
    choices = {"gradient_checkpointing": decide_checkpointing(config, device, model_config)}
    model = add_lora(model, config, choices["gradient_checkpointing"].value)
    params = [p for p in model.parameters() if p.requires_grad]
    slices_logits = "logits_to_keep" in inspect.signature(model.get_base_model().forward).parameters
    batches, eval_batches, eval_records = make_data(config, tokenizer, device)
    total_steps = total_steps_for(config, len(batches))
    model, optimizer = accelerator.prepare(model, make_optimizer(config, params, device))
    params = [p for p in model.parameters() if p.requires_grad]  # FSDP replaces them with its sharded ones
    loss_head, notes = make_loss_head(config, device, model, slices_logits, accelerator, choices)
    return Parts(
        device=device, accelerator=accelerator, model=model, tokenizer=tokenizer, model_config=model_config,
        params=params, optimizer=optimizer, scheduler=make_scheduler(config, optimizer.optimizer, total_steps),
        scaler=torch.amp.GradScaler(device) if config.prec.needs_scaler else None,
        batches=batches, eval_batches=eval_batches, eval_records=eval_records, total_steps=total_steps,
        slices_logits=slices_logits, autocast=autocast_for(config, device), choices=choices,
        loss_head=loss_head, notes=tuple(notes),
    )


def make_loss_head(config: TrainConfig, device: str, model, slices_logits: bool, accelerator,
                   choices: dict[str, Choice]) -> tuple[Any, list[str]]:
    """Decide loss_kernel (into ``choices``) and build the fused head it asks for: (head or None, notes)."""
    sharded = accelerator.distributed_type.name in ("FSDP", "DEEPSPEED")
    choices["loss_kernel"] = decide_loss_kernel(config, device, model, slices_logits, sharded)
    if choices["loss_kernel"].value != "fused":
        return None, []
    from lorakit.training.fused_head import make_fused_head

    return make_fused_head(model, device, compile_blocks=config.compile is not False)


def autocast_for(config: TrainConfig, device: str) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of the run's autocast context (torch.autocast in the precision's dtype, or nothing).

    lorakit runs autocast and the GradScaler itself rather than through accelerate, which supports fp16
    only on accelerators: torch's CPU autocast takes float16 too, with ``torch.amp.GradScaler("cpu")``.
    """
    dtype = config.prec.autocast
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device, dtype=torch_dtype(dtype))


@contextlib.contextmanager
def matmul_mode(config: TrainConfig):
    """TF32 tensor-core matmuls for precision='tf32' while the run lasts; the previous setting after."""
    before = torch.get_float32_matmul_precision()
    if config.precision == "tf32":
        torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def make_optimizer(config: TrainConfig, params: list, device: str):
    """AdamW over the trainable parameters: torch's fused kernel where it exists, or bitsandbytes' 8-bit ones."""
    kwargs = {"lr": config.learning_rate, "weight_decay": config.weight_decay}
    if OPTIMIZERS[config.optimizer].state == "none":  # plain SGD: no momentum, no state
        return torch.optim.SGD(params, **kwargs)
    if OPTIMIZERS[config.optimizer].package:  # an 8-bit optimizer of a quantization backend
        from lorakit.quantization import make_optimizer

        return make_optimizer(config.optimizer, params, **kwargs)
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
    """(train batches, eval batches or None, eval records); a built-in task brings its own held-out split."""
    records, eval_records = split_dataset(config)
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


def predicted_peak_bytes(config: TrainConfig, parts: Parts) -> int:
    """The planner's peak for this run as it runs; ValueError when the planner cannot model the setting."""
    from lorakit.sizing import estimate_memory

    settings = config.sizing_kwargs(parts.device, parts.choices["gradient_checkpointing"].value,
                                    parts.choices["loss_kernel"].value)
    return int(estimate_memory(parts.model_config, **settings).total_bytes)
