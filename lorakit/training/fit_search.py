"""The largest batch that fits: the planner proposes, a measured step decides; no halving after an out-of-memory.

Pure logic over two functions of the batch size, ``predict`` (the planner's peak of the worst batch of that size)
and ``measure`` (the measured peak of one training step on it), so that the search is tested without torch.
Both grow with the batch. The search starts at the largest candidate the planner says fits the budget, measures
it, and moves from there with the planner's prediction scaled by the error the last measurement showed: down
when the measured step did not fit, up while the scaled prediction of the next candidate still fits. It ends at
a measured batch that fits whose next candidate does not (measured, or predicted with the measured error), at the
last candidate (the cap), or with none when even the smallest candidate does not fit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["BatchSearch", "batch_candidates", "search_batch"]


@dataclass
class BatchSearch:
    """What the search found. Bytes are peak bytes of the worst batch of that size."""

    batch: int | None  # the largest candidate that fits, measured; None: not even the smallest
    measured: dict[int, int] = field(default_factory=dict)  # batch -> measured peak
    predicted: dict[int, int] = field(default_factory=dict)  # batch -> the planner's peak
    next_batch: int | None = None  # the candidate after ``batch``; None: ``batch`` is the last (the cap)
    next_bytes: int | None = None  # what next_batch needs: measured, else the planner's x the measured error
    next_measured: bool = False

    @property
    def cap_reached(self) -> bool:
        return self.batch is not None and self.next_batch is None


def batch_candidates(cap: int, per_step: int | None = None, processes: int = 1) -> list[int]:
    """Batch sizes per process to try, ascending: 1..cap, or, to keep a global batch of ``per_step`` examples
    per optimizer step, the divisors of per_step / processes up to cap (accumulation makes up the rest)."""
    if per_step is None:
        return list(range(1, cap + 1))
    if per_step % processes:
        raise ValueError(f"target_global_batch_size={per_step} is not a multiple of num_processes={processes}; "
                         "every process takes the same batch")
    each = per_step // processes
    return [b for b in range(1, min(cap, each) + 1) if each % b == 0]


def search_batch(candidates: Sequence[int], predict: Callable[[int], int], measure: Callable[[int], int],
                 budget: int) -> BatchSearch:
    """The largest candidate whose measured peak is at most ``budget`` bytes (see the module's docstring)."""
    if not candidates:
        raise ValueError("no batch size to try")
    found = BatchSearch(None)
    ratio = 1.0  # measured / predicted at the last measurement

    def predicted(b: int) -> int:
        if b not in found.predicted:
            found.predicted[b] = int(predict(b))
        return found.predicted[b]

    def largest_fitting(top: int) -> int | None:
        """The largest index <= top whose scaled prediction fits (predictions grow with the batch)."""
        low, high, best = 0, top, None
        while low <= high:
            mid = (low + high) // 2
            if predicted(candidates[mid]) * ratio <= budget:
                best, low = mid, mid + 1
            else:
                high = mid - 1
        return best

    i = largest_fitting(len(candidates) - 1) or 0
    while True:
        b = candidates[i]
        if b not in found.measured:
            found.measured[b] = int(measure(b))
        ratio = found.measured[b] / max(1, predicted(b))
        if found.measured[b] > budget:
            if i == 0:
                return found  # not even the smallest
            below = largest_fitting(i - 1)
            i = below if below is not None else 0
            continue
        if i + 1 == len(candidates):
            found.batch = b
            return found
        nxt = candidates[i + 1]
        if nxt in found.measured:  # measured before, and it did not fit
            found.batch, found.next_batch, found.next_bytes, found.next_measured = b, nxt, found.measured[nxt], True
            return found
        need = int(predicted(nxt) * ratio)
        if need <= budget:
            i += 1
            continue
        found.batch, found.next_batch, found.next_bytes = b, nxt, need
        return found
