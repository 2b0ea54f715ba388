"""Number formats, exactly: FP32 … FP4, NF4, INT8. Pure numpy + ml_dtypes (no widgets, no matplotlib)."""

from __future__ import annotations

from .arrays import quantize_array
from .catalog import EXTRA_FORMATS, FORMATS, get_format
from .codec import OVERFLOW_POLICIES
from .compare import explain_all, values_around
from .explain import Explanation, decode, encode, explain
from .parse import allowed_inputs
from .spec import FloatFormat

__all__ = [
    "EXTRA_FORMATS",
    "FORMATS",
    "OVERFLOW_POLICIES",
    "Explanation",
    "FloatFormat",
    "allowed_inputs",
    "decode",
    "encode",
    "explain",
    "explain_all",
    "get_format",
    "quantize_array",
    "values_around",
]
