"""lora_update_stats against numpy's SVD of the dense ΔW (peft's own get_delta_weight) on tiny models: tied and
untied, fp32, bf16, 4-bit and 8-bit bases; rsLoRA and per-layer ranks; the grid a run logs; what it refuses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from peft import LoraConfig, get_peft_model
from tiny import tiny_causal_lm

from lorakit.training.lora_stats import (
    LayerUpdate,
    _Adapted,
    effective_rank,
    lora_update_stats,
    spectra,
    update_grid,
)

BLOCK = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def randomize_b(model, seed: int = 0, std: float = 0.05) -> None:
    """B starts at zero (ΔW = 0); random B makes every update full rank r, as after some training."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or "lora_embedding_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * std)


def dense_oracle(model, update: LayerUpdate, base_weight=None) -> tuple[np.ndarray, float]:
    """(singular values, ||ΔW|| / ||W0||) from the dense ΔW peft forms itself, by numpy."""
    layer = model.get_submodule(update.name)
    delta = layer.get_delta_weight("default").detach().double().numpy()
    w0 = (base_weight if base_weight is not None else layer.get_base_layer().weight).detach().double().numpy()
    return np.linalg.svd(delta, compute_uv=False), float(np.linalg.norm(delta) / np.linalg.norm(w0))


def assert_matches_dense(model, updates, rel=1e-5, base_weight=lambda layer: None) -> None:
    assert updates
    for u in updates:
        sv, rel_norm = dense_oracle(model, u, base_weight(model.get_submodule(u.name)))
        n = len(u.singular_values)
        assert n == min(u.r, *u.shape)
        np.testing.assert_allclose(u.singular_values, sv[:n], rtol=rel, atol=rel * sv[0], err_msg=u.name)
        assert sv[n:].max(initial=0.0) <= 1e-5 * sv[0]  # the dense ΔW has rank r: nothing beyond σ_r
        assert u.rel_norm == pytest.approx(rel_norm, rel=rel)
        assert u.update_norm == pytest.approx(math.sqrt(sum(v * v for v in u.singular_values)), rel=1e-12)


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_fp32_updates_match_numpy_on_the_dense_delta(tied):
    model = tiny_causal_lm(tie_word_embeddings=tied)
    extra = ["embed_tokens"] if tied else ["lm_head"]  # an Embedding LoRA on the tied one, the head on the other
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=BLOCK + extra))
    randomize_b(peft_model)
    updates = lora_update_stats(peft_model)
    assert len(updates) == 2 * len(BLOCK) + 1
    assert {u.module_type for u in updates} == {*BLOCK, *extra}
    assert_matches_dense(peft_model, updates)
    q0 = next(u for u in updates if u.module_type == "q_proj" and u.layer == 0)
    assert q0.name == "base_model.model.model.layers.0.self_attn.q_proj" and q0.scaling == 2.0
    assert q0.shape == (32, 32) and 1.0 <= q0.effective_rank <= 4.0


def test_bf16_base_matches_numpy_on_the_dense_delta():
    peft_model = get_peft_model(tiny_causal_lm().to(torch.bfloat16), LoraConfig(r=4, target_modules="all-linear"))
    randomize_b(peft_model)
    updates = lora_update_stats(peft_model)
    assert peft_model.get_submodule(updates[0].name).get_base_layer().weight.dtype == torch.bfloat16
    assert_matches_dense(peft_model, updates)


def test_rslora_and_per_layer_ranks_use_peft_scaling():
    config = LoraConfig(r=4, lora_alpha=8, use_rslora=True, rank_pattern={"q_proj": 2}, target_modules=BLOCK)
    peft_model = get_peft_model(tiny_causal_lm(), config)
    randomize_b(peft_model, seed=1)
    updates = lora_update_stats(peft_model)
    for u in updates:
        assert u.r == (2 if u.module_type == "q_proj" else 4)
        assert u.scaling == pytest.approx(8 / math.sqrt(u.r))  # rsLoRA: alpha / sqrt(r)
        assert len(u.singular_values) == u.r
    assert_matches_dense(peft_model, updates)


