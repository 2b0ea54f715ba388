"""Cast whole arrays (numpy, or torch tensors) to any format and measure what the rounding cost."""

from __future__ import annotations

import sys

import ml_dtypes
import numpy as np

from . import codebooks
from .catalog import get_format
from .codec import OVERFLOW_POLICIES
from .spec import FloatFormat


def _to_numpy(x: object) -> np.ndarray:
    """float64 copy of a numpy array, array-like, or torch tensor (torch is only touched if already imported)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _dtype(fmt: FloatFormat) -> np.dtype:
    if fmt.dtype_name in ("float32", "float16"):
        return np.dtype(fmt.dtype_name)
    return np.dtype(getattr(ml_dtypes, fmt.dtype_name))


def _round_tf32(x32: np.ndarray) -> np.ndarray:
    """Round float32 values to TF32 (10 mantissa bits), nearest-even, on the bit pattern; inf/NaN pass through."""
    bits = x32.view(np.uint32)
    dropped = 23 - 10
    lsb = (bits >> dropped) & 1
    rounded = (bits + np.uint32(2 ** (dropped - 1) - 1) + lsb) & np.uint32(~(2**dropped - 1) & 0xFFFFFFFF)
    special = ~np.isfinite(x32)
    return np.where(special, x32, rounded.astype(np.uint32).view(np.float32))


def _cast_float(x: np.ndarray, fmt: FloatFormat, overflow: str) -> np.ndarray:
    if overflow == "saturate":  # clamp finite values; inf stays inf only where the format can hold it
        limit = fmt.max
        clipped = np.clip(x, -limit, limit)
        x = np.where(np.isinf(x), x, clipped) if fmt.has_inf else clipped
    if fmt.name == "tf32":  # TF32 rounds FP32 tensors inside a matmul: the input is FP32 first
        return _round_tf32(x.astype(np.float32))
    with np.errstate(over="ignore"):  # overflow to inf/NaN is the behaviour being shown, not a bug
        return x.astype(_dtype(fmt)).astype(np.float32)


def _overflow_mask(x: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Finite inputs that round past the largest finite value (ties follow round-to-nearest-even)."""
    if not fmt.is_float:
        return np.zeros(x.shape, dtype=bool)  # block absmax scaling never overflows
    biased, mant = fmt.max_fields
    half_ulp = 2.0 ** (biased - fmt.bias - fmt.mantissa_bits - 1)
    threshold = fmt.max + half_ulp
    ties_go_up = (2**fmt.mantissa_bits + mant) % 2 == 1  # the largest significand is odd: a tie rounds past it
    beyond = np.abs(x) >= threshold if ties_go_up else np.abs(x) > threshold
    return np.isfinite(x) & beyond


def quantize_array(
    x: object, fmt: str | FloatFormat, block_size: int = 64, overflow: str = "standard"
) -> tuple[np.ndarray, dict[str, float]]:
    """Round-trip ``x`` through ``fmt``: (dequantized float32 array of x's shape, error statistics).

    Float formats use the ml_dtypes/numpy cast (TF32: FP32 then nearest-even on 10 mantissa bits); NF4,
    bnb_fp4, INT8 and INT4 use block-wise absmax over the flattened array, ``block_size`` elements per block,
    matching bitsandbytes' quantize_4bit/dequantize_4bit. Errors are measured where input and output are both
    finite; ``frac_overflowed`` counts the rest.
    """
    fmt = get_format(fmt)
    if overflow not in OVERFLOW_POLICIES:
        raise ValueError(f"overflow: {overflow!r} is not a policy; allowed: {', '.join(OVERFLOW_POLICIES)}")
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size: {block_size!r} is not allowed; use a positive integer (bitsandbytes: 64)")
    data = _to_numpy(x)
    if fmt.is_float:
        out = _cast_float(data, fmt, overflow)
    else:
        codes, absmax = codebooks.quantize_blocks(data.astype(np.float32).reshape(-1), fmt, int(block_size))
        out = codebooks.dequantize_blocks(codes, absmax, fmt, int(block_size)).reshape(data.shape)
    return out, error_stats(data, out, fmt)


def error_stats(x: np.ndarray, q: np.ndarray, fmt: FloatFormat) -> dict[str, float]:
    """Mean/max absolute and mean relative error of q against x, and the fractions flushed and overflowed."""
    q = q.astype(np.float64)
    both = np.isfinite(x) & np.isfinite(q)
    err = np.abs(q[both] - x[both])
    nonzero = x[both] != 0
    rel = err[nonzero] / np.abs(x[both][nonzero])
    n = max(x.size, 1)
    return {
        "mean_abs_error": float(err.mean()) if err.size else 0.0,
        "mean_rel_error": float(rel.mean()) if rel.size else 0.0,
        "max_abs_error": float(err.max()) if err.size else 0.0,
        "frac_flushed_to_zero": float(np.count_nonzero((x != 0) & np.isfinite(x) & (q == 0)) / n),
        "frac_overflowed": float(np.count_nonzero(_overflow_mask(x, fmt)) / n),
    }
