"""Smoke tests of benchmarks/: each benchmark runs at tiny sizes and yields well-formed, finite rows.

No timing is asserted here (timings belong in benchmarks/results/); what is asserted is the harness's
arithmetic, the sync counter's step attribution, and facts that make a comparison fair (identical losses).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH_DIR))

import common  # noqa: E402
from common import Row, Target  # noqa: E402

STATUSES = {"pass", "short", "info", "skipped", "error"}


def assert_rows_ok(rows: list[Row]) -> None:
    """Every row has a name, finite measurements, a consistent ratio and a known status."""
    assert rows
    for r in rows:
        assert r.status in STATUSES and r.status != "error", (r.benchmark, r.metric, r.note)
        if r.status == "skipped":
            continue
        assert r.benchmark and r.metric
        assert r.values and all(math.isfinite(v) for v in r.values), (r.metric, r.values)
        assert all(math.isfinite(v) for v in r.base_values), (r.metric, r.base_values)
        if r.base_values:
            assert math.isfinite(r.ratio) and r.lo <= r.ratio <= r.hi
        json.dumps(r.to_dict())
    lines = common.table_lines(rows)
    assert all(line.count("|") == len(common.HEADER) + 1 for line in lines if line.startswith("|"))


# --------------------------------------------------------------------------- harness arithmetic


def test_interleave_runs_rounds_in_order():
    calls = []
    out = common.interleave({"a": lambda: calls.append("a") or 1, "b": lambda: calls.append("b") or 2}, 3)
    assert calls == ["a", "b"] * 3
    assert out == {"a": [1, 1, 1], "b": [2, 2, 2]}
    with pytest.raises(ValueError, match="repeats"):
        common.interleave({"a": lambda: 0}, 0)


def test_row_ratio_is_median_of_paired_ratios_and_status_follows_target():
    row = Row("b", "m", "u", [2.0, 3.0, 10.0], [1.0, 2.0, 4.0], "base", Target(">=", 1.6)).finish()
    assert row.lorakit == 3.0 and row.base == 2.0
    assert row.ratio == pytest.approx(2.0) and (row.lo, row.hi) == (1.5, 2.5)
    assert row.status == "pass"
    short = Row("b", "m", "u", [1.0], target=Target("<=", 0.5, on="lorakit")).finish()
    assert short.status == "short" and math.isnan(short.ratio)
    assert Row("b", "m", "u", [1.0]).finish().status == "info"
    assert Target("~=", 1.0, tol=0.01).met(1.005) and not Target("~=", 1.0, tol=0.01).met(1.02)
    with pytest.raises(ValueError, match="op"):
        Target("==", 1.0)


def test_write_results_saves_markdown_and_json(tmp_path):
    info = common.machine_info()
    assert info["cpu_cores"] >= 1 and info["versions"]["torch"]
    rows = [Row("b", "m", "u", [1.0, 2.0], [1.0, 1.0], "base", Target(">=", 1.1)).finish()]
    md = common.write_results(rows, info, tmp_path)
    assert md.name == f"{info['utc'][:10]}-{common.host_kind(info)}.md"
    assert "| b | m [u] |" in md.read_text()
    data = json.loads(md.with_suffix(".json").read_text())
    assert data["rows"][0]["ratio"] == 1.5 and data["machine"]["cpu_model"]


# --------------------------------------------------------------------------- sync counter


def test_sync_counter_attributes_reads_to_steps():
    import torch
    from sync_counter import SyncCounter

    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.1)
    with SyncCounter() as counter:
        counter.on_train_start({})
        for step in range(1, 7):
            loss = (w * w).sum()
            loss.backward()
            if step == 2:
                bool(loss > 0)  # a stray read on a non-logging step
            opt.step()
            opt.zero_grad()
            if step % 3 == 0:
                loss.item()  # the logging read, after the optimizer step, before on_log
                counter.on_log({"step": step})
    report = counter.report()
    assert report.per_step == {1: 0, 2: 1, 3: 1, 4: 0, 5: 0, 6: 1}
    assert report.logging_steps == [3, 6] and report.max_non_logging == 1 and report.mean_logging == 1
    assert "__bool__" not in vars(torch.Tensor) and float(torch.tensor(2.0)) == 2.0  # wrappers removed


# --------------------------------------------------------------------------- benchmarks, tiny


@pytest.mark.slow
def test_quantization_benchmark_matches_bitsandbytes():
    import bench_quantization

    rows = bench_quantization.run(quick=True)
    assert_rows_ok(rows)
    same_codec = [r for r in rows if r.target is not None]
    assert len(same_codec) == 9 and all(r.status == "pass" for r in same_codec)


@pytest.mark.slow
def test_trainer_fixed_length_smoke_and_identical_losses():
    import bench_trainer

    rows = bench_trainer.run_fixed(quick=True, repeats=1)
    assert_rows_ok(rows)
    loss_row = next(r for r in rows if "loss" in r.metric)
    assert loss_row.lorakit <= 1e-4  # same init, data order and seed on both sides: a fair comparison


@pytest.mark.slow
def test_packing_smoke():
    import bench_trainer

    rows = bench_trainer.run_packing(quick=True, repeats=1, kinds=("prompt/completion",))  # the path with masks
    assert_rows_ok(rows)
    assert {r.benchmark for r in rows} == {"2 variable length (prompt/completion), one pass"}


@pytest.mark.slow
def test_dashboard_and_sync_smoke():
    import bench_trainer

    rows = bench_trainer.run_dashboard(quick=True, repeats=1)
    assert_rows_ok(rows)
    quiet = next(r for r in rows if r.metric.startswith("syncs per non-logging"))
    logging = next(r for r in rows if r.metric.startswith("syncs per logging"))
    assert logging.lorakit >= 1  # the counter sees the loss read at each logging step
    assert quiet.lorakit < quiet.base  # lorakit reads less than the Trainer between logging steps


@pytest.mark.slow
def test_lora_stats_smoke():
    import bench_lora_stats

    rows = bench_lora_stats.run(quick=True, repeats=1)
    assert_rows_ok(rows)
    share = next(r for r in rows if r.metric.startswith("statistics' share"))
    assert 0 < share.lorakit < 100
    reads = next(r for r in rows if r.metric == "statistics reads per logging step")
    assert reads.lorakit == 1.0 and reads.status == "pass"


def test_latency_rows_apply_the_target_to_handler_time_only():
    from common import latency_rows

    rows = latency_rows("w", {"click_median_ms": 3.0, "click_with_draw_median_ms": 90.0, "target_ms": 20.0,
                              "clicks": 5}, 20.0)
    assert [(r.metric, r.status) for r in rows] == [("click_median", "pass"), ("click_with_draw_median", "info")]


@pytest.mark.slow
@pytest.mark.parametrize("module", ["bench_float_explorer", "bench_lora_calculator"])
def test_widget_latency_smoke(module):
    import importlib

    assert_rows_ok(importlib.import_module(module).run(quick=True, repeats=1))


def test_widget_latency_table_reports_median_p90_and_misses():
    from bench_widget_latency import Action, table

    a = Action("FloatExplorer", "bit clicked", ".lorakit-hex", lambda *_: None,
               text_ms=[10.0, 20.0, 30.0], picture_ms=[50.0, 60.0, 150.0], missed_picture=1)
    b = Action("LoraCalculator", "r changed", ".lorakit-trainable", lambda *_: None,
               text_ms=[40.0, 41.0], picture_ms=[42.0, 43.0])
    lines = table([a, b]).splitlines()
    assert lines[2] == ("| FloatExplorer | bit clicked | 3 (no change seen: 1 picture) | 20 ms | 30 ms | 60 ms | "
                        "150 ms | 150 ms | no |")
    assert lines[3].endswith("| 2 | 40 ms | 41 ms | 42 ms | 43 ms | 43 ms | yes |")


def test_every_benchmark_exposes_run_quick_repeats():
    """run.py calls each benchmark module the same way: run(quick, repeats) -> list[Row]."""
    import importlib
    import inspect

    import run

    for name in ("memory_planner", "bench_float_explorer", "bench_lora_calculator", "bench_quantization",
                 "bench_embedded_load", "bench_widget_latency", "bench_lora_stats",
                 "bench_fit"):
        params = inspect.signature(importlib.import_module(name).run).parameters
        assert {"quick", "repeats"} <= set(params), (name, list(params))
    assert set(run.BENCHMARKS) >= {"trainer", "packing", "dashboard", "planner", "float_explorer", "lora_calculator"}


def test_planner_rows_summarise_the_grid():
    """The planner's own grid runs in its tests; here records of its shape become rows."""
    import memory_planner

    records = [{"peak_error_pct": e, "logits_error_pct": -2 * e, "batch_size": 1} for e in (1.0, -3.0, 12.0)]
    records.append({"batch_size": 2, "skipped": "ImportError: no fused head"})
    rows = {r.metric: r for r in memory_planner.rows_from_records(records)}
    assert_rows_ok(list(rows.values()))
    assert rows["peak: median abs error"].lorakit == 3.0 and rows["peak: median abs error"].status == "pass"
    assert rows["peak: max abs error"].lorakit == 12.0 and rows["peak: max abs error"].status == "short"
    assert rows["logits: max abs error"].lorakit == 24.0 and rows["logits: max abs error"].status == "info"
    assert "1 skipped" in rows["peak: median abs error"].note


