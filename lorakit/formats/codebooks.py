"""Block formats (NF4, bitsandbytes FP4, symmetric INT8/INT4): a 16- or 256-entry table scaled by each block's absmax.

The arithmetic follows bitsandbytes' CPU reference (``backends/default/ops.py``, v0.50) step for step in
float32, so that ``quantize_array`` reproduces ``bitsandbytes.functional.quantize_4bit`` / ``dequantize_4bit``
bit for bit: scale a full block by ``x * (1 / absmax)`` (the last, partial block by ``x / absmax``), clamp to
[-1, 1], pick the level by comparing with the float32 midpoints between sorted levels (a value exactly on a
midpoint goes to the lower level, as ``torch.bucketize`` does), and dequantize as ``level * absmax``.
One exception, bitsandbytes' FP4 zero: its table holds +0 and -0, and lorakit gives a value that rounds to zero
its own sign, as bitsandbytes' CUDA kernel does (where people train); bitsandbytes' CPU code does not (see
``signed_zero_codes`` and tests/test_formats_extreme.py).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from .spec import FloatFormat

# bitsandbytes' NF4 table (``functional.get_4bit_type("nf4")``), float32 values written as hex floats.
# They are normal-distribution quantiles: see ``nf4_from_quantiles`` for the construction.
NF4_LEVELS = tuple(
    float.fromhex(h)
    for h in (
        "-0x1.0p+0", "-0x1.647362p-1", "-0x1.0cd66p-1", "-0x1.94654p-2",
        "-0x1.23449ap-2", "-0x1.7a6a7ep-3", "-0x1.74f0e2p-4", "0x0.0p+0",
        "0x1.45f5fep-4", "0x1.4995c6p-3", "0x1.f809bap-3", "0x1.5a0674p-2",
        "0x1.c3497p-2", "0x1.200f56p-1", "0x1.722766p-1", "0x1.0p+0",
    )
)  # fmt: skip

# bitsandbytes' own "fp4" (sign + 3 bits, bias 2, not OCP E2M1), in code order, before it divides by 12.
_BNB_FP4_RAW = (0.0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, -0.0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0)


def bnb_fp4_levels() -> tuple[float, ...]:
    """bitsandbytes' FP4 table normalised to [-1, 1] in float32, exactly as ``get_4bit_type('fp4')`` does."""
    raw = np.array(_BNB_FP4_RAW, dtype=np.float32)
    return tuple(float(v) for v in raw / np.abs(raw).max())


def int_levels(bits: int) -> tuple[float, ...]:
    """Symmetric absmax integer levels q / (2^(bits-1) - 1) in float32, indexed by the two's-complement code."""
    qmax = 2 ** (bits - 1) - 1
    q = np.arange(2**bits)
    q = np.where(q > qmax, q - 2**bits, q)  # two's complement
    return tuple(float(v) for v in (q / qmax).astype(np.float32))


def nf4_from_quantiles(offset: float = 0.9677083) -> np.ndarray:
    """Rebuild NF4 from normal quantiles (QLoRA's ``create_normal_map``): 8 positive, 0, 7 negative levels."""
    from statistics import NormalDist

    ppf = NormalDist().inv_cdf
    positive = [ppf(p) for p in np.linspace(offset, 0.5, 9)[:-1]]
    negative = [-ppf(p) for p in np.linspace(offset, 0.5, 8)[:-1]]
    levels = np.sort(np.array(positive + [0.0] + negative))
    return levels / levels.max()


@cache
def _tables(fmt: FloatFormat) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(levels by code, float32 midpoints between sorted levels, code of each sorted level)."""
    levels = np.array(fmt.levels, dtype=np.float32)
    order = np.argsort(levels, kind="stable")
    if fmt.kind == "int":  # the most negative code is never produced by a symmetric quantizer
        order = order[order != 2 ** (fmt.bits - 1)]
    ordered = levels[order]
    midpoints = (ordered[:-1] + ordered[1:]) / np.float32(2)
    return levels, midpoints, order


def codes_for_scaled(scaled: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Code of the nearest level for values already divided by absmax (float32, clamped to [-1, 1])."""
    _, midpoints, order = _tables(fmt)
    if fmt.kind == "int":  # round half to even on the integer grid, like torch.round / np.rint
        qmax = 2 ** (fmt.bits - 1) - 1
        q = np.rint(scaled * np.float32(qmax)).astype(np.int64)
        return (q % 2**fmt.bits).astype(np.uint8)
    codes = order[np.searchsorted(midpoints, scaled, side="left")].astype(np.uint8)
    zeros = signed_zero_codes(fmt)
    if zeros is None:
        return codes
    # A table with +0 and -0 (bitsandbytes' FP4): a value that rounds to zero keeps its own sign, as bitsandbytes'
    # CUDA kernel stores it (sign bit from x < 0, then the magnitude's code). Its CPU code picks by position in
    # the sorted table instead, which puts a tiny positive value on the -0 code: see DESIGN.md and the tests.
    positive_zero, negative_zero = zeros
    on_zero = np.isin(codes, zeros)
    return np.where(on_zero, np.where(scaled < 0, negative_zero, positive_zero), codes).astype(np.uint8)


@cache
def signed_zero_codes(fmt: FloatFormat) -> tuple[int, int] | None:
    """(code of +0, code of -0) when the table holds both zeros, else None."""
    levels = np.array(fmt.levels, dtype=np.float32)
    positive = np.flatnonzero((levels == 0) & ~np.signbit(levels))
    negative = np.flatnonzero((levels == 0) & np.signbit(levels))
    if fmt.kind == "int" or not positive.size or not negative.size:
        return None
    return int(positive[0]), int(negative[0])


def level_values(codes: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Level of each code, float32, in units of absmax."""
    return _tables(fmt)[0][codes]


def scale_to_unit(x: np.ndarray, absmax: np.ndarray | np.float32, partial: bool = False) -> np.ndarray:
    """x / absmax clamped to [-1, 1] in float32 (bitsandbytes multiplies by 1/absmax, divides in a partial block)."""
    absmax = np.maximum(np.float32(absmax), np.float32(1e-38))  # all-zero block: avoid 0/0, as bitsandbytes does
    with np.errstate(over="ignore"):  # a value past float32 (inf) is clamped like any other past absmax
        scaled = x / absmax if partial else x * (np.float32(1) / absmax)
    return np.clip(scaled, np.float32(-1), np.float32(1)).astype(np.float32)


def quantize_blocks(flat: np.ndarray, fmt: FloatFormat, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Block-wise absmax quantization of a flat float32 array: (codes, absmax per block, float32)."""
    full = flat.size - flat.size % block_size
    blocks = flat[:full].reshape(-1, block_size)
    absmax = np.abs(blocks).max(axis=1) if full else np.zeros(0, np.float32)
    scaled = scale_to_unit(blocks, absmax[:, None]).reshape(-1)
    if full < flat.size:
        tail = flat[full:]
        tail_max = np.abs(tail).max()
        absmax = np.append(absmax, np.float32(tail_max)).astype(np.float32)
        scaled = np.concatenate([scaled, scale_to_unit(tail, tail_max, partial=True)])
    return codes_for_scaled(scaled, fmt), absmax.astype(np.float32)


def dequantize_blocks(codes: np.ndarray, absmax: np.ndarray, fmt: FloatFormat, block_size: int) -> np.ndarray:
    """Inverse of ``quantize_blocks``: level * absmax of its block, float32."""
    block_of = np.arange(codes.size) // block_size
    return level_values(codes, fmt) * absmax.astype(np.float32)[block_of]
