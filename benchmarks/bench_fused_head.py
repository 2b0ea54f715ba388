"""The fused output head vs the plain one on the CPU: bytes saved for backward, the time of a head step, and
a short lorakit.train run with each.

The plain head is what a transformers model and lorakit's plain loop compute: ``logits = lm_head(hidden)``,
``logits.float()``, ``F.cross_entropy``. The fused head is ``lorakit.training.fused_head.chunked_head_loss``.
Both take the same hidden states ([tokens, hidden], requiring grad, as a decoder's output does) and the same
targets, through a frozen head (LoRA leaves lm_head alone; a tied head is the frozen embedding).

Saved bytes: every tensor that autograd keeps for backward while the head's loss exists, caught with
``torch.autograd.graph.saved_tensors_hooks``, counted once per storage, parameters left out (they exist
anyway). Tensors that a computation saves and frees before the loss is returned (the fused head's per-chunk
graphs) do not count: only what is still held when forward ends is memory that backward needs.

    python benchmarks/bench_fused_head.py [--quick] [--repeats N]
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Row, Target, interleave  # noqa: E402

BENCH = "8 fused head"
# (tokens, hidden, vocab): the trainer benchmarks' model (batch 2 x seq 256, hidden 256, vocab 32k), and the
# embedded SmolLM2-135M's head (hidden 576, vocab 49152) on batch 4 x seq 256.
SHAPES = [(512, 256, 32000), (1024, 576, 49152)]
QUICK_SHAPES = [(128, 64, 32000), (128, 64, 49152)]


class _Held:
    """What a saved-tensors pack hook returns: the graph holds it, so it lives exactly as long as the saving."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor):
        self.tensor = tensor


def _problem(tokens: int, hidden: int, vocab: int, seed: int = 0):
    import torch

    generator = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(hidden, vocab, bias=False).requires_grad_(False)
    torch.nn.init.normal_(head.weight, std=0.02, generator=generator)
    states = torch.randn(tokens, hidden, generator=generator)
    targets = torch.randint(vocab, (tokens,), generator=generator)
    targets[::7] = -100  # some positions without a target, as prompts and padding have
    return head, states, targets


def _head_loss(fused: bool):
    import torch.nn.functional as F

    from lorakit.training.fused_head import chunked_head_loss

    def plain(states, targets, head):
        return F.cross_entropy(head(states).float(), targets, ignore_index=-100, reduction="sum")

    return chunked_head_loss if fused else plain


def saved_bytes(tokens: int, hidden: int, vocab: int, fused: bool) -> int:
    """Bytes the head and loss keep for backward (dedup by storage, parameters excluded)."""
    import weakref

    import torch

    head, states, targets = _problem(tokens, hidden, vocab)
    states.requires_grad_(True)
    held: list[weakref.ref] = []

    def pack(tensor):
        box = _Held(tensor)
        held.append(weakref.ref(box))
        return box

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda box: box.tensor):
        loss = _head_loss(fused)(states, targets, head)
    params = {p.untyped_storage().data_ptr() for p in head.parameters()}
    storages = {}
    for ref in held:
        box = ref()
        if box is None:  # saved and already freed inside forward
            continue
        storage = box.tensor.untyped_storage()
        if storage.data_ptr() not in params:
            storages[storage.data_ptr()] = storage.nbytes()
    del loss
    return sum(storages.values())


def head_step_seconds(tokens: int, hidden: int, vocab: int, fused: bool) -> float:
    """Wall seconds of one forward + backward of the head and loss."""
    head, states, targets = _problem(tokens, hidden, vocab)
    loss_fn = _head_loss(fused)
    states.requires_grad_(True)
    start = time.perf_counter()
    loss_fn(states, targets, head).backward()
    return time.perf_counter() - start


