"""lorakit's two uses of accelerate internals (lorakit/training/accelerator.py), pinned so that a release of
accelerate that changes them fails here, loudly, instead of leaving a run on a silently different path.

Each test runs in a fresh Python process: accelerate's state is process-wide.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_reset_state_is_still_accelerates_and_clears_what_it_checks():
    """A second Accelerator with other settings raises; reset_accelerate_state clears the state that
    Accelerator() and notebook_launcher check, and the next Accelerator is built with lorakit's settings."""
    run_python("""
        import inspect
        from accelerate import Accelerator, PartialState
        from accelerate.state import AcceleratorState, is_initialized
        from lorakit.training.accelerator import make_accelerator, reset_accelerate_state
        from lorakit.training.config import TrainConfig

        # the private names lorakit relies on
        assert "reset_partial_state" in inspect.signature(AcceleratorState._reset_state).parameters

        Accelerator(mixed_precision="bf16", cpu=True)  # what a transformers Trainer in bf16 leaves behind
        try:
            Accelerator(mixed_precision="no", cpu=True)
        except ValueError as exc:
            assert "already been initialized" in str(exc), exc
        else:
            raise AssertionError("accelerate now accepts a second Accelerator with other settings: "
                                 "make_accelerator no longer needs reset_accelerate_state")

        reset_accelerate_state()
        assert not is_initialized()
        assert len(AcceleratorState._shared_state) == 0  # notebook_launcher's check
        assert len(PartialState._shared_state) == 0

        Accelerator(mixed_precision="bf16", cpu=True)
        accelerator = make_accelerator(TrainConfig(), "cpu")  # resets and builds its own
        assert accelerator.mixed_precision == "no" and accelerator.device.type == "cpu"
        print("ok")
    """)


def test_fsdp_on_cpu_makes_prepare_take_the_fsdp2_path():
    """fsdp_on_cpu turns the shared state FSDP (accelerator and partial state) with the plugin, and prepare()
    then shards a model with FSDP2 (fully_shard), as it does on GPUs."""
    out = run_python("""
        import os, socket
        with socket.socket() as sock:  # a free port: other test runs may share this machine
            sock.bind(("127.0.0.1", 0))
            port = str(sock.getsockname()[1])
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK="0", WORLD_SIZE="1", LOCAL_RANK="0",
                          LOCAL_WORLD_SIZE="1")
        import torch
        import torch.distributed as dist
        from accelerate import Accelerator, PartialState
        from accelerate.state import AcceleratorState
        from accelerate.utils import DistributedType
        from lorakit.training.accelerator import fsdp_on_cpu, fsdp_plugin

        dist.init_process_group("gloo")  # a one-process group: accelerate's own checks see a distributed run
        plugin = fsdp_plugin("cpu")
        accelerator = Accelerator(mixed_precision="no", cpu=True, fsdp_plugin=plugin)
        assert accelerator.distributed_type != DistributedType.FSDP, (
            "accelerate now runs FSDP on CPUs by itself: fsdp_on_cpu can go")
        fsdp_on_cpu(accelerator, plugin)
        # the state accelerate reads is the shared one, so a fresh view sees it too
        assert AcceleratorState().distributed_type == DistributedType.FSDP
        assert AcceleratorState().fsdp_plugin is plugin
        assert PartialState().distributed_type == DistributedType.FSDP
        assert accelerator.is_fsdp2

        class Block(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.linear = torch.nn.Linear(4, 4)

            def forward(self, x):
                return self.linear(x)

        class Model(torch.nn.Module):
            _no_split_modules = ["Block"]

            def __init__(self):
                super().__init__()
                self.blocks = torch.nn.ModuleList([Block(), Block()])

            def forward(self, x):
                for block in self.blocks:
                    x = block(x)
                return x

        model = Model()
        model, _ = accelerator.prepare(model, torch.optim.AdamW(model.parameters()))
        from torch.distributed.tensor import DTensor
        assert all(isinstance(p, DTensor) for p in model.parameters()), "prepare() did not shard with FSDP2"
        print(type(model).__name__)
        dist.destroy_process_group()
    """)
    assert "FSDP" in out  # FSDP2 makes the module's class FSDP<Model>


def test_launcher_on_cpu_lifts_the_bitsandbytes_refusal_and_puts_everything_back(monkeypatch):
    """notebook_launcher still looks both names up in its module (so replacing them there works), and
    launcher_on_cpu replaces them only for CPU runs and only while the block lasts."""
    import types

    import accelerate.launchers as launchers
    from accelerate import notebook_launcher

    from lorakit.training.accelerator import launcher_on_cpu

    assert {"are_libraries_initialized", "print"} <= set(notebook_launcher.__code__.co_names)
    monkeypatch.setitem(sys.modules, "bitsandbytes", sys.modules.get("bitsandbytes", types.ModuleType("bnb")))
    original = launchers.are_libraries_initialized
    assert original("bitsandbytes") == ["bitsandbytes"]  # what makes notebook_launcher refuse to fork
    with launcher_on_cpu("cuda"):
        assert launchers.are_libraries_initialized is original and "print" not in vars(launchers)
    with launcher_on_cpu("cpu"):
        assert launchers.are_libraries_initialized("bitsandbytes", "torch") == ["torch"]
        assert launchers.print("Launching training on 2 CUDAs.") is None
    assert launchers.are_libraries_initialized is original and "print" not in vars(launchers)
