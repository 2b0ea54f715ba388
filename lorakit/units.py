"""Units of memory, stated once: every module that turns bytes into MiB or GiB imports these (no torch here)."""

from __future__ import annotations

__all__ = ["GIB", "MIB"]

MIB = 2**20  # bytes in a mebibyte
GIB = 2**30  # bytes in a gibibyte: what torch.cuda and nvidia-smi's "MiB" columns count in
