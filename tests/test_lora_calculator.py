"""LoraCalculator driven through its controls, the way ipywidgets' own tests drive widgets."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

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
    assert "lorakit-r" in calc.rank.slider._dom_classes and "lorakit-r-text" in calc.rank.text._dom_classes


def test_controls_update_the_numbers(calc):
    calc.rank.value = 16
    assert calc.count.trainable_params == count_lora_params("SmolLM2-135M", r=16).trainable_params
    calc.all_linear_checkbox.value = False  # the default ticks q_proj and v_proj
    assert calc.target_modules == ["q_proj", "v_proj"]
    calc.target_checkboxes["o_proj"].value = True
    want = count_lora_params("SmolLM2-135M", r=16, target_modules=["q_proj", "v_proj", "o_proj"])
    assert calc.count.trainable_params == want.trainable_params
    calc.checkpointing_dropdown.value = True
    calc.batch_text.value = 4
    want = estimate_memory("SmolLM2-135M", r=16, target_modules=["q_proj", "v_proj", "o_proj"],
                           gradient_checkpointing=True, batch_size=4, compute_capability=(7, 5),  # the T4's
                           loss_kernel=calc.loss_kernel_dropdown.value)
    assert calc.estimates["LoRA"].total_bytes == want.total_bytes


@pytest.mark.parametrize(("quantization", "double_quant"), [("int8", True), ("nf4", False), ("bnb_fp4", True)])
def test_the_quantization_dropdown_changes_the_numbers_as_set(calc, quantization, double_quant):
    """What the dropdown changes: the 'as set' verdict and a column of its own (the fixed QLoRA column does
    not depend on it, so it cannot show whether the dropdown works)."""
    import html

    calc.preset_dropdown.value = "Llama-3.1-8B"  # big enough that every choice changes the verdict's numbers
    before = calc.advice_label.value
    from lorakit.quantization import QUANTIZATIONS

    calc.double_quant_checkbox.value = double_quant
    calc.quantization_dropdown.value = quantization
    offered = QUANTIZATIONS[quantization].double_quant  # the checkbox counts only where it is offered
    want = estimate_memory("Llama-3.1-8B", r=8, quantization=quantization, double_quant=double_quant and offered,
                           compute_capability=(7, 5), loss_kernel=calc.loss_kernel_dropdown.value)  # the T4's
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
    calc.all_linear_checkbox.value = False  # with a model that cannot be read: the message, not a crash
    calc.all_linear_checkbox.value = True
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
    assert calc.count.r == calc.rank.value
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
    assert calc.rank.max == 192 and "r &le; 192" in calc.r_note.value
    calc.all_linear_checkbox.value = False
    calc.target_checkboxes["v_proj"].value = False  # q_proj only: 576 x 576
    assert calc.rank.max == 576
    calc.rank.text.value = 300  # typed
    assert calc.count.r == 300 and calc.error_label.value == ""
    calc.all_linear_checkbox.value = True  # k/v are adapted again: r above 192 is no longer possible
    assert calc.rank.max == 192 and calc.rank.value == 192 and calc.count.r == 192
    assert calc.rank.slider.value == 192  # the bound is the slider's last stop
    assert "r lowered from 300" in calc.r_note.value and calc.error_label.value == ""
    calc.preset_dropdown.value = "Llama-3.1-8B"  # k/v: 4096 -> 1024
    assert calc.rank.max == 1024 and calc.rank.value == 192


def test_r_has_a_scale_a_hand_can_use_and_takes_any_typed_value(calc):
    """The slider's stops are powers of two (8 and 16 are neighbours, not a pixel apart on a 1..1024 track)
    plus the bound; the box takes any integer and the slider moves to the stop at or below it."""
    calc.preset_dropdown.value = "Llama-3.1-8B"
    stops = list(calc.rank.slider.options)
    assert stops == [2**k for k in range(11)] and calc.rank.slider.readout is False  # the box is the readout
    assert stops.index(16) - stops.index(8) == 1
    calc.rank.slider.value = 64  # dragged
    assert calc.rank.text.value == 64 and calc.count.r == 64
    calc.rank.text.value = 12  # typed: not a power of two
    assert calc.count.r == 12 and calc.rank.slider.value == 8
    assert calc.count.trainable_params == count_lora_params("Llama-3.1-8B", r=12).trainable_params
    calc.rank.text.value = 5000  # above the bound: the box clamps it
    assert calc.count.r == 1024 and calc.rank.slider.value == 1024
    calc.preset_dropdown.value = "SmolLM2-135M"  # bound 192: not a power of two, still a stop
    assert list(calc.rank.slider.options)[-2:] == [128, 192] and calc.count.r == 192


def test_all_linear_ticks_every_layer_it_adapts(calc):
    """With all-linear, the greyed boxes show the layers it adapts (every linear layer but the head), so they
    agree with the "adapted matrices" of the summary; unticking it gives back the person's own ticks."""
    calc.preset_dropdown.value = "Llama-3.1-8B"
    ticked = {name for name, box in calc.target_checkboxes.items() if box.value}
    assert ticked == {m.name for m in calc.count.modules} and "lm_head" not in ticked
    assert all(box.disabled for box in calc.target_checkboxes.values())
    matrices = sum(m.count for m in calc.count.modules)
    assert matrices == 224 and f"{matrices} adapted matrices" in calc.trainable_label.value  # 7 x 32 layers
    calc.all_linear_checkbox.value = False
    assert {n for n, b in calc.target_checkboxes.items() if b.value} == {"q_proj", "v_proj"}
    calc.target_checkboxes["o_proj"].value = True
    calc.all_linear_checkbox.value = True
    calc.all_linear_checkbox.value = False
    assert calc.target_modules == ["q_proj", "v_proj", "o_proj"]  # the person's ticks survive all-linear


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
    assert "my GPU (3 GiB)" in calc.advice_label.value and "GB)" not in calc.advice_label.value
    assert "GiB" in calc.gpu_gb_text.description  # the box and the verdict use one unit


