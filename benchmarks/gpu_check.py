"""One-shot GPU check: a Llama-3.2-1B-shaped random model at seq 2048, lorakit against transformers.Trainer.

    bash benchmarks/gpu_wheels.sh                 # once, with a network: the wheels a bare GPU machine lacks
    python benchmarks/gpu_check.py                # on the GPU machine (no network needed), about 8 min on an H200
    python benchmarks/gpu_check.py --dry-run      # the same code path on the CPU: tiny shape, a few steps

Every lorakit run uses lorakit's defaults (loss_kernel "auto" = fused head, gradient_checkpointing "auto" =
on for quantized bases) unless the row says otherwise; the headline bf16 run also compiles the decoder
blocks. Baselines, all logging at lorakit's interval (logging every step cost the Trainer 27 % on an H200):
the Trainer "tuned" to lorakit's settings; the Trainer with its own `use_liger_kernel=True` (the best switch
a user can turn on today); the Trainer "as shipped" for quantized bases (peft's
prepare_model_for_kbit_training + gradient checkpointing). Rows: tokens/s, MFU, peak memory and the planner's
error per config; fused head on/off; compile on/off with the compile seconds; tf32 vs fp32; QLoRA vs LoRA;
one whole pass over variable-length data against the Trainer padding by length groups and padding-free;
the dashboard over 40 steps logging every step; device syncs per step; check_fit's plan of a worst batch against
max_memory_allocated, and batch_size="auto" under a memory limit (gpu_fit.py). On a machine with 2+ GPUs (and in
the dry run, as 2 CPU processes): DDP, FSDP and QLoRA + FSDP in two processes through
`lorakit train --num-processes 2`, against one GPU with the same global batch (multi_gpu.py).

MFU = tokens/s x 4N / peak, N = weights in matmuls (all Linear layers + output head, no embedding lookup),
4N = forward 2N + backward through frozen weights 2N (LoRA's own weight gradients and attention's
sequence-dependent work are left out); peak = the card's dense bf16 rate (H100/H200 SXM: 989 TFLOP/s).
Configs the machine cannot run (tf32 on a CPU, ...) are skipped with lorakit's own message.
"""

from __future__ import annotations

import argparse
import gc
import glob
import importlib.util
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the benchmarks, and lorakit itself when it is not installed
SITE = "/tmp/lorakit-gpu-site"
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}
# wheel file prefix -> module it provides (installed from .whl/ when the module is missing)
CARRIED = {"bitsandbytes": "bitsandbytes", "liger_kernel": "liger_kernel", "peft": "peft"}


def ensure_wheels() -> str:
    """Install the carried wheels (.whl/) whose module is missing into a private site dir; say what is there."""
    missing = [w for prefix, module in CARRIED.items() if importlib.util.find_spec(module) is None
               for w in sorted(glob.glob(str(HERE.parent / ".whl" / f"{prefix}-*.whl")))]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", SITE,
                        *missing], check=True)
        sys.path.insert(0, SITE)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [SITE, os.environ.get("PYTHONPATH")]))
    found = []
    for module in CARRIED.values():
        try:
            found.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            found.append(f"{module} missing")
    return ", ".join(found)


def _free() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class _Info:
    """Sink that keeps on_train_start's info (the planner's predicted peak, the resolved choices)."""

    def __init__(self) -> None:
        self.info: dict = {}

    def on_train_start(self, info: dict) -> None:
        self.info = info


def _supported(precision: str, quantization: str, path: Path) -> str | None:
    """None when lorakit's pre-flight accepts the config on this machine, else its message."""
    from lorakit.training import TrainConfig
    from lorakit.training.preflight import check_before_load

    try:
        check_before_load(TrainConfig(model=str(path), dataset=["x"], precision=precision, quantization=quantization))
    except (ValueError, ImportError) as exc:
        return str(exc).splitlines()[0]
    return None


def lorakit_run(path, texts, s, **overrides):
    """One lorakit run; the result's extra carries the planner's prediction."""
    import bench_trainer as bt

    info = _Info()
    result = bt.lorakit_train(path, texts, s, sinks=(info,), **overrides)
    result.extra["predicted_peak_bytes"] = info.info.get("predicted_peak_bytes")
    _free()
    return result


def trainer_run(path, ids, s, **kwargs):
    import hf_baseline as hb

    result = hb.hf_train(path, ids, s, **kwargs)
    _free()
    return result


