"""Any input to explain() comes back within 50 ms, as a result or a ValueError, and the result is still exact.

Property-based (hypothesis) over strings, ints of any size, floats and bit patterns, for every format. The
oracles do not use lorakit's encoder: float formats are checked against a brute-force nearest-value search
over the codes that ml_dtypes/numpy decode; block formats against the levels bracketing x / absmax (and
against bitsandbytes itself in the slow test at the end).
"""

from __future__ import annotations

import bisect
import gc
import math
import time
from fractions import Fraction
from functools import cache

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lorakit.formats import (
    EXTRA_FORMATS,
    FORMATS,
    FloatFormat,
    codebooks,
    decode,
    encode,
    explain,
    explain_all,
    quantize_array,
)
from lorakit.formats.parse import MAX_INPUT_CHARS

ALL_FORMATS = [*FORMATS, *EXTRA_FORMATS]
FLOAT_FORMATS = [name for name in ALL_FORMATS if FORMATS.get(name, EXTRA_FORMATS.get(name)).is_float]
BLOCK_FORMATS = [name for name in ALL_FORMATS if name not in FLOAT_FORMATS]
BUDGET_S = 0.05
# No example database (nothing written into the checkout); no wall-clock deadline: the budget below is
# measured in CPU time, which a loaded machine does not inflate.
# The number of examples comes from the Hypothesis profile (tests/conftest.py: "ci" by default).
PROPERTY = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])



class Giant(int):
    """An int too big to print (Python refuses str() past 4300 digits): shown by its size in reports."""

    def __repr__(self) -> str:
        return f"Giant(<{self.bit_length()}-bit int>)"


# Ints too big for hypothesis to draw: built once here, so their cost is not charged to explain().
GIANT_INTS = [Giant(10**100_000), Giant(-(10**100_000) - 1), Giant(2 ** (10**7)), Giant(3**50_000)]

# ----- strategies -------------------------------------------------------------------------------------------
_digits = st.text("0123456789", min_size=1, max_size=40)
_exponents = st.one_of(st.integers(-60, 60), st.integers(-500, 500), st.integers(-(10**12), 10**12))


@st.composite
def decimal_texts(draw, exponents=_exponents) -> str:
    """Decimal strings as people type them: sign, digits, maybe a point, maybe an exponent (of any size)."""
    sign = draw(st.sampled_from(["", "-", "+"]))
    whole, frac = draw(_digits), draw(st.one_of(st.just(""), _digits))
    exp = draw(st.one_of(st.just(None), exponents))
    text = sign + whole + ("." + frac if frac else "")
    return text if exp is None else f"{text}{draw(st.sampled_from('eE'))}{exp}"


def pattern_texts(bits: int) -> st.SearchStrategy[str]:
    """A code of the format written as hex, as 0b..., or as bare 0/1 digits."""
    codes = st.integers(0, 2**bits - 1)
    return st.one_of(
        codes.map(lambda c: f"0x{c:X}"), codes.map(lambda c: f"0b{c:0{bits}b}"), codes.map(lambda c: f"{c:0{bits}b}")
    )


def any_input(bits: int) -> st.SearchStrategy[object]:
    return st.one_of(
        st.text(max_size=40),
        st.text("0123456789.eE+-/_xXbB inf", max_size=30),
        decimal_texts(),
        st.text("0123456789", min_size=MAX_INPUT_CHARS - 5, max_size=MAX_INPUT_CHARS + 5),  # long digit strings
        st.integers(),
        st.integers(-(2**12_000), 2**12_000),
        st.sampled_from(GIANT_INTS),
        st.floats(),
        st.floats(width=32),
        pattern_texts(bits),
        st.integers(0, 2**bits - 1).map(lambda c: f"0x{c:X}" + "0" * (c % 3)),  # patterns too wide, sometimes
        st.fractions(),
    )


