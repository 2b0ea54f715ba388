"""One-shot GPU check: a Llama-3.2-1B-shaped random model at seq 2048, lorakit vs transformers.Trainer + peft.

    bash benchmarks/gpu_wheels.sh                 # once, with a network: bitsandbytes wheel into .whl/
    python benchmarks/gpu_check.py                # on the GPU machine (no network needed), < 8 min on an H100
    python benchmarks/gpu_check.py --dry-run      # same code path on the CPU: tiny shape, 2 steps per config

Configs (precision/quantization): fp32/none, bf16/none, bf16/nf4 (double quant), fp16/int8. For each:
lorakit; the Trainer "tuned" to lorakit's settings (same dtype, no gradient checkpointing, fused AdamW, same
batch and schedule); the Trainer "as shipped" for the quantized ones (peft's prepare_model_for_kbit_training,
which upcasts norms/embeddings to fp32 and turns on gradient checkpointing). Plus variable-length data
(lorakit packing vs tuned Trainer padding), the LiveDashboard's overhead, syncs per step (Python-level
reads and `torch.cuda.set_sync_debug_mode("warn")`), and the planner's predicted peak vs the measured one.

MFU = tokens/s x 4N / peak, N = weights in matmuls (all Linear layers + output head, no embedding lookup),
4N = forward 2N + backward through frozen weights 2N (no weight gradients except LoRA's, which are ignored,
as is attention's seq-dependent work); peak = the card's dense bf16 tensor rate (H100/H200 SXM: 989 TFLOP/s).
Configs the machine cannot run (tf32 on a CPU, ...) are skipped with lorakit's own message.
"""

from __future__ import annotations

import argparse
import gc
import glob
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the benchmarks, and lorakit itself when it is not installed
SITE = "/tmp/lorakit-bnb-site"
CONFIGS = (("fp32", "none"), ("bf16", "none"), ("bf16", "nf4"), ("fp16", "int8"))
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}


def ensure_bitsandbytes() -> str:
    """Import bitsandbytes, installing the carried wheel (.whl/) into a private site dir if needed."""
    try:
        import bitsandbytes
    except ImportError:
        wheels = sorted(glob.glob(str(HERE.parent / ".whl" / "bitsandbytes-*.whl")))
        if not wheels:
            return "bitsandbytes missing and no wheel in .whl/ (run benchmarks/gpu_wheels.sh where there is a network)"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", SITE,
                        *wheels], check=True)
        sys.path.insert(0, SITE)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [SITE, os.environ.get("PYTHONPATH")]))
        import bitsandbytes
    return f"bitsandbytes {bitsandbytes.__version__}"


def _free() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class _Info:
    """Sink that keeps on_train_start's info (the planner's predicted peak)."""

    info: dict = {}

    def on_train_start(self, info: dict) -> None:
        self.info = info

    def on_log(self, record: dict) -> None:
        pass

    def on_eval(self, record: dict) -> None:
        pass

    def on_train_end(self, summary) -> None:
        pass


def _supported(precision: str, quantization: str, path: Path) -> str | None:
    """None when lorakit's pre-flight accepts the config on this machine, else its message."""
    from lorakit.training import TrainConfig
    from lorakit.training.preflight import check_before_load

    try:
        check_before_load(TrainConfig(model=str(path), dataset=["x"], precision=precision, quantization=quantization))
    except (ValueError, ImportError) as exc:
        return str(exc).splitlines()[0]
    return None


def run_config(path, texts, hf_ids, s, shipped: bool) -> dict:
    """lorakit, tuned Trainer (and as-shipped Trainer) for one precision/quantization; one run each."""
    import bench_trainer as bt
    import hf_baseline as hb

    info = _Info()
    out = {"lk": bt.lorakit_train(path, texts, s, sinks=(info,))}
    out["predicted_peak_bytes"] = info.info.get("predicted_peak_bytes")
    _free()
    out["hf"] = hb.hf_train(path, hf_ids, replace(s, kbit_prepare=False))
    _free()
    if shipped:
        out["hf_shipped"] = hb.hf_train(path, hf_ids, replace(s, kbit_prepare=True, gradient_checkpointing=True))
        _free()
    return out


