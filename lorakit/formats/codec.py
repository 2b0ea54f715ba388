"""Exact per-value codec for sign/exponent/mantissa formats: encode (round to nearest, ties to even), decode,
classify, neighbours and the exact decimal of a stored value. Arithmetic is on integers and Fractions, so the
answers are exact for every width up to FP32; ml_dtypes/numpy casts are the test oracle, not the implementation.
"""

from __future__ import annotations

import math
from fractions import Fraction

from .spec import FloatFormat

OVERFLOW_POLICIES = ("standard", "saturate")
# standard: a value that rounds past the largest finite one becomes inf, or NaN where the format has no inf
#           (what ml_dtypes casts do; formats with neither inf nor NaN, FP6/FP4, saturate);
# saturate: finite values past max become +-max, and so does inf where the format has no inf (the clamp of
#           FP8 training recipes; torch 2.13's CPU cast to float8_e4m3fn does exactly this, see the tests).


def fields(code: int, fmt: FloatFormat) -> tuple[int, int, int]:
    """(sign, biased exponent, mantissa) of a code."""
    m, e = fmt.mantissa_bits, fmt.exponent_bits
    sign = (code >> (m + e)) & 1 if fmt.sign_bits else 0
    return sign, (code >> m) & (2**e - 1), code & (2**m - 1)


def join(sign: int, biased: int, mantissa: int, fmt: FloatFormat) -> int:
    """Code from (sign, biased exponent, mantissa)."""
    m, e = fmt.mantissa_bits, fmt.exponent_bits
    return (sign << (m + e)) | (biased << m) | mantissa


def classify(code: int, fmt: FloatFormat) -> str:
    """'zero', 'subnormal', 'normal', 'inf' or 'nan'."""
    sign, biased, mant = fields(code, fmt)
    e_ones, m_ones = 2**fmt.exponent_bits - 1, 2**fmt.mantissa_bits - 1
    if fmt.specials == "fnuz" and sign and biased == 0 and mant == 0:
        return "nan"
    if fmt.specials == "ieee" and biased == e_ones:
        return "inf" if mant == 0 else "nan"
    if fmt.specials == "fn" and biased == e_ones and mant == m_ones:
        return "nan"
    if biased == 0 and fmt.has_subnormals:
        return "zero" if mant == 0 else "subnormal"
    return "normal"


def magnitude_exact(code: int, fmt: FloatFormat) -> Fraction:
    """|value| of a finite code, exactly."""
    _, biased, mant = fields(code, fmt)
    m = fmt.mantissa_bits
    if biased == 0 and fmt.has_subnormals:
        return Fraction(mant) * Fraction(2) ** (fmt.min_exponent - m)
    return Fraction(2**m + mant) * Fraction(2) ** (biased - fmt.bias - m)


def decode(code: int, fmt: FloatFormat) -> float:
    """Value of a code as a Python float (exact: every format here fits in a double); -0.0, inf and nan kept."""
    cls = classify(code, fmt)
    sign = -1.0 if fields(code, fmt)[0] else 1.0
    if cls == "nan":
        return math.nan
    if cls == "inf":
        return sign * math.inf
    return sign * float(magnitude_exact(code, fmt))


def decode_exact(code: int, fmt: FloatFormat) -> Fraction:
    """Value of a finite code as an exact Fraction (ValueError for inf/NaN)."""
    cls = classify(code, fmt)
    if cls in ("inf", "nan"):
        raise ValueError(f"{fmt.name}: code 0x{code:X} is {cls}, which has no exact rational value")
    return -magnitude_exact(code, fmt) if fields(code, fmt)[0] else magnitude_exact(code, fmt)


def special_code(what: str, sign: int, fmt: FloatFormat) -> int:
    """Code of 'nan', 'inf' or 'max' with the given sign (NaN: the canonical quiet pattern)."""
    e_ones, m = 2**fmt.exponent_bits - 1, fmt.mantissa_bits
    sign = sign if fmt.sign_bits else 0
    if what == "max":
        return join(sign, *fmt.max_fields, fmt)
    if what == "inf" and fmt.has_inf:
        return join(sign, e_ones, 0, fmt)
    if what == "nan" and fmt.specials == "ieee":
        return join(sign, e_ones, 2 ** (m - 1), fmt)
    if what == "nan" and fmt.specials == "fn":
        return join(sign, e_ones, 2**m - 1, fmt)
    if what == "nan" and fmt.specials == "fnuz":
        return join(1, 0, 0, fmt)
    raise ValueError(f"{fmt.name}: has no {what} encoding")


def _floor_log2(a: Fraction) -> int:
    """floor(log2(a)) for a > 0, exactly."""
    e = a.numerator.bit_length() - a.denominator.bit_length()
    return e if a >= Fraction(2) ** e else e - 1


