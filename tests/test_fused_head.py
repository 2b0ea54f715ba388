"""The fused output head equals the plain one (logits.float() + F.cross_entropy), on tiny models, on the CPU.

Loss within 1e-6 relative in fp32, and the gradient of every trainable tensor within 1e-5 relative (the
largest difference over the largest magnitude), over tied and untied heads, Gemma-2's final-logit
softcapping, LoRA on lm_head and modules_to_save, prompt labels of -100, padded, packed and padding-free
batches, and gradient accumulation. Then: what it keeps for backward, how a run chooses it, and liger-kernel's
plumbing with a stand-in for the CUDA-only package.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tiny import tiny_causal_lm

from lorakit.training import fused_head, liger
from lorakit.training.data import IGNORE, Batches, Example, pack
from lorakit.training.fused_head import FusedHead, LogitTransform, chunked_head_loss

VOCAB = 1000


def llama(tied: bool):
    return tiny_causal_lm("llama", vocab_size=VOCAB, tie_word_embeddings=tied)


def gemma2(softcap: float | None = 0.05):
    """Random logits are small (about 0.1), so a cap of 0.05 bends them well into tanh's curve."""
    return tiny_causal_lm("gemma2", vocab_size=VOCAB, final_logit_softcapping=softcap)


def adapt(model, targets, modules_to_save=None):
    """LoRA with random A and B (B = 0 would make every A gradient zero and the comparison empty)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=4, lora_alpha=8, target_modules=targets, modules_to_save=modules_to_save,
                        init_lora_weights=False, task_type="CAUSAL_LM")
    torch.manual_seed(1)
    return get_peft_model(model, config)


def batches(mode: str, seed: int = 0) -> Batches:
    """Examples of 6..19 tokens whose first third is prompt (label -100), arranged as the trainer arranges them."""
    generator = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(8):
        ids = torch.randint(1, VOCAB, (int(torch.randint(6, 20, (1,), generator=generator)),),
                            generator=generator).tolist()
        cut = len(ids) // 3
        examples.append(Example(ids, [IGNORE] * cut + ids[cut:]))
    if mode == "pack":
        return Batches(pack(examples, 24), 2, seed, "pack", pad_id=0)
    rows = [{"input_ids": ex.input_ids, "labels": ex.labels} for ex in examples]
    return Batches(rows, 3, seed, mode, pad_id=0)


def plain_loss(model, batch) -> torch.Tensor:
    """The reference: every logit, upcast, cross-entropy of the shifted labels, summed."""
    logits = model(**batch["inputs"], use_cache=False).logits.float()
    labels = batch["labels"][:, 1:]
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="sum")


def fused_loss(model, batch, rows: int | None = 5) -> torch.Tensor:
    """5 rows per chunk: every batch spans several chunks, the last one short (the CPU rule would take all)."""
    return FusedHead(model, rows=rows)(model, batch["inputs"], batch["keep"], batch["targets"])


def loss_and_grads(model, micro: list[dict], loss_fn) -> tuple[float, dict[str, torch.Tensor]]:
    """Token-weighted mean loss over the micro-batches, gradients accumulated as the trainer does."""
    model.zero_grad(set_to_none=True)
    n_targets = sum(b["n_targets"] for b in micro)
    total = 0.0
    for batch in micro:
        loss = loss_fn(model, batch) / n_targets
        loss.backward()
        total += loss.item()
    return total, {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def assert_same(model, micro, rows: int | None = 5):
    loss, grads = loss_and_grads(model, micro, lambda m, b: fused_loss(m, b, rows))
    ref_loss, ref_grads = loss_and_grads(model, micro, plain_loss)
    assert loss == pytest.approx(ref_loss, rel=1e-6, abs=0)
    assert grads.keys() == ref_grads.keys() and grads
    for name, ref in ref_grads.items():
        scale = float(ref.abs().max())
        assert scale > 0, f"{name}: the reference gradient is zero, the comparison would be empty"
        assert float((grads[name] - ref).abs().max()) <= 1e-5 * scale, name
    return grads


MODELS = {
    "llama_tied_lora": lambda: adapt(llama(tied=True), "all-linear"),
    "llama_untied_lora_on_lm_head": lambda: adapt(llama(tied=False), ["q_proj", "v_proj", "lm_head"]),
    "llama_untied_modules_to_save": lambda: adapt(llama(tied=False), ["q_proj", "v_proj"], ["lm_head"]),
    "gemma2_softcap_lora": lambda: adapt(gemma2(), "all-linear"),
    "gemma2_softcap_modules_to_save": lambda: adapt(gemma2(), ["q_proj", "v_proj"], ["lm_head"]),
}


@pytest.mark.parametrize("mode", ["pad", "pack", "flat"], ids=["padded", "packed", "padding_free"])
@pytest.mark.parametrize("name", list(MODELS))
def test_fused_equals_plain(name, mode):
    torch.set_num_threads(1)
    model = MODELS[name]()
    data = batches(mode)
    assert_same(model, [data.collate(data.order(0)[0])])


@pytest.mark.parametrize("name", ["llama_tied_lora", "gemma2_softcap_modules_to_save"])
def test_gradient_accumulation_over_micro_batches(name):
    model = MODELS[name]()
    data = batches("pad")
    assert_same(model, [data.collate(indices) for indices in data.order(0)[:3]], rows=None)  # the real rule


def test_the_head_gradient_reaches_modules_to_save_and_lora_but_not_the_frozen_weight():
    model = MODELS["llama_untied_modules_to_save"]()
    data = batches("pad")
    grads = assert_same(model, [data.collate(data.order(0)[0])])
    assert any("lm_head.modules_to_save" in n for n in grads)
    assert not any("lm_head.original_module" in n for n in grads)
    model = MODELS["llama_untied_lora_on_lm_head"]()
    grads = assert_same(model, [data.collate(data.order(0)[0])])
    assert any("lm_head.lora_A" in n for n in grads) and not any("lm_head.base_layer" in n for n in grads)


def test_softcapping_matters_in_these_tests():
    """Without Gemma-2's cap the loss would differ: the comparison above does test the softcap."""
    model, batch = gemma2(), batches("pad").collate([0, 1, 2])
    with torch.no_grad():
        capped = float(fused_loss(model, batch))
        model.config.final_logit_softcapping = None
        uncapped = float(fused_loss(model, batch))
    assert abs(capped - uncapped) > 1e-3 * capped


