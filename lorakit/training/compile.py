"""Regional compilation: torch.compile each repeated decoder block in place, nothing else.

Why only the blocks: they are the same code N times, so dynamo compiles one graph and reuses it (seconds,
where compiling the whole model took 72 s on an H200), the output head and the loss stay outside (a fused
loss kernel runs there, and liger-kernel's Triton kernels under torch.compile crashed a Trainer on an
H200), and parameter names do not change (``module.compile()`` wraps ``forward`` in place), so adapters and
checkpoints are saved exactly as without compilation.

``compile="auto"`` decides after two eager steps: it compiles when the steps left would save more than the
compile costs, with the compile time measured on this machine for this architecture (kept in
``$LORAKIT_CACHE_DIR/compile_times.json``) or a conservative default before the first measurement.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from lorakit.training.auto import Choice

BACKEND = "inductor"  # tests use "aot_eager": the same dynamo path without generating C++/Triton code
DEFAULT_COMPILE_S = 60.0  # assumed before a compile of this architecture was measured here
ASSUMED_SPEEDUP = 1.5  # steps after compiling (measured 1.66x for the whole model on an H200, 1B shape)


def decoder_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated decoder blocks: the longest ModuleList of the model (empty if there is none)."""
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    return list(max(lists, key=len)) if lists else []


def compile_blocks(model: torch.nn.Module) -> int:
    """Compile every decoder block in place (lazily: the first forward compiles); returns how many."""
    blocks = decoder_blocks(model)
    for block in blocks:
        block.compile(backend=BACKEND, dynamic=None)  # None: static first, dynamic after a shape change
    return len(blocks)


def uncompile_blocks(model: torch.nn.Module) -> None:
    """Back to eager (after a compile error): the blocks' original forward, nothing recompiled."""
    for block in decoder_blocks(model):
        block._compiled_call_impl = None


def is_compile_error(exc: BaseException) -> bool:
    """An error raised by dynamo or inductor (as opposed to one of the model itself)."""
    module = type(exc).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor")) or "BackendCompilerFailed" in type(exc).__name__


def arch_key(model_config: Any, device: str, precision: str, quantization: str) -> str:
    """What the compile time depends on: the device, the block's shape and dtype, the base's storage."""
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    shape = [getattr(model_config, k, None) for k in ("model_type", "hidden_size", "intermediate_size",
                                                        "num_attention_heads", "num_key_value_heads")]
    return "|".join(map(str, [name, *shape, precision, quantization]))


def _times_file() -> Path:
    from lorakit.training.embedded import cache_dir

    return Path(cache_dir()) / "compile_times.json"


def measured_compile_s(key: str) -> float | None:
    """The last compile time measured on this machine for this key, if any."""
    try:
        return float(json.loads(_times_file().read_text(encoding="utf-8"))[key])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember_compile_s(key: str, seconds: float) -> None:
    """Keep a measured compile time for later "auto" decisions (best effort: a read-only cache is fine)."""
    path = _times_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        data[key] = round(seconds, 2)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except (OSError, ValueError):
        pass


def pays_back(step_s: float, steps_left: int, compile_s: float, speedup: float = ASSUMED_SPEEDUP) -> bool:
    """Whether compiling now saves more time over the steps left than the compile costs."""
    return steps_left * step_s * (1 - 1 / speedup) > compile_s


class BlockCompiler:
    """The run's compile setting in action: compile now, after two timed eager steps ("auto"), or never.

    The loop calls ``before_step``/``after_step`` around every optimizer step and ``recover`` when a step
    raises; ``choice`` says what was decided and why (it changes once when "auto" decides).
    """

    def __init__(self, setting: bool | str, device: str, model: torch.nn.Module, key: str, emit) -> None:
        self.device, self.model, self.key, self.emit = device, model, key, emit
        self.compiled = False
        self.compile_s: float | None = None
        self._steps_timed: list[float] = []  # seconds of the timed steps (eager ones for auto, then compiled)
        self._start = 0.0
        self._deciding = setting == "auto" and device == "cuda"
        if setting is True:
            self.choice = Choice(True, "set in the config")
        elif setting == "auto" and device != "cuda":
            self.choice = Choice(False, "auto: off on the CPU (regional compilation was measured slower "
                                        "than eager there; see benchmarks/README.md)")
        elif setting == "auto":
            self.choice = Choice(False, "auto: decided after two eager steps")
        else:
            self.choice = Choice(False, "set in the config")
        if setting is True:
            self._compile_now()

    @property
    def timing(self) -> bool:
        """Whether the current steps are timed (two eager steps for auto, the first two compiled ones)."""
        return self._deciding or (self.compiled and self.compile_s is None)

    def before_step(self) -> None:
        if self.timing:
            self._sync()
            self._start = time.perf_counter()

    def after_step(self, steps_left: int) -> None:
        if not self.timing:
            return
        self._sync()
        self._steps_timed.append(time.perf_counter() - self._start)
        if len(self._steps_timed) < 2:
            return
        if self._deciding:
            self._decide(self._steps_timed[-1], steps_left)
        elif self.compiled:
            first, second = self._steps_timed[-2:]
            self.compile_s = max(first - second, 0.0)
            remember_compile_s(self.key, self.compile_s)
            self.emit("on_phase", "training", f"compiled the decoder blocks in {self.compile_s:.1f} s")

    def _decide(self, step_s: float, steps_left: int) -> None:
        self._deciding, self._steps_timed = False, []
        known = measured_compile_s(self.key)
        compile_s = known if known is not None else DEFAULT_COMPILE_S
        source = "measured here" if known is not None else "assumed"
        saving = steps_left * step_s * (1 - 1 / ASSUMED_SPEEDUP)
        verdict = pays_back(step_s, steps_left, compile_s)
        self.choice = Choice(verdict, f"auto: {'on' if verdict else 'off'}, {steps_left} steps of {step_s:.2f} s "
                                      f"left save about {saving:.0f} s against a compile of {compile_s:.0f} s "
                                      f"({source})")
        if verdict:
            self._compile_now()

    def _compile_now(self) -> None:
        from lorakit.training.liger import liger_applied

        if liger_applied(self.model):  # Triton kernels under torch.compile crashed a Trainer on an H200
            self.choice = Choice(False, "not compiled: liger-kernel's kernels are inside the decoder blocks")
            return
        n = compile_blocks(self.model)
        self.compiled = n > 0
        if self.compiled:
            self.emit("on_phase", "compiling", f"compiling {n} decoder blocks (the next step takes longer)")

    def recover(self, exc: BaseException) -> bool:
        """After a failed step: if compilation caused it, go back to eager and say so; True if handled."""
        if not (self.compiled and is_compile_error(exc)):
            return False
        uncompile_blocks(self.model)
        self.compiled, self._steps_timed = False, []
        self.choice = Choice(False, f"compile failed, running eager: {type(exc).__name__}: {str(exc)[:200]}")
        return True

    def _sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()  # only on the few timed steps: the wall clock must see the GPU's work
