"""Settings files: the mapping of TrainConfig fields in a .yaml/.yml or .json file (TrainConfig.from_file, the CLI)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["read_mapping"]


def read_mapping(path: str | Path) -> dict[str, Any]:
    """The mapping of fields in a .yaml/.yml or .json file (not yet validated)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of TrainConfig fields, got {type(data).__name__}")
    return data
