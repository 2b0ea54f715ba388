"""explain(): one record per value; input parsing and its error messages."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

import lorakit
from lorakit.formats import FORMATS, decode, encode, explain, explain_all, values_around
from lorakit.formats.parse import parse


def test_fp32_point_one_is_stored_exactly_as_this_decimal():
    e = explain("0.1", "fp32")
    assert e.stored_exact == "0.100000001490116119384765625" == f"{Decimal(float(np.float32(0.1)))}"
    assert e.hex == "0x3DCCCCCD" and e.bits == "00111101110011001100110011001101"
    assert e.field_bits == {"sign": "0", "exponent": "01111011", "mantissa": "10011001100110011001101"}
    assert (e.sign, e.biased_exponent, e.unbiased_exponent, e.mantissa) == (0, 123, -4, 0x4CCCCD)
    assert e.abs_error == float(Fraction(float(np.float32(0.1))) - Fraction(1, 10))
    assert e.rel_error == pytest.approx(e.abs_error / 0.1, rel=1e-12)
    assert (e.next_down, e.next_up) == (float(np.nextafter(np.float32(0.1), 0)), float(np.nextafter(np.float32(0.1), 1)))
    assert e.ulp == 2.0**-27 and e.value_class == "normal"


def test_fp16_one_formula_has_the_numbers_filled_in():
    e = explain(1, "fp16")
    assert e.formula == "(\u22121)^0 × 2^(15\u221215) × (1 + 0/1024) = 1.0"
    assert e.note.startswith("exact")
    sub = explain("0x0001", "fp16")
    assert sub.value_class == "subnormal" and sub.stored == 2.0**-24
    assert sub.formula.startswith("(\u22121)^0 × 2^(1\u221215) × (0 + 1/1024)")
    assert sub.unbiased_exponent == -14 and sub.abs_error == 0.0


def test_overflow_to_inf_and_both_e4m3_policies():
    e = explain("65520", "fp16")
    assert e.value_class == "inf" and e.overflowed and "65504" in e.note and e.abs_error == math.inf
    nan = explain(500, "fp8_e4m3fn")  # ml_dtypes: 500 -> NaN
    sat = explain(500, "fp8_e4m3fn", overflow="saturate")
    assert nan.value_class == "nan" and sat.stored == 448.0 and sat.overflowed and "saturate" in sat.note
    assert np.isnan(np.array([500.0]).astype(ml_dtypes.float8_e4m3fn).astype(float)[0])
    tie = explain(464, "fp8_e4m3fn")  # halfway to 480, which would be the NaN code: ties to even
    assert tie.stored == 448.0 and not tie.overflowed
    assert tie.note == "tie: exactly halfway between 448.0 and 480.0; rounded to the even one"
    assert explain(1 + 2**-8, "bf16").note.startswith("tie: exactly halfway between 1.0 and 1.0078125")
    assert explain(1 + 3 * 2**-8, "bf16").note.startswith("tie: exactly halfway between 1.015625 and 1.0078125")
    assert explain("0.1", "bf16").note == ""


def test_bf16_keeps_3e38_but_loses_digits():
    bf16, fp16 = explain("3e38", "bf16"), explain("3e38", "fp16")
    assert bf16.value_class == "normal" and bf16.stored == float(np.array([3e38]).astype(ml_dtypes.bfloat16)[0])
    assert 1e-3 < bf16.rel_error < 2**-8
    assert fp16.value_class == "inf"


def test_underflow_zero_signs_and_specials():
    flush = explain("1e-8", "fp16")
    assert flush.value_class == "zero" and flush.flushed_to_zero and flush.rel_error == 1.0
    assert explain("-0", "fp16").bits == "1" + "0" * 15 and explain("-0", "fp16").stored_exact == "-0"
    assert explain("-0", "fp8_e4m3fnuz").code == 0  # no negative zero in fnuz
    assert explain("-inf", "fp16").hex == "0xFC00" and explain("nan", "bf16").value_class == "nan"
    assert explain("0xFF", "fp8_e4m3fn").formula.startswith("NaN")
    with pytest.raises(ValueError, match="fp4_e2m1: nan is not representable"):
        explain("nan", "fp4_e2m1")


def test_e8m0_formula_has_no_sign_or_mantissa():
    e = explain(6, "e8m0")
    assert e.stored == 8.0 and e.formula == "2^(130\u2212127) = 8.0" and e.sign is None and e.mantissa is None


@pytest.mark.parametrize(
    ("text", "code"),
    [("0x3C00", 0x3C00), ("0b0011110000000000", 0x3C00), ("0011110000000000", 0x3C00), ("0 01111 0000000000", 0x3C00)],
)
def test_bit_patterns(text, code):
    e = explain(text, "fp16")
    assert e.code == code and e.stored == 1.0 and e.abs_error == 0.0


@pytest.mark.parametrize(
    ("text", "value"),
    [("1/3", Fraction(1, 3)), ("-2.5e-3", Fraction(-25, 10000)), (" 7 ", Fraction(7)), ("1E3", Fraction(1000))],
)
def test_numbers_are_parsed_exactly(text, value):
    assert parse(text, FORMATS["fp16"]).value == value


def test_one_third_in_bf16_is_rounded_from_the_exact_fraction():
    e = explain("1/3", "bf16")
    assert e.stored == float(np.array([1 / 3]).astype(ml_dtypes.bfloat16)[0])
    assert e.abs_error == float(abs(Fraction(e.stored) - Fraction(1, 3)))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"fp16: empty input ''; allowed: a number"),
        ("abc", r"fp16: not a number or bit pattern: 'abc'"),
        ("0b0101", r"fp16: bit string has 4 bits, the format has 16"),
        ("0x1FFFF", r"fp16: hex pattern wider than 16 bits: '0x1FFFF'"),
        ("0xZZ", r"not a hex bit pattern"),
        ("1/0", r"division by zero"),
        ("-0x3C00", r"has no sign"),
    ],
)
def test_bad_input_names_the_format_and_what_is_allowed(text, message):
    with pytest.raises(ValueError, match=message) as info:
        explain(text, "fp16")
    assert "allowed: a number (0.1, -2.5e-3, 1/3, inf, -inf, nan) or a 16-bit pattern" in str(info.value)


def test_bad_options_name_the_field():
    with pytest.raises(ValueError, match="overflow: 'clip' is not a policy; allowed: standard, saturate"):
        explain(1, "fp16", overflow="clip")
    with pytest.raises(ValueError, match="absmax: 0.0 is not allowed for nf4"):
        explain(1, "nf4", absmax=0.0)
    with pytest.raises(ValueError, match="nf4: 'inf' is not finite"):
        explain("inf", "nf4")
    with pytest.raises(ValueError, match="decode needs a bit pattern"):
        decode("1.5", "fp16")


def test_nf4_record_level_and_absmax():
    e = explain(0.3, "nf4", absmax=2.0)
    level = float(np.float32(FORMATS["nf4"].levels[e.code]))
    assert e.stored == float(np.float32(level) * np.float32(2.0)) and e.absmax == 2.0 and e.level_index == e.code
    assert e.formula.startswith(f"absmax × nf4[{e.code}] = 2.0 × ")
    assert e.next_down < e.stored < e.next_up and e.value_class == "level"
    assert explain(5.0, "nf4", absmax=2.0).overflowed  # clamped to the block absmax
    assert explain("0b0111", "nf4").stored == 0.0  # NF4 code 7 is its exact zero
    assert decode(15, "nf4", absmax=3.0) == 3.0


def test_int8_record_uses_two_complement_codes():
    e = explain(-0.5, "int8")
    assert e.code == 0xC0 and e.stored == float(np.float32(-64 / 127)) and e.sign == 1
    assert e.formula == "absmax × q/127 = 1.0 × \u221264/127 = " + repr(e.stored).replace("-", "\u2212")
    unused = explain("0x80", "int8")  # -128: a code the symmetric quantizer never produces
    assert unused.next_up == float(np.float32(-127 / 127)) and unused.next_down is None
    assert explain(0.0, "int4").value_class == "zero" and encode(1.0, "int4") == 7


def test_numpy_and_ml_dtypes_scalars_are_numbers():
    assert explain(ml_dtypes.bfloat16(0.1), "fp32").stored == 0.10009765625
    assert explain(np.float16(2), "fp16").code == 0x4000 and explain(np.int64(3), "fp16").stored == 3.0
    with pytest.raises(ValueError, match="fp16: a bool is not a number"):
        explain(True, "fp16")
    with pytest.raises(ValueError, match="fp16: cannot read a list"):
        explain([1], "fp16")


def test_public_names_are_wired():
    assert lorakit.explain is explain and lorakit.encode is encode and lorakit.decode is decode


def test_values_around_are_the_nearest_representable_values():
    one = np.float16(1.0)
    expected = [one]
    for _ in range(3):
        expected = [np.nextafter(expected[0], np.float16(-np.inf)), *expected, np.nextafter(expected[-1], np.float16(np.inf))]
    assert values_around(explain(1, "fp16"), 3) == [float(v) for v in expected]
    assert values_around(explain(65504, "fp16"), 2) == [65440.0, 65472.0, 65504.0]  # nothing finite above max
    assert values_around(explain("inf", "fp16")) == []
    assert values_around(explain(0.0, "fp8_e4m3fn"), 1) == [-(2.0**-9), 0.0, 2.0**-9]
    nf4 = values_around(explain(0.3, "nf4", absmax=2.0), 1)
    assert nf4 == [float(np.float32(v) * np.float32(2.0)) for v in FORMATS["nf4"].levels[8:11]]


def test_explain_all_maps_unrepresentable_inputs_to_their_error():
    rows = explain_all("nan", ["fp16", "fp4_e2m1", "nf4"])
    assert rows["fp16"].value_class == "nan"
    assert isinstance(rows["fp4_e2m1"], ValueError) and isinstance(rows["nf4"], ValueError)
    assert list(explain_all("1")) == list(FORMATS)


@pytest.mark.parametrize(
    ("value", "fmt", "overflow", "outcome"),
    [("65520", "fp4_e2m1", "standard", "saturated"), ("65520", "fp6_e2m3", "standard", "saturated"),
     ("7", "fp4_e2m1", "standard", "saturated"), ("6", "fp4_e2m1", "standard", "normal"),
     ("0x7", "fp4_e2m1", "standard", "normal"), ("inf", "fp4_e2m1", "standard", "saturated"),
     ("500", "fp8_e4m3fn", "saturate", "saturated"), ("500", "fp8_e4m3fn", "standard", "nan"),
     ("65520", "fp16", "standard", "inf"), ("65520", "fp16", "saturate", "saturated"), ("inf", "fp16", "saturate", "inf"),
     ("1e-9", "fp16", "standard", "zero"), ("3", "nf4", "standard", "clamped"), ("0.3", "nf4", "standard", "level")],
)  # fmt: skip
def test_outcome_says_where_the_largest_value_stood_in_for_the_input(value, fmt, overflow, outcome):
    e = explain(value, fmt, overflow=overflow)
    assert e.outcome == outcome
    if outcome in ("saturated", "clamped"):  # the oracle: what is stored is the format's largest magnitude
        largest = FORMATS[fmt].max if FORMATS[fmt].is_float else e.absmax  # a codebook's top level is 1.0
        assert e.value_class in ("normal", "level") and abs(e.stored) == largest
