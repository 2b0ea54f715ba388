"""The FloatFormat record: one number format described by its fields; every limit is derived from them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

KINDS = ("float", "codebook", "int", "scale")
# How a float format spends its all-ones exponent (and, for fnuz, its negative zero):
#   ieee -- all-ones exponent holds inf (mantissa 0) and NaN (mantissa != 0): fp32, fp16, bf16, e5m2;
#   fn   -- finite only: no inf, NaN is the single all-ones pattern per sign (e4m3fn, e8m0);
#   fnuz -- finite, unsigned zero: no inf, no -0, the code "negative zero" (0x80) is the only NaN;
#   none -- every code is a finite number: no inf, no NaN (OCP FP6/FP4).
SPECIALS = ("ieee", "fn", "fnuz", "none")


@dataclass(frozen=True)
class FloatFormat:
    """One number format: the bit fields and special-value rules; limits (max, eps, ...) are derived."""

    name: str
    kind: str
    exponent_bits: int = 0
    mantissa_bits: int = 0
    sign_bits: int = 1
    specials: str = "ieee"
    has_subnormals: bool = True
    bias_override: int | None = None  # only for formats whose bias is not the usual 2^(e-1)-1 (or 2^(e-1) for fnuz)
    storage_bits: int | None = None  # codebook/int formats: bits per element (floats derive theirs from the fields)
    compute_only: bool = False  # TF32: a matmul compute mode, never a storage dtype
    dtype_name: str | None = None  # numpy / ml_dtypes dtype with the same bit layout, if one exists
    levels: tuple[float, ...] = field(default=(), repr=False)  # codebook/int: value of each code, in units of absmax
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"FloatFormat {self.name}: kind={self.kind!r}; allowed: {', '.join(KINDS)}")
        if self.specials not in SPECIALS:
            raise ValueError(f"FloatFormat {self.name}: specials={self.specials!r}; allowed: {', '.join(SPECIALS)}")
        if self.kind in ("codebook", "int") and len(self.levels) != 2**self.bits:
            raise ValueError(f"FloatFormat {self.name}: needs {2**self.bits} levels, got {len(self.levels)}")

    # ----- layout -------------------------------------------------------------------------------------
    @property
    def is_float(self) -> bool:
        """True for sign/exponent/mantissa formats (including the E8M0 scale)."""
        return self.kind in ("float", "scale")

    @property
    def bits(self) -> int:
        """Width in bits of one element (TF32: the 19 bits a tensor core keeps, not a storage size)."""
        if self.storage_bits is not None:
            return self.storage_bits
        return self.sign_bits + self.exponent_bits + self.mantissa_bits

    @property
    def field_widths(self) -> dict[str, int]:
        """Bit fields from the most significant bit down; the widths add up to ``bits``."""
        if self.kind == "codebook":
            return {"index": self.bits}
        if self.kind == "int":
            return {"sign": 1, "integer": self.bits - 1}
        widths = {"sign": self.sign_bits, "exponent": self.exponent_bits, "mantissa": self.mantissa_bits}
        return {name: width for name, width in widths.items() if width}

    @property
    def field_of_bit(self) -> tuple[str, ...]:
        """Field name of each bit, most significant bit first (the order of the usual diagrams)."""
        return tuple(name for name, width in self.field_widths.items() for _ in range(width))

    @property
    def bias(self) -> int:
        """Exponent bias: 2^(e-1)-1, or 2^(e-1) for the fnuz formats (0 for non-float kinds)."""
        if not self.is_float:
            return 0
        if self.bias_override is not None:
            return self.bias_override
        return 2 ** (self.exponent_bits - 1) - (0 if self.specials == "fnuz" else 1)

    @property
    def has_inf(self) -> bool:
        """Whether the format encodes +-infinity."""
        return self.is_float and self.specials == "ieee"

    @property
    def has_nan(self) -> bool:
        """Whether the format encodes NaN."""
        return self.is_float and self.specials != "none"

    # ----- exact limits (Fractions) ---------------------------------------------------------------------
    @property
    def min_exponent(self) -> int:
        """Unbiased exponent of the smallest normal number."""
        return (1 if self.has_subnormals else 0) - self.bias

    @property
    def max_fields(self) -> tuple[int, int]:
        """(biased exponent, mantissa) of the largest finite value."""
        e_ones, m_ones = 2**self.exponent_bits - 1, 2**self.mantissa_bits - 1
        if self.specials == "ieee":
            return e_ones - 1, m_ones
        if self.specials == "fn":  # only the all-ones pattern is NaN
            return (e_ones - 1, 0) if self.mantissa_bits == 0 else (e_ones, m_ones - 1)
        return e_ones, m_ones

    @property
    def max_exact(self) -> Fraction:
        """Largest finite value, exactly (codebook/int: in units of the block absmax)."""
        if not self.is_float:
            return max(Fraction(v) for v in self.levels)
        biased, mant = self.max_fields
        return Fraction(2) ** (biased - self.bias) * (1 + Fraction(mant, 2**self.mantissa_bits))

    @property
    def min_normal_exact(self) -> Fraction:
        """Smallest positive normal value, exactly (codebook/int: smallest positive level)."""
        if not self.is_float:
            return min(Fraction(v) for v in self.levels if v > 0)
        return Fraction(2) ** self.min_exponent

    @property
    def min_subnormal_exact(self) -> Fraction:
        """Smallest positive value, exactly (equals min_normal where there are no subnormals)."""
        if not self.is_float or not self.has_subnormals:
            return self.min_normal_exact
        return Fraction(2) ** (self.min_exponent - self.mantissa_bits)

    @property
    def eps_exact(self) -> Fraction:
        """Gap after 1.0 (floats: 2^-m); codebook/int: gap between the two largest levels (units of absmax)."""
        if self.is_float:
            return Fraction(1, 2**self.mantissa_bits)
        top = sorted({Fraction(v) for v in self.levels})
        return top[-1] - top[-2]

    # ----- float views of the limits --------------------------------------------------------------------
    @property
    def max(self) -> float:
        """Largest finite value."""
        return float(self.max_exact)

    @property
    def min_normal(self) -> float:
        """Smallest positive normal value."""
        return float(self.min_normal_exact)

    @property
    def min_subnormal(self) -> float:
        """Smallest positive value."""
        return float(self.min_subnormal_exact)

    @property
    def eps(self) -> float:
        """Gap after 1.0 (relative precision); see ``eps_exact``."""
        return float(self.eps_exact)

    @property
    def n_finite(self) -> int:
        """Number of distinct finite values (+0 and -0 count once)."""
        if not self.is_float:  # int: the most negative code is never produced by a symmetric quantizer
            return len({float(v) for v in self.levels}) - (1 if self.kind == "int" else 0)
        biased, mant = self.max_fields
        per_sign = biased * 2**self.mantissa_bits + mant + 1  # codes from 0 up to the largest finite one
        if self.sign_bits == 0:
            return per_sign
        # ieee/fn/none: -0 repeats +0; fnuz: the negative-zero code is the NaN. Either way one less.
        return 2 * per_sign - 1

    @property
    def dynamic_range_binades(self) -> float:
        """log2(max / smallest positive value): how many powers of two the format spans."""
        return math.log2(self.max_exact / self.min_subnormal_exact)

    @property
    def dynamic_range_decades(self) -> float:
        """log10(max / smallest positive value)."""
        return math.log10(self.max_exact / self.min_subnormal_exact)

    @property
    def decimal_digits(self) -> float:
        """Decimal digits of precision, log10(2 / eps): floats give (m+1)*log10(2) (FP32 7.22, BF16 2.41)."""
        return math.log10(2 / self.eps_exact)

    def __str__(self) -> str:
        return self.name
