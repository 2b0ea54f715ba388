"""compare_runs: overlays saved runs; numbers come from the files each run left on disk."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lorakit.training.compare import compare_runs, format_runs_table, load_run

MIB = 2**20


def write_run(folder, *, losses, tokens_per_s, peak_bytes, precision="fp32", quantization="none", summary=True,
              evals=()):
    """A run directory as lorakit.train writes it: config.json, metrics.jsonl, summary.json."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"precision": precision, "quantization": quantization}))
    lines = [{"kind": "train", "step": i + 1, "loss": loss, "tokens_per_s": tokens_per_s + i,
              "rss_bytes": peak_bytes - (len(losses) - 1 - i) * MIB, "mem_peak_bytes": None}
             for i, loss in enumerate(losses)]
    lines += [{"kind": "eval", "step": step, "eval_loss": value} for step, value in evals]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    if summary:
        (folder / "summary.json").write_text(json.dumps({
            "status": "completed", "steps_done": len(losses), "final_loss": losses[-1],
            "tokens_per_s": tokens_per_s, "peak_memory_bytes": peak_bytes, "elapsed_s": 12.5,
            "exact_match_after": 0.5}))
    return folder


@pytest.fixture
def runs(tmp_path):
    return [
        write_run(tmp_path / "fp32", losses=[3.0, 2.0, 1.5], tokens_per_s=1000.0, peak_bytes=900 * MIB,
                  evals=[(0, 3.2), (3, 1.6)]),
        write_run(tmp_path / "nf4", losses=[3.1, 2.2, 1.7], tokens_per_s=800.0, peak_bytes=500 * MIB,
                  quantization="nf4"),
    ]


def test_rows_come_from_the_summaries(runs):
    fig, rows = compare_runs(runs)
    assert [r["name"] for r in rows] == ["fp32", "nf4"]
    assert rows[0] == {"name": "fp32", "precision": "fp32", "quantization": "none", "status": "completed",
                       "steps": 3, "final_loss": 1.5, "eval_loss": 1.6, "tokens_per_s": 1000.0,
                       "peak_memory_bytes": 900 * MIB, "elapsed_s": 12.5, "exact_match_after": 0.5}
    assert rows[1]["quantization"] == "nf4" and rows[1]["eval_loss"] is None


def test_figure_overlays_the_curves_and_bars(runs):
    fig, _ = compare_runs(runs, names=["full precision", "QLoRA"])
    loss_ax, speed_ax, mem_ax = fig.axes
    curves = [line for line in loss_ax.lines if line.get_linestyle() == "-"]
    assert [line.get_label() for line in curves] == ["full precision", "QLoRA"]
    np.testing.assert_allclose(curves[0].get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(curves[1].get_ydata(), [3.1, 2.2, 1.7])
    eval_dots = [line for line in loss_ax.lines if line.get_linestyle() == "None"]
    np.testing.assert_allclose(eval_dots[0].get_ydata(), [3.2, 1.6])
    assert [p.get_height() for p in speed_ax.patches] == [1000.0, 800.0]
    assert [p.get_height() for p in mem_ax.patches] == [900.0, 500.0]  # MiB
    assert [t.get_text() for t in mem_ax.get_xticklabels()] == ["full precision", "QLoRA"]


def test_a_run_without_summary_is_compared_from_its_metrics(tmp_path):
    crashed = write_run(tmp_path / "crashed", losses=[3.0, 2.5], tokens_per_s=100.0, peak_bytes=300 * MIB,
                        summary=False)
    row = load_run(crashed)["row"]
    assert row["status"] == "no summary" and row["steps"] == 2 and row["final_loss"] == 2.5
    assert row["tokens_per_s"] == 100.5  # median of the logged 100, 101
    assert row["peak_memory_bytes"] == 300 * MIB  # largest RSS logged


def test_bad_inputs_name_the_problem(tmp_path, runs):
    with pytest.raises(ValueError, match="no metrics.jsonl"):
        compare_runs([tmp_path / "missing"])
    with pytest.raises(ValueError, match="run_dirs is empty"):
        compare_runs([])
    with pytest.raises(ValueError, match="names has 1 entries but run_dirs has 2"):
        compare_runs(runs, names=["a"])
    with pytest.raises(ValueError, match="run names must be unique"):
        compare_runs(runs, names=["a", "a"])


def test_text_table(runs):
    _, rows = compare_runs(runs)
    lines = format_runs_table(rows).splitlines()
    assert lines[0].split() == ["run", "status", "steps", "final", "loss", "eval", "loss", "tokens/s", "peak", "MiB"]
    assert lines[2].split() == ["fp32", "completed", "3", "1.5000", "1.6000", "1,000", "900"]
    assert lines[3].split() == ["nf4", "completed", "3", "1.7000", "n/a", "800", "500"]


def test_public_name():
    import lorakit

    assert lorakit.compare_runs is compare_runs


@pytest.mark.slow
def test_compare_two_real_runs(tiny_model_dir, tmp_path):
    """Two short real runs (fp32 and nf4 on a tiny model): the table repeats what each summary.json says."""
    from lorakit.training import TrainConfig, train

    data = [{"prompt": f"What is {a} plus {a}?", "completion": f"{2 * a}"} for a in range(20)]
    dirs = []
    for quantization in ("none", "nf4"):
        config = TrainConfig(model=str(tiny_model_dir), dataset=data, quantization=quantization, max_steps=3,
                             batch_size=2, max_seq_length=64, logging_steps=1, output_dir=str(tmp_path / quantization))
        assert train(config).status == "completed"
        dirs.append(tmp_path / quantization)
    _, rows = compare_runs(dirs)
    for row, folder in zip(rows, dirs, strict=True):
        summary = json.loads((folder / "summary.json").read_text())
        assert row["final_loss"] == summary["final_loss"] and row["steps"] == 3
        assert row["tokens_per_s"] == summary["tokens_per_s"] > 0
        assert row["peak_memory_bytes"] == summary["peak_memory_bytes"] > 0
    assert [r["quantization"] for r in rows] == ["none", "nf4"]
