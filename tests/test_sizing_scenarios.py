"""The calculator's scenario choice in sizing, and the LoraCalculator rendering it (driven through its controls)."""

from __future__ import annotations

import pytest

from lorakit.sizing import estimate_memory
from lorakit.sizing.scenarios import (
    COMPONENT_LABELS,
    GPU_COUNTS,
    LORA,
    QLORA_LABEL,
    bytes_per_trainable_param,
    fused_head_saving,
    per_gpu,
    scenarios,
)


@pytest.mark.parametrize("precision, full_columns", [
    ("bf16", ["full fine-tune, fp32 master weights (16 B/param)", "full fine-tune, pure bf16 (8 B/param)"]),
    ("fp16", ["full fine-tune, fp32 master weights (16 B/param)"]),  # fp16 needs fp32 master weights
    ("fp32", ["full fine-tune, fp32 master weights (16 B/param)"]),
])
def test_full_finetune_columns_say_their_optimizer_convention(precision, full_columns):
    columns = scenarios("SmolLM2-135M", r=8, precision=precision)
    assert list(columns) == [*full_columns, LORA, QLORA_LABEL]
    for label in full_columns:
        assert f"({bytes_per_trainable_param(columns[label]):.0f} B/param)" in label
    assert columns[LORA] == estimate_memory("SmolLM2-135M", r=8, precision=precision)


def test_yours_appears_when_it_is_neither_lora_nor_qlora():
    columns = scenarios("SmolLM2-135M", r=8, quantization="int8")
    assert "yours (int8)" in columns and columns[LORA].setup["quantization"] == "none"
    assert "yours (nf4, no dq)" in scenarios("SmolLM2-135M", r=8, quantization="nf4", double_quant=False)
    qlora = scenarios("SmolLM2-135M", r=8, quantization="nf4", double_quant=True)
    assert list(qlora)[-1] == QLORA_LABEL and qlora[QLORA_LABEL].setup["double_quant"] is True


def test_per_gpu_shards_under_fsdp_and_copies_under_ddp():
    ddp = per_gpu("Llama-3.1-8B", r=16, batch_size=2, seq_len=1024, distributed="ddp", loss_kernel="plain")
    fsdp = per_gpu("Llama-3.1-8B", r=16, batch_size=2, seq_len=1024, distributed="fsdp", loss_kernel="plain")
    assert tuple(ddp) == GPU_COUNTS == (1, 2, 4, 8)
    assert ddp[1].total_bytes == fsdp[1].total_bytes
    assert all(ddp[n].total_bytes > ddp[1].total_bytes for n in (2, 4, 8))  # the gradient buckets
    assert fsdp[8].total_bytes < fsdp[4].total_bytes < fsdp[2].total_bytes < fsdp[1].total_bytes


def test_fused_head_saving():
    plain, fused = fused_head_saving("Llama-3.2-1B", r=8, batch_size=4, seq_len=1024)
    assert fused.total_bytes < plain.total_bytes and fused.logits_bytes < plain.logits_bytes


def test_every_component_has_a_label():
    assert set(COMPONENT_LABELS) == set(estimate_memory("SmolLM2-135M").components())
    assert COMPONENT_LABELS["adapter"] == "trainable weights"


# ---------------------------------------------------------------- the widget renders them


from lorakit.widgets.lora_calculator import LoraCalculator  # noqa: E402


@pytest.fixture
def calc():
    calc = LoraCalculator("SmolLM2-135M", r=8, gpu="H100 80 GB")
    calc.precision_dropdown.value = "bf16"  # a GPU run (the calculator starts from TrainConfig's fp32 default)
    return calc


def test_calculator_shows_the_attention_kernel_for_the_gpu(calc):
    assert "<div style='line-height:1.45;padding:3px 0'>attention: flash" in calc.kernel_label.value
    assert "attention kernel" in calc.comparison_table.value and "peak at" in calc.comparison_table.value
    calc.gpu_dropdown.value = "T4 16 GB"  # no flash below compute capability 8.0
    assert ">attention: math" in calc.kernel_label.value
    assert calc.estimates[LORA] == estimate_memory("SmolLM2-135M", **calc.settings())


def test_calculator_labels_full_finetune_weights_as_trainable(calc):
    table = calc.comparison_table.value
    assert "trainable weights" in table and ">adapter<" not in table
    assert "full fine-tune, pure bf16 (8 B/param)" in calc.estimates


def test_calculator_fused_head_control_shrinks_the_logits(calc):
    calc.seq_text.value = 2048
    calc.loss_kernel_dropdown.value = "plain"
    plain = calc.estimates[LORA]
    assert "fused head: peak" in calc.fused_label.value
    calc.loss_kernel_dropdown.value = "fused"
    fused = calc.estimates[LORA]
    assert fused.setup["loss_kernel"] == "fused"
    assert fused.total_bytes < plain.total_bytes and fused.logits_bytes < plain.logits_bytes


def test_calculator_shows_memory_per_gpu(calc):
    assert tuple(calc.per_gpu) == (1, 2, 4, 8)
    import re

    first_cells = re.findall(r"<tr><td[^>]*>(\d+)</td>", calc.per_gpu_table.value)
    assert first_cells == ["1", "2", "4", "8"]
    calc.loss_kernel_dropdown.value = "plain"  # "auto" is the fused head on one GPU, the plain one under FSDP
    calc.distributed_dropdown.value = "fsdp"
    assert "fsdp" in calc.per_gpu_table.value
    assert calc.per_gpu[8].total_bytes < calc.per_gpu[1].total_bytes


def test_fsdp_with_an_8bit_base_is_refused_and_the_widget_keeps_working(calc):
    calc.distributed_dropdown.value = "fsdp"
    good = calc.per_gpu
    calc.quantization_dropdown.value = "int8"
    assert "distributed=&#x27;fsdp&#x27; cannot shard" in calc.error_label.value
    assert calc.per_gpu == good  # the last good numbers stay
    calc.distributed_dropdown.value = "ddp"
    assert calc.error_label.value == ""