def _quantized_lora(model_dir, quantization: str):
    from lorakit.training.config import TrainConfig
    from lorakit.training.modeling import load_base

    base, _ = load_base(TrainConfig(model=str(model_dir), quantization=quantization, device="cpu"), "cpu")
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear"))
    randomize_b(peft_model)
    return peft_model


def test_4bit_base_is_measured_against_its_dequantized_weight(tiny_model_dir):
    import bitsandbytes.functional as bnbf  # the test's own de-quantization, independent of peft's

    peft_model = _quantized_lora(tiny_model_dir, "nf4")
    updates = lora_update_stats(peft_model)

    def dequantized(layer):
        weight = layer.get_base_layer().weight
        assert type(weight).__name__ == "Params4bit"
        return bnbf.dequantize_4bit(weight.data, weight.quant_state)

    assert_matches_dense(peft_model, updates, base_weight=dequantized)
    # the packed codes' own norm is nothing like W0's: the de-quantization matters
    layer = peft_model.get_submodule(updates[0].name)
    packed = layer.get_base_layer().weight.data.double().norm().item()
    assert abs(packed - updates[0].base_norm) > 0.5 * updates[0].base_norm


def test_8bit_base_is_measured_against_its_dequantized_weight(tiny_model_dir):
    peft_model = _quantized_lora(tiny_model_dir, "int8")
    updates = lora_update_stats(peft_model)

    def dequantized(layer):
        weight = layer.get_base_layer().weight  # int8 codes, one absmax scale per output row (SCB)
        assert weight.dtype == torch.int8
        return weight.data.double() * weight.SCB.double()[:, None] / 127

    assert_matches_dense(peft_model, updates, base_weight=dequantized)


def test_measuring_an_8bit_base_leaves_its_forward_as_it_was(tiny_model_dir):
    """Reading W0 before the first forward (the trainer's tracker does) must not change what the layer computes;
    after that forward the row scales live on the layer's state, and the measurement reads the same W0."""
    measured, untouched = _quantized_lora(tiny_model_dir, "int8"), _quantized_lora(tiny_model_dir, "int8")
    untouched.load_state_dict({k: v for k, v in measured.state_dict().items() if "lora_" in k}, strict=False)
    measured.eval(), untouched.eval()
    before = [u.base_norm for u in lora_update_stats(measured)]
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    out = measured(input_ids=ids).logits
    out.float().sum().backward()  # the adapter's gradients flow through the 8-bit matmul
    torch.testing.assert_close(out, untouched(input_ids=ids).logits)
    assert type(measured.get_submodule(lora_update_stats(measured)[0].name).get_base_layer().weight).__name__ \
        == "Int8Params"
    assert [u.base_norm for u in lora_update_stats(measured)] == pytest.approx(before, rel=1e-6)


def test_a_fresh_adapter_has_no_update():
    updates = lora_update_stats(get_peft_model(tiny_causal_lm(), LoraConfig(r=4, target_modules=BLOCK)))
    assert all(u.rel_norm == 0 and u.effective_rank == 0 and max(u.singular_values) == 0 for u in updates)


def test_the_spectrum_never_forms_the_dense_update():
    """A 200,000 x 200,000 ΔW (320 GB dense) of rank 4 with known singular values, from its factors alone."""
    m = n = 200_000
    generator = torch.Generator().manual_seed(0)
    u = torch.linalg.qr(torch.randn(m, 4, dtype=torch.float64, generator=generator)).Q  # orthonormal columns
    v = torch.linalg.qr(torch.randn(n, 4, dtype=torch.float64, generator=generator)).Q
    d = torch.tensor([3.0, 0.5, 2.0, 1e-3], dtype=torch.float64)
    item = _Adapted("wide", None, a=v.T.contiguous(), b=u * d, scaling=0.5)
    (values,) = spectra([item])
    np.testing.assert_allclose(values.numpy(), [1.5, 1.0, 0.25, 5e-4], rtol=1e-10)


