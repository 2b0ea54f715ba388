"""Comparisons 1-3: the lorakit loop against transformers.Trainer + peft, packing against padding, and the
LiveDashboard's overhead and device syncs.

Both sides train the same random-initialised Llama-shaped model (saved once to a temp folder with a
one-word-one-token tokenizer), with LoRA r=8 on all linear layers, dropout 0, the same learning rate,
schedule, warm-up, batch, fused AdamW, gradient clipping at 1.0 and seed. The Trainer sees the examples in
the order lorakit's seeded shuffle gives them (sequential sampler over that order), and both seed torch
right before loading, so the LoRA initialisation and the batches match and the loss curves should agree.

Throughput is measured alike on both sides, from wall-clock marks at the end of steps (lorakit: a sink's
on_log, logging every step or every few; Trainer: a callback's on_step_end): tokens between the first and
the last mark over the seconds between them. Loading, the first step (warm-up) and saving are excluded.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import hf_baseline as hb  # noqa: E402
from common import Row, Target, interleave, table_lines  # noqa: E402
from sync_counter import SyncCounter  # noqa: E402

TINY = hb.Shape(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                intermediate_size=128, vocab_size=512, max_position_embeddings=1024)
TINY_SEQ = 128  # the quick sizes use at most this sequence length
_MODEL_DIRS: dict[hb.Shape, Path] = {}


def model_dir(shape: hb.Shape) -> Path:
    """The saved random model for `shape`, built once per process."""
    if shape not in _MODEL_DIRS:
        _MODEL_DIRS[shape] = hb.build_model_dir(shape)
    return _MODEL_DIRS[shape]


class _Clock:
    """A MetricsSink that marks (time, tokens_seen) and the loss at every log record."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, int]] = []
        self.losses: dict[int, float] = {}

    def on_train_start(self, info: dict) -> None:
        pass

    def on_log(self, record: dict) -> None:
        self.marks.append((time.perf_counter(), int(record["tokens_seen"])))
        self.losses[int(record["step"])] = float(record["loss"])

    def on_eval(self, record: dict) -> None:
        pass

    def on_train_end(self, summary) -> None:
        pass


