"""The exact codec against ml_dtypes/numpy: every code decoded and classified, encoding on ties, edges, randoms."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

from lorakit.formats import EXTRA_FORMATS, FORMATS, codec, get_format
from lorakit.formats.arrays import _round_tf32

ORACLE_FORMATS = [f.name for f in [*FORMATS.values(), *EXTRA_FORMATS.values()] if f.dtype_name and f.bits <= 16]


def _dtype(fmt):
    return np.dtype(fmt.dtype_name) if fmt.dtype_name == "float16" else np.dtype(getattr(ml_dtypes, fmt.dtype_name))


def _all_values(fmt) -> np.ndarray:
    """Every code of the format decoded by ml_dtypes/numpy, as float64."""
    store = np.uint16 if fmt.bits > 8 else np.uint8
    with np.errstate(invalid="ignore"):  # NaN codes
        return np.arange(2**fmt.bits, dtype=store).view(_dtype(fmt)).astype(np.float64)


def _oracle_class(values: np.ndarray, fmt) -> np.ndarray:
    tiny = float(ml_dtypes.finfo(_dtype(fmt)).smallest_normal)
    out = np.full(values.shape, "normal", dtype=object)
    magnitude = np.abs(values)
    out[(magnitude < tiny) & (magnitude > 0)] = "subnormal"
    out[values == 0] = "zero"
    out[np.isinf(values)] = "inf"
    out[np.isnan(values)] = "nan"
    return out


@pytest.mark.parametrize("name", ORACLE_FORMATS)
def test_decode_every_code_matches_ml_dtypes(name):
    fmt = get_format(name)
    expected = _all_values(fmt)
    got = np.array([codec.decode(code, fmt) for code in range(2**fmt.bits)])
    assert np.array_equal(got, expected, equal_nan=True)
    assert np.array_equal(np.signbit(got), np.signbit(expected) & ~np.isnan(expected) | np.signbit(got) & np.isnan(got))


@pytest.mark.parametrize("name", ORACLE_FORMATS)
def test_classify_every_code_matches_ml_dtypes(name):
    fmt = get_format(name)
    expected = _oracle_class(_all_values(fmt), fmt)
    got = np.array([codec.classify(code, fmt) for code in range(2**fmt.bits)], dtype=object)
    mismatched = np.flatnonzero(got != expected)
    assert mismatched.size == 0, f"first mismatching code 0x{mismatched[0]:X}: {got[mismatched[0]]}"


def _encode_inputs(fmt, rng) -> np.ndarray:
    """Every finite value, every midpoint between neighbours (a tie), the midpoints nudged both ways, edges.

    All inputs are float32 numbers: ml_dtypes (like torch) casts a float64 through float32, rounding twice,
    while lorakit rounds the exact value once; on float32 inputs both must agree bit for bit.
    """
    values = _all_values(fmt)
    finite = np.unique(values[np.isfinite(values)])
    if fmt.bits > 8:  # 16-bit: the bottom and top 2048 values, all subnormals, and a random sample of the rest
        keep = np.zeros(finite.size, bool)
        keep[:2048], keep[-2048:] = True, True
        keep[rng.choice(finite.size, 6000, replace=False)] = True
        keep[np.abs(finite) < fmt.min_normal * 2] = True
        finite = finite[keep]
    mids = ((finite[:-1] + finite[1:]) / 2).astype(np.float32)  # exact: these formats have <= 10 mantissa bits
    nudged = np.concatenate([np.nextafter(mids, np.float32(-np.inf)), np.nextafter(mids, np.float32(np.inf))])
    edges = [0.0, -0.0, math.inf, -math.inf, 2 * fmt.max, -3 * fmt.max, fmt.max * (1 + fmt.eps / 2), 1e300]
    edges += [fmt.min_subnormal / 2, -fmt.min_subnormal / 2, fmt.min_subnormal * 0.75]
    randoms = rng.standard_normal(3000) * np.exp2(rng.uniform(-30, 30, 3000))
    with np.errstate(over="ignore"):
        return np.concatenate([finite, mids, nudged, edges, randoms]).astype(np.float32).astype(np.float64)


def _check_encode(fmt, inputs: np.ndarray, expected_codes: np.ndarray, expected_values: np.ndarray) -> None:
    for x, want_code, want_value in zip(inputs, expected_codes, expected_values, strict=True):
        got = codec.encode_number(float(x), fmt)
        if math.isnan(want_value):
            assert codec.classify(got, fmt) == "nan", f"{fmt.name}: {x!r} should be NaN"
        else:
            assert got == int(want_code), f"{fmt.name}: encode({x!r}) = 0x{got:X}, ml_dtypes 0x{int(want_code):X}"


@pytest.mark.parametrize("name", [n for n in ORACLE_FORMATS if n != "e8m0"])
def test_encode_matches_ml_dtypes_cast(name):
    fmt = get_format(name)
    inputs = _encode_inputs(fmt, np.random.default_rng(0))
    if fmt.has_nan:
        inputs = np.append(inputs, np.nan)
    with np.errstate(over="ignore", invalid="ignore"):
        cast = inputs.astype(_dtype(fmt))
    codes = cast.view(np.uint16 if fmt.bits > 8 else np.uint8)
    _check_encode(fmt, inputs, codes, cast.astype(np.float64))


def test_encode_rounds_exact_value_once_unlike_float32_route():
    # 1 + 2^-8 + 2^-40 lies just above the BF16 tie between 1 and 1 + 2^-7: the exact rounding is up.
    # ml_dtypes (and torch) round the float64 to float32 first, which lands on the tie, then tie to even: 1.0.
    x = 1 + 2**-8 + 2**-40
    assert codec.decode(codec.encode_number(x, FORMATS["bf16"]), FORMATS["bf16"]) == 1 + 2**-7
    assert float(np.array([x]).astype(ml_dtypes.bfloat16)[0]) == 1.0


def test_encode_e8m0_matches_ml_dtypes_in_its_range():
    # Below 2^-126 ml_dtypes 0.6 is irregular (1.4 * 2^-127 -> 2^-126, 1e-300 -> NaN); lorakit rounds such
    # values to the nearest representable value, 2^-127. Compare from 2^-126 up, past the top, and NaN.
    fmt = FORMATS["e8m0"]
    rng = np.random.default_rng(1)
    powers = np.exp2(np.arange(-126, 128, dtype=np.float64))
    inputs = np.concatenate([powers, powers * 1.5, powers * 1.4999, powers * 1.5001, np.exp2(rng.uniform(-126, 128, 500))])
    inputs = np.append(inputs, [np.nan, -1.0, 0.0, np.inf, 2.0**128])
    with np.errstate(over="ignore"):
        cast = inputs.astype(ml_dtypes.float8_e8m0fnu)
    _check_encode(fmt, inputs, cast.view(np.uint8), cast.astype(np.float64))
    assert codec.encode_number(2.0**-140, fmt) == 0  # nearest value to a tiny positive number: the smallest


def test_encode_fp32_matches_numpy_on_random_doubles():
    fmt = FORMATS["fp32"]
    rng = np.random.default_rng(2)
    x = rng.standard_normal(6000) * np.exp2(rng.uniform(-160, 130, 6000))
    ties = np.float32(rng.standard_normal(500)).astype(np.float64)
    ties = ties + np.abs(ties) * 2.0**-24  # exactly halfway for most of them
    x = np.concatenate([x, ties, [2.0**-150, 2.0**-149 * 1.5, 3.4028235677973366e38, 1e39, -0.0]])
    with np.errstate(over="ignore"):
        expected = x.astype(np.float32)
    _check_encode(fmt, x, expected.view(np.uint32), expected.astype(np.float64))


@pytest.mark.parametrize("name", ORACLE_FORMATS + ["fp32", "tf32"])
def test_round_trip_of_finite_codes(name):
    fmt = get_format(name)
    codes = range(2**fmt.bits) if fmt.bits <= 16 else np.random.default_rng(3).integers(0, 2**fmt.bits, 4000)
    for code in map(int, codes):
        if codec.classify(code, fmt) in ("nan", "inf"):
            continue
        assert codec.encode_number(codec.decode(code, fmt), fmt) == code


def test_tf32_encode_agrees_with_bit_rounding():
    fmt = FORMATS["tf32"]
    rng = np.random.default_rng(4)
    x32 = (rng.standard_normal(3000) * np.exp2(rng.uniform(-120, 120, 3000))).astype(np.float32)
    halfway = (x32.view(np.uint32) & np.uint32(0xFFFFE000)) | np.uint32(0x1000)  # exact ties on the 10th bit
    x32 = np.concatenate([x32, halfway.view(np.float32)])
    expected = _round_tf32(x32).astype(np.float64)
    for x, want in zip(x32.astype(np.float64), expected, strict=True):
        assert codec.decode(codec.encode_number(float(x), fmt), fmt) == want


@pytest.mark.parametrize(
    ("name", "value", "standard", "saturate"),
    [
        ("fp8_e4m3fn", 464.0, 448.0, 448.0),  # exactly halfway to 480 (a NaN code): ties to even, 448
        ("fp8_e4m3fn", 465.0, math.nan, 448.0),
        ("fp8_e4m3fn", 1e6, math.nan, 448.0),
        ("fp8_e4m3fnuz", 300.0, math.nan, 240.0),
        ("fp8_e5m2", 61440.0, math.inf, 57344.0),
        ("fp16", 65520.0, math.inf, 65504.0),
        ("fp16", 65519.0, 65504.0, 65504.0),
        ("fp4_e2m1", 100.0, 6.0, 6.0),  # no inf, no NaN: saturates either way (as ml_dtypes does)
        ("fp16", -math.inf, -math.inf, -math.inf),  # saturate clamps finite values; inf stays inf
        ("fp8_e4m3fn", math.inf, math.nan, 448.0),
    ],
)
def test_overflow_policies(name, value, standard, saturate):
    fmt = get_format(name)
    for policy, want in (("standard", standard), ("saturate", saturate)):
        got = codec.decode(codec.encode_number(value, fmt, policy), fmt)
        assert got == want or (math.isnan(want) and math.isnan(got)), (name, value, policy, got)
    if math.isfinite(value):
        with np.errstate(over="ignore"):
            cast = float(np.array([value]).astype(_dtype(fmt))[0])
        assert cast == standard or (math.isnan(cast) and math.isnan(standard))  # "standard" is the ml_dtypes cast


def test_exact_decimal_and_neighbours():
    fp32, fp16 = FORMATS["fp32"], FORMATS["fp16"]
    code = codec.encode_number(0.1, fp32)
    assert codec.exact_decimal(codec.decode_exact(code, fp32)) == "0.100000001490116119384765625"
    assert codec.exact_decimal(codec.decode_exact(1, fp32)) == f"{__import__('decimal').Decimal(2.0**-149):f}"
    down, up, ulp = codec.neighbours(codec.encode_number(1.0, fp16), fp16)
    assert (down, up, ulp) == (1 - 2**-11, 1 + 2**-10, 2**-10)
    assert codec.neighbours(codec.encode_number(65504.0, fp16), fp16) == (65472.0, math.inf, 32.0)
    assert codec.neighbours(0, fp16)[:2] == (-(2.0**-24), 2.0**-24)
    fp32_values = np.array([1.0, 3.0e38, 1e-40], dtype=np.float32)
    for v in fp32_values:
        lo, hi, _ = codec.neighbours(codec.encode_number(float(v), fp32), fp32)
        assert (lo, hi) == (float(np.nextafter(v, -np.inf)), float(np.nextafter(v, np.inf)))
