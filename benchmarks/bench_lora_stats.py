"""Comparison 11: what logging the adapter's update statistics (log_lora_stats) costs a run.

The run of notebook 03 (the embedded SmolLM2-135M-Instruct, 210 adapted layers at r=8, the built-in JSON task,
batch 4, fp32), logging every 10 steps, with the statistics on and off. The cost is measured two ways:

* directly: the seconds spent in ``UpdateTracker.measure`` and ``record`` (the QRs, the SVDs and the grid) over
  the run's training-loop time (``summary.train_s``), per repeat. The target is at most 2 %;
* as an interleaved A/B of tokens/s with the statistics on and off (informational: on a shared machine run to
  run noise is larger than the effect).

And the reads: each logging step reads the statistics once ("lora" in ``summary.host_reads``), no other step
does. The quick size is the trainer comparisons' tiny random model: a smoke run, not a measurement.

    python benchmarks/bench_lora_stats.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_trainer as bt  # noqa: E402
import hf_baseline as hb  # noqa: E402
from common import Row, Target, interleave, table_lines  # noqa: E402

BENCH = "11 LoRA update statistics"
STEPS, LOGGING_STEPS = 30, 10


@contextlib.contextmanager
def timed_tracker():
    """Add the seconds of every UpdateTracker.measure / .record call to the yielded list's first item."""
    from lorakit.training.lora_stats import UpdateTracker

    spent = [0.0]
    originals = {name: getattr(UpdateTracker, name) for name in ("measure", "record")}

    def wrap(original):
        def timed(self, *args):
            start = time.perf_counter()
            try:
                return original(self, *args)
            finally:
                spent[0] += time.perf_counter() - start
        return timed

    for name, original in originals.items():
        setattr(UpdateTracker, name, wrap(original))
    try:
        yield spent
    finally:
        for name, original in originals.items():
            setattr(UpdateTracker, name, original)


def _one(path, texts, s, on: bool, **overrides) -> dict:
    with timed_tracker() as spent:
        result = bt.lorakit_train(path, texts, s, log_lora_stats=on, **overrides)
    reads = result.extra["host_reads"]
    return {"tokens_per_s": result.tokens_per_s, "stats_s": spent[0], "reads": reads,
            "train_s": result.extra["train_s"]}


def _setup(quick: bool):
    """(model path, texts, settings, TrainConfig overrides, description)."""
    if quick:
        shape, s = bt._sizes(True)
        s = replace(s, steps=4, logging_steps=2)
        texts, _ = bt.fixed_data(shape, s)
        return bt.model_dir(shape), texts, s, {}, "tiny random model, 4 steps logging every 2 (smoke run)"
    s = hb.RunSettings(steps=STEPS, batch_size=4, learning_rate=1e-3, warmup_steps=2, max_seq_length=256,
                       logging_steps=LOGGING_STEPS, seed=42)
    overrides = {"model": "embedded", "dataset": "builtin-json"}
    return (Path("embedded"), [], s, overrides,
            f"notebook 03's run: embedded SmolLM2-135M, 210 layers at r=8, builtin-json, batch 4, fp32, "
            f"{STEPS} steps logging every {LOGGING_STEPS}")


def run(quick: bool = False, repeats: int = 3) -> list[Row]:
    path, texts, s, overrides, setting = _setup(quick)
    _one(path, texts, replace(s, steps=2, logging_steps=1), True, **overrides)  # warm-up: load, convert, caches
    res = interleave({"on": lambda: _one(path, texts, s, True, **overrides),
                      "off": lambda: _one(path, texts, s, False, **overrides)}, min(repeats, 3))
    on = res["on"]
    reads = on[0]["reads"]
    return [
        Row(BENCH, "statistics' share of the training time", "%", [100 * r["stats_s"] / r["train_s"] for r in on],
            target=Target("<=", 2.0, on="lorakit"),
            note=f"seconds in UpdateTracker.measure + record over summary.train_s; {setting}",
            higher_is_better=False).finish(),
        Row(BENCH, "statistics per logging step", "ms",
            [1000 * r["stats_s"] / max(r["reads"].get("lora", 1), 1) for r in on], note=setting,
            higher_is_better=False).finish(),
        Row(BENCH, "tokens/s with the statistics", "tok/s", [r["tokens_per_s"] for r in on],
            [r["tokens_per_s"] for r in res["off"]], "log_lora_stats=False",
            note="interleaved A/B: informational, run-to-run noise on a shared machine exceeds the effect").finish(),
        Row(BENCH, "statistics reads per logging step", "reads",
            [r["reads"].get("lora", 0) / max(r["reads"].get("log", 1), 1) for r in on],
            target=Target("~=", 1.0, on="lorakit", tol=0.0),
            note=f"summary.host_reads of a run: {reads} (every other step reads nothing: "
                 "tests/test_lora_stats_live.py)").finish(),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("\n".join(table_lines(run(quick=args.quick, repeats=args.repeats))))


if __name__ == "__main__":
    main()
