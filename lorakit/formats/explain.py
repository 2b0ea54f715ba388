"""One value in one format, explained: the record the FloatExplorer renders, plus encode/decode for every kind."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from . import codebooks, codec
from .catalog import get_format
from .parse import Parsed, parse
from .spec import FloatFormat

MINUS = "\u2212"  # typographic minus, as in (−1)^s


@dataclass(frozen=True)
class Explanation:
    """Everything about how ``fmt`` stores one input; errors are stored − input, exact then rounded to float."""

    format: str
    input_text: str
    input_value: float  # the input as a float (for a bit pattern: the value it decodes to)
    code: int
    bits: str  # most significant bit first, exactly ``width`` characters
    hex: str
    field_bits: dict[str, str]  # field name -> its bits, in diagram order
    value_class: str  # zero / subnormal / normal / inf / nan; block formats: zero / level
    stored: float
    stored_exact: str  # exact decimal of the stored value ('inf', '-inf', 'nan' for specials)
    abs_error: float | None  # None when the input is inf/nan or was a bit pattern of a NaN
    rel_error: float | None  # None also when the input is 0
    next_down: float | None  # next representable value below (None: there is none)
    next_up: float | None
    ulp: float | None  # gap to the next value away from zero
    sign: int | None
    biased_exponent: int | None
    unbiased_exponent: int | None
    mantissa: int | None
    level_index: int | None  # block formats: the code; absmax: the block scale used
    absmax: float | None
    formula: str
    overflow: str  # policy used
    overflowed: bool
    flushed_to_zero: bool
    note: str

    @property
    def width(self) -> int:
        """Bits per element."""
        return len(self.bits)


def _check_absmax(absmax: float, fmt: FloatFormat) -> np.float32:
    """The block scale as float32, as bitsandbytes stores it; it must be a normal float32 number."""
    tiny, top = np.finfo(np.float32).tiny, np.finfo(np.float32).max
    with np.errstate(over="ignore"):
        scale = np.float32(absmax)
    if not (math.isfinite(absmax) and absmax > 0 and tiny <= scale <= top):
        raise ValueError(
            f"absmax: {absmax!r} is not allowed for {fmt.name}; use a number from {tiny:.3g} to {top:.3g} "
            "(a block's largest |x|, kept in float32)"
        )
    return scale


def encode(value: object, fmt: str | FloatFormat, overflow: str = "standard", absmax: float = 1.0) -> int:
    """Code storing ``value`` (number, numeric string or bit pattern) in ``fmt``; block formats use ``absmax``."""
    fmt = get_format(fmt)
    parsed = parse(value, fmt)
    if parsed.is_bits:
        return parsed.code
    if fmt.is_float:
        if not fmt.has_nan and isinstance(parsed.value, float) and math.isnan(parsed.value):
            raise ValueError(f"{fmt.name}: nan is not representable (the format has no NaN); type a number")
        return codec.encode_number(parsed.value, fmt, overflow)
    return _encode_block(parsed, fmt, _check_absmax(absmax, fmt))


def _encode_block(parsed: Parsed, fmt: FloatFormat, scale: np.float32) -> int:
    if isinstance(parsed.value, float) and not math.isfinite(parsed.value):
        raise ValueError(f"{fmt.name}: {parsed.text!r} is not finite; block formats store finite numbers only")
    # As in a float32 tensor: a finite value past float32's range is inf there, and clamps to the top level.
    with np.errstate(over="ignore"):
        x32 = np.array([_as_float(parsed.value)], dtype=np.float32)
    scaled = codebooks.scale_to_unit(x32, scale)
    return int(codebooks.codes_for_scaled(scaled, fmt)[0])


def decode(code: int | str, fmt: str | FloatFormat, absmax: float = 1.0) -> float:
    """Value stored by a code (an int or a '0x..'/'0b..' pattern); block formats multiply by ``absmax``."""
    fmt = get_format(fmt)
    code = _code_of(code, fmt)
    if fmt.is_float:
        return codec.decode(code, fmt)
    level = codebooks.level_values(np.array([code]), fmt)[0]
    return float(level * _check_absmax(absmax, fmt))


def _code_of(code: int | str, fmt: FloatFormat) -> int:
    if isinstance(code, str):
        parsed = parse(code, fmt)
        if not parsed.is_bits:
            raise ValueError(f"{fmt.name}: decode needs a bit pattern (0x.. or 0b..), got {code!r}")
        return parsed.code
    if not 0 <= int(code) < 2**fmt.bits:
        raise ValueError(f"{fmt.name}: code {code} is outside 0..{2**fmt.bits - 1}")
    return int(code)


def explain(
    value: object, fmt: str | FloatFormat, overflow: str = "standard", absmax: float = 1.0
) -> Explanation:
    """Explain how ``fmt`` stores ``value`` (number, numeric/fraction string, or a hex/binary bit pattern)."""
    fmt = get_format(fmt)
    parsed = parse(value, fmt)
    if fmt.is_float:
        return _explain_float(parsed, fmt, overflow)
    return _explain_block(parsed, fmt, _check_absmax(absmax, fmt), overflow)


# ----- shared pieces -------------------------------------------------------------------------------------
def _as_float(x: Fraction | float) -> float:
    """x rounded to a float; +-inf past the float range (float(Fraction) raises OverflowError there)."""
    try:
        return float(x)
    except OverflowError:
        return math.inf if x > 0 else -math.inf


def _bit_views(code: int, fmt: FloatFormat) -> tuple[str, str, dict[str, str]]:
    bits = format(code, f"0{fmt.bits}b")
    hex_digits = (fmt.bits + 3) // 4
    split, start = {}, 0
    for name, width in fmt.field_widths.items():
        split[name], start = bits[start : start + width], start + width
    return bits, f"0x{code:0{hex_digits}X}", split


def _errors(stored: Fraction | None, parsed: Parsed, cls: str = "") -> tuple[float | None, float | None]:
    """(|stored − input|, that / |input|) exactly, then rounded; a finite input stored as inf has error inf,
    one stored as NaN has error NaN (NaN − x is NaN: there is no distance to speak of)."""
    value = parsed.value
    if parsed.is_bits or value is None or (isinstance(value, float) and not math.isfinite(value)):
        return (0.0, 0.0) if parsed.is_bits and stored is not None else (None, None)
    if stored is None:
        return (math.nan, math.nan) if cls == "nan" else (math.inf, math.inf)
    err = abs(stored - Fraction(value))
    rel = _as_float(err / abs(Fraction(value))) if value != 0 else None
    return _as_float(err), rel


def _exact_text(exact: Fraction | None, stored: float) -> str:
    """Exact decimal of a stored value; '-0', 'inf', '-inf', 'nan' where a Fraction cannot say it."""
    if exact is None or stored == 0:
        return repr(stored).replace(".0", "")
    return codec.exact_decimal(exact)


def _fmt_num(x: float) -> str:
    return repr(x).replace("-", MINUS) if not math.isnan(x) else "nan"


# ----- floats ----------------------------------------------------------------------------------------------
def _explain_float(parsed: Parsed, fmt: FloatFormat, overflow: str) -> Explanation:
    if parsed.is_bits:
        code = parsed.code
    else:
        if not fmt.has_nan and isinstance(parsed.value, float) and math.isnan(parsed.value):
            raise ValueError(f"{fmt.name}: nan is not representable (the format has no NaN); type a number")
        code = codec.encode_number(parsed.value, fmt, overflow)
    cls = codec.classify(code, fmt)
    finite = cls not in ("inf", "nan")
    stored = codec.decode(code, fmt)
    exact = codec.decode_exact(code, fmt) if finite else None
    sign, biased, mant = codec.fields(code, fmt)
    unbiased = (fmt.min_exponent if biased == 0 and fmt.has_subnormals else biased - fmt.bias) if finite else None
    down, up, ulp = codec.neighbours(code, fmt) if finite else (None, None, None)
    abs_err, rel_err = _errors(exact, parsed, cls)
    input_value = stored if parsed.is_bits else _as_float(parsed.value)
    bits, hex_text, split = _bit_views(code, fmt)
    overflowed = not parsed.is_bits and codec.rounds_past_max(parsed.value, fmt)
    flushed = cls == "zero" and not parsed.is_bits and isinstance(parsed.value, Fraction) and parsed.value != 0
    return Explanation(
        format=fmt.name, input_text=parsed.text, input_value=input_value, code=code, bits=bits, hex=hex_text,
        field_bits=split, value_class=cls, stored=stored,
        stored_exact=_exact_text(exact, stored),
        abs_error=abs_err, rel_error=rel_err, next_down=down, next_up=up, ulp=ulp,
        sign=sign if fmt.sign_bits else None, biased_exponent=biased, unbiased_exponent=unbiased,
        mantissa=mant if fmt.mantissa_bits else None, level_index=None, absmax=None,
        formula=_float_formula(cls, sign, biased, mant, fmt, stored), overflow=overflow,
        overflowed=overflowed, flushed_to_zero=flushed,
        note=_float_note(cls, fmt, overflow, overflowed, flushed, rel_err)
        or _tie_note(parsed, exact, up, down, ulp),
    )  # fmt: skip


def _tie_note(
    parsed: Parsed, exact: Fraction | None, up: float | None, down: float | None, ulp: float | None
) -> str:
    """'tie: ...' when the input lay exactly halfway between the stored value and its neighbour."""
    if parsed.is_bits or exact is None or not isinstance(parsed.value, Fraction) or ulp is None:
        return ""
    offset = parsed.value - exact
    if offset == 0:
        return ""
    partner = up if offset > 0 else down
    if partner is not None and math.isfinite(partner):
        other = Fraction(partner)
    else:  # past the largest finite value the other candidate is one more step, which the format cannot hold
        other = exact + (Fraction(ulp) if offset > 0 else -Fraction(ulp))
    if 2 * abs(offset) != abs(other - exact):
        return ""
    between = f"{_fmt_num(float(exact))} and {_fmt_num(float(other))}"
    return f"tie: exactly halfway between {between}; rounded to the even one"


def _float_formula(cls: str, sign: int, biased: int, mant: int, fmt: FloatFormat, stored: float) -> str:
    """The value formula with this code's numbers filled in, e.g. (−1)^0 × 2^(15−15) × (1 + 0/1024) = 1.0."""
    sign_part = f"({MINUS}1)^{sign} × " if fmt.sign_bits else ""
    if cls == "nan":
        return f"NaN: {_nan_rule(fmt)}"
    if cls == "inf":
        return f"{sign_part}∞ (exponent all ones, mantissa 0)"
    subnormal = biased == 0 and fmt.has_subnormals
    exp_text = f"2^(1{MINUS}{fmt.bias})" if subnormal else f"2^({biased}{MINUS}{fmt.bias})"
    mant_text = ""
    if fmt.mantissa_bits:
        mant_text = f" × ({0 if subnormal else 1} + {mant}/{2**fmt.mantissa_bits})"
    return f"{sign_part}{exp_text}{mant_text} = {_fmt_num(stored)}"


