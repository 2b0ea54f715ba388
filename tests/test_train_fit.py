"""Fit before you run: the batch search, the settings it adds, check_fit's ledger against a measured step, the
largest batch under a memory limit, the check inside train(), and the runs it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tiny import Recorder

from lorakit.training.config import TrainConfig
from lorakit.training.fit_search import batch_candidates, search_batch

# Examples of different lengths, so padded batches carry padding and the worst batch is the longest rows.
VARIED = [" ".join(["the quick brown fox jumps over the lazy dog"] * k) for k in (1, 3, 2, 5, 1, 4, 2, 6, 3, 1, 2, 4)]


# ---- the search, on made-up peaks ----------------------------------------------------------------------------
@given(static=st.integers(100, 10_000), per_row=st.integers(1, 2_000), budget=st.integers(0, 40_000),
       error=st.floats(0.8, 1.25), cap=st.integers(1, 24))
def test_search_finds_the_largest_batch_whose_measured_peak_fits(static, per_row, budget, error, cap):
    """The planner is off by ``error`` (measured = planned x error); the search still ends at the largest fitting
    batch, because a measurement decides."""
    def predict(b):
        return static + per_row * b

    calls = []

    def measure(b):
        calls.append(b)
        return int(predict(b) * error)

    found = search_batch(batch_candidates(cap), predict, measure, budget)
    fitting = [b for b in range(1, cap + 1) if int(predict(b) * error) <= budget]
    assert found.batch == (max(fitting) if fitting else None)
    assert len(set(calls)) == len(calls)  # never the same batch twice
    if found.batch is not None:
        assert found.measured[found.batch] <= budget
        if found.next_batch is None:
            assert found.batch == cap
        else:  # the next one does not fit: measured, or planned x the measured error
            assert found.next_batch == found.batch + 1 and found.next_bytes > budget


def test_a_good_plan_needs_one_measured_step():
    found = search_batch(batch_candidates(16), lambda b: 1000 + 100 * b, lambda b: 1000 + 100 * b, budget=1650)
    assert found.batch == 6 and list(found.measured) == [6] and found.next_bytes == 1700


def test_the_candidates_keep_a_global_batch():
    assert batch_candidates(8, per_step=12) == [1, 2, 3, 4, 6]
    assert batch_candidates(16, per_step=16, processes=2) == [1, 2, 4, 8]
    with pytest.raises(ValueError, match="not a multiple of num_processes=2"):
        batch_candidates(8, per_step=7, processes=2)


def test_when_train_checks_the_fit_first():
    from lorakit.training.fit import wanted

    base = TrainConfig(device="cpu")
    assert not wanted(base, "cpu") and wanted(base, "cuda")  # "auto": on a GPU
    assert wanted(TrainConfig(batch_size="auto"), "cpu") and wanted(TrainConfig(check_fit=True), "cpu")
    assert wanted(TrainConfig(memory_limit_bytes=2**30), "cpu")  # a limit is checked, never silently ignored
    assert not wanted(TrainConfig(memory_limit_bytes=2**30, check_fit=False), "cuda")
    assert not wanted(TrainConfig(check_fit=True), "cuda", world=2)  # one process only


# ---- the settings ---------------------------------------------------------------------------------------------
def test_the_new_settings_are_validated_with_their_names():
    assert TrainConfig(batch_size="auto").global_batch_size is None
    assert TrainConfig(batch_size="auto", target_global_batch_size=16).target_global_batch_size == 16
    for bad, match in [
        (dict(batch_size="all"), "batch_size='all' is out of range.*or 'auto'"),
        (dict(batch_size="auto", check_fit=False), "needs check_fit=True or 'auto'"),
        (dict(batch_size="auto", num_processes=2), "with num_processes=2 give batch_size as a number"),
        (dict(batch_size="auto", target_global_batch_size=8, gradient_accumulation_steps=2), "leave it at 1"),
        (dict(batch_size=4, target_global_batch_size=16), r"gradient_accumulation_steps = 4"),
        (dict(memory_limit_bytes=0), "memory_limit_bytes=0 is out of range"),
        (dict(check_fit="yes"), "check_fit: 'yes' is not allowed"),
    ]:
        with pytest.raises(ValueError, match=match):
            TrainConfig(**bad)
    assert TrainConfig(batch_size=4, gradient_accumulation_steps=4, target_global_batch_size=16).global_batch_size == 16


def test_the_planner_refuses_an_auto_batch_with_a_reason():
    from lorakit.sizing import estimate_memory

    with pytest.raises(ValueError, match="batch_size: 'auto' is chosen by measured steps"):
        estimate_memory(TrainConfig(batch_size="auto"))


def test_the_planner_counts_only_the_logits_the_head_computes():
    from lorakit.sizing import estimate_memory

    kw = dict(batch_size=4, max_seq_length=256, runtime_overhead_bytes=0, device="cpu")
    for kernel in ("plain", "fused"):
        every = estimate_memory("SmolLM2-135M", loss_kernel=kernel, **kw)
        same = estimate_memory("SmolLM2-135M", loss_kernel=kernel, logit_tokens=4 * 256, **kw)
        assert same.components() == every.components() and same.saved == every.saved
        some = estimate_memory("SmolLM2-135M", loss_kernel=kernel, logit_tokens=40, **kw)
        assert some.total_bytes < every.total_bytes and some.weights_bytes == every.weights_bytes
    with pytest.raises(ValueError, match="logit_tokens"):
        estimate_memory("SmolLM2-135M", logit_tokens=0, **kw)


# ---- check_fit on the tiny model ------------------------------------------------------------------------------
def test_check_fit_ledger_matches_the_measured_step(run_config):
    from lorakit.training.fit import check_fit

    report = check_fit(run_config(dataset=VARIED, batch_size=3, max_seq_length=64))
    assert (report.batch_size, report.rows, report.layout) == (3, 3, "padded")
    assert report.width == max(report.width, 8) and report.targets > 0
    for row in report.ledger:  # every component the planner names, measured from the step's own tensors
        assert row["planned_bytes"] == pytest.approx(row["measured_bytes"], rel=0.02), row
    assert report.predicted_bytes == pytest.approx(report.measured_bytes, rel=0.02)
    assert report.fits and report.limit_source == "available host memory"
    assert report.peak_component in report.planned
    data = json.loads(json.dumps(report.as_dict()))
    assert data["fits"] is True and data["measured_bytes"] == report.measured_bytes
    assert "peak (" in str(report) and "measured peak" in report.sentence()


@pytest.mark.parametrize("layout", [dict(packing=True), dict(padding_free=True), dict(gradient_checkpointing=True)],
                         ids=["packed", "padding-free", "checkpointing"])
def test_the_plan_follows_the_layout_and_checkpointing(run_config, layout):
    """A padding-free batch is one row of every example's tokens; checkpointing is measured in train mode (a model
    in eval mode would skip it and measure a step without it)."""
    from lorakit.training.fit import check_fit

    report = check_fit(run_config(dataset=VARIED, batch_size=3, max_seq_length=64, **layout))
    assert report.rows == 3 and report.predicted_bytes == pytest.approx(report.measured_bytes, rel=0.05)
    if layout.get("gradient_checkpointing"):
        plain = check_fit(run_config(dataset=VARIED, batch_size=3, max_seq_length=64))
        assert report.measured_bytes < plain.measured_bytes  # the layers' activations were not kept


def test_the_worst_batch_is_the_longest_rows(run_config):
    """Its width is the longest example's, as the trainer tokenizes it; packing: full rows."""
    from lorakit.training.fit import check_fit
    from lorakit.training.lengths import token_lengths

    config = run_config(dataset=VARIED, batch_size=2, max_seq_length=64)
    lengths = token_lengths(config)
    assert check_fit(config).width == min(64, int(lengths.lengths.max()))
    packed = check_fit(run_config(dataset=VARIED, batch_size=2, max_seq_length=32, packing=True))
    assert (packed.layout, packed.width, packed.rows) == ("packed", 32, 2)


