"""The same input in every format, and the representable values around a stored one (for pictures)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from . import codebooks, codec
from .catalog import FORMATS, get_format
from .explain import Explanation, explain
from .spec import FloatFormat


def explain_all(
    value: object, names: Iterable[str] | None = None, overflow: str = "standard", absmax: float = 1.0
) -> dict[str, Explanation | ValueError]:
    """explain(value) in each format (default: all of FORMATS); a format that rejecting it maps to its ValueError."""
    out: dict[str, Explanation | ValueError] = {}
    for name in FORMATS if names is None else names:
        try:
            out[name] = explain(value, name, overflow=overflow, absmax=absmax)
        except ValueError as err:
            out[name] = err
    return out


def values_around(e: Explanation, count: int = 3) -> list[float]:
    """Up to ``count`` representable finite values on each side of the stored one, ascending, stored included."""
    fmt = get_format(e.format)
    if not fmt.is_float:
        levels = np.unique(codebooks.level_values(np.arange(2**fmt.bits), fmt) * np.float32(e.absmax))
        if fmt.kind == "int":
            levels = levels[levels >= -levels.max()]  # drop the never-used most negative code
        pos = int(np.searchsorted(levels, np.float32(e.stored)))
        return [float(v) for v in levels[max(pos - count, 0) : pos + count + 1]]
    if e.value_class in ("inf", "nan"):
        return []
    return sorted({codec.decode(c, fmt) + 0.0 for c in _codes_around(e.code, fmt, count)})


def _codes_around(code: int, fmt: FloatFormat, count: int) -> list[int]:
    """Finite codes whose values are the ``count`` nearest on either side (sign-magnitude ordinal order)."""
    mag_bits = fmt.exponent_bits + fmt.mantissa_bits
    sign_bit = 1 << mag_bits
    mag = code & (sign_bit - 1)
    ordinal = -mag if (code & sign_bit and fmt.sign_bits) else mag
    lowest = -codec.join(0, *fmt.max_fields, fmt) if fmt.sign_bits else 0
    highest = codec.join(0, *fmt.max_fields, fmt)
    codes = []
    for k in range(max(ordinal - count, lowest), min(ordinal + count, highest) + 1):
        candidate = k if k >= 0 else sign_bit | -k
        if codec.classify(candidate, fmt) not in ("nan", "inf"):
            codes.append(candidate)
    return codes