def test_effective_rank_is_roy_and_vetterlis_entropy_rank():
    assert effective_rank([2.0, 2.0, 2.0, 2.0]) == pytest.approx(4.0)
    assert effective_rank([5.0, 0.0, 0.0]) == pytest.approx(1.0)
    assert effective_rank([0.0, 0.0]) == 0.0
    p = np.array([3.0, 1.0]) / 4
    assert effective_rank([3.0, 1.0]) == pytest.approx(math.exp(-(p * np.log(p)).sum()))


@given(st.lists(st.floats(0.0, 1e6), min_size=1, max_size=64))
def test_effective_rank_lies_between_one_and_the_nonzero_count(values):
    nonzero = sum(v > 0 for v in values)
    rank = effective_rank(values)
    if nonzero == 0:
        assert rank == 0.0
    else:
        assert 1.0 - 1e-9 <= rank <= nonzero + 1e-9


def _update(name, layer, kind, update_norm, base_norm, sv=(1.0,)):
    return LayerUpdate(name, kind, layer, len(sv), 1.0, (4, 4), update_norm, base_norm,
                       update_norm / base_norm, tuple(sv), effective_rank(sv))


def test_the_grid_aggregates_per_block_and_module_type():
    updates = [
        _update("model.layers.0.q_proj", 0, "q_proj", 1.0, 10.0, (1.0, 1.0)),
        _update("model.layers.0.experts.0.w1", 0, "w1", 3.0, 4.0),  # two experts share a cell
        _update("model.layers.0.experts.1.w1", 0, "w1", 4.0, 3.0),
        _update("model.layers.1.q_proj", 1, "q_proj", 2.0, 10.0),
        _update("lm_head", None, "lm_head", 0.5, 100.0),
    ]
    grid = update_grid(updates)
    assert grid["module_types"] == ["q_proj", "w1", "lm_head"] and grid["layers"] == [0, 1, None]
    assert grid["rel_norm"][0] == [0.1, pytest.approx(5 / 5), None]  # sqrt(9 + 16) / sqrt(16 + 9)
    assert grid["rel_norm"][1] == [0.2, None, None] and grid["rel_norm"][2] == [None, None, 0.005]
    assert grid["effective_rank"][0][0] == pytest.approx(2.0)
    assert grid["top"]["name"] == "model.layers.0.experts.1.w1" and grid["top"]["rel_norm"] == pytest.approx(4 / 3,
                                                                                                           rel=1e-5)


def test_the_grid_of_a_tiny_model_holds_each_module_once():
    peft_model = get_peft_model(tiny_causal_lm(), LoraConfig(r=4, target_modules="all-linear"))
    randomize_b(peft_model)
    updates = lora_update_stats(peft_model)
    grid = update_grid(updates)
    assert grid["module_types"] == BLOCK and grid["layers"] == [0, 1] and grid["r"] == 4
    for u in updates:
        cell = grid["rel_norm"][grid["layers"].index(u.layer)][grid["module_types"].index(u.module_type)]
        assert cell == pytest.approx(u.rel_norm, rel=1e-5)
    assert grid["top"]["rel_norm"] == pytest.approx(max(u.rel_norm for u in updates), rel=1e-5)


# ---- what it refuses ---------------------------------------------------------------------------------------------
def test_a_model_without_lora_layers_is_refused():
    with pytest.raises(ValueError, match="LlamaForCausalLM has no LoRA layers: wrap the model"):
        lora_update_stats(tiny_causal_lm())


def test_dora_is_refused_with_the_reason():
    peft_model = get_peft_model(tiny_causal_lm(), LoraConfig(r=4, use_dora=True, target_modules=["q_proj"]))
    with pytest.raises(ValueError, match=r"uses DoRA \(use_dora=True\).*not scaling·B·A"):
        lora_update_stats(peft_model)


def test_a_merged_adapter_and_an_unknown_adapter_are_refused():
    peft_model = get_peft_model(tiny_causal_lm(), LoraConfig(r=4, target_modules=["q_proj"]))
    with pytest.raises(ValueError, match=r"adapter='other' is on none of the model's LoRA layers; adapters: \['default'\]"):
        lora_update_stats(peft_model, adapter="other")
    peft_model.merge_adapter()
    with pytest.raises(ValueError, match="merged into the base weight.*unmerge_adapter"):
        lora_update_stats(peft_model)
