"""Architectures from presets, configs and modules, built on the meta device."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lorakit.sizing import PRESETS, describe_architecture
from lorakit.sizing.architecture import load_config_dict

# parameter counts the model cards / safetensors indexes publish; a typo in a preset shows here
PUBLISHED_PARAMS = {
    "SmolLM2-135M": 134_515_008,
    "SmolLM2-1.7B": 1_711_376_384,
    "Qwen2.5-0.5B": 494_032_768,
    "Qwen2.5-7B": 7_615_616_512,
    "Llama-3.2-1B": 1_235_814_400,
    "Llama-3.1-8B": 8_030_261_248,
    "Llama-3.1-70B": 70_553_706_496,
    "Mistral-7B-v0.3": 7_248_023_552,
    "Gemma-2-2B": 2_614_341_888,
    "Phi-3-mini-4k": 3_821_079_552,
    "GPT-2": 124_439_808,
}


def test_every_preset_has_a_published_count():
    assert set(PRESETS) == set(PUBLISHED_PARAMS)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_totals_match_published_counts(preset):
    assert describe_architecture(preset).total_params == PUBLISHED_PARAMS[preset]


def test_dimensions_and_tied_embeddings():
    a = describe_architecture("Llama-3.1-8B")
    assert (a.hidden_size, a.num_layers, a.num_heads, a.num_kv_heads, a.head_dim) == (4096, 32, 32, 8, 128)
    assert (a.intermediate_size, a.vocab_size, a.tied_embeddings) == (14336, 128256, False)
    assert describe_architecture("SmolLM2-135M").tied_embeddings
    phi = describe_architecture("Phi-3-mini-4k")
    assert {"qkv_proj", "gate_up_proj"} <= set(phi.linear_suffixes)


def test_config_sources_agree(tmp_path):
    data, _ = load_config_dict("Qwen2.5-0.5B")
    (tmp_path / "config.json").write_text(json.dumps(data))
    from transformers import AutoConfig

    config = AutoConfig.for_model(**data)
    by_path = describe_architecture(tmp_path / "config.json")
    assert by_path.total_params == describe_architecture(tmp_path).total_params
    assert by_path.linears == describe_architecture(data).linears == describe_architecture(config).linears


def test_seventy_b_is_described_once_and_cached():
    """A widget update re-describes the model: the second time it is the same object (no meta-device build).

    How fast the first description is lives in benchmarks/bench_lora_calculator.py, not in a timed assert.
    """
    first = describe_architecture("Llama-3.1-70B")
    assert describe_architecture("Llama-3.1-70B") is first
    assert first.total_params > 70e9


@pytest.mark.parametrize(
    "source, message",
    [
        ("Llama-9", "neither a preset nor a readable config.json"),
        ("/no/such/config.json", "neither a preset"),
        (42, "expected a preset name"),
        ({"model_type": "not-a-model"}, "cannot build"),
    ],
)
def test_bad_sources_raise_value_error_naming_the_field(source, message):
    with pytest.raises(ValueError, match=f"^model: .*{message}"):
        describe_architecture(source)


def test_unreadable_config_file(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="^model: cannot read config"):
        describe_architecture(bad)


def test_importing_sizing_does_not_import_torch():
    code = "import sys, lorakit.sizing; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(
    "model_id, preset",
    [
        ("HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2-135M"),  # the embedded model's architecture
        ("meta-llama/Llama-3.1-8B-Instruct", "Llama-3.1-8B"),
        ("openai-community/gpt2", "GPT-2"),
        ("google/gemma-2-2b-it", "Gemma-2-2B"),
    ],
)
def test_hub_ids_resolve_to_the_preset_of_the_same_architecture(model_id, preset):
    assert describe_architecture(model_id).linears == describe_architecture(preset).linears
