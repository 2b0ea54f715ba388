"""Fit before you run: the run's worst batch, planned and measured on its own device, before step 1.

``check_fit(config)`` builds the run's model and data, takes the worst batch the data will produce (the
longest rows padded together, or the packed rows with the most label tokens), plans it with
``lorakit.sizing.estimate_memory`` and measures one training step on it after a warm-up step (GPU:
``torch.cuda.max_memory_allocated``; CPU: lorakit's tensor tracker). The ``FitReport`` is a ledger of the plan
against the measurement, component by component and at the peak, and says whether the step fits the memory the
run may use (``memory_limit_bytes``, else the free GPU memory or the host's available memory), less a margin of
``FIT_MARGIN``.

``train()`` runs the same check on the run's own model before step 1 (``check_fit``; see ``wanted``), puts the
model back as it was, and refuses a run that would not fit (``DoesNotFit``, a ValueError naming the component at
the peak and a change that fits). ``batch_size="auto"`` takes the largest batch whose worst batch fits
(``lorakit.training.fit_search``): at most ``AUTO_BATCH_CAP`` rows, and with ``target_global_batch_size`` a
divisor of it, gradient accumulation making up the rest.
"""

from __future__ import annotations

import dataclasses
import gc
from dataclasses import dataclass, field
from typing import Any

import torch

from lorakit.sizing.gpus import GPU
from lorakit.training.auto import Choice
from lorakit.training.config import TrainConfig
from lorakit.training.data import Batches
from lorakit.training.fit_measure import StepMeter, memory_limit, preserved, worst_batch, worst_first
from lorakit.training.fit_search import BatchSearch, batch_candidates, search_batch
from lorakit.training.parts import make_scheduler, total_steps_for
from lorakit.units import GIB, MIB

__all__ = ["AUTO_BATCH_CAP", "FIT_MARGIN", "DoesNotFit", "FitReport", "check_fit", "check_limit", "fit_run",
           "provisional", "wanted"]

FIT_MARGIN = 0.05  # of the limit, kept free: allocator fragmentation on a GPU, the interpreter and libraries on a CPU
# The most rows batch_size="auto" takes: on a CPU a larger batch makes each step longer without more tokens/s (the
# matmuls already fill the cores) and the dashboard updates less often; on a GPU beyond this the batch is better
# spent on a longer max_seq_length or left to gradient accumulation.
AUTO_BATCH_CAP = {"cpu": 8, "cuda": 256}
# The ledger's rows: the planner's per-step components (``MemoryEstimate.saved``) against the measured ones.
LEDGER = {"weights": "base weights", "adapter": "trainable weights", "optimizer": "optimizer state",
          "gradients": "gradients", "activations": "saved activations"}
CHECKING = "checking that the run fits: a warm-up and a measured step on its worst batch"


class DoesNotFit(ValueError):
    """The run's step would not fit its memory: raised before step 1, with what to change."""


