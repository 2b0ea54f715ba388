"""Adapters and resumable checkpoints on disk: safetensors + JSON only (no pickle), written atomically.

checkpoint/ holds adapter/, optimizer.safetensors + optimizer.json, scheduler.json, scaler.json,
rng.safetensors + rng.json and state.json (step, epoch, position in the epoch, counters).

A run's files come from rank 0 alone. Under FSDP each process holds a shard of the adapter and of the optimizer
state: ``save_run_adapter`` and ``save_run_checkpoint`` gather them whole first (a collective: every rank calls
them), and ``load_run_checkpoint`` cuts each rank's shard back out of the whole tensors on disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file


def replace_dir(target: Path, write: Callable[[Path], None]) -> Path:
    """Fill a temporary sibling folder with write(tmp), then swap it in by rename.

    Readers see the old folder or the new one. A crash between the two renames leaves the complete previous
    folder as `.<name>.old`, which `find_checkpoint` falls back to.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    old = target.parent / f".{target.name}.old"
    try:
        write(tmp)
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def save_adapter(model, folder: Path, state_dict: dict | None = None) -> Path:
    """The PEFT adapter (adapter_config.json + adapter_model.safetensors), loadable by PeftModel.from_pretrained.

    ``state_dict``: the weights to write when the model's own are shards (FSDP gathers them first).
    """
    return replace_dir(folder, lambda tmp: model.save_pretrained(tmp, safe_serialization=True,
                                                                 state_dict=state_dict))


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")


def _flatten(prefix: str, value: Any, tensors: dict, scalars: dict) -> None:
    if torch.is_tensor(value):
        tensors[prefix] = value.detach().cpu().contiguous()
    elif isinstance(value, dict):  # bitsandbytes nests its quantization state
        for key, item in value.items():
            _flatten(f"{prefix}/{key}", item, tensors, scalars)
    else:
        scalars[prefix] = value


