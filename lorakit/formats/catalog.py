"""The table of formats: one FloatFormat per name. Limits are derived by FloatFormat, never typed here."""

from __future__ import annotations

from types import MappingProxyType

from .codebooks import NF4_LEVELS, bnb_fp4_levels, int_levels
from .spec import FloatFormat

_TEACHING = (
    FloatFormat("fp32", "float", 8, 23, dtype_name="float32", description="IEEE single: master weights, optimizer"),
    FloatFormat("fp16", "float", 5, 10, dtype_name="float16", description="IEEE half: needs loss scaling"),
    FloatFormat("bf16", "float", 8, 7, dtype_name="bfloat16", description="bfloat16: FP32's range, 3 digits"),
    FloatFormat(
        "tf32", "float", 8, 10, compute_only=True,
        description="TensorFloat-32: a matmul compute mode on NVIDIA GPUs (FP32 in memory), not a storage dtype",
    ),
    FloatFormat("fp8_e4m3fn", "float", 4, 3, specials="fn", dtype_name="float8_e4m3fn", description="OCP FP8 E4M3"),
    FloatFormat(
        "fp8_e4m3fnuz", "float", 4, 3, specials="fnuz", dtype_name="float8_e4m3fnuz",
        description="AMD/Graphcore FP8 E4M3: bias 8, one NaN (0x80), no -0",
    ),
    FloatFormat("fp8_e5m2", "float", 5, 2, dtype_name="float8_e5m2", description="OCP FP8 E5M2 (gradients)"),
    FloatFormat("fp6_e2m3", "float", 2, 3, specials="none", dtype_name="float6_e2m3fn", description="OCP MX FP6"),
    FloatFormat("fp6_e3m2", "float", 3, 2, specials="none", dtype_name="float6_e3m2fn", description="OCP MX FP6"),
    FloatFormat("fp4_e2m1", "float", 2, 1, specials="none", dtype_name="float4_e2m1fn", description="OCP MX FP4"),
    FloatFormat(
        "e8m0", "scale", 8, 0, sign_bits=0, specials="fn", has_subnormals=False, dtype_name="float8_e8m0fnu",
        description="OCP MX block scale: a power of two, no sign, no zero",
    ),
    FloatFormat(
        "nf4", "codebook", sign_bits=0, storage_bits=4, levels=NF4_LEVELS,
        description="QLoRA NormalFloat4: 16 normal quantiles x block absmax",
    ),
    FloatFormat(
        "bnb_fp4", "codebook", sign_bits=0, storage_bits=4, levels=bnb_fp4_levels(),
        description="bitsandbytes' FP4 table x block absmax (not OCP E2M1)",
    ),
    FloatFormat("int8", "int", storage_bits=8, levels=int_levels(8), description="symmetric absmax INT8"),
    FloatFormat("int4", "int", storage_bits=4, levels=int_levels(4), description="symmetric absmax INT4"),
    FloatFormat("int2", "int", storage_bits=2, levels=int_levels(2), description="symmetric absmax INT2"),
)  # fmt: skip

# Further 8-bit variants that ml_dtypes implements: not taught, but exercised by the exhaustive tests.
_EXTRA = (
    FloatFormat("fp8_e4m3", "float", 4, 3, dtype_name="float8_e4m3", description="IEEE-style E4M3 with inf"),
    FloatFormat("fp8_e3m4", "float", 3, 4, dtype_name="float8_e3m4", description="IEEE-style E3M4"),
    FloatFormat("fp8_e5m2fnuz", "float", 5, 2, specials="fnuz", dtype_name="float8_e5m2fnuz"),
    FloatFormat(
        "fp8_e4m3b11fnuz", "float", 4, 3, specials="fnuz", bias_override=11, dtype_name="float8_e4m3b11fnuz",
        description="Graphcore E4M3 with bias 11",
    ),
)

FORMATS: MappingProxyType[str, FloatFormat] = MappingProxyType({f.name: f for f in _TEACHING})
EXTRA_FORMATS: MappingProxyType[str, FloatFormat] = MappingProxyType({f.name: f for f in _EXTRA})
_ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16", "fp4": "fp4_e2m1"}


def get_format(fmt: str | FloatFormat) -> FloatFormat:
    """Look a format up by name (or pass a FloatFormat through); ValueError lists the names allowed."""
    if isinstance(fmt, FloatFormat):
        return fmt
    key = _ALIASES.get(str(fmt).lower(), str(fmt).lower())
    found = FORMATS.get(key) or EXTRA_FORMATS.get(key)
    if found is None:
        allowed = ", ".join([*FORMATS, *EXTRA_FORMATS])
        raise ValueError(f"format: unknown format {fmt!r}; allowed: {allowed}")
    return found
