"""Memory planner vs measurement: predicted bytes per component against real tiny LoRA training steps.

For every grid point (batch, sequence, r, base quantization none/int8/nf4, gradient checkpointing,
attention kernel) a tiny Llama-shaped model -- and, on fewer points, tiny GPT-2 (Conv1D, LayerNorm, dropout),
Gemma-2, Phi-3 (fused qkv) and Qwen2.5 models -- takes one AdamW step on the CPU, in fp32 or as a bf16 base with
fp32 adapters under torch.autocast (how the HF Trainer runs bf16); lorakit.sizing.measure sums
the tensors it holds (weights with their quantization state, adapters, gradients, optimizer state) and the
bytes autograd saves for backward (activations, logits), and ``estimate_memory`` predicts each from the
config alone. Errors are (predicted - measured) / measured in percent. Target: median |error| <= 5 %,
max <= 10 % on the total. With a CUDA GPU, the total (less the runtime allowance) is also compared with
``torch.cuda.max_memory_allocated`` over the second step of a real run.

    python benchmarks/memory_planner.py            # the full grid, 160 points (~10 minutes on a busy 2-core machine)
    python benchmarks/memory_planner.py --quick    # 12 points
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from typing import Any

PRESET = "Llama-3.1-8B"  # shrunk: same structure (GQA 4:1, untied head), small dimensions
TINY = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=3, vocab_size=512)
COMPONENTS = ("weights", "adapter", "gradients", "optimizer", "activations", "logits")


FAMILIES = ("GPT-2", "Gemma-2-2B", "Phi-3-mini-4k", "Qwen2.5-0.5B")  # at their shrink_config defaults


def grid(quick: bool) -> list[dict[str, Any]]:
    """Grid points: a preset and estimate_memory keyword arguments."""
    keys = ("batch_size", "seq_len", "r", "quantization", "gradient_checkpointing", "attention")
    if quick:
        points = [(1, 64, 8, "none", False, "sdpa"), (2, 128, 8, "none", True, "sdpa"),
                  (2, 64, 16, "int8", False, "sdpa"), (1, 128, 16, "nf4", True, "sdpa"),
                  (2, 128, 8, "nf4", False, "eager"), (1, 64, 32, "none", True, "eager"),
                  (4, 32, 8, "int8", True, "sdpa"), (2, 96, 4, "none", False, "sdpa")]
        families = [("GPT-2", (2, 64, 8, "none", True, "sdpa")), ("Phi-3-mini-4k", (2, 64, 8, "nf4", True, "sdpa"))]
    else:
        points = list(itertools.product((1, 2), (64, 128), (8, 32), ("none", "int8", "nf4"), (False, True),
                                        ("sdpa", "eager")))
        families = [(f, (b, 64, 8, q, ck, "eager" if f.startswith("Gemma") else "sdpa"))
                    for f in FAMILIES for b in (1, 2) for q in ("none", "nf4") for ck in (False, True)]
    # bf16 base, fp32 adapters, forward under torch.autocast: how the HF Trainer and lorakit's trainer run bf16
    mixed = [(1, 64, 8, "none", False, "sdpa"), (2, 128, 16, "nf4", True, "sdpa")] if quick else list(
        itertools.product((1, 2), (64, 128), (8,), ("none", "nf4"), (False, True), ("sdpa", "eager")))
    llama = [dict(zip(keys, p, strict=True), preset=PRESET, precision="fp32") for p in points]
    llama += [dict(zip(keys, p, strict=True), preset=PRESET, precision="bf16") for p in mixed]
    return llama + [dict(zip(keys, p, strict=True), preset=f, precision="fp32") for f, p in families]


def _tiny_dims(preset: str) -> dict[str, int]:
    return TINY if preset == PRESET else {}


def _model(point: dict[str, Any], device: str = "cpu") -> Any:
    import peft

    from lorakit.sizing.measure import tiny_model

    model = tiny_model(point["preset"], quantization=point["quantization"], attention=point["attention"],
                       precision=point["precision"], **_tiny_dims(point["preset"]))
    if device != "cpu" and point["quantization"] == "none":
        model = model.to(device)
    lora = peft.get_peft_model(model, peft.LoraConfig(r=point["r"], target_modules="all-linear"))
    if point["gradient_checkpointing"]:  # reentrant: the kept layer inputs pass through saved-tensor hooks
        lora.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    return lora.train()


def _predict(point: dict[str, Any], device: str = "cpu") -> Any:
    from lorakit.sizing import estimate_memory
    from lorakit.sizing.architecture import shrink_config

    settings = {k: v for k, v in point.items() if k != "preset"}
    return estimate_memory(shrink_config(point["preset"], **_tiny_dims(point["preset"])), optimizer="adamw",
                           double_quant=True, runtime_overhead_bytes=0, device=device, **settings)


def _error_pct(predicted: float, measured: float) -> float:
    if measured == 0:
        return 0.0 if predicted == 0 else float("inf")
    return 100.0 * (predicted - measured) / measured


def measure_point(point: dict[str, Any]) -> dict[str, Any]:
    """One CPU training step: measured and predicted bytes per component, and the errors."""
    import torch

    from lorakit.sizing.measure import measure_training_step

    torch.manual_seed(0)
    model = _model(point)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    vocab = model.get_output_embeddings().out_features
    batch = torch.randint(0, vocab, (point["batch_size"], point["seq_len"]))
    mixed = torch.bfloat16 if point["precision"] == "bf16" else None  # autocast, as the trainers run bf16
    measured = measure_training_step(model, batch, optimizer, autocast=mixed)
    predicted = _predict(point).as_dict()
    record: dict[str, Any] = dict(point)
    for comp in COMPONENTS:
        key = f"{comp}_bytes"
        record[f"measured_{key}"], record[f"predicted_{key}"] = measured[key], predicted[key]
        record[f"{comp}_error_pct"] = _error_pct(predicted[key], measured[key])
    total_measured = sum(measured[f"{c}_bytes"] for c in COMPONENTS)
    total_predicted = sum(predicted[f"{c}_bytes"] for c in COMPONENTS)
    record["measured_total_bytes"], record["predicted_total_bytes"] = total_measured, total_predicted
    record["total_error_pct"] = _error_pct(total_predicted, total_measured)
    return record


def cuda_point(point: dict[str, Any]) -> dict[str, Any]:
    """Peak allocated bytes of the second step of a real CUDA run vs the planner's total (no runtime allowance)."""
    import torch

    model = _model(point, device="cuda") if point["quantization"] == "none" else _quantized_on_cuda(point)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    vocab = model.get_output_embeddings().out_features
    batch = torch.randint(0, vocab, (point["batch_size"], point["seq_len"]), device="cuda")
    for step in range(2):  # the second step runs with the optimizer state in place, like every later step
        if step == 1:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=point["precision"] == "bf16"):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    predicted = _predict(point, device="cuda").total_bytes
    del model, optimizer
    torch.cuda.empty_cache()
    return dict(point, cuda_peak_bytes=peak, predicted_total_bytes=predicted,
                cuda_total_error_pct=_error_pct(predicted, peak))