@dataclass(frozen=True)
class FitReport:
    """The worst batch of a run, planned and measured. Bytes in ``*_bytes``; ``error`` = predicted / measured - 1."""

    device: str
    batch_size: int  # per process; the resolved one when the config asked for "auto"
    gradient_accumulation_steps: int
    rows: int  # the worst batch: rows, tokens per row, real tokens, label tokens and layout
    width: int
    tokens: int
    targets: int
    layout: str
    predicted_bytes: int  # the planner's peak of one step on the worst batch
    measured_bytes: int  # the measured peak
    peak_phase: str  # the planner's moment of the peak (e.g. "fused head", "loss backward")
    peak_component: str  # the planned component that holds the most at that moment
    planned: dict[str, int]  # the planner's components at the peak
    ledger: list[dict]  # {"component", "label", "planned_bytes", "measured_bytes"}: one step's components
    limit_bytes: int
    limit_source: str  # "memory_limit_bytes", "free GPU memory", "available host memory"
    margin: float = FIT_MARGIN
    auto: bool = False  # batch_size was "auto"
    batch_reason: str = ""  # why this batch (for "auto")
    advice: str = ""  # a change that fits (when it does not)
    tried: dict[int, dict] = field(default_factory=dict)  # batch -> {"predicted_bytes", "measured_bytes"}

    @property
    def budget_bytes(self) -> int:
        """The limit less the margin: what the peak may reach."""
        return int(self.limit_bytes * (1 - self.margin))

    @property
    def fits(self) -> bool:
        return self.measured_bytes <= self.budget_bytes

    @property
    def room_bytes(self) -> int:
        """Bytes left under the budget at the measured peak (negative: short by that much)."""
        return self.budget_bytes - self.measured_bytes

    @property
    def error(self) -> float:
        """The planner's error at the peak: predicted / measured - 1."""
        return self.predicted_bytes / max(1, self.measured_bytes) - 1

    def as_dict(self) -> dict[str, Any]:
        """Plain values, JSON-ready, with the derived ones (budget, fits, room, error)."""
        return dict(dataclasses.asdict(self), budget_bytes=self.budget_bytes, fits=self.fits,
                    room_bytes=self.room_bytes, error=self.error, tried={str(k): v for k, v in self.tried.items()})

    def allowed(self) -> str:
        """'2.00 GiB memory_limit_bytes less a 5% margin': where the allowed amount comes from."""
        return f"{amounts(self.limit_bytes)[0]} {self.limit_source} less a {self.margin:.0%} margin"

    def batch_words(self) -> str:
        return f"{self.rows} × {self.width} tokens, {self.layout}"

    def sentence(self) -> str:
        """One line: measured against allowed, and the planner's error."""
        (need, have), planned = amounts(self.measured_bytes, self.budget_bytes), amounts(self.predicted_bytes)[0]
        verdict = (f"fits, {amounts(self.room_bytes)[0]} to spare" if self.fits
                   else f"does not fit, short by {amounts(-self.room_bytes)[0]}")
        return (f"batch {self.batch_size} (worst batch {self.batch_words()}): measured peak {need} of {have} "
                f"allowed, {verdict}; planned {planned} ({self.error:+.1%}), at the {self.peak_phase} moment, "
                f"mostly {self.peak_component}")

    def lines(self) -> list[str]:
        """The ledger as a small text table, then the verdict."""
        rows = [f"{'component':<20}{'planned MiB':>12}{'measured MiB':>14}{'error':>9}"]
        for row in self.ledger + [{"label": f"peak ({self.peak_phase})", "planned_bytes": self.predicted_bytes,
                                   "measured_bytes": self.measured_bytes}]:
            rows.append(f"{row['label']:<20}{_mib(row['planned_bytes']):>12}{_mib(row['measured_bytes']):>14}"
                        f"{_error(row['planned_bytes'], row['measured_bytes']):>9}")
        return [*rows, self.sentence(), *([self.batch_reason] if self.batch_reason else []),
                *([self.advice] if self.advice and not self.fits else [])]

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def refusal(self) -> str:
        """Why the run does not start, and what would fit."""
        need, have = amounts(self.measured_bytes, self.budget_bytes)
        what = ("batch_size='auto': even batch 1 does not fit" if self.auto
                else f"batch_size={self.batch_size} does not fit")
        top = sorted(self.planned.items(), key=lambda item: -item[1])[:2]
        held = ", ".join(f"{name} {amounts(n)[0]}" for name, n in top)
        text = (f"{what}: its worst batch ({self.batch_words()}) measured {need} at its peak, and {have} is "
                f"allowed ({self.allowed()}). The peak is at the {self.peak_phase} moment, mostly {held} "
                "(planned).")
        return f"{text} {self.advice}".strip()


def amounts(*values: int) -> list[str]:
    """Byte amounts in one unit (GiB from 1 GiB up, else MiB), with the fewest decimals that keep their order:
    never "needs 1.9 GiB of 1.9"."""
    unit, size, digits = ("GiB", GIB, 2) if max(abs(v) for v in values) >= GIB else ("MiB", MIB, 1)
    for digits in range(digits, 7):  # noqa: B020 -- the first that keeps every pair's order
        shown = [round(v / size, digits) for v in values]
        if all((a < b) == (x < y) and (a > b) == (x > y)
               for a, x in zip(shown, values, strict=True) for b, y in zip(shown, values, strict=True)):
            break
    return [f"{v / size:.{digits}f} {unit}" for v in values]


