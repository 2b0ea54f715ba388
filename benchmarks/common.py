"""Shared benchmark plumbing: interleaved repeats, summary statistics, result rows, tables, machine info."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "numpy", "ml_dtypes", "lorakit")


# --------------------------------------------------------------------------- timing


def interleave(candidates: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[Any]]:
    """Call every candidate once per round, rounds in order A B A B ..., so machine drift hits all alike."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats!r} must be >= 1")
    results: dict[str, list[Any]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            results[name].append(fn())
    return results


def time_call(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Wall-clock seconds of `repeats` calls of `fn` (perf_counter)."""
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def median(values: Iterable[float]) -> float:
    """Median of finite values (nan when there are none)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return statistics.median(vals) if vals else math.nan


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of the samples by nearest rank (nan when there are none)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else math.nan


def spread(values: Iterable[float]) -> tuple[float, float]:
    """(min, max) of finite values, (nan, nan) when there are none."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return (min(vals), max(vals)) if vals else (math.nan, math.nan)


# --------------------------------------------------------------------------- rows and targets


@dataclass(frozen=True)
class Target:
    """A pass threshold: `value op bound`, applied to the row's ratio or to lorakit's own value."""

    op: str  # ">=", "<=", ">", "<" or "~=" (|x - bound| <= tol)
    bound: float
    on: str = "ratio"  # "ratio" or "lorakit"
    tol: float = 0.0

    def __post_init__(self) -> None:
        if self.op not in (">=", "<=", ">", "<", "~="):
            raise ValueError(f"Target.op={self.op!r}; allowed: '>=', '<=', '>', '<', '~='")
        if self.on not in ("ratio", "lorakit"):
            raise ValueError(f"Target.on={self.on!r}; allowed: 'ratio', 'lorakit'")

    def met(self, value: float) -> bool:
        """Whether `value` meets the target."""
        if self.op == ">=":
            return value >= self.bound
        if self.op == "<=":
            return value <= self.bound
        if self.op == ">":
            return value > self.bound
        if self.op == "<":
            return value < self.bound
        return abs(value - self.bound) <= self.tol

    def text(self) -> str:
        """Short human form, e.g. 'ratio >= 1.10'."""
        bound = f"{self.bound:g}" + (f" ± {self.tol:g}" if self.op == "~=" else "")
        return f"{self.on} {self.op.replace('~=', '≈')} {bound}"


@dataclass
class Row:
    """One line of the results table; `values`/`base_values` hold the per-repeat measurements."""

    benchmark: str
    metric: str
    unit: str
    values: list[float]
    base_values: list[float] = field(default_factory=list)
    baseline: str = ""
    target: Target | None = None
    note: str = ""
    higher_is_better: bool = True

    # derived, filled by finish()
    lorakit: float = math.nan
    base: float = math.nan
    ratio: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    status: str = "info"

    def finish(self) -> Row:
        """Compute medians, the paired ratio (median of per-repeat lorakit/baseline) and the status."""
        self.lorakit = median(self.values)
        if self.base_values:
            self.base = median(self.base_values)
            pairs = [a / b for a, b in zip(self.values, self.base_values, strict=False) if b]
            self.ratio = median(pairs)
            self.lo, self.hi = spread(pairs)
        else:
            self.lo, self.hi = spread(self.values)
        self.status = _status(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (nan becomes None)."""
        d = asdict(self)
        d["target"] = self.target.text() if self.target else None
        return _nan_to_none(d)


def _status(row: Row) -> str:
    if not row.values or not math.isfinite(row.lorakit):
        return "error"
    if row.target is None:
        return "info"
    value = row.ratio if row.target.on == "ratio" else row.lorakit
    if not math.isfinite(value):
        return "error"
    return "pass" if row.target.met(value) else "short"


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    return obj


def skipped_row(benchmark: str, why: str) -> Row:
    """A row saying a benchmark could not run (missing module, unsupported machine) and why."""
    row = Row(benchmark=benchmark, metric="-", unit="", values=[], note=why)
    row.status = "skipped"
    return row


def latency_rows(bench: str, result: dict[str, Any], target_ms: float) -> list[Row]:
    """One row per scalar '*_ms' statistic of a widget benchmark; the target applies to the handler-only
    figures (those with drawing or rendering are shown for insight)."""
    rows = []
    for key, value in result.items():
        if not key.endswith("_ms") or key == "target_ms" or not isinstance(value, (int, float)):
            continue
        drawn = "draw" in key or "render" in key
        target = None if drawn else Target("<=", target_ms, on="lorakit")
        note = "includes drawing the picture; the target excludes rendering" if drawn else ""
        rows.append(Row(bench, key.removesuffix("_ms"), "ms", [float(value)], target=target, note=note,
                        higher_is_better=False).finish())
    return rows


# --------------------------------------------------------------------------- formatting


def fmt(x: float) -> str:
    """Compact number: 3 significant digits, '-' for missing."""
    if x is None or not math.isfinite(x):
        return "-"
    if x == 0:
        return "0"
    if abs(x) >= 1e4 or abs(x) < 1e-3:
        return f"{x:.3g}"
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def fmt_ratio(x: float) -> str:
    """A ratio with 3 decimals (so 1.000 and 0.998 differ), else as fmt."""
    if x is None or not math.isfinite(x) or not 0.01 <= abs(x) < 1000:
        return fmt(x)
    return f"{x:.3f}"


HEADER = ("benchmark", "metric", "lorakit", "baseline", "ratio lk÷base", "spread (min–max)", "n", "target", "result")


def _spread_text(r: Row) -> str:
    if not r.values:
        return "-"
    f = fmt_ratio if r.base_values else fmt
    return f"{f(r.lo)}–{f(r.hi)}"


def table_lines(rows: Sequence[Row]) -> list[str]:
    """The results as a markdown table (one line per row), then the notes."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        base = f"{fmt(r.base)} ({r.baseline})" if r.baseline else "-"
        cells = (
            r.benchmark,
            f"{r.metric} [{r.unit}]" if r.unit else r.metric,
            fmt(r.lorakit),
            base,
            fmt_ratio(r.ratio),
            _spread_text(r),
            str(len(r.values)),
            r.target.text() if r.target else "-",
            r.status,
        )
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- **{r.benchmark} / {r.metric}**: {r.note}" for r in rows if r.note]
    return lines + ([""] + notes if notes else [])


# --------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return math.nan


def _gpu() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(0)


def _git_revision() -> str | None:
    """The checkout's commit (short hash), '+dirty' when tracked files differ from it; None outside git."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty else "")


def machine_info() -> dict[str, Any]:
    """CPU model, cores, RAM, package versions, GPU (if any), load average, time (UTC)."""
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    info: dict[str, Any] = {
        "utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "ram_gib": round(_ram_gib(), 1),
        "python": platform.python_version(),
        "versions": versions,
        "gpu": _gpu(),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    info["git"] = _git_revision()
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def host_kind(info: dict[str, Any]) -> str:
    """A file-name-safe machine tag: the GPU name, else 'cpu-<cores>c'."""
    if info.get("gpu"):
        return "".join(c if c.isalnum() else "-" for c in info["gpu"].lower()).strip("-")
    return f"cpu-{info.get('cpu_cores')}c"


def write_results(rows: Sequence[Row], info: dict[str, Any], directory: Path = RESULTS_DIR, title: str = "",
                  suffix: str = "") -> Path:
    """Write `<date>-<host-kind><suffix>.md` and `.json` into `directory`; return the markdown path."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{info['utc'][:10]}-{host_kind(info)}{suffix}"
    md = [f"# {title or 'lorakit benchmarks'} — {info['utc']}", "", "## Machine", ""]
    md += [f"- {k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in info.items()]
    md += ["", "## Results", "", *table_lines(rows), ""]
    path = directory / f"{stem}.md"
    path.write_text("\n".join(md))
    payload = {"machine": info, "rows": [r.to_dict() for r in rows]}
    (directory / f"{stem}.json").write_text(json.dumps(payload, indent=1))
    return path


def records_main(doc: str, quick_help: str, records: Callable, table: Callable, rows_from_records: Callable,
                 argv: Sequence[str] | None = None) -> None:
    """The command line of a benchmark that measures records: ``--quick``, then its own table of the records and the
    rows table (memory_planner.py, bench_fit.py)."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    recs = records(parser.parse_args(argv).quick)
    print("\n".join(table(recs)))
    print()
    print("\n".join(table_lines(rows_from_records(recs))))