def _nan_rule(fmt: FloatFormat) -> str:
    return {
        "ieee": "exponent all ones, mantissa ≠ 0",
        "fn": "every bit after the sign set (the only NaN; no inf)",
        "fnuz": "the negative-zero pattern 0x80… (the only NaN; no inf, no −0)",
    }[fmt.specials]


def _float_note(cls: str, fmt: FloatFormat, overflow: str, overflowed: bool, flushed: bool, rel: float | None) -> str:
    if overflowed:
        where = "inf" if cls == "inf" else ("NaN" if cls == "nan" else f"±max = {_fmt_num(fmt.max)}")
        return f"overflow: past {fmt.name}'s largest finite value {_fmt_num(fmt.max)}, stored as {where} ({overflow})"
    if flushed:
        return f"underflow: smaller than half of {fmt.name}'s smallest value {fmt.min_subnormal!r}, flushed to zero"
    if cls == "subnormal":
        return "subnormal: below the smallest normal number, fewer significant bits"
    if rel == 0.0:
        return "exact: stored without rounding"
    return ""


# ----- block formats (codebook / int) -----------------------------------------------------------------------
def _explain_block(parsed: Parsed, fmt: FloatFormat, scale: np.float32, overflow: str) -> Explanation:
    code = parsed.code if parsed.is_bits else _encode_block(parsed, fmt, scale)
    with np.errstate(over="ignore"):  # INT8's unused code -128/127 times absmax near float32's max: inf
        values = codebooks.level_values(np.arange(2**fmt.bits), fmt) * scale  # float32, as dequant gives
    stored32 = values[code]
    stored = float(stored32)
    usable = np.unique(np.delete(values, 2 ** (fmt.bits - 1)) if fmt.kind == "int" else values)
    below, above = np.searchsorted(usable, stored32, "left"), np.searchsorted(usable, stored32, "right")
    down = float(usable[below - 1]) if below > 0 else None
    up = float(usable[above]) if above < usable.size else None
    gaps = [abs(n - stored) for n in (down, up) if n is not None and abs(n) > abs(stored)]
    ulp = min(gaps) if gaps else abs(stored - (down if up is None else up))
    abs_err, rel_err = _errors(Fraction(stored), parsed)
    input_value = stored if parsed.is_bits else _as_float(parsed.value)
    bits, hex_text, split = _bit_views(code, fmt)
    clamped = not parsed.is_bits and abs(parsed.value) > Fraction(float(scale))
    flushed = stored == 0 and not parsed.is_bits and parsed.value != 0
    return Explanation(
        format=fmt.name, input_text=parsed.text, input_value=input_value, code=code, bits=bits, hex=hex_text,
        field_bits=split, value_class="zero" if stored == 0 else "level", stored=stored,
        stored_exact=codec.exact_decimal(Fraction(stored)), abs_error=abs_err, rel_error=rel_err,
        next_down=down, next_up=up, ulp=ulp, sign=int(bits[0]) if fmt.kind == "int" else None,
        biased_exponent=None, unbiased_exponent=None, mantissa=None, level_index=code, absmax=float(scale),
        formula=_block_formula(code, fmt, float(scale), stored), overflow=overflow, overflowed=clamped,
        flushed_to_zero=flushed, note=_block_note(fmt, code, float(scale), clamped, flushed),
    )  # fmt: skip