def round_magnitude(a: Fraction, fmt: FloatFormat) -> tuple[int, int, bool]:
    """(biased exponent, mantissa, overflowed) of a > 0 rounded to nearest, ties to even."""
    m = fmt.mantissa_bits
    e = _floor_log2(a)
    if not fmt.has_subnormals and e < fmt.min_exponent:
        return 0, 0, False  # no zero to round to (E8M0): the nearest value is the smallest one
    quantum_exp = max(e, fmt.min_exponent) - m  # subnormals share the smallest normal's quantum
    n = round(a / Fraction(2) ** quantum_exp)  # Fraction.__round__ rounds half to even
    if n == 2 ** (m + 1):  # rounding carried into the next binade
        n, quantum_exp = 2**m, quantum_exp + 1
    if n < 2**m and fmt.has_subnormals:
        return 0, n, False
    biased, mant = quantum_exp + m + fmt.bias, n - 2**m
    return biased, mant, (biased, mant) > fmt.max_fields


def encode_number(value: Fraction | float, fmt: FloatFormat, overflow: str = "standard") -> int:
    """Code of a number (Fraction, or float incl. -0.0, inf, nan): round to nearest even + overflow policy."""
    if overflow not in OVERFLOW_POLICIES:
        raise ValueError(f"overflow: {overflow!r} is not a policy; allowed: {', '.join(OVERFLOW_POLICIES)}")
    negative = value < 0 or (isinstance(value, float) and math.copysign(1.0, value) < 0)
    sign = int(negative) if fmt.sign_bits else 0
    if isinstance(value, float) and math.isnan(value):
        return special_code("nan", sign, fmt)
    if fmt.sign_bits == 0 and (negative or value == 0):
        return special_code("nan", 0, fmt)  # E8M0 holds neither zero nor negatives
    if isinstance(value, float) and math.isinf(value):
        return _overflow_code(sign, fmt, overflow, from_inf=True)
    magnitude = abs(Fraction(value))
    if magnitude == 0:
        return 0 if fmt.specials == "fnuz" else join(sign, 0, 0, fmt)
    biased, mant, overflowed = round_magnitude(magnitude, fmt)
    if overflowed:
        return _overflow_code(sign, fmt, overflow, from_inf=False)
    if biased == 0 and mant == 0 and fmt.specials == "fnuz":
        return 0  # fnuz has no -0: the negative-zero code is its NaN
    return join(sign, biased, mant, fmt)


def rounds_past_max(value: Fraction | float, fmt: FloatFormat) -> bool:
    """True when a finite value rounds (nearest-even) beyond the largest finite value of ``fmt``."""
    if value == 0 or (isinstance(value, float) and not math.isfinite(value)):
        return False
    return round_magnitude(abs(Fraction(value)), fmt)[2]


def _overflow_code(sign: int, fmt: FloatFormat, policy: str, from_inf: bool) -> int:
    """Code for a value past the largest finite one (from_inf: the input itself was infinite)."""
    if fmt.has_inf and (policy == "standard" or from_inf):
        return special_code("inf", sign, fmt)
    if policy == "saturate" or not fmt.has_nan:
        return special_code("max", sign, fmt)
    return special_code("nan", sign, fmt)


def neighbours(code: int, fmt: FloatFormat) -> tuple[float | None, float | None, float]:
    """(next value down, next value up, ULP) around a finite code; ULP = gap to the next value away from zero.

    Past the largest finite value the neighbour is inf where the format has it, else None.
    """
    sign, _, _ = fields(code, fmt)
    mag_mask = 2 ** (fmt.exponent_bits + fmt.mantissa_bits) - 1
    mag, max_mag = code & mag_mask, join(0, *fmt.max_fields, fmt)
    away = float(magnitude_exact(mag + 1, fmt)) if mag < max_mag else (math.inf if fmt.has_inf else None)
    toward = float(magnitude_exact(mag - 1, fmt)) if mag > 0 else None
    if mag == 0 and fmt.has_subnormals and fmt.sign_bits:  # zero: the neighbours are +-min_subnormal
        toward = -fmt.min_subnormal  # (E8M0's code 0 is its smallest value, with nothing below)
    ulp_hi = magnitude_exact(mag + 1, fmt) if mag < max_mag else magnitude_exact(mag, fmt)
    ulp_lo = magnitude_exact(mag, fmt) if mag < max_mag else magnitude_exact(mag - 1, fmt)
    ulp = float(ulp_hi - ulp_lo)
    if sign and mag:
        return (None if away is None else -away), (None if toward is None else -toward), ulp
    return toward, away, ulp


def exact_decimal(value: Fraction) -> str:
    """Exact decimal expansion of a rational whose denominator divides a power of ten (every stored value)."""
    num, den = value.numerator, value.denominator
    twos = (den & -den).bit_length() - 1
    fives, rest = 0, den >> twos
    while rest % 5 == 0:
        rest, fives = rest // 5, fives + 1
    if rest != 1:
        raise ValueError(f"{value} has no finite decimal expansion")
    places = max(twos, fives)
    scaled = abs(num) * 10**places // den
    whole, frac = divmod(scaled, 10**places)
    text = f"{whole}.{frac:0{places}d}".rstrip("0").rstrip(".") if places else str(whole)
    return ("-" if num < 0 else "") + text