def _quantized_on_cuda(point: dict[str, Any]) -> Any:
    """bitsandbytes quantizes while loading: build on CPU, save, reload onto the GPU."""
    import tempfile

    import peft
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from lorakit.sizing.measure import tiny_model

    base = tiny_model(point["preset"], attention=point["attention"], precision=point["precision"],
                      **_tiny_dims(point["preset"]))
    q = point["quantization"]
    dtype = torch.bfloat16 if point["precision"] == "bf16" else torch.float32
    bnb = BitsAndBytesConfig(load_in_8bit=True) if q == "int8" else BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=q, bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
    with tempfile.TemporaryDirectory() as tmp:
        base.save_pretrained(tmp)
        model = AutoModelForCausalLM.from_pretrained(tmp, quantization_config=bnb, device_map={"": 0}, dtype=dtype,
                                                     attn_implementation=point["attention"])
    lora = peft.get_peft_model(model, peft.LoraConfig(r=point["r"], target_modules="all-linear"))
    if point["gradient_checkpointing"]:
        lora.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    return lora.train()


def _quiet() -> None:
    """No progress bars or info logs from the save/reload of quantized models between table rows."""
    import transformers
    from huggingface_hub.utils import disable_progress_bars

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    disable_progress_bars()


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Every grid point measured on the CPU (and on CUDA when there is a GPU): one record each."""
    import torch

    _quiet()
    records = [measure_point(p) for p in grid(quick)]
    if torch.cuda.is_available():
        for record, extra in zip(records, [cuda_point(p) for p in grid(quick)], strict=True):
            record.update(cuda_peak_bytes=extra["cuda_peak_bytes"],
                          cuda_total_error_pct=extra["cuda_total_error_pct"])
    return records


def summary(records: list[dict[str, Any]]) -> list[str]:
    """Table lines: one row per point (error % per component and total), then median and max |error|."""
    cols = [*COMPONENTS, "total"] + (["cuda_total"] if "cuda_total_error_pct" in records[0] else [])
    head = f"{'model (tiny)':13} {'prec':>4} {'batch':>5} {'seq':>4} {'r':>3} {'quant':>5} {'ckpt':>5} {'attn':>5} | " + " ".join(
        f"{c[:11]:>11}" for c in cols)
    lines = ["error % = (predicted - measured) / measured", head, "-" * len(head)]
    for rec in records:
        lines.append(f"{rec['preset'][:13]:13} {rec['precision']:>4} {rec['batch_size']:>5} {rec['seq_len']:>4} {rec['r']:>3} "
                     f"{rec['quantization']:>5} "
                     f"{rec['gradient_checkpointing']!s:>5} {rec['attention']:>5} | "
                     + " ".join(f"{rec[f'{c}_error_pct']:>+11.2f}" for c in cols))
    lines.append("-" * len(head))
    for name, fn in (("median |err|", statistics.median), ("max |err|", max)):
        stats = " ".join(f"{fn(abs(r[f'{c}_error_pct']) for r in records):>11.2f}" for c in cols)
        lines.append(f"{name:>53} | {stats}")
    total = [abs(r["total_error_pct"]) for r in records]
    verdict = "meets" if statistics.median(total) <= 5 and max(total) <= 10 else "MISSES"
    lines.append(f"total: median {statistics.median(total):.2f} %, max {max(total):.2f} % -> {verdict} "
                 f"the target (median <= 5 %, max <= 10 %) over {len(records)} points")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 grid points instead of 160")
    args = parser.parse_args()
    print("\n".join(summary(run(args.quick))))


if __name__ == "__main__":
    main()
