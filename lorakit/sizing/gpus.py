"""A small GPU catalogue: memory as the driver reports it, and whether bf16 runs natively (cc >= 8.0)."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024**2
GIB = 1024**3


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

    @property
    def supports_bf16(self) -> bool | None:
        """Native bf16 needs compute capability >= 8.0 (Ampere); None when unknown."""
        if self.compute_capability is None:
            return None
        return self.compute_capability >= (8, 0)

    def fits(self, total_bytes: int) -> bool:
        """Whether a predicted peak (bytes) fits in this GPU's memory."""
        return total_bytes <= self.memory_bytes

    def verdict(self, total_bytes: int, precision: str = "bf16") -> str:
        """One line: fits or not, with headroom, and a bf16 warning where the hardware lacks it."""
        room = (self.memory_bytes - total_bytes) / GIB
        text = f"{self.name}: fits ({room:.1f} GiB free)" if room >= 0 else f"{self.name}: short by {-room:.1f} GiB"
        if precision == "bf16" and self.supports_bf16 is False:
            text += "; no native bf16 (cc < 8.0): use fp16 + GradScaler"
        return text


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
    """"My GPU: N GB" (GiB), compute capability unknown."""
    if isinstance(memory_gb, bool) or not isinstance(memory_gb, (int, float)) or memory_gb <= 0:
        raise ValueError(f"memory_gb: must be a positive number of GB, got {memory_gb!r}")
    return GPU(name or f"my GPU ({memory_gb:g} GB)", int(memory_gb * GIB), None)


def smallest_fitting_gpu(total_bytes: int, precision: str = "bf16") -> GPU | None:
    """The smallest catalogue GPU that holds the peak (and runs bf16 natively if asked)."""
    ok = [g for g in GPUS.values() if g.fits(total_bytes) and (precision != "bf16" or g.supports_bf16)]
    return min(ok, key=lambda g: g.memory_bytes, default=None)
