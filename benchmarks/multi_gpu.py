"""gpu_check's rows for a machine with several GPUs: DDP, FSDP and QLoRA + FSDP in two processes.

Each run is `lorakit train cfg.yaml --num-processes 2` (torchrun; gpu_check's own process has used CUDA, so
it cannot fork ranks), with batch_size halved so the global batch equals gpu_check's one-GPU run of the same
precision/quantization, whose losses, tokens/s and peak memory it is compared with. On a one-GPU machine the
section is skipped; in the dry run it is two CPU processes over gloo (FSDP included).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = (("ddp", "none"), ("fsdp", "none"), ("fsdp", "nf4"))  # (distributed, quantization)
# The dry run launches one of them, the path with the most parts (each launch starts two fresh Python processes, the
# slowest part of the dry run): two processes through the CLI under DDP are tests/test_cli.py's, FSDP without
# quantization tests/test_train_distributed.py's.
DRY_RUNS = (("fsdp", "nf4"),)


def skip_reason(dry_run: bool) -> str | None:
    """None when the multi-process rows can run here, else why not."""
    import torch

    if dry_run or torch.cuda.device_count() >= 2:
        return None
    return f"multi-GPU rows need 2 GPUs; this machine has {torch.cuda.device_count()}"


def measure(path: Path, texts: list[str], s, dry_run: bool) -> dict:
    """{"ddp/none": run, ...}: each run's losses, tokens/s, per-GPU peak and status (or an error string)."""
    import bench_trainer as bt

    settings = replace(s, batch_size=max(1, s.batch_size // 2))
    out: dict = {}
    for distributed, quantization in DRY_RUNS if dry_run else RUNS:
        run_dir = Path(tempfile.mkdtemp(prefix=f"lorakit-multi-{distributed}-{quantization}-"))
        config = bt.lorakit_config(path, texts, replace(settings, quantization=quantization), str(run_dir))
        out[f"{distributed}/{quantization}"] = _run(config, distributed, run_dir, "cpu" if dry_run else "cuda")
    return out


def _run(config, distributed: str, run_dir: Path, device: str) -> dict:
    """One two-process run through the CLI; what its rank 0 wrote."""
    import yaml

    data_path = run_dir / "data.jsonl"
    data_path.write_text("".join(json.dumps({"text": t}) + "\n" for t in config.dataset))
    settings = {**config.to_dict(), "dataset": str(data_path), "distributed": distributed, "num_processes": 2,
                "device": device, "output_dir": str(run_dir / "run")}
    cfg = run_dir / "run.yaml"
    cfg.write_text(yaml.safe_dump(settings))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "lorakit.cli", "train", str(cfg)], env=env, capture_output=True,
                          text=True, timeout=1800)
    summary_path = run_dir / "run" / "summary.json"
    if done.returncode != 0 or not summary_path.exists():
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit {done.returncode}"]}
    records = [json.loads(line) for line in (run_dir / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("kind") == "train"]
    first, last = train[0], train[-1]
    span = last["elapsed_s"] - first["elapsed_s"]
    peaks = [m.get("mem_peak_bytes") or m.get("rss_bytes") or 0 for r in train for m in r.get("memory_by_rank", [])]
    return {"losses": {r["step"]: r["loss"] for r in train},
            "tokens_per_s": (last["tokens_seen"] - first["tokens_seen"]) / span if span > 0 else first["tokens_per_s"],
            "peak_per_gpu_bytes": max(peaks, default=0), "status": json.loads(summary_path.read_text())["status"]}


def rows(multi: dict, single: dict) -> list:
    """The rows: for each two-process run, loss difference and speed against one GPU, and memory per GPU.

    ``single``: gpu_check's runs; the one-GPU reference is its eager LoRA run, or its QLoRA run.
    """
    from common import Row, Target

    out = []
    for key, run in multi.items():
        name = f"gpu 2 processes {key}"
        quant = key.split("/")[1]
        reference = single.get(f"bf16/{quant}", {})
        one = reference.get("lk_eager") or reference.get("lk")
        if "error" in run:
            out.append(Row(name, "completed", "ok", [0.0], target=Target(">=", 1.0, on="lorakit"),
                           note=" ".join(run["error"])[:200]).finish())
            continue
        out.append(Row(name, "completed", "ok", [1.0 if run["status"] == "completed" else 0.0],
                       target=Target(">=", 1.0, on="lorakit")).finish())
        if one is not None:
            diff = max((abs(run["losses"][k] - one.losses[k]) / abs(one.losses[k])
                        for k in one.losses if k in run["losses"]), default=float("nan"))
            out.append(Row(name, "max rel. loss difference vs 1 process (same global batch)", "ratio", [diff],
                           target=Target("<=", 1e-2, on="lorakit"), higher_is_better=False).finish())
            out.append(Row(name, "tokens/s (both GPUs)", "tok/s", [run["tokens_per_s"]], [one.tokens_per_s],
                           "1 GPU, same global batch").finish())
            if "peak_allocated_bytes" in one.extra:
                out.append(Row(name, "peak allocated per GPU (largest rank)", "GiB", [run["peak_per_gpu_bytes"] / 2**30],
                               [one.extra["peak_allocated_bytes"] / 2**30], "1 GPU", higher_is_better=False).finish())
    return out
