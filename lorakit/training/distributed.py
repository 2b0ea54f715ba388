"""One process among several: what the loop does differently inside a data-parallel (DDP) or sharded (FSDP) run.

accelerate sets the processes up (``Accelerator`` over torch.distributed: gloo on CPUs, NCCL on GPUs) and
wraps the model; ``Ranks`` adds the few things a lorakit run needs on top, each a no-op in one process:

* data: every batch of the order is a *global* batch (batch_size x num_processes rows); rank r collates rows
  r*batch_size .. (r+1)*batch_size - 1 of it. Tokens and loss targets are counted over the whole global batch
  on the CPU (every rank knows the order), so each rank scales its summed loss by the global count without
  any communication, and the mean over the global batch is exactly what one process would compute;
* stopping: the ranks agree on each step whether to stop (a one-integer all-reduce on the host over gloo, no
  device sync), so a Stop pressed anywhere ends every rank after the same step;
* logging: the loss and every rank's memory are gathered in one collective, only at logging steps;
* files: only rank 0 writes; under FSDP the adapter and optimizer state are gathered to it first;
* failures: a rank that fails leaves its message in torch.distributed's store; the rank 0 that then sees a
  collective break reports that message, not its own "connection closed".
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import torch

from lorakit.training.config import TrainConfig
from lorakit.training.data import IGNORE, Batches

MEMORY_KEYS = ("mem_allocated_bytes", "mem_reserved_bytes", "mem_peak_bytes", "rss_bytes")
_ERROR_KEY = "lorakit/error/{}"


def launched_world() -> tuple[int, int]:
    """(world size, rank) of the launch this process belongs to: torchrun / accelerate set WORLD_SIZE, RANK."""
    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))


class Ranks:
    """This process's rank among the run's processes and the collective steps of the loop (trivial for one)."""

    def __init__(self, world: int = 1, rank: int = 0) -> None:
        self.world, self.rank = world, rank
        self.is_main = rank == 0
        self.multi = world > 1
        self.fsdp = False
        self.broken = False  # the run failed: collectives may hang or fail, so none are started any more
        self._accelerator = None
        self._group = None  # the gloo group for host-side agreement (None: the default group)
        self._previous_sigterm = None

    @classmethod
    def from_launch(cls) -> Ranks:
        return cls(*launched_world())

    def connect(self, parts) -> None:
        """Called once the parts (the accelerator, its process group, the prepared model) exist."""
        self._accelerator = accelerator = parts.accelerator
        if not self.multi:
            return
        import torch.distributed as dist
        from accelerate.utils import DistributedType

        self.fsdp = accelerator.distributed_type == DistributedType.FSDP
        # NCCL reduces GPU tensors only; the stop flag is a host value, so it gets a gloo group of its own.
        if dist.get_backend() != "gloo":
            self._group = dist.new_group(backend="gloo")
        if self.fsdp:
            # FSDP2 takes the first module it runs as the root; generate() enters below the PeftModel, so one
            # token through the whole model first (on every rank) makes the PeftModel the root.
            with torch.no_grad():
                parts.model(input_ids=torch.zeros((1, 1), dtype=torch.long, device=accelerator.device))

    # ---- data ---------------------------------------------------------------------------------------------
    def collate(self, batches: Batches, indices: list[int]) -> dict:
        """This rank's slice of a global batch, with n_tokens and n_targets counted over the whole global batch.

        A rank whose slice is empty (the short last batch of an epoch) runs the first row with every target
        ignored: it contributes nothing, but its forward and backward keep DDP's and FSDP's collectives in step.
        """
        if not self.multi:
            return batches.collate(indices)
        per = batches.batch_size // self.world
        mine = indices[self.rank * per : (self.rank + 1) * per]
        batch = batches.collate(mine or indices[:1])
        if not mine:
            batch["targets"] = torch.full_like(batch["targets"], IGNORE)
        batch["n_tokens"], batch["n_targets"] = batches.count(indices)
        return batch

    def gradient_sync(self, model, last: bool):
        """DDP all-reduces gradients in every backward; within an accumulated step only the last one needs it."""
        if last or not self.multi:
            return contextlib.nullcontext()
        return self._accelerator.no_sync(model)

    @contextlib.contextmanager
    def generating(self, parts):
        """The model to call generate() on (unwrapped). generate() enters below FSDP's root module, whose own
        weights (final norm, ...) its hooks would leave sharded, so they are gathered meanwhile (every rank)."""
        model = parts.accelerator.unwrap_model(parts.model)
        if not self.fsdp:
            yield model
            return
        parts.model.unshard()
        try:
            yield model
        finally:
            parts.model.reshard()

    # ---- agreement and reductions ---------------------------------------------------------------------------
    def agree_stop(self, stop) -> bool:
        """True when any rank wants to stop; every rank gets the same answer before the same step."""
        wanted = stop.stop_requested
        if not self.multi:
            return wanted
        import torch.distributed as dist

        flag = torch.tensor([int(wanted)], dtype=torch.int32)  # a host tensor: no device sync
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
        agreed = bool(flag.item())
        if agreed and not stop.stop_requested:  # read again: a shared handle is set by now, reason and all
            stop.request_stop("stop requested in another process")
        return agreed

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """A device value summed over ranks (a collective: call it on every rank)."""
        return self._accelerator.reduce(value, "sum") if self.multi else value

    def read_log(self, loss_sum: torch.Tensor, memory: dict, read) -> tuple[float, dict]:
        """(loss summed over ranks, memory fields) with one device read; memory is each field's largest value
        over ranks (the rank closest to running out), plus "memory_by_rank" when there are several."""
        if not self.multi:
            return read(loss_sum, "log"), memory
        mine = torch.tensor([-1.0 if memory[k] is None else float(memory[k]) for k in MEMORY_KEYS],
                            dtype=torch.float64, device=loss_sum.device)
        row = torch.cat([loss_sum.detach().reshape(1).double(), mine])
        width = len(row)
        values = read(self._accelerator.gather(row), "log")
        rows = [values[r * width : (r + 1) * width] for r in range(self.world)]
        by_rank = [{key: None if v < 0 else int(v) for key, v in zip(MEMORY_KEYS, r[1:], strict=True)}
                   for r in rows]
        fields = {key: max((m[key] for m in by_rank if m[key] is not None), default=None) for key in MEMORY_KEYS}
        return sum(r[0] for r in rows), {**fields, "memory_by_rank": by_rank}

    # ---- failures -------------------------------------------------------------------------------------------
    def watch_sigterm(self, stop) -> None:
        """Turn the launcher's SIGTERM (sent when another rank failed) into a stop, so this rank still saves.

        torchrun and notebook_launcher send SIGTERM and wait before SIGKILL; a rank that dies at once leaves no
        summary. Only the main thread may set signal handlers; elsewhere the default stays.
        """
        if not self.multi or threading.current_thread() is not threading.main_thread():
            return

        def on_sigterm(signum, frame):
            stop.request_stop("another process failed")

        self._previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)

    def close(self) -> None:
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def failed(self, status: str, message: str, exc: BaseException, trace: str | None = None):
        """(status, message, traceback) of a run that ended with ``exc`` here, naming the rank that failed first.

        A rank's own failure is recorded for the others. A collective that broke because another rank died
        is not the cause: the message and traceback are then the ones that rank recorded before it ended.
        """
        self.broken = True
        if not self.multi:
            return status, message, trace
        if not _is_communication_error(exc):
            self._record_error(status, message, trace)
            return status, message, trace
        peer = self._peer_error()
        if peer is None:
            return status, message, trace
        return peer["status"], f"{peer['message'].rstrip('.')} (in rank {peer['rank']} of {self.world})", \
            peer["traceback"]

    def _record_error(self, status: str, message: str, trace: str | None) -> None:
        """Leave this rank's error where the others can read it (torch.distributed's key-value store)."""
        store = _store()
        if store is not None:
            record = {"rank": self.rank, "status": status, "message": message, "traceback": trace}
            with contextlib.suppress(Exception):
                store.set(_ERROR_KEY.format(self.rank), json.dumps(record))

    def _peer_error(self, wait_s: float = 2.0) -> dict | None:
        """The error another rank recorded, waiting up to wait_s for one to appear; None if none does."""
        store = _store()
        if store is None:
            return None
        keys = [_ERROR_KEY.format(r) for r in range(self.world) if r != self.rank]
        deadline = time.monotonic() + wait_s
        while True:
            for key in keys:
                with contextlib.suppress(Exception):
                    if store.check([key]):
                        return json.loads(store.get(key))
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    # ---- files ----------------------------------------------------------------------------------------------
    def save_adapter(self, parts, folder: Path) -> Path | None:
        """The adapter, written by rank 0 (under FSDP gathered from every rank first); None on other ranks."""
        from lorakit.training.checkpoint import save_adapter

        if self.fsdp and self.broken:
            raise RuntimeError("the adapter is sharded across the processes and the run failed, so it cannot be "
                               "gathered; the last checkpoint holds the adapter it saved")
        state = self._full_adapter_state(parts) if self.fsdp else None
        if not self.is_main:
            return None
        return save_adapter(parts.accelerator.unwrap_model(parts.model), folder, state_dict=state)

    def save_checkpoint(self, parts, folder: Path, loop_state: dict) -> None:
        """A resumable checkpoint, written by rank 0 (under FSDP gathered first); records num_processes."""
        from lorakit.training.checkpoint import save_checkpoint

        model_state = optimizer_state = None
        if self.fsdp:
            model_state = self._full_adapter_state(parts)
            optimizer_state = _fsdp_optimizer_state(parts)
        if self.is_main:
            save_checkpoint(folder, parts.accelerator.unwrap_model(parts.model), parts.optimizer, parts.scheduler,
                            parts.scaler, {**loop_state, "num_processes": self.world},
                            model_state=model_state, optimizer_state=optimizer_state)

    def load_checkpoint(self, parts, folder: Path) -> dict:
        """Restore a checkpoint on every rank (each reads the same files); returns the saved loop state."""
        from lorakit.training import checkpoint

        saved = checkpoint.saved_processes(folder)
        if saved != self.world:
            raise ValueError(checkpoint.processes_mismatch(saved, self.world, folder))
        model = parts.accelerator.unwrap_model(parts.model)
        if not self.fsdp:
            return checkpoint.load_checkpoint(folder, model, parts.optimizer, parts.scheduler, parts.scaler)
        _load_fsdp_state(parts, folder)
        return checkpoint.load_progress(folder, parts.scheduler, parts.scaler)

    def _full_adapter_state(self, parts) -> dict:
        """The trainable (adapter) weights as whole tensors on rank 0's CPU (a collective under FSDP)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
        return get_model_state_dict(parts.model, options=options)