# ----- helpers ---------------------------------------------------------------------------------------------
def timed(fn, *args, **kwargs):
    """fn(*args, **kwargs) or the ValueError it raised; fails when it took more than BUDGET_S of CPU time.

    Any other exception (OverflowError, TypeError, ...) propagates and fails the test. The collector is
    paused: a full collection of the whole test process is not explain()'s cost.
    """
    gc.disable()
    start = time.thread_time()
    try:
        result = fn(*args, **kwargs)
    except ValueError as err:
        result = err
    finally:
        spent = time.thread_time() - start
        gc.enable()
    shown = repr(args[0])[:80]
    assert spent < BUDGET_S, f"{fn.__name__}({shown}, {args[1:]}, {kwargs}) took {spent * 1e3:.1f} ms"
    return result


def _fmt(name: str) -> FloatFormat:
    return FORMATS.get(name) or EXTRA_FORMATS[name]


@pytest.fixture(scope="module", autouse=True)
def _warm_up():
    """numpy's first searchsorted and the codebook tables cost tens of ms once per process, not per call."""
    for name in ALL_FORMATS:
        explain("0.3", name)


# ----- the oracle for float formats ------------------------------------------------------------------------
@cache
def _oracle_values(name: str) -> tuple[int, object]:
    """(largest finite magnitude code, value_of(code) -> Fraction) from numpy/ml_dtypes' own decoding."""
    fmt = _fmt(name)
    if name == "tf32":  # an FP32 whose low 13 mantissa bits are zero
        return 2**18 - 1 - 2**10, lambda c: Fraction(float(np.array([c << 13], np.uint32).view(np.float32)[0]))
    dtype = np.dtype(fmt.dtype_name) if fmt.dtype_name in ("float32", "float16") else np.dtype(
        getattr(ml_dtypes, fmt.dtype_name)
    )
    store = {1: np.uint8, 2: np.uint16, 4: np.uint32}[dtype.itemsize]
    finfo = ml_dtypes.finfo(dtype)
    max_code = int(np.array([finfo.max], dtype).view(store)[0])

    def value_of(code: int) -> Fraction:
        return Fraction(float(np.array([code], store).view(dtype).astype(np.float64)[0]))

    return max_code, value_of


def oracle_float(x: Fraction, negative: bool, name: str, policy: str) -> tuple[str, float]:
    """('value', v) or ('overflow', 0) or ('nan', 0): the nearest representable value, ties to the even code."""
    fmt = _fmt(name)
    max_code, value_of = _oracle_values(name)
    if fmt.sign_bits == 0 and (negative or x == 0):
        return "nan", 0.0
    keys = range(max_code + 1)
    k = bisect.bisect_right(keys, abs(x), key=value_of) - 1  # the largest code whose value is <= |x|
    if k < 0:  # below the smallest value of a format without zero (E8M0): the smallest is the nearest
        chosen = 0
    elif k == max_code and value_of(k) == abs(x):
        chosen = k
    else:
        low = value_of(k)
        high = value_of(k + 1) if k < max_code else 2 * value_of(max_code) - value_of(max_code - 1)
        below, above = abs(x) - low, high - abs(x)
        # Ties go to the even significand: the even code, or always up where there is no mantissa (E8M0).
        even_low = fmt.mantissa_bits > 0 and k % 2 == 0
        chosen = k if below < above or (below == above and even_low) else k + 1
    if chosen > max_code:
        return "overflow", 0.0
    value = float(value_of(chosen))
    return "value", -value if negative else value


def check_float(e, x: Fraction, negative: bool, name: str, policy: str) -> None:
    fmt = _fmt(name)
    kind, want = oracle_float(x, negative, name, policy)
    if kind == "nan":
        assert e.value_class == "nan"
    elif kind == "overflow":
        sign = -1.0 if negative else 1.0
        if policy == "saturate" or (not fmt.has_inf and not fmt.has_nan):
            assert e.stored == sign * fmt.max
        else:
            assert e.value_class == ("inf" if fmt.has_inf else "nan") and e.overflowed
            assert e.value_class == "nan" or e.stored == sign * math.inf
        assert "overflow" in e.note
    else:
        assert e.stored == want, (e.input_text, name, e.stored, want)
        if want == 0 and x != 0:
            assert e.flushed_to_zero and "underflow" in e.note
        if fmt.specials != "fnuz" and want == 0:
            assert math.copysign(1, e.stored) == (-1 if negative else 1)  # the sign of a flushed value is kept


