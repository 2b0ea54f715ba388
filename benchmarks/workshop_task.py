"""Before/after of lorakit's built-in tasks on the embedded SmolLM2-135M-Instruct, trained on the CPU.

    .venv/bin/python benchmarks/workshop_task.py                      # builtin-json, 20 steps
    .venv/bin/python benchmarks/workshop_task.py --task builtin --steps 20 40

For each (task, steps) it runs `lorakit.train` with notebook 03's settings and prints the held-out exact
match and format match before and after, the training seconds, the load average and two preview answers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time


class Progress:
    """Prints what the run is doing, with the seconds since it started (for a loaded machine's patience)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def _say(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.start:6.0f} s] {text}", file=sys.stderr, flush=True)

    def on_phase(self, phase: str, detail: str) -> None:
        self._say(detail)

    def on_log(self, record: dict) -> None:
        self._say(f"step {record['step']}: loss {record['loss']:.3f}")

    def on_eval(self, record: dict) -> None:
        self._say(f"eval at step {record['step']}: {record}")


PREVIEWS = ["How many fraction bits does FP16 store?", "How many exponent bits does bfloat16 have?"]


def run(task: str, steps: int, lr: float, threads: int | None) -> dict:
    import torch

    import lorakit
    from lorakit.data import TASKS

    if threads:
        torch.set_num_threads(threads)
    config = lorakit.TrainConfig(
        dataset=task, device="cpu", max_steps=steps, batch_size=4, learning_rate=lr, warmup_steps=2,
        lr_scheduler_type="cosine", logging_steps=5, eval_exact_match=True,
        max_new_tokens=TASKS[task].max_new_tokens, preview_prompts=PREVIEWS,
        output_dir=tempfile.mkdtemp(prefix="lorakit-task-"),
    )
    answers = _record_answers()
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    summary = lorakit.train(config, sinks=[Progress()])
    return {
        "task": task, "steps": steps, "lr": lr, "status": summary.status,
        "exact_before": summary.exact_match_before, "exact_after": summary.exact_match_after,
        "format_before": summary.format_match_before, "format_after": summary.format_match_after,
        "train_s": summary.elapsed_s, "total_s": time.perf_counter() - start,
        "load": (load_before, os.getloadavg()[0]), "final_loss": summary.final_loss, "preview": summary.preview,
        "held_out_after": answers[-1] if answers else None,
    }


def _record_answers() -> list[list[tuple[str, str]]]:
    """Keep every scored batch of (answer, reference) pairs, to read what the model wrote (a spy, not a patch)."""
    from lorakit.training import evaluate

    seen: list[list[tuple[str, str]]] = []
    score_answers = getattr(evaluate.score_answers, "__wrapped__", evaluate.score_answers)

    def spy(task, answers, references):
        seen.append(list(zip(answers, references, strict=True)))
        return score_answers(task, answers, references)

    spy.__wrapped__ = score_answers
    evaluate.score_answers = spy
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", nargs="+", default=["builtin-json"])
    parser.add_argument("--steps", nargs="+", type=int, default=[20])
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    for task in args.task:
        for steps in args.steps:
            row = run(task, steps, args.lr, args.threads)
            print(json.dumps(row, indent=1), flush=True)


if __name__ == "__main__":
    main()