@pytest.mark.slow
def test_planner_quick_grid_meets_its_targets():
    import memory_planner

    rows = memory_planner.run(quick=True, repeats=1)
    assert_rows_ok(rows)
    targeted = [r for r in rows if r.target is not None]
    assert targeted, "the planner benchmark states no target"
    assert all(r.status == "pass" for r in targeted), [(r.metric, r.lorakit) for r in targeted]


def test_fit_rows_summarise_the_grid():
    import bench_fit

    point = dict(data="sft", layout="packed", batch=4, kernel="plain", ckpt=False)
    recs = [dict(point, ratio=r) for r in (1.0, 1.002, 0.93)]
    rows = {r.metric.split(": ")[1]: r for r in bench_fit.rows_from_records(recs)}
    assert_rows_ok(list(rows.values()))
    assert rows["median"].lorakit == 1.0 and rows["median"].status == "pass"
    assert rows["max abs error"].lorakit == pytest.approx(7.0) and rows["max abs error"].status == "short"


@pytest.mark.slow
def test_fit_quick_grid_meets_its_targets():
    import bench_fit

    rows = bench_fit.run(quick=True, repeats=1)
    assert_rows_ok(rows)
    assert all(r.status == "pass" for r in rows), [(r.metric, r.lorakit) for r in rows]


