"""Memory planner vs measurement: ``estimate_memory`` against real tiny LoRA training steps.

Every grid point (model family, precision, base quantization, gradient checkpointing, attention kernel, batch
layout, loss kernel, full fine-tune) builds a small random model with a preset's structure and takes AdamW
steps. Two oracles from ``lorakit.sizing.measure``:

* on the CPU, the peak of one step (a dispatch-mode tracker adds every tensor storage while it lives, on top
  of the weights and optimizer state), and the tensors of the step by component (weights with their
  quantization state, adapters, gradients, optimizer state, what autograd saves for backward);
* on CUDA, when there is a GPU, ``torch.cuda.max_memory_allocated()`` over the second step, against the
  planner with that GPU's compute capability (its attention kernel and cuBLAS workspaces).

    python benchmarks/memory_planner.py            # the full grid (minutes on a busy 2-core machine)
    python benchmarks/memory_planner.py --quick    # a dozen points
"""

from __future__ import annotations

import itertools
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Row, Target, skipped_row  # noqa: E402

BENCH = "4 memory planner"
PRESET = "Llama-3.1-8B"  # shrunk: same structure (GQA 4:1, untied head), small dimensions
TINY = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=3, vocab_size=512)
COMPONENTS = ("weights", "adapter", "gradients", "optimizer", "activations", "logits")
FAMILIES = ("GPT-2", "Gemma-2-2B", "Phi-3-mini-4k", "Qwen2.5-0.5B")  # at their shrink_config defaults
DEFAULT = dict(preset=PRESET, batch_size=2, seq_len=64, r=8, precision="fp32", quantization="none",
               gradient_checkpointing=False, attention="sdpa", mask="causal", loss_kernel="plain", finetune="lora")


def grid(quick: bool) -> list[dict[str, Any]]:
    """Grid points: a preset and estimate_memory keyword arguments."""
    if quick:
        changes = [{}, dict(gradient_checkpointing=True, batch_size=1, seq_len=128), dict(quantization="int8"),
                   dict(quantization="nf4", gradient_checkpointing=True, r=16), dict(attention="eager"),
                   dict(precision="bf16"), dict(precision="bf16", quantization="nf4", gradient_checkpointing=True),
                   dict(mask="padded"), dict(mask="packed"), dict(loss_kernel="fused", seq_len=256),
                   dict(finetune="full"), dict(preset="GPT-2"), dict(preset="Phi-3-mini-4k", quantization="nf4")]
        return [dict(DEFAULT, **c) for c in changes]
    points = [dict(DEFAULT, batch_size=b, seq_len=n, quantization=q, gradient_checkpointing=ck, attention=a,
                   precision=p)
              for b, n, q, ck, a, p in itertools.product((1, 2), (64, 128), ("none", "int8", "nf4"), (False, True),
                                                         ("sdpa", "eager"), ("fp32", "bf16"))]
    points += [dict(DEFAULT, mask=m, quantization=q) for m in ("padded", "packed") for q in ("none", "nf4")]
    points += [dict(DEFAULT, loss_kernel="fused", seq_len=256, gradient_checkpointing=ck, precision=p)
               for ck in (False, True) for p in ("fp32", "bf16")]
    points += [dict(DEFAULT, finetune="full", gradient_checkpointing=ck) for ck in (False, True)]
    points += [dict(DEFAULT, preset=f, quantization=q, gradient_checkpointing=ck,
                    attention="eager" if f.startswith("Gemma") else "sdpa")
               for f in FAMILIES for q in ("none", "nf4") for ck in (False, True)]
    return points


def _dims(point: dict[str, Any]) -> dict[str, int]:
    return TINY if point["preset"] == PRESET else {}


def _model(point: dict[str, Any], device: str) -> Any:
    import peft

    from lorakit.sizing.measure import tiny_model

    model = tiny_model(point["preset"], quantization=point["quantization"], attention=point["attention"],
                       precision="fp32" if point["precision"] == "tf32" else point["precision"], device=device,
                       **_dims(point))
    if point["finetune"] == "lora":
        model = peft.get_peft_model(model, peft.LoraConfig(r=point["r"], target_modules="all-linear"))
    if point["gradient_checkpointing"]:  # reentrant: the kept layer inputs pass through saved-tensor hooks
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    return model.train()