def _mib(value: int | None) -> str:
    return "—" if value is None else f"{value / 2**20:.1f}"


def _error(planned: int | None, measured: int | None) -> str:
    return "—" if planned is None or not measured else f"{planned / measured - 1:+.1%}"


# ---- what a run does with it ---------------------------------------------------------------------------------
def wanted(config: TrainConfig, device: str, world: int = 1) -> bool:
    """Whether ``train()`` checks the fit before step 1: check_fit=True; "auto": on a GPU (where running out of
    memory minutes in is the failure this prevents), always for batch_size="auto" and whenever memory_limit_bytes
    is set (a limit nobody checks would be a promise not kept). One process only."""
    if world > 1 or config.check_fit is False:
        return False
    if config.batch_size == "auto" or config.check_fit is True or config.memory_limit_bytes is not None:
        return True
    return config.check_fit == "auto" and device == "cuda"


def provisional(config: TrainConfig) -> TrainConfig:
    """The config the parts are built with: batch 1 while batch_size is "auto" (the check chooses it)."""
    if config.batch_size != "auto":
        return config
    return dataclasses.replace(config, batch_size=1, gradient_accumulation_steps=1, target_global_batch_size=None)


def check_limit(config: TrainConfig, path: str, device: str) -> None:
    """Before anything loads: ValueError when memory_limit_bytes is below the base weights alone (planned)."""
    limit = config.memory_limit_bytes
    if limit is None:
        return
    from lorakit.sizing import estimate_memory
    from lorakit.sizing.advice import suggest_fit

    settings = dict(config.sizing_kwargs("cpu" if device == "cpu" else "cuda"), runtime_overhead_bytes=0)
    if settings["batch_size"] == "auto":
        settings["batch_size"] = 1
    try:
        weights = estimate_memory(path, **settings).weights_bytes
    except ValueError:  # a model the planner cannot describe: the measured check still runs
        return
    if limit >= weights:
        return
    need, have = amounts(weights, limit)
    advice = _advice(suggest_fit(path, GPU("my limit", limit, None), **settings), weights_only=True)
    raise ValueError(f"memory_limit_bytes={limit} ({have}) is below the base weights alone: {config.model} in "
                     f"{config.precision}{_quant_words(config)} holds {need} before a single step. Raise "
                     f"memory_limit_bytes. {advice}".strip())


def _quant_words(config: TrainConfig) -> str:
    return f" with a {config.quantization} base" if config.quant.quantized else ""


def _advice(advice: Any, weights_only: bool = False) -> str:
    """A suggest_fit result as the settings to type (``weights_only``: the weights alone exceed the limit, so a
    shorter max_seq_length would not help)."""
    if not advice.fits:
        return ("Nothing lorakit tries (a quantized base, gradient checkpointing, a smaller batch) fits: use a "
                + ("" if weights_only else "shorter max_seq_length, a ") + "smaller model or more memory.")
    if not advice.changes:
        return ""
    settings = ", ".join(f"{name}={value!r}" for name, value in advice.changes.items())
    return f"What fits: {settings} (planned peak {amounts(advice.estimate.total_bytes)[0]})."


# ---- planning and measuring the worst batch ------------------------------------------------------------------
def plan(config: TrainConfig, parts: Any, worst: Any) -> Any:
    """The planner's estimate of one step on ``worst`` as this run takes it (its resolved choices, its head)."""
    from lorakit.sizing import estimate_memory

    return estimate_memory(parts.model_config, **_plan_settings(config, parts, worst))