def test_chart_is_an_svg_redrawn_in_the_same_update(calc):
    svg = calc.chart.value
    assert svg.startswith("<svg") and ET.fromstring(svg).tag == f"{SVG}svg"  # well-formed: a browser draws it
    calc.rank.value = 32
    assert calc.chart.value != svg  # no throttle, no flush: the chart follows the change at once
    texts = _svg_texts(calc.chart.value)
    assert "trainable weights" in texts and "adapter" not in texts  # the legend uses the table's words
    assert any(t.startswith(f"LoRA: {calc.estimates['LoRA'].total_gib:.1f} GiB") for t in texts)


def test_nf4_base_moves_the_as_set_mark_in_the_chart(calc):
    """The chart marks the run the settings describe: with an nf4 base (double quant) that is the QLoRA bar."""
    before = calc.chart.value
    assert calc.as_set == "LoRA" and any(t.endswith("as set") and t.startswith("LoRA:") for t in _svg_texts(before))
    calc.double_quant_checkbox.value = True
    calc.quantization_dropdown.value = "nf4"
    assert calc.as_set == "QLoRA (nf4+dq)" and calc.chart.value != before
    marked = [t for t in _svg_texts(calc.chart.value) if t.endswith("as set")]
    assert len(marked) == 1 and marked[0].startswith("QLoRA (nf4+dq):")


def test_loss_kernel_default_is_the_trainers():
    import dataclasses

    from lorakit.training.config import TrainConfig

    default = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == "loss_kernel")
    assert LoraCalculator("SmolLM2-135M").loss_kernel_dropdown.value == default == "auto"


def test_dropdowns_show_short_names_and_keep_the_long_ones_as_tooltips(calc):
    from lorakit.choices import PRECISIONS, QUANTIZATIONS

    for dropdown, table in ((calc.precision_dropdown, PRECISIONS), (calc.quantization_dropdown, QUANTIZATIONS)):
        labels = [label for label, _ in dropdown.options]
        assert labels == [c.label.split(" (")[0] for c in table.values()]  # 'none', not 'none (16/32-bit'
        assert all(c.label in dropdown.tooltip for c in table.values())
    assert len(calc.config_path_text.placeholder) <= 16  # "config.json path": fits the box (checked in a browser)


def test_breakdown_says_what_it_is_and_shows_a_whole_step(calc):
    """The default view is what a step holds at its peak moment, and says which moment; the other view is every
    component the step holds at some moment (MemoryEstimate.saved) and their sum, which never coexist."""
    from lorakit.widgets.sizing_views import comparison_html, gib, peak_label

    calc.preset_dropdown.value = "Llama-3.1-8B"
    calc.loss_kernel_dropdown.value = "plain"
    lora_only = {name: e for name, e in calc.estimates.items() if e.setup["finetune"] != "full"}
    assert {e.peak_phase for e in lora_only.values()} == {"loss backward"}
    assert peak_label(lora_only) == "held at the peak (loss backward)"
    assert "held at the peak (loss backward)" in comparison_html(lora_only, calc.gpu)
    assert "held at the peak" in calc.comparison_table.value
    calc.breakdown_toggle.value = "step"
    table = calc.comparison_table.value
    assert "held in all during a step" in table
    lora = calc.estimates["LoRA"]
    for key, nbytes in lora.saved.items():
        assert gib(nbytes) in table, key
    assert gib(sum(lora.saved.values())) in table and "(never at once)" in table
    assert lora.saved["gradients_bytes"] > 0  # the peak view's 0.00 gradients are held later in the step
    assert lora.components()["gradients"] == 0
    calc.rank.value = 16  # a change keeps the chosen view
    assert "held in all during a step" in calc.comparison_table.value
    calc.breakdown_toggle.value = "peak"
    assert "held at the peak" in calc.comparison_table.value


def test_a_change_sends_one_update_per_view(calc, record_updates):
    """hold_sync: a click sends each widget's changed traits as one message, not one per trait."""
    sent = record_updates()  # the model id of every state message that would go to the front end
    calc.rank.value = 32
    assert sent and len(sent) == len(set(sent)), "a widget sent more than one update"
    assert {calc.chart.model_id, calc.trainable_label.model_id, calc.comparison_table.model_id} <= set(sent)