def test_evaluation_without_grad_gives_the_same_loss():
    model, batch = MODELS["gemma2_softcap_lora"](), batches("flat").collate([0, 1, 2])
    with torch.no_grad():
        assert float(fused_loss(model, batch)) == pytest.approx(float(plain_loss(model, batch)), rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_runs_and_stays_close(dtype):
    """Under autocast the head's matmul runs in the low precision on both paths; the loss is fp32."""
    model, batch = MODELS["llama_tied_lora"](), batches("pad").collate([0, 1, 2])
    with torch.autocast("cpu", dtype=dtype):
        loss, grads = loss_and_grads(model, [batch], fused_loss)
        ref_loss, ref_grads = loss_and_grads(model, [batch], plain_loss)
    assert loss == pytest.approx(ref_loss, rel=1e-3)
    for name, ref in ref_grads.items():
        assert float((grads[name] - ref).abs().max()) <= 3e-2 * float(ref.abs().max()), name


@pytest.mark.parametrize("rows", [1, 3, 7, 64])
def test_chunked_head_with_a_trainable_biased_head_and_a_transform(rows):
    """Any chunk size (ones that do not divide the tokens too), a bias, scale + softcap, -100 targets."""
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50)
    states = torch.randn(23, 16, requires_grad=True)
    targets = torch.randint(50, (23,))
    targets[::4] = IGNORE
    transform = LogitTransform(scale=0.5, softcap=0.3)
    ref = F.cross_entropy(transform(head(states).float()), targets, ignore_index=IGNORE, reduction="sum")
    ref_grads = torch.autograd.grad(ref * 3.0, [states, head.weight, head.bias])
    got = chunked_head_loss(states, targets, head, transform, rows=rows)
    grads = torch.autograd.grad(got * 3.0, [states, head.weight, head.bias])  # backward scales by grad_output
    assert float(got) == pytest.approx(float(ref), rel=1e-6)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)


