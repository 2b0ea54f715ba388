"""The "auto" settings: each decided once, before the model loads, with its reason."""

from __future__ import annotations

import pytest

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
