"""LoraCalculator driven through its controls, the way ipywidgets' own tests drive widgets."""

from __future__ import annotations

import pytest

from lorakit.sizing import GPUS, count_lora_params, estimate_memory  # noqa: E402
from lorakit.sizing.advice import suggest_fit  # noqa: E402
from lorakit.widgets.lora_calculator import LoraCalculator  # noqa: E402


@pytest.fixture
def calc():
    return LoraCalculator("SmolLM2-135M", r=8, gpu="T4 16 GB")


def test_controls_start_from_the_trainers_defaults(calc):
    """The calculator's first run is TrainConfig()'s run: the same options, defaults and estimate."""
    from lorakit.training.config import FIELD_CHOICES, TrainConfig

    config = TrainConfig(model="SmolLM2-135M")
    assert [v for _, v in calc.quantization_dropdown.options] == list(FIELD_CHOICES["quantization"])
    assert [v for _, v in calc.optimizer_dropdown.options] == list(FIELD_CHOICES["optimizer"])
    assert calc.precision_dropdown.value == config.precision and calc.batch_text.value == config.batch_size
    assert calc.seq_text.value == config.max_seq_length and calc.checkpointing_dropdown.value == "auto"
    assert calc.estimates["LoRA"] == estimate_memory(config, compute_capability=(7, 5))  # the T4's


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
    calc.checkpointing_dropdown.value = True
    calc.batch_text.value = 4
    want = estimate_memory("SmolLM2-135M", r=16, target_modules=["q_proj", "v_proj", "o_proj"],
                           gradient_checkpointing=True, batch_size=4, compute_capability=(7, 5))  # the T4's
    assert calc.estimates["LoRA"].total_bytes == want.total_bytes


@pytest.mark.parametrize(("quantization", "double_quant"), [("int8", True), ("nf4", False), ("bnb_fp4", True)])
def test_the_quantization_dropdown_changes_the_numbers_as_set(calc, quantization, double_quant):
    """What the dropdown changes: the 'as set' verdict and a column of its own (the fixed QLoRA column does
    not depend on it, so it cannot show whether the dropdown works)."""
    import html

    from lorakit.quantization import QUANTIZATIONS

    calc.preset_dropdown.value = "Llama-3.1-8B"  # big enough that every choice changes the verdict's numbers
    before = calc.advice_label.value
    calc.double_quant_checkbox.value = double_quant
    calc.quantization_dropdown.value = quantization
    offered = QUANTIZATIONS[quantization].double_quant  # the checkbox counts only where it is offered
    want = estimate_memory("Llama-3.1-8B", r=8, quantization=quantization, double_quant=double_quant and offered,
                           compute_capability=(7, 5))  # the T4's
    label = f"yours ({quantization}{'' if double_quant or not offered else ', no dq'})"
    assert calc.estimates[label].total_bytes == want.total_bytes
    verdict = GPUS["T4 16 GB"].verdict(want.total_bytes, calc.precision_dropdown.value)
    assert f"As set: {html.escape(verdict)}" in calc.advice_label.value and calc.advice_label.value != before


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
        ("seq_text", -1, "max_seq_length"),
        ("alpha_text", 0.0, "lora_alpha"),
        ("gpu_gb_text", -2.0, "memory_gb"),
    ],
)
def test_bad_input_shows_the_message_and_keeps_working(calc, control, value, field):
    good = calc.count
    if control == "gpu_gb_text":
        calc.gpu_dropdown.value = "my GPU"
    getattr(calc, control).value = value
    assert f"{field}:" in calc.error_label.value or f"{field}={value}" in calc.error_label.value
    assert calc.count == good  # the last good numbers stay in the object ...
    # ... but not on screen as if they answered these settings: no verdict, no count, greyed tables
    assert "trainable" not in calc.trainable_label.value and calc.advice_label.value == ""
    assert "lorakit-stale" in calc.comparison_table.value and calc.chart.layout.visibility == "hidden"
    getattr(calc, control).value = {"alpha_text": 16.0, "gpu_gb_text": 12.0, "seq_text": 64}.get(control, 2)
    assert calc.error_label.value == ""
    assert calc.count.r == calc.r_slider.value
    assert "trainable" in calc.trainable_label.value and "As set:" in calc.advice_label.value
    assert "lorakit-stale" not in calc.comparison_table.value and calc.chart.layout.visibility == "visible"


def test_no_target_ticked_is_an_error_not_a_crash(calc):
    calc.all_linear_checkbox.value = False
    for box in calc.target_checkboxes.values():
        box.value = False
    assert "tick at least one layer, or all-linear" in calc.error_label.value  # the widget's words, not the API's
    assert "give a list of names" not in calc.error_label.value
    assert "trainable" not in calc.trainable_label.value and calc.advice_label.value == ""
    calc.target_checkboxes["down_proj"].value = True
    assert calc.error_label.value == ""
    assert "trainable" in calc.trainable_label.value


