"""The planner against torch.cuda.max_memory_allocated() over one step: runs only where there is a CUDA GPU.

Three small configs (fp32, bf16 autocast, nf4 + gradient checkpointing) on the GPU the tests run on, with
that GPU's compute capability (which picks the attention kernel and the cuBLAS workspace size). The shapes
are small enough for any GPU and large enough that a few MiB of allocator rounding stay below 1 %.
"""

from __future__ import annotations

import peft
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="compares with torch.cuda memory: needs a GPU")

from lorakit.sizing import estimate_memory  # noqa: E402
from lorakit.sizing.architecture import shrink_config  # noqa: E402
from lorakit.sizing.measure import measure_peak_step, release_cuda_memory, tiny_model  # noqa: E402

PRESET = "Llama-3.1-8B"  # grouped-query heads: fp32 takes SDPA's math path on CUDA
DIMS = dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=4, num_attention_heads=8,
            num_key_value_heads=2, head_dim=64, vocab_size=32000)
CONFIGS = [
    dict(precision="fp32", quantization="none", gradient_checkpointing=False),
    dict(precision="bf16", quantization="none", gradient_checkpointing=False),
    dict(precision="bf16", quantization="nf4", gradient_checkpointing=True),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c['precision']}-{c['quantization']}"
                         f"{'-ckpt' if c['gradient_checkpointing'] else ''}")
def test_planner_matches_the_gpu_peak(config):
    before = release_cuda_memory()  # whatever earlier tests left on the GPU is not this step's
    torch.manual_seed(0)
    batch, seq = 4, 512
    model = tiny_model(PRESET, quantization=config["quantization"], precision=config["precision"], attention="sdpa",
                       device="cuda", **DIMS)
    model = peft.get_peft_model(model, peft.LoraConfig(r=16, target_modules="all-linear"))
    if config["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    mixed = torch.bfloat16 if config["precision"] == "bf16" else None
    measured = measure_peak_step(model, torch.randint(0, DIMS["vocab_size"], (batch, seq)), optimizer,
                                 autocast=mixed) - before
    from lorakit.quantization import QUANTIZATIONS

    quantized = QUANTIZATIONS[config.get("quantization", "none")]  # tiny_model double-quantizes where offered
    predicted = estimate_memory(shrink_config(PRESET, **DIMS), r=16, batch_size=batch, seq_len=seq, device="cuda",
                                compute_capability=torch.cuda.get_device_capability(), runtime_overhead_bytes=0,
                                use_reentrant=bool(config["gradient_checkpointing"]),  # as measured
                                **{"loss_kernel": "plain", "gradient_checkpointing": False,
                                   "double_quant": quantized.double_quant, **config})
    assert predicted.total_bytes == pytest.approx(measured, rel=0.05), (
        f"predicted {predicted.total_bytes / 2**20:.1f} MiB ({predicted.peak_phase}, {predicted.attention_kernel}) "
        f"vs measured {measured / 2**20:.1f} MiB")
