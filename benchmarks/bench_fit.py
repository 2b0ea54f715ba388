"""Comparison 12: check_fit's plan of the worst batch against its measured step, over a small grid (CPU).

``lorakit.check_fit`` builds the run's model and data, takes the worst batch the data will produce (the longest
rows padded together, the fullest packed rows, or the longest rows flattened without padding), plans it with
``estimate_memory`` and measures one training step on it after a warm-up (CPU: lorakit's tensor tracker; CUDA:
``torch.cuda.max_memory_allocated``). The grid: plain text and prompt/completion data (log-normal lengths,
median 128), padded / packed / padding-free, batch 1 and 4, the fused and the plain head, gradient checkpointing
on one point. The model is the trainer benchmarks' random Llama shape with a one-word-one-token tokenizer.

    python benchmarks/bench_fit.py [--quick]
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import hf_baseline as hb  # noqa: E402
from common import Row, Target, skipped_row  # noqa: E402

BENCH = "12 fit check"


def grid(quick: bool) -> list[dict[str, Any]]:
    """Grid points: data kind, layout, batch, loss kernel, checkpointing, max_seq_length."""
    if quick:
        return [dict(data="text", layout="padded", batch=2, kernel="fused", ckpt=False, seq=64),
                dict(data="sft", layout="packed", batch=1, kernel="plain", ckpt=False, seq=64)]
    points = [dict(data=d, layout=lay, batch=b, kernel=k, ckpt=False, seq=512)
              for d in ("text", "sft") for lay in ("padded", "packed", "padding-free") for b in (1, 4)
              for k in ("fused", "plain")]
    points += [dict(data="sft", layout="padded", batch=4, kernel=k, ckpt=True, seq=512) for k in ("fused", "plain")]
    return points


def _config(point: dict[str, Any], model: Path, data: dict[str, list], out: str):
    from lorakit.training import TrainConfig

    return TrainConfig(model=str(model), dataset=data[point["data"]], batch_size=point["batch"],
                       max_seq_length=point["seq"], packing=point["layout"] == "packed",
                       padding_free=point["layout"] == "padding-free", loss_kernel=point["kernel"],
                       gradient_checkpointing=point["ckpt"], eval_split=0.0, device="cpu", output_dir=out, seed=0)


def records(quick: bool = False) -> list[dict[str, Any]]:
    """One record per grid point: the worst batch, predicted and measured peak bytes, the planner's moment."""
    import bench_trainer

    from lorakit.training import check_fit

    shape = bench_trainer.TINY if quick else hb.Shape()
    model = bench_trainer.model_dir(shape)
    n, longest = (24, 64) if quick else (64, 512)
    data = {"text": bench_trainer.variable_data(shape, n, longest, seed=0)[0],
            "sft": bench_trainer.sft_data(shape, n, longest, seed=0)[0]}
    out = tempfile.mkdtemp(prefix="lorakit-bench-fit-")
    recs = []
    try:
        for point in grid(quick):
            report = check_fit(_config(point, model, data, str(Path(out) / "run")))
            recs.append(dict(point, rows=report.rows, width=report.width, targets=report.targets,
                             predicted_bytes=report.predicted_bytes, measured_bytes=report.measured_bytes,
                             phase=report.peak_phase, ratio=report.predicted_bytes / report.measured_bytes))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return recs


def rows_from_records(recs: list[dict[str, Any]]) -> list[Row]:
    """Predicted ÷ measured peak over the grid: its median, and the largest |error| in %."""
    if not recs:
        return [skipped_row(BENCH, "no grid point")]
    ratios = [r["ratio"] for r in recs]
    worst = max(recs, key=lambda r: abs(r["ratio"] - 1))
    where = f"{worst['data']}, {worst['layout']}, batch {worst['batch']}, {worst['kernel']} head" + (
        ", checkpointing" if worst["ckpt"] else "")
    return [
        Row(BENCH, "predicted ÷ measured peak: median", "ratio", [statistics.median(ratios)],
            target=Target("~=", 1.0, on="lorakit", tol=0.01), note=f"{len(recs)} worst batches, CPU tracker").finish(),
        Row(BENCH, "predicted ÷ measured peak: max abs error", "%", [100 * abs(worst["ratio"] - 1)],
            target=Target("<=", 5.0, on="lorakit"), note=f"at {where}", higher_is_better=False).finish(),
    ]


def run(quick: bool = False, repeats: int = 1) -> list[Row]:
    """The benchmark's rows (byte counts are deterministic: ``repeats`` changes nothing)."""
    return rows_from_records(records(quick))


def table(recs: list[dict[str, Any]]) -> list[str]:
    head = (f"{'data':5} {'layout':13} {'b':>2} {'head':6} {'ckpt':5} | {'rows x width':>12} {'targets':>7} | "
            f"{'measured':>9} {'predicted':>9} {'pred/meas':>9} | peak at")
    lines = ["CPU: measured by lorakit's tensor tracker; MiB", head, "-" * len(head)]
    for r in recs:
        lines.append(f"{r['data']:5} {r['layout']:13} {r['batch']:>2} {r['kernel']:6} {r['ckpt']!s:5} | "
                     f"{r['rows']:>4} x {r['width']:<6} {r['targets']:>7} | {r['measured_bytes'] / 2**20:9.2f} "
                     f"{r['predicted_bytes'] / 2**20:9.2f} {r['ratio']:9.4f} | {r['phase']}")
    return lines


def main() -> None:
    from common import records_main

    records_main(__doc__, "two grid points on a tiny model", records, table, rows_from_records)


if __name__ == "__main__":
    main()
