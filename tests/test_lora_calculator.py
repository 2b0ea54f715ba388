"""LoraCalculator driven through its controls, the way ipywidgets' own tests drive widgets."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("transformers")

from lorakit.sizing import GPUS, count_lora_params, estimate_memory  # noqa: E402
from lorakit.sizing.advice import suggest_fit  # noqa: E402
from lorakit.widgets.lora_calculator import LoraCalculator  # noqa: E402


@pytest.fixture
def calc():
    return LoraCalculator("SmolLM2-135M", r=8, gpu="T4 16 GB")


def test_shows_the_api_numbers(calc):
    expected = count_lora_params("SmolLM2-135M", r=8, target_modules="all-linear")
    assert calc.count == expected
    assert f"{expected.trainable_params:,}" in calc.trainable_label.value
    assert "q_proj" in calc.module_table.value and "576 x 576" in calc.module_table.value
    lora = estimate_memory("SmolLM2-135M", **calc.settings())
    assert calc.estimates["LoRA"] == lora
    assert set(calc.estimates) >= {"full fine-tune, fp32 master weights (16 B/param)", "LoRA", "QLoRA (nf4+dq)"}
    assert f"{lora.total_bytes / 1024**3:.2f}" in calc.comparison_table.value


def test_dom_classes_for_browser_tests(calc):
    assert "lorakit-lora-calculator" in calc._dom_classes
    assert "lorakit-trainable" in calc.trainable_label._dom_classes
    assert "lorakit-r" in calc.r_slider._dom_classes


def test_controls_update_the_numbers(calc):
    calc.r_slider.value = 16
    assert calc.count.trainable_params == count_lora_params("SmolLM2-135M", r=16).trainable_params
    calc.all_linear_checkbox.value = False  # the default ticks q_proj and v_proj
    assert calc.target_modules == ["q_proj", "v_proj"]
    calc.target_checkboxes["o_proj"].value = True
    want = count_lora_params("SmolLM2-135M", r=16, target_modules=["q_proj", "v_proj", "o_proj"])
    assert calc.count.trainable_params == want.trainable_params
    calc.quantization_dropdown.value = "nf4"
    calc.checkpointing_checkbox.value = True
    calc.batch_text.value = 4
    want = estimate_memory("SmolLM2-135M", r=16, target_modules=["q_proj", "v_proj", "o_proj"], quantization="nf4",
                           gradient_checkpointing=True, batch_size=4, compute_capability=(7, 5))  # the T4's
    assert calc.estimates["QLoRA (nf4+dq)"].total_bytes == want.total_bytes


def test_model_change_rebuilds_target_checkboxes(calc):
    calc.preset_dropdown.value = "Phi-3-mini-4k"
    assert set(calc.target_checkboxes) == {"qkv_proj", "o_proj", "gate_up_proj", "down_proj", "lm_head"}
    calc.preset_dropdown.value = "GPT-2"
    assert "c_attn" in calc.target_checkboxes
    assert calc.count.model == "GPT-2"


def test_config_path(calc, tmp_path):
    import json

    from lorakit.sizing.architecture import load_config_dict

    data, _ = load_config_dict("Qwen2.5-0.5B")
    (tmp_path / "config.json").write_text(json.dumps(data))
    calc.config_path_text.value = str(tmp_path / "config.json")
    assert calc.count.total_params == count_lora_params("Qwen2.5-0.5B", r=8).total_params
    calc.config_path_text.value = str(tmp_path / "missing.json")
    assert "model:" in calc.error_label.value


@pytest.mark.parametrize(
    "control, value, field",
    [
        ("batch_text", 0, "batch_size"),
        ("seq_text", -1, "seq_len"),
        ("r_slider", 200, "r"),  # SmolLM2-135M's k/v projections are 192 wide
        ("alpha_text", 0.0, "lora_alpha"),
        ("gpu_gb_text", -2.0, "memory_gb"),
    ],
)
def test_bad_input_shows_the_message_and_keeps_working(calc, control, value, field):
    good = calc.count
    if control == "gpu_gb_text":
        calc.gpu_dropdown.value = "my GPU"
    getattr(calc, control).value = value
    assert f"{field}:" in calc.error_label.value
    assert calc.count == good  # the last good numbers stay
    calc.r_slider.value = 4 if control == "r_slider" else calc.r_slider.value
    getattr(calc, control).value = {"r_slider": 4, "alpha_text": 16.0, "gpu_gb_text": 12.0}.get(control, 2)
    assert calc.error_label.value == ""
    assert calc.count.r == calc.r_slider.value


def test_no_target_ticked_is_an_error_not_a_crash(calc):
    calc.all_linear_checkbox.value = False
    for box in calc.target_checkboxes.values():
        box.value = False
    assert "target_modules:" in calc.error_label.value
    calc.target_checkboxes["down_proj"].value = True
    assert calc.error_label.value == ""


def test_advice_matches_the_search(calc):
    calc.preset_dropdown.value = "Llama-3.1-8B"
    calc.batch_text.value = 4
    calc.seq_text.value = 2048
    advice = suggest_fit("Llama-3.1-8B", GPUS["T4 16 GB"], **calc.settings())
    assert advice.sentence in calc.advice_label.value.replace("&lt;", "<")
    assert advice.fits and GPUS["T4 16 GB"].fits(advice.estimate.total_bytes)
    assert advice.changes["precision"] == "fp16"  # a T4 has no native bf16


def test_custom_gpu(calc):
    calc.gpu_dropdown.value = "my GPU"
    calc.gpu_gb_text.value = 3.0
    assert "my GPU (3 GB)" in calc.advice_label.value


def test_chart_is_drawn_on_flush(calc):
    calc.redraw_now()
    png = calc.chart.value
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    calc.r_slider.value = 32
    calc.redraw_now()
    assert calc.chart.value != png


def test_update_on_70b_is_fast():
    calc = LoraCalculator("Llama-3.1-70B")
    calc.r_slider.value = 9  # warm the per-architecture caches
    times = []
    for r in range(10, 20):
        start = time.perf_counter()
        calc.r_slider.value = r
        times.append(time.perf_counter() - start)
    assert sorted(times)[len(times) // 2] < 0.1  # 50 ms target, measured in benchmarks/; slack for CI load