def _loss_fn(point: dict[str, Any], model: Any) -> Any:
    """How the step computes its loss: the model's own head, with a padding or packing layout, or fused."""
    import torch

    from lorakit.sizing.measure import plain_loss

    b, n = point["batch_size"], point["seq_len"]
    if point["loss_kernel"] == "fused":
        from lorakit.training.fused_head import FusedHead  # ImportError: the point is skipped

        head = FusedHead(model)

        def fused(m: Any, ids: Any) -> Any:
            targets = torch.cat([ids[:, 1:], torch.full((b, 1), -100, device=ids.device)], 1).cpu()
            return head(m, {"input_ids": ids}, torch.arange(n), targets) / ids.numel()

        return fused
    if point["mask"] == "padded":
        keep = torch.ones(b, n, dtype=torch.long)
        keep[0, -n // 4:] = 0
        return lambda m, ids: m(input_ids=ids, attention_mask=keep.to(ids.device), labels=ids).loss
    if point["mask"] == "packed":  # two examples per row; transformers builds the packing mask without a cache
        positions = torch.cat([torch.arange(n // 2), torch.arange(n - n // 2)]).expand(b, -1)
        return lambda m, ids: m(input_ids=ids, position_ids=positions.to(ids.device), labels=ids,
                                use_cache=False).loss
    return plain_loss


def _predict(point: dict[str, Any], device: str, compute_capability: Any = None) -> Any:
    from lorakit.quantization import QUANTIZATIONS
    from lorakit.sizing import estimate_memory
    from lorakit.sizing.architecture import shrink_config

    settings = {k: v for k, v in point.items() if k != "preset"}
    if point["gradient_checkpointing"]:  # as _model checkpoints (the planner's default is the trainer's: False)
        settings["use_reentrant"] = True
    double_quant = QUANTIZATIONS[point["quantization"]].double_quant  # as tiny_model quantizes
    return estimate_memory(shrink_config(point["preset"], **_dims(point)), optimizer="adamw", double_quant=double_quant,
                           runtime_overhead_bytes=0, device=device, compute_capability=compute_capability,
                           **settings)


def _error_pct(predicted: float, measured: float) -> float:
    if measured == 0:
        return 0.0 if predicted == 0 else float("inf")
    return 100.0 * (predicted - measured) / measured


def _batch(point: dict[str, Any], model: Any) -> Any:
    import torch

    torch.manual_seed(1)
    return torch.randint(0, model.get_output_embeddings().out_features, (point["batch_size"], point["seq_len"]))


def measure_point(point: dict[str, Any]) -> dict[str, Any]:
    """One grid point on the CPU: the peak of a step, and its tensors by component, measured and predicted."""
    import torch

    from lorakit.sizing.measure import measure_peak_step, measure_training_step

    record: dict[str, Any] = dict(point)
    mixed = torch.bfloat16 if point["precision"] == "bf16" else None  # autocast, as the trainers run bf16
    predicted = _predict(point, "cpu")
    torch.manual_seed(0)
    model = _model(point, "cpu")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    peak = measure_peak_step(model, _batch(point, model), optimizer, autocast=mixed, loss_fn=_loss_fn(point, model))
    record.update(measured_peak_bytes=peak, predicted_peak_bytes=predicted.total_bytes,
                  peak_error_pct=_error_pct(predicted.total_bytes, peak), phase=predicted.peak_phase,
                  kernel=predicted.attention_kernel)
    if point["loss_kernel"] == "plain" and point["mask"] == "causal":  # what measure_training_step runs
        torch.manual_seed(0)
        model = _model(point, "cpu")
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
        measured = measure_training_step(model, _batch(point, model), optimizer, autocast=mixed)
        for comp in COMPONENTS:
            key = f"{comp}_bytes"
            record[f"{comp}_error_pct"] = _error_pct(predicted.saved[key], measured[key])
    return record


def cuda_point(point: dict[str, Any]) -> dict[str, Any]:
    """One grid point on the GPU: max_memory_allocated over the second step vs the planner (no runtime allowance)."""
    import torch

    from lorakit.sizing.measure import measure_peak_step, release_cuda_memory

    before = release_cuda_memory()  # the last point's tensors and cuBLAS workspaces are not this one's
    torch.backends.cuda.matmul.allow_tf32 = point["precision"] == "tf32"
    torch.manual_seed(0)
    model = _model(point, "cuda")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    mixed = torch.bfloat16 if point["precision"] == "bf16" else None
    peak = measure_peak_step(model, _batch(point, model), optimizer, autocast=mixed,
                             loss_fn=_loss_fn(point, model)) - before
    predicted = _predict(point, "cuda", torch.cuda.get_device_capability())
    del model, optimizer
    return {"cuda_peak_bytes": peak, "cuda_predicted_bytes": predicted.total_bytes,
            "cuda_peak_error_pct": _error_pct(predicted.total_bytes, peak), "cuda_kernel": predicted.attention_kernel}


def _quiet() -> None:
    """No progress bars or info logs from the save/reload of quantized models between table rows."""
    import warnings

    import transformers
    from huggingface_hub.utils import disable_progress_bars

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning)


def records(quick: bool = False) -> list[dict[str, Any]]:
    """Every grid point measured on the CPU (and on CUDA when there is a GPU); a point that cannot run says why."""
    import torch

    _quiet()
    out = []
    for point in grid(quick):
        try:
            record = measure_point(point)
        except ImportError as exc:  # the fused head lives in lorakit.training; bitsandbytes may be missing
            out.append(dict(point, skipped=f"{type(exc).__name__}: {exc}"))
            continue
        if torch.cuda.is_available():
            record.update(cuda_point(point))
        out.append(record)
    return out


def rows_from_records(recs: list[dict[str, Any]]) -> list[Row]:
    """Median and max |error| % over the grid: the peaks carry the targets, the components are for insight."""
    measured = [r for r in recs if "skipped" not in r]
    if not measured:
        return [skipped_row(BENCH, "no grid point could be measured")]
    keys = sorted({k for r in measured for k in r if k.endswith("error_pct")}, key=lambda k: "peak" not in k)
    rows = []
    for key in keys:
        errors = [abs(r[key]) for r in measured if key in r and abs(r[key]) != float("inf")]
        if not errors:
            continue
        name, on_peak = key.removesuffix("_error_pct"), "peak" in key
        note = f"{len(errors)} grid points" + (f"; {len(recs) - len(measured)} skipped" if len(recs) > len(measured)
                                               else "")
        rows.append(Row(BENCH, f"{name}: median abs error", "%", [statistics.median(errors)],
                        target=Target("<=", 5.0, on="lorakit") if on_peak else None, note=note if on_peak else "",
                        higher_is_better=False).finish())
        rows.append(Row(BENCH, f"{name}: max abs error", "%", [max(errors)],
                        target=Target("<=", 10.0, on="lorakit") if on_peak else None, higher_is_better=False).finish())
    return rows


def run(quick: bool = False, repeats: int = 1) -> list[Row]:
    """The benchmark's rows (the measurements are deterministic byte counts: ``repeats`` changes nothing)."""
    return rows_from_records(records(quick))


def table(recs: list[dict[str, Any]]) -> list[str]:
    """One line per point: predicted vs measured peak (MiB), the error, the peak's moment and the kernel."""
    cuda = any("cuda_peak_bytes" in r for r in recs)
    head = (f"{'model (tiny)':13} {'prec':>4} {'quant':>5} {'ckpt':>5} {'attn':>5} {'mask':>6} {'loss':>5} "
            f"{'tune':>4} {'b x seq':>8} | {'measured':>9} {'predicted':>9} {'error':>7} | peak at / kernel"
            + (f" | {'cuda meas':>9} {'cuda pred':>9} {'error':>7}" if cuda else ""))
    lines = ["CPU peak: measured by a dispatch-mode tracker; MiB; error = (predicted - measured) / measured",
             head, "-" * len(head)]
    mib = 2**20
    for r in recs:
        left = (f"{r['preset'][:13]:13} {r['precision']:>4} {r['quantization']:>5} {r['gradient_checkpointing']!s:>5} "
                f"{r['attention']:>5} {r['mask']:>6} {r['loss_kernel']:>5} {r['finetune']:>4} "
                f"{r['batch_size']:>3}x{r['seq_len']:<4} | ")
        if "skipped" in r:
            lines.append(left + f"skipped: {r['skipped']}")
            continue
        line = (left + f"{r['measured_peak_bytes'] / mib:9.3f} {r['predicted_peak_bytes'] / mib:9.3f} "
                f"{r['peak_error_pct']:+6.2f}% | {r['phase']} / {r['kernel']}")
        if "cuda_peak_bytes" in r:
            line += (f" | {r['cuda_peak_bytes'] / mib:9.2f} {r['cuda_predicted_bytes'] / mib:9.2f} "
                     f"{r['cuda_peak_error_pct']:+6.2f}% ({r['cuda_kernel']})")
        lines.append(line)
    return lines


def main() -> None:
    from common import records_main

    records_main(__doc__, "a dozen grid points instead of the full grid", records, table, rows_from_records)


if __name__ == "__main__":
    main()