def _peak(run_config, batch, **kw):
    from lorakit.training.fit import check_fit

    return check_fit(run_config(dataset=VARIED, batch_size=batch, max_seq_length=64, **kw))


def test_auto_batch_under_a_memory_limit_is_the_largest_that_fits(run_config):
    """A limit between the measured peaks of batch 2 and batch 3: auto takes 2, and 3 does not fit (measured)."""
    from lorakit.training.fit import FIT_MARGIN, check_fit

    two, three = _peak(run_config, 2).measured_bytes, _peak(run_config, 3).measured_bytes
    assert two < three
    limit = int((two + three) / 2 / (1 - FIT_MARGIN))
    report = check_fit(run_config(dataset=VARIED, batch_size="auto", max_seq_length=64, memory_limit_bytes=limit))
    assert report.batch_size == 2 and report.fits and report.measured_bytes <= report.budget_bytes
    assert report.batch_reason.startswith("batch 2: batch 3 would need")
    assert not _peak(run_config, 3, memory_limit_bytes=limit).fits


def test_auto_batch_stops_at_the_cap(run_config):
    from lorakit.training.fit import AUTO_BATCH_CAP, check_fit

    report = check_fit(run_config(dataset=VARIED, batch_size="auto", max_seq_length=64))
    assert report.batch_size == AUTO_BATCH_CAP["cpu"] and "the CPU cap of 8" in report.batch_reason


# ---- inside train() --------------------------------------------------------------------------------------------
def test_the_check_leaves_the_run_exactly_as_it_would_have_been(run_config, tmp_path):
    """Same losses with and without the check (dropout on: the random generators are put back too)."""
    from lorakit.training import train

    losses = {}
    for check in (False, True):
        sink = Recorder()
        config = run_config(dataset=VARIED, lora_dropout=0.1, check_fit=check, output_dir=str(tmp_path / str(check)))
        summary = train(config, sinks=[sink])
        assert summary.status == "completed"
        losses[check] = sink.losses()
        fit = sink.of("start")[0]["fit"]
        assert (fit is not None) == check
    assert losses[True] == losses[False]
    assert "check_fit" in summary.choices and "fits" in summary.choices["check_fit"]["value"]


