"""The run's ``accelerate.Accelerator``, and everything lorakit asks of accelerate's process-wide state.

A run makes one Accelerator: in a single process with ``mixed_precision="no"`` (lorakit runs autocast and the
GradScaler itself, see ``parts.autocast_for``); in a launched process DDP, or FSDP2 through accelerate's public
``Accelerator(fsdp_plugin=...)`` and its launch environment variables.

Multi-process runs from a notebook start through accelerate's ``notebook_launcher`` (``launch_from_notebook``).

Three things have no public API in accelerate (checked against accelerate 1.15 and its main branch), and each is
one function here, tested in tests/test_accelerator.py so that an accelerate release that changes them fails
loudly instead of silently:

* ``reset_accelerate_state``: accelerate keeps one process-wide state, and refuses a second Accelerator with
  other settings (a notebook that ran a transformers Trainer in bf16) and refuses ``notebook_launcher`` while
  any state exists (a single-process run before). Only ``AcceleratorState._reset_state`` clears it.
* ``fsdp_on_cpu``: accelerate turns on FSDP only for accelerators; on CPUs it silently runs DDP. torch's FSDP2
  runs on CPUs over gloo, so lorakit marks the state FSDP itself: a two-process CPU run is then the same code
  path as a multi-GPU one (notebook 06 and the distributed tests use that).
* ``launcher_on_cpu``: two of notebook_launcher's GPU habits, switched off for CPU runs while it starts them.
"""

from __future__ import annotations

import contextlib
import os

from lorakit.training.config import TrainConfig

__all__ = ["fsdp_on_cpu", "fsdp_plugin", "launch_from_notebook", "launcher_on_cpu", "make_accelerator",
           "reset_accelerate_state"]


def make_accelerator(config: TrainConfig, device: str):
    """The Accelerator of a run on ``device``: one process, or one process of a launched DDP / FSDP run."""
    from accelerate import Accelerator, PartialState

    if config.num_processes > 1:  # one process of a launched run: DDP or FSDP over the launch's process group
        return _distributed_accelerator(config, device)
    kwargs = {"mixed_precision": "no", "cpu": device == "cpu"}
    try:
        return Accelerator(**kwargs)
    except ValueError:  # "AcceleratorState has already been initialized and cannot be changed"
        if PartialState().num_processes > 1:
            raise
        reset_accelerate_state()
        return Accelerator(**kwargs)


def _distributed_accelerator(config: TrainConfig, device: str):
    """DDP, or FSDP2 with lorakit's settings, over the process group of the launch this process belongs to."""
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
        fsdp_on_cpu(accelerator, plugin)
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


def launch_from_notebook(function, args: tuple, num_processes: int, port: int, device: str) -> None:
    """``function(*args)`` in num_processes processes forked by accelerate's notebook_launcher (on ``port``)."""
    from accelerate import notebook_launcher

    reset_accelerate_state()  # notebook_launcher refuses while this process holds a state (an earlier run's)
    with launcher_on_cpu(device):
        notebook_launcher(function, args=args, num_processes=num_processes, use_port=str(port))


# ---- where accelerate has no public API: one function each, guarded by tests/test_accelerator.py --------------
def reset_accelerate_state() -> None:
    """Forget accelerate's process-wide state (accelerator and partial state), as a fresh process has none."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def fsdp_on_cpu(accelerator, plugin) -> None:
    """Make a CPU process's accelerator an FSDP one (accelerate would run DDP); RuntimeError if that fails.

    The accelerator's state is accelerate's shared process state: its ``distributed_type`` and ``fsdp_plugin``
    are what ``Accelerator.prepare`` reads, and ``PartialState``'s ``distributed_type`` is kept equal to them,
    as accelerate itself does at the end of ``AcceleratorState.__init__``.
    """
    from accelerate import PartialState
    from accelerate.utils import DistributedType

    if accelerator.distributed_type != DistributedType.FSDP:
        accelerator.state.distributed_type = DistributedType.FSDP
        accelerator.state.fsdp_plugin = plugin
        PartialState().distributed_type = DistributedType.FSDP
    if not (accelerator.distributed_type == DistributedType.FSDP and accelerator.is_fsdp2
            and PartialState().distributed_type == DistributedType.FSDP):
        import accelerate

        raise RuntimeError(f"accelerate {accelerate.__version__} no longer takes FSDP on CPUs the way lorakit "
                           "sets it (lorakit.training.accelerator.fsdp_on_cpu); use device='cuda' or "
                           "distributed='ddp'")


@contextlib.contextmanager
def launcher_on_cpu(device: str):
    """Two of notebook_launcher's GPU habits, switched off for CPU runs while the block lasts.

    It refuses to fork once bitsandbytes is imported, because on a GPU machine that import initialises CUDA,
    which forked processes cannot use again; on the CPU there is no CUDA to break (an earlier QLoRA run in the
    same kernel imported it). And it announces "Launching training on 2 CUDAs." when it finds no accelerator.
    Both are names notebook_launcher looks up in its module, replaced there and put back after.
    """
    if device != "cpu":
        yield
        return
    import accelerate.launchers as launchers

    check = launchers.are_libraries_initialized
    launchers.are_libraries_initialized = lambda *names: [n for n in check(*names) if n != "bitsandbytes"]
    launchers.print = lambda *args, **kwargs: None  # shadows the builtin in that module only
    try:
        yield
    finally:
        launchers.are_libraries_initialized = check
        del launchers.print
