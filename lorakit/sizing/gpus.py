"""A small GPU catalogue: memory as the driver reports it, and whether bf16 runs natively (cc >= 8.0)."""

from __future__ import annotations

from dataclasses import dataclass

from lorakit.choices import PRECISIONS
from lorakit.units import GIB, MIB


@dataclass(frozen=True)
class GPU:
    """One accelerator: total memory (bytes, as nvidia-smi reports it) and CUDA compute capability."""

    name: str
    memory_bytes: int
    compute_capability: tuple[int, int] | None  # None: unknown (a custom entry)

    @property
    def memory_gib(self) -> float:
        """Total memory, GiB."""
        return self.memory_bytes / GIB

    def runs_natively(self, precision: str) -> bool | None:
        """Whether this GPU runs a precision natively (bf16, tf32 need Ampere); None when unknown."""
        return PRECISIONS[precision].runs_natively_on(self.compute_capability)

    @property
    def supports_bf16(self) -> bool | None:
        """Native bf16 (compute capability >= 8.0); None when unknown."""
        return self.runs_natively("bf16")

    def fits(self, total_bytes: int) -> bool:
        """Whether a predicted peak (bytes) fits in this GPU's memory."""
        return total_bytes <= self.memory_bytes

    def verdict(self, total_bytes: int, precision: str = "bf16") -> str:
        """One line: fits or not, with headroom, and a bf16 warning where the hardware lacks it."""
        room = self.memory_bytes - total_bytes
        text = (f"{self.name}: fits ({gib_amount(room)} GiB free)" if room >= 0
                else f"{self.name}: short by {gib_amount(-room)} GiB")
        if self.runs_natively(precision) is False:
            text += f"; no native {precision} (cc < 8.0): use " + ("fp32" if precision == "tf32" else "fp16 + GradScaler")
        return text


def gib_amount(nbytes: float) -> str:
    """Bytes as GiB with one decimal, or as many more (up to 6) as keep an amount above zero from reading 0.0."""
    for digits in range(1, 7):
        if nbytes <= 0 or round(nbytes / GIB, digits) > 0:
            return f"{nbytes / GIB:.{digits}f}"
    return f"{nbytes / GIB:.6f}"


def gib_pair(need_bytes: float, have_bytes: float) -> tuple[str, str]:
    """Two amounts as GiB with the fewest decimals (1 to 6) that keep their order: "needs 8.01 GiB of 8.00",
    never "needs 8.0 GiB of 8.0" for a run that does not fit."""
    order = (need_bytes > have_bytes) - (need_bytes < have_bytes)
    for digits in range(1, 7):
        need, have = round(need_bytes / GIB, digits), round(have_bytes / GIB, digits)
        if (need > have) - (need < have) == order:
            break
    return f"{need_bytes / GIB:.{digits}f}", f"{have_bytes / GIB:.{digits}f}"


def _gpu(name: str, mib: int, cc: tuple[int, int]) -> GPU:
    return GPU(name, mib * MIB, cc)


GPUS: dict[str, GPU] = {
    g.name: g
    for g in (
        _gpu("T4 16 GB", 15360, (7, 5)),
        _gpu("L4 24 GB", 23034, (8, 9)),
        _gpu("A10G 24 GB", 23028, (8, 6)),
        _gpu("RTX 4090 24 GB", 24564, (8, 9)),
        _gpu("A100 40 GB", 40960, (8, 0)),
        _gpu("A100 80 GB", 81920, (8, 0)),
        _gpu("H100 80 GB", 81559, (9, 0)),
        _gpu("H200 141 GB", 143771, (9, 0)),
    )
}


def custom_gpu(memory_gb: float, name: str | None = None) -> GPU:
    """"my GPU (N GiB)": ``memory_gb`` GiB as its driver reports them, compute capability unknown."""
    if isinstance(memory_gb, bool) or not isinstance(memory_gb, (int, float)) or memory_gb <= 0:
        raise ValueError(f"memory_gb: must be a positive number of GiB, got {memory_gb!r}")
    return GPU(name or f"my GPU ({memory_gb:g} GiB)", int(memory_gb * GIB), None)


def smallest_fitting_gpu(total_bytes: int, precision: str = "bf16") -> GPU | None:
    """The smallest catalogue GPU that holds the peak (and runs bf16 natively if asked)."""
    ok = [g for g in GPUS.values() if g.fits(total_bytes) and g.runs_natively(precision) is not False]
    return min(ok, key=lambda g: g.memory_bytes, default=None)
