"""Turn what a person types (or passes) into a number or a bit pattern of a given format."""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .spec import FloatFormat

_SEPARATORS = re.compile(r"[\s_|]")
_SPECIALS = {
    "inf": math.inf, "+inf": math.inf, "infinity": math.inf, "+infinity": math.inf,
    "-inf": -math.inf, "-infinity": -math.inf, "nan": math.nan, "+nan": math.nan, "-nan": math.nan,
}  # fmt: skip


@dataclass(frozen=True)
class Parsed:
    """A number (``value``: exact Fraction, or float for -0.0/inf/nan) or a bit pattern (``code``)."""

    text: str
    value: Fraction | float | None = None
    code: int | None = None

    @property
    def is_bits(self) -> bool:
        """True when the input was a bit pattern rather than a number."""
        return self.code is not None


def allowed_inputs(fmt: FloatFormat) -> str:
    """One line naming what can be typed for this format."""
    width = fmt.bits
    return (
        f"a number (0.1, -2.5e-3, 1/3, inf, -inf, nan) or a {width}-bit pattern "
        f"(hex 0x0..0x{2**width - 1:X}, or 0b plus {width} binary digits, or exactly {width} 0/1 digits)"
    )


def _fail(fmt: FloatFormat, text: str, why: str) -> ValueError:
    return ValueError(f"{fmt.name}: {why} {text!r}; allowed: {allowed_inputs(fmt)}")


def parse(value: object, fmt: FloatFormat) -> Parsed:
    """Parse a number, numeric string, fraction string, or a hex/binary bit pattern of ``fmt``."""
    if isinstance(value, str):
        return _parse_text(value, fmt)
    if isinstance(value, (bool, np.bool_)):
        raise _fail(fmt, str(value), "a bool is not a number:")
    if isinstance(value, Fraction):
        return Parsed(str(value), value=value)
    if isinstance(value, numbers.Integral):
        return Parsed(str(value), value=Fraction(int(value)))
    if isinstance(value, (numbers.Real, np.generic)):  # floats, numpy and ml_dtypes scalars (bfloat16, float8)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise _fail(fmt, repr(value), f"cannot read a {type(value).__name__}:") from None
        exact = number if (math.isinf(number) or math.isnan(number) or number == 0) else Fraction(number)
        return Parsed(repr(number), value=exact)
    raise _fail(fmt, repr(value), f"cannot read a {type(value).__name__}:")


def _parse_text(text: str, fmt: FloatFormat) -> Parsed:
    stripped = text.strip()
    lowered = stripped.lower()
    if not stripped:
        raise _fail(fmt, text, "empty input")
    if lowered.startswith(("0x", "-0x", "+0x")):
        return _parse_hex(stripped, fmt)
    if lowered.startswith("0b") or _is_bit_string(stripped, fmt):
        return _parse_binary(stripped, fmt)
    if lowered in _SPECIALS:
        return Parsed(stripped, value=_SPECIALS[lowered])
    try:
        number = Fraction(stripped)
    except (ValueError, ZeroDivisionError) as err:
        why = "division by zero in" if isinstance(err, ZeroDivisionError) else "not a number or bit pattern:"
        raise _fail(fmt, text, why) from None
    if number == 0 and stripped.startswith("-"):
        return Parsed(stripped, value=-0.0)  # a Fraction has no -0; keep the sign bit the person asked for
    return Parsed(stripped, value=number)


def _is_bit_string(text: str, fmt: FloatFormat) -> bool:
    """Plain 0/1 digits exactly as wide as the format (optionally grouped by spaces, '_' or '|')."""
    digits = _SEPARATORS.sub("", text)
    return len(digits) == fmt.bits and set(digits) <= {"0", "1"}


def _parse_hex(text: str, fmt: FloatFormat) -> Parsed:
    if text.startswith(("-", "+")):
        raise _fail(fmt, text, "a hex bit pattern has no sign (the sign is its top bit):")
    try:
        code = int(_SEPARATORS.sub("", text[2:]), 16)
    except ValueError:
        raise _fail(fmt, text, "not a hex bit pattern:") from None
    if code >= 2**fmt.bits:
        raise _fail(fmt, text, f"hex pattern wider than {fmt.bits} bits:")
    return Parsed(text, code=code)


def _parse_binary(text: str, fmt: FloatFormat) -> Parsed:
    digits = _SEPARATORS.sub("", text[2:] if text.lower().startswith("0b") else text)
    if not digits or set(digits) - {"0", "1"}:
        raise _fail(fmt, text, "not a binary bit pattern:")
    if len(digits) != fmt.bits:
        raise _fail(fmt, text, f"bit string has {len(digits)} bits, the format has {fmt.bits}:")
    return Parsed(text, code=int(digits, 2))
