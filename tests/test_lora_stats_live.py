"""The update statistics while a run learns: logged at logging steps only (one counted read each, none on other
steps), equal to lora_update_stats of the saved adapter, switched off by log_lora_stats=False; and the
dashboard view that draws them."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from tiny import Recorder

from lorakit.training import read_metrics, train
from lorakit.training.lora_stats import lora_update_stats, update_grid
from lorakit.viz.lora import EMPTY, HIGH, heatmap_svg, spectrum_svg
from lorakit.widgets.lora_views import LoraUpdateView, latest_update, update_caption

DATA_MODULE = str(Path("lorakit", "training", "data.py"))
BLOCK = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_each_logging_step_records_the_update_with_one_read(run_config):
    summary = train(run_config(max_steps=6, logging_steps=3))
    assert summary.status == "completed"
    assert summary.host_reads == {"log": 2, "lora": 2}  # one per logging step, each
    records = [r for r in read_metrics(summary.output_dir) if r["kind"] == "train"]
    assert [r["step"] for r in records] == [3, 6]
    grid = records[-1]["lora"]
    assert grid["module_types"] == BLOCK and grid["layers"] == [0, 1] and grid["r"] == 8
    assert all(v > 0 for row in grid["rel_norm"] for v in row)
    assert sum(map(sum, records[-1]["lora"]["rel_norm"])) > sum(map(sum, records[0]["lora"]["rel_norm"]))


def test_the_last_record_is_the_saved_adapters_update(run_config):
    from lorakit.training.token_compare import load_run

    summary = train(run_config(max_steps=4, logging_steps=2))
    logged = [r for r in read_metrics(summary.output_dir) if r["kind"] == "train"][-1]["lora"]
    again = update_grid(lora_update_stats(load_run(summary.output_dir, device="cpu").model))
    assert logged["module_types"] == again["module_types"] and logged["layers"] == again["layers"]
    for row, row_again in zip(logged["rel_norm"], again["rel_norm"], strict=True):
        assert row == pytest.approx(row_again, rel=1e-5)
    assert logged["top"]["singular_values"] == pytest.approx(again["top"]["singular_values"], rel=1e-5)


def test_steps_between_logging_steps_read_nothing(run_config, tmp_path, monkeypatch):
    """Twice the steps with the same number of logging steps: the same number of device reads (item, tolist).

    The batch order (lorakit/training/data.py) is drawn on the host, once per epoch, so its reads don't count."""
    calls = {"n": 0}
    for method in ("item", "tolist"):
        original = getattr(torch.Tensor, method)

        def counting(self, _original=original):
            calls["n"] += not sys._getframe(1).f_code.co_filename.endswith(DATA_MODULE)
            return _original(self)

        monkeypatch.setattr(torch.Tensor, method, counting)
    counts = []
    for steps in (4, 8):
        calls["n"] = 0
        summary = train(run_config(max_steps=steps, logging_steps=steps, output_dir=str(tmp_path / str(steps))))
        counts.append(calls["n"])
        assert summary.host_reads == {"log": 1, "lora": 1}
    assert counts[0] == counts[1]


def test_log_lora_stats_false_records_nothing(run_config):
    summary = train(run_config(max_steps=2, logging_steps=1, log_lora_stats=False))
    assert summary.host_reads == {"log": 2}
    assert all("lora" not in r for r in read_metrics(summary.output_dir))


def test_a_dora_run_trains_and_says_why_it_has_no_update_statistics(run_config):
    recorder = Recorder()
    with pytest.warns(RuntimeWarning, match="log_lora_stats: not recorded for this run: .*DoRA"):
        summary = train(run_config(max_steps=2, use_dora=True), sinks=[recorder])
    assert summary.status == "completed" and "lora" not in summary.host_reads
    assert all("lora" not in r for r in recorder.logs())


# ---- the pictures and the dashboard view -------------------------------------------------------------------------
GRID = {
    "module_types": ["q_proj", "v_proj"], "layers": [0, 1, 2], "r": 4,
    "rel_norm": [[0.1, 0.2], [0.4, None], [0.05, 0.3]],
    "effective_rank": [[2.0, 3.0], [1.5, None], [3.5, 2.5]],
    "top": {"name": "base_model.model.model.layers.1.self_attn.q_proj", "rel_norm": 0.4, "effective_rank": 1.5,
            "r": 4, "singular_values": [0.3, 0.1, 0.05, 0.01]},
}


def _rects(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [e for e in root.iter() if e.tag.endswith("rect") and any(c.tag.endswith("title") for c in e)]


def test_the_heatmap_has_one_cell_per_block_and_type_darkest_at_the_largest():
    cells = _rects(heatmap_svg(GRID, step=7))
    assert len(cells) == 6
    by_tip = {next(iter(c)).text: c.get("fill") for c in cells}
    assert by_tip["block 1 · q_proj: ‖ΔW‖ / ‖W0‖ = 0.4"] == "#{:02x}{:02x}{:02x}".format(*HIGH)
    assert by_tip["block 1 · v_proj: no such module"] == EMPTY
    assert "at step 7" in heatmap_svg(GRID, step=7)


def test_the_spectrum_has_one_bar_per_singular_value():
    svg = spectrum_svg(GRID["top"])
    bars = _rects(svg)
    assert [next(iter(b)).text for b in bars] == ["σ1 = 0.3", "σ2 = 0.1", "σ3 = 0.05", "σ4 = 0.01"]
    heights = [float(b.get("height")) for b in bars]
    assert heights == sorted(heights, reverse=True) and heights[0] == pytest.approx(3 * heights[1], rel=0.02)
    assert "effective rank 1.50 of r = 4" in svg and "model.layers.1.self_attn.q_proj" in svg


def test_the_caption_names_the_type_and_block_that_moved_most():
    text = update_caption(GRID)
    assert "module type v_proj, block 1" in text  # v: mean 0.25 > q: 0.183; block 1: 0.4
    assert "Mean effective rank of the updates: 2.50 of r = 4" in text


def test_the_view_draws_the_latest_record_once_and_resets():
    view = LoraUpdateView()
    assert view.layout.display == "none"
    history = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0, "lora": GRID}, {"step": 3, "loss": 0.9}]
    assert latest_update(history)["step"] == 2
    view.show(history, [], {})
    assert view.shown_step == 2 and view.layout.display is None and "<svg" in view.heatmap.value
    view.heatmap.value = "kept"
    view.show(history, [], {})  # nothing newer: no redraw
    assert view.heatmap.value == "kept"
    view.reset()
    assert view.layout.display == "none" and view.heatmap.value == "" and view.shown_step is None