def lorakit_config(path: Path, texts: list[str], s: hb.RunSettings, out: str, **overrides):
    """The TrainConfig that mirrors `s` (no eval split: every example trains, as on the Trainer side);
    ``overrides`` are further TrainConfig fields (packing, padding_free, loss_kernel, compile, ...)."""
    from lorakit.choices import QUANTIZATIONS
    from lorakit.training import TrainConfig

    four_bit = QUANTIZATIONS[s.quantization].is_4bit if s.quantization in QUANTIZATIONS else False
    settings = dict(
        model=str(path), dataset=texts, precision=s.precision, quantization=s.quantization,
        bnb_4bit_use_double_quant=four_bit, r=s.r, lora_alpha=s.lora_alpha, lora_dropout=0.0,
        target_modules="all-linear", learning_rate=s.learning_rate, lr_scheduler_type=s.lr_scheduler_type,
        warmup_steps=s.warmup_steps, max_steps=s.steps, batch_size=s.batch_size, max_seq_length=s.max_seq_length,
        gradient_checkpointing=s.gradient_checkpointing, logging_steps=s.logging_steps,
        seed=s.seed, output_dir=out, eval_split=0.0, max_grad_norm=s.max_grad_norm, weight_decay=s.weight_decay,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def lorakit_train(path: Path, texts: list[str], s: hb.RunSettings, sinks: tuple = (), **overrides) -> hb.RunResult:
    """One lorakit run; throughput from the clock sink's marks (first log record to last)."""
    import torch

    from lorakit.training import train

    out = tempfile.mkdtemp(prefix="lorakit-bench-lk-")
    clock = _Clock()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    try:
        summary = train(lorakit_config(path, texts, s, out, **overrides), sinks=(clock, *sinks))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    wall = time.perf_counter() - t0
    if summary.status != "completed":
        raise RuntimeError(f"lorakit run ended {summary.status}: {summary.message}")
    tps, secs, toks = hb.window_throughput(clock.marks)
    extra = {"wall_s": wall, "summary_tokens_per_s": summary.tokens_per_s, "host_reads": summary.host_reads,
             "train_s": summary.train_s,
             "choices": summary.choices, "compile_s": summary.compile_s, **hb._cuda_memory()}
    return hb.RunResult(tps, clock.losses, secs, toks, extra)


def lorakit_order(n_rows: int, s: hb.RunSettings) -> list[int]:
    """Row indices in the order lorakit's loop visits them in epoch 0 (its seeded shuffle)."""
    from lorakit.training.data import Batches

    rows = [{"input_ids": [0], "labels": [0]}] * n_rows
    return [i for batch in Batches(rows, s.batch_size, s.seed, "pad", 0).order(0) for i in batch]


def fixed_data(shape: hb.Shape, s: hb.RunSettings) -> tuple[list[str], list[list[int]]]:
    """Texts for lorakit (length-1 words + the EOS it appends = max_seq_length tokens) and the Trainer's ids
    in lorakit's visiting order."""
    n = s.steps * s.batch_size
    ids = hb.fixed_length_ids(n, s.max_seq_length - 1, shape.vocab_size, seed=s.seed)
    texts = [hb.ids_to_text(x) for x in ids]
    return texts, [ids[i] + [2] for i in lorakit_order(n, s)]


def variable_data(shape: hb.Shape, n: int, max_len: int, seed: int) -> tuple[list[str], list[list[int]]]:
    """Log-normal lengths (median 128, clipped at max_len, EOS included) as texts and as Trainer ids."""
    lengths = hb.lognormal_lengths(n, median=128, max_len=max_len, seed=seed)
    ids = hb.variable_length_ids([k - 1 for k in lengths], shape.vocab_size, seed=seed)
    return [hb.ids_to_text(x) for x in ids], [x + [2] for x in ids]


def sft_data(shape: hb.Shape, n: int, max_len: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Prompt/completion examples (log-normal lengths, median 128; the prompt 30-70 % of each): lorakit's
    {prompt, completion} records and the Trainer's {input_ids, labels} with -100 on the prompt, the same
    tokens and the same loss (on the completion and its EOS) on both sides."""
    import numpy as np

    lengths = hb.lognormal_lengths(n, median=128, max_len=max_len, seed=seed)
    ids = hb.variable_length_ids([k - 1 for k in lengths], shape.vocab_size, seed=seed)
    shares = np.random.default_rng(seed + 1).uniform(0.3, 0.7, size=n)
    records, features = [], []
    for x, share in zip(ids, shares, strict=True):
        cut = min(max(1, round(share * len(x))), len(x) - 1)
        records.append({"prompt": hb.ids_to_text(x[:cut]), "completion": hb.ids_to_text(x[cut:])})
        features.append({"input_ids": x + [2], "labels": [-100] * cut + x[cut:] + [2]})
    return records, features


def _sizes(quick: bool) -> tuple[hb.Shape, hb.RunSettings]:
    if quick:
        return TINY, hb.RunSettings(steps=4, batch_size=2, max_seq_length=32, warmup_steps=1)
    # batch 2 x 8 steps keeps 5 interleaved repeats of every comparison inside ~15 min on a busy 2-core machine
    return hb.Shape(), hb.RunSettings(steps=8, batch_size=2, max_seq_length=256, warmup_steps=2)


def isolated(side: str, path: Path, examples: list, s: hb.RunSettings, **options) -> hb.RunResult:
    """One run in a fresh process (trainer_worker.py), so ``extra["peak_rss_bytes"]`` is that run's own."""
    import json
    import os
    import subprocess

    import torch

    spec = {"side": side, "model_dir": str(path), "examples": examples, "settings": asdict(s),
            "options": options, "threads": torch.get_num_threads()}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(spec, handle)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")])))
    try:
        done = subprocess.run([sys.executable, str(HERE / "trainer_worker.py"), handle.name], capture_output=True,
                              text=True, timeout=3600, env=env)
    finally:
        os.unlink(handle.name)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if done.returncode or line is None:
        raise RuntimeError(f"{side} worker failed ({done.returncode}): {done.stderr[-2000:]}")
    out = json.loads(line.removeprefix("RESULT "))
    out["extra"]["peak_rss_bytes"] = out.pop("peak_rss_bytes")
    out["losses"] = {int(k): v for k, v in out["losses"].items()}
    return hb.RunResult(**out)


def run_fixed(quick: bool = False, repeats: int = 5) -> list[Row]:
    """Comparison 1: tokens/s and peak RSS at fixed length, each run in its own process; loss-curve agreement."""
    shape, s = _sizes(quick)
    s = replace(s, logging_steps=1)
    path = model_dir(shape)
    texts, hf_ids = fixed_data(shape, s)
    res = interleave({"lk": lambda: isolated("lorakit", path, texts, s),
                      "hf": lambda: isolated("hf", path, hf_ids, s)}, repeats)
    diffs = [max(abs(a.losses[k] - b.losses[k]) for k in b.losses) for a, b in zip(res["lk"], res["hf"], strict=True)]
    head = res["lk"][0].extra.get("choices", {}).get("loss_kernel", {})
    setting = (f"hidden {shape.hidden_size}, {shape.num_hidden_layers} layers, vocab {shape.vocab_size}, "
               f"seq {s.max_seq_length}, batch {s.batch_size}, {s.steps} steps (timed: steps 2-{s.steps}), each run "
               f"in a fresh process; lorakit's head: {head.get('value', '?')} ({head.get('reason', '')})")
    bench = "1 trainer, fixed length"
    mib = 2.0**20
    return [
        Row(bench, "tokens/s", "tok/s", [r.tokens_per_s for r in res["lk"]], [r.tokens_per_s for r in res["hf"]],
            "Trainer+peft", Target(">=", 1.15), setting).finish(),
        Row(bench, "peak RSS of the process", "MiB", [r.extra["peak_rss_bytes"] / mib for r in res["lk"]],
            [r.extra["peak_rss_bytes"] / mib for r in res["hf"]], "Trainer+peft", Target("<", 1.0),
            "ru_maxrss of each run's own process (imports, model, data, the step's peak)",
            higher_is_better=False).finish(),
        Row(bench, "max abs loss difference", "nats", diffs, target=Target("<=", 1e-3, on="lorakit"),
            note=f"{len(res['hf'][0].losses)} logged steps per run; ≈ 0 expected (same init, data order, seed)",
            higher_is_better=False).finish(),
    ]


def run_packing(quick: bool = False, repeats: int = 5,
                kinds: tuple[str, ...] = ("plain text", "prompt/completion")) -> list[Row]:
    """Comparison 2: one whole pass over variable-length examples, non-padding tokens/s, each run in its own
    process: lorakit packing vs the Trainer padding batches grouped by length, and vs the Trainer padding-free;
    on plain text (a loss on every token) and on prompt/completion pairs (a loss on the completion only); ``kinds``
    picks which (the test suite's smoke run takes the pairs alone: six processes instead of twelve)."""
    shape, s = _sizes(quick)
    max_len = 128 if quick else 1024
    n = 24 if quick else 160
    hf_s = replace(s, batch_size=4, steps=-(-n // 4), logging_steps=1, max_seq_length=max_len)
    lk_s = replace(hf_s, batch_size=1)  # one packed row of max_len tokens per step
    path = model_dir(shape)
    rows = []
    data = {"plain text": lambda: variable_data(shape, n, max_len, s.seed),
            "prompt/completion": lambda: sft_data(shape, n, max_len, s.seed)}
    for kind in kinds:
        texts, hf_ids = data[kind]()
        res = interleave({
            "lk": lambda t=texts: isolated("lorakit", path, t, lk_s, packing=True, max_steps=-1, num_train_epochs=1.0),
            "grouped": lambda h=hf_ids: isolated("hf", path, h, hf_s, collate="grouped"),
            "flatten": lambda h=hf_ids: isolated("hf", path, h, hf_s, collate="flatten"),
        }, min(repeats, 3))
        tokens = sum(len(h["input_ids"] if isinstance(h, dict) else h) for h in hf_ids)
        note = (f"{n} examples, log-normal lengths (median 128, max {max_len}), {tokens} tokens"
                + (", prompts 30-70 % of each example, loss on the completions" if isinstance(hf_ids[0], dict)
                   else ", loss on every token")
                + f": one pass each, timed from the end of the first step to the end of the last; lorakit packs "
                  f"rows of {max_len} and computes the output head only where there is a target; the Trainer takes "
                  f"batches of {hf_s.batch_size} examples")
        bench, lk = f"2 variable length ({kind}), one pass", [r.tokens_per_s for r in res["lk"]]
        rows += [
            Row(bench, "non-padding tokens/s vs padded", "tok/s", lk, [r.tokens_per_s for r in res["grouped"]],
                "Trainer, padded, group_by_length", Target(">=", 1.5), note).finish(),
            Row(bench, "non-padding tokens/s vs padding-free", "tok/s", lk, [r.tokens_per_s for r in res["flatten"]],
                "Trainer, DataCollatorWithFlattening", Target(">=", 1.2)).finish(),
        ]
    return rows


def _dashboard():
    from lorakit.widgets.live_dashboard import LiveDashboard

    return LiveDashboard()


def count_syncs(path: Path, texts: list[str], hf_ids: list[list[int]], s: hb.RunSettings) -> tuple:
    """(lorakit with a LiveDashboard, Trainer) SyncReports for one run each, and lorakit's own host reads."""
    with SyncCounter() as lk:
        reads = lorakit_train(path, texts, s, sinks=(lk, _dashboard())).extra["host_reads"]
    with SyncCounter() as hf:
        hb.hf_train(path, hf_ids, s, callbacks=(hf.hf_callback(),))
    return lk.report(), hf.report(), reads


DASHBOARD_STEPS = 40  # the target is stated over at least 40 steps, logging every step


def run_dashboard(quick: bool = False, repeats: int = 5) -> list[Row]:
    """Comparison 3: tokens/s with LiveDashboard vs without (logging every step), and device syncs on
    non-logging steps."""
    shape, s = _sizes(quick)
    # every step: the dashboard's worst case (the quick size is a smoke run)
    s = replace(s, logging_steps=1, steps=4 if quick else DASHBOARD_STEPS)
    path = model_dir(shape)
    texts, hf_ids = fixed_data(shape, s)
    if not quick:
        lorakit_train(path, texts, replace(s, steps=2, logging_steps=1), sinks=(_dashboard(),))  # warm-up
    res = interleave({"with": lambda: lorakit_train(path, texts, s, sinks=(_dashboard(),)),
                      "without": lambda: lorakit_train(path, texts, s)}, repeats)
    count_s = replace(s, steps=8 if not quick else 4, logging_steps=4 if not quick else 2)
    lk, hf, reads = count_syncs(path, texts, fixed_data(shape, count_s)[1], count_s)
    top = ", ".join(f"{w} ×{n}" for w, n in lk.where.most_common(4)) or "none"
    bench = "3 dashboard"
    return [
        Row(bench, "tokens/s with LiveDashboard", "tok/s", [r.tokens_per_s for r in res["with"]],
            [r.tokens_per_s for r in res["without"]], "no dashboard", Target(">=", 0.98),
            f"overhead = 1 − ratio; {s.steps} steps, logging every step, drawing on the dashboard's render "
            "thread; headless widget (no front end)").finish(),
        Row(bench, "whole train() wall time with LiveDashboard", "s", [r.extra["wall_s"] for r in res["with"]],
            [r.extra["wall_s"] for r in res["without"]], "no dashboard",
            note="includes loading, the first and final redraws, saving", higher_is_better=False).finish(),
        Row(bench, "syncs per non-logging step (max)", "reads", [lk.max_non_logging], [hf.max_non_logging],
            "Trainer+peft", Target("<=", 0, on="lorakit"),
            f"Python-level reads (.item/.tolist/.cpu/.numpy/float/int/bool) per step, {count_s.steps} steps, "
            f"logging every {count_s.logging_steps}; lorakit call sites: {top}; lorakit host_reads: {reads}",
            higher_is_better=False).finish(),
        Row(bench, "syncs per logging step (mean)", "reads", [lk.mean_logging], [hf.mean_logging], "Trainer+peft",
            higher_is_better=False).finish(),
    ]


COMPILE_STEPS = 16  # the compiled blocks' steady state needs steps after the first (which compiles)


def run_compile(quick: bool = False, repeats: int = 3) -> list[Row]:
    """Compiled decoder blocks (compile=True, torch.compile per block) against eager, each run in its own
    process: steady-state tokens/s and the compile time. Informational on a CPU, where compile="auto" stays
    off; the numbers say whether it would pay here."""
    shape, s = _sizes(quick)
    s = replace(s, logging_steps=1, steps=3 if quick else COMPILE_STEPS)
    path = model_dir(shape)
    texts, _ = fixed_data(shape, s)
    res = interleave({"compiled": lambda: isolated("lorakit", path, texts, s, compile=True),
                      "eager": lambda: isolated("lorakit", path, texts, s, compile=False)}, min(repeats, 3))
    compiled = res["compiled"][0].extra.get("choices", {}).get("compile", {})
    note = (f"hidden {shape.hidden_size}, {shape.num_hidden_layers} layers, seq {s.max_seq_length}, batch "
            f"{s.batch_size}, {s.steps} steps timed from the end of the first (which compiles); "
            f"compile choice: {compiled.get('value', '?')} ({compiled.get('reason', '')})")
    bench = "10 compiled decoder blocks"
    return [
        Row(bench, "tokens/s, compiled vs eager", "tok/s", [r.tokens_per_s for r in res["compiled"]],
            [r.tokens_per_s for r in res["eager"]], "eager (compile=False)", note=note).finish(),
        Row(bench, "compile time", "s", [r.extra.get("compile_s") or 0.0 for r in res["compiled"]],
            note="seconds the run spent compiling (summary.compile_s); compile='auto' weighs it against the "
                 "run's remaining steps", higher_is_better=False).finish(),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="fixed,packing,dashboard")
    args = parser.parse_args()
    rows = []
    for name in args.only.split(","):
        rows += globals()[f"run_{name}"](quick=args.quick, repeats=args.repeats)
    print("\n".join(table_lines(rows)))


if __name__ == "__main__":
    main()
