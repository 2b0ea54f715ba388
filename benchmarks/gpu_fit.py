"""The GPU check's fit rows: ``lorakit.check_fit`` on the GPU (``torch.cuda.max_memory_allocated`` against the plan,
the free memory from ``torch.cuda.mem_get_info``), and ``batch_size="auto"`` under a memory limit.

Prompt/completion data of log-normal lengths (median 128, at most the run's max_seq_length) in the headline's
precision: the worst padded batch of 4, planned and measured; then, from the measured peaks of batch 1 and 2, a
memory_limit_bytes that should hold 3 rows, the batch "auto" chooses under it, and the next batch measured against
the same limit. In the dry run all of it runs on the CPU (the tracker instead of max_memory_allocated).
"""

from __future__ import annotations

from dataclasses import replace

from common import Row, Target

GIB = 2.0**30


def _config(path, data, s, out: str, **overrides):
    import bench_trainer as bt

    return bt.lorakit_config(path, data, replace(s, steps=1), out, **overrides)


def measure(path, shape, s, dry_run: bool) -> dict:
    """{"worst": FitReport.as_dict() of batch 4, "auto": of batch_size="auto", "next": of the batch after it,
    "limit": the memory_limit_bytes used, "free": free GPU memory before the check (None on the CPU)}."""
    import tempfile

    import bench_trainer as bt
    import torch

    from lorakit.training import check_fit
    from lorakit.training.fit import FIT_MARGIN

    data, _ = bt.sft_data(shape, 24 if dry_run else 64, s.max_seq_length, s.seed)
    out = tempfile.mkdtemp(prefix="lorakit-gpu-fit-")
    free = int(torch.cuda.mem_get_info()[0]) if torch.cuda.is_available() else None
    worst = check_fit(_config(path, data, s, out, batch_size=4))
    one, two = (check_fit(_config(path, data, s, out, batch_size=b)).measured_bytes for b in (1, 2))
    limit = int((one + 2.5 * (two - one)) / (1 - FIT_MARGIN))  # room for about 3 rows
    auto = check_fit(_config(path, data, s, out, batch_size="auto", memory_limit_bytes=limit))
    following = None
    if auto.batch_reason and "cap" not in auto.batch_reason:
        following = check_fit(_config(path, data, s, out, batch_size=auto.batch_size + 1, memory_limit_bytes=limit))
    return {"worst": worst.as_dict(), "auto": auto.as_dict(), "next": following.as_dict() if following else None,
            "limit": limit, "free": free}


def rows(fit: dict | None) -> list[Row]:
    """Predicted ÷ measured at the worst batch; whether "auto" chose the largest batch that fits, measured."""
    if not fit:
        return []
    w, auto, following = fit["worst"], fit["auto"], fit["next"]
    source = "max_memory_allocated" if w["device"] == "cuda" else "CPU tracker (dry run)"
    free = f", {fit['free'] / GIB:.1f} GiB free before it (mem_get_info)" if fit["free"] is not None else ""
    out = [Row("gpu fit check", "predicted ÷ measured peak, worst batch", "ratio",
               [w["predicted_bytes"] / w["measured_bytes"]], target=Target("~=", 1.0, on="lorakit", tol=0.05),
               note=(f"{w['rows']} x {w['width']} tokens, {w['layout']}; {source}: {w['measured_bytes'] / GIB:.3f} "
                     f"GiB; limit {w['limit_bytes'] / GIB:.1f} GiB ({w['limit_source']}){free}")).finish()]
    largest = auto["fits"] and (following is None or not following["fits"])
    note = (f"under {fit['limit'] / GIB:.3f} GiB: batch {auto['batch_size']} measured "
            f"{auto['measured_bytes'] / GIB:.3f} GiB" + (f", batch {following['batch_size']} measured "
                                                         f"{following['measured_bytes'] / GIB:.3f} GiB" if following
                                                         else " (the cap)"))
    out.append(Row("gpu fit check", 'batch_size="auto": the largest that fits (1 = yes)', "yes",
                   [1.0 if largest else 0.0], target=Target(">=", 1.0, on="lorakit"), note=note).finish())
    return out
