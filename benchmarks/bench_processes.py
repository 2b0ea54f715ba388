"""Comparison 9: two CPU processes (DDP over gloo, batch 2 each) against one process (batch 4).

The same global batches, so the loss curves must agree (target: 1e-4 relative at every step); the time is
what two processes cost or save on this machine. Both sides run `lorakit.train` on the trainer comparisons'
random Llama-shaped model; the two-process run forks its ranks from this process through accelerate's
notebook_launcher, as a notebook does. Each process gets half of torch's threads, so on a small CPU the two
processes share the same cores: this is a check of the code path and of its overhead, not a speed-up claim
(on GPUs each process has a device of its own).

    python benchmarks/bench_processes.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_trainer as bt  # noqa: E402
from common import Row, Target, interleave, table_lines  # noqa: E402

BENCH = "9 two processes vs one"


class _Records:
    """Keeps the logged records (rank 0's, relayed to this process for the two-process run)."""

    def __init__(self) -> None:
        self.logs: list[dict] = []

    def on_log(self, record: dict) -> None:
        self.logs.append(record)


def _run(path, texts, s, processes: int) -> dict:
    """One run: wall seconds of the whole train() call, training tokens/s (steps 2..n, rank 0's clock), losses."""
    from lorakit.training import train

    out = tempfile.mkdtemp(prefix=f"lorakit-bench-p{processes}-")
    sink = _Records()
    base = bt.lorakit_config(path, texts, s, out)
    config = replace(base, batch_size=s.batch_size // processes, num_processes=processes, device="cpu")
    t0 = time.perf_counter()
    try:
        summary = train(config, sinks=(sink,))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    wall = time.perf_counter() - t0
    if summary.status != "completed":
        raise RuntimeError(f"{processes}-process run ended {summary.status}: {summary.message}")
    first, last = sink.logs[0], sink.logs[-1]
    tokens_per_s = (last["tokens_seen"] - first["tokens_seen"]) / (last["elapsed_s"] - first["elapsed_s"])
    return {"wall_s": wall, "tokens_per_s": tokens_per_s, "losses": [r["loss"] for r in sink.logs]}


def run(quick: bool = False, repeats: int = 3) -> list[Row]:
    shape, s = bt._sizes(quick)
    s = replace(s, batch_size=4, logging_steps=1)
    path = bt.model_dir(shape)
    texts, _ = bt.fixed_data(shape, s)
    if not quick:  # first-call costs (imports, the fork's first page copies) hit neither timed side
        _run(path, texts, replace(s, steps=2), 2), _run(path, texts, replace(s, steps=2), 1)
    res = interleave({"two": lambda: _run(path, texts, s, 2), "one": lambda: _run(path, texts, s, 1)}, repeats)
    diffs = [max(abs(a - b) / abs(b) for a, b in zip(two["losses"], one["losses"], strict=True))
             for two, one in zip(res["two"], res["one"], strict=True)]
    setting = (f"hidden {shape.hidden_size}, {shape.num_hidden_layers} layers, seq {s.max_seq_length}, global "
               f"batch {s.batch_size}, {s.steps} steps, fp32, CPU")
    return [
        Row(BENCH, "max rel. loss difference per step", "ratio", diffs, target=Target("<=", 1e-4, on="lorakit"),
            note="same global batches: ≈ 0 expected", higher_is_better=False).finish(),
        Row(BENCH, "wall time of train() (start, load, train, save)", "s", [r["wall_s"] for r in res["two"]],
            [r["wall_s"] for r in res["one"]], "1 process", note=setting, higher_is_better=False).finish(),
        Row(BENCH, "training tokens/s (steps 2..n)", "tok/s", [r["tokens_per_s"] for r in res["two"]],
            [r["tokens_per_s"] for r in res["one"]], "1 process").finish(),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print("\n".join(table_lines(run(args.quick, args.repeats))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