# ----- every input answers in time ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL_FORMATS)
@PROPERTY
@given(data=st.data())
def test_every_input_answers_within_50_ms(name, data):
    fmt = _fmt(name)
    value = data.draw(any_input(fmt.bits), label="value")
    policy = data.draw(st.sampled_from(["standard", "saturate"]), label="overflow")
    absmax = data.draw(st.one_of(st.just(1.0), st.floats(min_value=1e-38, max_value=1e38)), label="absmax")
    e = timed(explain, value, name, overflow=policy, absmax=absmax)
    if isinstance(e, ValueError):
        assert str(e).startswith(f"{name}: ") or str(e).startswith("absmax: "), str(e)
        return
    assert len(e.bits) == fmt.bits and 0 <= e.code < 2**fmt.bits and e.hex.startswith("0x")
    roundtrip = decode(e.code, name, absmax=e.absmax or 1.0)
    assert roundtrip == e.stored or (math.isnan(roundtrip) and math.isnan(e.stored))
    code = timed(encode, value, name, overflow=policy, absmax=absmax)
    assert code == e.code


@PROPERTY
@given(value=st.one_of(decimal_texts(), st.sampled_from(GIANT_INTS), st.text(max_size=20)))
@example(value="1e-99999999")
@example(value="1e99999999")
def test_explain_all_stays_fast(value):
    """The FloatExplorer's compare table: every format at once."""
    start = time.thread_time()
    rows = explain_all(value)
    assert time.thread_time() - start < BUDGET_S * len(rows)
    assert list(rows) == list(FORMATS)


@pytest.mark.parametrize("name", ALL_FORMATS)
@PROPERTY
@given(absmax=st.one_of(st.floats(), st.integers(-5, 5)))
def test_any_block_absmax_answers_or_names_the_field(name, absmax):
    e = timed(explain, "0.5", name, absmax=absmax)
    if isinstance(e, ValueError):
        assert str(e).startswith("absmax: ")


# ----- and the answers are exact ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", FLOAT_FORMATS)
@PROPERTY
@given(x=st.floats(allow_nan=False, allow_infinity=False), policy=st.sampled_from(["standard", "saturate"]))
def test_floats_round_to_the_nearest_value(name, x, policy):
    e = timed(explain, x, name, overflow=policy)
    if isinstance(e, ValueError):
        pytest.fail(str(e))
    check_float(e, Fraction(x), math.copysign(1, x) < 0, name, policy)


@pytest.mark.parametrize("name", FLOAT_FORMATS)
@PROPERTY
@given(text=decimal_texts(exponents=st.integers(-60, 60)), policy=st.sampled_from(["standard", "saturate"]))
def test_decimal_strings_round_to_the_nearest_value(name, text, policy):
    e = timed(explain, text, name, overflow=policy)
    if isinstance(e, ValueError):
        pytest.fail(str(e))
    x = Fraction(text)
    check_float(e, abs(x), text.startswith("-"), name, policy)