def _block_formula(code: int, fmt: FloatFormat, scale: float, stored: float) -> str:
    level = float(codebooks.level_values(np.array([code]), fmt)[0])
    if fmt.kind == "int":
        qmax = 2 ** (fmt.bits - 1) - 1
        q = code - 2**fmt.bits if code > qmax else code
        return f"absmax × q/{qmax} = {_fmt_num(scale)} × {str(q).replace('-', MINUS)}/{qmax} = {_fmt_num(stored)}"
    return f"absmax × {fmt.name}[{code}] = {_fmt_num(scale)} × {_fmt_num(level)} = {_fmt_num(stored)}"


def _block_note(fmt: FloatFormat, code: int, scale: float, clamped: bool, flushed: bool) -> str:
    if clamped:
        return f"clamped: |value| > block absmax {scale!r}; in a real block absmax is the largest |x|, so it fits"
    zeros = codebooks.signed_zero_codes(fmt)
    if flushed and zeros is not None:  # bitsandbytes' FP4: its table holds +0 and -0
        zero = f"−0 (code 0b{zeros[1]:04b})" if code == zeros[1] else f"+0 (code 0b{zeros[0]:04b})"
        return (
            f"rounded to zero, stored as {zero}: a zero keeps the value's sign, as bitsandbytes' CUDA kernel "
            f"stores it. Its CPU code differs: it stores a tiny positive value as code 0b{zeros[1]:04b}, read back "
            "as −0 or +0 depending on the CPU's kernel"
        )
    if flushed:
        return f"rounded to the zero level of {fmt.name} at this absmax"
    return f"level {fmt.name} × block absmax {scale!r}"
