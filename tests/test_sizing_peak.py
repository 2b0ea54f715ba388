"""The planner's peak against measured steps (CPU), the attention kernel against torch's rules, the GPU facts."""

from __future__ import annotations

import pytest

from lorakit.sizing import estimate_memory
from lorakit.sizing.architecture import shrink_config
from lorakit.sizing.attention import AttentionCall, choose_kernel

GIB = 1024**3
TINY = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=3, vocab_size=512)
PRESET = "Llama-3.1-8B"  # GQA: 8 query heads, 2 kv heads once shrunk


# ---------------------------------------------------------------- the published GPU measurements


# gpu-facts/h200-2026-11-30.md, section 2: Llama-3.2-1B, r 16, a plain transformers + peft step on one H200
H200_SECTION_2 = [  # quantization, batch, seq, checkpointing, precision, measured GiB
    ("none", 4, 1024, False, "bf16", 15.53),
    ("none", 4, 1024, True, "bf16", 8.65),
    ("nf4", 4, 1024, False, "bf16", 13.19),
    ("nf4", 4, 1024, True, "bf16", 7.30),
    ("none", 2, 2048, False, "fp32", 38.69),
]


@pytest.mark.parametrize("quantization, batch, seq, checkpointing, precision, measured_gib", H200_SECTION_2)
def test_h200_measurements_within_one_percent(quantization, batch, seq, checkpointing, precision, measured_gib):
    e = estimate_memory("Llama-3.2-1B", r=16, quantization=quantization, batch_size=batch, seq_len=seq,
                        gradient_checkpointing=checkpointing, precision=precision, runtime_overhead_bytes=0,
                        compute_capability=(9, 0), loss_kernel="plain", double_quant=quantization == "nf4")
    assert e.total_gib == pytest.approx(measured_gib, rel=0.01)


def test_fp32_grouped_query_attention_on_cuda_keeps_the_probabilities():
    """The −38 % miss: flash refuses fp32 and memory-efficient refuses enable_gqa, so SDPA takes the math path."""
    kw = dict(r=16, batch_size=2, seq_len=2048, precision="fp32", runtime_overhead_bytes=0)
    cuda = estimate_memory("Llama-3.2-1B", device="cuda", compute_capability=(9, 0), **kw)
    assert cuda.attention_kernel == "math"
    probabilities = 16 * 2 * 32 * 2048**2 * 4  # layers x batch x heads x seq^2 x fp32
    assert cuda.activations_bytes > probabilities
    assert estimate_memory("Llama-3.2-1B", device="cpu", **kw).attention_kernel == "cpu_flash"


def test_bitsandbytes_adapters_share_their_input_only_under_cuda_autocast():
    """peft's bnb LoRA layers test torch.is_autocast_enabled(), which is CUDA's flag."""
    kw = dict(r=16, batch_size=4, seq_len=1024, precision="bf16", runtime_overhead_bytes=0, loss_kernel="plain",
              gradient_checkpointing=False)
    cuda, cpu = (estimate_memory("Llama-3.2-1B", quantization="nf4", device=d, **kw) for d in ("cuda", "cpu"))
    bf16 = estimate_memory("Llama-3.2-1B", quantization="none", device="cuda", **kw)
    t, h, layers = 4 * 1024, 2048, 16
    # each adapter's own bf16 copy of its input: q, k, v; o; gate, up (down's input is kept anyway)
    copies = layers * t * 2 * (3 * h + h + 2 * h) - layers * t * 2 * (h + h)  # minus the shared inputs
    assert bf16.activations_bytes - cuda.activations_bytes == copies
    assert cpu.saved["activations_bytes"] == bf16.saved["activations_bytes"]


# ---------------------------------------------------------------- the kernel, by torch's rules


def _call(**kw):
    base = dict(attention="sdpa", device="cuda", dtype="bf16", batch=2, seq=1024, heads=32, kv_heads=8, head_dim=64)
    return AttentionCall(**dict(base, **kw))


