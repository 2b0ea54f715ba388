"""Merge a run's LoRA adapter into its base model and save a plain model folder (for export / serving)."""

from __future__ import annotations

import json
from pathlib import Path

from lorakit.training.checkpoint import replace_dir
from lorakit.training.embedded import resolve_model


def export_merged(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Load the base named in run_dir/config.json at full precision, merge adapter/ into it, save to out_dir.

    The base is loaded unquantized (fp32) even if the run trained on a quantized one: merging into 4/8-bit
    weights would round the update away. Returns out_dir (safetensors + tokenizer).
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    path = resolve_model(config["model"])
    trust = bool(config.get("trust_remote_code", False))
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, trust_remote_code=trust)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust)
    merged = PeftModel.from_pretrained(base, run_dir / "adapter").merge_and_unload()

    def write(tmp: Path) -> None:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    return replace_dir(Path(out_dir), write)