def _is_communication_error(exc: BaseException) -> bool:
    """A collective failed (a peer process died or timed out), rather than this rank's own code."""
    import torch.distributed as dist

    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        marker in text for marker in ("Connection closed by peer", "Connection reset by peer", "gloo", "NCCL"))


def _store():
    """torch.distributed's key-value store of this launch, or None when there is none."""
    try:
        import torch.distributed as dist

        return dist.distributed_c10d._get_default_store() if dist.is_initialized() else None
    except Exception:  # noqa: BLE001 -- reporting an error must never raise another
        return None


def _fsdp_optimizer_state(parts) -> dict:
    """The optimizer state gathered to whole tensors, keyed by parameter name (a collective)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_optimizer_state_dict(parts.model, parts.optimizer.optimizer, options=options)


def _load_fsdp_state(parts, folder: Path) -> None:
    """Put a checkpoint's whole adapter and optimizer tensors back as this rank's shards (every rank reads the
    files, so each cuts its own shard out: no communication)."""
    from safetensors.torch import load_file

    from lorakit.training.checkpoint import read_optimizer_state

    saved = load_file(folder / "adapter" / "adapter_model.safetensors")
    optimizer_state = read_optimizer_state(folder)
    optimizer = parts.optimizer.optimizer
    with torch.no_grad():
        for name, param in parts.model.named_parameters():
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


# ---- the accelerator --------------------------------------------------------------------------------------
def make_distributed_accelerator(config: TrainConfig, device: str):
    """accelerate's Accelerator for a process of a launched run: DDP, or FSDP2 with lorakit's settings."""
    from accelerate import Accelerator

    if config.distributed != "fsdp":
        return Accelerator(mixed_precision="no", cpu=device == "cpu")
    plugin = fsdp_plugin(device)
    if device == "cuda":
        # transformers then reads the weights on rank 0 only and accelerate broadcasts them while sharding:
        # a model larger than one process's share of host memory still loads.
        os.environ.setdefault("ACCELERATE_USE_FSDP", "true")
        os.environ.setdefault("FSDP_CPU_RAM_EFFICIENT_LOADING", "true")
    accelerator = Accelerator(mixed_precision="no", cpu=device == "cpu", fsdp_plugin=plugin)
    if device == "cpu":
        _fsdp_on_cpu(plugin)
    return accelerator


def fsdp_plugin(device: str):
    """FSDP2: one shard unit per decoder layer, weights freed after each layer's forward, adapter saved whole."""
    from accelerate import FullyShardedDataParallelPlugin

    return FullyShardedDataParallelPlugin(
        fsdp_version=2,
        auto_wrap_policy="transformer_based_wrap",  # the model's _no_split_modules (its decoder layer class)
        reshard_after_forward=True,  # FULL_SHARD: a layer's gathered weights live only while it runs
        state_dict_type="FULL_STATE_DICT",
        cpu_ram_efficient_loading=device == "cuda",
        activation_checkpointing=False,  # lorakit's gradient_checkpointing setting decides
    )


def _fsdp_on_cpu(plugin) -> None:
    """accelerate enables FSDP only on accelerators and would silently run DDP on CPUs. torch's FSDP2 runs on
    CPUs over gloo, so lorakit switches accelerate's state to FSDP itself: a two-process CPU run is then the
    same code path as a multi-GPU one (the notebook and the tests use that)."""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    AcceleratorState._shared_state["distributed_type"] = DistributedType.FSDP
    AcceleratorState._shared_state["fsdp_plugin"] = plugin
