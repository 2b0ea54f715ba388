"""The "What changed" view after a run: the update heatmap and the token comparison on the run's held-out
examples, driven through its state; and its place in the TrainerPanel."""

from __future__ import annotations

import pytest

from lorakit.training import train
from lorakit.training.data import split_records
from lorakit.training.events import TrainSummary
from lorakit.training.token_compare import compare_tokens, load_run, pooled_loss
from lorakit.widgets.lora_views import LoraUpdateView
from lorakit.widgets.trainer_panel import TrainerPanel
from lorakit.widgets.what_changed import WhatChanged, example_label

DATA = [{"prompt": f"What is {a} plus {a}?", "completion": f"{2 * a}"} for a in range(24)]


def test_after_a_run_it_shows_the_update_and_the_held_out_tokens(run_config):
    config = run_config(dataset=DATA, eval_split=0.25, max_steps=4, max_seq_length=64)
    summary = train(config)
    view = WhatChanged()
    assert view.layout.display == "none"
    view.show_run(summary, config)
    assert view.layout.display is None and view.status.value == ""
    held = split_records(DATA, 0.25)[1]
    run = load_run(summary.output_dir, device="cpu")
    expected = [compare_tokens(run, record) for record in held]
    with_, without = pooled_loss(expected)
    assert f"over {len(held)} of {len(held)} examples" in view.loss.value
    assert f"<b>{without:.3f}</b> without the adapter &rarr; <b>{with_:.3f}</b> with it" in view.loss.value
    assert [label for label, _ in view.example.options][0].startswith(example_label(held[0]))
    assert view.tokens.value == expected[0].to_html()
    view.example.value = 1  # picking another example shows its tokens
    assert view.tokens.value == expected[1].to_html()
    assert "<svg" in view.updates.heatmap.value and view.grid["layers"] == [0, 1]
    assert view.updates.shown_step == summary.steps_done


def test_without_an_adapter_it_says_so():
    view = WhatChanged()
    view.show_run(TrainSummary("error", "boom", 0, 5, None, "/nowhere", None, "/nowhere/m"), None)
    assert view.status.value == "No adapter was saved, so there is nothing to compare."
    assert view.example.layout.display == "none" and view.loss.value == ""


def test_a_failure_is_shown_not_raised(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"")
    view = WhatChanged()
    view.show_run(TrainSummary("completed", "", 1, 1, 1.0, str(tmp_path), str(tmp_path / "adapter"), "m"), None)
    assert view.status.value.startswith("What changed could not be shown: ValueError:")


@pytest.mark.parametrize(("record", "label"), [
    ({"prompt": "What  is\nBF16?", "completion": "x"}, "What is BF16?"),
    ({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]}, "hi"),
    ("word " * 30, ("word " * 12)[:59] + "…"),
])
def test_example_labels(record, label):
    assert example_label(record) == label


def test_the_panel_mounts_the_update_view_and_what_changed():
    panel = TrainerPanel()
    assert any(isinstance(v, LoraUpdateView) for v in panel.dashboard.views)
    assert panel.what_changed in panel.children and panel.what_changed.layout.display == "none"