def test_chunk_rows_follow_liger_on_a_gpu_and_stay_cache_sized_on_a_cpu():
    from lorakit.choices import CPU_CHUNK_ELEMENTS, CPU_CHUNK_ROWS, fused_chunk_tokens

    assert fused_chunk_tokens(4 * 4096, 4096, 32000) == 2048  # liger's worked example: BT 16384, H 4096, V 32k
    assert fused_chunk_tokens(4 * 4096, 4096, 32000, "cuda") == 2048
    for tokens, hidden, vocab in [(4096, 64, 49152), (4096, 576, 49152), (4096, 4096, 128256), (4096, 2048, 262144)]:
        rows = fused_chunk_tokens(tokens, hidden, vocab, "cpu")
        assert rows & (rows - 1) == 0 and rows <= min(CPU_CHUNK_ROWS, 2 * hidden)
        assert rows * vocab <= CPU_CHUNK_ELEMENTS
    assert fused_chunk_tokens(5, 576, 49152, "cpu") == 5 and fused_chunk_tokens(0, 576, 49152, "cpu") == 1


def test_a_batch_without_targets_gives_zero_and_a_graph():
    model, batch = MODELS["llama_tied_lora"](), batches("pad").collate([0, 1])
    batch["targets"] = torch.full_like(batch["targets"], IGNORE)
    loss = fused_loss(model, batch)
    loss.backward()
    assert float(loss) == 0.0


def test_the_fused_head_keeps_at_most_a_tenth_of_the_plain_heads_bytes_at_vocab_32k():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_fused_head import saved_bytes

    fused, plain = saved_bytes(256, 64, 32000, fused=True), saved_bytes(256, 64, 32000, fused=False)
    assert plain >= 256 * 32000 * 4  # the fp32 log-softmax of every row is what the plain head keeps
    assert fused <= 0.10 * plain, (fused, plain)


@pytest.mark.slow  # runs the fused-head benchmark at its quick size
def test_the_benchmark_rows_are_well_formed():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_fused_head

    rows = bench_fused_head.run(quick=True, repeats=1)
    assert [r.status for r in rows if "bytes" in r.metric] == ["pass", "info"]
    assert all(r.values and r.base_values and r.ratio > 0 for r in rows if "difference" not in r.metric)
    assert next(r for r in rows if "difference" in r.metric).status == "pass"  # same losses both ways


# ---- how a run chooses its head ------------------------------------------------------------------------


def _decide(loss_kernel, model, device="cpu", slices_logits=True):
    from lorakit.training import TrainConfig
    from lorakit.training.auto import decide_loss_kernel

    return decide_loss_kernel(TrainConfig(loss_kernel=loss_kernel), device, model, slices_logits)


def test_auto_is_fused_on_the_cpu_with_lorakits_chunked_head():
    choice = _decide("auto", MODELS["llama_tied_lora"]())
    assert choice.value == "fused" and "chunked head" in choice.reason and choice.reason.startswith("auto")
    assert _decide("plain", MODELS["llama_tied_lora"]()).value == "plain"


def test_a_head_the_fused_path_does_not_know_falls_back_or_refuses():
    model = MODELS["llama_tied_lora"]()
    model.config.logit_scale = 0.25  # Llama's forward ignores it; the fused head would scale: a mismatch
    choice = _decide("auto", model)
    assert choice.value == "plain" and "logits are not the output head" in choice.reason
    with pytest.raises(ValueError, match="loss_kernel='fused' cannot run here"):
        _decide("fused", model)
    assert "logits_to_keep" in _decide("auto", MODELS["llama_tied_lora"](), slices_logits=False).reason


def test_without_liger_on_cuda_the_torch_head_runs_and_says_so_once(monkeypatch):
    monkeypatch.setitem(sys.modules, "liger_kernel", None)  # import fails, as where it is not installed
    model = MODELS["llama_tied_lora"]()
    backend, how = fused_head.choose_backend(model, "cuda")
    assert backend == "torch" and "lorakit[gpu]" in how
    head, notes = fused_head.make_fused_head(model, "cuda")
    assert head.backend == "torch" and len(notes) == 1 and "liger-kernel is missing" in notes[0]


def test_liger_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="only on CUDA GPUs"):
        liger.require_liger("cpu")
    with pytest.raises(ValueError, match="only on CUDA GPUs"):
        liger.apply_liger_kernels(MODELS["llama_tied_lora"](), "cpu")