def test_r_goes_as_high_as_the_model_and_targets_allow(calc):
    # SmolLM2-135M: hidden 576, k/v projections 576 -> 192; every linear layer is adapted by default
    assert calc.r_slider.max == 192 and "r &le; 192" in calc.r_note.value
    calc.all_linear_checkbox.value = False
    calc.target_checkboxes["v_proj"].value = False  # q_proj only: 576 x 576
    assert calc.r_slider.max == 576
    calc.r_slider.value = 300
    assert calc.count.r == 300 and calc.error_label.value == ""
    calc.all_linear_checkbox.value = True  # k/v are adapted again: r above 192 is no longer possible
    assert calc.r_slider.max == 192 and calc.r_slider.value == 192 and calc.count.r == 192
    assert "r lowered from 300" in calc.r_note.value and calc.error_label.value == ""
    calc.preset_dropdown.value = "Llama-3.1-8B"  # k/v: 4096 -> 1024
    assert calc.r_slider.max == 1024 and calc.r_slider.value == 192


def test_numbers_in_tables_are_right_aligned(calc):
    import re

    for table in (calc.comparison_table.value, calc.module_table.value):
        cells = re.findall(r"<td style='([^']*)'>([^<]*(?:<b>[^<]*</b>)?)</td>", table)
        numeric = [(style, text) for style, text in cells if re.fullmatch(r"(<b>)?[\d,.% x]+(</b>)?", text)]
        assert numeric and all("text-align:right" in style for style, _ in numeric)
        names = [(style, text) for style, text in cells if text in ("frozen weights", "q_proj")]
        assert names and all("text-align:left" in style for style, _ in names)


def test_gpu_labels_use_the_charts_convention(calc):
    labels = dict((value, label) for label, value in calc.gpu_dropdown.options)
    for name, gpu in GPUS.items():
        assert labels[name].endswith(f"{gpu.memory_gib:.1f} GiB")  # 'T4 16 GB · 15.0 GiB'
    assert "GiB" in calc.chart_note.value and "T4 16 GB reports 15.0 GiB" in calc.chart_note.value


def test_advice_matches_the_search(calc):
    calc.precision_dropdown.value = "bf16"
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


def test_an_update_on_70b_builds_no_model(monkeypatch):
    """Changing r re-plans from the cached architecture: no meta-device model is built per update.

    The time per update is measured in benchmarks/bench_lora_calculator.py, not asserted here.
    """
    import transformers

    calc = LoraCalculator("Llama-3.1-70B")
    calc.r_slider.value = 9  # warm the per-architecture caches
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_config",
                        lambda *a, **k: pytest.fail("an r update built a model"))
    for r in range(10, 20):
        calc.r_slider.value = r
        assert f"r={r}" in calc.trainable_label.value


def _scenarios(model: str) -> dict[str, dict[str, float]]:
    return {"full fine-tune": estimate_memory(model, r=16, finetune="full").components(),
            "LoRA": estimate_memory(model, r=16).components(),
            "QLoRA (nf4+dq)": estimate_memory(model, r=16, quantization="nf4", double_quant=True).components()}


@pytest.mark.parametrize("model", ["SmolLM2-135M", "Llama-3.1-8B", "Llama-3.1-70B"])
def test_chart_draws_the_chosen_gpu_and_no_label_collides(model):
    """For every GPU as the choice: its line is drawn; no two labels overlap; no line runs through a label
    but its own; labels give the GiB the dropdown gives."""
    from lorakit.viz.sizing import draw_memory_bars, make_figure

    bars = _scenarios(model)
    lines = [(g.name, g.memory_bytes) for g in GPUS.values()]
    for chosen in GPUS:
        fig, ax = make_figure()
        drawn = draw_memory_bars(ax, bars, lines, highlight=chosen)
        assert chosen in drawn
        renderer = fig.canvas.get_renderer()
        labels = [(t, t.get_window_extent(renderer)) for t in ax.texts]
        assert len(labels) == len(ax.lines)  # one label per line
        for i, (_, a) in enumerate(labels):
            assert all(a.x1 <= b.x0 or b.x1 <= a.x0 or a.y1 <= b.y0 or b.y1 <= a.y0 for _, b in labels[i + 1:])
        for line in ax.lines:
            x = ax.transData.transform((line.get_xdata()[0], 0))[0]
            top = ax.transAxes.transform((0, line.get_data()[1][1]))[1]  # axvline's y is in axes fractions
            crossed = [t for t, box in labels if box.x0 < x < box.x1 and box.y0 < top]
            assert all(t.get_position()[0] == line.get_xdata()[0] for t in crossed), (chosen, model)
        chosen_label = next(t.get_text() for t in ax.texts if t.get_fontweight() == "bold")
        assert f"{GPUS[chosen].memory_gib:.1f} GiB" in chosen_label
        assert all(ax.get_window_extent(renderer).contains(box.x0, box.y0) for _, box in labels)


def test_every_quantization_is_offered_with_what_it_stores(calc):
    """The base dropdown lists every record (bitsandbytes and torchao); the kernel line says what the base holds."""
    import html

    from lorakit.quantization import QUANTIZATIONS

    assert [v for _, v in calc.quantization_dropdown.options] == list(QUANTIZATIONS)
    for name in ("torchao_int4", "nf4"):
        calc.quantization_dropdown.value = name
        assert calc.error_label.value == ""
        assert f"base linear layers: {QUANTIZATIONS[name].stores}" in html.unescape(calc.kernel_label.value)