@pytest.mark.parametrize("kw, kernel", [
    (dict(), "flash"),
    (dict(dtype="fp32"), "math"),  # fp32: no flash; GQA: no memory-efficient
    (dict(dtype="fp32", kv_heads=32), "efficient"),
    (dict(mask="padded"), "efficient"),  # a mask tensor: no flash; kv repeated, so heads match
    (dict(mask="packed", dtype="fp32"), "efficient"),
    (dict(compute_capability=(7, 5), dtype="fp16"), "math"),  # a T4: no flash, and GQA
    (dict(compute_capability=(7, 5), dtype="fp16", kv_heads=32), "efficient"),
    (dict(compute_capability=(7, 5), dtype="bf16", kv_heads=32), "math"),
    (dict(compute_capability=(8, 6), head_dim=208, kv_heads=32), "efficient"),  # no flash backward there
    (dict(head_dim=512), "efficient"),  # too wide for flash; transformers repeats kv above 256
    (dict(dtype="fp32", kv_heads=32, head_dim=66), "math"),  # not a multiple of 4
    (dict(device="cpu"), "cpu_flash"),
    (dict(device="cpu", dropout=0.1), "math"),
    (dict(attention="eager"), "eager"),
])
def test_kernel_follows_torch_dispatch(kw, kernel):
    assert choose_kernel(_call(**kw)).name == kernel


def test_transformers_passes_enable_gqa_only_without_a_mask():
    assert _call().enable_gqa and _call().kv_width == 8
    assert not _call(mask="padded").enable_gqa and _call(mask="padded").kv_width == 32


def test_masks_cost_an_additive_bias_per_layer():
    kw = dict(r=8, batch_size=2, seq_len=1000, precision="bf16", runtime_overhead_bytes=0, compute_capability=(9, 0))
    causal, padded = (estimate_memory("Llama-3.2-1B", mask=m, **kw) for m in ("causal", "padded"))
    assert padded.attention_kernel == "efficient"
    # 1000 is not a multiple of 16: memory-efficient attention pads the bias, expanded to every head
    assert padded.activations_bytes - causal.activations_bytes > 16 * 2 * 32 * 1000 * 1008 * 2


def test_tf32_stores_fp32():
    kw = dict(r=8, batch_size=2, seq_len=512, runtime_overhead_bytes=0)
    assert estimate_memory("SmolLM2-135M", precision="tf32", **kw).components() == \
        estimate_memory("SmolLM2-135M", precision="fp32", **kw).components()


def test_fused_head_never_holds_the_logits():
    kw = dict(r=8, batch_size=4, seq_len=2048, precision="bf16", runtime_overhead_bytes=0)
    plain = estimate_memory("Llama-3.2-1B", loss_kernel="plain", **kw)
    fused = estimate_memory("Llama-3.2-1B", loss_kernel="fused", **kw)
    assert estimate_memory("Llama-3.2-1B", loss_kernel="auto", **kw) == fused
    tokens_vocab_fp32 = 4 * 2048 * 128256 * 4
    assert plain.total_bytes - fused.total_bytes > 2 * tokens_vocab_fp32
    assert fused.logits_bytes < tokens_vocab_fp32 / 4


def test_per_device_memory_with_ddp_and_fsdp():
    kw = dict(r=16, batch_size=2, seq_len=1024, precision="bf16", runtime_overhead_bytes=0, loss_kernel="plain")
    one = estimate_memory("Llama-3.1-8B", **kw)
    with pytest.raises(ValueError, match="needs num_processes >= 2"):  # as TrainConfig: one process is not sharded
        estimate_memory("Llama-3.1-8B", num_processes=1, distributed="fsdp", **kw)
    ddp = estimate_memory("Llama-3.1-8B", num_processes=4, distributed="ddp", **kw)
    assert ddp.weights_bytes == one.weights_bytes and ddp.optimizer_bytes == one.optimizer_bytes
    assert ddp.gradients_bytes == one.gradients_bytes + one.saved["gradients_bytes"]  # DDP's buckets
    fsdp = [estimate_memory("Llama-3.1-8B", num_processes=n, distributed="fsdp", **kw) for n in (2, 4, 8)]
    assert [e.weights_bytes for e in fsdp] == sorted((e.weights_bytes for e in fsdp), reverse=True)
    assert all(e.activations_bytes == one.activations_bytes for e in fsdp)  # activations stay per device
    assert fsdp[-1].optimizer_bytes == one.optimizer_bytes // 8


