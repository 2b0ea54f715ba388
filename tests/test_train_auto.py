"""The "auto" settings: each decided once, before the model loads, with its reason."""

from __future__ import annotations

import json

import pytest
from tiny import Recorder
from tiny import tiny_run_config as _tiny_run_config

from lorakit.training import TrainConfig, auto, train


def _model_config(tiny_model_dir):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(tiny_model_dir)


def test_checkpointing_auto_is_on_for_quantized_bases(tiny_model_dir):
    choice = auto.decide_checkpointing(TrainConfig(quantization="nf4"), "cpu", _model_config(tiny_model_dir))
    assert choice.value is True and "quantized base (nf4)" in choice.reason


def test_checkpointing_auto_follows_the_planner_and_free_memory(tiny_model_dir, monkeypatch):
    config, model_config = TrainConfig(), _model_config(tiny_model_dir)
    fits = auto.decide_checkpointing(config, "cpu", model_config)
    assert fits.value is False and "fits without it" in fits.reason
    monkeypatch.setattr(auto, "free_memory_bytes", lambda device: 1024)  # 1 KiB free
    tight = auto.decide_checkpointing(config, "cpu", model_config)
    assert tight.value is True and "needs about" in tight.reason


@pytest.mark.parametrize("setting", [True, False])
def test_an_explicit_setting_is_kept(tiny_model_dir, setting):
    choice = auto.decide_checkpointing(TrainConfig(gradient_checkpointing=setting, quantization="nf4"), "cpu",
                                       _model_config(tiny_model_dir))
    assert choice == auto.Choice(setting, "set in the config")


def test_the_choice_reaches_the_start_info_and_the_summary(tiny_model_dir, tmp_path):
    config = TrainConfig(model=str(tiny_model_dir), dataset=["a b c d"] * 4, max_steps=1, eval_split=0.0,
                         output_dir=str(tmp_path / "r"), device="cpu")
    summary = train(config)
    assert summary.choices["gradient_checkpointing"]["value"] is False
    assert summary.choices["gradient_checkpointing"]["reason"].startswith("auto: off")


@pytest.mark.parametrize(("field", "value"), [("gradient_checkpointing", "sometimes"), ("loss_kernel", "liger"),
                                              ("compile", "yes")])
def test_bad_auto_values_name_the_allowed_ones(field, value):
    with pytest.raises(ValueError, match=rf"{field}: {value!r} is not allowed; choose one of .*'auto'"):
        TrainConfig(**{field: value})


def test_compiled_blocks_train_to_the_same_losses(tiny_model_dir, tmp_path, monkeypatch):
    """compile=True compiles each decoder block (dynamo; aot_eager here to keep the test quick)."""
    from lorakit.training import compile as compile_module

    monkeypatch.setattr(compile_module, "BACKEND", "aot_eager")
    monkeypatch.setenv("LORAKIT_CACHE_DIR", str(tmp_path / "cache"))
    eager, compiled = Recorder(), Recorder()
    train(_tiny_run_config(tiny_model_dir, tmp_path / "e"), sinks=[eager])
    summary = train(_tiny_run_config(tiny_model_dir, tmp_path / "c", compile=True), sinks=[compiled])
    assert summary.status == "completed", summary.message
    assert summary.choices["compile"] == {"value": True, "reason": "set in the config"}
    assert compiled.losses() == pytest.approx(eager.losses(), rel=1e-4)
    assert "compiling" in compiled.phases()
    # compile_s is the first step's time less the second's (0 when load hides it): measured, said and remembered
    assert summary.compile_s is not None and summary.compile_s >= 0
    assert any(f"compiled the decoder blocks in {summary.compile_s:.1f} s" in d for _, d in compiled.phase_events)
    remembered = json.loads((tmp_path / "cache" / "compile_times.json").read_text())
    key = next(iter(remembered))
    assert key.startswith("cpu|llama|64|") and remembered[key] == round(summary.compile_s, 2)


def test_a_compile_error_falls_back_to_eager_with_a_message(tiny_model_dir, tmp_path, monkeypatch):
    from lorakit.training import compile as compile_module

    def broken_backend(graph_module, example_inputs):
        raise RuntimeError("this backend cannot compile anything")

    monkeypatch.setattr(compile_module, "BACKEND", broken_backend)  # dynamo fails at the first forward
    eager, fallback = Recorder(), Recorder()
    train(_tiny_run_config(tiny_model_dir, tmp_path / "e"), sinks=[eager])
    with pytest.warns(RuntimeWarning, match="compile failed, running eager"):
        summary = train(_tiny_run_config(tiny_model_dir, tmp_path / "c", compile=True), sinks=[fallback])
    assert summary.status == "completed"
    assert summary.choices["compile"]["value"] is False
    assert fallback.losses() == pytest.approx(eager.losses(), rel=1e-6)


def test_compile_auto_stays_off_on_the_cpu(tiny_model_dir, tmp_path):
    summary = train(_tiny_run_config(tiny_model_dir, tmp_path, compile="auto", max_steps=2))
    assert summary.choices["compile"]["value"] is False
    assert summary.choices["compile"]["reason"].startswith("auto: off on the CPU")


@pytest.mark.parametrize(("step_s", "steps_left", "compile_s", "expected"),
                         [(0.5, 1000, 60.0, True), (0.5, 100, 60.0, False), (2.0, 10, 1.0, True)])
def test_compile_pays_back_only_on_long_runs(step_s, steps_left, compile_s, expected):
    from lorakit.training.compile import pays_back

    assert pays_back(step_s, steps_left, compile_s) is expected