def measure(dry_run: bool) -> tuple[dict, dict]:
    """Every GPU-check run, keyed by what it is; plus the shape and settings used."""
    import bench_trainer as bt
    import hf_baseline as hb
    import torch

    if dry_run:  # dynamo's path without generating C++ (inductor takes minutes on a small CPU)
        import lorakit.training.compile as compile_module

        compile_module.BACKEND = "aot_eager"
    shape = bt.TINY if dry_run else hb.LLAMA_3_2_1B
    seq = 64 if dry_run else 2048
    s = hb.RunSettings(steps=3 if dry_run else 12, batch_size=2, max_seq_length=seq, warmup_steps=1, logging_steps=1)
    path = hb.build_model_dir(shape, tempfile.mkdtemp(prefix="lorakit-gpu-check-"))
    texts, ids = bt.fixed_data(shape, s)
    runs: dict = {"skipped": {}}

    def config(precision: str, quant: str):
        why = _supported(precision, quant, path)
        if why:
            runs["skipped"][f"{precision}/{quant}"] = why
        return None if why else replace(s, precision=precision, quantization=quant)

    if (c := config("fp32", "none")) is not None:
        runs["fp32/none"] = {"lk": lorakit_run(path, texts, c), "hf": trainer_run(path, ids, c)}
    if (c := config("tf32", "none")) is not None:
        runs["tf32/none"] = {"lk": lorakit_run(path, texts, c)}
    bf16_ok = torch.cuda.is_available() and (c := config("bf16", "none")) is not None
    b = c if bf16_ok else s  # the dry run trains fp32: this CPU only emulates bf16
    runs["bf16/none"] = {
        "lk": lorakit_run(path, texts, b, compile=True),  # the headline: fused head + compiled blocks
        "lk_eager": lorakit_run(path, texts, b),
        "lk_plain": lorakit_run(path, texts, b, loss_kernel="plain"),
        "hf": trainer_run(path, ids, b),
        "hf_liger": trainer_run(path, ids, b, trainer_kwargs={"use_liger_kernel": True}) if _has_liger() else None,
    }
    nf4 = config("bf16", "nf4") if bf16_ok else config("fp32", "nf4")
    if nf4 is not None:
        runs["bf16/nf4"] = {
            "lk": lorakit_run(path, texts, nf4),  # gradient checkpointing "auto": on for a quantized base
            "lk_no_ckpt": lorakit_run(path, texts, nf4, gradient_checkpointing=False),
            "hf": trainer_run(path, ids, replace(nf4, kbit_prepare=False)),
            "hf_shipped": trainer_run(path, ids, replace(nf4, kbit_prepare=True, gradient_checkpointing=True)),
        }
    if (c := config("fp16", "int8")) is not None:
        runs["fp16/int8"] = {"lk": lorakit_run(path, texts, c), "hf": trainer_run(path, ids, replace(c, kbit_prepare=False)),
                             "hf_shipped": trainer_run(path, ids, replace(c, kbit_prepare=True,
                                                                          gradient_checkpointing=True))}
    runs["variable"] = variable_pass(path, shape, b, 40 if dry_run else 400, seq)
    runs["dashboard"], runs["syncs"] = dashboard(path, shape, replace(b, steps=6 if dry_run else 40), runs["skipped"])
    import gpu_fit

    runs["fit"] = gpu_fit.measure(path, shape, b, dry_run)  # check_fit: max_memory_allocated vs the plan
    _free()
    import multi_gpu

    why = multi_gpu.skip_reason(dry_run)
    if why:
        runs["skipped"]["multi-GPU"] = why
    else:  # the same precision as the one-GPU runs they are compared with
        runs["multi"] = multi_gpu.measure(path, texts, b, dry_run)
    return runs, {"shape": shape, "settings": s}


def _has_liger() -> bool:
    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("liger_kernel") is not None


def variable_pass(path, shape, s, n: int, max_len: int) -> dict:
    """One whole pass over n variable-length examples after a short warm-up of each side."""
    import bench_trainer as bt

    texts, ids = bt.variable_data(shape, n, max_len, s.seed)
    hf_s = replace(s, batch_size=4, steps=-(-n // 4), max_seq_length=max_len)
    lk_s = replace(hf_s, batch_size=1)
    warm = replace(hf_s, steps=2)
    lorakit_run(path, texts, replace(lk_s, steps=2), packing=True)
    trainer_run(path, ids, warm, collate="flatten")
    return {"lk": lorakit_run(path, texts, lk_s, packing=True, max_steps=-1, num_train_epochs=1.0),
            "grouped": trainer_run(path, ids, hf_s, collate="grouped"),
            "flatten": trainer_run(path, ids, hf_s, collate="flatten")}


def dashboard(path, shape, s, skipped: dict) -> tuple[dict | None, object]:
    """With and without the LiveDashboard (logging every step), and one run's device syncs."""
    import bench_trainer as bt
    import torch
    from sync_counter import SyncCounter

    texts, _ = bt.fixed_data(shape, s)
    try:
        sinks = (bt._dashboard(),)
    except ImportError as exc:  # ipywidgets / matplotlib may be absent on a bare GPU machine
        skipped["dashboard"], sinks = f"LiveDashboard unavailable: {exc}", ()
    result = None
    if sinks:
        result = {"with": _with_dashboard(path, texts, s), "without": lorakit_run(path, texts, s)}
    sync_s = replace(s, steps=8, logging_steps=4)
    sync_texts, _ = bt.fixed_data(shape, sync_s)
    with SyncCounter(cuda_warnings=torch.cuda.is_available()) as counter:
        bt.lorakit_train(path, sync_texts, sync_s, sinks=(counter, *sinks))
    return result, counter.report()


def _with_dashboard(path, texts, s):
    import bench_trainer as bt

    result = bt.lorakit_train(path, texts, s, sinks=(bt._dashboard(),))
    _free()
    return result


def peak_tflops() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny shape, a few steps per config")
    parser.add_argument("--out", type=Path, default=None, help="results dir (default: $OUT, else benchmarks/results)")
    args = parser.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    wheels = ensure_wheels()
    import torch
    from common import machine_info, table_lines, write_results
    from gpu_rows import rows_from

    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device: use --dry-run to exercise the script on the CPU")
    runs, used = measure(args.dry_run)
    rows = rows_from(runs, used["shape"], peak_tflops())
    import gpu_fit

    rows += gpu_fit.rows(runs.get("fit"))
    import multi_gpu

    rows += multi_gpu.rows(runs.get("multi", {}), runs)
    info = machine_info() | {"carried": wheels, "skipped_configs": runs["skipped"],
                             "mode": "dry-run (CPU, tiny)" if args.dry_run else "gpu", "shape": str(used["shape"]),
                             "settings": str(used["settings"])}
    print("\n".join(table_lines(rows)))
    out = args.out or Path(os.environ.get("OUT") or HERE / "results")
    path = write_results(rows, info, out, title="lorakit GPU check" + (" (dry run)" if args.dry_run else ""),
                         suffix="-gpu-check-dry-run" if args.dry_run else "-gpu-check")
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