@pytest.fixture
def fake_liger(monkeypatch):
    """A stand-in for liger-kernel (Triton, CUDA-only): its functional loss in torch, and a Llama patcher that
    does what liger's does (instance forwards, and the modeling module's RMSNorm class and RoPE function),
    with torch's numbers. It records its calls."""
    from transformers.models.llama import modeling_llama

    calls = []
    for name in ("apply_rotary_pos_emb", "LlamaRMSNorm", "LlamaMLP"):  # restored after the test whatever happens
        monkeypatch.setattr(modeling_llama, name, getattr(modeling_llama, name))
    original_rope, original_norm = modeling_llama.apply_rotary_pos_emb, modeling_llama.LlamaRMSNorm

    def flce(hidden, weight, target, bias=None, ignore_index=-100, reduction="mean", softcap=None):
        logits = F.linear(hidden, weight, bias).float()
        if softcap is not None:
            logits = torch.tanh(logits / softcap) * softcap
        return F.cross_entropy(logits, target, ignore_index=ignore_index, reduction=reduction)

    def rope(*args, **kwargs):
        return original_rope(*args, **kwargs)

    def norm_forward(self, hidden):
        return original_norm.forward(self, hidden)

    class LigerRMSNorm(original_norm):
        pass

    for thing in (flce, rope, norm_forward, LigerRMSNorm):
        thing.__module__ = "liger_kernel.transformers.fake"

    def apply_llama(rope=True, cross_entropy=False, fused_linear_cross_entropy=True, rms_norm=True, swiglu=True,
                    model=None):
        calls.append(dict(rope=rope, cross_entropy=cross_entropy, fused_linear_cross_entropy=fused_linear_cross_entropy,
                          rms_norm=rms_norm, swiglu=swiglu, model=model))
        if rope:
            modeling_llama.apply_rotary_pos_emb = globals_rope
        if rms_norm:
            modeling_llama.LlamaRMSNorm = LigerRMSNorm
            model.model.norm.forward = norm_forward.__get__(model.model.norm)

    globals_rope = rope
    package = types.ModuleType("liger_kernel")
    transformers = types.ModuleType("liger_kernel.transformers")
    functional = types.ModuleType("liger_kernel.transformers.functional")
    monkey = types.ModuleType("liger_kernel.transformers.monkey_patch")
    functional.liger_fused_linear_cross_entropy = flce
    monkey.MODEL_TYPE_TO_APPLY_LIGER_FN = {"llama": apply_llama}
    package.transformers, transformers.functional, transformers.monkey_patch = transformers, functional, monkey
    for module in (package, transformers, functional, monkey):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    return calls


@pytest.mark.parametrize("name", ["llama_tied_lora", "gemma2_softcap_modules_to_save"])
def test_the_liger_path_passes_weight_softcap_and_sum(fake_liger, name):
    model = MODELS[name]()
    assert fused_head.choose_backend(model, "cuda")[0] == "liger"
    data = batches("pad")
    batch = data.collate(data.order(0)[0])
    head = FusedHead(model, "liger")
    got = head(model, batch["inputs"], batch["keep"], batch["targets"])
    assert float(got) == pytest.approx(float(plain_loss(model, batch)), rel=1e-6)


def test_liger_is_not_used_for_a_lora_adapted_head(fake_liger):
    backend, how = fused_head.choose_backend(MODELS["llama_untied_lora_on_lm_head"](), "cuda")
    assert backend == "torch" and "LoRA on lm_head" in how


def test_liger_block_kernels_are_applied_and_reported_unless_blocks_are_compiled(fake_liger):
    import gc

    from transformers.models.llama import modeling_llama

    rope, norm = modeling_llama.apply_rotary_pos_emb, modeling_llama.LlamaRMSNorm
    model = MODELS["llama_tied_lora"]()
    assert liger.liger_applied(model) == ()
    head, notes = fused_head.make_fused_head(model, "cuda", compile_blocks=True)
    assert head.backend == "liger" and notes == [] and fake_liger == [] and not liger.liger_applied(model)
    fused_head.make_fused_head(model, "cuda")
    assert liger.liger_applied(model) == ("rms_norm", "swiglu", "rope")
    call = fake_liger[-1]
    assert call["model"] is model.get_base_model()
    assert call["cross_entropy"] is False and call["fused_linear_cross_entropy"] is False
    # The class goes back at once: a later model is built plain. RoPE's function is process-wide while this
    # model lives, and a later model's blocks have it too: liger_applied says so.
    assert modeling_llama.LlamaRMSNorm is norm and modeling_llama.apply_rotary_pos_emb is not rope
    other = llama(tied=True)
    assert liger.liger_applied(other) == ("rope",)
    del model, head, call
    fake_liger.clear()
    gc.collect()
    assert modeling_llama.apply_rotary_pos_emb is rope and liger.liger_applied(other) == ()
