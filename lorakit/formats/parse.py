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
# A number as Fraction() reads it: an optional sign, then an integer ratio or a decimal with an exponent.
_NUMBER = re.compile(
    r"""\A(?P<sign>[-+]?)(?=\d|\.\d)(?P<num>\d*|\d+(?:_\d+)*)
    (?:\s*/\s*(?P<denom>\d+(?:_\d+)*)
    |(?:\.(?P<decimal>\d*|\d+(?:_\d+)*))?(?:[eE](?P<exp>[-+]?\d+(?:_\d+)*))?)\Z""",
    re.VERBOSE,
)
# Longer input is refused rather than parsed: nobody types it, and int() of thousands of digits is slow
# (Python refuses more than 4300 decimal digits at once anyway).
MAX_INPUT_CHARS = 1000
# Every format here rounds a magnitude above 2^16384 to overflow and one below 2^-16384 to zero (or to its
# smallest value), and the errors, as floats, come out the same for any such magnitude (they are inf, 1.0
# or the stored value itself). So a number beyond those bounds is replaced by +-2^(+-16384): "1e-99999999"
# then costs what "1e-300" does, where the exact Fraction would hold a 332-million-bit integer.
EXTREME_LOG2 = 16_384
_EXTREME_LOG10 = 4_933  # 10^4933 > 2^16384
_SPECIALS = {
    "inf": math.inf, "+inf": math.inf, "infinity": math.inf, "+infinity": math.inf,
    "-inf": -math.inf, "-infinity": -math.inf, "nan": math.nan, "+nan": math.nan, "-nan": math.nan,
}  # fmt: skip


@dataclass(frozen=True)
class Parsed:
    """A number (``value``: exact Fraction, or float for -0.0/inf/nan) or a bit pattern (``code``).

    ``value`` is exact for magnitudes between 2^-16384 and 2^16384; beyond, it stands in (see EXTREME_LOG2).
    """

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
    article = "an" if str(width).startswith("8") or width in (11, 18) else "a"  # "an 8-bit", "an 18-bit"
    return (
        f"a number (0.1, -2.5e-3, 1/3, inf, -inf, nan) or {article} {width}-bit pattern "
        f"(hex 0x0..0x{2**width - 1:X}, or 0b plus {width} binary digits, or exactly {width} 0/1 digits)"
    )


def _fail(fmt: FloatFormat, text: str, why: str) -> ValueError:
    return ValueError(f"{fmt.name}: {why} {shorten(text)!r}; allowed: {allowed_inputs(fmt)}")


def parse(value: object, fmt: FloatFormat) -> Parsed:
    """Parse a number, numeric string, fraction string, or a hex/binary bit pattern of ``fmt``."""
    if isinstance(value, str):
        return _parse_text(value, fmt)
    if isinstance(value, (bool, np.bool_)):
        raise _fail(fmt, str(value), "a bool is not a number:")
    if isinstance(value, Fraction):
        text = _int_text(value.numerator) + ("" if value.denominator == 1 else f"/{_int_text(value.denominator)}")
        return Parsed(shorten(text), value=_clamp(value))
    if isinstance(value, numbers.Integral):
        return Parsed(shorten(_int_text(int(value))), value=_clamp(Fraction(int(value))))
    if isinstance(value, (numbers.Real, np.generic)):  # floats, numpy and ml_dtypes scalars (bfloat16, float8)
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise _fail(fmt, repr(value), f"cannot read a {type(value).__name__}:") from None
        exact = number if (math.isinf(number) or math.isnan(number) or number == 0) else Fraction(number)
        return Parsed(repr(number), value=exact)
    raise _fail(fmt, repr(value), f"cannot read a {type(value).__name__}:")


def _clamp(value: Fraction) -> Fraction:
    """``value``, or +-2^(+-EXTREME_LOG2) when its magnitude lies beyond those bounds (see EXTREME_LOG2)."""
    log2 = value.numerator.bit_length() - value.denominator.bit_length()  # floor(log2|value|) or one more
    if value == 0 or abs(log2) <= EXTREME_LOG2:
        return value
    return _extreme(-1 if value < 0 else 1, huge=log2 > 0)


def _extreme(sign: int, huge: bool) -> Fraction:
    """The stand-in for a magnitude beyond 2^EXTREME_LOG2 (huge) or below 2^-EXTREME_LOG2."""
    return sign * Fraction(2) ** (EXTREME_LOG2 if huge else -EXTREME_LOG2)


def _int_text(number: int) -> str:
    """Decimal text of an int, or its size where printing it would be slow (or refused by Python)."""
    if number.bit_length() <= 3 * MAX_INPUT_CHARS:
        return str(number)
    return f"{'-' if number < 0 else ''}(a {number.bit_length()}-bit integer)"


def shorten(text: str, limit: int = 60) -> str:
    """``text``, cut in the middle when longer than ``limit`` (error messages and labels stay readable)."""
    return text if len(text) <= limit else f"{text[: limit // 2]}…{text[-limit // 4 :]}"


def _parse_text(text: str, fmt: FloatFormat) -> Parsed:
    stripped = text.strip()
    lowered = stripped.lower()
    if not stripped:
        raise _fail(fmt, text, "empty input")
    if len(stripped) > MAX_INPUT_CHARS:
        raise _fail(fmt, text, f"input of {len(stripped)} characters (at most {MAX_INPUT_CHARS}):")
    if lowered.startswith(("0x", "-0x", "+0x")):
        return _parse_hex(stripped, fmt)
    if lowered.startswith("0b") or _is_bit_string(stripped, fmt):
        return _parse_binary(stripped, fmt)
    if lowered in _SPECIALS:
        return Parsed(stripped, value=_SPECIALS[lowered])
    match = _NUMBER.match(stripped)
    if match is None:
        raise _fail(fmt, text, "not a number or bit pattern:")
    number = _number(match)
    if number is None:
        raise _fail(fmt, text, "division by zero in")
    if number == 0 and match["sign"] == "-":
        return Parsed(stripped, value=-0.0)  # a Fraction has no -0; keep the sign bit the person asked for
    return Parsed(stripped, value=number)


def _number(match: re.Match) -> Fraction | None:
    """The exact value of a matched number (clamped, see EXTREME_LOG2); None for a zero denominator."""
    sign = -1 if match["sign"] == "-" else 1
    if match["denom"] is not None:
        denom = int(match["denom"])
        return _clamp(Fraction(sign * int(match["num"]), denom)) if denom else None
    decimal = match["decimal"] or ""
    digits = (match["num"] + decimal).replace("_", "").lstrip("0")
    if not digits:
        return Fraction(0)
    exp10 = int(match["exp"] or 0) - len(decimal.replace("_", ""))  # value = digits * 10^exp10
    # Decided from the digit count and the exponent, before 10^exp10 is built.
    if len(digits) - 1 + exp10 >= _EXTREME_LOG10:  # |value| >= 10^4933
        return _extreme(sign, huge=True)
    if len(digits) + exp10 <= -_EXTREME_LOG10:  # |value| < 10^-4933
        return _extreme(sign, huge=False)
    return _clamp(sign * int(digits) * Fraction(10) ** exp10)


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
