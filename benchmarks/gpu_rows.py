"""The GPU check's table: each of gpu_check.measure()'s runs turned into rows, with issue targets beside them."""

from __future__ import annotations

import math

from common import Row, Target

GIB = 2.0**30


def _tps(run) -> list[float]:
    return [run.tokens_per_s]


def _peak(run) -> list[float]:
    return [run.extra["peak_allocated_bytes"] / GIB] if "peak_allocated_bytes" in run.extra else []


def _loss_diff(a, b) -> float:
    return max((abs(a.losses[k] - b.losses[k]) for k in b.losses if k in a.losses), default=math.nan)


def _head(run) -> str:
    choice = run.extra.get("choices", {}).get("loss_kernel", {})
    return f"head {choice.get('value', '?')}: {choice.get('reason', '')}"


def config_rows(key: str, r: dict, shape, peak_tflops: float | None) -> list[Row]:
    """tokens/s and peak against the tuned Trainer, loss agreement, MFU, the planner's error."""
    lk, hf = r["lk"], r.get("hf")
    bench = f"gpu {key}"
    rows = []
    if hf is not None:
        rows.append(Row(bench, "tokens/s vs Trainer tuned", "tok/s", _tps(lk), _tps(hf), "Trainer tuned",
                        note=_head(lk)).finish())
        rows.append(Row(bench, "max abs loss difference vs tuned", "nats", [_loss_diff(lk, hf)],
                        higher_is_better=False).finish())
        if _peak(lk) and _peak(hf):
            rows.append(Row(bench, "peak allocated vs Trainer tuned", "GiB", _peak(lk), _peak(hf), "Trainer tuned",
                            higher_is_better=False).finish())
    if peak_tflops:
        mfu = lk.tokens_per_s * 4 * shape.matmul_params() / (peak_tflops * 1e12) * 100
        rows.append(Row(bench, "MFU (4N/token vs bf16 peak)", "%", [mfu],
                        target=Target(">=", 30.0, on="lorakit") if key == "bf16/none" else None).finish())
    predicted = lk.extra.get("predicted_peak_bytes")
    if predicted and _peak(lk):
        measured = lk.extra["peak_allocated_bytes"]
        rows.append(Row(bench, "planner peak error", "%", [abs(predicted - measured) / measured * 100],
                        target=Target("<=", 10.0, on="lorakit"), higher_is_better=False,
                        note=f"predicted {predicted / GIB:.2f} GiB, measured {measured / GIB:.2f} GiB").finish())
    if "hf_shipped" in r:
        rows.append(Row(bench, "tokens/s vs Trainer as shipped", "tok/s", _tps(lk), _tps(r["hf_shipped"]),
                        "Trainer as shipped").finish())
        if _peak(lk):
            rows.append(Row(bench, "peak allocated vs Trainer as shipped", "GiB", _peak(lk), _peak(r["hf_shipped"]),
                            "Trainer as shipped", Target("<=", 0.5) if key == "bf16/nf4" else None,
                            higher_is_better=False).finish())
    return rows


def bf16_rows(r: dict) -> list[Row]:
    """The headline against the Trainer's best switch, and what the fused head and compiling each give."""
    lk, eager, plain, liger = r["lk"], r["lk_eager"], r["lk_plain"], r.get("hf_liger")
    rows = []
    if liger is not None:
        rows.append(Row("gpu bf16/none", "tokens/s vs Trainer use_liger_kernel", "tok/s", _tps(lk), _tps(liger),
                        "Trainer + liger", Target(">=", 1.6), "lorakit: fused head + compiled decoder blocks").finish())
        if _peak(lk) and _peak(liger):
            rows.append(Row("gpu bf16/none", "peak allocated vs Trainer use_liger_kernel", "GiB", _peak(lk),
                            _peak(liger), "Trainer + liger", Target("<=", 1.0), higher_is_better=False).finish())
    rows.append(Row("gpu fused head", "tokens/s fused ÷ plain", "tok/s", _tps(eager), _tps(plain), "plain head",
                    note=_head(eager)).finish())
    if _peak(eager) and _peak(plain):
        rows.append(Row("gpu fused head", "peak allocated fused vs plain", "GiB", _peak(eager), _peak(plain),
                        "plain head", Target("<", 1.0), higher_is_better=False).finish())
    compile_s = lk.extra.get("compile_s")
    rows.append(Row("gpu compile", "tokens/s compiled ÷ eager", "tok/s", _tps(lk), _tps(eager), "eager",
                    note=f"compile took {compile_s:.1f} s" if compile_s is not None else "compile time not measured"
                    ).finish())
    return rows


def rows_from(runs: dict, shape, peak_tflops: float | None) -> list[Row]:
    """The whole table, in the order of the runs."""
    rows: list[Row] = []
    for key in ("fp32/none", "tf32/none", "bf16/none", "bf16/nf4", "fp16/int8"):
        if key in runs:
            rows += config_rows(key, runs[key], shape, peak_tflops)
        if key == "bf16/none" and key in runs:
            rows += bf16_rows(runs[key])
    if "tf32/none" in runs and "fp32/none" in runs:
        rows.append(Row("gpu tf32", "tokens/s tf32 ÷ fp32", "tok/s", _tps(runs["tf32/none"]["lk"]),
                        _tps(runs["fp32/none"]["lk"]), "lorakit fp32", Target(">=", 3.0)).finish())
    if "bf16/nf4" in runs:
        rows.append(Row("gpu QLoRA vs LoRA", "tokens/s nf4 ÷ bf16 (both eager, no checkpointing)", "tok/s",
                        _tps(runs["bf16/nf4"]["lk_no_ckpt"]), _tps(runs["bf16/none"]["lk_eager"]), "lorakit LoRA",
                        Target(">=", 0.85)).finish())
    v = runs["variable"]
    rows.append(Row("gpu variable length", "non-padding tokens/s vs padded", "tok/s", _tps(v["lk"]),
                    _tps(v["grouped"]), "Trainer, group_by_length", Target(">=", 1.5),
                    "one whole pass after a warm-up; lorakit packs rows").finish())
    rows.append(Row("gpu variable length", "non-padding tokens/s vs padding-free", "tok/s", _tps(v["lk"]),
                    _tps(v["flatten"]), "Trainer, DataCollatorWithFlattening", Target(">=", 1.2)).finish())
    d, sy = runs.get("dashboard"), runs["syncs"]
    if d:
        rows.append(Row("gpu dashboard", "tokens/s with LiveDashboard", "tok/s", _tps(d["with"]), _tps(d["without"]),
                        "no dashboard", Target(">=", 0.98), "logging every step").finish())
    top = ", ".join(f"{w} ×{n}" for w, n in sy.where.most_common(4)) or "none"
    rows.append(Row("gpu syncs", "per non-logging step (max)", "syncs", [sy.max_non_logging],
                    target=Target("<=", 0, on="lorakit"), note=f"call sites: {top}", higher_is_better=False).finish())
    return rows
