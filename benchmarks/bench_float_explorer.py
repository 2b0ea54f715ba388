"""Bit-click latency of the FloatExplorer on the Python side: everything a click updates, pictures included.

Target (issue 2): one bit click costs <= 20 ms of Python work. A click updates the bits, the explanation,
the compare table (every format) and the pictures (SVG strings, drawn in the same update) at once. The same
click through a real browser, to the screen: bench_widget_latency.py.

    python benchmarks/bench_float_explorer.py            # 200 clicks per format, in this process
    python benchmarks/bench_float_explorer.py --quick    # smoke run
    python benchmarks/bench_float_explorer.py --kernel   # the same inside a Jupyter kernel (needs nbclient)

In this process widgets have no front end, so trait changes are not serialised; inside a kernel every changed
trait also becomes a comm message (signed, sent over ZMQ), which is what a person's click really costs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import latency_rows, percentile  # noqa: E402

TARGET_MS = 20.0


def _click_times(explorer, repeats: int) -> list[float]:
    """Milliseconds per click, cycling over every bit (each click flips one bit; two passes restore it)."""
    times = []
    for i in range(repeats):
        button = explorer.bit_buttons[i % len(explorer.bit_buttons)]
        start = time.perf_counter()
        button.click()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def measure(repeats: int = 200, formats: tuple[str, ...] = ("fp16", "fp32", "bf16", "fp8_e4m3fn", "nf4")) -> dict:
    """Median/p90 ms of one bit click (pictures included), pooled over ``formats``."""
    from lorakit.widgets.float_explorer import FloatExplorer

    explorer = FloatExplorer(value="0.1")
    clicks, per_format = [], {}
    for name in formats:
        explorer.format_dropdown.value = name
        explorer.value_text.value = "0.1"
        _click_times(explorer, 5)  # warm caches (level tables) before timing
        times = _click_times(explorer, repeats)
        clicks += times
        per_format[name] = round(statistics.median(times), 3)
    return {
        "bit_click_median_ms": round(statistics.median(clicks), 3),
        "bit_click_p90_ms": round(percentile(clicks, 0.9), 3),
        "bit_click_median_ms_by_format": per_format,
        "target_ms": TARGET_MS,
        "meets_target": percentile(clicks, 0.9) <= TARGET_MS,
        "clicks_timed": len(clicks),
    }


def measure_in_kernel(repeats: int = 200, timeout_s: int = 900) -> dict:
    """Run ``measure`` inside a fresh Jupyter kernel (comm messages included) and return its result."""
    import nbclient
    import nbformat

    here = Path(__file__).resolve().parent
    source = f"import json, sys\nsys.path.insert(0, {str(here)!r})\nfrom bench_float_explorer import measure\n"
    source += f"print(json.dumps(measure({int(repeats)})))"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nbclient.NotebookClient(notebook, timeout=timeout_s, kernel_name="python3").execute()
    text = "".join(o.get("text", "") for o in notebook.cells[0].outputs if o.get("output_type") == "stream")
    return json.loads(text.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 clicks per format")
    parser.add_argument("--repeats", type=int, default=200, help="clicks per format (default 200)")
    parser.add_argument("--kernel", action="store_true", help="measure inside a Jupyter kernel (comm included)")
    args = parser.parse_args()
    repeats = 20 if args.quick else args.repeats
    result = measure_in_kernel(repeats) if args.kernel else measure(repeats)
    result["where"] = "jupyter kernel" if args.kernel else "plain python process"
    print(json.dumps(result, indent=2))
    verdict = "meets" if result["meets_target"] else "MISSES"
    print(
        f"bit click ({result['where']}, pictures included): median {result['bit_click_median_ms']} ms, "
        f"p90 {result['bit_click_p90_ms']} ms -> {verdict} the {TARGET_MS:g} ms target"
    )


if __name__ == "__main__":
    main()


def run(quick: bool = False, repeats: int = 5) -> list:
    """Result rows: a click's latency, pictures included (the target); quick: a few clicks."""
    result = measure(5, formats=("fp16",)) if quick else measure(200)
    return latency_rows("5 FloatExplorer bit click", result, TARGET_MS)