# ---------------------------------------------------------------- the peak of a real CPU step

import peft  # noqa: E402
import torch  # noqa: E402

from lorakit.sizing.measure import measure_peak_step, plain_loss, tiny_model  # noqa: E402
from lorakit.training.config import TrainConfig  # noqa: E402


def _measured_and_predicted(preset=PRESET, dims=None, batch=2, seq=128, quantization="none", precision="fp32",
                            checkpointing=False, attention="sdpa", finetune="lora", mask="causal", reentrant=True):
    torch.manual_seed(0)
    dims = TINY if dims is None else dims
    model = tiny_model(preset, quantization=quantization, precision=precision, attention=attention, device="cpu",
                       **dims)
    if finetune == "lora":
        model = peft.get_peft_model(model, peft.LoraConfig(r=8, target_modules="all-linear"))
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    ids = torch.randint(0, model.get_output_embeddings().out_features, (batch, seq))
    loss = plain_loss
    if mask == "padded":
        keep = torch.ones(batch, seq, dtype=torch.long)
        keep[0, -seq // 4:] = 0
        loss = lambda m, x: m(input_ids=x, attention_mask=keep, labels=x).loss  # noqa: E731
    elif mask == "packed":  # two examples per row; without a cache transformers builds the packing mask
        positions = torch.cat([torch.arange(seq // 2), torch.arange(seq - seq // 2)]).expand(batch, -1)
        loss = lambda m, x: m(input_ids=x, position_ids=positions, labels=x, use_cache=False).loss  # noqa: E731
    mixed = {"bf16": torch.bfloat16}.get(precision)
    measured = measure_peak_step(model, ids, optimizer, autocast=mixed, loss_fn=loss)
    predicted = estimate_memory(shrink_config(preset, **dims), r=8, quantization=quantization, precision=precision,
                                batch_size=batch, seq_len=seq, gradient_checkpointing=checkpointing,
                                **({"use_reentrant": True} if checkpointing and reentrant else {}), attention=attention, finetune=finetune, mask=mask, device="cpu",
                                runtime_overhead_bytes=0, loss_kernel="plain",
                                double_quant=TrainConfig(quantization=quantization).quant.double_quant)
    return measured, predicted


CPU_GRID = [
    dict(),
    dict(checkpointing=True),  # peaks in the recomputed layer (vocab 512)
    dict(dims=dict(TINY, vocab_size=8192), checkpointing=True),  # peaks in the loss
    dict(quantization="nf4"),
    dict(quantization="int8"),  # the 8-bit layers keep their inputs outside autograd
    dict(precision="bf16"),
    dict(attention="eager"),
    dict(finetune="full"),
    dict(mask="padded"),
    dict(mask="packed"),
    dict(preset="Qwen2.5-0.5B", dims={}),  # vocab 256 < 2 x hidden: peaks in the final norm's backward
    dict(preset="GPT-2", dims={}),  # attention dropout: the CPU takes SDPA's math path
]


@pytest.mark.parametrize("case", CPU_GRID, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items() if k != "dims")
                         or "plain")
def test_peak_matches_a_measured_cpu_step(case):
    measured, predicted = _measured_and_predicted(**case)
    assert predicted.total_bytes == pytest.approx(measured, rel=0.02), predicted.peak_phase


@pytest.mark.slow
@pytest.mark.parametrize("case", [dict(quantization="nf4", precision="bf16", checkpointing=True),
                                  dict(preset="Phi-3-mini-4k", dims={}), dict(preset="Gemma-2-2B", dims={},
                                                                              attention="eager")])
def test_peak_matches_more_families(case):
    measured, predicted = _measured_and_predicted(**case)
    assert predicted.total_bytes == pytest.approx(measured, rel=0.02), predicted.peak_phase


@pytest.mark.slow
@pytest.mark.parametrize("case", [
    dict(preset="Gemma-2-2B", dims={}, attention="eager", seq=64),  # the output norm's backward; two masks kept
    dict(preset="Qwen2.5-0.5B", dims={}, seq=64),  # intermediate < hidden: the recomputed forward's end
    dict(preset="GPT-2", dims={}, seq=64),  # LayerNorm keeps the checkpointed input; embedding dropout
    dict(quantization="int8", precision="bf16"),  # the 8-bit base keeps the down projection's input once
    dict(quantization="int8", reentrant=False),  # the planner's default: each 8-bit layer pins its inputs
], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items() if k not in ("dims", "seq")))
def test_checkpointed_peak_matches_a_measured_cpu_step(case):
    """The moments of one checkpointed layer's recompute and backward (lorakit.sizing.recompute)."""
    measured, predicted = _measured_and_predicted(checkpointing=True, **case)
    assert predicted.peak_phase.startswith("layer recompute")
    assert predicted.total_bytes == pytest.approx(measured, rel=0.01), predicted.peak_phase


@pytest.mark.parametrize("checkpointing", [False, True])
def test_fused_head_peak_matches_a_measured_cpu_step(checkpointing):
    from lorakit.training import fused_head
    torch.manual_seed(0)
    dims = dict(TINY, vocab_size=8192)
    model = peft.get_peft_model(tiny_model(PRESET, device="cpu", **dims),
                                peft.LoraConfig(r=8, target_modules="all-linear"))
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    model.train()
    head = fused_head.FusedHead(model)
    batch, seq = 4, 512

    def loss(m, ids):  # every position has a target, as in the planner
        targets = torch.cat([ids[:, 1:], torch.full((batch, 1), -100)], 1).cpu()
        return head(m, {"input_ids": ids}, torch.arange(seq), targets) / ids.numel()

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    measured = measure_peak_step(model, torch.randint(0, 8192, (batch, seq)), optimizer, loss_fn=loss)
    predicted = estimate_memory(shrink_config(PRESET, **dims), r=8, precision="fp32", batch_size=batch, seq_len=seq,
                                gradient_checkpointing=checkpointing, use_reentrant=checkpointing, loss_kernel="fused", device="cpu",
                                runtime_overhead_bytes=0)
    assert predicted.peak_phase == "fused head"
    assert predicted.total_bytes == pytest.approx(measured, rel=0.02)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_full_finetune_with_fp32_master_weights_under_bf16_autocast(checkpointing):
    """fp32 weights, bf16 compute: the weights' bf16 copies and the fp32 residual stream are in the peak."""
    torch.manual_seed(0)
    model = tiny_model(PRESET, precision="fp32", attention="sdpa", device="cpu", **TINY)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    model.train()
    ids = torch.randint(0, TINY["vocab_size"], (2, 128))
    measured = measure_peak_step(model, ids, torch.optim.AdamW(model.parameters()), autocast=torch.bfloat16,
                                 loss_fn=plain_loss)
    predicted = estimate_memory(shrink_config(PRESET, **TINY), finetune="full", precision="bf16", batch_size=2,
                                seq_len=128, gradient_checkpointing=checkpointing, use_reentrant=checkpointing,
                                device="cpu", runtime_overhead_bytes=0, loss_kernel="plain")
    assert predicted.total_bytes == pytest.approx(measured, rel=0.02), predicted.peak_phase
