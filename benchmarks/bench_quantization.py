"""Comparison 6: lorakit's block-wise NF4 / FP4 / INT8 codecs against bitsandbytes' own, on seeded randn.

Metric: mean |x - dequantize(quantize(x))| over a randn(1024, 1024) matrix (seed 0), per block size.
NF4 and bnb-FP4 are the same 16-entry codebooks scaled by each block's absmax in both libraries, so the
ratio should be 1. lorakit's INT8 is symmetric absmax int8 (x / absmax * 127, rounded); bitsandbytes'
block-wise 8-bit (`quantize_blockwise`) is a different codec (a 256-entry dynamic-tree codebook), so that
row is informational; the INT8 target is against a plain numpy absmax-int8 reference instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Row, Target, skipped_row, table_lines  # noqa: E402

BLOCK_SIZES = (64, 256, 4096)
SAME_CODEC = Target("~=", 1.0, tol=0.01)
BENCH = "6 quantization error"


def absmax_int8_reference(x: np.ndarray, block_size: int) -> np.ndarray:
    """Symmetric block-wise int8: q = round(x / absmax * 127), returned dequantized (float32)."""
    blocks = x.reshape(-1, block_size).astype(np.float64)
    absmax = np.abs(blocks).max(axis=1, keepdims=True)
    scale = np.where(absmax > 0, absmax / 127.0, 1.0)
    return (np.clip(np.rint(blocks / scale), -127, 127) * scale).reshape(x.shape).astype(np.float32)


def bnb_roundtrip(x: np.ndarray, codec: str, block_size: int) -> np.ndarray:
    """bitsandbytes' quantize + dequantize on CPU: codec 'nf4', 'fp4' or 'blockwise8'."""
    import torch
    from bitsandbytes import functional as F

    t = torch.from_numpy(x)
    if codec == "blockwise8":
        q, state = F.quantize_blockwise(t, blocksize=block_size)
        return F.dequantize_blockwise(q, state).numpy()
    q, state = F.quantize_4bit(t, blocksize=block_size, quant_type=codec)
    return F.dequantize_4bit(q, state, blocksize=block_size, quant_type=codec).numpy()


def lorakit_roundtrip(x: np.ndarray, fmt: str, block_size: int) -> np.ndarray:
    """lorakit.formats.quantize_array: the dequantized values after the block-wise round trip, as float32."""
    from lorakit.formats import quantize_array

    out, _stats = quantize_array(x, fmt, block_size=block_size)
    return np.asarray(out, dtype=np.float32)


def mean_abs_error(x: np.ndarray, y: np.ndarray) -> float:
    """Mean absolute difference (float64 accumulation)."""
    return float(np.mean(np.abs(x.astype(np.float64) - y.astype(np.float64))))


def _row(metric: str, lk: float, base: float, baseline: str, target: Target | None, note: str = "") -> Row:
    return Row(BENCH, metric, "mean abs err", [lk], [base], baseline, target, note, higher_is_better=False).finish()


def run(quick: bool = False, repeats: int = 1) -> list[Row]:
    """All codec x block-size rows (errors are deterministic: one measurement each, `repeats` unused)."""
    try:
        import bitsandbytes  # noqa: F401

        from lorakit.formats import quantize_array  # noqa: F401
    except ImportError as exc:
        return [skipped_row(BENCH, f"needs lorakit.formats.quantize_array and bitsandbytes: {exc}")]
    n = 256 if quick else 1024
    x = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    rows = []
    for b in BLOCK_SIZES:
        for fmt, bnb_codec in (("nf4", "nf4"), ("bnb_fp4", "fp4")):
            err = mean_abs_error(x, lorakit_roundtrip(x, fmt, b))
            ref = mean_abs_error(x, bnb_roundtrip(x, bnb_codec, b))
            rows.append(_row(f"{fmt} B={b}", err, ref, f"bnb {bnb_codec}", SAME_CODEC))
        err = mean_abs_error(x, lorakit_roundtrip(x, "int8", b))
        rows.append(_row(f"int8 B={b}", err, mean_abs_error(x, absmax_int8_reference(x, b)), "numpy absmax int8",
                         SAME_CODEC))
        note = "different codecs: symmetric absmax int8 vs bnb's dynamic-tree 8-bit map" if b == BLOCK_SIZES[0] else ""
        rows.append(_row(f"int8 B={b}", err, mean_abs_error(x, bnb_roundtrip(x, "blockwise8", b)), "bnb blockwise8",
                         None, note))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256x256 instead of 1024x1024")
    args = parser.parse_args()
    print("\n".join(table_lines(run(args.quick))))


if __name__ == "__main__":
    main()
