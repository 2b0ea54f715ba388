"""Issue 19's invariants: one schema for trainer and planner, backends named in their own modules only.

The planner validates every setting it shares with the trainer through TrainConfig: for each shared field a
grid of good and bad values must get the same answer from both, the same message when both refuse. The counts
of scripts/count_backend_names.py stay within the issue's limits. No torch needed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from lorakit.quantization import QUANTIZATIONS
from lorakit.sizing import count_lora_params, estimate_memory
from lorakit.training.config import FIELD_CHOICES, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
MODEL = "SmolLM2-135M"

# field -> values to try; good and bad together (the model-independent checks: a target name or a rank that does
# not fit this model is refused when a model is known, by the trainer at load and by the planner at once)
GRID: dict[str, list] = {
    "r": [1, 8, 64, 0, -1, 2.5, True, 5000, "8"],
    "lora_alpha": [16, 0.5, 1e-6, 0, -1, "16", True],
    "lora_dropout": [0.0, 0.1, 0.9, 0.95, -0.1, "0.1", None],
    "target_modules": ["all-linear", ["q_proj", "v_proj"], ("o_proj",), [], 0.5, [1], None, {"q_proj": 1}],
    "use_dora": [False, True, "yes", None],
    "precision": [*FIELD_CHOICES["precision"], "bfloat16", "half", "fp8", None, ["bf16"]],
    "quantization": [*QUANTIZATIONS, "fp4", "8bit", "int3", None],
    "bnb_4bit_use_double_quant": [False, True, "yes"],
    "optimizer": [*FIELD_CHOICES["optimizer"], "adam", None],
    "batch_size": [1, 4, 65536, 0, 70000, 2.0, True],
    "max_seq_length": [8, 256, 4096, 4, 0, "256", 2**21],
    "gradient_checkpointing": [False, True, "auto", "sometimes", None],
    "loss_kernel": ["auto", "fused", "plain", "liger"],
    "device": ["auto", "cpu", "cuda", "tpu"],
    "num_processes": [1, 2, 4096, 0, 5000, 1.5],
    "distributed": ["ddp", "fsdp", "deepspeed"],
}
COMBINATIONS = [
    {"quantization": "nf4", "bnb_4bit_use_double_quant": True},
    {"quantization": "int8", "bnb_4bit_use_double_quant": True},
    {"distributed": "fsdp", "num_processes": 2},
    {"distributed": "fsdp", "num_processes": 2, "quantization": "int8"},
    {"distributed": "fsdp", "num_processes": 2, "quantization": "nf4"},
    {"seq_len": 4},  # the planner's earlier name of max_seq_length
    {"double_quant": True, "quantization": "nf4"},
    {"seq_len": 64, "max_seq_length": 64},  # one field under two names
]


def _outcome(call) -> str:
    try:
        call()
    except ValueError as err:
        return f"refused: {err}"
    return "accepted"


def _cases():
    for field, values in GRID.items():
        for value in values:
            yield pytest.param({field: value}, id=f"{field}={value!r}")
    for combo in COMBINATIONS:
        yield pytest.param(combo, id=",".join(f"{k}={v!r}" for k, v in combo.items()))


@pytest.mark.parametrize("settings", list(_cases()))
def test_trainer_and_planner_accept_and_refuse_the_same_values(settings):
    trainer = _outcome(lambda: TrainConfig.from_dict(settings))
    planner = _outcome(lambda: estimate_memory(MODEL, **settings))
    assert planner == trainer


@pytest.mark.parametrize("settings", [pytest.param({k: v}, id=f"{k}={v!r}") for k in ("r", "target_modules",
                                      "use_dora", "quantization") for v in GRID[k]])
def test_the_parameter_count_validates_its_shared_fields_as_the_trainer(settings):
    assert _outcome(lambda: count_lora_params(MODEL, **settings)) == _outcome(lambda: TrainConfig(**settings))


def test_the_planners_default_run_is_the_trainers_default_run():
    """The issue's example: estimate_memory("SmolLM2-135M") sized a bf16, r 8, seq 512, batch 1 run (1.47 GiB)."""
    config = TrainConfig(model=MODEL)
    default = estimate_memory(MODEL)
    assert default == estimate_memory(config) == estimate_memory(MODEL, **config.sizing_kwargs())
    setup = default.setup
    assert (setup["precision"], setup["r"], setup["seq_len"], setup["batch_size"]) == (
        config.precision, config.r, config.max_seq_length, config.batch_size)
    assert setup["loss_kernel"] == "fused" and config.loss_kernel == "auto"  # auto: the fused head
    assert estimate_memory(TrainConfig()) == estimate_memory(TrainConfig(model=MODEL))  # the embedded model's
    overridden = estimate_memory(config, precision="bf16", batch_size=1, seq_len=512, loss_kernel="plain")
    assert overridden.total_gib == pytest.approx(1.47, abs=0.005) and default.total_gib == pytest.approx(2.56, abs=0.005)


def _counter():
    spec = importlib.util.spec_from_file_location("count_backend_names", ROOT / "scripts" / "count_backend_names.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_backends_are_named_in_their_own_modules_and_no_module_is_long():
    counter = _counter()
    found = counter.summary(counter.count(ROOT))
    assert len(found["bnb_names"]) <= 3, found["bnb_names"]  # the backend, the schema's field names, ...
    assert len(found["option_strings"]) <= 2, found["option_strings"]
    assert found["long_modules"] == []


def test_the_counter_sees_names_in_code_not_in_prose(tmp_path):
    package = tmp_path / "lorakit" / "sizing"
    package.mkdir(parents=True)
    (package / "a.py").write_text('"""BitsAndBytesConfig in a docstring."""\n# load_in_4bit in a comment\nx = 1\n')
    (package / "b.py").write_text('from transformers import BitsAndBytesConfig\nq = "nf4"\nf = f"{q}: int8"\n')
    (package / "c.py").write_text('def f(p):\n    return p.quant_state, {"bnb_4bit_quant_type": "int8"}\n')
    found = _counter().summary(_counter().count(tmp_path))
    assert found["bnb_names"] == ["lorakit/sizing/b.py", "lorakit/sizing/c.py"]
    assert found["option_strings"] == ["lorakit/sizing/b.py", "lorakit/sizing/c.py"]