def _plan_settings(config: TrainConfig, parts: Any, worst: Any) -> dict[str, Any]:
    kernel = parts.choices["loss_kernel"].value
    settings = dict(config.sizing_kwargs(parts.device, parts.choices["gradient_checkpointing"].value, kernel),
                    batch_size=worst.model_rows, max_seq_length=max(8, worst.width), mask=worst.mask,
                    logit_tokens=worst.logit_tokens(kernel), runtime_overhead_bytes=0)
    if parts.device == "cuda":
        settings["compute_capability"] = tuple(torch.cuda.get_device_capability())
    return settings


def measure_fit(config: TrainConfig, parts: Any) -> tuple[FitReport, BatchSearch]:
    """Plan and measure the worst batch (with batch_size="auto": search the batch); the run's state is put back."""
    limit, source = memory_limit(config, parts)
    budget = int(limit * (1 - FIT_MARGIN))
    order = worst_first(parts.batches)
    auto = config.batch_size == "auto"
    cap = min(AUTO_BATCH_CAP[parts.device], len(order))
    candidates = (batch_candidates(cap, config.target_global_batch_size) if auto else [config.batch_size])
    if not candidates:  # a global batch target with no divisor under the cap: its smallest divisor is 1
        candidates = [1]
    meter, estimates, measured = StepMeter(parts), {}, {}

    def predict(b: int) -> int:
        estimates[b] = plan(config, parts, worst_batch(parts.batches, b, order))
        return estimates[b].total_bytes

    def measure(b: int) -> int:
        worst = worst_batch(parts.batches, b, order)
        if not measured:
            meter.step(worst, {})  # warm-up: creates the optimizer state and whatever kernels allocate once
        measured[b] = meter.measure(worst)
        return measured[b].peak_bytes

    with preserved(parts):
        found = search_batch(candidates, predict, measure, budget)
    chosen = found.batch if found.batch is not None else min(found.measured)
    report = _report(config, parts, chosen, worst_batch(parts.batches, chosen, order), estimates[chosen],
                     measured[chosen], (limit, source), found, cap=cap, rows=len(order))
    return report, found


def _report(config: TrainConfig, parts: Any, batch: int, worst: Any, estimate: Any, measured: Any,
            limit: tuple[int, str], found: BatchSearch, *, cap: int, rows: int) -> FitReport:
    planned = {k: v for k, v in estimate.components().items()}
    ledger = [{"component": name, "label": label, "planned_bytes": estimate.saved[f"{name}_bytes"],
               "measured_bytes": measured.components.get(name)} for name, label in LEDGER.items()]
    target = config.target_global_batch_size
    accumulation = target // batch if (config.batch_size == "auto" and target) else config.gradient_accumulation_steps
    report = FitReport(
        device=parts.device, batch_size=batch, gradient_accumulation_steps=accumulation, rows=worst.rows,
        width=worst.width, tokens=worst.tokens, targets=worst.targets, layout=worst.layout,
        predicted_bytes=estimate.total_bytes, measured_bytes=measured.peak_bytes, peak_phase=estimate.peak_phase,
        peak_component=max(planned, key=planned.get), planned=planned, ledger=ledger, limit_bytes=limit[0],
        limit_source=limit[1], auto=config.batch_size == "auto",
        tried={b: {"predicted_bytes": found.predicted.get(b), "measured_bytes": m}
               for b, m in sorted(found.measured.items())})
    advice = "" if report.fits else _advice_for(config, parts, worst, report)
    return dataclasses.replace(report, advice=advice,
                               batch_reason=_batch_reason(report, found, cap, rows) if report.auto else "")


def _advice_for(config: TrainConfig, parts: Any, worst: Any, report: FitReport) -> str:
    from lorakit.sizing.advice import suggest_fit

    settings = _plan_settings(config, parts, worst)
    gpu = GPU("my limit", report.budget_bytes, settings.get("compute_capability"))
    advice = _advice(suggest_fit(parts.model_config, gpu, **settings))
    if report.auto or report.batch_size == 1:
        return advice
    return f"{advice} Or batch_size='auto' (the largest batch that fits, measured).".strip()


