"""LoRA parameter counts against peft's own count, over every preset built tiny."""

from __future__ import annotations

import peft
import pytest

from lorakit.sizing import PRESETS, count_lora_params, describe_architecture
from lorakit.sizing.architecture import shrink_config  # noqa: E402
from lorakit.sizing.measure import tiny_model  # noqa: E402

# list targets per family where q_proj / v_proj do not exist (Conv1D GPT-2, fused Phi-3)
PAIRS = {"gpt2": ["c_attn"], "phi3": ["qkv_proj", "down_proj"]}


def _peft_counts(model, **lora_kwargs):
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, **lora_kwargs))
    return lora.get_nb_trainable_parameters()


def _ours(model, quantization="none", **kwargs):
    c = count_lora_params(model, r=4, quantization=quantization, **kwargs)
    return c.trainable_params, c.total_params


def _list_targets(model):
    return PAIRS.get(model.config.model_type, ["q_proj", "v_proj"])


VARIANTS = {
    "all-linear": lambda m: dict(target_modules="all-linear"),
    "list": lambda m: dict(target_modules=_list_targets(m)),
    "regex": lambda m: dict(target_modules=r".*\.(0|1)\.(self_attn|attn)\.[a-z_]*proj|.*c_attn"),
    "lora_bias": lambda m: dict(target_modules="all-linear", lora_bias=True),
    "modules_to_save": lambda m: dict(target_modules=_list_targets(m), modules_to_save=["lm_head"]),
    "dora": lambda m: dict(target_modules="all-linear", use_dora=True),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("preset", PRESETS)
def test_counts_equal_peft(preset, variant):
    model = tiny_model(preset)
    kwargs = VARIANTS[variant](model)
    ours = _ours(model, **kwargs)
    assert ours == _peft_counts(model, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["nf4", "fp4", "int8"])
@pytest.mark.parametrize("preset", PRESETS)
def test_counts_equal_peft_on_quantized_base(preset, quantization):
    model = tiny_model(preset, quantization=quantization)
    kind = {"nf4": "Linear4bit", "fp4": "Linear4bit", "int8": "Linear8bitLt"}[quantization]
    assert any(type(m).__name__ == kind for m in model.modules())  # really quantized
    # the count from the config alone (no weights) equals peft's count on the quantized model
    from_config = _ours(shrink_config(preset), quantization=quantization)
    assert from_config == _peft_counts(model, target_modules="all-linear")


def test_config_and_live_module_describe_the_same_model():
    model = tiny_model("Qwen2.5-0.5B")
    assert describe_architecture(model) == describe_architecture(shrink_config("Qwen2.5-0.5B"))


def test_llama3_8b_r16_all_linear_matches_the_published_count():
    # peft prints "trainable params: 41,943,040 || all params: 8,072,204,288" for this setup
    c = count_lora_params("Llama-3.1-8B", r=16, target_modules="all-linear")
    assert (c.trainable_params, c.total_params) == (41_943_040, 8_072_204_288)
    assert c.trainable_percent == pytest.approx(100 * 41_943_040 / 8_072_204_288)


def test_breakdown_shows_shapes_and_the_full_update_arithmetic():
    c = count_lora_params("Llama-3.1-8B", r=8, target_modules=["q_proj", "k_proj"])
    by_name = {m.name: m for m in c.modules}
    q, k = by_name["q_proj"], by_name["k_proj"]
    assert (q.in_features, q.out_features, q.count) == (4096, 4096, 32)
    assert (k.in_features, k.out_features) == (4096, 8 * 128)  # GQA: kv heads x head_dim
    assert q.full_update_params_each == 4096 * 4096
    assert q.lora_params_each == 8 * (4096 + 4096)
    assert c.lora_params == c.trainable_params == 32 * 8 * (4096 + 4096) + 32 * 8 * (4096 + 1024)
    assert c.as_dict()["modules"][0]["lora_params"] == q.lora_params


def test_gpt2_conv1d_layers_are_linear_targets():
    c = count_lora_params("GPT-2", r=8)
    shapes = {(m.name, m.in_features, m.out_features) for m in c.modules}
    assert shapes == {("c_attn", 768, 2304), ("c_proj", 768, 768), ("c_fc", 768, 3072), ("c_proj", 3072, 768)}
    assert all(m.kind == "Conv1D" for m in c.modules)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(r=0), "r"),
        (dict(r=-3), "r"),
        (dict(r=2000), "r"),  # larger than every dimension of the 1B model
        (dict(target_modules=["nope_proj"]), "target_modules"),
        (dict(target_modules=r"model\.norm"), "target_modules"),
        (dict(target_modules=r"nothing.*here"), "target_modules"),
        (dict(target_modules=[]), "target_modules"),
        (dict(target_modules=0.5), "target_modules"),  # a wrong type: not "'float' object is not iterable"
        (dict(quantization="int3"), "quantization"),
        (dict(modules_to_save=["nope"]), "modules_to_save"),
        (dict(lora_bias=True, use_dora=True), "lora_bias"),
    ],
)
def test_bad_input_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}[:=]"):
        count_lora_params("Llama-3.2-1B", **kwargs)


def test_r_bound_is_the_smallest_adapted_dimension():
    # Llama-3.2-1B: k_proj/v_proj produce 8 kv heads x 64 = 512 features
    assert count_lora_params("Llama-3.2-1B", r=512).r == 512
    with pytest.raises(ValueError, match="allowed 1..512"):
        count_lora_params("Llama-3.2-1B", r=513)
    assert count_lora_params("Llama-3.2-1B", r=1000, target_modules=["q_proj"]).r == 1000
