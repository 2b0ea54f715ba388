"""torchao, lorakit's second quantization backend: the planner counts the bytes really held, LoRA trains on each.

Oracles: the loaded model's own tensors (torchao's tensor subclasses flatten into the tensors they hold), peft's
training step measured with saved_tensors_hooks, and the loss of a few real training steps.
"""

from __future__ import annotations

import peft
import pytest
import torch
import torchao  # noqa: F401 -- a train dependency: a missing one fails here, not as a skip

from lorakit.quantization import QUANTIZATIONS, recognize
from lorakit.sizing import estimate_memory
from lorakit.sizing.architecture import shrink_config
from lorakit.sizing.measure import measure_training_step, tiny_model

TORCHAO = [name for name, q in QUANTIZATIONS.items() if q.backend == "torchao"]
PRESET = "Llama-3.1-8B"  # shrunk: GQA, an untied head that stays unquantized
TINY = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, vocab_size=512)


def _held_bytes(model) -> int:
    """Bytes of every parameter as loaded: a torchao weight is the tensors it flattens into."""
    total = 0
    for param in model.parameters():
        tensor = param.data
        if type(tensor) is torch.Tensor:
            total += tensor.numel() * tensor.element_size()
        else:
            names = tensor.__tensor_flatten__()[0]
            total += sum(getattr(tensor, n).numel() * getattr(tensor, n).element_size() for n in names)
    return total


def test_the_options_and_what_they_store():
    assert TORCHAO == ["torchao_int8", "torchao_fp8", "torchao_int4", "torchao_int2"]
    formats = {name: QUANTIZATIONS[name].code_format for name in TORCHAO}
    assert formats == {"torchao_int8": "int8", "torchao_fp8": "fp8_e4m3fn", "torchao_int4": "int4",
                       "torchao_int2": "int2"}
    # int4 and int2 codes are held one per int8: 8 bits, plus a 16-bit scale and an int8 zero point per 32
    assert QUANTIZATIONS["torchao_int4"].bits_per_param() == pytest.approx(8 + 24 / 32)
    assert QUANTIZATIONS["torchao_fp8"].bits_per_param() == 8


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", TORCHAO)
def test_planner_weight_bytes_equal_the_model_as_loaded(name, precision):
    model = tiny_model(PRESET, quantization=name, precision=precision, **TINY)
    assert recognize(model.config.quantization_config) == name
    planned = estimate_memory(shrink_config(PRESET, **TINY), quantization=name, precision=precision)
    assert planned.weights_bytes == _held_bytes(model)


@pytest.mark.parametrize("name", TORCHAO)
def test_planner_matches_a_measured_lora_step(name):
    """Weights, adapters, gradients, optimizer state and logits exactly; activations (each adapted torchao layer
    saves a copy of its input) within 2 % of what saved_tensors_hooks count (exact with 3 layers; with 2 the
    planner is 32 KiB high, not understood yet)."""
    torch.manual_seed(0)
    model = peft.get_peft_model(tiny_model(PRESET, quantization=name, **TINY),
                                peft.LoraConfig(r=8, target_modules="all-linear")).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    measured = measure_training_step(model, torch.randint(0, TINY["vocab_size"], (2, 64)), optimizer)
    predicted = estimate_memory(shrink_config(PRESET, **TINY), r=8, quantization=name, batch_size=2,
                                max_seq_length=64, device="cpu", loss_kernel="plain",
                                gradient_checkpointing=False).saved
    activations = predicted.pop("activations_bytes")
    assert activations == pytest.approx(measured.pop("activations_bytes"), rel=0.02)
    assert predicted == measured


@pytest.mark.parametrize("name", TORCHAO)
def test_lora_trains_on_each_torchao_base(tiny_model_dir, tmp_path, name):
    from lorakit.training import TrainConfig, read_metrics, train

    config = TrainConfig(model=str(tiny_model_dir), dataset=["the quick brown fox jumps over the lazy dog"] * 8,
                         quantization=name, batch_size=4, max_steps=6, logging_steps=1, learning_rate=1e-2,
                         eval_split=0.0, max_seq_length=32, output_dir=str(tmp_path / "run"), device="cpu")
    summary = train(config)
    assert summary.status == "completed", summary.message
    losses = [r["loss"] for r in read_metrics(summary.output_dir) if r.get("kind") == "train"]
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.5, losses


@pytest.mark.slow
@pytest.mark.parametrize("name", ["torchao_int8", "torchao_fp8", "torchao_int4"])
def test_the_embedded_model_trains_on_torchao_bases(tmp_path, name):
    """SmolLM2-135M-Instruct as shipped: the planner's weight bytes are the loaded base's; a few steps train."""
    from lorakit.training import TrainConfig, ensure_embedded, read_metrics, train
    from lorakit.training.modeling import load_base

    config = TrainConfig(quantization=name, batch_size=2, max_steps=3, logging_steps=1, learning_rate=1e-3,
                         eval_split=0.0, max_seq_length=64, output_dir=str(tmp_path / "run"), device="cpu")
    path = str(ensure_embedded())
    base, _ = load_base(config, "cpu", path)
    assert estimate_memory(path, config).weights_bytes == _held_bytes(base)
    del base
    summary = train(config)
    assert summary.status == "completed", summary.message
    losses = [r["loss"] for r in read_metrics(summary.output_dir) if r.get("kind") == "train"]
    assert len(losses) == 3 and all(loss == loss for loss in losses), losses  # finite, three steps
