"""FloatFormat records: the facts lorakit teaches, and invariants over every format."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

import lorakit
from lorakit.formats import EXTRA_FORMATS, FORMATS, FloatFormat, codec, decode, encode, get_format

CONTRACT_NAMES = [
    "fp32", "fp16", "bf16", "tf32", "fp8_e4m3fn", "fp8_e4m3fnuz", "fp8_e5m2", "fp6_e2m3", "fp6_e3m2",
    "fp4_e2m1", "e8m0", "nf4", "bnb_fp4", "int8", "int4", "int2",
]  # fmt: skip
ALL = [*FORMATS.values(), *EXTRA_FORMATS.values()]


def test_catalog_has_the_contract_names_and_public_api():
    assert list(FORMATS) == CONTRACT_NAMES
    assert lorakit.FORMATS is FORMATS and lorakit.get_format("bf16") is FORMATS["bf16"]
    assert {f.kind for f in FORMATS.values()} == {"float", "codebook", "int", "scale"}


@pytest.mark.parametrize(
    ("name", "sign", "exp", "mant", "bias", "largest"),
    [
        ("fp32", 1, 8, 23, 127, float.fromhex("0x1.fffffep+127")),
        ("fp16", 1, 5, 10, 15, 65504.0),
        ("bf16", 1, 8, 7, 127, float.fromhex("0x1.fep+127")),
        ("tf32", 1, 8, 10, 127, float.fromhex("0x1.ffcp+127")),
        ("fp8_e4m3fn", 1, 4, 3, 7, 448.0),
        ("fp8_e4m3fnuz", 1, 4, 3, 8, 240.0),
        ("fp8_e5m2", 1, 5, 2, 15, 57344.0),
        ("fp6_e2m3", 1, 2, 3, 1, 7.5),
        ("fp6_e3m2", 1, 3, 2, 3, 28.0),
        ("fp4_e2m1", 1, 2, 1, 1, 6.0),
        ("e8m0", 0, 8, 0, 127, 2.0**127),
    ],
)
def test_layouts_and_maxima(name, sign, exp, mant, bias, largest):
    fmt = FORMATS[name]
    assert (fmt.sign_bits, fmt.exponent_bits, fmt.mantissa_bits, fmt.bias, fmt.max) == (sign, exp, mant, bias, largest)


def test_fp16_and_bf16_facts():
    fp16, bf16 = FORMATS["fp16"], FORMATS["bf16"]
    assert (fp16.min_normal, fp16.min_subnormal, fp16.eps) == (2.0**-14, 2.0**-24, 2.0**-10)
    assert decode(encode(65520, fp16), fp16) == math.inf
    assert decode(encode(1 + 2**-8, bf16), bf16) == 1.0  # a tie: to even
    assert decode(encode(1 + 3 * 2**-8, bf16), bf16) == 1.015625
    assert FORMATS["tf32"].compute_only and FORMATS["tf32"].bits == 19
    assert not any(f.compute_only for f in FORMATS.values() if f.name != "tf32")


def test_fp4_values_and_special_rules():
    fp4 = FORMATS["fp4_e2m1"]
    values = sorted({decode(c, fp4) for c in range(16)})
    assert values == [-6, -4, -3, -2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2, 3, 4, 6]
    assert not fp4.has_inf and not fp4.has_nan
    e4m3 = FORMATS["fp8_e4m3fn"]
    nan_codes = [c for c in range(256) if codec.classify(c, e4m3) == "nan"]
    assert nan_codes == [0x7F, 0xFF] and not e4m3.has_inf  # NaN only at S.1111.111
    fnuz = FORMATS["fp8_e4m3fnuz"]
    assert [c for c in range(256) if codec.classify(c, fnuz) == "nan"] == [0x80]


def _dtype(fmt: FloatFormat):
    return np.dtype(fmt.dtype_name) if fmt.dtype_name in ("float32", "float16") else getattr(ml_dtypes, fmt.dtype_name)


@pytest.mark.parametrize("fmt", [f for f in ALL if f.dtype_name], ids=lambda f: f.name)
def test_limits_match_ml_dtypes_finfo(fmt):
    info = ml_dtypes.finfo(_dtype(fmt))
    assert fmt.max == float(info.max)
    assert fmt.min_normal == float(info.smallest_normal)
    assert fmt.min_subnormal == float(info.smallest_subnormal)
    assert fmt.eps == float(info.eps)
    assert fmt.bits == info.bits


@pytest.mark.parametrize("fmt", [f for f in ALL if f.dtype_name and f.bits <= 16], ids=lambda f: f.name)
def test_n_finite_counts_distinct_finite_values(fmt):
    store = np.uint16 if fmt.bits > 8 else np.uint8
    with np.errstate(invalid="ignore"):
        values = np.arange(2**fmt.bits, dtype=store).view(_dtype(fmt)).astype(np.float64)
    assert fmt.n_finite == np.unique(values[np.isfinite(values)]).size


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_invariants_over_every_format(fmt):
    assert sum(fmt.field_widths.values()) == fmt.bits == len(fmt.field_of_bit)
    if fmt.is_float:
        assert fmt.sign_bits + fmt.exponent_bits + fmt.mantissa_bits == fmt.bits
    for limit in (fmt.max, fmt.min_subnormal, fmt.min_normal):  # representable, and decode to themselves
        assert decode(encode(limit, fmt), fmt) == limit
        if fmt.sign_bits:
            assert decode(encode(-limit, fmt), fmt) == -limit
    assert fmt.min_subnormal <= fmt.min_normal <= fmt.max
    assert math.isclose(fmt.dynamic_range_binades, math.log2(fmt.max / fmt.min_subnormal))
    assert math.isclose(fmt.dynamic_range_decades, fmt.dynamic_range_binades * math.log10(2))
    if fmt.kind == "float":
        assert math.isclose(fmt.decimal_digits, (fmt.mantissa_bits + 1) * math.log10(2))


def test_decimal_digits_and_ranges_teach_the_right_story():
    fp32, fp16, bf16 = FORMATS["fp32"], FORMATS["fp16"], FORMATS["bf16"]
    assert round(fp32.decimal_digits, 2) == 7.22 and round(bf16.decimal_digits, 2) == 2.41
    assert bf16.dynamic_range_binades > 6 * fp16.dynamic_range_binades  # BF16 keeps FP32's exponent
    assert bf16.decimal_digits < fp16.decimal_digits


def test_get_format_rejects_unknown_names_listing_the_allowed():
    with pytest.raises(ValueError, match=r"format: unknown format 'fp12'; allowed: fp32, fp16"):
        get_format("fp12")
    assert get_format("BF16") is FORMATS["bf16"] and get_format("float16") is FORMATS["fp16"]


def test_record_validation_names_the_field():
    with pytest.raises(ValueError, match="kind='posit'"):
        FloatFormat("x", "posit")
    with pytest.raises(ValueError, match="specials='weird'"):
        FloatFormat("x", "float", 4, 3, specials="weird")