def train_rows(quick: bool = False, repeats: int = 5) -> list[Row]:
    """lorakit.train with loss_kernel "fused" vs "plain": tokens/s and peak RSS, each run in a fresh process.

    The trainer comparison's model and settings (benchmarks/bench_trainer.py: hidden 256, vocab 32k, seq 256;
    quick: its tiny shape), fixed-length rows, interleaved; but batch 8 for 4 steps, so that the plain head's
    logits (tokens x vocab x 4 bytes, 250 MiB a copy) rise above what loading the model already took.
    """
    import bench_trainer as bt

    shape, settings = bt._sizes(quick)
    settings = replace(settings, logging_steps=1, **({} if quick else {"batch_size": 8, "steps": 4}))
    path = bt.model_dir(shape)
    texts, _ = bt.fixed_data(shape, settings)
    res = interleave({kernel: lambda k=kernel: bt.isolated("lorakit", path, texts, settings, loss_kernel=k)
                      for kernel in ("fused", "plain")}, repeats)
    setting = (f"lorakit.train, hidden {shape.hidden_size}, vocab {shape.vocab_size}, batch {settings.batch_size} x "
               f"seq {settings.max_seq_length}, {settings.steps} steps, each run in a fresh process")
    pairs = zip(res["fused"], res["plain"], strict=True)
    gap = max(abs(a.losses[k] - b.losses[k]) / abs(b.losses[k]) for a, b in pairs for k in b.losses)
    mib = 2.0**20
    return [
        Row(BENCH, "lorakit.train tokens/s, fused vs plain", "tok/s", [r.tokens_per_s for r in res["fused"]],
            [r.tokens_per_s for r in res["plain"]], "loss_kernel='plain'", note=setting).finish(),
        Row(BENCH, "lorakit.train peak RSS, fused vs plain", "MiB",
            [r.extra["peak_rss_bytes"] / mib for r in res["fused"]],
            [r.extra["peak_rss_bytes"] / mib for r in res["plain"]], "loss_kernel='plain'",
            note="ru_maxrss of each run's process (imports included, alike on both sides)",
            higher_is_better=False).finish(),
        Row(BENCH, "lorakit.train loss, fused vs plain: max relative difference", "", [gap],
            target=Target("<=", 1e-5, on="lorakit"), higher_is_better=False).finish(),
    ]


def run(quick: bool = False, repeats: int = 5) -> list[Row]:
    """Saved bytes (fused ÷ plain, target <= 0.10 at vocab 32k), head step time per shape, and a short
    lorakit.train run each way; interleaved repeats."""
    rows = []
    for tokens, hidden, vocab in QUICK_SHAPES if quick else SHAPES:
        shape = f"{tokens} tokens, hidden {hidden}, vocab {vocab}"
        fused, plain = saved_bytes(tokens, hidden, vocab, True), saved_bytes(tokens, hidden, vocab, False)
        rows.append(Row(BENCH, f"bytes saved for backward, vocab {vocab}", "MiB", [fused / 2**20],
                        [plain / 2**20], "plain head", Target("<=", 0.10) if vocab == 32000 else None,
                        note=f"{shape}; saved_tensors_hooks, dedup by storage, parameters excluded",
                        higher_is_better=False).finish())
        head_step_seconds(tokens, hidden, vocab, True)  # warm-up: first-call allocations and kernels
        head_step_seconds(tokens, hidden, vocab, False)
        times = interleave({"fused": lambda a=(tokens, hidden, vocab): head_step_seconds(*a, True),
                            "plain": lambda a=(tokens, hidden, vocab): head_step_seconds(*a, False)}, repeats)
        rows.append(Row(BENCH, f"head forward+backward, vocab {vocab}", "s", times["fused"], times["plain"],
                        "plain head", note=f"{shape}; CPU; ratio < 1: the fused head is faster",
                        higher_is_better=False).finish())
    return rows + train_rows(quick, repeats)


if __name__ == "__main__":
    import argparse

    from common import table_lines

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print("\n".join(table_lines(run(args.quick, args.repeats))))
