"""quantize_array: ml_dtypes casts for floats, bitsandbytes-exact block-wise absmax for NF4/FP4, stats."""

from __future__ import annotations

import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

from lorakit.formats import FORMATS, codec, quantize_array
from lorakit.formats.codebooks import nf4_from_quantiles

STAT_KEYS = {"mean_abs_error", "mean_rel_error", "max_abs_error", "frac_flushed_to_zero", "frac_overflowed"}


def test_nf4_mean_abs_error_on_randn_is_qloras_0_0728():
    x = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    out, stats = quantize_array(x, "nf4", block_size=64)
    assert set(stats) == STAT_KEYS and out.shape == x.shape and out.dtype == np.float32
    assert abs(stats["mean_abs_error"] - 0.0728) / 0.0728 < 0.02


def test_nf4_levels_come_from_normal_quantiles():
    assert np.max(np.abs(nf4_from_quantiles() - np.array(FORMATS["nf4"].levels))) < 2e-7
    levels = FORMATS["nf4"].levels
    assert sum(v < 0 for v in levels) == 7 and sum(v > 0 for v in levels) == 8 and 0.0 in levels


@pytest.mark.slow
def test_codebooks_equal_bitsandbytes_tables():
    from bitsandbytes import functional
    for ours, theirs in (("nf4", "nf4"), ("bnb_fp4", "fp4")):
        table = functional.get_4bit_type(theirs, device="cpu").numpy()
        assert np.array_equal(np.array(FORMATS[ours].levels, dtype=np.float32), table)


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
# (1000, 6): a last, partial block. (An odd last dimension sends bitsandbytes' dequantize through a
# torch.compile fallback that takes ~10 s to compile on this machine, so it is left out.)
@pytest.mark.slow  # importing bitsandbytes (and torch) takes several seconds
@pytest.mark.parametrize("shape", [(1024, 1024), (1000, 6)])
@pytest.mark.parametrize("block_size", [64, 256])
def test_matches_bitsandbytes_quantize_dequantize_bit_for_bit(quant_type, shape, block_size):
    import torch
    from bitsandbytes import functional
    x = torch.randn(shape, generator=torch.Generator().manual_seed(block_size))
    packed, state = functional.quantize_4bit(x, blocksize=block_size, quant_type=quant_type)
    reference = functional.dequantize_4bit(packed, state).numpy()
    ours, _ = quantize_array(x, "nf4" if quant_type == "nf4" else "bnb_fp4", block_size=block_size)
    assert np.array_equal(ours, reference)