def _split_tensors(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state -> (tensors for safetensors, the rest for JSON), keyed 'param_id/name[/name...]'."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, entries in state["state"].items():
        _flatten(str(pid), entries, tensors, scalars)
    return tensors, {"scalars": scalars, "param_groups": state["param_groups"]}


def _join_tensors(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int | str, dict] = {}
    for flat, value in [*tensors.items(), *meta["scalars"].items()]:
        pid, *path = flat.split("/")
        # a parameter's index in the optimizer, or its name (FSDP's gathered state is keyed by name)
        node = state.setdefault(int(pid) if pid.isdigit() else pid, {})
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    version, values, gauss = random.getstate()
    np_state = np.random.get_state()
    meta = {
        "python": [version, list(values), gauss],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }
    return tensors, meta


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, values, gauss = meta["python"]
    random.setstate((version, tuple(values), gauss))
    name, keys, *rest = meta["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))


def save_checkpoint(folder: Path, model, optimizer, scheduler, scaler, state: dict, *,
                    model_state: dict | None = None, optimizer_state: dict | None = None) -> Path:
    """Everything needed to continue exactly where the run is now (call at an optimizer-step boundary).

    ``model_state`` / ``optimizer_state``: whole tensors gathered from shards (FSDP), written instead of the
    model's and the optimizer's own.
    """

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp / "adapter", safe_serialization=True, state_dict=model_state)
        tensors, meta = _split_tensors(optimizer_state if optimizer_state is not None else optimizer.state_dict())
        save_file(tensors, tmp / "optimizer.safetensors")
        _write_json(tmp / "optimizer.json", meta)
        _write_json(tmp / "scheduler.json", scheduler.state_dict())
        _write_json(tmp / "scaler.json", scaler.state_dict() if scaler is not None else None)
        rng_tensors, rng_meta = _rng_state()
        save_file(rng_tensors, tmp / "rng.safetensors")
        _write_json(tmp / "rng.json", rng_meta)
        _write_json(tmp / "state.json", state)  # last: its presence marks a complete checkpoint

    return replace_dir(folder, write)


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint folder for a run folder or a checkpoint folder (falls back to an interrupted swap)."""
    path = Path(path)
    for candidate in (path, path / "checkpoint", path / ".checkpoint.old"):
        if (candidate / "state.json").exists():
            return candidate
    raise FileNotFoundError(f"no resumable checkpoint (checkpoint/state.json) in {path}")


def load_checkpoint(folder: Path, model, optimizer, scheduler, scaler) -> dict:
    """Restore adapter weights, optimizer, scheduler, scaler and RNG; return the saved loop state."""
    from peft import set_peft_model_state_dict

    adapter = load_file(folder / "adapter" / "adapter_model.safetensors")
    set_peft_model_state_dict(model, adapter)
    optimizer.load_state_dict(read_optimizer_state(folder))
    return load_progress(folder, scheduler, scaler)


def read_optimizer_state(folder: Path) -> dict:
    """A checkpoint's optimizer state dict, as ``optimizer.state_dict()`` returned it."""
    meta = json.loads((folder / "optimizer.json").read_text(encoding="utf-8"))
    return _join_tensors(load_file(folder / "optimizer.safetensors"), meta)


def load_progress(folder: Path, scheduler, scaler) -> dict:
    """Restore the schedule, the loss scaler and the RNG; return the saved loop state."""
    scheduler.load_state_dict(json.loads((folder / "scheduler.json").read_text(encoding="utf-8")))
    scaler_state = json.loads((folder / "scaler.json").read_text(encoding="utf-8"))
    if scaler is not None and scaler_state is not None:
        scaler.load_state_dict(scaler_state)
    _set_rng_state(
        load_file(folder / "rng.safetensors"), json.loads((folder / "rng.json").read_text("utf-8"))
    )
    return json.loads((folder / "state.json").read_text(encoding="utf-8"))


def saved_processes(path: str | Path) -> int:
    """How many processes trained the checkpoint of a run folder (or checkpoint folder); 1 for older ones."""
    state = json.loads((find_checkpoint(path) / "state.json").read_text(encoding="utf-8"))
    return int(state.get("num_processes", 1))


def check_resume_processes(path: str | Path, wanted: int) -> None:
    """ValueError when the checkpoint in path was trained by another number of processes than wanted."""
    saved = saved_processes(path)
    if saved != wanted:
        raise ValueError(processes_mismatch(saved, wanted, path))


def processes_mismatch(saved: int, wanted: int, path: str | Path) -> str:
    """The message for resuming a checkpoint with another number of processes than trained it."""
    return (
        f"cannot resume {path} with num_processes={wanted}: it was trained by {saved} process(es). A resumed run "
        f"continues the same global batches and optimizer state in the same places; set num_processes={saved}, "
        "or start a new run."
    )


def checkpoint_step(path: str | Path) -> int:
    """The optimizer step a run folder's (or checkpoint folder's) checkpoint was saved at."""
    return json.loads((find_checkpoint(path) / "state.json").read_text(encoding="utf-8"))["step"]


def output_dir_for(output_dir: str | None, resume_from: str | Path | None) -> Path:
    """The run folder: as configured, else the folder being resumed, else runs/<timestamp>."""
    if output_dir:
        return Path(output_dir)
    if resume_from is not None:
        path = Path(resume_from)
        return path.parent if path.name == "checkpoint" else path
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


# ---- a run's adapter and checkpoint, from one process or several ------------------------------------------------
def save_run_adapter(parts, folder: Path, ranks) -> Path | None:
    """The run's adapter, written by rank 0 (under FSDP gathered from every rank first); None on other ranks."""
    if ranks.fsdp and ranks.broken:
        raise RuntimeError("the adapter is sharded across the processes and the run failed, so it cannot be "
                           "gathered; the last checkpoint holds the adapter it saved")
    state = full_adapter_state(parts.model) if ranks.fsdp else None
    if not ranks.is_main:
        return None
    return save_adapter(parts.accelerator.unwrap_model(parts.model), folder, state_dict=state)


def save_run_checkpoint(parts, folder: Path, progress: dict, ranks) -> None:
    """A resumable checkpoint, written by rank 0 (under FSDP gathered first); records num_processes."""
    model_state = optimizer_state = None
    if ranks.fsdp:
        model_state = full_adapter_state(parts.model)
        optimizer_state = full_optimizer_state(parts.model, parts.optimizer.optimizer)
    if ranks.is_main:
        save_checkpoint(folder, parts.accelerator.unwrap_model(parts.model), parts.optimizer, parts.scheduler,
                        parts.scaler, {**progress, "num_processes": ranks.world},
                        model_state=model_state, optimizer_state=optimizer_state)


def load_run_checkpoint(parts, folder: Path, ranks) -> dict:
    """Restore a checkpoint on every rank (each reads the same files); returns the saved loop state."""
    saved = saved_processes(folder)
    if saved != ranks.world:
        raise ValueError(processes_mismatch(saved, ranks.world, folder))
    if not ranks.fsdp:
        model = parts.accelerator.unwrap_model(parts.model)
        return load_checkpoint(folder, model, parts.optimizer, parts.scheduler, parts.scaler)
    load_sharded_state(parts.model, parts.optimizer.optimizer, folder)
    return load_progress(folder, parts.scheduler, parts.scaler)


def full_adapter_state(model) -> dict:
    """The trainable (adapter) weights as whole tensors on rank 0's CPU (a collective under FSDP)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
    return get_model_state_dict(model, options=options)


def full_optimizer_state(model, optimizer) -> dict:
    """The optimizer state gathered to whole tensors, keyed by parameter name (a collective)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_optimizer_state_dict(model, optimizer, options=options)


def load_sharded_state(model, optimizer, folder: Path) -> None:
    """Put a checkpoint's whole adapter and optimizer tensors back as this rank's shards (every rank reads the
    files, so each cuts its own shard out: no communication)."""
    saved = load_file(folder / "adapter" / "adapter_model.safetensors")
    optimizer_state = read_optimizer_state(folder)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            # peft saves adapter keys without the adapter's name; the parameters carry it (".default")
            param.copy_(_shard_like(saved[name.replace(".default", "")], param))
            state = optimizer_state["state"].get(name)
            if state is not None:
                optimizer.state[param] = {k: _state_like(v, param, optimizer) for k, v in state.items()}
    for group, saved_group in zip(optimizer.param_groups, optimizer_state["param_groups"], strict=True):
        group.update({k: v for k, v in saved_group.items() if k != "params"})


def _state_like(value, param, optimizer):
    """An optimizer state entry for this rank: moments sharded like the parameter; the step count where
    torch keeps it (on the parameter's device for fused or capturable AdamW, else on the CPU)."""
    if not torch.is_tensor(value):
        return value
    if value.dim():
        return _shard_like(value, param)
    group = optimizer.param_groups[0]
    return value.to(param.device if group.get("fused") or group.get("capturable") else "cpu")


def _shard_like(full: torch.Tensor, param) -> torch.Tensor:
    """This rank's shard of a whole tensor, laid out as the (FSDP2 DTensor) parameter is."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    full = full.to(device=param.device, dtype=param.dtype if full.is_floating_point() else full.dtype)
    if not isinstance(param, DTensor):
        return full
    return distribute_tensor(full, param.device_mesh, param.placements, src_data_rank=None)


def discard_new_run_folder(out: Path) -> None:
    """Remove what a new run wrote at its start (config.json, metrics.jsonl) and the folder when that leaves it
    empty: a run refused before step 1 leaves nothing behind; a folder holding anything else is kept."""
    for name in ("config.json", "metrics.jsonl"):
        (out / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        out.rmdir()