def _batch_reason(report: FitReport, found: BatchSearch, cap: int, rows: int) -> str:
    """Why batch_size="auto" chose this batch, e.g. "batch 12: batch 13 would need 1.93 GiB of 1.90"."""
    b = report.batch_size
    if found.batch is None:
        return f"even batch {b} does not fit"
    if found.next_batch is not None:
        need, have = amounts(found.next_bytes, report.budget_bytes)
        how = "measured" if found.next_measured else f"planned x the error measured at batch {b}"
        text = f"batch {b}: batch {found.next_batch} would need {need} of {have} ({how}; {report.allowed()})"
    else:
        limit = (f"the {report.device.upper()} cap of {AUTO_BATCH_CAP[report.device]}"
                 if cap == AUTO_BATCH_CAP[report.device] else f"all {rows} training rows")
        need, have = amounts(report.measured_bytes, report.budget_bytes)
        text = f"batch {b}: {limit}, at {need} of {have}"
    if report.gradient_accumulation_steps > 1:
        text += (f"; {report.gradient_accumulation_steps} accumulation steps keep the global batch of "
                 f"{b * report.gradient_accumulation_steps}")
    return text


# ---- before step 1, and on its own ---------------------------------------------------------------------------
def fit_run(config: TrainConfig, parts: Any) -> tuple[TrainConfig, Any, FitReport]:
    """The run's check before step 1: (the config with its batch resolved, the parts batched for it, the report).

    DoesNotFit when the worst batch would not fit. The model, optimizer and random state are as before.
    """
    report, _ = measure_fit(config, parts)
    if not report.fits:
        raise DoesNotFit(report.refusal())
    choices = {"check_fit": Choice("fits", report.sentence())}
    if report.auto:
        config = dataclasses.replace(config, batch_size=report.batch_size,
                                     gradient_accumulation_steps=report.gradient_accumulation_steps)
        choices["batch_size"] = Choice(report.batch_size, f"auto: {report.batch_reason}")
        if report.gradient_accumulation_steps > 1:
            choices["gradient_accumulation_steps"] = Choice(
                report.gradient_accumulation_steps, f"auto: keeps target_global_batch_size="
                                                    f"{config.target_global_batch_size}")
        parts = rebatch(parts, config)
    return config, dataclasses.replace(parts, choices={**parts.choices, **choices}), report


def rebatch(parts: Any, config: TrainConfig) -> Any:
    """The parts with batches of config.batch_size (same rows), and the step count and schedule that follow."""
    size = config.batch_size * config.num_processes

    def again(old: Batches | None) -> Batches | None:
        return None if old is None else Batches(old.rows, size, config.seed, old.mode, old.pad_id, old.pin)

    batches = again(parts.batches)
    total = total_steps_for(config, len(batches))
    optimizer = getattr(parts.optimizer, "optimizer", parts.optimizer)
    return dataclasses.replace(parts, batches=batches, eval_batches=again(parts.eval_batches), total_steps=total,
                               scheduler=make_scheduler(config, optimizer, total))


def check_fit(config: TrainConfig) -> FitReport:
    """Build the run's model and data, plan and measure its worst batch on its device; the report (it does not
    raise when the run does not fit: ``report.fits`` says so, ``report.advice`` what would).

    Configuration problems raise ValueError before anything loads, as ``train()`` does. One process's batch:
    num_processes must be 1.
    """
    from lorakit.training.embedded import resolve_model
    from lorakit.training.modeling import check_model_on_meta
    from lorakit.training.parts import build_parts, matmul_mode
    from lorakit.training.preflight import check_before_load

    if config.num_processes != 1:
        raise ValueError(f"check_fit measures one process's step; num_processes={config.num_processes}: check "
                         "the run with num_processes=1 and its per-process batch_size")
    device, _ = check_before_load(config)
    path = resolve_model(config.model)
    check_model_on_meta(config, path)
    check_limit(config, path, device)
    parts = build_parts(provisional(config), device, path)
    try:
        with matmul_mode(config):
            report, _ = measure_fit(config, parts)
    finally:
        del parts
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    return report