def measure(dry_run: bool) -> tuple[dict, dict]:
    """All GPU-check measurements, keyed by what they are; plus the settings used."""
    import bench_trainer as bt
    import hf_baseline as hb

    shape = bt.TINY if dry_run else hb.LLAMA_3_2_1B
    seq = 64 if dry_run else 2048
    s = hb.RunSettings(steps=2 if dry_run else 8, batch_size=2, max_seq_length=seq, warmup_steps=1, logging_steps=1)
    path = hb.build_model_dir(shape, tempfile.mkdtemp(prefix="lorakit-gpu-check-"))
    texts, hf_ids = bt.fixed_data(shape, s)
    results: dict = {"skipped": {}}
    for precision, quant in CONFIGS:
        why = _supported(precision, quant, path)
        if why:
            results["skipped"][f"{precision}/{quant}"] = why
            continue
        cfg = replace(s, precision=precision, quantization=quant)
        results[f"{precision}/{quant}"] = run_config(path, texts, hf_ids, cfg, shipped=quant != "none")
    import torch

    # packing, dashboard and syncs run in bf16 on a GPU; fp32 in the dry run (a CPU's bf16 is slow here)
    bf16 = replace(s, precision="bf16") if torch.cuda.is_available() and "bf16/none" in results else s
    var_texts, var_ids = bt.variable_data(shape, 200, seq, s.seed)
    var = replace(bf16, max_seq_length=seq, batch_size=2)
    results["packing"] = {"lk": bt.lorakit_train(path, var_texts, var, packing=True),
                          "hf": hb.hf_train(path, var_ids, var, padding=True)}
    dash = replace(bf16, steps=max(bf16.steps, 4), logging_steps=2)
    dash_texts, _ = bt.fixed_data(shape, dash)
    try:
        sinks = (bt._dashboard(),)
    except ImportError as exc:  # ipywidgets / matplotlib may be absent on a bare GPU machine
        results["skipped"]["dashboard"], sinks = f"LiveDashboard unavailable: {exc}", ()
    if sinks:
        results["dashboard"] = {"with": bt.lorakit_train(path, dash_texts, dash, sinks=sinks),
                                "without": bt.lorakit_train(path, dash_texts, dash)}
    results["syncs"] = count_syncs(path, shape, replace(dash, logging_steps=dash.steps // 2), bool(sinks))
    return results, {"shape": shape, "settings": s}


def count_syncs(path, shape, s, with_dashboard: bool):
    """SyncReport of one lorakit run (with a dashboard when available); on a GPU, from sync-debug warnings."""
    import bench_trainer as bt
    import torch
    from sync_counter import SyncCounter

    texts, _ = bt.fixed_data(shape, s)
    with SyncCounter(cuda_warnings=torch.cuda.is_available()) as counter:
        bt.lorakit_train(path, texts, s, sinks=(counter, bt._dashboard()) if with_dashboard else (counter,))
    return counter.report()


def peak_tflops() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def rows_from(results: dict, shape) -> list:
    """The GPU-check table: every measurement with the issue's GPU target beside it."""
    from common import Row, Target

    rows, peak = [], peak_tflops()
    gib = 2.0**30
    for key, r in results.items():
        if key in ("skipped", "packing", "dashboard", "syncs") or not isinstance(r, dict):
            continue
        lk, hf = r["lk"], r["hf"]
        rows.append(Row(f"gpu {key}", "tokens/s", "tok/s", [lk.tokens_per_s], [hf.tokens_per_s], "Trainer tuned",
                        Target(">=", 1.3)).finish())
        diff = max((abs(lk.losses[k] - hf.losses[k]) for k in hf.losses if k in lk.losses), default=float("nan"))
        rows.append(Row(f"gpu {key}", "max abs loss difference vs tuned", "nats", [diff],
                        higher_is_better=False).finish())
        if peak:
            mfu = lk.tokens_per_s * 4 * shape.matmul_params() / (peak * 1e12) * 100
            rows.append(Row(f"gpu {key}", "MFU (4N/token vs bf16 peak)", "%", [mfu],
                            target=Target(">=", 35.0, on="lorakit") if key == "bf16/none" else None).finish())
        if "peak_allocated_bytes" in lk.extra:
            rows += _memory_rows(key, r, gib)
        if "hf_shipped" in r:
            rows.append(Row(f"gpu {key}", "tokens/s vs as shipped", "tok/s", [lk.tokens_per_s],
                            [r["hf_shipped"].tokens_per_s], "Trainer as shipped").finish())
    if "bf16/nf4" in results and "bf16/none" in results:
        rows.append(Row("gpu QLoRA vs LoRA", "tokens/s bf16/nf4 ÷ bf16/none", "tok/s",
                        [results["bf16/nf4"]["lk"].tokens_per_s], [results["bf16/none"]["lk"].tokens_per_s],
                        "lorakit bf16/none", Target(">=", 0.85)).finish())
    p, d, sy = results["packing"], results.get("dashboard"), results["syncs"]
    rows.append(Row("gpu variable length", "non-padding tokens/s", "tok/s", [p["lk"].tokens_per_s],
                    [p["hf"].tokens_per_s], "Trainer tuned, padded", Target(">=", 1.8)).finish())
    if d:
        rows.append(Row("gpu dashboard", "tokens/s with LiveDashboard", "tok/s", [d["with"].tokens_per_s],
                        [d["without"].tokens_per_s], "no dashboard", Target(">=", 0.97)).finish())
    top = ", ".join(f"{w} ×{n}" for w, n in sy.where.most_common(4)) or "none"
    rows.append(Row("gpu syncs", "per non-logging step (max)", "syncs", [sy.max_non_logging],
                    target=Target("<=", 0, on="lorakit"), note=f"call sites: {top}", higher_is_better=False).finish())
    return rows


def _memory_rows(key: str, r: dict, gib: float) -> list:
    from common import Row, Target

    lk = r["lk"].extra
    rows = [Row(f"gpu {key}", "peak allocated / reserved", "GiB", [lk["peak_allocated_bytes"] / gib],
                [r["hf"].extra["peak_allocated_bytes"] / gib], "Trainer tuned", higher_is_better=False,
                note=f"lorakit reserved {lk['peak_reserved_bytes'] / gib:.2f} GiB").finish()]
    if "hf_shipped" in r:
        rows.append(Row(f"gpu {key}", "peak allocated vs as shipped", "GiB", [lk["peak_allocated_bytes"] / gib],
                        [r["hf_shipped"].extra["peak_allocated_bytes"] / gib], "Trainer as shipped",
                        Target("<=", 0.6) if key == "bf16/nf4" else None, higher_is_better=False).finish())
    if r.get("predicted_peak_bytes"):
        err = abs(r["predicted_peak_bytes"] - lk["peak_allocated_bytes"]) / lk["peak_allocated_bytes"] * 100
        rows.append(Row(f"gpu {key}", "planner peak error", "%", [err], target=Target("<=", 10.0, on="lorakit"),
                        higher_is_better=False).finish())
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny shape, 2 steps per config")
    parser.add_argument("--out", type=Path, default=None, help="results dir (default: $OUT, else benchmarks/results)")
    args = parser.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    bnb = ensure_bitsandbytes()
    import torch
    from common import machine_info, table_lines, write_results

    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device: use --dry-run to exercise the script on the CPU")
    results, used = measure(args.dry_run)
    rows = rows_from(results, used["shape"])
    info = machine_info() | {"bitsandbytes": bnb, "skipped_configs": results["skipped"],
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