@pytest.mark.parametrize("name", FLOAT_FORMATS)
@PROPERTY
@given(
    mantissa=st.integers(1, 10**30),
    exp=st.one_of(st.integers(400, 10**15), st.integers(-(10**15), -400)),
    negative=st.booleans(),
    policy=st.sampled_from(["standard", "saturate"]),
)
@example(mantissa=1, exp=-99_999_999, negative=False, policy="standard")
@example(mantissa=1, exp=400, negative=False, policy="standard")
def test_extreme_exponents_round_like_a_cast(name, mantissa, exp, negative, policy):
    # Rounding is monotonic: every magnitude above 1e400 rounds as 1e400 does (past every format's max), and
    # every one below 1e-400 as 1e-400 does (to zero, or E8M0's smallest value). The oracle needs only those.
    text = f"{'-' if negative else ''}{mantissa}e{exp}"
    e = timed(explain, text, name, overflow=policy)
    if isinstance(e, ValueError):
        pytest.fail(str(e))
    check_float(e, Fraction(10) ** (400 if exp > 0 else -400), negative, name, policy)
    if exp > 0 and not (policy == "saturate" or e.value_class == "nan"):
        assert e.abs_error == math.inf
    if exp < 0 and e.stored == 0:
        assert (e.abs_error, e.rel_error) == (0.0, 1.0)


@pytest.mark.parametrize("name", FLOAT_FORMATS)
@PROPERTY
@given(n=st.one_of(st.integers(), st.integers(-(2**2000), 2**2000), st.sampled_from(GIANT_INTS)))
def test_ints_of_any_size_round_to_the_nearest_value(name, n):
    e = timed(explain, n, name)
    if isinstance(e, ValueError):
        pytest.fail(str(e))
    x = abs(Fraction(n)) if n.bit_length() <= 20_000 else Fraction(10) ** 400  # giants: as in the test above
    check_float(e, x, n < 0, name, "standard")


@pytest.mark.parametrize("name", FLOAT_FORMATS)
@PROPERTY
@given(data=st.data())
def test_bit_patterns_decode_like_ml_dtypes(name, data):
    fmt = _fmt(name)
    text = data.draw(pattern_texts(fmt.bits))
    e = timed(explain, text, name)
    if isinstance(e, ValueError):
        pytest.fail(str(e))
    code = int(text[2:], 16) if text.startswith("0x") else int(text.removeprefix("0b"), 2)
    assert e.code == code
    max_code, value_of = _oracle_values(name)
    sign_bit = 1 << (fmt.bits - 1) if fmt.sign_bits else 0
    magnitude = code & ~sign_bit
    if magnitude > max_code or (fmt.specials == "fnuz" and code == sign_bit):
        assert e.value_class in ("inf", "nan")
    else:
        want = float(value_of(magnitude))
        assert e.stored == (-want if code & sign_bit else want) and e.abs_error == 0.0


def _levels_bracketing(q: Fraction, name: str) -> list[float]:
    levels = sorted(set(codebooks.level_values(np.arange(2 ** _fmt(name).bits), _fmt(name)).tolist()))
    if _fmt(name).kind == "int":
        levels = [v for v in levels if v >= -levels[-1]]  # the most negative code is never produced
    below = [v for v in levels if Fraction(v) <= q]
    above = [v for v in levels if Fraction(v) >= q]
    return [below[-1], above[0]]


def _exact(x: float | str) -> Fraction | None:
    """The exact value of a float or decimal string; None for a string whose exponent is extreme."""
    if isinstance(x, str) and "e" in x.lower() and abs(int(x.lower().split("e")[1])) > 400:
        return None
    return Fraction(x)


@pytest.mark.parametrize("name", BLOCK_FORMATS)
@PROPERTY
@given(
    x=st.one_of(st.floats(allow_nan=False, allow_infinity=False), decimal_texts()),
    absmax=st.one_of(st.just(1.0), st.floats(min_value=1e-30, max_value=1e30)),
)
def test_block_formats_store_a_level_next_to_x_over_absmax(name, x, absmax):
    e = timed(explain, x, name, absmax=absmax)
    if isinstance(e, ValueError):
        pytest.fail(str(e))
    exact = _exact(x)
    if exact is None:  # extreme exponents: float32(x) is 0 or inf, so the zero level or the clamp
        assert e.stored == 0 or e.overflowed
        return
    scale = float(np.float32(absmax))
    q = min(max(exact / Fraction(scale), Fraction(-1)), Fraction(1))
    level = e.stored / scale  # float32 level * absmax, so equal to the level up to float32 rounding
    low, high = _levels_bracketing(q, name)
    assert min(abs(level - low), abs(level - high)) <= 1e-6 * max(abs(low), abs(high)), (q, level, low, high)
    assert e.overflowed == (abs(exact) > Fraction(scale))