def test_an_update_on_70b_builds_no_model(monkeypatch):
    """Changing r re-plans from the cached architecture: no meta-device model is built per update.

    The time per update is measured in benchmarks/bench_lora_calculator.py, not asserted here.
    """
    import transformers

    calc = LoraCalculator("Llama-3.1-70B")
    calc.rank.value = 9  # warm the per-architecture caches
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_config",
                        lambda *a, **k: pytest.fail("an r update built a model"))
    for r in range(10, 20):
        calc.rank.value = r
        assert f"r={r}" in calc.trainable_label.value


SVG = "{http://www.w3.org/2000/svg}"


def _svg_texts(svg: str) -> list[str]:
    return ["".join(t.itertext()) for t in ET.fromstring(svg).iter(f"{SVG}text")]


def _scenarios(model: str) -> dict[str, dict[str, float]]:
    return {"full fine-tune": estimate_memory(model, r=16, finetune="full").components(),
            "LoRA": estimate_memory(model, r=16).components(),
            "QLoRA (nf4+dq)": estimate_memory(model, r=16, quantization="nf4", double_quant=True).components()}


@pytest.mark.parametrize("model", ["SmolLM2-135M", "Llama-3.1-8B", "Llama-3.1-70B"])
def test_chart_draws_the_chosen_gpu_and_no_label_collides(model):
    """For every GPU as the choice: its line is drawn; no two GPU labels overlap; no line runs through a label
    but its own; labels give the GiB the dropdown gives and lie inside the picture (by the layout's own text
    widths; the browser tests measure the drawn boxes)."""
    from lorakit.viz.sizing import LABEL_ROWS, memory_chart_svg
    from lorakit.viz.svg import text_width

    bars = _scenarios(model)
    lines = [(g.name, g.memory_bytes) for g in GPUS.values()]
    for chosen in GPUS:
        root = ET.fromstring(memory_chart_svg(bars, lines, highlight=chosen))
        width = float(root.get("width"))
        labels = []  # (text, x0, x1, baseline, bold) of the GPU labels (the two rows above the bars)
        for t in root.iter(f"{SVG}text"):
            if float(t.get("y")) in LABEL_ROWS:
                w = text_width(t.text, float(t.get("font-size")), bold=t.get("font-weight") == "bold")
                x = float(t.get("x"))
                x0 = x - w if t.get("text-anchor") == "end" else x
                labels.append((t.text, x0, x0 + w, float(t.get("y")), t.get("font-weight") == "bold"))
        gpu_lines = [(float(ln.get("x1")), float(ln.get("y1"))) for ln in root.iter(f"{SVG}line")
                     if ln.get("stroke") in ("#111111", "#777777")]
        assert len(labels) == len(gpu_lines)  # one label per line
        for i, a in enumerate(labels):
            assert 0 <= a[1] and a[2] <= width, a
            assert all(a[3] != b[3] or a[2] <= b[1] or b[2] <= a[1] for b in labels[i + 1:]), (chosen, a)
        for x, top in gpu_lines:  # a line starts just under its label's row and runs down
            crossed = [lab for lab in labels if lab[1] < x < lab[2] and lab[3] > top - 3]
            assert all(abs(lab[1] - x) <= 3 or abs(lab[2] - x) <= 3 for lab in crossed), (chosen, model, crossed)
        bold = [lab[0] for lab in labels if lab[4]]
        assert len(bold) == 1 and f"{GPUS[chosen].memory_gib:.1f} GiB" in bold[0]


def test_controls_start_from_the_trainers_defaults(calc):
    """The calculator's first run is TrainConfig()'s run: the same options, defaults and estimate."""
    from lorakit.training.config import FIELD_CHOICES, TrainConfig

    config = TrainConfig(model="SmolLM2-135M")
    assert [v for _, v in calc.quantization_dropdown.options] == list(FIELD_CHOICES["quantization"])
    assert [v for _, v in calc.optimizer_dropdown.options] == list(FIELD_CHOICES["optimizer"])
    assert calc.precision_dropdown.value == config.precision and calc.batch_text.value == config.batch_size
    assert calc.seq_text.value == config.max_seq_length and calc.checkpointing_dropdown.value == "auto"
    assert calc.estimates["LoRA"] == estimate_memory(config, compute_capability=(7, 5))  # the T4's


def test_every_quantization_is_offered_with_what_it_stores(calc):
    """The base dropdown lists every record (bitsandbytes and torchao); the kernel line says what the base holds."""
    import html

    from lorakit.quantization import QUANTIZATIONS

    assert [v for _, v in calc.quantization_dropdown.options] == list(QUANTIZATIONS)
    for name in ("torchao_int4", "nf4"):
        calc.quantization_dropdown.value = name
        assert calc.error_label.value == ""
        assert f"base linear layers: {QUANTIZATIONS[name].stores}" in html.unescape(calc.kernel_label.value)
