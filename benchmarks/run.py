"""One command for every lorakit benchmark: runs the comparisons, prints one table of ratios and saves it.

    python benchmarks/run.py [--quick] [--repeats N] [--only NAME,...] [--out DIR]

Ratios are lorakit ÷ baseline, the median of the per-repeat ratios of interleaved runs (A B A B ...); the
spread column is the min–max of those ratios (of lorakit's values where there is no baseline). Each
row's target says which way is better. Results go to <out>/<UTC date>-<host kind>.md and .json together
with a description of the machine and its load average before and after.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, Row, machine_info, skipped_row, table_lines, write_results  # noqa: E402


def _trainer(name: str) -> Callable[[bool, int], list[Row]]:
    def run(quick: bool, repeats: int) -> list[Row]:
        import bench_trainer

        return getattr(bench_trainer, name)(quick=quick, repeats=repeats)

    return run


def _module(name: str) -> Callable[[bool, int], list[Row]]:
    def run(quick: bool, repeats: int) -> list[Row]:
        import importlib

        return importlib.import_module(name).run(quick=quick, repeats=repeats)

    return run


# name -> (what it compares, runner), in the order of the README's table
BENCHMARKS: dict[str, tuple[str, Callable[[bool, int], list[Row]]]] = {
    "trainer": ("1 lorakit loop vs transformers.Trainer + peft, fixed length", _trainer("run_fixed")),
    "packing": ("2 lorakit packing vs Trainer padding, variable length", _trainer("run_packing")),
    "dashboard": ("3 LiveDashboard overhead and device syncs", _trainer("run_dashboard")),
    "compile": ("10 compiled decoder blocks vs eager (CPU: informational)", _trainer("run_compile")),
    "planner": ("4 memory planner vs measured", _module("memory_planner")),
    "float_explorer": ("5 FloatExplorer bit click latency", _module("bench_float_explorer")),
    "lora_calculator": ("5 LoraCalculator update latency", _module("bench_lora_calculator")),
    "widget_latency": ("5 click to screen in a browser, both widgets", _module("bench_widget_latency")),
    "quantization": ("6 NF4/FP4/INT8 error vs bitsandbytes", _module("bench_quantization")),
    "load": ("7 embedded model load, first and cached", _module("bench_embedded_load")),
    "fused_head": ("8 fused output head vs plain head", _module("bench_fused_head")),
    "processes": ("9 two CPU processes (DDP, gloo) vs one, same global batch", _module("bench_processes")),
    "lora_stats": ("11 LoRA update statistics (log_lora_stats): cost and reads", _module("bench_lora_stats")),
    "fit": ("12 check_fit: planned vs measured peak of worst batches (CPU)", _module("bench_fit")),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few steps (a smoke run, not a measurement)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 5, quick 2)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where the .md/.json results go")
    parser.add_argument("--no-save", action="store_true", help="print the table only")
    parser.add_argument("--note", default="", help="a remark saved with the machine description (e.g. other load)")
    parser.add_argument("--tag", default="", help="appended to the results file name (e.g. a partial rerun)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice); fewer is steadier on a busy machine")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"--only: unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    args.names = names
    args.repeats = args.repeats if args.repeats is not None else (2 if args.quick else 5)
    if args.repeats < 1:
        parser.error(f"--repeats={args.repeats} must be >= 1")
    return args


def run_benchmarks(names: list[str], quick: bool, repeats: int) -> list[Row]:
    """Run the named benchmarks in order; a failing one becomes an 'error' row and the rest still run."""
    rows: list[Row] = []
    for name in names:
        title, runner = BENCHMARKS[name]
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {title}", file=sys.stderr, flush=True)
        try:
            rows.extend(runner(quick, repeats))
        except Exception as exc:  # keep the other benchmarks' results; the table says what broke
            traceback.print_exc()
            row = skipped_row(title.split(" ", 1)[0] + " " + name, f"{type(exc).__name__}: {exc}")
            row.status = "error"
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MPLBACKEND", "Agg")  # the dashboard draws headless
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    start = machine_info()
    t0 = time.perf_counter()
    rows = run_benchmarks(args.names, args.quick, args.repeats)
    info = machine_info()
    info["loadavg_start"], info["loadavg_end"] = start["loadavg"], info.pop("loadavg")
    info["utc_start"] = start["utc"]
    info["wall_s"] = round(time.perf_counter() - t0, 1)
    info["mode"] = f"{'quick' if args.quick else 'full'}, repeats={args.repeats}, only={','.join(args.names)}"
    if args.note:
        info["note"] = args.note
    print("\n".join(table_lines(rows)))
    if not args.no_save:
        path = write_results(rows, info, args.out, suffix=f"-{args.tag}" if args.tag else "")
        print(f"\nsaved {path} and {path.with_suffix('.json').name}")
    return 1 if any(r.status == "error" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
