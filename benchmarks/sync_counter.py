"""Count host-device syncs per training step.

On a GPU, reading a tensor's value (`.item()`, `.tolist()`, `.cpu()`, `float(t)`, `if t:` ...) waits for the
device. On a CPU nothing waits, but the same calls can be counted: `SyncCounter` wraps them on
`torch.Tensor` for the duration of a run (and, on CUDA, counts only CUDA tensors' reads and also records
`torch.cuda.set_sync_debug_mode("warn")` warnings, which catch syncs made inside C++ ops). On a CPU every
tensor is a host tensor, so reads in code that handles host-side batches by design (HOST_SIDE) are skipped;
everything else is counted as a read that would sync on a GPU. Step boundaries come from a global optimizer-step hook,
logging steps from the sink's `on_log`, so each sync is attributed to the step it happened in; syncs made
between optimizer step k and `on_log(step=k)` belong to logging step k.
"""

from __future__ import annotations

import sys
import warnings
from collections import Counter
from dataclasses import dataclass, field

WRAPPED = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__")
# Files whose reads are of host tensors by design (lorakit counts batch tokens on the CPU, before the copy).
HOST_SIDE = ("lorakit/training/data.py",)


@dataclass
class SyncReport:
    """Syncs per step, split into logging and non-logging steps; `where` counts call sites (file:line name)."""

    per_step: dict[int, int]
    logging_steps: list[int]
    setup: int
    where: Counter = field(default_factory=Counter)

    @property
    def non_logging(self) -> dict[int, int]:
        """Steps without a log record -> syncs in that step."""
        return {k: v for k, v in self.per_step.items() if k not in self.logging_steps}

    @property
    def max_non_logging(self) -> int:
        return max(self.non_logging.values(), default=0)

    @property
    def mean_logging(self) -> float:
        counts = [self.per_step.get(k, 0) for k in self.logging_steps]
        return sum(counts) / len(counts) if counts else 0.0


class SyncCounter:
    """Context manager; also a MetricsSink-like object (`on_train_start`, `on_log`) for the run it watches."""

    def __init__(self, cuda_warnings: bool = False) -> None:
        self.events: list[tuple[str, object]] = []
        self.cuda_warnings = cuda_warnings
        self._saved: dict[str, object] = {}
        self._own: dict[str, bool] = {}
        self._hook = None
        self._warn_ctx = None

    # -- sink side -------------------------------------------------------------------------------------
    def on_train_start(self, info: dict) -> None:
        self.events.append(("start", None))

    def on_log(self, record: dict) -> None:
        self.events.append(("log", int(record["step"])))

    def on_eval(self, record: dict) -> None:
        pass

    def on_train_end(self, summary) -> None:
        self.events.append(("end", None))

    # -- hf TrainerCallback side ---------------------------------------------------------------------------
    def hf_callback(self):
        """A transformers TrainerCallback feeding the same events (for counting the baseline's syncs)."""
        from transformers import TrainerCallback

        counter = self

        class _Cb(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):
                counter.on_train_start({})

            def on_log(self, args, state, control, logs=None, **kw):
                if logs and "loss" in logs:
                    counter.on_log({"step": state.global_step})

        return _Cb()

    # -- counting --------------------------------------------------------------------------------------
    def _wrap(self, name: str, original):
        events, only_cuda, host_side = self.events, self.cuda_warnings, HOST_SIDE

        def wrapper(tensor, *args, **kwargs):
            caller = sys._getframe(1)
            path = caller.f_code.co_filename
            # On a GPU only device tensors can sync; on a CPU, skip code that works on host tensors by design.
            if not (only_cuda and not tensor.is_cuda) and not path.endswith(host_side):
                # under CUDA the sync itself is counted from the debug-mode warning; this only names the site
                events.append(("site" if only_cuda else "sync", f"{path.rsplit('/', 1)[-1]}:{caller.f_lineno} {name}"))
            return original(tensor, *args, **kwargs)

        return wrapper

    def __enter__(self) -> SyncCounter:
        import torch

        for name in WRAPPED:
            self._own[name] = name in vars(torch.Tensor)  # else inherited from the C base: delete on exit
            self._saved[name] = getattr(torch.Tensor, name)
            setattr(torch.Tensor, name, self._wrap(name, self._saved[name]))
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self._hook = register_optimizer_step_post_hook(
            lambda *a, **k: self.events.append(("opt", None))
        )
        if self.cuda_warnings:
            self._enter_cuda_warnings()
        return self

    def _enter_cuda_warnings(self) -> None:
        import torch

        self._warn_ctx = warnings.catch_warnings()
        self._warn_ctx.__enter__()
        warnings.simplefilter("always")
        previous = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if "synchroniz" in str(message):
                self.events.append(("sync", f"cuda:{filename.rsplit('/', 1)[-1]}:{lineno}"))
            else:
                previous(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        torch.cuda.set_sync_debug_mode("warn")

    def __exit__(self, *exc) -> None:
        import torch

        for name, original in self._saved.items():
            if self._own[name]:
                setattr(torch.Tensor, name, original)
            else:
                delattr(torch.Tensor, name)
        self._saved.clear()
        if self._hook is not None:
            self._hook.remove()
        if self._warn_ctx is not None:
            torch.cuda.set_sync_debug_mode(0)
            self._warn_ctx.__exit__(*exc)

    def report(self) -> SyncReport:
        """Attribute every sync after on_train_start to a step (see module docstring)."""
        done, started = 0, False
        log_at: dict[int, int] = {}  # step -> event index of its on_log
        opt_at: dict[int, int] = {}  # step -> event index of its optimizer step
        for i, (kind, payload) in enumerate(self.events):
            if kind == "opt":
                done += 1
                opt_at[done] = i
            elif kind == "log":
                log_at[payload] = i
        per_step: Counter = Counter()
        where: Counter = Counter()
        setup = done = 0
        for i, (kind, payload) in enumerate(self.events):
            if kind == "start":
                started = True
            elif kind == "opt":
                done += 1
            elif kind == "sync" and not started:
                setup += 1
            elif kind in ("sync", "site") and started:
                logs_now = done in log_at and log_at[done] > i and opt_at.get(done + 1, 1 << 62) > log_at[done]
                step = done if logs_now else done + 1
                if step <= len(opt_at):
                    per_step[step] += kind == "sync"
                    where[payload] += 1
        steps = {k: per_step.get(k, 0) for k in range(1, len(opt_at) + 1)}
        return SyncReport(steps, sorted(log_at), setup, where)