def test_train_with_auto_batch_and_a_global_batch_target(run_config):
    from lorakit.training import train
    from lorakit.training.fit import FIT_MARGIN

    two, three = _peak(run_config, 2).measured_bytes, _peak(run_config, 3).measured_bytes
    limit = int((two + three) / 2 / (1 - FIT_MARGIN))
    sink = Recorder()
    summary = train(run_config(dataset=VARIED, batch_size="auto", target_global_batch_size=6, max_seq_length=64,
                               memory_limit_bytes=limit, max_steps=2), sinks=[sink])
    assert summary.status == "completed" and summary.global_batch_size == 6
    assert summary.choices["batch_size"]["value"] == 2
    assert summary.choices["gradient_accumulation_steps"]["value"] == 3
    info = sink.of("start")[0]
    assert info["fit"]["batch_size"] == 2 and info["global_batch_size"] == 6
    assert sum(r["tokens_seen"] > 0 for r in sink.logs()) == 2


# ---- refused runs ----------------------------------------------------------------------------------------------
@pytest.fixture
def no_loading(monkeypatch):
    """Fail the test if a model loads."""
    from lorakit.training import loop

    def refuse(*_a, **_k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(loop, "build_parts", refuse)


def test_a_limit_below_the_weights_is_refused_before_anything_loads(run_config, no_loading):
    from lorakit.training import train

    config = run_config(memory_limit_bytes=1_000_000)
    with pytest.raises(ValueError, match="memory_limit_bytes=1000000 .* is below the base weights alone") as caught:
        train(config)
    assert "max_seq_length" not in str(caught.value)  # a shorter cutoff does not shrink the weights
    assert not Path(config.output_dir).exists()


def _weights(run_config) -> int:
    return _peak(run_config, 1).ledger[0]["measured_bytes"]


def test_auto_batch_when_even_batch_one_does_not_fit(run_config):
    from lorakit.training import train
    from lorakit.training.fit import DoesNotFit

    config = run_config(dataset=VARIED, batch_size="auto", max_seq_length=64,
                        memory_limit_bytes=int(_weights(run_config) * 1.1))
    with pytest.raises(DoesNotFit, match=r"batch_size='auto': even batch 1 does not fit.*(What fits: |Nothing)"):
        train(config)
    assert not Path(config.output_dir).exists()  # no half-written run folder


def test_a_fixed_batch_that_does_not_fit_names_the_peak_and_a_change(run_config):
    from lorakit.training import train
    from lorakit.training.fit import DoesNotFit

    limit = int(_peak(run_config, 1).measured_bytes / 0.9)  # batch 1 fits, batch 6 does not
    config = run_config(dataset=VARIED, batch_size=6, max_seq_length=64, memory_limit_bytes=limit)  # checked: a limit
    with pytest.raises(DoesNotFit) as caught:
        train(config)
    message = str(caught.value)
    assert "batch_size=6 does not fit" in message and "The peak is at the" in message
    assert "batch_size=" in message.split("The peak")[1]  # a change to type (the planner's advice, or 'auto')
    assert not Path(config.output_dir).exists()


# ---- the embedded model ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_check_fit_on_the_embedded_model(embedded_model_dir, tmp_path):
    """The planner's peak within 5 % of the measured step of SmolLM2-135M's worst batch on the CPU."""
    from lorakit.training.fit import check_fit

    report = check_fit(TrainConfig(dataset="builtin-json", batch_size=4, max_seq_length=128, device="cpu",
                                   output_dir=str(tmp_path / "run")))
    assert report.predicted_bytes == pytest.approx(report.measured_bytes, rel=0.05)
    assert report.fits and report.rows == 4


def test_the_cli_says_what_it_chose_and_why(run_config, capsys):
    from lorakit.cli import main

    config = run_config(dataset=VARIED, max_seq_length=64, max_steps=1)
    settings = [f"model={config.model}", f"output_dir={config.output_dir}", "device=cpu", "max_seq_length=64",
                "max_steps=1", "eval_split=0.0", "batch_size=auto"]
    data = Path(config.output_dir).parent / "data.jsonl"
    data.write_text("\n".join(json.dumps(text) for text in VARIED), encoding="utf-8")
    args = [arg for s in [*settings, f"dataset={data}"] for arg in ("--set", s)]
    assert main(["check-fit", *args]) == 0
    out = capsys.readouterr().out
    assert out.startswith("12 examples") and "peak (" in out and "batch 8: the CPU cap of 8" in out
    assert main(["train", *args]) == 0
    err = capsys.readouterr().err
    assert "batch_size: 8 (auto: batch 8: the CPU cap of 8" in err and "check_fit: fits (batch 8" in err