# ----- the cases named in the issue ------------------------------------------------------------------------
def test_named_extreme_inputs():
    tiny = timed(explain, "1e-99999999", "fp32")
    assert tiny.value_class == "zero" and tiny.note.startswith("underflow") and tiny.rel_error == 1.0
    huge = timed(explain, "1e400", "fp32")
    assert huge.value_class == "inf" and huge.overflowed and huge.note.startswith("overflow")
    assert timed(explain, "1e-400", "fp32").note.startswith("underflow")
    assert timed(explain, "9" * 400, "fp32").value_class == "inf"
    saturated = timed(explain, "-1e400", "fp32", overflow="saturate")
    assert saturated.stored == -FORMATS["fp32"].max and saturated.abs_error == math.inf and saturated.rel_error == 1.0
    assert timed(explain, "1e400", "nf4").stored == 1.0  # as in a float32 tensor: inf there, clamped to absmax
    too_long = timed(explain, "1" * (MAX_INPUT_CHARS + 1), "fp16")
    assert isinstance(too_long, ValueError) and f"input of {MAX_INPUT_CHARS + 1} characters" in str(too_long)
    assert len(str(too_long)) < 400  # the message quotes the input shortened


def test_a_nan_result_has_a_nan_error_not_inf():
    e = explain(500, "fp8_e4m3fn")  # past 448: NaN in the standard policy
    assert e.value_class == "nan" and math.isnan(e.abs_error) and math.isnan(e.rel_error)
    assert explain(65520, "fp16").abs_error == math.inf  # stored as inf: the error is inf


def test_an_8_bit_pattern_has_the_right_article():
    with pytest.raises(ValueError, match="or an 8-bit pattern"):
        explain("abc", "fp8_e4m3fn")
    with pytest.raises(ValueError, match="or a 16-bit pattern"):
        explain("abc", "fp16")


def test_bnb_fp4_zero_keeps_the_values_sign_as_on_a_gpu_and_the_note_says_so():
    # bitsandbytes' CUDA kernel (dQuantizeFP4): sign = x < 0 ? 0b1000 : 0, then the magnitude's code; dequantized
    # as lut[code & 7] * sign, so a tiny negative value comes back as -0 and a tiny positive one as +0.
    positive, negative = explain("0.001", "bnb_fp4"), explain("-0.001", "bnb_fp4")
    assert positive.code == 0b0000 and math.copysign(1, positive.stored) == 1  # tiny positive -> +0
    assert negative.code == 0b1000 and math.copysign(1, negative.stored) == -1  # tiny negative -> -0
    assert "+0 (code 0b0000)" in positive.note and "−0 (code 0b1000)" in negative.note
    assert "CUDA kernel" in positive.note and "CPU code" in positive.note
    quantized, _ = quantize_array(np.array([1.0, 1e-3, -1e-3, 0.0, -0.0], np.float32), "bnb_fp4")
    assert np.array_equal(np.signbit(quantized), [False, False, True, False, False])  # the same rule for arrays


def _unpack_codes(packed, n: int) -> np.ndarray:
    """bitsandbytes' 4-bit codes, two per byte, high nibble first."""
    raw = packed.reshape(-1).view(-1).numpy().view(np.uint8)
    return np.stack([raw >> 4, raw & 0xF], axis=1).reshape(-1)[:n]