@pytest.mark.slow
def test_embedded_load_cached_smoke():
    import bench_embedded_load

    rows = bench_embedded_load.run(quick=True, repeats=1)
    assert_rows_ok(rows)


@pytest.mark.slow  # runs the quantization benchmark
def test_run_command_writes_results(tmp_path, capsys):
    import run

    assert run.main(["--quick", "--repeats", "1", "--only", "quantization", "--out", str(tmp_path)]) == 0
    assert "6 quantization error" in capsys.readouterr().out
    saved = list(tmp_path.glob("*.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text())["machine"]["loadavg_end"] is not None
    with pytest.raises(SystemExit):
        run.parse_args(["--only", "nonsense"])


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path):
    """The GPU script's whole code path on the CPU: tiny shape, a few steps per run, every row family."""
    import gpu_check

    assert gpu_check.main(["--dry-run", "--out", str(tmp_path)]) == 0
    data = json.loads(next(tmp_path.glob("*-gpu-check-dry-run.json")).read_text())
    metrics = {(r["benchmark"], r["metric"]) for r in data["rows"]}
    expected = {
        ("gpu fp32/none", "tokens/s vs Trainer tuned"),
        ("gpu bf16/nf4", "tokens/s vs Trainer as shipped"),
        ("gpu fp16/int8", "tokens/s vs Trainer tuned"),  # CPU autocast runs float16 with a GradScaler("cpu")
        ("gpu fused head", "tokens/s fused ÷ plain"),
        ("gpu compile", "tokens/s compiled ÷ eager"),
        ("gpu QLoRA vs LoRA", "tokens/s nf4 ÷ bf16 (both eager, no checkpointing)"),
        ("gpu variable length", "non-padding tokens/s vs padded"),
        ("gpu variable length", "non-padding tokens/s vs padding-free"),
        ("gpu dashboard", "tokens/s with LiveDashboard"),
        ("gpu syncs", "per non-logging step (max)"),
        ("gpu fit check", "predicted ÷ measured peak, worst batch"),
        ("gpu fit check", 'batch_size="auto": the largest that fits (1 = yes)'),
        # two CPU processes through `lorakit train --num-processes 2`: QLoRA + FSDP (on a GPU also DDP and FSDP)
        ("gpu 2 processes fsdp/nf4", "completed"),
        ("gpu 2 processes fsdp/nf4", "max rel. loss difference vs 1 process (same global batch)"),
    }
    assert expected <= metrics, expected - metrics
    assert "tf32/none" in data["machine"]["skipped_configs"]  # TF32 is a CUDA matmul mode
    assert all(r["lorakit"] is not None for r in data["rows"])
