"""One process among several: what the loop does differently inside a data-parallel (DDP) or sharded (FSDP) run.

accelerate sets the processes up (``Accelerator`` over torch.distributed: gloo on CPUs, NCCL on GPUs) and
wraps the model; ``Ranks`` adds the few exchanges a lorakit run needs on top, each a no-op in one process
(which rank writes the files, and how FSDP's shards are gathered for them, is ``checkpoint``'s):

* data: every batch of the order is a *global* batch (batch_size x num_processes rows); rank r collates rows
  r*batch_size .. (r+1)*batch_size - 1 of it. Tokens and loss targets are counted over the whole global batch
  on the CPU (every rank knows the order), so each rank scales its summed loss by the global count without
  any communication, and the mean over the global batch is exactly what one process would compute;
* stopping: the ranks agree on each step whether to stop (a one-integer all-reduce on the host over gloo, no
  device sync), so a Stop pressed anywhere ends every rank after the same step;
* logging: the loss and every rank's memory are gathered in one collective, only at logging steps;
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

import torch

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