def _bnb_zero_path(functional, torch) -> tuple[int, str]:
    """This machine's bitsandbytes path for bnb-FP4 zeros: (code of a tiny positive value, how code 0b1000 reads).

    Its CPU kernels differ by CPU (DESIGN.md). Seen: the CPU quantizer picks a level by position in the sorted
    table (torch.bucketize), which puts a tiny positive value on code 0b1000 (the GPU kernel: 0b0000); the kernel
    that reads 0b1000 back gives −0 on AVX2-only CPUs and +0 with AVX512 (its table has +0 there).
    """
    probe = torch.tensor([1.0, 2.0**-20, -(2.0**-20)] + [0.5] * 61)  # absmax 1: +tiny and -tiny round to zero
    packed, state = functional.quantize_4bit(probe, blocksize=64, quant_type="fp4")
    positive, negative = _unpack_codes(packed, 3)[1:].tolist()
    assert {positive, negative} == {0b0000, 0b1000}, (positive, negative)  # one zero code each
    back = functional.dequantize_4bit(packed, state).numpy().reshape(-1)[1:3]
    eight = back[0] if positive == 0b1000 else back[1]
    return positive, "−0" if np.signbit(eight) else "+0"


@pytest.mark.slow  # imports torch and bitsandbytes
def test_tiny_and_huge_values_match_bitsandbytes_on_this_machine_signed_zeros_included():
    """Every value bit for bit, signs of non-zero values included, on every CPU; the zeros as this CPU's path.

    lorakit teaches the GPU's zero (the value's own sign). bitsandbytes' CPU code puts a tiny positive value on
    code 0b1000 and a tiny negative one on 0b0000; the kernel that reads them back depends on the CPU, so the
    test finds the path this machine takes (``_bnb_zero_path``) and checks bitsandbytes' zeros against it.
    """
    import torch
    from bitsandbytes import functional

    positive_code, eight_reads = _bnb_zero_path(functional, torch)
    tiny = [1e-40, -1e-40, 1e-30, -1e-30, 1e-8, -1e-8, 1e-3, -1e-3, 0.0, -0.0, 2.0**-149, -(2.0**-149)]
    fill = 64 - 1 - len(tiny)
    blocks = [  # absmax 1: tiny values land on a zero level; absmax 3e38: almost everything does
        np.array([1.0, *tiny, *np.linspace(-1, 1, fill)], dtype=np.float32),
        np.array([3.0e38, *tiny, *np.linspace(-3e38, 3e38, fill)], dtype=np.float32),
    ]
    x = np.concatenate(blocks)
    # both libraries pick a code from x * (1 / absmax) in float32, where the tiniest values underflow to ±0
    scaled = np.concatenate([block * (np.float32(1) / block[0]) for block in blocks])
    for quant_type, name in (("nf4", "nf4"), ("fp4", "bnb_fp4")):
        packed, state = functional.quantize_4bit(torch.from_numpy(x), blocksize=64, quant_type=quant_type)
        theirs = functional.dequantize_4bit(packed, state).numpy().reshape(-1)
        ours = np.array(
            [explain(float(v), name, absmax=float(block[0])).stored for block in blocks for v in block], np.float32
        )
        assert np.array_equal(ours, theirs), name  # equal values (+0 == -0)
        nonzero = ours != 0
        assert np.array_equal(np.signbit(ours[nonzero]), np.signbit(theirs[nonzero])), name
        zero = ~nonzero
        if name == "nf4":  # one zero level: +0 everywhere
            assert not np.signbit(ours[zero]).any() and not np.signbit(theirs[zero]).any()
            continue
        assert np.array_equal(np.signbit(ours[zero]), scaled[zero] < 0)  # the GPU's rule: the value's sign
        codes = _unpack_codes(packed, x.size)[zero]
        # bitsandbytes' zero codes follow this machine's rule for every value: code 0b1000 for positive values
        # where the probe put a tiny positive value there (the CPU's sorted table), for negative ones otherwise
        on_eight = scaled[zero] > 0 if positive_code == 0b1000 else scaled[zero] < 0
        assert np.array_equal(codes == 0b1000, on_eight), f"zero codes, tiny positive -> {positive_code:#06b}"
        expected_sign = on_eight if eight_reads == "−0" else np.zeros(on_eight.shape, bool)
        assert np.array_equal(np.signbit(theirs[zero]), expected_sign), f"code 0b1000 reads back as {eight_reads}"