@pytest.mark.slow
def test_bf16_tensor_matches_bitsandbytes_after_its_bf16_output_cast():
    import torch
    from bitsandbytes import functional
    x = torch.randn(256, 256, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    packed, state = functional.quantize_4bit(x, blocksize=64, quant_type="nf4")
    reference = functional.dequantize_4bit(packed, state)  # bitsandbytes returns the input dtype
    ours, _ = quantize_array(x, "nf4")  # lorakit returns float32; round it the same way to compare
    assert torch.equal(torch.from_numpy(ours).to(torch.bfloat16), reference)


@pytest.mark.slow
def test_libraries_disagree_on_e4m3fn_overflow():
    # ml_dtypes turns values past the rounding boundary into NaN ("standard"); torch's CPU cast saturates.
    import torch
    rng = np.random.default_rng(5)
    edges = [448.0, 464.0, 465.0, 480.0, 1e6, np.inf, -np.inf, -500.0, 0.0, 2.0**-10, 2.0**-9 * 1.5]
    x = np.concatenate([rng.standard_normal(3000) * np.exp2(rng.uniform(-12, 12, 3000)), edges]).astype(np.float32)
    theirs = torch.from_numpy(x).to(torch.float8_e4m3fn).view(torch.uint8).numpy()
    fmt = FORMATS["fp8_e4m3fn"]
    assert [codec.encode_number(float(v), fmt, "saturate") for v in x] == theirs.tolist()
    saturated, _ = quantize_array(x, fmt, overflow="saturate")
    assert np.array_equal(saturated, torch.from_numpy(x).to(torch.float8_e4m3fn).float().numpy())
    standard, _ = quantize_array(x, fmt)
    assert np.isnan(standard[-9]) and saturated[-9] == 448.0  # 465: NaN in ml_dtypes, 448 in torch


@pytest.mark.parametrize("name", ["bf16", "fp16", "fp8_e4m3fn", "fp8_e5m2", "fp6_e3m2", "fp4_e2m1"])
def test_float_formats_use_the_ml_dtypes_cast(name):
    fmt = FORMATS[name]
    x = np.random.default_rng(2).standard_normal(5000).astype(np.float32) * 3
    dtype = np.float16 if name == "fp16" else getattr(ml_dtypes, fmt.dtype_name)
    out, _ = quantize_array(x, name)
    assert np.array_equal(out, x.astype(dtype).astype(np.float32))


def test_tf32_array_agrees_with_the_exact_codec():
    fmt = FORMATS["tf32"]
    x = np.random.default_rng(3).standard_normal(2000).astype(np.float32) * 1e3
    out, _ = quantize_array(x, "tf32")
    expected = [codec.decode(codec.encode_number(float(v), fmt), fmt) for v in x]
    assert np.array_equal(out.astype(np.float64), expected)


def test_overflow_flush_and_saturate_statistics():
    x = np.array([65519.0, 65520.0, 1e5, 1e-9, 1.0])
    out, stats = quantize_array(x, "fp16")
    assert out[0] == 65504 and np.isinf(out[1:3]).all() and out[3] == 0
    assert stats["frac_overflowed"] == 2 / 5 and stats["frac_flushed_to_zero"] == 1 / 5
    assert stats["max_abs_error"] == 15.0  # over the values stored finite
    saturated, sat_stats = quantize_array(x, "fp16", overflow="saturate")
    assert list(saturated[:3]) == [65504.0] * 3 and sat_stats["frac_overflowed"] == 2 / 5
    nan_out, e4m3 = quantize_array(np.array([448.0, 464.0, 465.0]), "fp8_e4m3fn")
    assert list(nan_out[:2]) == [448.0, 448.0] and np.isnan(nan_out[2]) and e4m3["frac_overflowed"] == 1 / 3
    clamped, _ = quantize_array(np.array([465.0, -1e9, np.inf]), "fp8_e4m3fn", overflow="saturate")
    assert list(clamped) == [448.0, -448.0, 448.0]


def test_int8_is_symmetric_absmax_per_block():
    x = np.random.default_rng(4).standard_normal(640).astype(np.float32)
    out, _ = quantize_array(x, "int8", block_size=64)
    blocks = x.reshape(-1, 64)
    absmax = np.abs(blocks).max(axis=1, keepdims=True)
    q = np.rint(blocks * (np.float32(1) / absmax) * np.float32(127))
    assert np.abs(q).max() == 127
    assert np.allclose(out.reshape(-1, 64), q / 127 * absmax, rtol=1e-6, atol=0)
    out4, _ = quantize_array(x, "int4", block_size=64)
    assert len(np.unique(np.round(out4.reshape(-1, 64)[0] / absmax[0] * 7))) <= 15


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="block_size: 0 is not allowed"):
        quantize_array(np.ones(4), "nf4", block_size=0)
    with pytest.raises(ValueError, match="overflow: 'wrap'"):
        quantize_array(np.ones(4), "fp16", overflow="wrap")
    with pytest.raises(ValueError, match="format: unknown format 'fp5'"):
        quantize_array(np.ones(4), "fp5")


def test_importing_the_formats_does_not_import_torch_or_widgets():
    code = (
        "import sys, lorakit, lorakit.formats; lorakit.FORMATS; lorakit.explain(0.1, 'fp16'); "
        "bad = [m for m in ('torch', 'matplotlib', 'ipywidgets') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
