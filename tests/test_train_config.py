"""TrainConfig: defaults, validation messages, files, presets (no torch needed)."""

from __future__ import annotations

import json

import pytest

from lorakit.training.config import TrainConfig


def test_defaults_use_the_embedded_model_and_builtin_data():
    config = TrainConfig()
    assert (config.model, config.dataset, config.precision, config.quantization) == (
        "embedded",
        "builtin",
        "fp32",
        "none",
    )
    assert config.target_modules == "all-linear"
    assert config.trust_remote_code is False


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("precision", "fp8", "'fp32', 'fp16', 'bf16'"),
        ("precision", ["x"], "'fp32', 'fp16', 'bf16'"),  # a wrong type: not "unhashable type"
        ("quantization", "int4", "'none', 'int8', 'nf4', 'bnb_fp4'"),
        ("optimizer", "adam", "'adamw', 'adamw_8bit', 'paged_adamw_8bit', 'sgd'"),
        ("lr_scheduler_type", "step", "'linear', 'cosine'"),
        ("device", "tpu", "'auto', 'cpu', 'cuda'"),
    ],
)
def test_bad_choice_names_field_value_and_allowed(field, value, allowed):
    with pytest.raises(ValueError) as info:
        TrainConfig(**{field: value})
    message = str(info.value)
    assert field in message and repr(value) in message and allowed in message


@pytest.mark.parametrize("value", [0.5, [1, 2], {"q_proj": 1}])
def test_target_modules_of_a_wrong_type_names_the_field(value):
    """Not a bare "'float' object is not iterable": the field, the value and what is allowed."""
    with pytest.raises(ValueError) as info:
        TrainConfig(target_modules=value)
    message = str(info.value)
    assert "target_modules" in message and "all-linear" in message and "module names" in message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("r", 0),
        ("r", 2.5),
        ("r", True),
        ("max_seq_length", 4),
        ("batch_size", 0),
        ("gradient_accumulation_steps", -1),
        ("learning_rate", 0.0),
        ("lora_dropout", 1.0),
        ("eval_split", 0.95),
        ("max_steps", 0),
        ("logging_steps", 0),
        ("save_steps", 0),
    ],
)
def test_out_of_range_numbers_are_rejected_with_the_range(field, value):
    with pytest.raises(ValueError, match=rf"{field}={value!r} is out of range; it must be"):
        TrainConfig(**{field: value})


def test_double_quant_needs_4bit():
    with pytest.raises(ValueError, match="bnb_4bit_use_double_quant=True needs quantization 'nf4' or 'bnb_fp4'"):
        TrainConfig(quantization="int8", bnb_4bit_use_double_quant=True)


def test_torch_dtype_spellings_are_accepted():
    config = TrainConfig(precision="bfloat16", quantization="nf4", bnb_4bit_compute_dtype="float32")
    assert (config.precision, config.bnb_4bit_compute_dtype) == ("bf16", "fp32")


def test_compute_dtype_follows_precision_unless_set():
    assert TrainConfig(precision="bf16", quantization="nf4").compute_dtype == "bf16"
    assert (
        TrainConfig(precision="fp32", quantization="nf4", bnb_4bit_compute_dtype="bf16").compute_dtype
        == "bf16"
    )


def test_qlora_preset_sets_every_4bit_choice_explicitly():
    config = TrainConfig.qlora(r=16)
    assert config.quantization == "nf4"  # transformers would default to fp4
    assert config.bnb_4bit_use_double_quant is True  # ... and to no double quantization
    assert config.bnb_4bit_compute_dtype == "bf16"  # ... and to fp32 compute
    assert config.r == 16
    assert TrainConfig.qlora(precision="fp32").precision == "fp32"


def test_from_yaml_and_json_with_transformers_aliases(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text(
        "model: /models/x\nper_device_train_batch_size: 2\nr: 4\ntarget_modules: [q_proj, v_proj]\n"
    )
    config = TrainConfig.from_file(yaml_file)
    assert (config.model, config.batch_size, config.r, config.target_modules) == (
        "/models/x",
        2,
        4,
        ["q_proj", "v_proj"],
    )
    json_file = tmp_path / "run.json"
    json_file.write_text(json.dumps(config.to_dict()))
    assert TrainConfig.from_file(json_file) == config


def test_unknown_field_in_file_is_named(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"rank": 8}))
    with pytest.raises(ValueError, match="unknown TrainConfig field 'rank'"):
        TrainConfig.from_file(path)


def test_to_dict_describes_in_memory_datasets():
    data = TrainConfig(dataset=["a", "b", "c"]).to_dict()
    assert data["dataset"] == "<in-memory list: 3 examples>"
    json.dumps(data)  # JSON-able
